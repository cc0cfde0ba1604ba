"""Describing a failed refresh in one line that cannot leak, and whether it is permanent.

What can go wrong while fetching credentials ends up in a WARNING line, in a
:class:`~brs_autopatch.errors.CredentialRefreshError` and in ``brs-run --check``.
An STS answer cut short or garbled by a proxy makes botocore raise a
``ResponseParserError`` whose text *is the raw body*: the freshly issued secret key
and session token. So a description is built from what is known to be safe — the
exception's class, the STS error code, the HTTP status, an STS error message
single-lined, capped and scrubbed — never from ``str()`` of a parser error or of an
exception the HTTP stack raised. Every description is one line, and names the STS
endpoint and region that were asked (``where``), when known.

No botocore import: errors are recognised by class name and attributes, so this
module is cheap for ``brs-run --check`` and the launcher.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..util import redact

# Error codes that will not go away by asking again soon.
PERMANENT_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "MalformedPolicyDocument",
        "PackedPolicyTooLarge",
        "ValidationError",
        "RegionDisabledException",
        "InvalidIdentityToken",
        "IDPRejectedClaim",
        "InvalidParameterValue",
        "UnrecognizedClientException",
        "NoCredentials",
        "MFAError",
    }
)

# STS could not be reached, or stopped answering.
_UNREACHABLE = frozenset(
    {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "ProxyConnectionError",
        "HTTPClientError",
        "SSLError",
    }
)
# An answer arrived but could not be read: its text is (or quotes) the body.
_UNREADABLE = frozenset(
    {
        "ResponseParserError",
        "ResponseStreamingError",
        "IncompleteReadError",
        "IncompleteRead",
        "ProtocolError",
        "ParseError",
        "ExpatError",
        "JSONDecodeError",
        "UnicodeDecodeError",
    }
)
# Raised by brs_autopatch itself (or by the method before any request): their texts are
# built from safe parts, and they are about local things, not the STS endpoint.
_LOCAL = frozenset(
    {
        "ConfigError",
        "MethodError",
        "MfaError",
        "WebIdentityTokenError",
        "CredentialRefreshError",
        "NoCredentialsError",
        "PartialCredentialsError",
    }
)
# Libraries whose exception texts may carry a request or a response: class name only.
_QUOTING_MODULES = ("botocore", "urllib3", "http.client", "xml", "json", "requests", "aiohttp")
# botocore exceptions whose text is a fixed sentence naming no request data.
# (CredentialRetrievalError quotes a credential_process's stderr: scrubbed and capped.)
_PLAIN_BOTOCORE = frozenset(
    {"NoRegionError", "ProfileNotFound", "UnknownServiceError", "CredentialRetrievalError"}
)
# A shape slip while reading a parsed answer (``response["Credentials"]`` missing...).
_SHAPE_ERRORS = frozenset({"KeyError", "TypeError", "AttributeError", "IndexError"})

MESSAGE_LIMIT = 200  # characters kept of an STS error message
TEXT_LIMIT = 300  # characters kept of any other exception text
_CODE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def describe_error(error: BaseException, where: str | None = None) -> tuple[str, bool]:
    """``(cause, permanent)`` for any refresh failure: one line, no secrets.

    ``where`` (``"endpoint https://sts.eu-west-1.amazonaws.com, region eu-west-1"``,
    see :func:`where_of`) is appended for failures that involve STS. Never includes
    request parameters (they may carry an MFA code or external id) or response bodies.
    """
    cause, permanent, remote = _classify(error)
    cause = redact.scrub(one_line(cause))
    if where and remote:
        cause = f"{cause}; {where}"
    return cause, permanent


def _classify(error: BaseException) -> tuple[str, bool, bool]:
    """(cause, permanent, involves STS)."""
    name = type(error).__name__
    permanent = bool(getattr(error, "permanent", False))
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = _safe_code(_get(response, "Error", "Code"))
        status = _get(response, "ResponseMetadata", "HTTPStatusCode")
        status_text = f"HTTP {status}" if isinstance(status, int) else "HTTP status unknown"
        if code:
            if "Throttl" in code or code == "RequestLimitExceeded":
                kind = "throttled"
            elif code in PERMANENT_CODES:
                kind = "access denied"
            else:
                kind = f"STS error ({status_text})"
            message = _safe_message(_get(response, "Error", "Message"))
            text = f"{kind}: {code}: {message}" if message else f"{kind}: {code}"
            return text, permanent or code in PERMANENT_CODES, True
        if isinstance(status, int):
            return f"STS error ({status_text}, {name})", permanent, True
    if name in _UNREACHABLE:
        return f"STS unreachable: {name}", permanent, True
    if name in _UNREADABLE:
        # Cut short, or not an STS answer at all (a proxy's page).
        return f"STS answer unreadable: {name}", permanent, True
    if name in {"NoCredentialsError", "PartialCredentialsError"}:
        return "no source credentials to call STS with (set AWS_* or a profile)", True, False
    module = type(error).__module__ or ""
    if name in _LOCAL:
        return _with_text(name, error), permanent, False
    if module.startswith(_QUOTING_MODULES):
        if module.startswith("botocore") and name in _PLAIN_BOTOCORE:
            return _with_text(name, error), permanent, True
        return f"{name} (from {module.split('.', 1)[0]})", permanent, True
    if name in _SHAPE_ERRORS and module == "builtins":
        # botocore parsed something that is not an AssumeRole answer (an HTML page,
        # an error document with status 200): say what was missing, capped.
        return f"unexpected STS answer: {_with_text(name, error, limit=60)}", permanent, True
    if isinstance(error, OSError):
        return _with_text(name, error), permanent, False
    # A plugin's or custom method's own exception: its text is the best clue we have;
    # scrubbed (by describe_error) and capped like everything else.
    return _with_text(name, error), permanent, True


def _get(mapping: dict[str, Any], outer: str, inner: str) -> Any:
    value = mapping.get(outer)
    return value.get(inner) if isinstance(value, dict) else None


def _safe_code(code: Any) -> str | None:
    if not isinstance(code, str) or not code:
        return None
    return code if _CODE.fullmatch(code) else "(malformed error code)"


def _safe_message(message: Any) -> str:
    """An STS error message, one line, scrubbed, at most MESSAGE_LIMIT characters."""
    if not isinstance(message, str):
        return ""
    if "<" in message and ">" in message:
        # Markup inside an error message is a quoted document (a proxy page, an echo
        # of the answer), not AWS's sentence: keep only what comes before it.
        message = message.split("<", 1)[0].rstrip() + " (markup omitted)"
    return cap(redact.scrub(one_line(message)), MESSAGE_LIMIT)


def _with_text(name: str, error: BaseException, limit: int = TEXT_LIMIT) -> str:
    text = cap(redact.scrub(one_line(str(error))), limit)
    return f"{name}: {text}" if text else name


def one_line(text: str) -> str:
    """Every run of whitespace (newlines included) becomes one space."""
    return " ".join(text.split())


def cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def chainable(error: BaseException) -> BaseException | None:
    """``error`` if its text is safe to show as the cause of ours, else None.

    For ``raise ours from chainable(error)``: an uncaught CredentialRefreshError prints
    its cause's traceback, and a parser error's text is the answer's body.
    """
    name = type(error).__name__
    module = type(error).__module__ or ""
    if name in _UNREADABLE or (module.startswith(_QUOTING_MODULES) and name not in _UNREACHABLE):
        return None
    if getattr(error, "response", None) is not None:
        return None  # ClientError: its text quotes the error message unabridged
    return error


# -- where: the endpoint and region a fetch asked --------------------------------------


def where_of(client: Any) -> str | None:
    """``"endpoint URL, region NAME"`` of a botocore client (None if it has no meta)."""
    meta = getattr(client, "meta", None)
    url = getattr(meta, "endpoint_url", None)
    region = getattr(meta, "region_name", None)
    if not url:
        return None
    return f"endpoint {_clean_url(str(url))}, region {region or '(none)'}"


def _clean_url(url: str) -> str:
    # An endpoint URL may carry user:password of a proxy or a query: never shown.
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:
        return "(unparseable URL)"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def mark(fetch: Callable[..., Any], client: Any) -> None:
    """Record on a method's fetch function which STS endpoint and region it asks.

    Methods may set ``fetch.where`` themselves; :func:`where` reads it back.
    """
    described = where_of(client)
    if described is not None:
        setattr(fetch, "where", described)  # noqa: B010 - functions take attributes


def where(fetch: Any) -> str | None:
    """What :func:`mark` recorded on ``fetch`` (None if nothing)."""
    described = getattr(fetch, "where", None)
    return described if isinstance(described, str) else None
