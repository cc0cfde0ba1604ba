"""The lock files (locks/, made by scripts/lock) and the venv helpers of scripts/_venv.sh.

Read, not resolved: no network. Each lock must still pin what pyproject.toml (or its
locks/*.in) asks for, with hashes, so that a dependency edited without `scripts/lock`
fails here rather than installing something else; the floor lock must pin exactly the
floors pyproject.toml declares. The venv helper's promise on a distro Python without its
venv package (install it as root with apt-get, else stop with one line naming it) is
checked with stand-in `python3`, `apt-get` and `id` programs; scripts/check-bare-debian
checks it for real in a Debian root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from stsclient import REPO_ROOT

# tomllib is Python >= 3.11 (mypy checks as 3.10; no 3.10 runs the suite).
tomllib = pytest.importorskip("tomllib")

LOCKS = REPO_ROOT / "locks"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
BUILD_REQUIRES = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]

# lock -> the extras it holds, with the project's dependencies and build requirements.
EXTRA_LOCKS = {
    "test": ["test"],
    "demo": ["demo"],
    "bench": ["bench"],
    "bench-async": ["bench-async"],
    "docs": ["docs"],
    "engines": ["test", "engines"],
    "engines-spark": ["test", "engines", "engines-spark"],
}
MATRIX = ("aio3", "aio2", "floor")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$", re.M)


def pins(lock: Path) -> dict[str, list[tuple[Version, str]]]:
    """name -> [(version, marker)]: a universal lock may pin one name per marker."""
    found: dict[str, list[tuple[Version, str]]] = {}
    for name, version, marker in PIN.findall(lock.read_text()):
        found.setdefault(canonicalize_name(name), []).append((Version(version), marker))
    return found


def in_requirements(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def extra_requirements(extras: list[str]) -> list[Requirement]:
    wanted = [*PROJECT["dependencies"]]
    for extra in extras:
        wanted += PROJECT["optional-dependencies"][extra]
    return [Requirement(r) for r in wanted]


def assert_pinned(lock: Path, wanted: list[Requirement]) -> None:
    pinned = pins(lock)
    for requirement in wanted:
        versions = [v for v, _ in pinned.get(canonicalize_name(requirement.name), [])]
        assert versions, f"{lock.name} pins no {requirement.name}: run scripts/lock"
        assert any(requirement.specifier.contains(v, prereleases=True) for v in versions), (
            f"{lock.name} pins {requirement.name} {versions}, outside {requirement}: run scripts/lock"
        )


@pytest.mark.parametrize("lock", sorted(EXTRA_LOCKS))
def test_each_lock_pins_what_its_extras_ask_for(lock: str) -> None:
    assert_pinned(LOCKS / f"{lock}.txt", [*extra_requirements(EXTRA_LOCKS[lock]), *BUILD_REQUIRES])


@pytest.mark.parametrize("name", MATRIX)
def test_each_matrix_lock_pins_what_its_in_file_asks_for(name: str) -> None:
    wanted = in_requirements(LOCKS / f"matrix-{name}.in")
    if name == "floor":
        wanted += extra_requirements([])
    assert_pinned(LOCKS / f"matrix-{name}.txt", wanted)


def test_every_pin_carries_hashes() -> None:
    for lock in sorted(LOCKS.glob("*.txt")):
        # Each pin is followed by its --hash lines: pip --require-hashes needs them all.
        blocks = re.split(r"\n(?=\S)", lock.read_text())
        for block in blocks:
            if PIN.match(block.splitlines()[0]):
                assert "--hash=sha256:" in block, f"{lock.name}: {block.splitlines()[0]}"
        assert len(pins(lock)) > 5, lock.name


def test_the_floor_lock_pins_exactly_the_declared_floors() -> None:
    """Every floor of pyproject.toml's dependencies and the test runner's is what the
    floor venv runs; and the runner's floors in locks/matrix-floor.in are the test extra's."""
    test_extra = {canonicalize_name(r.name): r for r in extra_requirements(["test"])}
    runner = in_requirements(LOCKS / "matrix-floor.in")
    for requirement in runner:
        declared = test_extra.get(canonicalize_name(requirement.name))
        assert declared is not None, f"{requirement.name} is not in the test extra"
        assert str(declared.specifier) == str(requirement.specifier), (declared, requirement)
    assert_pinned_at_floor("matrix-floor", [*extra_requirements([]), *runner, *BUILD_REQUIRES])
    # The async extra's floor is the aio2 venv's aiobotocore (aioboto3 15.5 pins it).
    assert_pinned_at_floor("matrix-aio2", extra_requirements(["async"])[2:])


def assert_pinned_at_floor(lock: str, wanted: list[Requirement]) -> None:
    pinned = pins(LOCKS / f"{lock}.txt")
    for requirement in wanted:
        floors = [s.version for s in requirement.specifier if s.operator == ">="]
        assert len(floors) == 1, requirement
        versions = [v for v, _ in pinned[canonicalize_name(requirement.name)]]
        assert versions == [Version(floors[0])], (lock, str(requirement), versions)


def test_every_floor_in_pyproject_is_run_or_stated() -> None:
    """A `>=` in the test extra is a version a venv runs: the floor venv's (above), or none.
    (The tools only the main venv runs -- ruff, mypy, stubs -- carry no floor: the lock
    says which version runs.)"""
    runner = {canonicalize_name(r.name) for r in in_requirements(LOCKS / "matrix-floor.in")}
    for requirement in extra_requirements(["test", "demo", "bench"]):
        name = canonicalize_name(requirement.name)
        if any(s.operator == ">=" for s in requirement.specifier) and name not in runner:
            assert name in {"boto3", "botocore"}, (
                f"{requirement}: a floor no venv runs (add it to locks/matrix-floor.in or drop it)"
            )


def test_the_node_lock_pins_the_sdk_without_urls() -> None:
    package = json.loads((LOCKS / "node" / "package.json").read_text())
    lock = json.loads((LOCKS / "node" / "package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
    entries = {k: v for k, v in lock["packages"].items() if k}
    assert "node_modules/@aws-sdk/client-sts" in entries
    for name, entry in entries.items():
        assert entry.get("integrity", "").startswith("sha512-"), name
        assert "resolved" not in entry, name


# --- scripts/_venv.sh's brs_make_venv, with stand-ins ---------------------------------

FAKE_PYTHON = """#!/bin/sh
# A distro python3 without its venv package: `-m venv` fails as Debian's does, until the
# stand-in apt-get has "installed" the package.
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    if [ -f "$STATE/installed" ]; then
        for last; do :; done
        mkdir -p "$last/bin"; echo made >"$last/made"; exit 0
    fi
    for last; do :; done
    mkdir -p "$last/bin"   # venv leaves the directory half made
    echo "The virtual environment was not created successfully because ensurepip is not"
    echo "available.  On Debian/Ubuntu systems, you need to install the python3-venv"
    echo "package using the following command."
    echo "    apt install python3.11-venv"
    exit 1
