"""The bootstrap sitecustomize that brs-run puts first on PYTHONPATH.

User sitecustomize chained exactly once (PYTHONPATH, site-packages, raising, none),
the interpreter guard, propagation to child processes, and its start-up cost.
All in fresh interpreters against the local STS.
"""

from __future__ import annotations

import ast
import multiprocessing
import os
import sys
from pathlib import Path

import pytest
from launching import ASSUMED, MODULE, USER_SITE, Launch, make_venv, native_sitecustomize, run_command, write
from stsclient import REPO_ROOT

from brs_autopatch.config.fingerprint import BOOTSTRAP_ENV
from brs_autopatch.launch import main as launcher
from brs_autopatch.launch.main import BOOTSTRAP_DIR, bootstrap_value
from brs_autopatch.patch import deferred

BOOTSTRAP_FILE = os.path.join(BOOTSTRAP_DIR, "sitecustomize.py")

# Which sitecustomize is sys.modules["sitecustomize"], is botocore patched as it is
# imported, and (with an argument) who does STS say we are.
SHOW = """\
import sys
import sitecustomize
print(getattr(sitecustomize, "USER_SITE_RAN", False), sitecustomize.__file__)
import botocore.session
# Under brs-run the first session makes the installation (brs_autopatch.patch.deferred).
botocore.session.Session()
print(hasattr(botocore, "__brs_autopatch__"))
if sys.argv[1:] == ["identity"]:
    import boto3
    print(boto3.client("sts").get_caller_identity()["Arn"])
"""


@pytest.fixture
def show(tmp_path: Path) -> Path:
    return write(tmp_path / "prog" / "show.py", SHOW)


@pytest.fixture
def user_site(tmp_path: Path) -> Path:
    """A directory holding a user sitecustomize.py, for PYTHONPATH."""
    write(tmp_path / "usersite" / "sitecustomize.py", USER_SITE)
    return tmp_path / "usersite"


@pytest.fixture(scope="module")
def other_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another venv with a user sitecustomize in its site-packages.

    It sees this venv's packages (boto3, brs_autopatch) through a .pth file, so
    brs-run can run from it too; its sys.prefix is its own.
    """
    root = tmp_path_factory.mktemp("venv") / "other"
    make_venv(sys.executable, root)
    return root


def _lines(text: str) -> list[str]:
    return text.splitlines()


def _program_runs(log: Path) -> list[str]:
    """The sitecustomize files the program's interpreter ran, in order."""
    return [line.split(" ", 1)[1] for line in _lines(log.read_text()) if line.startswith("program ")]


def without_user_site(python: str | os.PathLike[str] = sys.executable) -> str:
    """SHOW's first line when no sitecustomize of the user's runs: the interpreter's own
    (a distro's), else the bootstrap, which then stays sys.modules["sitecustomize"]."""
    return f"False {native_sitecustomize(python) or BOOTSTRAP_FILE}"


# -- chaining the user's sitecustomize ---------------------------------------------------------

def test_user_sitecustomize_on_pythonpath_runs_once_before_the_patch(
    launch: Launch, show: Path, user_site: Path, tmp_path: Path
) -> None:
    log = tmp_path / "user-site.log"
    result = launch([*MODULE, "python", show, "identity"], env={
        "PYTHONPATH": f"{user_site}{os.pathsep}{REPO_ROOT}",
        "USER_SITE_LOG": str(log),
        # Set by the user's sitecustomize: honoured because it runs first.
        "USER_SITE_SESSION": "set-by-user-site",
    })
    assert result.returncode == 0, result.stderr
    assert _lines(result.stdout) == [
        f"True {user_site / 'sitecustomize.py'}",
        "True",
        ASSUMED.rsplit("/", 1)[0] + "/set-by-user-site",
    ]
    assert result.stderr == ""
    assert _program_runs(log) == [str(user_site / "sitecustomize.py")]


def test_user_sitecustomize_in_site_packages_runs_once(
    launch: Launch, show: Path, other_venv: Path, tmp_path: Path
) -> None:
    log = tmp_path / "user-site.log"
    bin_dir = other_venv / "bin"
    # brs-run from the other venv, `python` = the other venv's: the guard lets it through.
    result = launch([bin_dir / "python", "-m", "brs_autopatch", "python", show, "identity"], env={
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "USER_SITE_LOG": str(log),
    })
    assert result.returncode == 0, result.stderr
    out = _lines(result.stdout)
    native = native_sitecustomize(bin_dir / "python")
    in_site_packages = os.path.join("site-packages", "sitecustomize.py")
    if native is None or native.endswith(in_site_packages):
        assert out[0].startswith("True ") and out[0].endswith(in_site_packages)
        assert _program_runs(log) == [out[0].split(" ", 1)[1]]
    else:
        # A Debian/Ubuntu interpreter: its own sitecustomize shadows the one in site-packages,
        # with brs-run as without (sitecustomize_example/README.md; tests/launch/test_pth.py has the
        # way in that works there). brs-run runs what Python would have run.
        assert out[0] == f"False {native}"
        assert not log.exists() or _program_runs(log) == []
    assert out[1:] == ["True", ASSUMED]
    assert result.stderr == ""


