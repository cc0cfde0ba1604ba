"""Which live credentials object issued an access key id (for brs_autopatch.adopt).

Each owner registers its last :data:`PER_OWNER` keys: a copy older than that has long
expired anyway. Entries go away with their owner (weak values).
"""

from __future__ import annotations

import weakref
from typing import Any

PER_OWNER = 16
_ISSUED: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def remember(access_key: str, owner: Any) -> None:
    _ISSUED[access_key] = owner


def forget(access_key: str) -> None:
    _ISSUED.pop(access_key, None)


def issuer_of(access_key: str) -> Any:
    """The live object that issued ``access_key``, or None."""
    return _ISSUED.get(access_key)
