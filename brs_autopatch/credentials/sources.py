"""Sessions that supply credentials: the source of a role, a hop of a chain.

Everything here goes through botocore's credential-provider component, its public
extension point. The two private attributes brs_autopatch reads are wrapped at the
bottom of this module, nowhere else.
"""

from __future__ import annotations

from typing import Any

import botocore.session
from botocore.credentials import (
    CredentialProvider,
    CredentialResolver,
    Credentials,
    create_credential_resolver,
)


class FixedProvider(CredentialProvider):
    """A credential provider that always answers with one credentials object."""

    METHOD = "brs-autopatch"
    CANONICAL_NAME = "brs-autopatch"

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials


def plain_session(profile: str | None = None, **keys: Any) -> botocore.session.Session:
    """A botocore session with botocore's own default credential chain.

    Used to call STS with the *source* credentials. If brs_autopatch's patch is
    active, the session's constructor has just put our provider in front of the
    chain; we put botocore's original resolver back, so a role never assumes itself.
    """
    session = botocore.session.Session(profile=profile)
    session.register_component("credential_provider", create_credential_resolver(session))
    if keys.get("aws_access_key_id") or keys.get("aws_secret_access_key"):
        session.set_credentials(
            str(keys.get("aws_access_key_id") or ""),
            str(keys.get("aws_secret_access_key") or ""),
            keys.get("aws_session_token"),
        )
    return session


def session_with(credentials: Credentials) -> botocore.session.Session:
    """A botocore session signing with ``credentials`` (e.g. the previous hop of a chain)."""
    session = botocore.session.Session()
    use_credentials(session, credentials)
    return session


def use_credentials(session: botocore.session.Session, credentials: Credentials) -> None:
    """Make ``session`` (and every client it creates from now on) use ``credentials``."""
    session.register_component("credential_provider", CredentialResolver([FixedProvider(credentials)]))
    forget_loaded_credentials(session)


# -- private botocore attributes, wrapped in one place -----------------------------------
# botocore.session.Session caches the result of the credential provider in
# `_credentials` (set_credentials() writes it too). There is no public accessor that
# does not trigger a credential lookup, so these two helpers read and clear it.


def loaded_credentials(session: botocore.session.Session) -> Credentials | None:
    """The credentials a session already holds, without triggering a lookup."""
    return getattr(session, "_credentials", None)


def forget_loaded_credentials(session: botocore.session.Session) -> None:
    """Make the next get_credentials() ask the credential provider again."""
    session._credentials = None  # type: ignore[attr-defined]


# botocore's RequestSigner keeps the client's credentials in `_credentials` (no public
# setter); adopting our own keys (brs_autopatch.patch.adopt) reads and replaces them here.


def signer_credentials(signer: Any) -> Any:
    return getattr(signer, "_credentials", None)


def set_signer_credentials(signer: Any, credentials: Any) -> None:
    signer._credentials = credentials


def botocore_session_of(session: Any) -> botocore.session.Session:
    """The botocore session inside a boto3.Session (boto3 keeps it in `_session`)."""
    inner: botocore.session.Session = session._session
    return inner
