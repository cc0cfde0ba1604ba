"""Running real engines (Dask, Ray, Celery, gunicorn, uWSGI) in tests/engines/test_engines_*.py.

Loaded by those modules with ``pytest_plugins = ("engine_fixtures",)``.

Fixtures
--------
engine_env   function: the environment of an engine process, built from scratch like
             ``run_python``'s: fake source credentials pointed at the local STS,
             HOME = empty temp dir, this venv's bin first on PATH (``brs-run``,
             ``dask``, ``celery``...), tests/engines/engine_apps on PYTHONPATH, BRS_ROLE_ARN.
engines      function: ``start(cmd, env, name=)`` -> ``Engine`` (a long-running
             process in its own process group; each group is killed at teardown).

``run_to_end`` runs a command to completion (driver scripts) with the same care.
``assert_signed_as_role`` checks worker answers against the STS server's records.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, StsServer, child_env

APPS_DIR = Path(__file__).resolve().parent / "engine_apps"
VENV_BIN = Path(sys.executable).parent

T = TypeVar("T")


def tool(name: str) -> str:
    """An executable of this venv (``brs-run``, ``dask``, ``celery``, ``gunicorn``...)."""
    path = VENV_BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in this venv (run scripts/test-engines)")
    return str(path)


class EngineEnv(Protocol):
    def __call__(self, **overrides: str | None) -> dict[str, str]: ...


@pytest.fixture
def engine_env(aws_env: dict[str, str], tmp_path: Path, role_arn: str) -> EngineEnv:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)

    def build(**overrides: str | None) -> dict[str, str]:
        # Ray and Dask write logs and spill files in TMPDIR, not into the repo or /tmp/ray.
        fixed: dict[str, str | None] = {"BRS_ROLE_ARN": role_arn, "TMPDIR": str(tmp_path)}
        return child_env(
            aws_env, home, bin_dir=VENV_BIN, pythonpath=APPS_DIR, overrides={**fixed, **overrides}
        )

    return build


class Engine:
    """A long-running process (a worker, a server) in its own process group."""

    def __init__(self, cmd: Sequence[str], env: Mapping[str, str], cwd: Path, name: str) -> None:
        self.cmd = list(cmd)
        self.name = name
        self.log = cwd / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, check: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
        """Poll ``check`` until it returns something other than None (or fail, with the log)."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result is not None:
                return result
            if self.proc.poll() is not None:
                self.fail(f"exited with {self.proc.returncode} while waiting for {what}")
            if time.monotonic() > deadline:
                self.fail(f"no {what} after {timeout:.0f} s")
            time.sleep(0.1)

    def wait_output(self, text: str, timeout: float = 60.0) -> None:
        self.wait_for(lambda: True if text in self.output() else None, repr(text), timeout)

    def fail(self, message: str) -> None:
        self.stop()
        pytest.fail(f"{self.name}: {message}: {self.cmd!r}\n--- output ---\n{self.output()[-6000:]}")

    def stop(self) -> int | None:
        """SIGKILL the whole group: the tests need no graceful shutdown, and workers may
        outlive their master (a graceful stop costs 3-5 s per engine)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        return self.proc.returncode


StartEngine = Callable[..., Engine]


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[StartEngine]:
    started: list[Engine] = []

    def start(cmd: Sequence[str], env: Mapping[str, str], name: str = "engine") -> Engine:
        engine = Engine(cmd, env, tmp_path, name)
        started.append(engine)
        return engine

    yield start
    for engine in reversed(started):
        engine.stop()


def run_to_end(
    cmd: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` to completion in its own process group; fail (killing it) past ``timeout``."""
    proc = subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"timed out after {timeout:.0f} s: {cmd!r}\n--- stdout ---\n{out}\n--- stderr ---\n{err}")
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        raise
    # A driver's exit leaves no engine behind (Ray's raylet, Dask's nanny...).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode != 0:
        pytest.fail(f"exit {proc.returncode}: {cmd!r}\n--- stdout ---\n{out}\n--- stderr ---\n{err}")
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)


def assumed_arn(role_arn: str, session_name: str) -> str:
    """The caller ARN of credentials from AssumeRole(role_arn, session_name)."""
    account = role_arn.split(":")[4]
    role = role_arn.rsplit("/", 1)[-1]
    return f"arn:aws:sts::{account}:assumed-role/{role}/{session_name}"


def assert_signed_as_role(
    sts: StsServer,
    answers: Sequence[Mapping[str, Any]],
    role_arn: str,
    session_name: str,
    *,
    min_workers: int = 1,
) -> None:
    """Every worker answer and every GetCallerIdentity the server saw came from the role.

    At the server: each GetCallerIdentity was signed with a key other than the source
    key (moto's answer, the assumed-role ARN, proves it is a key an AssumeRole issued),
    and each AssumeRole was signed with the source key for ``role_arn``.
    """
    assert answers, "no worker answered"
    expected = assumed_arn(role_arn, session_name)
    assert {a["arn"] for a in answers} == {expected}, answers
    assert {a["credentials"] for a in answers} == {"RoleCredentials"}, answers
    pids = {a["pid"] for a in answers}
    assert len(pids) >= min_workers, f"only {len(pids)} worker process(es) answered: {answers}"
    identity_calls = sts.calls("sts:GetCallerIdentity")
    assert len(identity_calls) >= len(answers)
    signers = {call["access_key_id"] for call in identity_calls}
    assert None not in signers and FAKE_SOURCE_ACCESS_KEY_ID not in signers, signers
    assume_calls = sts.calls("sts:AssumeRole")
    assert assume_calls, "no AssumeRole at the server"
    for call in assume_calls:
        assert call["access_key_id"] == FAKE_SOURCE_ACCESS_KEY_ID, call
        assert call["params"]["RoleArn"] == role_arn, call
        assert call["params"]["RoleSessionName"] == session_name, call


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def get_json_unix(socket_path: Path, target: str, timeout: float = 30.0) -> dict[str, Any]:
    """GET ``target`` from an HTTP server on a unix socket (no TCP port to race for)."""
    conn = _UnixHTTPConnection(str(socket_path), timeout)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
    finally:
        conn.close()
    if response.status != 200:
        raise AssertionError(f"GET {target} -> {response.status}: {body[:2000]}")
    answer: dict[str, Any] = json.loads(body)
    return answer


def answers_from_workers(
    server: Engine, socket_path: Path, workers: int, *, rounds: int = 10
) -> list[dict[str, Any]]:
    """Concurrent slow requests until ``workers`` different PIDs answered (bounded rounds)."""
    server.wait_for(lambda: True if socket_path.exists() else None, "listening socket", 60)
    answers: list[dict[str, Any]] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=2 * workers) as pool:
        for _ in range(rounds):
            futures = [pool.submit(get_json_unix, socket_path, "/?delay=0.3") for _ in range(2 * workers)]
            answers.extend(f.result() for f in futures)
            if len({a["pid"] for a in answers}) >= workers:
                break
    return answers
