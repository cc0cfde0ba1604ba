"""BRS_CACHE_DIR under fork, faults and hostile files (issue 10, items A and E).

Each attack: the program still signs as the role whenever STS works, nothing outside
the cache directory is created, written or chmodded, and nothing hangs (every child
runs under a timeout). Root runs these tests, so faults are real ones (RLIMIT_FSIZE,
FIFOs, symlinks, chown), not permission bits.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import FAKE_SOURCE_ACCESS_KEY_ID, REPO_ROOT, RunPython
from stsclient import StsServer, child_base_env

ROLE = "arn:aws:iam::123456789012:role/cached"
ASSUMED = "arn:aws:sts::123456789012:assumed-role/cached/"
CALL = "import brs_autopatch, boto3\nprint(boto3.client('sts').get_caller_identity()['Arn'])"

Snapshot = dict[str, tuple[int, int, int]]


def settings(cache: Path | str, **extra: str) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "BRS_ROLE_ARN": ROLE,
        "BRS_DURATION_SECONDS": "900",
        "BRS_CACHE_DIR": str(cache),
    }
    env.update(extra)
    return env


def snapshot(directory: Path) -> Snapshot:
    """Mode, owner and mtime of a directory and of everything directly in it."""
    entries = {".": directory.lstat()}
    entries.update({p.name: p.lstat() for p in directory.iterdir()})
    return {name: (info.st_mode, info.st_uid, info.st_mtime_ns) for name, info in entries.items()}


def signs_as_role(run_python: RunPython, cache: Path | str, timeout: float = 30, **extra: str) -> str:
    """Run one program with the cache; it must sign as the role. Returns its stderr."""
    result = run_python(CALL, env=settings(cache, **extra), timeout=timeout)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(ASSUMED), result.stdout
    return result.stderr


# -- A: fork while a thread holds the cache lock -------------------------------------
FORKS = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    import brs_autopatch, boto3

    go, forks = sys.argv[1], int(sys.argv[2])
    session = boto3.Session()
    # Made before the forks and still unused (no pooled connections), as a preloaded
    # app's module-level client: what the children measure is the lock, not loading
    # botocore's models 50 times on a shared machine.
    client = session.client("sts")
    arns = {}
    refresh = threading.Thread(
        target=lambda: arns.setdefault("parent", session.client("sts").get_caller_identity()["Arn"])
    )
    refresh.start()  # the first refresh: it takes the cache lock, then waits on a slow STS
    deadline = time.monotonic() + 30
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.005)
    children = []
    for _ in range(forks):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: sign one request as the role, report it, exit
            os.close(read)
            try:
                arn = client.get_caller_identity()["Arn"]
                os.write(write, arn.encode())
            finally:
                os._exit(0)
        os.close(write)
        children.append((pid, read, time.monotonic()))
    during_refresh = refresh.is_alive()
    answered, slowest = [], 0.0
    for pid, read, started in children:
        while True:  # each child gets 5 s from its fork
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done or time.monotonic() > started + 5:
                break
            time.sleep(0.01)
        if not done:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        else:
            slowest = max(slowest, time.monotonic() - started)
            answer = os.read(read, 4096).decode()
            if answer:
                answered.append(answer)
        os.close(read)
    refresh.join(30)
    print(json.dumps({"during_refresh": during_refresh, "answered": answered,
                      "parent": arns.get("parent"), "slowest": slowest}))
""")


def test_fifty_forks_during_a_refresh_all_sign_as_the_role(
    sts: StsServer, aws_env: dict[str, str], run_python: RunPython, tmp_path: Path
) -> None:
    script, go = tmp_path / "forks.py", tmp_path / "go"
    script.write_text(FORKS)
    sts.fault("AssumeRole", "delay", delay_seconds=2, count=1)
    env = {k: v for k, v in settings(tmp_path / "cache").items() if v is not None}
    child_env = child_base_env() | aws_env | env | {"PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(go), "50"],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while sts.count("sts:AssumeRole") == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        go.touch()  # the parent's refresh is at STS (delayed 2 s), holding the cache lock
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["during_refresh"], "the forks did not happen during the refresh"
    assert len(report["answered"]) == 50, (len(report["answered"]), err[-3000:])
    assert all(arn.startswith(ASSUMED) for arn in report["answered"] + [report["parent"]])
    assert sts.count("sts:AssumeRole") == 1  # the children read what the parent stored
    signed = sts.calls("GetCallerIdentity")
    assert len(signed) == 51
    keys = {call["access_key_id"] for call in signed}
    assert len(keys) == 1 and FAKE_SOURCE_ACCESS_KEY_ID not in keys