fi
exec "$REAL_PYTHON" "$@"
"""
FAKE_APT = """#!/bin/sh
echo "apt-get $*" >>"$STATE/apt.log"
case "$*" in *install*) touch "$STATE/installed" ;; esac
"""
FAKE_ID = """#!/bin/sh
echo "$FAKE_UID"
"""


def make_venv_with_stand_ins(tmp_path: Path, uid: int, apt: bool) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    programs = {"python3": FAKE_PYTHON, "id": FAKE_ID, **({"apt-get": FAKE_APT} if apt else {})}
    for name, text in programs.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    # PATH is this directory alone, so that the machine's own apt-get is never found.
    for tool in ("mktemp", "rm", "grep", "cat", "mkdir", "touch"):
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    # The package name comes from the interpreter: a stand-in for a distro's /usr/bin/python3.
    env = {
        "PATH": str(bin_dir), "STATE": str(state), "REAL_PYTHON": sys.executable,
        "FAKE_UID": str(uid), "HOME": str(tmp_path),
    }
    script = (
        "source scripts/_venv.sh\n"
        "_brs_venv_package() { echo python3.11-venv; }\n"
        f"brs_make_venv python3 {tmp_path / 'venv'}\n"
    )
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run([bash, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def test_without_the_venv_package_a_user_gets_one_line_naming_it(tmp_path: Path) -> None:
    result = make_venv_with_stand_ins(tmp_path, uid=1000, apt=True)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "== python3 cannot make a venv: install the python3.11-venv package "
        "(apt-get install python3.11-venv), then run this again"
    ]
    assert not (tmp_path / "venv").exists()  # the half-made one is gone
    assert not (tmp_path / "state" / "apt.log").exists()


def test_without_the_venv_package_root_installs_it_with_apt(tmp_path: Path) -> None:
    result = make_venv_with_stand_ins(tmp_path, uid=0, apt=True)
    assert result.returncode == 0, result.stderr
    log = (tmp_path / "state" / "apt.log").read_text().splitlines()
    assert log[0] == "apt-get update -qq"
    assert log[1].endswith("install -y -qq python3.11-venv")
    assert (tmp_path / "venv" / "made").exists()


def test_without_the_venv_package_and_without_apt_root_gets_the_one_line(tmp_path: Path) -> None:
    result = make_venv_with_stand_ins(tmp_path, uid=0, apt=False)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and "python3.11-venv" in result.stderr


def test_the_venv_package_is_named_only_for_a_distro_interpreter() -> None:
    script = 'source scripts/_venv.sh; _brs_venv_package "$1"'
    ours = subprocess.run(["bash", "-c", script, "-", sys.executable], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    # This test's interpreter is a venv's: apt cannot help it, so no package is named.
    assert ours.returncode == 0 and ours.stdout == ""
    distro = Path("/usr/bin/python3")
    if distro.exists() and os.path.realpath(distro).startswith("/usr/bin/"):
        named = subprocess.run(["bash", "-c", script, "-", str(distro)], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=60)
        major, minor = subprocess.run(
            [str(distro), "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.split()
        assert named.stdout.strip() == f"python{major}.{minor}-venv"


def test_the_demo_lock_is_within_the_test_lock() -> None:
    """scripts/demo and scripts/test share .venv: the demo's install must not move a
    version the test lock pinned (scripts/lock resolves it with -c locks/test.txt)."""
    test = pins(LOCKS / "test.txt")
    for name, versions in pins(LOCKS / "demo.txt").items():
        assert set(versions) <= set(test.get(name, [])), (name, versions, test.get(name))
