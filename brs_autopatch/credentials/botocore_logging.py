"""What brs_autopatch does to botocore's own logging, in one place.

* Inside the mandatory window botocore logs "Refreshing temporary credentials failed"
  with a full traceback on every failed request; RoleCredentials logs one line per
  refresh attempt and raises CredentialRefreshError on the requests in between, so that
  record is dropped when the exception is ours.
* botocore.endpoint logs every request's parameters at DEBUG ("... with params: {...
  'TokenCode': '123456' ...}"): MFA codes are masked there (see mfa.py).
* botocore's DEBUG output also holds request headers (the session token) and STS
  answers (the secret key): secrets brs_autopatch issued or configured, and values
  next to credential names, are masked there too (brs_autopatch.util.redact), best effort:
  botocore's format is its own.

Filters only run for records that passed the level check: they cost nothing otherwise.
"""

from __future__ import annotations

import logging
import re

_TOKEN_CODE = re.compile(r"""(['"]?TokenCode['"]?\s*[:=]\s*['"]?)\d{6}""")


class _QuietOurRefreshFailures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from ..errors import CredentialRefreshError

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


class _ScrubSecrets(logging.Filter):
    """redact.scrub() on botocore's records, keeping their lines (no one-line folding)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from ..util import redact

        try:
            message = record.getMessage()
        except Exception:
            return True
        clean = redact.scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


# botocore's loggers that print requests, signatures and responses at DEBUG.
_CHATTY = ("botocore.endpoint", "botocore.auth", "botocore.parsers", "botocore.hooks", "botocore.credentials")
_QUIET = _QuietOurRefreshFailures("brs_autopatch")
_SCRUB = _ScrubSecrets("brs_autopatch")
_REDACTOR = _RedactTokenCodes("brs_autopatch")


def _add(name: str, log_filter: logging.Filter) -> None:
    logger = logging.getLogger(name)
    if log_filter not in logger.filters:
        logger.addFilter(log_filter)


def quiet_our_refresh_failures() -> None:
    """Drop botocore's traceback-per-request WARNING for our own refresh errors, and mask
    our secrets in botocore's DEBUG output (idempotent)."""
    _add("botocore.credentials", _QUIET)
    for name in _CHATTY:
        _add(name, _SCRUB)


def redact_token_codes() -> None:
    """Mask TokenCode values in botocore's request logging (idempotent)."""
    for name in ("botocore.endpoint", "botocore.auth", "botocore.parsers"):
        _add(name, _REDACTOR)
