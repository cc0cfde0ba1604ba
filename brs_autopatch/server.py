"""The launch tree's credential server: the container-credentials protocol on 127.0.0.1.

Runs in the process :mod:`brs_autopatch.serve` double-forks before brs-run becomes
the program. It holds the source credentials and one refreshing
:class:`~brs_autopatch.RoleCredentials` (built by the same factory as the patch,
refreshing in the background ahead of its advisory window) and answers every SDK's
container provider::

    GET /credentials            Authorization: <token>
    200 {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "AccountId"?,
         "BrsIssuedAt"}        (BrsIssuedAt: see brs_autopatch.served)

Security: bound to 127.0.0.1 only; the 256-bit token compared in constant time; a
missing token is 401, a wrong one 403, neither with credentials, logged once per
peer address and never with what was sent; at most ``MAX_CONCURRENT`` requests at
once, each with a socket timeout; no secret in any log line.

Lifetime: exactly the program's. A pidfd (Linux >= 5.3; else polling the PID) says
when the program has ended, however it ended; the server then removes its
directory (token file, AWS files) and exits within ``POLL_SECONDS``.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .served import ISSUED_AT_FIELD, NEWER_THAN_HEADER
from .watch import detach, watcher

if TYPE_CHECKING:
    from .credentials import RoleCredentials
    from .settings import Settings

logger = logging.getLogger("brs_autopatch")

MAX_CONCURRENT = 32
REQUEST_TIMEOUT = 5.0  # seconds a client may take to send its request
POLL_SECONDS = 0.2


class Credentials:
    """The role credentials, built before the program starts or on the first request."""

    def __init__(
        self, settings: Settings, *, clock: Callable[[], float] = time.time, background: bool = True
    ) -> None:
        # Background refresh whatever BRS_DEFER_REFRESH says: that setting only picks
        # when the first AssumeRole happens (now, or on the first request). The bench
        # simulates hours with ``clock`` and refreshes on the request path instead.
        self._settings = settings.replace(defer_refresh=not background)
        self._clock = clock
        self._lock = threading.Lock()
        self._credentials: RoleCredentials | None = None
        self._error: str | None = None
        self._retry_at = 0.0
        self._failures = 0

    def build(self) -> RoleCredentials:
        """The credentials (the first call does the first AssumeRole). Raises on failure."""
        with self._lock:
            if self._credentials is not None:
                return self._credentials
            if self._error is not None and time.monotonic() < self._retry_at:
                raise Unavailable(self._error)
            from . import factory, failures

            try:
                self._credentials = factory.build(self._settings, clock=self._clock)
            except Exception as error:
                cause, _ = failures.describe_error(error)
                self._failures += 1
                self._error = str(error) if isinstance(error, (ValueError, RuntimeError)) else cause
                # Requests keep coming: retry STS at most every 1, 2, 4 ... 30 s.
                self._retry_at = time.monotonic() + min(30.0, 2.0 ** (self._failures - 1))
                raise Unavailable(self._error) from None
            return self._credentials

    def answer(self, newer_than: float | None) -> dict[str, Any]:
        """The container-protocol answer; waits for a refresh that is due if asked."""
        credentials = self.build()
        credentials.get_frozen_credentials()  # refreshes inside the windows; raises when it must
        snapshot = _snapshot(credentials)
        # Compared as served: whole seconds (what the child holds came from this answer).
        expiry = math.floor(_timestamp(snapshot["expiry_time"]))
        if newer_than is not None and expiry <= newer_than:
            # A child is at its window and the server still has the same credentials:
            # take part in the refresh that is due, or wait for the one under way.
            # Whether one is due is decided under the refresh lock (never from a read
            # before it: a refresh landing in between would make the old credentials
            # look current, and the child back off), and the credentials read again.
            credentials.refresh_in_background()
            snapshot = _snapshot(credentials)
        answer: dict[str, Any] = {
            "AccessKeyId": snapshot["access_key"],
            "SecretAccessKey": snapshot["secret_key"],
            "Token": snapshot["token"],
            "Expiration": _iso_z(_timestamp(snapshot["expiry_time"])),
            ISSUED_AT_FIELD: float(snapshot.get("issued_at") or credentials.now()),
        }
        if snapshot.get("account_id"):
            answer["AccountId"] = snapshot["account_id"]
        return answer

    def stop(self) -> None:
        if self._credentials is not None:
            self._credentials.stop(timeout=0.2)


class Unavailable(RuntimeError):
    """No credentials to serve right now (the reason, one line, no secret)."""


def _snapshot(credentials: RoleCredentials) -> Mapping[str, Any]:
    # Keys, expiry and issue time that belong together, in one read (not three).
    metadata = credentials.snapshot()
    if metadata is None:
        raise Unavailable("no credentials fetched yet")
    return metadata


def _timestamp(expiry: Any) -> float:
    if isinstance(expiry, datetime):
        return expiry.timestamp()
    from dateutil.parser import isoparse

    return isoparse(str(expiry)).timestamp()


def _iso_z(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Gate:
    """The token check and its once-per-peer log of refusals."""

    def __init__(self, token: str) -> None:
        self._token = token.encode("ascii")
        self._lock = threading.Lock()
        self._logged: set[tuple[str, int]] = set()
        self.refused = 0

    def status(self, header: str | None) -> int:
        """200 for the right token, 401 without one, 403 for a wrong one."""
        if not header:
            return 401
        given = header.strip().encode("utf-8", "replace")
        return 200 if hmac.compare_digest(given, self._token) else 403

    def refuse(self, peer: str, status: int) -> None:
        with self._lock:
            self.refused += 1
            first = (peer, status) not in self._logged
            self._logged.add((peer, status))
        if first:
            what = "without a token" if status == 401 else "with a wrong token"
            logger.warning(
                "credential server: refused a request from %s %s (HTTP %s; further ones not logged)",
                peer,
                what,
                status,
            )


class Handler(BaseHTTPRequestHandler):
    server: Server
    timeout = REQUEST_TIMEOUT
    protocol_version = "HTTP/1.0"
    server_version = "brs-autopatch"
    sys_version = ""

    def do_GET(self) -> None:
        gate = self.server.gate
        status = gate.status(self.headers.get("Authorization"))
        if status != 200:
            gate.refuse(self.client_address[0], status)
            self._json(status, {"Code": "Unauthorized" if status == 401 else "Forbidden",
                                "Message": "a valid authorization token is required"})
            return
        if self.path.split("?", 1)[0] != self.server.path:
            self._json(404, {"Code": "NotFound", "Message": f"credentials are served at {self.server.path}"})
            return
        newer_than = _number(self.headers.get(NEWER_THAN_HEADER))
        try:
            answer = self.server.credentials.answer(newer_than)
        except Exception as error:  # Unavailable, CredentialRefreshError: messages hold no secret
            self._json(500, {"Code": "CredentialsUnavailable", "Message": str(error).splitlines()[0][:500]})
            return
        self._json(200, answer)

    def do_POST(self) -> None:
        self._json(405, {"Code": "MethodNotAllowed", "Message": "GET only"})

    do_PUT = do_DELETE = do_POST

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # http.server logs every request line to stderr: nothing there for the user


def _number(header: str | None) -> float | None:
    try:
        value = float(header) if header else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, listener: socket.socket, gate: Gate, credentials: Credentials, path: str) -> None:
        super().__init__(listener.getsockname(), Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.gate = gate
        self.credentials = credentials
        self.path = path
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Bounded concurrency: beyond MAX_CONCURRENT requests in flight, new
        # connections wait in the accept loop (and the kernel's backlog).
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up before its answer (an SDK's own timeout on a loaded
        # machine, a killed process) is not the server's error: socketserver's default
        # would print a traceback into the program's stderr.
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("credential server: %s hung up before its answer", client_address[0])
            return
        super().handle_error(request, client_address)


# -- the process ---------------------------------------------------------------------------


def run(
    listener: socket.socket,
    status_fd: int,
    *,
    program: int,
    env: dict[str, str],
    settings: Settings,
    token: str,
    workdir: str,
) -> int:
    """The server process: start, report on ``status_fd``, serve until ``program`` ends."""
    try:
        try:
            detach(keep={listener.fileno(), status_fd})
            watch = watcher(program)
        except OSError as error:  # EMFILE, no /dev/null...: say why, in brs-run's one line
            _report(status_fd, f"the credential server cannot start: {error.strerror or error}")
            return 1
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda *_: stop.set())
        os.environ.clear()
        os.environ.update(env)  # the launcher's environment: the source credentials
        from . import logs

        logs.configure(settings.log_level)
        credentials = Credentials(settings)
        if not settings.defer_refresh:
            quiet = _Quiet()
            logger.addFilter(quiet)  # brs-run's one line says it all
            try:
                credentials.build()  # the first AssumeRole, before the program starts
            except Unavailable as error:
                _report(status_fd, f"cannot get the first credentials: {error}")
                return 1
            finally:
                logger.removeFilter(quiet)
        from .serve import PATH

        server = Server(listener, Gate(token), credentials, PATH)
        thread = threading.Thread(target=server.serve_forever, args=(POLL_SECONDS,), daemon=True)
        thread.start()
        port = listener.getsockname()[1]
        logger.info("credential server on http://127.0.0.1:%s%s for process %s", port, PATH, program)
        _report(status_fd, "ok")
        while not stop.is_set() and not watch(POLL_SECONDS):
            pass
        # No server.shutdown(): it waits for the accept loop, which may wait for a free
        # slot; os._exit (the caller) ends every thread at once.
        credentials.stop()
        if server.gate.refused:
            refused = server.gate.refused
            logger.info("credential server: refused %s requests (missing or wrong token)", refused)
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


def _report(fd: int, line: str) -> None:
    try:
        os.write(fd, (line.replace("\n", " ") + "\n").encode("utf-8", "replace"))
        os.close(fd)
    except OSError:
        pass
