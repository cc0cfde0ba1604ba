"""MFA token codes for AssumeRole: asked for once per refresh, never reused.

botocore prompts once and then fails on the next refresh; other libraries call
``getpass`` on every refresh or every request. Here a code comes from a command
(``BRS_MFA_TOKEN_COMMAND``, e.g. ``ykman oath accounts code -s aws``) or a callable,
exactly when AssumeRole is about to be called.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence

from .errors import ConfigError

TokenProvider = Callable[[], str]
_CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


class MfaError(RuntimeError):
    """No usable MFA code could be obtained. Never retried quickly: it is permanent."""

    permanent = True


def command_provider(argv: Sequence[str], timeout: float) -> TokenProvider:
    """A provider running ``argv`` (no shell) and taking the 6-digit code from its stdout."""
    if not argv:
        raise ConfigError("BRS_MFA_TOKEN_COMMAND='' is not valid: expected a command")
    program = argv[0]

    def provide() -> str:
        try:
            done = subprocess.run(
                list(argv), capture_output=True, text=True, timeout=timeout,
                stdin=subprocess.DEVNULL, check=False,
            )
        except FileNotFoundError:
            raise MfaError(f"MFA token command not found: {program}") from None
        except PermissionError:
            raise MfaError(f"MFA token command is not executable: {program}") from None
        except subprocess.TimeoutExpired:
            raise MfaError(f"MFA token command {program} timed out after {timeout:g} s") from None
        if done.returncode != 0:
            # stderr may explain (e.g. "no YubiKey"); stdout may hold a code: not shown.
            reason = (done.stderr or "").strip().splitlines()[-1:] or ["no message"]
            raise MfaError(f"MFA token command {program} exited {done.returncode}: {reason[0][:200]}")
        codes = _CODE.findall(done.stdout)
        if len(codes) != 1:
            raise MfaError(f"MFA token command {program} printed no single 6-digit code")
        return str(codes[0])

    return provide


class OneUse:
    """Wraps a provider so that no code is ever sent to STS twice."""

    def __init__(self, provider: TokenProvider) -> None:
        self._provider = provider
        self._last: str | None = None

    def __call__(self) -> str:
        code = self._provider()
        if not isinstance(code, str) or not re.fullmatch(r"\d{6}", code.strip()):
            raise MfaError("MFA token provider returned something that is not a 6-digit code")
        code = code.strip()
        if code == self._last:
            raise MfaError("MFA token provider returned the code already used; wait for the next one")
        self._last = code
        return code
