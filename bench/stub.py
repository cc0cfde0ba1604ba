"""Workload calls: real ones against moto, and stubbed ones that never leave the process.

A stubbed call is a full botocore request (serialize, resolve the endpoint, fetch
frozen credentials, SigV4-sign) whose HTTP send is replaced by a ``before-send``
handler returning a canned response. botocore's ``Stubber`` answers at
``before-call``, *before* signing, so it would skip the credentials entirely.
The handler also reads the access key that signed each request: the identity check.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

from .env import SOURCE_KEY

_LIST_BUCKETS = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Owner><ID>bench</ID><DisplayName>bench</DisplayName></Owner><Buckets></Buckets>"
    b"</ListAllMyBucketsResult>"
)
_CREDENTIAL = re.compile(rb"Credential=([^/\s,]+)/")


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._body


class Signers:
    """Which access keys signed the workload calls (thread-safe)."""

    def __init__(self) -> None:
        self.keys: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, key: str) -> None:
        with self._lock:
            self.keys[key] += 1

    @property
    def calls(self) -> int:
        return sum(self.keys.values())

    @property
    def by_source(self) -> int:
        """Calls signed with the long-term source key instead of the role: must be 0."""
        return self.keys.get(SOURCE_KEY, 0)

    @property
    def unsigned(self) -> int:
        return self.keys.get("", 0)


def stubbed_s3(session: Any, signers: Signers | None = None) -> Any:
    """``session.client("s3")`` whose ListBuckets is answered in-process after signing."""
    client = session.client("s3")

    def send(request: Any, **kwargs: Any) -> AWSResponse:
        if signers is not None:
            auth = request.headers.get("Authorization") or b""
            if isinstance(auth, str):
                auth = auth.encode()
            match = _CREDENTIAL.search(auth)
            signers.add(match.group(1).decode() if match else "")
        return AWSResponse(request.url, 200, HTTPHeaders(), _Raw(_LIST_BUCKETS))

    client.meta.events.register("before-send.s3.ListBuckets", send)
    return client


def role_identity(session: Any) -> str:
    """What ``session.client("sts").get_caller_identity()`` says (a real call)."""
    try:
        arn: str = session.client("sts").get_caller_identity()["Arn"]
    except Exception as error:
        return f"error: {type(error).__name__}"
    if ":assumed-role/" in arn:
        return "role"
    return "SOURCE"
