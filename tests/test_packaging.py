"""The sdist and the wheel: LICENSE in both, SPDX metadata, and `pytest` works from the sdist.

Built offline from a copy of this checkout (``python -m build --no-isolation``: the test
venv has setuptools and build), so nothing is written into the working tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from stsclient import REPO_ROOT

from brs_autopatch import __version__

_SKIP = shutil.ignore_patterns(
    ".git", ".venv*", "__pycache__", "*.pyc", "*.egg-info", "build", "dist",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis",
)


def _run(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    # Seen only when a step fails: the output goes into the assertion message.
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_sdist_and_wheel_carry_the_licence_and_the_sdist_runs_its_tests(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(REPO_ROOT, source, ignore=_SKIP)
    out = tmp_path / "dist"
    # sdist first, then the wheel built *from the sdist*: proves the sdist is buildable.
    build = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)]
    built = _run(build, tmp_path)
    # No setuptools deprecation (the licence table did that): their banners read "!!".
    assert "Deprecat" not in built.stderr + built.stdout and "!!" not in built.stderr, built.stderr

    stem = f"brs_autopatch-{__version__}"
    with tarfile.open(out / f"{stem}.tar.gz") as sdist:
        names = set(sdist.getnames())
        # The "data" filter refuses links and paths out of the directory. Python 3.11.4+ has
        # it; Debian 12's 3.11.2 does not, and we built this archive ourselves a moment ago.
        if hasattr(tarfile, "data_filter"):
            sdist.extractall(tmp_path / "unpacked", filter="data")
        else:
            sdist.extractall(tmp_path / "unpacked")
    for wanted in (
        "LICENSE", "CHANGELOG.md", "README.md", "MANIFEST.in",
        "tests/conftest.py", "tests/stsclient.py", "tests/sts_server.py", "tests/engine_helpers.py",
        "sitecustomize_example/sitecustomize.py", "sitecustomize_example/README.md",
        "scripts/test", "scripts/_venv.sh", "docs/bench.md", "bench/run.py",
        "locks/test.txt", "locks/node/package-lock.json",
    ):
        assert f"{stem}/{wanted}" in names, wanted
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)

    with zipfile.ZipFile(out / f"{stem}-py3-none-any.whl") as wheel:
        wheel_names = set(wheel.namelist())
        metadata = wheel.read(f"{stem}.dist-info/METADATA").decode()
    assert f"{stem}.dist-info/licenses/LICENSE" in wheel_names
    assert "brs_autopatch/bootstrap/sitecustomize.py" in wheel_names
    assert "brs_autopatch/py.typed" in wheel_names
    assert "License-Expression: MIT" in metadata
    assert "License-File: LICENSE" in metadata
    assert "Classifier: Programming Language :: Python :: 3.11" in metadata

    # pytest from the unpacked sdist: every test module (and its helpers) imports.
    unpacked = tmp_path / "unpacked" / stem
    collected = _run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-n", "0"],
        unpacked,
    )
    summary = collected.stdout.strip().splitlines()[-1]
    assert "error" not in summary, collected.stdout
    assert int(summary.split()[0]) > 100, summary  # "N tests collected in ..."
