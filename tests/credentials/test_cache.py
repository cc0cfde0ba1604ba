"""BRS_CACHE_DIR: processes on one host share credentials (brs_autopatch.credentials.cache.FileCache).

End to end with subprocesses first, then FileCache and its entry check on their own
(real files, a stub fetch). Attacks and faults: test_cache_attacks.py.
"""

from __future__ import annotations

import json
import logging
import math
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from dateutil.parser import isoparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stsclient import REPO_ROOT, RunPython, StsServer, child_base_env

from brs_autopatch.credentials.answers import normalize as _normalize
from brs_autopatch.credentials.cache import FileCache, check_directory, valid_entry
from brs_autopatch.errors import ConfigError

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
    assert result.returncode == 1 and "world-writable" in result.stderr.splitlines()[-1]
    assert stat.S_IMODE(cache.stat().st_mode) == 0o777
    assert sts.count("sts:AssumeRole") == 0
# -- the entry check -------------------------------------------------------------------
def good_entry(now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    expiry = datetime.fromtimestamp(now + 3600, timezone.utc)
    return {"access_key": "ASIAX", "secret_key": "s", "token": "t", "expiry_time": expiry, "issued_at": now}


def test_what_the_engine_stores_passes_the_check() -> None:
    stored = _normalize(good_entry(), time.time())
    assert valid_entry(json.loads(json.dumps(stored))) == stored


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
OFFSETS = st.none() | st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
TIMES = st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), st.datetimes(), OFFSETS)
FIELDS = st.sampled_from(["access_key", "secret_key", "token", "expiry_time", "issued_at", "account_id"])


# The machine is shared: judge the property, not the speed of generating inputs.
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    changes=st.dictionaries(FIELDS, JSON | TIMES, max_size=3),
    removed=st.sets(FIELDS, max_size=2),
)
def test_an_entry_either_parses_for_every_reader_or_is_a_miss(
    changes: dict[str, Any], removed: set[str]
) -> None:
    raw = json.loads(json.dumps(_normalize(good_entry(), time.time())))
    raw.update(changes)
    for name in removed:
        raw.pop(name, None)
    entry = valid_entry(raw)
    if entry is None:
        return
    # What RoleCredentials and botocore then do with it, unguarded:
    expiry = isoparse(entry["expiry_time"])
    assert expiry.utcoffset() is not None and math.isfinite(expiry.timestamp())
    assert float(entry["issued_at"]) < expiry.timestamp()
    assert all(isinstance(entry[k], str) and entry[k] for k in ("access_key", "secret_key", "token"))
    assert isinstance(entry.get("account_id", ""), str)


@pytest.mark.parametrize("raw", [None, [], "x", {"access_key": "a"}, dict(good_entry(), issued_at=True)])
def test_malformed_entries_are_misses(raw: object) -> None:
    assert valid_entry(json.loads(json.dumps(raw, default=str))) is None


# -- check_directory: pure, one line --------------------------------------------------
def test_missing_directory_under_a_usable_parent_is_accepted_and_not_created(tmp_path: Path) -> None:
    check_directory(str(tmp_path / "a" / "b"))
    assert list(tmp_path.iterdir()) == []


