"""The built-in ``web-identity`` method: AssumeRoleWithWebIdentity, token file re-read.

What AssumeRoleWithWebIdentity accepts is checked here, once, for the plan (before
anything is built, without loading botocore) and for the method itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..credentials import failures
from ..errors import ConfigError
from ..util import redact
from .base import Fetch, MethodContext, WebIdentityTokenError, from_sts_response, merge_config

# AssumeRoleWithWebIdentity takes these of the AssumeRole parameters (and no MFA).
WEB_IDENTITY_PARAMS = frozenset({"RoleArn", "RoleSessionName", "DurationSeconds", "Policy", "PolicyArns"})


def check_params(params: Mapping[str, Any], mfa: bool, variable: str = "BRS_METHOD") -> None:
    """ConfigError if the parameters (or MFA) are more than AssumeRoleWithWebIdentity takes.

    Dropping them silently would assume the role without the caller's conditions.
    """
    unsupported = sorted(set(params) - WEB_IDENTITY_PARAMS)
    if unsupported or mfa:
        names = ", ".join(unsupported) or "SerialNumber (MFA)"
        raise ConfigError(
            f"{variable}='web-identity' is not valid with {names}: "
            f"AssumeRoleWithWebIdentity takes only {', '.join(sorted(WEB_IDENTITY_PARAMS))}"
        )


def web_identity_method(context: MethodContext) -> Fetch:
    """``web-identity``: AssumeRoleWithWebIdentity, token file re-read on every refresh."""
    token_file = context.settings.web_identity_token_file
    if token_file is None:
        raise ConfigError("BRS_WEB_IDENTITY_TOKEN_FILE is not set: expected a token file path")
    check_params(context.params, context.mfa_token_provider is not None)
    from botocore import UNSIGNED
    from botocore.config import Config

    # The call is unsigned: the token is the credential, no source credentials needed.
    client = context.sts_client(
        config=merge_config(context.sts_client_kwargs.get("config"), Config(signature_version=UNSIGNED))
    )
    params = dict(context.params)

    def fetch() -> Mapping[str, Any]:
        # Re-read every time: Kubernetes and other issuers rotate the file in place.
        token = _read_token(token_file)
        redact.remember(token)
        return from_sts_response(client.assume_role_with_web_identity(WebIdentityToken=token, **params))

    failures.mark(fetch, client)
    return fetch


def _read_token(path: str) -> str:
    # O_NONBLOCK + a regular-file check: a FIFO (or device) in the token's place must
    # not hang the refresh, which holds the refresh lock. Symlinks are followed on
    # purpose: Kubernetes projects the token through one.
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise WebIdentityTokenError(f"web identity token file {path} is not a regular file")
            token = handle.read().decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise WebIdentityTokenError(f"cannot read web identity token file {path}: {reason}") from None
    if not token:
        raise WebIdentityTokenError(f"web identity token file {path} is empty")
    return token
