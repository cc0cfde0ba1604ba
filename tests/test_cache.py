"""BRS_CACHE_DIR: processes on one host share credentials through botocore's JSONFileCache."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import REPO_ROOT, RunPython
from stsclient import StsServer, child_base_env

ROLE = "arn:aws:iam::123456789012:role/cached"
WORKER = textwrap.dedent("""
    import os, sys, time
    import brs_autopatch, boto3
    go = sys.argv[1]
    deadline = time.monotonic() + 30
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.005)
    print(boto3.client("sts").get_caller_identity()["Arn"])
""")


def env_for(aws_env: dict[str, str], cache: Path) -> dict[str, str]:
    env = child_base_env()
    env.update(aws_env)
    env.update(
        PYTHONPATH=str(REPO_ROOT), BRS_ROLE_ARN=ROLE, BRS_DURATION_SECONDS="900", BRS_CACHE_DIR=str(cache)
    )
    return env


def test_eight_processes_starting_together_make_one_call(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    cache, go = tmp_path / "cache", tmp_path / "go"
    env = env_for(aws_env, cache)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(go)],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(8)
    ]
    try:
        time.sleep(1.5)  # let all eight import boto3 and reach the starting line
        go.touch()
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1
    assert sts.count("sts:AssumeRole") == 1
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    files = list(cache.glob("*.json"))
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    text = files[0].read_text()
    assert ROLE not in files[0].name and "expiry_time" in text


def one_process(run_python: RunPython, cache: Path) -> str:
    result = run_python(
        "import brs_autopatch, boto3\nprint(boto3.client('sts').get_caller_identity()['Arn'])",
        env={"BRS_ROLE_ARN": ROLE, "BRS_DURATION_SECONDS": "900", "BRS_CACHE_DIR": str(cache)},
        check=True,
    )
    return result.stdout.strip()


def test_900s_credentials_are_shared_by_a_later_process(
    sts: StsServer, run_python: RunPython, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    assert one_process(run_python, cache) == one_process(run_python, cache)
    assert sts.count("sts:AssumeRole") == 1  # botocore's 900 s expiry check would make it 2


def test_corrupt_file_is_a_miss_and_is_replaced(
    sts: StsServer, run_python: RunPython, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    one_process(run_python, cache)
    (entry,) = cache.glob("*.json")
    entry.write_text("{not json")
    one_process(run_python, cache)
    assert sts.count("sts:AssumeRole") == 2
    assert "access_key" in json.loads(entry.read_text())


def test_foreign_owned_file_is_ignored_and_replaced(
    sts: StsServer, run_python: RunPython, tmp_path: Path
) -> None:
    if os.getuid() != 0:
        import pytest

        pytest.skip("needs root to hand a file to another user")
    cache = tmp_path / "cache"
    one_process(run_python, cache)
    (entry,) = cache.glob("*.json")
    os.chown(entry, 4242, 4242)
    one_process(run_python, cache)
    assert sts.count("sts:AssumeRole") == 2
    assert entry.stat().st_uid == os.getuid()


def test_a_shared_directory_is_refused_not_chmodded(
    sts: StsServer, run_python: RunPython, tmp_path: Path
) -> None:
    # Issue 10 E: a group/world-writable directory is not ours to chmod or write into.
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o777)
    cache.chmod(0o777)
    result = run_python(
        "import brs_autopatch, boto3",
        env={"BRS_ROLE_ARN": ROLE, "BRS_DURATION_SECONDS": "900", "BRS_CACHE_DIR": str(cache)},
    )
    assert result.returncode == 1 and "writable by group or others" in result.stderr
    assert stat.S_IMODE(cache.stat().st_mode) == 0o777
    assert sts.count("sts:AssumeRole") == 0
