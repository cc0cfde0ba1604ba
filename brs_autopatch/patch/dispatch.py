"""What each new botocore session gets: the one place that tells the kinds apart.

Runs as botocore's initializer at the end of every ``Session.__init__`` (installed by
:mod:`brs_autopatch.patch.install`, imported at the first session). A sync session gets
:class:`~brs_autopatch.patch.providers.RoleFirstResolver`; an aiobotocore one, and
subclasses we do not know, are left to :mod:`brs_autopatch.patch.aio`. Known kinds
also get long-lived presigned URLs and, if asked, adoption of our own keys. Above both
resolvers so that neither needs the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import aio
from .providers import RoleFirstResolver

if TYPE_CHECKING:
    import botocore.session

    from .installation import Installation


def patch_session(session: botocore.session.Session, state: Installation) -> None:
    """The botocore initializer: runs at the end of every Session.__init__."""
    if not aio.patch_session(session, state):
        session.register_component("credential_provider", RoleFirstResolver(session, state))
    if aio.session_kind(type(session)) != "unknown":
        from ..credentials import presign  # on use: it is not free to import

        presign.register(session)
    if state.settings.adopt_own_keys and aio.session_kind(type(session)) != "unknown":
        from . import adopt

        session.register(adopt.EVENT, adopt.before_sign, unique_id="brs-autopatch-adopt")
