"""What a patched botocore session gets: our provider in front of botocore's own chain.

Installed on every new ``botocore.session.Session`` by a botocore initializer
(``botocore.register_initializer``, a public extension point). The chain itself is
botocore's, built lazily as botocore would, so tools that look providers up by
name (the AWS CLI's ``get_provider('assume-role')``) keep working.
"""

from __future__ import annotations

import logging
from typing import Any

import botocore.session
from botocore.credentials import (
    CredentialProvider,
    CredentialResolver,
    Credentials,
    create_credential_resolver,
)

from ..credentials import reentry
from ..credentials.engine import RoleCredentials
from ..errors import ConfigError
from .installation import Installation

logger = logging.getLogger("brs_autopatch")


def shared_credentials(state: Installation) -> RoleCredentials:
    """The one credentials object of an installation, shared by every patched session."""
    return state.credentials()


class RoleProvider(CredentialProvider):
    """Answers with the shared role credentials unless the session was told otherwise."""

    METHOD = "brs-autopatch"
    CANONICAL_NAME = "brs-autopatch"

    def __init__(self, session: botocore.session.Session, state: Installation) -> None:
        super().__init__()
        self._session = session
        self._state = state

    def load(self) -> Credentials | None:
        state = self._state
        if not state.active:
            return None  # unpatched since this session was made: botocore's chain decides
        if self._session.instance_variables().get("profile"):
            return None  # an explicit profile_name: the caller chose its credentials
        if reentry.fetching():
            # A session a credential method makes for itself (boto3.client() in a
            # BRS_CUSTOM_METHOD callable): the shared credentials if they exist (their
            # requests from this thread are signed with the source, see RoleCredentials),
            # botocore's chain while they are being built by this very thread.
            return state.existing()
        try:
            return shared_credentials(state)
        except ConfigError as error:
            if state.settings.on_error == "raise":
                raise
            if not state.warned:  # BRS_ON_ERROR=warn: one line, then botocore's chain
                state.warned = True
                logger.warning("brs_autopatch is not patching (BRS_ON_ERROR=warn): %s", error)
            return None


class RoleFirstResolver(CredentialResolver):
    """botocore's default resolver with :class:`RoleProvider` first, built on first use."""

    def __init__(self, session: botocore.session.Session, state: Installation) -> None:
        # No super().__init__(): the chain is created lazily, like botocore's own
        # lazily registered 'credential_provider' component.
        self._session = session
        self._role_provider = RoleProvider(session, state)
        self._chain: list[Any] | None = None
        self.state = state

    @property
    def providers(self) -> list[Any]:
        if self._chain is None:
            original = create_credential_resolver(
                self._session, region_name=self._session.get_config_variable("region")
            )
            self._chain = [self._role_provider, *original.providers]
        return self._chain

    @providers.setter
    def providers(self, value: list[Any]) -> None:
        self._chain = value

    def load_credentials(self) -> Credentials | None:
        # Ask our provider before building botocore's chain: building it reads the
        # config files, which 200 patched sessions would otherwise do 200 times.
        if self._chain is None:
            credentials = self._role_provider.load()
            if credentials is not None:
                return credentials
        loaded: Credentials | None = super().load_credentials()
        return loaded