def test_own_0755_directory_is_accepted_and_not_chmodded(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    check_directory(str(tmp_path))
    FileCache(str(tmp_path))
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


def tree(root: Path) -> dict[Path, tuple[int, int, int]]:
    """Mode, owner and mtime of everything under ``root`` (atime moves when we look)."""
    return {p: (p.lstat().st_mode, p.lstat().st_uid, p.lstat().st_mtime_ns) for p in root.rglob("*")}


def _file(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("x")
    return tmp_path / "file"


def _under_file(tmp_path: Path) -> Path:
    return _file(tmp_path) / "cache"


def _symlink(tmp_path: Path) -> Path:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    return tmp_path / "link"


def _group_writable(tmp_path: Path) -> Path:
    (tmp_path / "g").mkdir()
    (tmp_path / "g").chmod(0o770)
    return tmp_path / "g"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_file, "it is not a directory"),
        (_under_file, "is not a directory"),
        (_symlink, "it is a symbolic link"),
        (_group_writable, "group- or world-writable (mode 0770)"),
    ],
)
def test_unusable_directory_is_a_one_line_config_error(tmp_path: Path, make: Any, reason: str) -> None:
    path = make(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(ConfigError) as raised:
        check_directory(str(path), "cache_dir")
    message = str(raised.value)
    assert message.startswith(f"cache_dir={str(path)!r} is not valid: ") and reason in message
    assert "expected a directory owned by you" in message and "\n" not in message
    with pytest.raises(ConfigError):
        FileCache(str(path))
    assert tree(tmp_path) == before


def test_foreign_owned_directory_is_a_config_error(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to hand a directory to another user")
    os.chown(tmp_path, 4242, 4242)
    try:
        with pytest.raises(ConfigError, match="owned by uid 4242"):
            check_directory(str(tmp_path))
    finally:
        os.chown(tmp_path, 0, 0)


# -- FileCache.fetch on its own (stub fetch, real files) ------------------------------
class Fetcher:
    """Counts calls; each returns new credentials valid for an hour."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
            number = self.calls
        time.sleep(self.delay)
        return _normalize(dict(good_entry(), access_key=f"ASIA{number}"), time.time())


def always(entry: Mapping[str, Any]) -> bool:
    return True


def test_fetch_stores_then_serves(tmp_path: Path) -> None:
    cache, fetch = FileCache(str(tmp_path / "c")), Fetcher()
    key = FileCache.key_for("settings", "0")
    first, source = cache.fetch(key, fetch, always)
    assert source == "STS" and fetch.calls == 1
    assert cache.fetch(key, fetch, always) == (first, "cache")
    assert cache.fetch(key, fetch, lambda entry: False)[1] == "STS"
    assert fetch.calls == 2
    (path,) = (tmp_path / "c").glob("*.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_threads_and_instances_sharing_a_key_fetch_once(tmp_path: Path) -> None:
    caches = [FileCache(str(tmp_path / "c")) for _ in range(2)]  # two installations, one directory
    fetch, key = Fetcher(delay=0.3), FileCache.key_for("k")
    barrier = threading.Barrier(8)
    sources: list[str] = []

    def worker(index: int) -> None:
        barrier.wait()
        sources.append(caches[index % 2].fetch(key, fetch, always)[1])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert fetch.calls == 1 and sorted(sources) == ["STS"] + ["cache"] * 7


def test_fetch_errors_propagate_and_release_the_lock(tmp_path: Path) -> None:
    cache, key = FileCache(str(tmp_path / "c")), FileCache.key_for("k")

    def failing() -> dict[str, Any]:
        raise RuntimeError("STS says no")

    with pytest.raises(RuntimeError, match="STS says no"):
        cache.fetch(key, failing, always)
    assert not list((tmp_path / "c").glob("*.json"))
    assert cache.fetch(key, Fetcher(), always)[1] == "STS"


def test_failed_writes_warn_once_and_serve(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "brs_autopatch")
    cache, fetch, key = FileCache(str(tmp_path / "c")), Fetcher(), FileCache.key_for("k")
    (tmp_path / "c" / f"{key}.json").mkdir()
    results = [cache.fetch(key, fetch, always) for _ in range(3)]
    assert [source for _, source in results] == ["STS"] * 3 and fetch.calls == 3
    assert [entry["access_key"] for entry, _ in results] == ["ASIA1", "ASIA2", "ASIA3"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "could not write cache file" in warnings[0]
    assert "ASIA" not in warnings[0] and "secret" not in warnings[0]
    (tmp_path / "c" / f"{key}.json").rmdir()
    cache.fetch(key, fetch, lambda entry: False)  # writes again: the trouble is over
    (tmp_path / "c" / f"{key}.json").unlink()
    (tmp_path / "c" / f"{key}.json").mkdir()
    cache.fetch(key, fetch, always)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


HOLDER = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    time.sleep(60)
""")


def test_a_lock_held_elsewhere_is_waited_for_a_bounded_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "brs_autopatch")
    cache, key = FileCache(str(tmp_path / "c")), FileCache.key_for("k")
    cache.lock_timeout = 0.5
    lock = tmp_path / "c" / f"{key}.json.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        assert cache.fetch(key, Fetcher(), always)[1] == "STS"
        assert 0.4 < time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait(10)
    assert any("held for" in r.getMessage() for r in caplog.records)


def test_directory_swapped_for_a_symlink_later_is_not_used(tmp_path: Path) -> None:
    directory, victim = tmp_path / "c", tmp_path / "victim"
    cache, fetch, key = FileCache(str(directory)), Fetcher(), FileCache.key_for("k")
    victim.mkdir(mode=0o755)
    directory.rmdir()
    directory.symlink_to(victim)
    assert cache.fetch(key, fetch, always)[1] == "STS"
    assert list(victim.iterdir()) == [] and stat.S_IMODE(victim.stat().st_mode) == 0o755
    directory.unlink()  # removed altogether: created again
    assert cache.fetch(key, fetch, always)[1] == "STS"
    assert cache.fetch(key, fetch, always)[1] == "cache"


def test_keys_are_plain_file_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a plain file name"):
        FileCache(str(tmp_path)).fetch("../escape", Fetcher(), always)
