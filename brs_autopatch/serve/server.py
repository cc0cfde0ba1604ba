"""The launch tree's credential server: the container-credentials protocol on 127.0.0.1.

Two processes, which :mod:`brs_autopatch.serve.start` double-forks before brs-run becomes
the program. The *supervisor* (:func:`run`) holds the listening socket and forks the
*server* (:func:`serve`) that answers on it; if the server dies while the program runs
(OOM killer, ``kill -9``) it forks another at once, on the same socket: same port,
same token, and the port is never free for anyone else to bind. The server holds
the source credentials and one refreshing :class:`~brs_autopatch.RoleCredentials`
(built by the same factory as the patch, refreshing in the background ahead of its
advisory window) and answers every SDK's container provider::

    GET /credentials            Authorization: <token>
    200 {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "AccountId"?,
         "BrsIssuedAt"}        (the wire format: brs_autopatch.methods.endpoint)

Security: bound to 127.0.0.1 only; the 256-bit token compared in constant time; a
missing token is 401, a wrong one 403, neither with credentials, logged once per
peer address and never with what was sent; idle or slow connections (anyone on the
host can open them) cost no thread and are dropped ``READ_DEADLINE`` s after accept,
so they never hold up the tree (:class:`Server`); no secret in any log line. Both
processes are not dumpable (no ptrace, ``/proc/PID/environ`` and ``mem`` root-only)
and blank the environment block inherited from brs-run (:mod:`brs_autopatch.serve.watch`).

Lifetime: exactly the program's. Both ignore SIGTERM, SIGINT and SIGHUP (meant for
the program, which may still need credentials while it shuts down). A pidfd (Linux
>= 5.3; else polling the PID) says when the program has ended, however it ended; the
server and the supervisor then remove the directory (token file, AWS files) and exit
within about a second. Whichever of the two outlives the other cleans up; if both were
killed, the next ``brs-run --serve`` of the same user removes it (:func:`sweep`).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import math
import os
import selectors
import shutil
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from ..methods import endpoint
from .watch import alive, detach, first_ended, make_private, pidfd, scrub, set_title, watcher

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..credentials.engine import RoleCredentials

logger = logging.getLogger("brs_autopatch")

READ_DEADLINE = 2.0  # seconds from accept to a whole request head (one write for an SDK)
MAX_HEAD = 16 * 1024
MAX_READING = 512  # connections still sending their request; beyond, the oldest is dropped
WORKERS = 32  # threads answering requests that carry the token
SEND_TIMEOUT = 2.0
POLL_SECONDS = 0.2
START_FAILED = 1  # a server's exit status when it could not start (and said why): no restart
LOOP_FAILED = 70  # its accept-and-read loop failed: restarted
OWNER_FILE = "program"  # in the token directory: the program's PID, for sweep()


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
            from .. import build as factory
            from ..credentials import failures

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
        return endpoint.answer(
            snapshot["access_key"],
            snapshot["secret_key"],
            snapshot["token"],
            _timestamp(snapshot["expiry_time"]),
            issued_at=snapshot.get("issued_at") or credentials.now(),
            account_id=snapshot.get("account_id"),
        )

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


class _Reading:
    """A connection still sending its request: what came so far, and its deadline."""

    __slots__ = ("data", "deadline", "peer", "sock")

    def __init__(self, sock: socket.socket, peer: str, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.deadline = deadline
        self.data = b""


class Server:
    """The HTTP side: one thread reads every request, worker threads answer the tree.

    Reading costs a connection no thread: the accept-and-read loop multiplexes every
    connection (selectors), each with ``READ_DEADLINE`` s from accept to a whole request
    head, at most ``MAX_READING`` at once (beyond that the oldest is dropped). Idle or
    slow connections, which anyone on the host can open without the token, so never
    hold up the tree's requests, whose head comes in one write. Refusals (no or wrong
    token, wrong method or path) are answered by the loop at once; requests with the
    token go to ``WORKERS`` threads, as an answer may wait for STS. A client that leaves
    early is no error: nothing is logged, nothing printed.
    """

    def __init__(self, listener: socket.socket, gate: Gate, credentials: Credentials, path: str) -> None:
        self.listener = listener
        self.gate = gate
        self.credentials = credentials
        self.path = path
        self._selector = selectors.DefaultSelector()
        self._reading: dict[int, _Reading] = {}  # by descriptor, in accept (= deadline) order
        self._workers = ThreadPoolExecutor(WORKERS, thread_name_prefix="brs-serve")
        self._stop = threading.Event()
        self._stopped = threading.Event()

    def serve_forever(self, poll_interval: float = POLL_SECONDS) -> None:
        try:
            self._loop(poll_interval)
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop the loop (within its poll interval) and wait for it (the bench; the
        server process just exits)."""
        self._stop.set()
        self._stopped.wait()

    def server_close(self) -> None:
        for connection in list(self._reading.values()):
            self._drop(connection)
        self._selector.close()
        self._workers.shutdown(wait=True)
        self.listener.close()

    def _loop(self, poll_interval: float) -> None:
        self.listener.setblocking(False)
        self._selector.register(self.listener, selectors.EVENT_READ, None)
        while not self._stop.is_set():
            timeout = poll_interval
            if self._reading:
                oldest = next(iter(self._reading.values()))
                timeout = max(0.0, min(timeout, oldest.deadline - time.monotonic()))
            for key, _ in self._selector.select(timeout):
                connection: _Reading | None = key.data
                if connection is None:
                    self._accept()
                elif self._reading.get(key.fd) is connection:  # not dropped meanwhile
                    self._read(connection)
            now = time.monotonic()
            while self._reading:
                oldest = next(iter(self._reading.values()))
                if oldest.deadline > now:
                    break
                self._drop(oldest)

    def _accept(self) -> None:
        for _ in range(64):  # a burst, then the reads get their turn
            try:
                sock, address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE, ENFILE, ENOBUFS: make room, retry on the next turn
                if self._reading:
                    self._drop(next(iter(self._reading.values())))
                else:
                    time.sleep(0.01)
                return
            if len(self._reading) >= MAX_READING:
                self._drop(next(iter(self._reading.values())))
            sock.setblocking(False)
            connection = _Reading(sock, str(address[0]), time.monotonic() + READ_DEADLINE)
            self._reading[sock.fileno()] = connection
            self._selector.register(sock, selectors.EVENT_READ, connection)

    def _read(self, connection: _Reading) -> None:
        try:
            chunk = connection.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(connection)
            return
        connection.data += chunk
        end = _head_end(connection.data)
        if end is None and len(connection.data) <= MAX_HEAD:
            return
        self._forget(connection)
        if end is None:
            _refuse(connection.sock, 431, endpoint.error("RequestHeaderFieldsTooLarge", "too large"))
            return
        self._dispatch(connection.sock, connection.peer, connection.data[:end])

    def _dispatch(self, sock: socket.socket, peer: str, head: bytes) -> None:
        request = _parse(head)
        if request is None:
            _refuse(sock, 400, endpoint.error("BadRequest", "not an HTTP request"))
            return
        method, target, headers = request
        if method != "GET":
            _refuse(sock, 405, endpoint.error("MethodNotAllowed", "GET only"))
            return
        status = self.gate.status(headers.get(endpoint.AUTHORIZATION_HEADER.lower()))
        if status != 200:
            self.gate.refuse(peer, status)
            code = "Unauthorized" if status == 401 else "Forbidden"
            _refuse(sock, status, endpoint.error(code, "a valid authorization token is required"))
            return
        if target.split("?", 1)[0] != self.path:
            _refuse(sock, 404, endpoint.error("NotFound", f"credentials are served at {self.path}"))
            return
        newer_than = endpoint.newer_than(headers.get(endpoint.NEWER_THAN_HEADER.lower()))
        self._workers.submit(self._answer, sock, newer_than)

    def _answer(self, sock: socket.socket, newer_than: float | None) -> None:
        try:
            answer = self.credentials.answer(newer_than)
        except Exception as error:  # Unavailable, CredentialRefreshError: messages hold no secret
            _reply(sock, 500, endpoint.error("CredentialsUnavailable", str(error).splitlines()[0][:500]))
            return
        _reply(sock, 200, answer)

    def _forget(self, connection: _Reading) -> None:
        # Before any close: a descriptor number is never looked up after it is reused.
        self._reading.pop(connection.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(connection.sock)

    def _drop(self, connection: _Reading) -> None:
        self._forget(connection)
        connection.sock.close()


def _head_end(data: bytes) -> int | None:
    ends = [index for index in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if index >= 0]
    return min(ends) if ends else None


def _parse(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    """Method, target and headers (lower-case names, the first of each) of a request head."""
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers.setdefault(name.strip().lower(), value.strip())
    return parts[0], parts[1], headers


def _response(status: int, payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload).encode("utf-8")
    head = (
        f"HTTP/1.0 {status} {HTTPStatus(status).phrase}\r\n"
        f"Server: brs-autopatch\r\nDate: {formatdate(usegmt=True)}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _reply(sock: socket.socket, status: int, payload: dict[str, Any]) -> None:
    """A worker's answer: send it (blocking, bounded) and close; a client that has left
    is no error (nothing to log)."""
    try:
        sock.settimeout(SEND_TIMEOUT)
        sock.sendall(_response(status, payload))
    except OSError:
        pass
    finally:
        sock.close()


def _refuse(sock: socket.socket, status: int, payload: dict[str, Any]) -> None:
    """The loop's answer: one non-blocking send (a few hundred bytes fit any fresh socket's
    buffer; a client that cannot take them gets less), then close. The loop never waits."""
    try:
        sock.send(_response(status, payload))
    except OSError:
        pass
    finally:
        sock.close()


# -- the processes -------------------------------------------------------------------------


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
    """The supervisor: hold the listening socket, keep a server on it while ``program`` runs.

    Forks the server (:func:`serve`), which reports on ``status_fd``; when a server
    ends while the program runs (OOM killer, ``kill -9``), forks another on the same
    socket at once: the port is never free, the token and URL stay. Ignores the stop
    signals meant for the program. When the program has ended, however it ended, makes
    sure the server has ended too and removes ``workdir``.
    """
    try:
        try:
            detach(keep={listener.fileno(), status_fd})
            program_fd = pidfd(program)
        except OSError as error:  # EMFILE, no /dev/null...: say why, in brs-run's one line
            _report(status_fd, f"the credential server cannot start: {error.strerror or error}")
            return START_FAILED
        _ignore_stop_signals()
        if not make_private("brs-supervisor") and sys.platform.startswith("linux"):
            # Fail closed: a dumpable server would hand the source keys to the program's user.
            _report(status_fd, "the credential server cannot start: cannot make it non-dumpable (prctl)")
            return START_FAILED
        scrub(f"brs-run: credential supervisor for PID {program}")
        from ..util import logs

        logs.configure(settings.log_level)
        settings = _with_cache(settings, workdir)
        report: int | None = status_fd
        quick = 0
        while True:
            started = time.monotonic()
            child = _fork_server(listener, report, program=program, env=env, settings=settings,
                                 token=token, workdir=workdir)
            first, report = report is not None, None
            if first:
                with contextlib.suppress(OSError):  # the server's now: brs-run sees its end
                    os.close(status_fd)
                _preload()  # while the first server starts: a restarted one serves sooner
                _mark(workdir, program)
                sweep(workdir)
            if child is None:  # fork failed (EAGAIN, ENOMEM): brs-run was told, or try again
                if first or first_ended([program], [program_fd], 0.5) is not None:
                    return START_FAILED if first else 0
                continue
            child_fd = pidfd(child)
            ended = None
            while ended is None:
                ended = first_ended([program, child], [program_fd, child_fd], 3600.0)
            if ended == program:
                _end(child, child_fd)
                return 0
            _, status = os.waitpid(child, 0)
            if child_fd is not None:
                os.close(child_fd)
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) in (0, START_FAILED):
                # It ended as planned (it saw the program end) or could not start and said
                # why: nothing to restart. Clean up once the program has ended.
                while first_ended([program], [program_fd], 3600.0) is None:
                    pass
                return 0
            quick = quick + 1 if time.monotonic() - started < 1.0 else 0
            logger.warning(
                "credential server (process %s) %s; starting another on the same port", child, _how(status)
            )
            # A server that keeps dying at once is not restarted in a tight loop.
            pause = min(0.5, 0.05 * 2.0**quick) if quick > 1 else 0.0
            if pause and first_ended([program], [program_fd], pause) is not None:
                return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _with_cache(settings: Settings, workdir: str) -> Settings:
    """Settings whose credentials go through a file cache, ``BRS_CACHE_DIR`` or the workdir's.

    A restarted server then starts from the role credentials its predecessor got (a
    cache hit builds no STS client, the slow part of a start) and answers at once.
    The cache holds the role's credentials only, which the token gives anyway, in the
    0700 token directory that goes with the program.
    """
    if settings.cache_dir is not None:
        return settings
    cache = os.path.join(workdir, "cache")
    try:
        os.mkdir(cache, 0o700)
    except OSError:
        return settings
    return settings.replace(cache_dir=cache)


def _mark(workdir: str, program: int) -> None:
    # Whose directory this is, for a later sweep (see sweep()).
    with contextlib.suppress(OSError):
        fd = os.open(os.path.join(workdir, OWNER_FILE), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(f"{program}\n")


def sweep(workdir: str) -> int:
    """Remove this user's token directories left by trees whose program has ended.

    Only when both the server and its supervisor were killed (``SIGKILL``) does a
    directory outlive its program; the next ``brs-run --serve`` in the same temporary
    directory removes it. A directory counts only if it is a real directory (no
    symlink), ours, named ``brs-serve-*`` and marked with its program's PID; a PID
    that is alive (or reused) keeps it. Returns how many were removed.
    """
    parent, name = os.path.split(workdir)
    removed = 0
    with contextlib.suppress(OSError), os.scandir(parent) as entries:
        for count, entry in enumerate(entries):
            if count > 10_000:
                break
            if not entry.name.startswith("brs-serve-") or entry.name == name:
                continue
            try:
                info = entry.stat(follow_symlinks=False)
                if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
                    continue
                with open(os.path.join(entry.path, OWNER_FILE), encoding="ascii") as handle:
                    pid = int(handle.read(32).strip())
            except (OSError, ValueError):
                continue
            if pid > 0 and not alive(pid):
                shutil.rmtree(entry.path, ignore_errors=True)  # fd-based: no symlink is followed
                removed += 1
    return removed


def _fork_server(
    listener: socket.socket, report: int | None, **kwargs: Any
) -> int | None:
    try:
        child = os.fork()
    except OSError as error:
        if report is not None:
            _report(report, f"cannot start the credential server: {error.strerror or error}")
        else:
            logger.warning("credential server: cannot start another: %s", error.strerror or error)
        return None
    if child:
        return child
    code = START_FAILED  # pragma: no cover - runs in the forked child
    try:
        code = serve(listener, report, **kwargs)
    except Exception as error:
        _report_or_warn(report, f"the credential server cannot start: {type(error).__name__}: {error}")
    finally:
        os._exit(code)


def _ignore_stop_signals() -> None:
    # systemd, docker and Kubernetes signal every process of the unit; these are meant
    # for the program, which may still need credentials while it shuts down.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


def _preload() -> None:
    # Imports a server does before it can answer; done here they are inherited.
    with contextlib.suppress(Exception):
        from ..credentials import failures  # noqa: F401


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"was killed by {signal.Signals(number).name}"
        except ValueError:
            return f"was killed by signal {number}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _end(child: int, child_fd: int | None) -> None:
    # The server sees the program end too and exits within POLL_SECONDS; one that does
    # not (stopped, stuck) is killed.
    if first_ended([child], [child_fd], 1.0) is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(child, 0)
    if child_fd is not None:
        os.close(child_fd)


def serve(
    listener: socket.socket,
    status_fd: int | None,
    *,
    program: int,
    env: dict[str, str],
    settings: Settings,
    token: str,
    workdir: str,
) -> int:
    """The server process: start, report on ``status_fd`` (the first one), serve until ``program`` ends."""
    try:
        watch = watcher(program)
    except OSError as error:
        _report_or_warn(status_fd, f"the credential server cannot start: {error.strerror or error}")
        return START_FAILED
    set_title(f"brs-run: credential server for PID {program}")
    make_private("brs-server")
    os.environ.update(env)  # the launcher's environment: the source credentials
    credentials = Credentials(settings)
    if status_fd is None:
        # A restart: the tree is waiting, fetch now rather than on the first request.
        threading.Thread(target=_warm, args=(credentials,), daemon=True).start()
    elif not settings.defer_refresh:
        quiet = _Quiet()
        logger.addFilter(quiet)  # brs-run's one line says it all
        try:
            credentials.build()  # the first AssumeRole, before the program starts
        except Unavailable as error:
            _report(status_fd, f"cannot get the first credentials: {error}")
            return START_FAILED
        finally:
            logger.removeFilter(quiet)
    server = Server(listener, Gate(token), credentials, endpoint.PATH)
    thread = threading.Thread(target=_serve_or_exit, args=(server,), daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    logger.info("credential server on %s for process %s", endpoint.url(port), program)
    if status_fd is not None:
        _report(status_fd, "ok")
    while not watch(POLL_SECONDS):
        pass
    # No waiting for the loop or the workers: os._exit (the caller) ends every thread.
    credentials.stop()
    if server.gate.refused:
        refused = server.gate.refused
        logger.info("credential server: refused %s requests (missing or wrong token)", refused)
    shutil.rmtree(workdir, ignore_errors=True)  # the program has ended (the supervisor does it too)
    return 0


def _serve_or_exit(server: Server) -> None:
    # A server that no longer answers must not look alive: end the process, and the
    # supervisor starts another on the same socket.
    try:
        server.serve_forever(POLL_SECONDS)
    except BaseException as error:
        logger.warning("credential server: %s: %s", type(error).__name__, str(error).splitlines()[:1])
    os._exit(LOOP_FAILED)


def _warm(credentials: Credentials) -> None:
    with contextlib.suppress(Exception):
        credentials.build()


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


def _report_or_warn(fd: int | None, line: str) -> None:
    """The first server reports to brs-run (its one line before exit 2); a restarted one,
    with nobody waiting for a status, logs a WARNING instead."""
    if fd is not None:
        _report(fd, line)
    else:
        logger.warning("%s", line)


def _report(fd: int, line: str) -> None:
    try:
        os.write(fd, (line.replace("\n", " ") + "\n").encode("utf-8", "replace"))
        os.close(fd)
    except OSError:
        pass
