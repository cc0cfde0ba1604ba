"""What brs_autopatch does to botocore's own logging, in one place.

* Inside the mandatory window botocore logs "Refreshing temporary credentials failed"
  with a full traceback on every failed request; RoleCredentials logs one line per
  refresh attempt and raises CredentialRefreshError on the requests in between, so that
  record is dropped when the exception is ours.
* botocore.endpoint logs every request's parameters at DEBUG ("... with params: {...
  'TokenCode': '123456' ...}"): MFA codes are masked there (see mfa.py).

Filters only run for records that passed the level check: they cost nothing otherwise.
"""

from __future__ import annotations

import logging
import re

_TOKEN_CODE = re.compile(r"""(['"]?TokenCode['"]?\s*[:=]\s*['"]?)\d{6}""")


class _QuietOurRefreshFailures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from .errors import CredentialRefreshError

        info = record.exc_info
        return not (info and isinstance(info[1], CredentialRefreshError))


class _RedactTokenCodes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem, not ours
            return True
        if "TokenCode" in message:
            record.msg = _TOKEN_CODE.sub(r"\1******", message)
            record.args = None
        return True


_QUIET = _QuietOurRefreshFailures("brs_autopatch")
_REDACTOR = _RedactTokenCodes("brs_autopatch")


def _add(name: str, log_filter: logging.Filter) -> None:
    logger = logging.getLogger(name)
    if log_filter not in logger.filters:
        logger.addFilter(log_filter)


def quiet_our_refresh_failures() -> None:
    """Drop botocore's traceback-per-request WARNING for our own refresh errors (idempotent)."""
    _add("botocore.credentials", _QUIET)


def redact_token_codes() -> None:
    """Mask TokenCode values in botocore's request logging (idempotent)."""
    for name in ("botocore.endpoint", "botocore.auth", "botocore.parsers"):
        _add(name, _REDACTOR)
