"""The two exceptions brs_autopatch raises on purpose."""

from __future__ import annotations

import contextlib
from typing import Any

from .util import importer


def _clean(text: str) -> str:
    """One line, with any secret this process knows of masked (see brs_autopatch.util.redact)."""
    # Imported here: the launcher imports this module at start-up and needs redact
    # (and logging) only when an error is actually raised.
    from .util.redact import scrub

    return scrub(" ".join(text.split()))


class ConfigError(ValueError):
    """A setting (environment variable or keyword argument) has a bad value.

    The message is always one line: the variable or argument, the offending value
    (unless it is secret) and the accepted form.
    """

    # Asking STS again will not fix a setting: the refresh engine backs off the long way.
    permanent = True

    def __init__(self, *args: object) -> None:
        # Messages quote runtime data (a value, an import error): scrubbed at birth.
        super().__init__(*(_clean(arg) if isinstance(arg, str) else arg for arg in args))


class CredentialRefreshError(RuntimeError):
    """Fresh role credentials could not be obtained and the current ones are unusable.

    Raised on the request path once credentials are inside the mandatory refresh
    window (or were never obtained) and the credential method failed. It names the
    role and the cause; brs_autopatch never falls back to the source credentials.

    It is also a ``botocore.exceptions.BotoCoreError`` (see ``_join_botocore``), so
    handlers written for botocore's errors catch it; and still a ``RuntimeError``.
    """

    # BotoCoreError's protocol: the message is fmt.format(**kwargs).
    fmt = "could not refresh credentials for {role}: {cause}"

    def __init__(self, role: str, cause: str, *, transient: bool) -> None:
        self.role = role
        self.cause = _clean(cause)
        self.transient = transient
        self.kwargs: dict[str, Any] = {"role": role, "cause": self.cause, "transient": transient}
        # Not super().__init__: the bases change at run time (_join_botocore), and which
        # __init__ comes next in the MRO depends on them and on the interpreter. CPython
        # 3.14 dropped the __init__ that RuntimeError's own __dict__ used to carry, so
        # super() went on to BotoCoreError.__init__(**kwargs) and every refresh failure
        # became a TypeError. BaseException's takes the message whatever the bases are,
        # and BotoCoreError's protocol (fmt, kwargs) is already set above.
        BaseException.__init__(self, self.fmt.format(role=role, cause=self.cause))

    def __reduce__(self) -> tuple[Any, ...]:
        # Neither RuntimeError's (positional message) nor BotoCoreError's default fits
        # a keyword-only `transient` in every botocore version: rebuild explicitly.
        return (_restore, (type(self), self.role, self.cause, self.transient))


def _restore(cls: type[CredentialRefreshError], role: str, cause: str, transient: bool) -> Any:
    return cls(role, cause, transient=transient)


def _join_botocore(exceptions: Any) -> None:
    """Make CredentialRefreshError a BotoCoreError subclass once botocore.exceptions exists.

    Done by assigning ``__bases__`` (a documented language feature) rather than by
    subclassing at import time: ``import brs_autopatch`` and ``from brs_autopatch import
    CredentialRefreshError`` must not import botocore (it imports urllib3, which must
    come after gevent's monkey-patching). Nothing can raise the error, nor name
    BotoCoreError, before botocore.exceptions is imported, which runs this hook at once.
    """
    base = getattr(exceptions, "BotoCoreError", None)
    if not isinstance(base, type) or issubclass(CredentialRefreshError, base):
        return
    # TypeError: a botocore whose BotoCoreError has another layout. It stays a
    # RuntimeError then: never break an import over this.
    with contextlib.suppress(TypeError):
        CredentialRefreshError.__bases__ = (RuntimeError, base)


# At once if botocore.exceptions is already imported, else right after it is.
importer.when_imported("botocore.exceptions", _join_botocore)
