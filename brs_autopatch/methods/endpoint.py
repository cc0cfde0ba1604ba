"""The launch tree's credential endpoint as both ends see it: every wire name and rule, once.

The server (:mod:`brs_autopatch.serve.server`, started for a tree by
:mod:`brs_autopatch.serve.start` or inside a process by :mod:`brs_autopatch.serve.inprocess`)
and the ``served`` method's client (:mod:`brs_autopatch.methods.served`) both import this
module, so the two ends cannot drift apart. It is the container-credentials protocol
every AWS SDK's container provider speaks, plus two names of our own::

    GET /credentials        Authorization: <token>     [X-Brs-Newer-Than: <expiry held>]
    200 {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "AccountId"?, "BrsIssuedAt"}
    4xx/5xx {"Code", "Message"}

What ``BrsIssuedAt`` and ``X-Brs-Newer-Than`` are for is the client's and the server's
business (:mod:`brs_autopatch.methods.served`, :mod:`brs_autopatch.serve.role`); here
is only how they are spelled and read.

It lives at the methods layer, not in ``serve/``, because the client is a credential
method and methods may not import ``serve/``. Not here: HTTP itself (the server's parser,
the client's urllib), the program's environment beyond these variables
(:mod:`brs_autopatch.serve.start`), any network access.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..credentials.answers import iso

HOST = "127.0.0.1"  # loopback only: anyone who can reach it is on this host
PATH = "/credentials"  # SDKs want a path in the URI (99designs/aws-vault#1229)

# The variables the SDKs read the endpoint from. The relative URI is never set by us
# (it means the ECS agent's address), but it wins over the full one in most SDKs.
URI_ENV = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
RELATIVE_URI_ENV = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
TOKEN_ENV = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
TOKEN_FILE_ENV = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
VARIABLES = (RELATIVE_URI_ENV, URI_ENV, TOKEN_ENV, TOKEN_FILE_ENV)

AUTHORIZATION_HEADER = "Authorization"
# The expiry of the credentials the asking process holds (seconds since the epoch).
NEWER_THAN_HEADER = "X-Brs-Newer-Than"

# The answer: botocore's metadata key for each field of the container protocol (in the
# order answer() takes them).
FIELDS = {
    "AccessKeyId": "access_key",
    "SecretAccessKey": "secret_key",
    "Token": "token",
    "Expiration": "expiry_time",
}
ACCOUNT_ID_FIELD = "AccountId"  # optional (newer SDKs use it for account-based endpoints)
# When STS issued the credentials (seconds since the epoch): the client's windows come
# from the real lifetime, the same ones the server uses.
ISSUED_AT_FIELD = "BrsIssuedAt"

# An error answer's fields (as the ECS agent's): the client shows the message.
CODE_FIELD = "Code"
MESSAGE_FIELD = "Message"


def url(port: int) -> str:
    """The value of :data:`URI_ENV` for a server listening on ``port``."""
    return f"http://{HOST}:{port}{PATH}"


def read_token(environ: Mapping[str, str]) -> str | None:
    """The token as the SDKs read it: the file first (re-read each time), then the variable."""
    path = environ.get(TOKEN_FILE_ENV)
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError:
            pass  # the variable may still be there
    return environ.get(TOKEN_ENV) or None


def newer_than_value(expiry: float) -> str:
    """The :data:`NEWER_THAN_HEADER` value for an expiry (``repr``: no precision lost)."""
    return repr(expiry)


def newer_than(value: str | None) -> float | None:
    """The expiry a :data:`NEWER_THAN_HEADER` value carries; None when absent or not a number."""
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def answer(
    access_key: str, secret_key: str, token: str, expiry: float, *, issued_at: float, account_id: str | None
) -> dict[str, Any]:
    """The 200 answer for these credentials (``expiry``, ``issued_at``: seconds since the epoch)."""
    body: dict[str, Any] = dict(zip(FIELDS, (access_key, secret_key, token, iso(expiry)), strict=True))
    body[ISSUED_AT_FIELD] = float(issued_at)
    if account_id:
        body[ACCOUNT_ID_FIELD] = account_id
    return body


def metadata(body: Any) -> dict[str, Any] | None:
    """An answer -> credential metadata (the expiry as sent); None without a required field.

    ``issued_at`` and ``account_id`` only when the answer has them, well-typed (an SDK's
    own container server sends neither).
    """
    if not isinstance(body, dict) or not all(isinstance(body.get(field), str) for field in FIELDS):
        return None
    found: dict[str, Any] = {key: body[field] for field, key in FIELDS.items()}
    issued = body.get(ISSUED_AT_FIELD)
    if isinstance(issued, (int, float)) and not isinstance(issued, bool):
        found["issued_at"] = float(issued)
    account = body.get(ACCOUNT_ID_FIELD)
    if isinstance(account, str) and account:
        found["account_id"] = account
    return found


def error(code: str, message: str) -> dict[str, Any]:
    """An error answer's body."""
    return {CODE_FIELD: code, MESSAGE_FIELD: message}


def error_message(body: Any) -> str | None:
    """The message of an error answer's body, if it has one."""
    message = body.get(MESSAGE_FIELD) if isinstance(body, dict) else None
    return message if isinstance(message, str) and message else None
