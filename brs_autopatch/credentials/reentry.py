"""Which credential method runs on this thread, and with which source credentials.

While a method runs (built or called) this thread's stack holds its source. Two readers:
the patch's credential provider (a session the method creates for itself must not get
the role credentials being fetched) and RoleCredentials (a request the method signs
with those very credentials, e.g. through boto3's default session, is signed with the
source instead: botocore's refresh lock is held by this thread, so waiting for it would
deadlock, and the role would otherwise assume itself).

Its own module so that the engine (credentials.py) need not import the method layer.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
from botocore.credentials import ReadOnlyCredentials

from . import sources

Source = Callable[[], botocore.session.Session]


class _Running:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.frozen: ReadOnlyCredentials | None = None


_local = threading.local()


def _stack() -> list[_Running]:
    stack: list[_Running] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


@contextlib.contextmanager
def running(source: Source) -> Iterator[None]:
    """Mark this thread as running a credential method whose source is ``source``."""
    stack = _stack()
    stack.append(_Running(source))
    default_before = _boto3_default_session()
    try:
        yield
    finally:
        stack.pop()
        default_after = _boto3_default_session()
        if default_after is not None and default_after is not default_before:
            # boto3's default session was created by the method (boto3.client() inside
            # it) and may have cached the source credentials: the application must
            # get the role from it, so let it look its credentials up again.
            sources.forget_loaded_credentials(sources.botocore_session_of(default_after))


def _boto3_default_session() -> Any:
    boto3 = sys.modules.get("boto3")
    return getattr(boto3, "DEFAULT_SESSION", None)


def fetching() -> bool:
    """Whether this thread is running a credential method right now."""
    return bool(getattr(_local, "stack", None))


def source_credentials() -> ReadOnlyCredentials | None:
    """The source credentials of the method running on this thread (None if none runs)."""
    stack: list[_Running] | None = getattr(_local, "stack", None)
    if not stack:
        return None
    current = stack[-1]
    if current.frozen is None:
        credentials = current.source().get_credentials()
        if credentials is None:
            return None
        current.frozen = credentials.get_frozen_credentials()
    return current.frozen