def test_raising_user_sitecustomize_is_reported_like_site_does_and_the_patch_applies(
    launch: Launch, show: Path, user_site: Path, tmp_path: Path
) -> None:
    log = tmp_path / "user-site.log"
    env: dict[str, str | None] = {
        "PYTHONPATH": f"{user_site}{os.pathsep}{REPO_ROOT}",
        "USER_SITE_LOG": str(log),
        "USER_SITE_RAISE": "user site broke",
    }
    plain = launch(["python", "-c", "pass"], env=env)
    result = launch([*MODULE, "python", show, "identity"], env=env)
    assert result.returncode == 0, result.stderr
    # The report site.py prints without brs-run, from the program's interpreter, and
    # the same from the launcher's own interpreter, which has the same PYTHONPATH.
    assert plain.stderr == "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n" \
                           "RuntimeError: user site broke\n"
    assert result.stderr == plain.stderr * 2
    # sys.modules["sitecustomize"] is left usable (the bootstrap), and the patch applies.
    assert _lines(result.stdout) == [f"False {BOOTSTRAP_FILE}", "True", ASSUMED]
    assert _program_runs(log) == [str(user_site / "sitecustomize.py")]


def test_without_a_user_sitecustomize_the_bootstrap_stays_and_prints_nothing(
    launch: Launch, show: Path
) -> None:
    result = launch([*MODULE, "python", show])
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == (f"{without_user_site()}\nTrue\n", "")


# -- the guard ---------------------------------------------------------------------------------

def _guard_cases() -> list[tuple[str | None, str]]:
    protocol, version, mark, directory, prefix = bootstrap_value().split(":", 4)
    stale = "/old/site-packages/brs_autopatch/bootstrap"
    return [
        (None, "BRS_BOOTSTRAP is not set"),
        (f"9:{version}:{mark}:{directory}:{prefix}", "another brs_autopatch version"),
        (f"1:{version}:{directory}:{prefix}", "another brs_autopatch version"),  # before the fingerprint
        (f"{protocol}:2.7:{mark}:{directory}:{prefix}", "brs-run ran under Python 2.7"),
        (f"{protocol}:{version}:{mark}:{stale}:{prefix}", "stale bootstrap"),
        (f"{protocol}:{version}:{mark}:{directory}:/some/other/venv", "prefix"),
    ]


@pytest.mark.parametrize(("value", "reason"), _guard_cases(),
                         ids=["unset", "protocol", "protocol-1", "python", "stale", "prefix"])
def test_the_guard_skips_an_interpreter_brs_run_did_not_set_up(
    base_env: dict[str, str], tmp_path: Path, show: Path, value: str | None, reason: str
) -> None:
    env = dict(base_env, PYTHONPATH=f"{BOOTSTRAP_DIR}{os.pathsep}{REPO_ROOT}")
    env.pop("BRS_BOOTSTRAP", None)
    if value is not None:
        env["BRS_BOOTSTRAP"] = value
    quiet = run_command([sys.executable, show], env, tmp_path)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, f"{without_user_site()}\nFalse\n", "")
    debug = run_command([sys.executable, show], dict(env, BRS_LOG_LEVEL="DEBUG"), tmp_path)
    assert debug.stdout == quiet.stdout
    assert len(_lines(debug.stderr)) == 1, debug.stderr
    assert "not patching this interpreter" in debug.stderr
    assert reason in debug.stderr


