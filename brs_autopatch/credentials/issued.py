"""Which live credentials object issued a set of keys (for brs_autopatch.patch.adopt).

An access key id is public (presigned URLs, CloudTrail, logs): adopting on the id alone
would let anyone who hands the program our id with a made-up secret sign as the
program's role (a confused deputy). So the registry proves possession: it keeps, per
access key id, a keyed hash (HMAC-SHA256 under a random per-process key) of the id,
secret key and session token — not a second copy of the secret — and names the issuer
only when all three match, compared in constant time.

Each owner registers its last :data:`PER_OWNER` keys: a copy older than that has long
expired anyway. Entries go away with their owner (weak references) or when the owner
forgets them. This module holds no secret in a form that can be read back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import weakref
from typing import Any

PER_OWNER = 16
# Per process (a forked child keeps its parent's, with the parent's entries: the same
# credentials objects live on in the child). Never leaves the process.
_KEY = os.urandom(32)
_ISSUED: dict[str, tuple[weakref.ref[Any], bytes]] = {}


def _digest(access_key: str, secret_key: object, token: object) -> bytes:
    # JSON of the three: an unambiguous encoding ("a"+"bc" and "ab"+"c" differ; None
    # and "" differ). Non-strings cannot be ours and get a digest that never matches.
    message = json.dumps([access_key, secret_key, token], default=repr).encode("utf-8", "surrogatepass")
    return hmac.new(_KEY, message, hashlib.sha256).digest()


def remember(access_key: str, secret_key: str, token: str | None, owner: Any) -> None:
    """``owner`` issued these keys (a copy of all three may be adopted)."""

    def gone(ref: weakref.ref[Any], key: str = access_key) -> None:
        entry = _ISSUED.get(key)
        if entry is not None and entry[0] is ref:
            _ISSUED.pop(key, None)

    _ISSUED[access_key] = (weakref.ref(owner, gone), _digest(access_key, secret_key, token))


def forget(access_key: str) -> None:
    _ISSUED.pop(access_key, None)


def issuer_of(access_key: str, secret_key: object, token: object) -> Any:
    """The live object that issued exactly these keys, or None.

    None for an unknown id, and for a known id with any other secret key or session
    token (a foreign key that happens to carry our public id).
    """
    entry = _ISSUED.get(access_key)
    if entry is None:
        return None
    ref, expected = entry
    if not hmac.compare_digest(expected, _digest(access_key, secret_key, token)):
        return None
    return ref()
