"""The ``served`` credential method: Python processes under ``brs-run --serve`` ask the server.

``brs-run --serve`` (:mod:`brs_autopatch.serve.start`) sets ``BRS_METHOD=served`` for the
program, next to the container-credentials variables every AWS SDK reads. A patched
Python process then builds an ordinary :class:`~brs_autopatch.RoleCredentials` whose
fetch is one GET to that server: lifetime-scaled windows, backoff and fork handling
as for STS, but the whole launch tree shares the server's one AssumeRole per refresh.

Two fields beyond the container protocol keep the schedule in step:

* the answer's ``BrsIssuedAt`` is when STS issued the credentials, so a child's
  windows come from the real lifetime, the same ones the server uses; the server
  refreshes ahead of that advisory window, a child at it, so a child's refresh finds
  the new credentials already there;
* the request's ``X-Brs-Newer-Than`` header carries the expiry the child holds: if
  the server still has those very credentials it runs the refresh that is due (or
  waits for the one under way) before answering. Should it still have nothing newer,
  the child backs off like after any failed refresh (its current credentials stay
  in use) instead of asking again on every request.

How both are spelled, with the rest of the wire format the server reads too, is
:mod:`brs_autopatch.methods.endpoint`'s.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from dateutil.parser import isoparse

from ..errors import ConfigError
from . import endpoint
from .base import Fetch, MethodContext, utc_iso
from .endpoint import URI_ENV

TIMEOUT_SECONDS = 5.0
MAX_ANSWER_BYTES = 64 * 1024

# Loopback only: never through an HTTP(S)_PROXY of the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServedError(RuntimeError):
    """The server refused (401/403: a wrong token, permanent) or answered nonsense."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class CredentialServerUnreachable(RuntimeError):
    """No answer from the server (it is starting, or gone with its program). Transient."""


class NotNewerYet(RuntimeError):
    """The server has nothing newer than what this process holds yet. Transient."""


def served_method(context: MethodContext) -> Fetch:
    """``BRS_METHOD=served``: GET the credentials from the launch tree's server."""
    uri = os.environ.get(URI_ENV)
    if not uri:
        raise ConfigError(
            f"BRS_METHOD='served' is not valid here: {URI_ENV} is not set "
            "(brs-run --serve sets both; use another method outside such a launch tree)"
        )
    def ask(newer_than: float | None) -> Any:
        token = endpoint.read_token(os.environ)
        headers = {"Accept": "application/json"}
        if token:
            headers[endpoint.AUTHORIZATION_HEADER] = token
        if newer_than:
            headers[endpoint.NEWER_THAN_HEADER] = endpoint.newer_than_value(newer_than)
        return _get(uri, headers)

    return fetcher(ask, _where(uri))


def fetcher(ask: Callable[[float | None], Any], where: str) -> Fetch:
    """A fetch over ``ask(newer_than) -> answer`` that only ever returns newer credentials.

    ``ask`` is the GET (the bench passes the server's own function to skip HTTP).
    """
    held = {"expiry": 0.0}

    def fetch() -> Mapping[str, Any]:
        metadata = _metadata(where, ask(held["expiry"] or None))
        expiry = isoparse(metadata["expiry_time"]).timestamp()
        if expiry <= held["expiry"]:
            raise NotNewerYet(f"the credential server at {where} has no newer credentials yet")
        held["expiry"] = expiry
        return metadata

    return fetch


def _where(uri: str) -> str:
    # Host and port only: never anything a user might have put in a query string.
    from urllib.parse import urlsplit

    return urlsplit(uri).netloc or uri


def _get(uri: str, headers: Mapping[str, str]) -> Any:
    request = urllib.request.Request(uri, headers=dict(headers), method="GET")
    try:
        with _OPENER.open(request, timeout=TIMEOUT_SECONDS) as response:
            body = response.read(MAX_ANSWER_BYTES)
    except urllib.error.HTTPError as error:
        message = _error_message(error)
        raise ServedError(
            f"the credential server at {_where(uri)} answered HTTP {error.code}{message}",
            permanent=error.code in (401, 403),
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise CredentialServerUnreachable(
            f"no answer from the credential server at {_where(uri)}: {reason}"
        ) from None
    try:
        return json.loads(body)
    except ValueError:
        raise ServedError(
            f"the credential server at {_where(uri)} answered something that is not JSON", permanent=False
        ) from None


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(error.read(MAX_ANSWER_BYTES))
    except (ValueError, OSError):
        return ""
    message = endpoint.error_message(payload)
    return f": {message}" if message else ""


def _metadata(where: str, answer: Any) -> dict[str, Any]:
    """The container-protocol answer -> credential metadata (with the server's issue time)."""
    metadata = endpoint.metadata(answer)
    if metadata is None:
        raise ServedError(
            f"the credential server at {where} answered without {', '.join(endpoint.FIELDS)}", permanent=False
        )
    metadata["expiry_time"] = utc_iso(metadata["expiry_time"])
    return metadata
