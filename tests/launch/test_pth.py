"""``brs-run --install-pth``: the interpreter-wide way in, as a start-up line in site-packages.

Each test makes a venv (``--without-pip``; it sees this venv's packages through a .pth of
its own) from this interpreter and, when there is one, from Debian's ``/usr/bin/python3``,
whose own ``/usr/lib/python3.X/sitecustomize.py`` shadows any sitecustomize in site-packages.
Then programs run in fresh interpreters of that venv against the local STS, with nothing but
``BRS_ROLE_ARN`` (and the fake AWS settings) in their environment: no brs-run, no PYTHONPATH.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from doc_blocks import fenced
from launching import USER_SITE, Result, make_venv, native_sitecustomize, run_command, write
from stsclient import DEFAULT_ACCOUNT_ID, REPO_ROOT, StsServer, child_env

from brs_autopatch.launch import pth
from brs_autopatch.launch.main import BOOTSTRAP_DIR

ROLE = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/pth-role"
ASSUMED_PREFIX = f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:assumed-role/pth-role/"
DEBIAN_PYTHON = Path("/usr/bin/python3")
EXAMPLE_SITE = REPO_ROOT / "sitecustomize_example" / "sitecustomize.py"

# Which sitecustomize ran, did the line arm the finder (before botocore: brs_autopatch not
# loaded yet), is botocore patched as it arrives, and who does STS say we are.
SHOW = """\
import sys
import sitecustomize
armed = [f for f in sys.meta_path if getattr(f, "brs_autopatch_finder", False)]
print(getattr(sitecustomize, "USER_SITE_RAN", False), sitecustomize.__file__)
print(len(armed), "brs_autopatch" in sys.modules)
import boto3, botocore
sts = boto3.client("sts")  # under brs-run the first session makes the installation
print(hasattr(botocore, "__brs_autopatch__"))
print(sts.get_caller_identity()["Arn"])
"""


def _debian_python_or_skip() -> Path:
    """Debian's own interpreter, usable with this venv's packages, or skip saying why."""
    if not DEBIAN_PYTHON.exists():
        pytest.skip(f"{DEBIAN_PYTHON} does not exist (not a Debian/Ubuntu machine)")
    version = subprocess.run(
        [DEBIAN_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, timeout=60,
    ).stdout.strip()
    ours = "{}.{}".format(*sys.version_info[:2])
    if version != ours:
        pytest.skip(f"{DEBIAN_PYTHON} is Python {version}: this suite's packages are for {ours}")
    return DEBIAN_PYTHON


@pytest.fixture(scope="module", params=["this-python", "debian-python3"])
def venv_python(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = sys.executable if request.param == "this-python" else _debian_python_or_skip()
    return make_venv(base, tmp_path_factory.mktemp("pth") / "venv")


def _site_dir(python: Path) -> Path:
    return Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip())


@pytest.fixture
def installed(venv_python: Path) -> Iterator[Path]:
    """The venv with the line installed by its own brs-run; removed again afterwards."""
    result = subprocess.run([venv_python, "-m", "brs_autopatch", "--install-pth"],
                            capture_output=True, text=True, timeout=120, env=_plain_env())
    assert result.returncode == 0, result.stderr
    pth_file = _site_dir(venv_python) / pth.PTH_NAME
    assert result.stdout == (f"brs-run: installed {pth_file}: every {venv_python} started with "
                             "BRS_ROLE_ARN set is patched\n")
    yield venv_python
    pth_file.unlink(missing_ok=True)


def _plain_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items()
            if not name.startswith(("BRS_", "PYTHONPATH"))}


def _env(aws_env: Mapping[str, str], tmp_path: Path, **overrides: str | None) -> dict[str, str]:
    """Only BRS_ROLE_ARN of ours (and the fake AWS settings): no PYTHONPATH, no brs-run."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return child_env(aws_env, home, overrides={"BRS_ROLE_ARN": ROLE, **overrides})


def _run(python: Path, args: list[str], env: Mapping[str, str], tmp_path: Path) -> Result:
    return run_command([python, *args], env, tmp_path)


# -- the way in ----------------------------------------------------------------------------------

