"""MFA token codes for AssumeRole: asked for once per refresh, never reused, never logged.

botocore prompts once and then fails on the next refresh; other libraries call
``getpass`` on every refresh or every request. Here a code comes from a command
(``BRS_MFA_TOKEN_COMMAND``, e.g. ``ykman oath accounts code -s aws``) or a callable,
exactly when AssumeRole is about to be called.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Callable, Sequence

from ..errors import ConfigError

TokenProvider = Callable[[], str]
_CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")
# How long a killed token command (and its children) may take to go away.
_REAP_SECONDS = 5.0


class MfaError(RuntimeError):
    """No usable MFA code could be obtained. Never retried quickly: it is permanent."""

    permanent = True


def command_provider(argv: Sequence[str], timeout: float) -> TokenProvider:
    """A provider running ``argv`` (no shell) and taking the 6-digit code from its stdout."""
    if not argv:
        raise ConfigError("BRS_MFA_TOKEN_COMMAND='' is not valid: expected a command")
    program = argv[0]

    def provide() -> str:
        stdout, stderr, returncode = _run(list(argv), program, timeout)
        if returncode != 0:
            # stderr may explain (e.g. "no YubiKey"); stdout may hold a code: not shown,
            # and anything code-shaped in the stderr line is masked as well.
            lines = stderr.strip().splitlines()
            reason = _CODE.sub("******", lines[-1])[:200] if lines else "no message"
            raise MfaError(f"MFA token command {program} exited {returncode}: {reason}")
        codes = _CODE.findall(stdout)
        if not codes:
            raise MfaError(f"MFA token command {program} printed no 6-digit code")
        if len(codes) > 1:
            # e.g. `ykman oath accounts code` without `-s NAME` lists every account.
            raise MfaError(f"MFA token command {program} printed {len(codes)} 6-digit codes, expected one")
        return str(codes[0])

    return provide


def _run(argv: list[str], program: str, timeout: float) -> tuple[str, str, int]:
    """Run the token command without a shell; on timeout kill it *and* its children.

    ``subprocess.run(timeout=)`` kills only the direct child: a wrapper script's
    children (``sh -c 'pass otp ...'``) would live on. A new session makes the whole
    group killable with one signal.
    """
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
    except FileNotFoundError:
        raise MfaError(f"MFA token command not found: {program}") from None
    except PermissionError:
        raise MfaError(f"MFA token command is not executable: {program}") from None
    except OSError as error:  # e.g. ENOEXEC: a script without a #! line
        raise MfaError(f"MFA token command {program} could not start: {error.strerror}") from None
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise MfaError(f"MFA token command {program} timed out after {timeout:g} s") from None
    except BaseException:
        _kill_group(process)
        raise
    return stdout, stderr, process.returncode


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    # Bounded: a grandchild that escaped the group may keep the pipes open, so only
    # wait for the process itself, then drop the pipes.
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=_REAP_SECONDS)
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


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
            # A TOTP code stays the same for its 30 s step; STS refuses a code twice.
            raise MfaError("MFA token provider returned the code already used; wait for the next one")
        self._last = code
        return code

    def release(self, code: str) -> None:
        """``code`` never reached STS (no connection): it may be sent once more."""
        if self._last == code:
            self._last = None


def redact_botocore_logs() -> None:
    """Mask TokenCode values in botocore's request logging (idempotent)."""
    from .botocore_logging import redact_token_codes

    redact_token_codes()
