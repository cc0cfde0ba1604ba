"""Stdlib-only client for ``sts_server.py`` plus an isolated-AWS-env builder.

``start_server()`` launches ``sts_server.py`` as a separate process and returns
an ``StsServer`` handle (also a context manager that stops the process)::

    with start_server() as server:
        env = isolated_aws_env(server.url, tmp_dir)
        ...
        assert server.count("sts:AssumeRole") == 1

Nothing here imports moto, boto3 or pytest, so demos can use it as well.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol
from urllib.parse import quote, urlsplit

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "FAKE_SOURCE_ACCESS_KEY_ID",
    "FAKE_SOURCE_SECRET_ACCESS_KEY",
    "REPO_ROOT",
    "SERVER_SCRIPT",
    "TESTS_DIR",
    "RunPython",
    "StsServer",
    "StsServerError",
    "isolated_aws_env",
    "make_role_arn",
    "start_server",
]

SERVER_SCRIPT: Final = Path(__file__).resolve().with_name("sts_server.py")
# tests/ (the helper modules) and the checkout it belongs to, wherever a test module sits
# below it: children get them on PYTHONPATH.
TESTS_DIR: Final = SERVER_SCRIPT.parent
REPO_ROOT: Final = TESTS_DIR.parent

# Obviously fake "long-term" source credentials. The fake server accepts any
# signature; these only need to be recognisable in recorded calls.
FAKE_SOURCE_ACCESS_KEY_ID: Final = "AKIDSOURCE0000000000"
FAKE_SOURCE_SECRET_ACCESS_KEY: Final = "fake-source-secret-key"
DEFAULT_ACCOUNT_ID: Final = "123456789012"  # moto's default account
DEFAULT_REGION: Final = "us-east-1"

# Environment prefixes the server process and isolated envs never inherit.
_SCRUBBED_PREFIXES: Final = ("AWS_", "BRS_", "MOTO_")
# What a child process still needs from the parent's environment.
_PASSTHROUGH_VARS: Final = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "SYSTEMROOT",
    "TMPDIR",
    "TEMP",
    "TMP",
)
_LOOPBACK_NO_PROXY: Final = "127.0.0.1,localhost"

# Control calls bypass any HTTP(S)_PROXY from the developer's environment:
# traffic must stay on 127.0.0.1.
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StsServerError(RuntimeError):
    """The fake server failed to start, died, or rejected a control call."""


def make_role_arn(name: str = "brs-test-role", account_id: str = DEFAULT_ACCOUNT_ID) -> str:
    """``arn:aws:iam::ACCOUNT:role/NAME``; moto does not require the role to exist."""
    return f"arn:aws:iam::{account_id}:role/{name}"


def isolated_aws_env(
    url: str,
    tmp_dir: str | os.PathLike[str],
    *,
    access_key_id: str = FAKE_SOURCE_ACCESS_KEY_ID,
    secret_access_key: str = FAKE_SOURCE_SECRET_ACCESS_KEY,
    region: str = DEFAULT_REGION,
) -> dict[str, str]:
    """AWS variables pointing every SDK call at the fake server.

    Config/credential files point at paths inside ``tmp_dir`` that do not
    exist, IMDS is disabled, and fake source credentials are provided, so
    nothing from the developer's ``~/.aws`` or instance role can leak in.
    Callers must also remove every other ``AWS_*``/``BRS_*`` variable.
    """
    base = Path(tmp_dir)
    return {
        "AWS_ACCESS_KEY_ID": access_key_id,
        "AWS_SECRET_ACCESS_KEY": secret_access_key,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": url,
        "AWS_CONFIG_FILE": str(base / "nonexistent-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(base / "nonexistent-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": _LOOPBACK_NO_PROXY,
        "no_proxy": _LOOPBACK_NO_PROXY,
    }


class RunPython(Protocol):
    """Signature of the ``run_python`` pytest fixture's callable (see conftest)."""

    def __call__(
        self,
        code: str | None = None,
        *,
        script: str | os.PathLike[str] | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str | None] | None = None,
        timeout: float = 60.0,
        cwd: str | os.PathLike[str] | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]: ...


def child_base_env() -> dict[str, str]:
    """The few non-AWS variables a child Python process needs from us."""
    env = {k: os.environ[k] for k in _PASSTHROUGH_VARS if k in os.environ}
    env.setdefault("PATH", os.defpath)
    env["PYTHONUNBUFFERED"] = "1"  # so output survives a timeout kill
    env["PYTHONNOUSERSITE"] = "1"  # no ~/.local site-packages
    return env


