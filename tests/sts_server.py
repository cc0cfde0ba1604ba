"""Local fake AWS endpoint (moto) with request accounting and fault injection.

This module runs moto's server application on 127.0.0.1 behind a small WSGI
middleware that

* counts every AWS request per action (``"sts:AssumeRole"``, ``"s3:PUT"`` ...),
* records each request's parameters and the access key id that signed it,
* injects faults (503, throttling, AccessDenied, delay, dropped connection,
  arbitrary error, and mangled copies of moto's real answer: truncated, short,
  garbled, wrapped in HTML, wrong content) into the next N matching requests,
  recording the credentials a mangled answer carried, and
* serves a JSON control API under ``/_brs/`` (see ``CONTROL_PREFIX``).

It is deliberately free of pytest imports so that demos and scripts can use it.

Script usage::

    python tests/sts_server.py --port 0 --ready-file /tmp/ready

prints one line (``http://127.0.0.1:PORT``) to stdout, atomically writes the
same URL to ``--ready-file`` once the socket is listening, and exits with
status 0 on SIGTERM/SIGINT.

Control API (all responses are JSON):

=======  =====================  ==============================================
Method   Path                   Meaning
=======  =====================  ==============================================
GET      /_brs/health           ``{"ok": true, "pid": N}``
GET      /_brs/counts           ``{"sts:AssumeRole": 2, ...}``
GET      /_brs/calls            recorded requests, oldest first;
                                ``?action=AssumeRole`` or ``sts:AssumeRole``
                                filters
POST     /_brs/reset            clears counts, calls, faults, settings; body
                                ``{"moto": true}`` also resets moto's state
GET      /_brs/faults           active fault rules
POST     /_brs/faults           add a rule (or a list of rules), see
                                ``FaultRule.from_json``; ``"mode": "none"``
                                removes the rules for that action
DELETE   /_brs/faults           removes all fault rules
GET      /_brs/settings         ``{"duration_override": null}``
POST     /_brs/settings         ``{"duration_override": 5}``: moto issues
                                AssumeRole* credentials valid for 5 s
                                whatever DurationSeconds the client sent
                                (botocore rejects < 900 client-side);
                                ``null`` restores; reset clears it
=======  =====================  ==============================================

Fault modes (``"mode"`` of a rule; ``delay_seconds`` delays any of them):

=============  ==============================================================
Mode           What the client gets
=============  ==============================================================
503            ``ServiceUnavailable`` error, HTTP 503
throttle       ``Throttling`` error, HTTP 400
access_denied  ``AccessDenied`` error, HTTP 403
error          ``http_status`` / ``code`` / ``message`` of the rule's choice
delay          sleeps ``delay_seconds``, then the normal answer
drop           connection closed without an answer
truncate       moto's real answer cut in the middle of the SecretAccessKey
               value, with an honest Content-Length (a proxy truncating)
short_body     the real headers with the full Content-Length, the body up
               to the middle of the SessionToken, then the connection closes
garble         the real answer made invalid XML (``</Credentials>`` removed);
               the credential elements stay intact
html           HTTP 200 (or ``http_status``) text/html page of a "proxy"
               quoting the real answer verbatim
unparseable    HTTP 200 application/json: the real credentials as JSON
               (wrong content for the query protocol)
error_200      HTTP 200 with an STS ``ErrorResponse`` body whose Message
               quotes the real credentials
none           removes the rules for the action
=============  ==============================================================

The mangling modes (truncate ... error_200) really run the request through
moto first; the credentials moto issued are in the call record's ``issued``
(``{"AccessKeyId", "SecretAccessKey", "SessionToken"}``), so a test can look
for exactly those values in what the client printed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlencode

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.test import EnvironBuilder, run_wsgi_app

if TYPE_CHECKING:
    # wsgiref.types only exists from Python 3.11; typeshed has these for all.
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "CONTROL_PREFIX",
    "DEFAULT_ACCOUNT_ID",
    "FAULT_MODES",
    "MANGLING_MODES",
    "FaultRule",
    "HarnessServer",
    "HarnessState",
    "RequestInfo",
    "StsHarnessMiddleware",
    "main",
    "parse_request",
]

CONTROL_PREFIX: Final = "/_brs/"
# moto's default account; assumed-role credentials live in the account named
# in the RoleArn, everything else (source credentials moto never issued) here.
DEFAULT_ACCOUNT_ID: Final = "123456789012"

# Modes that take moto's real answer and damage it (see the table above).
MANGLING_MODES: Final = frozenset(
    {"truncate", "short_body", "garble", "html", "unparseable", "error_200"}
)
FAULT_MODES: Final = frozenset(
    {"503", "throttle", "access_denied", "delay", "drop", "error", "none"} | MANGLING_MODES
)

# Query-protocol actions botocore sends without a signature; moto itself uses
# the same table to route them to STS.
_UNSIGNED_STS_ACTIONS: Final = frozenset({"AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"})
_CREDENTIAL_RE: Final = re.compile(
    r"Credential=(?P<akid>[^/\s,]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request"
)
_ATTEMPT_RE: Final = re.compile(r"attempt=(\d+)")
_MAX_FORM_BODY: Final = 10 * 1024 * 1024
_STS_XMLNS: Final = "https://sts.amazonaws.com/doc/2011-06-15/"
# Actions whose DurationSeconds the duration override rewrites.
_ASSUME_ACTIONS: Final = frozenset(
    {"AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"}
)
# botocore refuses DurationSeconds < 900 client-side; the override exists so
# tests can still get credentials that expire within seconds.
_MAX_DURATION: Final = 129600


# --------------------------------------------------------------------------
# Request parsing
# --------------------------------------------------------------------------


@dataclass
class RequestInfo:
    """What the middleware learned about one AWS request."""

    method: str
    path: str
    service: str
    action: str
    params: dict[str, str]
    access_key_id: str | None
    region: str | None
    session_token: str | None
    attempt: int | None
    invocation_id: str | None
    json_protocol: bool

    @property
    def key(self) -> str:
        """Counter key, e.g. ``"sts:AssumeRole"`` or ``"s3:PUT"``."""
        return f"{self.service}:{self.action}"


def _buffer_form_body(environ: WSGIEnvironment) -> bytes:
    """Read a form-encoded request body and put it back for moto.

    Only ``application/x-www-form-urlencoded`` bodies (the AWS query protocol)
    are read: other bodies (S3 uploads, JSON) are not needed to find the action
    and are left streaming untouched. After reading, ``wsgi.input`` is replaced
    by a BytesIO holding exactly those bytes and ``CONTENT_LENGTH`` is fixed so
    that moto/Flask read the same body we saw.
    """
    content_type = str(environ.get("CONTENT_TYPE", ""))
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return b""
    stream = environ["wsgi.input"]
    length_text = str(environ.get("CONTENT_LENGTH", "") or "")
    if length_text.isdigit():
        # Read exactly Content-Length bytes: on a keep-alive connection anything
        # beyond it belongs to the next request.
        body = stream.read(int(length_text)) if int(length_text) else b""
    elif environ.get("wsgi.input_terminated"):
        body = stream.read(_MAX_FORM_BODY)  # chunked: stream ends at EOF
    else:
        return b""
    body = bytes(body)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def _form_params(raw: str) -> dict[str, str]:
    return dict(parse_qsl(raw, keep_blank_values=True))


def parse_request(environ: WSGIEnvironment) -> RequestInfo:
    """Classify a request by service/action; buffers form bodies (see above)."""
    method = str(environ.get("REQUEST_METHOD", "GET")).upper()
    path = str(environ.get("PATH_INFO", ""))
    params = _form_params(str(environ.get("QUERY_STRING", "")))
    body = _buffer_form_body(environ)
    if body:
        params.update(_form_params(body.decode("utf-8", "replace")))

    auth = str(environ.get("HTTP_AUTHORIZATION", ""))
    match = _CREDENTIAL_RE.search(auth)
    if match is None:
        # Presigned URLs carry the credential scope in the query string.
        match = _CREDENTIAL_RE.search("Credential=" + params.get("X-Amz-Credential", ""))
    access_key_id = match.group("akid") if match else None
    region = match.group("region") if match else None
    service = match.group("service").lower() if match else ""

    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    query_action = params.get("Action")
    if query_action:
        action = query_action
        if not service and query_action in _UNSIGNED_STS_ACTIONS:
            service = "sts"
    elif target:
        # JSON protocols: "X-Amz-Target: DynamoDB_20120810.GetItem".
        action = target.rsplit(".", 1)[-1]
    else:
        # REST protocols (S3 ...): the method is the most we can tell cheaply.
        action = method

    attempt_match = _ATTEMPT_RE.search(str(environ.get("HTTP_AMZ_SDK_REQUEST", "")))
    return RequestInfo(
        method=method,
        path=path,
        service=service or "unknown",
        action=action,
        params=params,
        access_key_id=access_key_id,
        region=region,
        session_token=environ.get("HTTP_X_AMZ_SECURITY_TOKEN"),
        attempt=int(attempt_match.group(1)) if attempt_match else None,
        invocation_id=environ.get("HTTP_AMZ_SDK_INVOCATION_ID"),
        json_protocol=bool(target) and not query_action,
    )


# --------------------------------------------------------------------------
# Fault rules and shared state
# --------------------------------------------------------------------------


def action_matches(pattern: str, key: str) -> bool:
    """Match ``"*"``, ``"sts:AssumeRole"`` (exact key) or ``"AssumeRole"`` (any service)."""
    if pattern in ("*", ""):
        return True
    if ":" in pattern:
        return pattern == key
    return key.split(":", 1)[-1] == pattern


@dataclass
class FaultRule:
    """One fault-injection rule; applies to the next ``remaining`` matches."""

    action: str
    mode: str
    delay_seconds: float = 0.0
    remaining: int | None = None  # None: until cleared
    http_status: int | None = None  # modes "error" and "html" only
    code: str | None = None  # mode "error" only
    message: str | None = None  # mode "error" only

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRule:
        """Validate a JSON rule.

        ``{"action": "AssumeRole", "mode": "503", "delay_seconds": 0,
        "count": 2}``; ``count`` null/missing means "until cleared". Mode
        ``error`` additionally takes ``http_status``, ``code``, ``message``.
        Any mode honours ``delay_seconds`` (sleep before failing).
        """
        if not isinstance(data, Mapping):
            raise ValueError("fault rule must be a JSON object")
        unknown = set(data) - {
            "action",
            "mode",
            "delay_seconds",
            "count",
            "http_status",
            "code",
            "message",
        }
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        action = data.get("action") or "*"
        mode = str(data.get("mode", ""))
        if not isinstance(action, str):
            raise ValueError("action must be a string")
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {sorted(FAULT_MODES)}, got {mode!r}")
        count = data.get("count")
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count < 1
        ):
            raise ValueError("count must be a positive integer or null")
        delay = data.get("delay_seconds", 0.0) or 0.0
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= 600:
            raise ValueError("delay_seconds must be a number in [0, 600]")
        if mode == "delay" and delay <= 0:
            raise ValueError("mode 'delay' needs delay_seconds > 0")
        status = data.get("http_status")
        lowest = 200 if mode == "html" else 400
        if status is not None and (
            isinstance(status, bool) or not isinstance(status, int) or not lowest <= status <= 599
        ):
            raise ValueError(f"http_status must be an integer in [{lowest}, 599]")
        code = data.get("code")
        message = data.get("message")
        if mode == "error" and not code:
            raise ValueError("mode 'error' needs a code")
        return cls(
            action=action,
            mode=mode,
            delay_seconds=float(delay),
            remaining=count,
            http_status=status,
            code=None if code is None else str(code),
            message=None if message is None else str(message),
        )

    def to_json(self) -> dict[str, Any]:
        """The rule in the same shape ``from_json`` accepts."""
        return {
            "action": self.action,
            "mode": self.mode,
            "delay_seconds": self.delay_seconds,
            "count": self.remaining,
            "http_status": self.http_status,
            "code": self.code,
            "message": self.message,
        }


@dataclass
class HarnessState:
    """Counters, call records and fault rules shared by all server threads."""

    counts: Counter[str] = field(default_factory=Counter)
    calls: list[dict[str, Any]] = field(default_factory=list)
    faults: list[FaultRule] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    duration_override: int | None = None  # seconds; see ``set_duration_override``
    _seq: int = 0

    def register(self, info: RequestInfo) -> tuple[dict[str, Any], FaultRule | None]:
        """Count and record a request and consume the first matching fault.

        Done under one lock so that concurrent requests see a consistent
        order and a fault with ``count=N`` hits exactly N requests.
        """
        with self.lock:
            fault: FaultRule | None = None
            for rule in self.faults:
                if action_matches(rule.action, info.key):
                    fault = rule
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            self.faults.remove(rule)
                    break
            self._seq += 1
            record: dict[str, Any] = {
                "seq": self._seq,
                "time": time.time(),
                "key": info.key,
                "service": info.service,
                "action": info.action,
                "method": info.method,
                "path": info.path,
                "params": dict(info.params),
                "access_key_id": info.access_key_id,
                "region": info.region,
                "session_token": info.session_token,
                "attempt": info.attempt,
                "invocation_id": info.invocation_id,
                "faulted": fault is not None,
                "fault_mode": fault.mode if fault else None,
                "status": None,  # filled in when the response starts
                # Mangling modes: the credentials moto issued in the damaged answer.
                "issued": None,
                # DurationSeconds actually given to moto when overridden;
                # params keep what the client sent.
                "duration_override": (
                    self.duration_override if info.action in _ASSUME_ACTIONS else None
                ),
            }
            self.counts[info.key] += 1
            self.calls.append(record)
            return record, fault

    def set_status(self, record: dict[str, Any], status: int) -> None:
        """Store the HTTP status sent for a recorded request."""
        with self.lock:
            record["status"] = status

    def set_issued(self, record: dict[str, Any], issued: dict[str, str]) -> None:
        """Store the credentials a mangled answer carried."""
        with self.lock:
            record["issued"] = issued

    def add_fault(self, rule: FaultRule) -> None:
        """Append a rule, or with mode ``none`` drop the rules for that action."""
        with self.lock:
            if rule.mode == "none":
                if rule.action in ("*", ""):
                    self.faults.clear()
                else:
                    self.faults[:] = [r for r in self.faults if r.action != rule.action]
            else:
                self.faults.append(rule)

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        with self.lock:
            self.faults.clear()

    def reset(self) -> None:
        """Forget counts, calls, faults and the duration override."""
        with self.lock:
            self.counts.clear()
            self.calls.clear()
            self.faults.clear()
            self.duration_override = None

    def set_duration_override(self, seconds: int | None) -> None:
        """Make moto issue credentials lasting ``seconds`` (None: as requested)."""
        if seconds is not None and (
            isinstance(seconds, bool)
            or not isinstance(seconds, int)
            or not 1 <= seconds <= _MAX_DURATION
        ):
            raise ValueError(
                f"duration_override must be null or an integer in [1, {_MAX_DURATION}]"
            )
        with self.lock:
            self.duration_override = seconds

    def settings(self) -> dict[str, Any]:
        """JSON view of the adjustable server settings."""
        with self.lock:
            return {"duration_override": self.duration_override}

    def snapshot_counts(self) -> dict[str, int]:
        """Copy of the counters."""
        with self.lock:
            return dict(self.counts)

    def snapshot_calls(self, action: str | None = None) -> list[dict[str, Any]]:
        """Deep-enough copy of the recorded calls, optionally filtered."""
        with self.lock:
            return [
                {**c, "params": dict(c["params"])}
                for c in self.calls
                if action is None or action_matches(action, c["key"])
            ]

    def snapshot_faults(self) -> list[dict[str, Any]]:
        """JSON view of the active fault rules."""
        with self.lock:
            return [r.to_json() for r in self.faults]


# --------------------------------------------------------------------------
# Middleware
# --------------------------------------------------------------------------


def _request_id() -> str:
    return str(uuid.uuid4())


class StsHarnessMiddleware:
    """WSGI middleware in front of moto: accounting, faults, control API."""

    def __init__(self, app: WSGIApplication, state: HarnessState | None = None) -> None:
        self.app = app
        self.state = state if state is not None else HarnessState()

    # -- dispatch -----------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith(CONTROL_PREFIX) or path == CONTROL_PREFIX.rstrip("/"):
            return self._control(environ, start_response)
        if path.startswith("/moto-api"):
            # moto's own dashboard/reset endpoints are harness plumbing, not AWS
            # traffic: pass through uncounted.
            return self.app(environ, start_response)

        info = parse_request(environ)
        record, fault = self.state.register(info)
        if record["duration_override"] is not None:
            _override_duration(environ, record["duration_override"])

        def recording_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            with contextlib.suppress(ValueError):
                self.state.set_status(record, int(status.split(None, 1)[0]))
            return start_response(status, headers, exc_info)

        if fault is not None:
            if fault.delay_seconds > 0:
                time.sleep(fault.delay_seconds)
            if fault.mode == "drop":
                self._drop_connection(environ)  # raises if it could drop
                return self._fault_response(info, "503", None, recording_start_response)
            if fault.mode in MANGLING_MODES:
                return self._mangled_response(environ, record, fault, recording_start_response)
            if fault.mode != "delay":
                return self._fault_response(info, fault.mode, fault, recording_start_response)
        return self.app(environ, recording_start_response)

    # -- faults ---------------------------------------------------------------

    @staticmethod
    def _drop_connection(environ: WSGIEnvironment) -> None:
        """Close the client socket without answering.

        werkzeug exposes the connection as ``werkzeug.socket``; after shutting
        it down we raise ConnectionAbortedError, which werkzeug treats as a
        dropped connection (no 500 page, no traceback). If the socket is not
        available the caller falls back to a 503.
        """
        sock = environ.get("werkzeug.socket")
        if not isinstance(sock, socket.socket):
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        raise ConnectionAbortedError("brs fault injection: connection dropped")

    def _mangled_response(
        self,
        environ: WSGIEnvironment,
        record: dict[str, Any],
        rule: FaultRule,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        """Run the request through moto, then damage its answer as ``rule.mode`` says."""
        status, headers, body = _run_app(self.app, environ)
        issued = _issued_credentials(body)
        if issued:
            self.state.set_issued(record, issued)
        mangled = _mangle(rule.mode, body, issued)
        kept = [
            (k, v) for k, v in headers if k.lower() not in ("content-length", "content-type")
        ]
        content_type = dict((k.lower(), v) for k, v in headers).get("content-type", "text/xml")
        if rule.mode == "html":
            status = f"{rule.http_status or 200} {_REASONS.get(rule.http_status or 200, 'OK')}"
            content_type = "text/html; charset=utf-8"
        elif rule.mode in ("unparseable", "error_200"):
            status = "200 OK"
            content_type = "application/json" if rule.mode == "unparseable" else "text/xml"
        if rule.mode != "short_body":
            kept += [("Content-Type", content_type), ("Content-Length", str(len(mangled)))]
            start_response(status, kept)
            return [mangled]
        # Promise the whole answer, send part of it, hang up.
        kept += [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        start_response(status, kept)
        return self._then_drop(environ, mangled)

    def _then_drop(self, environ: WSGIEnvironment, part: bytes) -> Iterator[bytes]:
        yield part
        # werkzeug has written and flushed ``part`` when asking for the next chunk.
        self._drop_connection(environ)

    @staticmethod
    def _fault_response(
        info: RequestInfo,
        mode: str,
        rule: FaultRule | None,
        start_response: StartResponse,
    ) -> list[bytes]:
        if mode == "503":
            status, code, message, sender = 503, "ServiceUnavailable", "Service Unavailable", False
        elif mode == "throttle":
            status, code, message, sender = 400, "Throttling", "Rate exceeded", True
        elif mode == "access_denied":
            resource = info.params.get("RoleArn", "*")
            status, code, sender = 403, "AccessDenied", True
            message = (
                f"User: {info.access_key_id or 'anonymous'} is not authorized to perform: "
                f"{info.service}:{info.action} on resource: {resource}"
            )
        else:  # "error"
            assert rule is not None
            status = rule.http_status or 400
            code = rule.code or "InternalFailure"
            message = rule.message or code
            sender = status < 500
        request_id = _request_id()
        headers: list[tuple[str, str]] = [("x-amzn-RequestId", request_id)]
        if info.json_protocol:
            body = json.dumps({"__type": code, "message": message}).encode()
            headers += [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)]
        elif info.service == "s3":
            body = (
                f"<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>{code}</Code>"
                f"<Message>{_xml_escape(message)}</Message><RequestId>{request_id}</RequestId></Error>"
            ).encode()
            headers.append(("Content-Type", "application/xml"))
        else:
            # AWS query protocol (STS, IAM ...), the shape botocore's parser expects.
            body = (
                f'<ErrorResponse xmlns="{_STS_XMLNS}"><Error>'
                f"<Type>{'Sender' if sender else 'Receiver'}</Type><Code>{code}</Code>"
                f"<Message>{_xml_escape(message)}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>"
            ).encode()
            headers.append(("Content-Type", "text/xml"))
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        return [body]

    # -- control API ----------------------------------------------------------

    def _control(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        name = str(environ.get("PATH_INFO", "")).removeprefix(CONTROL_PREFIX).strip("/")
        query = _form_params(str(environ.get("QUERY_STRING", "")))
        try:
            payload = self._read_json(environ)
            result: Any
            if (method, name) == ("GET", "health"):
                result = {"ok": True, "pid": os.getpid()}
            elif (method, name) == ("GET", "counts"):
                result = self.state.snapshot_counts()
            elif (method, name) == ("GET", "calls"):
                result = self.state.snapshot_calls(query.get("action"))
            elif (method, name) == ("POST", "reset"):
                self.state.reset()
                if isinstance(payload, Mapping) and payload.get("moto"):
                    self.reset_moto()
                result = {"ok": True}
            elif (method, name) == ("GET", "faults"):
                result = self.state.snapshot_faults()
            elif (method, name) == ("POST", "faults"):
                rules = payload if isinstance(payload, list) else [payload]
                parsed = [FaultRule.from_json(r) for r in rules]  # validate all first
                for rule in parsed:
                    self.state.add_fault(rule)
                result = {"ok": True, "faults": self.state.snapshot_faults()}
            elif (method, name) == ("GET", "settings"):
                result = self.state.settings()
            elif (method, name) == ("POST", "settings"):
                if not isinstance(payload, Mapping) or set(payload) - {"duration_override"}:
                    raise ValueError('settings body must be {"duration_override": int | null}')
                if "duration_override" in payload:
                    self.state.set_duration_override(payload["duration_override"])
                result = self.state.settings()
            elif (method, name) == ("DELETE", "faults"):
                self.state.clear_faults()
                result = {"ok": True}
            else:
                return _json_response(
                    start_response,
                    404,
                    {"error": f"no such control endpoint: {method} /_brs/{name}"},
                )
        except ValueError as exc:  # includes json.JSONDecodeError
            return _json_response(start_response, 400, {"error": str(exc)})
        return _json_response(start_response, 200, result)

    @staticmethod
    def _read_json(environ: WSGIEnvironment) -> Any:
        length_text = str(environ.get("CONTENT_LENGTH", "") or "0")
        length = int(length_text) if length_text.isdigit() else 0
        if length <= 0:
            return None
        return json.loads(environ["wsgi.input"].read(length).decode("utf-8"))

    def reset_moto(self) -> None:
        """Reset all moto backends through moto's own ``POST /moto-api/reset``."""
        environ = EnvironBuilder(method="POST", path="/moto-api/reset").get_environ()
        app_iter, status, _headers = run_wsgi_app(self.app, environ)
        try:
            for _chunk in app_iter:
                pass
        finally:
            close = getattr(app_iter, "close", None)
            if close is not None:
                close()
        if not status.startswith("200"):
            raise RuntimeError(f"moto reset failed: {status}")

    def warm_up(self) -> None:
        """Build moto's STS Flask app now instead of on the first test request.

        The first request to a moto service lazily imports and wires up its
        backend (hundreds of ms); doing it at start-up keeps timing-sensitive
        tests honest. Goes straight to moto, so nothing is counted.
        """
        body = "Action=GetCallerIdentity&Version=2011-06-15"
        environ = EnvironBuilder(
            method="POST",
            path="/",
            data=body,
            content_type="application/x-www-form-urlencoded; charset=utf-8",
            headers=[
                (
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIDWARMUP0000000000/20240101/us-east-1/"
                    "sts/aws4_request, SignedHeaders=host, Signature=0",
                )
            ],
        ).get_environ()
        app_iter, _status, _headers = run_wsgi_app(self.app, environ)
        for _chunk in app_iter:
            pass
        close = getattr(app_iter, "close", None)
        if close is not None:
            close()