def test_the_line_patches_a_process_that_only_sets_brs_role_arn(
    installed: Path, sts: StsServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    show = write(tmp_path / "show.py", SHOW)
    result = _run(installed, [str(show)], _env(aws_env, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    first, armed, patched, arn = result.stdout.splitlines()
    # sitecustomize is left alone: the one Python runs without us (Debian's own, or the
    # user's in site-packages), and it ran.
    native = native_sitecustomize(installed)
    assert first == f"{native is not None and native.endswith('site-packages/sitecustomize.py')} {native}"
    assert (armed, patched) == ("1 False", "True")
    assert arn.startswith(ASSUMED_PREFIX)
    assert result.stderr == ""
    assert sts.count("sts:AssumeRole") == 1


def test_on_debian_python3_a_copied_sitecustomize_is_shadowed_and_the_line_is_not(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    # The bug this way in fixes, measured where it happens: sitecustomize_example's copy in
    # site-packages never runs under Debian's interpreter; the line does.
    python = make_venv(_debian_python_or_skip(), tmp_path / "venv")
    native = native_sitecustomize(python)
    if native is None or not native.startswith("/usr/lib/"):
        pytest.skip(f"{DEBIAN_PYTHON} has no sitecustomize of its own ({native})")
    site = _site_dir(python)
    shutil.copy(EXAMPLE_SITE, site / "sitecustomize.py")  # placement as the old docs had it
    show = write(tmp_path / "show.py", SHOW)
    env = _env(aws_env, tmp_path)
    before = _run(python, [str(show)], env, tmp_path)
    assert before.returncode == 0, before.stderr
    assert before.stdout.splitlines()[:3] == [f"False {native}", "0 False", "False"]
    assert ":assumed-role/" not in before.stdout

    installed = subprocess.run([python, "-m", "brs_autopatch", "--install-pth"],
                               capture_output=True, text=True, timeout=120, env=_plain_env())
    assert installed.returncode == 0, installed.stderr
    after = _run(python, [str(show)], env, tmp_path)
    assert after.returncode == 0, after.stderr
    assert after.stdout.splitlines()[:3] == [f"False {native}", "1 False", "True"]
    assert after.stdout.splitlines()[3].startswith(ASSUMED_PREFIX)
    assert sts.count("sts:AssumeRole") == 1


def test_a_user_sitecustomize_runs_first_and_its_brs_settings_are_honoured(
    installed: Path, sts: StsServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    # The line only waits for botocore: a sitecustomize (here on PYTHONPATH, ahead of any
    # distro's) that sets BRS_* variables runs before the settings are read.
    user_site = write(tmp_path / "usersite" / "sitecustomize.py", USER_SITE).parent
    show = write(tmp_path / "show.py", SHOW)
    env = _env(aws_env, tmp_path, PYTHONPATH=str(user_site), USER_SITE_SESSION="from-user-site")
    result = _run(installed, [str(show)], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"True {user_site / 'sitecustomize.py'}", "1 False", "True", ASSUMED_PREFIX + "from-user-site",
    ]


# -- cheap, and only when asked -----------------------------------------------------------------

MODULES = """\
import sys
armed = [f for f in sys.meta_path if getattr(f, "brs_autopatch_finder", False)]
print(len(armed), " ".join(sorted(name for name, module in sys.modules.items() if module is not None)))
"""
HEAVY = {"typing", "logging", "json", "re", "threading", "dataclasses", "importlib.util",
         "contextlib", "inspect", "botocore", "boto3", "wrapt", "multiprocessing", "asyncio"}


def test_without_brs_role_arn_the_line_loads_nothing_and_with_it_nothing_heavy(
    installed: Path, aws_env: dict[str, str], tmp_path: Path
) -> None:
    unset = _run(installed, ["-c", MODULES], _env(aws_env, tmp_path, BRS_ROLE_ARN=None), tmp_path)
    off = _run(installed, ["-c", MODULES], _env(aws_env, tmp_path, BRS_ENABLED="false"), tmp_path)
    armed = _run(installed, ["-c", MODULES], _env(aws_env, tmp_path), tmp_path)
    for result in (unset, off, armed):
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert unset.stdout.split()[0] == off.stdout.split()[0] == "0"
    assert armed.stdout.split()[0] == "1"
    plain = set(unset.stdout.split()[1:])
    assert set(off.stdout.split()[1:]) - plain == {pth.SITE_NAME}  # loaded; BRS_ENABLED said no
    extra = set(armed.stdout.split()[1:]) - plain
    assert {m for m in extra if m.partition(".")[0] == "brs_autopatch"} == set()
    assert extra & HEAVY == set()
    assert pth.SITE_NAME in extra


@pytest.mark.parametrize(("flag", "patched"), [("-I", True), ("-E", True), ("-S", False)])
def test_isolated_and_ignore_environment_still_run_the_line_but_no_site_does_not(
    installed: Path, aws_env: dict[str, str], tmp_path: Path, flag: str, patched: bool
) -> None:
    code = "import sys, botocore; print(hasattr(botocore, '__brs_autopatch__'))"
    if flag == "-S":  # no site-packages at all: put them on sys.path by hand
        code = f"import sys; sys.path[:0] = [{str(REPO_ROOT)!r}, {sysconfig.get_path('purelib')!r}]\n{code}"
    result = _run(installed, [flag, "-c", code], _env(aws_env, tmp_path), tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{patched}\n", "")


# -- with brs-run --------------------------------------------------------------------------------

BOTH = """\
import sys
armed = [f for f in sys.meta_path if getattr(f, "brs_autopatch_finder", False)]
print(len(armed), [f.__module__ for f in armed])
import boto3
arn = boto3.client("sts").get_caller_identity()["Arn"]
from brs_autopatch.config import fingerprint as checked
print(checked._received is not None)
print(arn)
"""


def test_under_brs_run_one_finder_and_the_launchers_check_is_handed_over(
    installed: Path, sts: StsServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    program = write(tmp_path / "both.py", BOTH)
    env = _env(aws_env, tmp_path, PATH=f"{installed.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    result = _run(installed, ["-m", "brs_autopatch", "python", str(program)], env, tmp_path)
    assert result.returncode == 0, result.stderr
    armed, received, arn = result.stdout.splitlines()
    # The line armed it first (site runs .pth lines before sitecustomize); the bootstrap
    # found it, added none, and gave it what the launcher checked.
    assert armed == f"1 [{pth.SITE_NAME!r}]"
    assert received == "True"
    assert arn.startswith(ASSUMED_PREFIX)
    assert result.stderr == ""
    assert sts.count("sts:AssumeRole") == 1


# -- faults ----------------------------------------------------------------------------------------

def test_a_line_left_by_an_uninstalled_brs_autopatch_is_one_line_and_the_program_runs(
    venv_python: Path, aws_env: dict[str, str], tmp_path: Path
) -> None:
    site = _site_dir(venv_python)
    gone = tmp_path / "gone" / "brs_autopatch" / "bootstrap"
    stale = site / "brs_autopatch-stale-test.pth"
    stale.write_text(pth.pth_text(str(site), bootstrap_dir=str(gone)))
    try:
        code = "import sys; print('ran', sys.modules.get('brs_autopatch_site'))"
        result = _run(venv_python, ["-c", code], _env(aws_env, tmp_path), tmp_path)
        quiet = _run(venv_python, ["-c", code], _env(aws_env, tmp_path, BRS_ROLE_ARN=None), tmp_path)
    finally:
        stale.unlink()
    assert (result.returncode, result.stdout) == (0, "ran None\n")
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"brs_autopatch: not patching this process ({site / pth.PTH_NAME}): "
                           "FileNotFoundError: ")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "ran None\n", "")


def test_a_bootstrap_that_raises_is_one_line_and_botocore_imports_unpatched(
    venv_python: Path, aws_env: dict[str, str], tmp_path: Path
) -> None:
    site = _site_dir(venv_python)
    broken = write(tmp_path / "broken" / "sitecustomize.py", "raise RuntimeError('broken bootstrap')\n")
    broken = broken.parent
    line_file = site / "brs_autopatch-broken-test.pth"
    line_file.write_text(pth.pth_text(str(site), bootstrap_dir=str(broken)))
    try:
        code = ("import sys, botocore\n"
                "print(sorted(m for m in sys.modules if m.startswith('brs_autopatch') and sys.modules[m]))")
        result = _run(venv_python, ["-c", code], _env(aws_env, tmp_path), tmp_path)
    finally:
        line_file.unlink()
    assert (result.returncode, result.stdout) == (0, "[]\n")
    assert result.stderr.splitlines() == [
        f"brs_autopatch: not patching this process ({site / pth.PTH_NAME}): RuntimeError: broken bootstrap"
    ]


def test_bad_settings_are_one_line_at_the_import_of_botocore_and_the_program_runs(
    installed: Path, sts: StsServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    # As the copied sitecustomize did ("Error in sitecustomize"), never a failed start-up;
    # brs-run --check says what is wrong, BRS_ON_ERROR=warn makes it a warning.
    code = "import botocore; print(hasattr(botocore, '__brs_autopatch__'))"
    result = _run(installed, ["-c", code], _env(aws_env, tmp_path, BRS_DURATION_SECONDS="soon"), tmp_path)
    assert (result.returncode, result.stdout) == (0, "False\n")
    (line,) = result.stderr.splitlines()
    assert line.startswith("brs_autopatch: not patching this process: ConfigError: BRS_DURATION_SECONDS")
    assert sts.count("sts:AssumeRole") == 0


# -- install and remove ----------------------------------------------------------------------------

def test_remove_pth_takes_it_out_and_install_refuses_a_file_it_did_not_write(
    venv_python: Path, aws_env: dict[str, str], tmp_path: Path
) -> None:
    site = _site_dir(venv_python)
    pth_file = site / pth.PTH_NAME
    brs_run = [str(venv_python), "-m", "brs_autopatch"]
    env = _plain_env()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*brs_run, *args], capture_output=True, text=True, timeout=120, env=env)

    assert run("--install-pth").returncode == 0
    assert run("--install-pth").returncode == 0  # again: the same file, rewritten
    assert pth_file.read_text() == pth.pth_text(str(site))
    removed = run("--remove-pth")
    assert (removed.returncode, removed.stdout) == (0, f"brs-run: removed {pth_file}\n")
    assert not pth_file.exists()
    again = run("--remove-pth")
    nothing = f"brs-run: no {pth.PTH_NAME} in {site}: nothing to remove\n"
    assert (again.returncode, again.stdout) == (0, nothing)
    # Not patched any more.
    code = "import sys; print(len([f for f in sys.meta_path if getattr(f, 'brs_autopatch_finder', 0)]))"
    assert _run(venv_python, ["-c", code], _env(aws_env, tmp_path), tmp_path).stdout == "0\n"
    # Someone else's file of that name is never replaced nor removed.
    pth_file.write_text("# not ours\n")
    try:
        for action in ("--install-pth", "--remove-pth"):
            refused = run(action)
            assert refused.returncode == 1
            assert refused.stderr.startswith(f"brs-run: {pth_file} ")
            assert "not written by brs-run --install-pth" in refused.stderr
        assert pth_file.read_text() == "# not ours\n"
    finally:
        pth_file.unlink()
    assert run("--install-pth", "python").returncode == 2  # it runs no command


def test_the_line_is_one_import_line_after_comments() -> None:
    lines = pth.pth_text("/some/site-packages").splitlines()
    assert [line[:1] for line in lines] == ["#", "#", "i"]
    assert lines[2].startswith("import ")  # site runs only lines that start like this
    compile(lines[2], "brs_autopatch.launch.pth", "exec")
    assert BOOTSTRAP_DIR in lines[2]


def test_the_bootstrap_and_the_line_agree_on_the_module_name() -> None:
    # The bootstrap cannot import this package: its constant is its own.
    tree = ast.parse((Path(BOOTSTRAP_DIR) / "sitecustomize.py").read_text())
    constants = {
        target.id: node.value.value
        for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets if isinstance(target, ast.Name)
    }
    assert constants["SITE_NAME"] == pth.SITE_NAME


# -- the docs' own text ----------------------------------------------------------------------------

def test_placement_1_as_written_patches_the_example_app(
    venv_python: Path, sts: StsServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    block = fenced("sitecustomize_example/README.md", "**1. A start-up line", "sh")
    install, remove = (line for line in block.splitlines() if line.startswith(".venv/bin/brs-run"))
    assert "--install-pth" in install and "--remove-pth" in remove
    root = venv_python.parent.parent
    # A venv made --without-pip has no console scripts: brs-run as pip would write it.
    write(
        root / "bin" / "brs-run",
        f"#!{venv_python}\nimport sys\nfrom brs_autopatch.launch.main import main\nsys.exit(main())\n",
        mode=0o755,
    )
    env = {**_env(aws_env, tmp_path, BRS_ROLE_ARN=None), "DEMO_CALLS": "1", "DEMO_INTERVAL": "0"}
    app = [str(venv_python), str(REPO_ROOT / "sitecustomize_example" / "app.py")]

    def sh(line: str) -> Result:
        return run_command(["sh", "-ec", line.replace(".venv/", f"{root}/")], env, tmp_path)

    try:
        assert sh(install).returncode == 0
        patched = run_command(app, {**env, "BRS_ROLE_ARN": ROLE}, tmp_path)
        assert patched.returncode == 0, patched.stderr
        assert f" {ASSUMED_PREFIX}" in patched.stdout
        assert sh(remove).returncode == 0
        plain = run_command(app, {**env, "BRS_ROLE_ARN": ROLE}, tmp_path)
        assert plain.returncode == 0, plain.stderr
        assert ":assumed-role/" not in plain.stdout
    finally:
        (_site_dir(venv_python) / pth.PTH_NAME).unlink(missing_ok=True)
    assert sts.count("sts:AssumeRole") == 1


def test_with_the_line_no_propagate_still_patches_children_and_brs_enabled_false_does_not(
    installed: Path, sts: StsServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    # sitecustomize_example/README.md, placement 1: the line is the environment's, not
    # brs-run's; a child that must run unpatched gets BRS_ENABLED=false.
    child = "import botocore; print(hasattr(botocore, '__brs_autopatch__'))"
    parent = (f"import os, subprocess, sys\n"
              f"for extra in ({{}}, {{'BRS_ENABLED': 'false'}}):\n"
              f"    env = {{**os.environ, **extra}}\n"
              f"    subprocess.run([sys.executable, '-c', {child!r}], env=env, check=True)\n")
    env = _env(aws_env, tmp_path, PATH=f"{installed.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    result = _run(installed, ["-m", "brs_autopatch", "--no-propagate", "python", "-c", parent], env, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "True\nFalse\n", "")
