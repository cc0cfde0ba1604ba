"""Placeholder until the async stack lands: async signers are not adopted yet."""

from __future__ import annotations

from typing import Any


def async_view(credentials: Any) -> Any:
    return None
