"""``brs-run --credential-process``: the role's credentials as ``credential_process`` JSON.

For any SDK or tool that reads an AWS config file::

    [profile app]
    credential_process = brs-run --credential-process --role-arn arn:aws:iam::...:role/app

prints ``{"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken",
"Expiration"}`` on stdout for the configured role (``BRS_*`` variables, or launcher
options after ``--credential-process``). With ``BRS_CACHE_DIR`` the credentials are
shared between invocations and processes, reused while fresh for their lifetime's
windows. Errors: one line on stderr, exit status 1 (2 for bad settings), nothing on
stdout.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from ..errors import ConfigError

PROG = "brs-run --credential-process"
# Set while we fetch: if our own source credentials lead back to this command (a
# profile whose credential_process is brs-run, selected by AWS_PROFILE), the inner
# run refuses instead of starting the next one, and the next...
GUARD_ENV = "BRS_CREDENTIAL_PROCESS_ACTIVE"


def run(env: Mapping[str, str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Print the JSON; returns the exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        payload = _credentials(env)
    except ConfigError as error:
        err.write(f"{PROG}: {error}\n")
        return 2
    except Exception as error:
        from ..credentials.failures import describe_error

        cause = str(error) if isinstance(error, RuntimeError) else describe_error(error)[0]
        err.write(f"{PROG}: {cause.splitlines()[0] if cause else type(error).__name__}\n")
        return 1
    out.write(json.dumps(payload) + "\n")
    out.flush()
    return 0


def _credentials(env: Mapping[str, str]) -> dict[str, object]:
    from ..config.from_env import from_env
    from ..credentials.answers import iso

    settings = from_env(env)
    if not settings.active:
        raise ConfigError(
            "BRS_ROLE_ARN is not set: expected the role to assume (or --role-arn after --credential-process)"
        )
    if env.get(GUARD_ENV):
        raise ConfigError(
            f"{PROG} called itself: its source credentials resolve to a profile running it again "
            "(give it source credentials of its own: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
            "another AWS_PROFILE)"
        )
    os.environ.update(env)
    os.environ[GUARD_ENV] = "1"  # inherited by a credential_process botocore may run for our source
    from .. import build as factory
    from ..util import logs

    logs.configure(settings.log_level)
    credentials = factory.build(settings.replace(defer_refresh=True))
    try:
        frozen = credentials.get_frozen_credentials()
        expiry = credentials.expiry_time
    finally:
        credentials.stop()
    return {
        "Version": 1,
        "AccessKeyId": frozen.access_key,
        "SecretAccessKey": frozen.secret_key,
        "SessionToken": frozen.token,
        "Expiration": iso(expiry),
    }
