"""brs-run / ``python -m brs_autopatch``: options, settings, PYTHONPATH, exec, exit codes.

Every test starts the launcher in a fresh process with an isolated environment
(fake source credentials, AWS_ENDPOINT_URL = the local STS) and looks at what the
program it started saw (the ``launch`` fixture, conftest.py; its helpers: launching.py).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
from launching import ASSUMED, BRS_RUN, MODULE, ROLE, VENV_BIN, Launch, write
from stsclient import REPO_ROOT, StsServer, make_role_arn

from brs_autopatch import __version__
from brs_autopatch.launch.main import BOOTSTRAP_DIR, build_pythonpath, parse_args

EXAMPLE = REPO_ROOT / "sitecustomize_example"
IDENTITY = "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])"


# -- the program runs patched, unmodified ------------------------------------------------------

def test_brs_run_python_app_gets_the_assumed_role(launch: Launch, sts: StsServer) -> None:
    if not BRS_RUN.exists():
        pytest.skip(f"{BRS_RUN} is not installed (pip install -e .)")
    result = launch([BRS_RUN, "python", EXAMPLE / "app.py"],
                    env={"DEMO_CALLS": "2", "DEMO_INTERVAL": "0"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(" key ")[0] for line in lines] == [f"1/2 {ASSUMED}", f"2/2 {ASSUMED}"]
    assert result.stderr == ""
    assert sts.count("sts:AssumeRole") == 1


def test_module_form_passes_argv_and_exit_code_through(launch: Launch, tmp_path: Path) -> None:
    script = write(tmp_path / "prog.py", (
        "import json, sys, boto3\n"
        "print(json.dumps(sys.argv[1:]))\n"
        "print(boto3.client('sts').get_caller_identity()['Arn'])\n"
        "sys.exit(7)\n"
    ))
    args = ["a b", "--help", "", "--version", "--", "-x"]
    result = launch([*MODULE, "--", "python", script, *args])
    assert result.returncode == 7, result.stderr
    out = result.stdout.splitlines()
    assert json.loads(out[0]) == args
    assert out[1] == ASSUMED


def test_exec_keeps_the_pid_and_signals_are_native(launch: Launch) -> None:
    result = launch([*MODULE, "sh", "-c", "echo $$; kill -TERM $$"])
    assert result.returncode == -signal.SIGTERM
    assert int(result.stdout) == result.pid  # the shell replaced the launcher


def test_the_program_gets_the_signal_dispositions_of_a_plain_start(launch: Launch) -> None:
    # Python ignores SIGPIPE and SIGXFSZ, and exec keeps ignored signals: without the
    # reset, `yes | head` under brs-run ends in "Broken pipe" errors, not a quiet SIGPIPE.
    pipeline = "yes | head -n 2; trap"
    plain = launch(["sh", "-c", pipeline])
    under = launch([*MODULE, "sh", "-c", pipeline])
    assert (under.returncode, under.stdout, under.stderr) == (0, "y\ny\n", "")
    assert (under.stdout, under.stderr) == (plain.stdout, plain.stderr)  # no trap '' PIPE either
    if os.path.exists("/proc/self/status"):
        show = "grep SigIgn /proc/self/status"
        assert launch([*MODULE, "sh", "-c", show]).stdout == launch(["sh", "-c", show]).stdout


def test_options_set_the_brs_variables(launch: Launch) -> None:
    other = make_role_arn("from-the-flag")
    show = "import json, os; print(json.dumps({k: v for k, v in os.environ.items() if k[:4] == 'BRS_'}))"
    result = launch([
        *MODULE, "--role-arn", other, "--session-name=flagged", "--duration-seconds", "1800",
        "--log-level", "warning", "--no-defer-refresh", "--no-propagate",
        "python", "-c", show,
    ])
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["BRS_ROLE_ARN"] == other
    assert seen["BRS_ROLE_SESSION_NAME"] == "flagged"
    assert seen["BRS_DURATION_SECONDS"] == "1800"
    assert seen["BRS_LOG_LEVEL"] == "warning"
    assert seen["BRS_DEFER_REFRESH"] == "false"
    assert seen["BRS_PROPAGATE"] == "false"
    assert "BRS_BOOTSTRAP" not in seen  # --no-propagate: removed for this process's children


def test_options_stop_at_the_command() -> None:
    parsed = parse_args(["--role-arn", "R", "--", "--help", "x"])
    assert (parsed.env_updates, parsed.command) == ({"BRS_ROLE_ARN": "R"}, ["--help", "x"])
    parsed = parse_args(["--no-propagate", "python", "--version", "--role-arn", "x"])
    assert parsed.command == ["python", "--version", "--role-arn", "x"]
    assert parse_args(["--check"]).action == "check"


# -- bad settings and usage: exit 2, the program never starts ----------------------------------

@pytest.mark.parametrize(("env", "flags", "variable"), [
    ({"BRS_DURATION_SECONDS": "5"}, [], "BRS_DURATION_SECONDS"),
    ({}, ["--duration-seconds", "5"], "BRS_DURATION_SECONDS"),
    ({"BRS_ROLE_ARN": "not-an-arn"}, [], "BRS_ROLE_ARN"),
    ({"BRS_ROLE_ARN": None}, [], "BRS_ROLE_ARN is not set"),
    # Only botocore's STS model knows these keys: the launcher loads botocore for them.
    ({"BRS_ASSUME_ROLE_KWARGS": '{"Bogus": 1}'}, [], "BRS_ASSUME_ROLE_KWARGS"),
    ({"BRS_STS_CLIENT_KWARGS": '{"bogus": 1}'}, [], "BRS_STS_CLIENT_KWARGS"),
    ({"BRS_METHOD": "no-such-plugin"}, [], "BRS_METHOD"),
], ids=["env", "flag", "arn", "no-role", "assume-role-kwargs", "client-kwargs", "method"])
def test_bad_settings_exit_2_with_one_line_and_the_program_never_starts(
    launch: Launch, tmp_path: Path, env: dict[str, str | None], flags: list[str], variable: str
) -> None:
    marker = tmp_path / "started"
    result = launch([*MODULE, *flags, "python", "-c", f"open({str(marker)!r}, 'w').close()"], env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("brs-run: ")
    assert variable in result.stderr
    assert not marker.exists()


def test_on_error_warn_runs_the_program_unpatched(launch: Launch) -> None:
    show = "import os; print(os.environ.get('BRS_BOOTSTRAP'))"
    result = launch([*MODULE, "python", "-c", show],
                    env={"BRS_DURATION_SECONDS": "5", "BRS_ON_ERROR": "warn"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "None\n"
    assert "brs-run: warning: not patching (BRS_ON_ERROR=warn): BRS_DURATION_SECONDS" in result.stderr


@pytest.mark.parametrize("broken", [{}, {"BRS_DURATION_SECONDS": "5"}], ids=["ok", "broken"])
def test_disabled_runs_the_program_unchanged(launch: Launch, broken: dict[str, str]) -> None:
    # The kill switch works even when other settings are broken.
    given = f"{REPO_ROOT}::/nonexistent/x:"
    show = "import os; print(os.environ['PYTHONPATH']); print(os.environ.get('BRS_BOOTSTRAP'))"
    result = launch([*MODULE, "python", "-c", show],
                    env={"BRS_ENABLED": "false", "BRS_ROLE_ARN": None, "PYTHONPATH": given, **broken})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [given, "None"]


@pytest.mark.parametrize("args", [[], ["--"], ["--role-arn", ROLE], ["--no-propagate", "--"]])
def test_no_command_prints_usage_and_exits_2(launch: Launch, args: list[str]) -> None:
    result = launch([*MODULE, *args])
    assert result.returncode == 2
    assert result.stdout == ""
    assert "usage: brs-run [options] [--] command [args...]" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--frobnicate", "true"], "unknown option '--frobnicate'"),
    (["--role-arn"], "option --role-arn needs a value"),
    (["-x", "true"], "unknown option '-x'"),
])
def test_bad_options_exit_2(launch: Launch, args: list[str], message: str) -> None:
    result = launch([*MODULE, *args])
    assert result.returncode == 2
    assert message in result.stderr
    assert "usage:" in result.stderr


def test_help_and_version(launch: Launch) -> None:
    result = launch([*MODULE, "--help"], env={"BRS_ROLE_ARN": None})
    assert result.returncode == 0, result.stderr
    for text in ("usage: brs-run", "--[no-]propagate", "--check", "BRS_ROLE_ARN", "BRS_PROPAGATE", "-S"):
        assert text in result.stdout
    for flag in ("--version", "-V"):
        result = launch([*MODULE, flag])
        assert (result.returncode, result.stdout) == (0, f"brs-run (brs_autopatch) {__version__}\n")


# -- finding the program: 127 / 126 ------------------------------------------------------------

def test_missing_program_exits_127(launch: Launch) -> None:
    result = launch([*MODULE, "brs-no-such-program", "arg"])
    assert result.returncode == 127
    assert result.stderr == "brs-run: brs-no-such-program: command not found\n"
    result = launch([*MODULE, "./no/such/file"])
    assert result.returncode == 127
    assert "no such file or directory" in result.stderr


def test_py_file_that_is_not_executable_exits_126_with_a_hint(launch: Launch, tmp_path: Path) -> None:
    write(tmp_path / "app.py", "print('hello')\n", mode=0o644)
    result = launch([*MODULE, "./app.py"], cwd=tmp_path)
    assert result.returncode == 126
    assert "permission denied; did you mean `brs-run python ./app.py`?" in result.stderr
    # Not on PATH at all, but here: 127, and the same hint.
    result = launch([*MODULE, "app.py"], cwd=tmp_path)
    assert result.returncode == 127
    assert "app.py: command not found; did you mean `brs-run python app.py`?" in result.stderr
    # On PATH without the execute bit: 126 (as sh says), with the hint.
    write(tmp_path / "bin" / "tool.py", "print('hello')\n", mode=0o644)
    path = f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    result = launch([*MODULE, "tool.py"], env={"PATH": path})
    assert result.returncode == 126
    assert "did you mean `brs-run python tool.py`?" in result.stderr
    result = launch([*MODULE, tmp_path / "bin"])
    assert (result.returncode, "is a directory" in result.stderr) == (126, True)


def test_script_without_shebang_exits_126(launch: Launch, tmp_path: Path) -> None:
    write(tmp_path / "noshebang.py", "print('hello')\n", mode=0o755)
    result = launch([*MODULE, "./noshebang.py"], cwd=tmp_path)
    assert result.returncode == 126
    assert "cannot execute" in result.stderr
    assert "did you mean `brs-run python ./noshebang.py`?" in result.stderr


@pytest.mark.parametrize("shebang", [sys.executable, "/usr/bin/env python"])
def test_executable_script_runs_patched(launch: Launch, tmp_path: Path, shebang: str) -> None:
    write(tmp_path / "bin" / "hello", f"#!{shebang}\n{IDENTITY}\n", mode=0o755)
    path = f"{tmp_path / 'bin'}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    result = launch([*MODULE, "hello"], env={"PATH": path})
    assert (result.returncode, result.stdout, result.stderr) == (0, ASSUMED + "\n", "")


# -- PYTHONPATH ------------------------------------------------------------------------------------

def test_pythonpath_gets_the_bootstrap_first_deduplicated_without_cwd(
    launch: Launch, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    stale = "/old/venv/lib/python3.9/site-packages/brs_autopatch/bootstrap"
    given = f":{a}:{REPO_ROOT}::{b}/:{a}:{stale}:"
    script = write(tmp_path / "scripts" / "show.py", (
        "import json, os, sys\n"
        "print(os.environ['PYTHONPATH'])\n"
        "print(json.dumps([p for p in sys.path if p in ('', '.', os.getcwd())]))\n"
    ))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = launch([*MODULE, "python", script], env={"PYTHONPATH": given}, cwd=cwd)
    assert result.returncode == 0, result.stderr
    pythonpath, cwd_entries = result.stdout.splitlines()
    assert pythonpath.split(os.pathsep) == [BOOTSTRAP_DIR, str(a), str(REPO_ROOT), f"{b}/"]
    assert json.loads(cwd_entries) == []


def test_pythonpath_unset_becomes_the_bootstrap_alone(launch: Launch) -> None:
    # brs_autopatch comes from the installed package here, not necessarily this checkout.
    result = launch([*MODULE, "sh", "-c", 'printf %s "$PYTHONPATH"'], env={"PYTHONPATH": None})
    assert result.returncode == 0, result.stderr
    assert os.pathsep not in result.stdout
    assert result.stdout.endswith(os.path.join("", "brs_autopatch", "bootstrap"))


def test_nested_launchers_add_the_bootstrap_once(launch: Launch) -> None:
    show = "import os; print(os.environ['PYTHONPATH'])"
    result = launch([*MODULE, *MODULE, "python", "-c", show])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split(os.pathsep) == [BOOTSTRAP_DIR, str(REPO_ROOT)]


def test_build_pythonpath_keeps_relative_and_user_entries_in_order() -> None:
    assert build_pythonpath(None) == BOOTSTRAP_DIR
    assert build_pythonpath("") == BOOTSTRAP_DIR
    assert build_pythonpath("src:.:src/:lib::.") == os.pathsep.join([BOOTSTRAP_DIR, "src", ".", "lib"])
    assert build_pythonpath(f"{BOOTSTRAP_DIR}:x:{BOOTSTRAP_DIR}/") == f"{BOOTSTRAP_DIR}:x"


# -- what the launcher process itself loads; uWSGI ---------------------------------------------

def test_the_launcher_imports_neither_boto3_nor_botocore_nor_wrapt(launch: Launch) -> None:
    result = launch([sys.executable, "-X", "importtime", "-m", "brs_autopatch", "true"])
    assert result.returncode == 0, result.stderr
    modules = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
               if line.startswith("import time:")}
    assert "brs_autopatch.launch.main" in modules
    assert {m for m in modules if m.split(".")[0] in ("boto3", "botocore", "wrapt")} == set()


def test_uwsgi_without_lazy_apps_gets_a_warning(launch: Launch, tmp_path: Path) -> None:
    write(tmp_path / "bin" / "uwsgi", "#!/bin/sh\nexit 0\n", mode=0o755)
    path = f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    result = launch([*MODULE, "uwsgi", "--http", ":0", "--module", "app"], env={"PATH": path})
    assert result.returncode == 0
    assert "brs-run: warning: uWSGI" in result.stderr
    assert "--lazy-apps" in result.stderr
    result = launch([*MODULE, "uwsgi", "--lazy-apps", "--http", ":0"], env={"PATH": path})
    assert (result.returncode, result.stderr) == (0, "")