def child_env(
    aws_env: Mapping[str, str],
    home: str | os.PathLike[str],
    *,
    bin_dir: str | os.PathLike[str] | None = None,
    pythonpath: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """A child's whole environment: ours (few), the fake AWS one, HOME, PATH first ``bin_dir``.

    ``overrides`` win; a None value removes that variable.
    """
    env = child_base_env()
    env.update(aws_env)
    env["HOME"] = os.fspath(home)
    if bin_dir is not None:
        env["PATH"] = f"{os.fspath(bin_dir)}{os.pathsep}{env['PATH']}"
    if pythonpath is not None:
        env["PYTHONPATH"] = os.fspath(pythonpath)
    for name, value in (overrides or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


class StsServer:
    """Handle on a running ``sts_server.py``: control API plus process lifetime."""

    def __init__(
        self,
        url: str,
        process: subprocess.Popen[bytes] | None = None,
        workdir: Path | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"not a base URL with host and port: {url!r}")
        self.url: str = url.rstrip("/")
        self.host: str = parts.hostname
        self.port: int = parts.port
        self.process = process
        self._workdir = workdir

    def __repr__(self) -> str:
        pid = self.process.pid if self.process else None
        return f"StsServer(url={self.url!r}, pid={pid})"

    # -- control API --------------------------------------------------------

    def _request(self, method: str, path: str, payload: Any = None, timeout: float = 10.0) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(
            f"{self.url}/_brs/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise StsServerError(f"{method} /_brs/{path} -> {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise StsServerError(
                f"{method} /_brs/{path} failed: {exc}{self._stderr_hint()}"
            ) from exc

    def health(self, timeout: float = 10.0) -> dict[str, Any]:
        """``{"ok": True, "pid": N}``."""
        result: dict[str, Any] = self._request("GET", "health", timeout=timeout)
        return result

    def counts(self) -> dict[str, int]:
        """Requests per key since the last reset, e.g. ``{"sts:AssumeRole": 2}``."""
        result: dict[str, int] = self._request("GET", "counts")
        return result

    def count(self, action: str) -> int:
        """Count for ``"sts:AssumeRole"`` (exact) or ``"AssumeRole"`` (any service)."""
        counts = self.counts()
        if ":" in action:
            return counts.get(action, 0)
        return sum(n for key, n in counts.items() if key.split(":", 1)[-1] == action)

    def calls(self, action: str | None = None) -> list[dict[str, Any]]:
        """Recorded requests (oldest first), optionally only one action.

        Each record has: seq, time, key, service, action, method, path, params
        (query/form fields, e.g. RoleArn, RoleSessionName, DurationSeconds,
        SerialNumber, TokenCode, ExternalId, WebIdentityToken), access_key_id
        (from the SigV4 credential scope; None if unsigned), region,
        session_token, attempt (botocore's retry attempt, 1-based),
        invocation_id, faulted, fault_mode, status (HTTP status sent; None
        for a dropped connection), duration_override, issued (mangling
        modes: the credentials moto put in the damaged answer, else None).
        """
        path = "calls" if action is None else f"calls?action={quote(action)}"
        result: list[dict[str, Any]] = self._request("GET", path)
        return result

    def reset(self, *, moto: bool = False) -> None:
        """Clear counts, calls, faults and settings; ``moto=True``: moto's state too."""
        self._request("POST", "reset", {"moto": moto})

    def fault(
        self,
        action: str = "AssumeRole",
        mode: str = "503",
        *,
        count: int | None = None,
        delay_seconds: float = 0.0,
        http_status: int | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> list[dict[str, Any]]:
        """Inject a fault into the next ``count`` matching requests (None: until cleared).

        Modes: ``503``, ``throttle``, ``access_denied``, ``delay`` (sleep, then
        answer normally), ``drop`` (close the connection unanswered), ``error``
        (``http_status``/``code``/``message`` of your choice), ``none``
        (remove the rules for ``action``). Mangled copies of moto's real
        answer: ``truncate`` (cut mid-SecretAccessKey, honest Content-Length),
        ``short_body`` (full Content-Length, body cut mid-SessionToken, then
        the connection closes), ``garble`` (invalid XML around intact
        credential elements), ``html`` (a proxy page quoting the answer;
        ``http_status`` default 200), ``unparseable`` (200, the credentials as
        JSON), ``error_200`` (200, an ErrorResponse quoting the credentials);
        the credentials they carried are in :meth:`issued`. ``delay_seconds``
        > 0 delays any mode. Rules are applied first-added-first. Returns the
        active rules.
        """
        rule: dict[str, Any] = {
            "action": action,
            "mode": mode,
            "count": count,
            "delay_seconds": delay_seconds,
        }
        if http_status is not None:
            rule["http_status"] = http_status
        if code is not None:
            rule["code"] = code
        if message is not None:
            rule["message"] = message
        result: dict[str, Any] = self._request("POST", "faults", rule)
        faults: list[dict[str, Any]] = result["faults"]
        return faults

    def issued(self, action: str | None = "AssumeRole") -> list[dict[str, str]]:
        """Credentials that mangled answers carried (``AccessKeyId``, ``SecretAccessKey``,
        ``SessionToken``), oldest first: what a client must never print."""
        return [call["issued"] for call in self.calls(action) if call.get("issued")]

    def faults(self) -> list[dict[str, Any]]:
        """Active fault rules (``count`` is what remains)."""
        result: list[dict[str, Any]] = self._request("GET", "faults")
        return result

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._request("DELETE", "faults")

    def set_duration_override(self, seconds: int | None) -> None:
        """Make AssumeRole* credentials last ``seconds`` whatever the client asked.

        botocore refuses DurationSeconds < 900, so this is how tests get
        credentials that expire within seconds. Recorded ``params`` keep the
        client's value; records carry ``duration_override``. ``reset()`` and
        ``None`` restore normal behaviour.
        """
        self._request("POST", "settings", {"duration_override": seconds})

    # -- process lifetime -------------------------------------------------------

    def stderr_text(self) -> str:
        """What the server process wrote to stderr so far ('' if unknown)."""
        return _read_stderr(self._workdir)

    def _stderr_hint(self) -> str:
        return _stderr_hint(self._workdir)

    def is_running(self) -> bool:
        """True while the owned server process has not exited."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """Terminate the owned process (SIGTERM, then SIGKILL) and return its exit code.

        Idempotent. ``process`` stays set so callers can inspect it afterwards.
        """
        rc = None if self.process is None else _stop_process(self.process, timeout)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return rc

    def __enter__(self) -> StsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _read_stderr(workdir: Path | None) -> str:
    if workdir is None:
        return ""
    try:
        return (workdir / "stderr.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _stderr_hint(workdir: Path | None) -> str:
    text = _read_stderr(workdir).strip()
    return f"\n--- sts_server stderr ---\n{text[-4000:]}" if text else ""


def _stop_process(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM, bounded wait, then SIGKILL; always reaps the process."""
    atexit.unregister(proc.kill)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_server(
    timeout: float = 30.0,
    *,
    verbose: bool = False,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> StsServer:
    """Launch ``sts_server.py`` in a new process and wait until it answers.

    Returns an ``StsServer`` owning the process; use it as a context manager
    or call ``stop()``. Raises ``StsServerError`` (including the server's
    stderr) if it exits or is not ready within ``timeout`` seconds; the
    process is always killed in that case.
    """
    workdir = Path(tempfile.mkdtemp(prefix="brs-sts-server-"))
    ready_file = workdir / "ready"
    cmd = [
        sys.executable,
        str(SERVER_SCRIPT),
        "--port",
        "0",
        "--ready-file",
        str(ready_file),
        # The server exits by itself if we die without cleaning up (SIGKILL).
        "--parent-pid",
        str(os.getpid()),
        *(["--verbose"] if verbose else []),
        *extra_args,
    ]
    # The server never talks to real AWS, but keep developer AWS/moto settings
    # (e.g. MOTO_ACCOUNT_ID) out so results are deterministic.
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    child_env["PYTHONUNBUFFERED"] = "1"
    child_env.update(env or {})

    # stderr goes to a file, not a pipe: nobody drains a pipe while tests run,
    # and a full pipe buffer would block the server.
    with open(workdir / "stderr.log", "wb") as stderr_fh:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr_fh,
            env=child_env,
            close_fds=True,
        )
    # Last-resort cleanup if nobody calls stop(); unregistered by stop().
    atexit.register(proc.kill)
    try:
        deadline = time.monotonic() + timeout
        url: str | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if ready_file.exists():
                url = ready_file.read_text(encoding="utf-8").strip()
                break
            time.sleep(0.05)
        if url is None:
            reason = (
                f"exited with status {proc.returncode}"
                if proc.poll() is not None
                else f"was not ready after {timeout:.0f}s"
            )
            raise StsServerError(f"sts_server.py {reason}: {' '.join(cmd)}" + _stderr_hint(workdir))
        server = StsServer(url, proc, workdir)
        # The ready file is written after listen(), so this normally succeeds
        # at once; it also proves the middleware answers.
        if not _port_open(server.host, server.port):
            raise StsServerError(
                f"sts_server.py wrote {url} but does not accept connections" + server._stderr_hint()
            )
        server.health(timeout=max(1.0, deadline - time.monotonic()))
        return server
    except BaseException:
        # Includes KeyboardInterrupt: never leave a half-started server behind.
        _stop_process(proc, timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)
        raise