_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def _override_duration(environ: WSGIEnvironment, seconds: int) -> None:
    """Rewrite DurationSeconds in an already buffered form body (see above).

    moto does not verify SigV4 signatures, so changing the signed body is fine.
    """
    stream = environ["wsgi.input"]
    if not isinstance(stream, io.BytesIO):
        return  # body was not buffered (not form-encoded): nothing to rewrite
    fields = [
        (k, v)
        for k, v in parse_qsl(stream.getvalue().decode("utf-8"), keep_blank_values=True)
        if k != "DurationSeconds"
    ]
    fields.append(("DurationSeconds", str(seconds)))
    body = urlencode(fields).encode("utf-8")
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))


def _run_app(app: WSGIApplication, environ: WSGIEnvironment) -> tuple[str, list[tuple[str, str]], bytes]:
    """Call a WSGI app and collect its whole answer: (status, headers, body)."""
    captured: dict[str, Any] = {}

    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, list(headers)
        return lambda data: None

    app_iter = app(environ, capture)
    try:
        body = b"".join(app_iter)
    finally:
        close = getattr(app_iter, "close", None)
        if close is not None:
            close()
    return str(captured["status"]), captured["headers"], body


_ISSUED_FIELDS: Final = ("AccessKeyId", "SecretAccessKey", "SessionToken")


