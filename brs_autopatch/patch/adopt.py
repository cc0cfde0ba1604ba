"""Adopting our own keys: explicit keys that our refreshing credentials issued.

Libraries such as dlt, django-storages, dbt-athena or s3fs (``key=/secret=/token=``) read
``get_frozen_credentials()`` once and pass the copy back to boto3 as *explicit* keys.
"Explicit wins" would then keep that frozen copy until it expires mid-run. When a
client is about to sign with static keys that one of this process's
:class:`~brs_autopatch.credentials.engine.RoleCredentials` issued — access key id, secret key
*and* session token, see :mod:`brs_autopatch.credentials.issued` — it signs with those refreshing
credentials instead: the same identity, and they never expire. Foreign keys are left
alone, also when they carry our (public) access key id with another secret or token.
``BRS_ADOPT_OWN_KEYS=false`` turns this off.

Hooked on botocore's public ``before-sign`` event; the signer keeps its credentials in
a private attribute, read and replaced in :mod:`brs_autopatch.credentials.sources` only.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.credentials import Credentials, RefreshableCredentials

from ..credentials import sources
from ..credentials.issued import issuer_of

logger = logging.getLogger("brs_autopatch")

EVENT = "before-sign"


def before_sign(request_signer: Any = None, **_: Any) -> None:
    """The ``before-sign`` handler: swap our own frozen keys for the refreshing credentials."""
    if request_signer is None:
        return
    current = sources.signer_credentials(request_signer)
    if not isinstance(current, Credentials) or isinstance(current, RefreshableCredentials):
        # None, refreshing ones (ours, botocore's, aiobotocore's), or our async view:
        # only static keys can be a frozen copy. (Reading a view's access_key would
        # fetch, on the event loop.)
        return
    access_key = getattr(current, "access_key", None)
    if not isinstance(access_key, str):
        return
    # Possession, not the public id: the secret and token must be the ones we issued.
    owner = issuer_of(access_key, getattr(current, "secret_key", None), getattr(current, "token", None))
    if owner is None:
        return  # a foreign key (or our id with another secret): whoever is explicit wins
    if type(request_signer).__module__.startswith("aiobotocore"):
        # An async signer awaits get_frozen_credentials(): it needs the async view.
        from . import aio_adopt

        replacement: Any = aio_adopt.async_view(owner)
        if replacement is None:
            return
    else:
        replacement = owner
    sources.set_signer_credentials(request_signer, replacement)
    logger.debug("client given a copy of %s's keys now signs with the refreshing credentials", owner.label)
