"""The credential endpoint's HTTP server: the container-credentials protocol on 127.0.0.1.

:class:`Server` answers every SDK's container provider (the wire format:
:mod:`brs_autopatch.methods.endpoint`)::

    GET /credentials            Authorization: <token>
    200 {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "AccountId"?, "BrsIssuedAt"}

Security: bound to 127.0.0.1 only (by whoever made the listening socket); the 256-bit
token compared in constant time (:class:`Gate`); a missing token is 401, a wrong one
403, neither with credentials, logged once per peer address and never with what was
sent; idle or slow connections (anyone on the host can open them) cost no thread and
are dropped ``READ_DEADLINE`` s after accept, so they never hold up the tree; no secret
in any log line.

Not here: what the answer holds (:mod:`brs_autopatch.serve.role`), the processes that
run a server for a launch tree and keep it alive (:mod:`brs_autopatch.serve.supervisor`),
the in-process endpoint (:mod:`brs_autopatch.serve.inprocess`), which runs this server
from a thread.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from ..methods import endpoint
from .role import Credentials

logger = logging.getLogger("brs_autopatch")

READ_DEADLINE = 2.0  # seconds from accept to a whole request head (one write for an SDK)
MAX_HEAD = 16 * 1024
MAX_READING = 512  # connections still sending their request; beyond, the oldest is dropped
WORKERS = 32  # threads answering requests that carry the token
SEND_TIMEOUT = 2.0
POLL_SECONDS = 0.2


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