def test_the_guard_lets_the_interpreter_brs_run_set_up_through(
    base_env: dict[str, str], tmp_path: Path, show: Path
) -> None:
    env = dict(base_env, PYTHONPATH=f"{BOOTSTRAP_DIR}{os.pathsep}{REPO_ROOT}",
               BRS_BOOTSTRAP=bootstrap_value())
    result = run_command([sys.executable, show], env, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{without_user_site()}\nTrue\n", "")


def test_a_python_from_another_venv_runs_unpatched_quietly(
    launch: Launch, show: Path, other_venv: Path, tmp_path: Path
) -> None:
    log = tmp_path / "user-site.log"
    python = other_venv / "bin" / "python"
    result = launch([*MODULE, python, show], env={"USER_SITE_LOG": str(log)})
    assert result.returncode == 0, result.stderr
    out = _lines(result.stdout)
    native = native_sitecustomize(python)
    if native is None or native.endswith(os.path.join("site-packages", "sitecustomize.py")):
        assert out[0].startswith("True ")  # its own site-packages sitecustomize still ran
        assert _program_runs(log) == [out[0].split(" ", 1)[1]]
    else:  # a Debian/Ubuntu interpreter's own, as without brs-run
        assert out[0] == f"False {native}"
    assert out[1:] == ["False"]
    # The launcher says so once, about the program it was given; the child is quiet.
    assert _lines(result.stderr) == [
        f"brs-run: warning: {python} runs {python}, not a Python of this environment "
        f"({sys.executable}): it will start unpatched. Install brs_autopatch there and use "
        "that environment's brs-run, or run this environment's python"
    ]
    # A script whose #! names that Python: the same warning, naming the script.
    tool = write(tmp_path / "bin" / "tool", f"#!{python}\n{SHOW}", mode=0o755)
    result = launch([*MODULE, tool])
    assert result.returncode == 0, result.stderr
    assert f"warning: {tool} runs {python}, not a Python of this environment" in result.stderr
    # A grandchild from that venv: only the bootstrap's DEBUG line says why.
    code = f"import subprocess; subprocess.run([{str(python)!r}, {str(show)!r}], check=True)"
    result = launch([*MODULE, "python", "-c", code], env={"BRS_LOG_LEVEL": "DEBUG"})
    assert result.returncode == 0, result.stderr
    assert _lines(result.stdout)[1:] == ["False"]
    assert len(_lines(result.stderr)) == 1, result.stderr
    assert "not patching this interpreter" in result.stderr
    assert "prefix" in result.stderr


@pytest.mark.parametrize("flag", ["-E", "-I", "-S"])
def test_python_flags_that_skip_pythonpath_or_site_run_unpatched(
    launch: Launch, flag: str
) -> None:
    code = "import sys; print('brs_autopatch' in sys.modules)"
    result = launch([*MODULE, "python", flag, "-c", code])
    assert (result.returncode, result.stdout, result.stderr) == (0, "False\n", "")


# -- child processes ---------------------------------------------------------------------------

CHILDREN = """\
import multiprocessing, os, subprocess, sys
import boto3


def arn():
    return boto3.client("sts").get_caller_identity()["Arn"]


def report(queue):
    queue.put(arn())


if __name__ == "__main__":
    print("parent", arn(), flush=True)
    code = "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    print("subprocess", child.stdout.strip() or child.stderr.strip(), flush=True)
    # The interpreter's own default too: fork up to 3.13, forkserver from 3.14 on Linux.
    for method in ("spawn", "forkserver", None):
        context = multiprocessing.get_context(method)
        queue = context.Queue()
        process = context.Process(target=report, args=(queue,))
        process.start()
        print(method or "default", queue.get(timeout=60), flush=True)
        process.join(30)
    print("bootstrap-in-env", "BRS_BOOTSTRAP" in os.environ, flush=True)
"""


@pytest.mark.parametrize("propagate", [True, False], ids=["propagate", "no-propagate"])
def test_child_processes_are_patched_unless_propagation_is_off(
    launch: Launch, tmp_path: Path, propagate: bool
) -> None:
    program = write(tmp_path / "children.py", CHILDREN)
    env = {} if propagate else {"BRS_PROPAGATE": "0"}
    result = launch([*MODULE, "python", program], env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = dict(line.split(" ", 1) for line in _lines(result.stdout))
    assert seen["parent"] == ASSUMED  # the first process is patched either way
    if propagate:
        assert [seen[name] for name in ("subprocess", "spawn", "forkserver", "default")] == [ASSUMED] * 4
        assert seen["bootstrap-in-env"] == "True"
    else:
        for name in ("subprocess", "spawn", "forkserver"):
            assert ":assumed-role/" not in seen[name], seen
        # A fork of the first process is patched; a forkserver's children are not.
        default = multiprocessing.get_all_start_methods()[0]  # documented: the first is the default
        assert seen["default"] == (ASSUMED if default == "fork" else seen["spawn"]), seen
        assert seen["bootstrap-in-env"] == "False"


# -- start-up cost ---------------------------------------------------------------------------

SHOW_MODULES = """\
import sys
armed = [f for f in sys.meta_path if getattr(f, "brs_autopatch_finder", False)]
print(len(armed), " ".join(sorted(sys.modules)))
"""


def test_an_interpreter_that_never_imports_boto3_loads_almost_nothing(launch: Launch) -> None:
    show_modules = ["python", "-c", SHOW_MODULES]
    plain = launch(show_modules)
    under = launch([*MODULE, *show_modules])
    assert plain.returncode == under.returncode == 0, under.stderr
    # The bootstrap ran (its finder waits for botocore), once; not without brs-run.
    assert (plain.stdout.split()[0], under.stdout.split()[0]) == ("0", "1")
    extra = set(under.stdout.split()[1:]) - set(plain.stdout.split()[1:])
    # Only the bootstrap: brs_autopatch itself is loaded when botocore is imported. (Under
    # a Debian interpreter, whose own sitecustomize runs either way, not even that name.)
    assert extra <= {"sitecustomize"}
    assert ("sitecustomize" in extra) == (native_sitecustomize(sys.executable) is None)
    assert {m for m in extra if m.startswith("brs_autopatch")} == set()
    heavy = {"typing", "logging", "json", "re", "threading", "dataclasses", "importlib.util",
             "contextlib", "inspect", "botocore", "boto3", "wrapt", "multiprocessing", "asyncio"}
    assert extra & heavy == set()


def test_the_bootstrap_directory_holds_only_sitecustomize() -> None:
    entries = {p.name for p in Path(BOOTSTRAP_DIR).iterdir() if p.name != "__pycache__"}
    assert entries == {"sitecustomize.py"}


def test_launcher_and_bootstrap_agree_on_the_protocol() -> None:
    # The bootstrap cannot import the launcher (too costly): its constants are its own.
    tree = ast.parse(Path(BOOTSTRAP_FILE).read_text())
    constants = {
        target.id: node.value.value
        for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets if isinstance(target, ast.Name)
    }
    assert constants["PROTOCOL"] == launcher.BOOTSTRAP_PROTOCOL
    assert constants["ENV"] == BOOTSTRAP_ENV
    # The mark brs_autopatch.patch.deferred finds the bootstrap's finder by.
    (finder,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "_BeforeBotocore"]
    attributes = {
        t.id for n in finder.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
    } | {n.target.id for n in finder.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    assert deferred.FINDER_MARK in attributes
    assert {"bootstrap", "started"} <= attributes
    assert "as_launched" in {n.name for n in finder.body if isinstance(n, ast.FunctionDef)}


# -- loading brs_autopatch with botocore -------------------------------------------------------

LOADED = """\
import sys
before = "brs_autopatch" in sys.modules
import boto3
print(before, "brs_autopatch" in sys.modules, [p for p in sys.path if p.endswith("bootstrap")])
print(boto3.client("sts").get_caller_identity()["Arn"])
"""


def test_brs_autopatch_arrives_with_botocore_and_the_bootstrap_leaves_sys_path(launch: Launch) -> None:
    result = launch([*MODULE, "python", "-c", LOADED])
    assert result.returncode == 0, result.stderr
    assert _lines(result.stdout) == ["False True []", ASSUMED]


def test_a_user_sitecustomize_that_imports_botocore_gets_it_patched(
    launch: Launch, tmp_path: Path
) -> None:
    site = write(tmp_path / "early" / "sitecustomize.py", "import botocore.session\n").parent
    result = launch([*MODULE, "python", "-c", LOADED], env={"PYTHONPATH": f"{site}{os.pathsep}{REPO_ROOT}"})
    assert result.returncode == 0, result.stderr
    assert _lines(result.stdout) == ["True True []", ASSUMED]


def test_a_brs_autopatch_that_fails_to_load_leaves_botocore_unpatched_with_one_line(
    launch: Launch, tmp_path: Path
) -> None:
    # The program puts a broken brs_autopatch first on its path before importing boto3.
    write(tmp_path / "shadow" / "brs_autopatch" / "__init__.py", "raise RuntimeError('broken copy')\n")
    code = f"import sys; sys.path.insert(0, {str(tmp_path / 'shadow')!r})\n{LOADED}"
    result = launch([*MODULE, "python", "-c", code])
    assert result.returncode == 0, result.stderr
    out = _lines(result.stdout)
    assert out[0] == "False False []" and ":assumed-role/" not in out[1]  # botocore's own chain
    assert _lines(result.stderr) == ["brs_autopatch: not patching this process: RuntimeError: broken copy"]
