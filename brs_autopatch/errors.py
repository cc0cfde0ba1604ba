"""The two exceptions brs_autopatch raises on purpose."""

from __future__ import annotations


def _clean(text: str) -> str:
    """One line, with any secret this process knows of masked (see brs_autopatch.redact)."""
    # Imported here: the launcher imports this module at start-up and needs redact
    # (and logging) only when an error is actually raised.
    from .redact import scrub

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
    """

    def __init__(self, role: str, cause: str, *, transient: bool) -> None:
        self.role = role
        self.cause = _clean(cause)
        self.transient = transient
        super().__init__(f"could not refresh credentials for {role}: {self.cause}")
