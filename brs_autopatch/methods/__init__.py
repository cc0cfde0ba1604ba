"""Credential methods: how one set of credentials is obtained. Plugins welcome.

A method is a callable ``method(context) -> fetch``; ``fetch()`` returns botocore's
credential metadata (``access_key``, ``secret_key``, ``token``, ``expiry_time`` as an
ISO-8601 string or an aware datetime, optionally ``account_id`` and ``session_name``).
Methods are found through the entry-point group ``brs_autopatch.methods``; the built-ins
are registered there too (see pyproject.toml), and are also known without package
metadata so a source checkout works.

A method builds its clients from ``context.sts_client()`` or ``context.source()``.
Sessions it makes any other way (``boto3.client(...)`` in a ``BRS_CUSTOM_METHOD``
callable) also sign with the *source* credentials while the method runs: see
:func:`make_fetcher`.

This package's ``__init__`` is the public plugin API and nothing else, each name imported
from its module on first use: ``base`` (the context, the answer's checks), ``sts``,
``web_identity``, ``custom``, ``served`` (the launch tree's endpoint) and ``registry``
(finding a method by name).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..util import importer

if TYPE_CHECKING:
    from .base import (
        ENTRY_POINT_GROUP,
        Fetch,
        Method,
        MethodContext,
        MethodError,
        WebIdentityTokenError,
        fetching,
        from_sts_response,
        make_fetcher,
        source_credentials,
        utc_iso,
    )
    from .custom import custom_method
    from .registry import available, load, served_method
    from .sts import assume_role_method
    from .web_identity import WEB_IDENTITY_PARAMS, web_identity_method

# Name -> the submodule that defines it, imported on first use: the plan needs only
# `base`, and a process that never builds a method never loads botocore's Config.
_LAZY = {
    "ENTRY_POINT_GROUP": "base",
    "Fetch": "base",
    "Method": "base",
    "MethodContext": "base",
    "MethodError": "base",
    "WebIdentityTokenError": "base",
    "fetching": "base",
    "from_sts_response": "base",
    "make_fetcher": "base",
    "source_credentials": "base",
    "utc_iso": "base",
    "custom_method": "custom",
    "available": "registry",
    "load": "registry",
    "served_method": "registry",
    "WEB_IDENTITY_PARAMS": "web_identity",
    "assume_role_method": "sts",
    "web_identity_method": "web_identity",
}
__all__ = [
    "ENTRY_POINT_GROUP",
    "WEB_IDENTITY_PARAMS",
    "Fetch",
    "Method",
    "MethodContext",
    "MethodError",
    "WebIdentityTokenError",
    "assume_role_method",
    "available",
    "custom_method",
    "fetching",
    "from_sts_response",
    "load",
    "make_fetcher",
    "served_method",
    "source_credentials",
    "utc_iso",
    "web_identity_method",
]
assert set(_LAZY) == set(__all__)


__getattr__ = importer.lazy_attributes(globals(), _LAZY)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
