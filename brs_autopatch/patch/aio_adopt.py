"""Adopting our own keys in async clients (aiobotocore, s3fs ``key=/secret=/token=``).

An async signer awaits ``get_frozen_credentials()``: it gets the awaitable view of the
refreshing credentials (:class:`~brs_autopatch.credentials.async_view.AioRoleCredentials`).
"""

from __future__ import annotations

from typing import Any


def async_view(credentials: Any) -> Any:
    """The awaitable view of ``credentials`` (a RoleCredentials) for an aiobotocore signer."""
    from ..credentials.async_view import AioRoleCredentials

    return AioRoleCredentials(credentials)
