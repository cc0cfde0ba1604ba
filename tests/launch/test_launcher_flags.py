"""brs-run's conventions: a flag for every setting (from the table), --debug, -V, the help,
log lines with the PID, the uWSGI lazy-apps check reading ini files and UWSGI_* variables."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from launching import MODULE, ROLE, Launch, write
from stsclient import RunPython, StsServer

from brs_autopatch.config.variables import BOOLEAN_VARIABLES, VARIABLES
from brs_autopatch.launch.options import UsageError, help_text, option_name, parse_args
from brs_autopatch.launch.uwsgi import uwsgi_lazy_apps


@pytest.mark.parametrize("variable", sorted(VARIABLES))
def test_every_setting_has_an_option(variable: str) -> None:
    option = option_name(variable)
    if variable in BOOLEAN_VARIABLES:
        assert parse_args([option, "cmd"]).env_updates == {variable: "true"}
        assert parse_args(["--no-" + option[2:], "cmd"]).env_updates == {variable: "false"}
        assert parse_args([f"{option}=off", "cmd"]).env_updates == {variable: "off"}
    else:
        assert parse_args([option, "v 1", "cmd"]).env_updates == {variable: "v 1"}
        parsed = parse_args([f"{option}=a=b", "cmd"])
        assert (parsed.env_updates, parsed.command) == ({variable: "a=b"}, ["cmd"])
    assert variable in help_text() and option[2:] in help_text()


def test_names_and_aliases() -> None:
    assert option_name("BRS_CACHE_DIR") == "--cache-dir"
    assert parse_args(["--session-name", "s", "--debug", "x"]).env_updates == {
        "BRS_ROLE_SESSION_NAME": "s", "BRS_LOG_LEVEL": "DEBUG",
    }
    assert parse_args(["-V"]).action == "version"
    for bad in (["--no-defer-refresh=true"], ["--debug=1"], ["--cache-dir"]):
        with pytest.raises(UsageError):
            parse_args(bad)


def test_generated_options_reach_the_program(launch: Launch, tmp_path: Path) -> None:
    show = "import json, os; print(json.dumps({k: v for k, v in os.environ.items() if k[:4] == 'BRS_'}))"
    cache = tmp_path / "cache"
    result = launch([*MODULE, f"--cache-dir={cache}", "--mfa-timeout-seconds", "7", "--debug",
                     "--no-enabled", "python", "-c", show])
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert (seen["BRS_CACHE_DIR"], seen["BRS_MFA_TIMEOUT_SECONDS"]) == (str(cache), "7")
    assert (seen["BRS_LOG_LEVEL"], seen["BRS_ENABLED"]) == ("DEBUG", "false")


def test_a_bad_value_given_by_option_exits_2(launch: Launch) -> None:
    result = launch([*MODULE, "--propagate=maybe", "true"])
    assert result.returncode == 2
    assert "BRS_PROPAGATE='maybe' is not valid" in result.stderr


def test_log_lines_carry_the_pid(run_python: RunPython, sts: StsServer) -> None:
    code = "import os, brs_autopatch, boto3; boto3.client('sts').get_caller_identity(); print(os.getpid())"
    result = run_python(code, env={"BRS_ROLE_ARN": ROLE, "BRS_LOG_LEVEL": "INFO"}, check=True)
    pid = result.stdout.strip()
    refreshed = [line for line in result.stderr.splitlines() if "refreshed credentials" in line]
    assert len(refreshed) == 1, result.stderr
    assert f" brs_autopatch[{pid}] INFO " in refreshed[0]


# -- uWSGI lazy-apps -------------------------------------------------------------------------------

@pytest.mark.parametrize(("ini", "lazy"), [
    ("[uwsgi]\nmodule = app\nlazy-apps = true\n", True),
    ("[uwsgi]\nlazy-apps = 1\nenv = A=1\nenv = B=2\n", True),  # repeated keys are normal
    ("[uwsgi]\nlazy-apps = false\n", False),
    ("[uwsgi]\nmodule = app\n", False),
    ("[other]\nlazy-apps = true\n", False),
    ("not an ini file at all", False),
])
def test_lazy_apps_from_an_ini_file(tmp_path: Path, ini: str, lazy: bool) -> None:
    path = write(tmp_path / "app.ini", ini)
    for command in (["uwsgi", "--ini", str(path)], ["uwsgi", f"--ini={path}"], ["uwsgi", str(path)]):
        assert uwsgi_lazy_apps(command, {}) is lazy, command
    assert uwsgi_lazy_apps(["uwsgi"], {"UWSGI_INI": str(path)}) is lazy


def test_lazy_apps_sources_in_order(tmp_path: Path) -> None:
    on = write(tmp_path / "on.ini", "[uwsgi]\nlazy-apps = true\n")
    off = write(tmp_path / "off.ini", "[uwsgi]\nlazy-apps = false\n[prod]\nlazy-apps = true\n")
    assert uwsgi_lazy_apps(["uwsgi", "--lazy-apps"], {})
    assert uwsgi_lazy_apps(["uwsgi"], {"UWSGI_LAZY_APPS": "1"})
    assert not uwsgi_lazy_apps(["uwsgi"], {"UWSGI_LAZY_APPS": "0"})
    assert not uwsgi_lazy_apps(["uwsgi", "--ini", str(on), "--ini", str(off)], {})  # the last one says
    assert uwsgi_lazy_apps(["uwsgi", "--ini", f"{off}:prod"], {})  # file:section
    assert uwsgi_lazy_apps(["uwsgi", "--ini", str(off), "--lazy-apps"], {})  # flags win
    assert not uwsgi_lazy_apps(["uwsgi", "--ini", str(tmp_path / "missing.ini")], {})


def test_uwsgi_with_lazy_apps_in_its_ini_starts_without_a_warning(launch: Launch, tmp_path: Path) -> None:
    write(tmp_path / "bin" / "uwsgi", "#!/bin/sh\nexit 0\n", mode=0o755)
    path = f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    write(tmp_path / "app.ini", "[uwsgi]\nhttp = :0\nlazy-apps = true\n")
    quiet = launch([*MODULE, "uwsgi", "--ini", "app.ini"], env={"PATH": path})
    assert (quiet.returncode, quiet.stderr) == (0, "")
    write(tmp_path / "eager.ini", "[uwsgi]\nhttp = :0\n")
    warned = launch([*MODULE, "uwsgi", "eager.ini"], env={"PATH": path})
    assert warned.returncode == 0 and "brs-run: warning: uWSGI" in warned.stderr
