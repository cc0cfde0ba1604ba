"""The built-in ``sts`` method: AssumeRole with the source credentials (the default)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.config import Config
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError

from ..credentials import failures
from ..credentials.mfa import redact_botocore_logs
from ..util import redact
from .base import Fetch, MethodContext, from_sts_response, merge_config


def assume_role_method(context: MethodContext) -> Fetch:
    """``sts``: AssumeRole with the source credentials (the default)."""
    mfa = context.mfa_token_provider
    if mfa is None:
        client = context.sts_client()
    else:
        # botocore retries a failed call by sending the same request again, TokenCode
        # included; STS may have consumed that code already. One attempt per code: our
        # own backoff retries, with a fresh code.
        one_attempt = Config(retries={"total_max_attempts": 1})
        client = context.sts_client(config=merge_config(context.sts_client_kwargs.get("config"), one_attempt))
        redact_botocore_logs()
    # Configured secrets are masked in our logs and errors from now on.
    argv = context.settings.mfa_token_command
    redact.remember(context.params.get("ExternalId"), " ".join(argv), *argv[1:], pinned=True)

    def fetch() -> Mapping[str, Any]:
        params = dict(context.params)
        if mfa is None:
            return from_sts_response(client.assume_role(**params))
        # Asked for here, once per AssumeRole call: never per request, never reused.
        code = params["TokenCode"] = mfa()
        try:
            return from_sts_response(client.assume_role(**params))
        except (EndpointConnectionError, ConnectTimeoutError):
            # The request never reached STS, so the code is unspent: the retry may send
            # it (a TOTP code lives 30 s; refusing it would wait for the next one).
            release = getattr(mfa, "release", None)
            if release is not None:
                release(code)
            raise

    failures.mark(fetch, client)
    return fetch