def _issued_credentials(body: bytes) -> dict[str, str]:
    """The credential elements of an AssumeRole* answer ({} if there are none)."""
    text = body.decode("utf-8", "replace")
    found: dict[str, str] = {}
    for name in _ISSUED_FIELDS:
        match = re.search(rf"<{name}>([^<]*)</{name}>", text)
        if match:
            found[name] = match.group(1)
    return found if len(found) == len(_ISSUED_FIELDS) else {}


def _cut_inside(body: bytes, element: str) -> bytes:
    """``body`` up to the middle of ``element``'s value (half the body without it)."""
    match = re.search(rf"<{element}>([^<]*)</{element}>".encode(), body)
    if match is None:
        return body[: len(body) // 2]
    start, end = match.span(1)
    return body[: start + (end - start) // 2]


def _mangle(mode: str, body: bytes, issued: Mapping[str, str]) -> bytes:
    if mode == "truncate":
        return _cut_inside(body, "SecretAccessKey")
    if mode == "short_body":
        return _cut_inside(body, "SessionToken")
    if mode == "garble":
        garbled = body.replace(b"</Credentials>", b"", 1)
        return garbled if garbled != body else b"<" + body
    if mode == "html":
        return (
            b"<!DOCTYPE html>\n<html><head><title>Proxy error</title></head><body>\n"
            b"<h1>Upstream answered</h1>\n<pre>" + body + b"</pre>\n</body></html>\n"
        )
    if mode == "unparseable":
        return json.dumps({"Credentials": dict(issued), "note": "not XML"}).encode()
    if mode == "error_200":
        quoted = _xml_escape(body.decode("utf-8", "replace"))
        return (
            f'<ErrorResponse xmlns="{_STS_XMLNS}"><Error><Type>Receiver</Type>'
            f"<Code>InternalFailure</Code><Message>upstream said: {quoted}</Message></Error>"
            f"<RequestId>{_request_id()}</RequestId></ErrorResponse>"
        ).encode()
    raise ValueError(f"not a mangling mode: {mode}")


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _json_response(start_response: StartResponse, status: int, payload: Any) -> list[bytes]:
    body = json.dumps(payload, default=str).encode()
    start_response(
        f"{status} {_REASONS.get(status, 'OK' if status == 200 else 'Error')}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


class _QuietRequestHandler(MotoRequestHandler):
    """moto's handler without werkzeug's per-request access log on stderr."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _VerboseRequestHandler(MotoRequestHandler):
    """moto's handler with werkzeug's access log (``--verbose``)."""


class HarnessServer:
    """Threaded moto + middleware server bound to a (free) local port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        verbose: bool = False,
        warm_up: bool = True,
    ) -> None:
        self.state = HarnessState()
        self.middleware = StsHarnessMiddleware(
            DomainDispatcherApplication(create_backend_app), self.state
        )
        if warm_up:
            self.middleware.warm_up()
        handler = _VerboseRequestHandler if verbose else _QuietRequestHandler
        # make_server binds and listens immediately; threaded=True gives one
        # thread per connection so concurrent clients (and delay faults) work.
        self.server: BaseWSGIServer = make_server(
            host, port, self.middleware, threaded=True, request_handler=handler
        )
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        """Bound address."""
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        """Bound port (the real one when 0 was requested)."""
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    def serve_forever(self) -> None:
        """Serve in the calling thread until ``shutdown``."""
        self.server.serve_forever(poll_interval=0.2)

    def start_background(self) -> HarnessServer:
        """Serve from a daemon thread (in-process use); returns self."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="brs-sts-server", daemon=True
        )
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop serving and close the socket. Must not be called from the serving thread."""
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> HarnessServer:
        return self.start_background()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)  # readers see either no file or the whole URL


def _parent_alive(parent_pid: int, was_parent: bool) -> bool:
    if was_parent:
        # Reparenting (to init or a subreaper) is the reliable death signal.
        return os.getppid() == parent_pid
    try:
        os.kill(parent_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Script entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port, 0 = pick a free one (default)")
    parser.add_argument("--ready-file", help="write the base URL here (atomically) once listening")
    parser.add_argument("--parent-pid", type=int, help="exit when this process goes away")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    harness = HarnessServer(args.host, args.port, verbose=args.verbose)
    harness.start_background()
    try:
        print(harness.url, flush=True)
        # Keep stdout to that single line: moto occasionally print()s
        # diagnostics, send them to stderr instead.
        sys.stdout = sys.stderr
        if args.ready_file:
            _write_atomically(args.ready_file, harness.url + "\n")
        was_parent = args.parent_pid is not None and os.getppid() == args.parent_pid
        # Bounded waits in a loop: wakes up for signals and parent checks.
        while not stop.wait(0.5):
            if args.parent_pid is not None and not _parent_alive(args.parent_pid, was_parent):
                print("sts_server: parent process exited, shutting down", file=sys.stderr)
                break
    finally:
        harness.shutdown()
        if args.ready_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
