"""Presigned URLs live as asked (brs_autopatch.credentials.presign), against the local moto S3 and STS.

The credentials run on a simulated clock (engine_helpers.SimClock: STS answers shifted
onto it), so "1200 s left" is a moved clock, not a wait. Every URL is fetched with
urllib from moto, and the server says which key signed it.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config
from engine_helpers import SimClock, seconds_left, simulated
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, StsServer

from brs_autopatch.config.settings import Settings
from brs_autopatch.credentials import presign, sources
from brs_autopatch.credentials.engine import RoleCredentials
from brs_autopatch.patch.install import patched

ROLE = "arn:aws:iam::123456789012:role/presign"
BUCKET = "presign-bucket"
BODY = b"presigned payload"
SIGV4 = Config(signature_version="s3v4")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    # Warnings are once per (credentials, ExpiresIn): an id() reused by a later test's
    # credentials must not inherit "already warned".
    presign._warned.clear()
    yield
    presign._warned.clear()


def _client(creds: RoleCredentials) -> Any:
    session = botocore.session.get_session()
    sources.use_credentials(session, creds)
    presign.register(session)
    return session.create_client("s3", config=SIGV4)


def _setup(sts: StsServer, duration: int = 3600, **extra: Any) -> tuple[SimClock, RoleCredentials, Any]:
    clock = SimClock()
    settings = Settings(role_arns=(ROLE,), role_session_name="presign", duration_seconds=duration, **extra)
    creds = simulated(settings, clock)
    s3 = _client(creds)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="k", Body=BODY)
    sts.reset()
    return clock, creds, s3


def _key_of(url: str) -> str:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    if "AWSAccessKeyId" in query:  # SigV2 query auth (botocore's choice for some endpoints)
        return query["AWSAccessKeyId"][0]
    return query["X-Amz-Credential"][0].split("/")[0]


def _fetch(url: str) -> bytes:
    with _OPENER.open(url, timeout=10) as response:
        body: bytes = response.read()
    return body


def _presign(s3: Any, expires_in: int) -> str:
    url: str = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "k"}, ExpiresIn=expires_in
    )
    return url


def _s3_keys(sts: StsServer) -> list[str | None]:
    return [call["access_key_id"] for call in sts.calls() if call["service"] == "s3"]


def test_a_url_longer_than_the_keys_have_left_is_signed_with_fresh_keys(
    sts: StsServer, aws_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    clock, creds, s3 = _setup(sts)
    old_key = creds.get_frozen_credentials().access_key
    clock.advance(2400)  # 1200 s left: before the advisory window (at most 900 s)
    assert 1100 < seconds_left(creds, clock) < 1300
    with caplog.at_level(logging.WARNING, logger="brs_autopatch"):
        url = _presign(s3, 3000)
    assert sts.count("sts:AssumeRole") == 1
    new_key = creds.get_frozen_credentials().access_key
    assert new_key != old_key
    assert _key_of(url) == new_key
    assert seconds_left(creds, clock) >= 3000
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert _fetch(url) == BODY
    assert _s3_keys(sts) == [new_key]  # moto saw the URL, signed with the new key


def test_a_url_that_fits_makes_no_sts_call(sts: StsServer, aws_env: dict[str, str]) -> None:
    clock, creds, s3 = _setup(sts)
    old_key = creds.get_frozen_credentials().access_key
    clock.advance(2400)
    url = _presign(s3, 1000)  # 1200 s left
    assert sts.count("sts:AssumeRole") == 0
    assert _key_of(url) == old_key
    assert _fetch(url) == BODY


def test_a_url_beyond_the_roles_limit_is_made_with_one_warning(
    sts: StsServer, aws_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    clock, creds, s3 = _setup(sts)
    clock.advance(2400)
    with caplog.at_level(logging.DEBUG, logger="brs_autopatch"):
        url = _presign(s3, 7200)
        # The second one: no STS call (a refresh would gain nothing), no second WARNING.
        second = _presign(s3, 7200)
    assert sts.count("sts:AssumeRole") == 1  # the refresh got as long as the role gives
    assert _key_of(url) == _key_of(second) == creds.get_frozen_credentials().access_key
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "ExpiresIn=7200" in warnings[0]
    assert "BRS_DURATION_SECONDS=3600" in warnings[0]
    # The time it really stops working: the signing credentials' expiry.
    assert creds.expiry_time.strftime("%Y-%m-%dT%H:%M:%SZ") in warnings[0]
    assert _fetch(url) == BODY


def test_threads_presigning_across_the_boundary_share_one_refresh(
    sts: StsServer, aws_env: dict[str, str]
) -> None:
    clock, creds, s3 = _setup(sts)
    clock.advance(2400)
    barrier = threading.Barrier(16)
    urls: list[str] = []

    def worker() -> None:
        barrier.wait(timeout=10)
        urls.append(_presign(s3, 3000))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(urls) == 16
    assert sts.count("sts:AssumeRole") == 1
    assert {_key_of(url) for url in urls} == {creds.get_frozen_credentials().access_key}


def test_presigned_post_gets_fresh_keys_too(sts: StsServer, aws_env: dict[str, str]) -> None:
    clock, creds, s3 = _setup(sts)
    old_key = creds.get_frozen_credentials().access_key
    clock.advance(2400)
    post = s3.generate_presigned_post(BUCKET, "posted", ExpiresIn=3000)
    assert sts.count("sts:AssumeRole") == 1
    assert post["fields"]["x-amz-credential"].split("/")[0] == creds.get_frozen_credentials().access_key
    assert creds.get_frozen_credentials().access_key != old_key


def test_a_failed_refresh_still_makes_the_url(
    sts: StsServer, aws_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    clock, creds, s3 = _setup(sts)
    old_key = creds.get_frozen_credentials().access_key
    clock.advance(2400)
    sts.fault("AssumeRole", "503", count=20)
    with caplog.at_level(logging.WARNING, logger="brs_autopatch"):
        url = _presign(s3, 3000)
    assert _key_of(url) == old_key  # the current keys: still good for 1200 s
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("ExpiresIn=3000" in m for m in messages), messages
    attempts = sts.count("sts:AssumeRole")
    _presign(s3, 3000)  # backing off: no STS call per URL
    assert sts.count("sts:AssumeRole") == attempts
    sts.clear_faults()
    assert _fetch(url) == BODY


def test_the_warning_names_role_chaining(
    sts: StsServer, aws_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    clock = SimClock()
    chained = Settings(role_arns=(ROLE, ROLE + "-second"), role_session_name="presign", duration_seconds=3600)
    creds = simulated(chained, clock)
    s3 = _client(creds)
    with caplog.at_level(logging.WARNING, logger="brs_autopatch"):
        s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "k"}, ExpiresIn=7200)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "role chaining" in warnings[0] and "1 hour" in warnings[0], warnings


def test_patched_sessions_presign_with_the_role_and_warn_once(
    sts: StsServer, aws_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    # The real way in: install() and boto3. STS gives 120 s whatever is asked.
    sts.set_duration_override(120)
    with patched(role_arns=(ROLE,)), caplog.at_level(logging.DEBUG, logger="brs_autopatch"):
        s3 = boto3.Session().client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="k", Body=BODY)
        fits = _presign(s3, 30)
        assert sts.count("sts:AssumeRole") == 1  # the first fetch only
        long = _presign(s3, 600)
        bucket = boto3.resource("s3").Bucket(BUCKET)  # the resource's way: its client
        via_resource = bucket.meta.client.generate_presigned_url(
            "get_object", Params={"Bucket": BUCKET, "Key": "k"}, ExpiresIn=600
        )
    assert sts.count("sts:AssumeRole") == 1  # fresh 120 s keys: a refresh gains nothing
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "ExpiresIn=600" in warnings[0], warnings
    assert "BRS_DURATION_SECONDS is not set" in warnings[0]
    assert FAKE_SOURCE_ACCESS_KEY_ID not in {_key_of(fits), _key_of(long), _key_of(via_resource)}
    for url in (fits, long, via_resource):
        assert _fetch(url) == BODY
    assert FAKE_SOURCE_ACCESS_KEY_ID not in _s3_keys(sts)


def test_clients_with_their_own_keys_are_left_alone(sts: StsServer, aws_env: dict[str, str]) -> None:
    with patched(role_arns=(ROLE,)):
        s3 = boto3.Session().client(
            "s3", aws_access_key_id="AKIDEXPLICIT00000000", aws_secret_access_key="x" * 40
        )
        url = _presign(s3, 7 * 24 * 3600)
    assert _key_of(url) == "AKIDEXPLICIT00000000"
    assert sts.count("sts:AssumeRole") == 0


def test_advice_names_the_argument_of_the_explicit_api() -> None:
    origin = {"assume_role_kwargs": "assume_role_kwargs"}
    settings = Settings(role_arns=(ROLE,), duration_seconds=900, origin=origin)
    assert presign.advice(settings, chained=False).startswith("assume_role_kwargs['DurationSeconds']=900")


@pytest.mark.skipif(importlib.util.find_spec("aiobotocore") is None, reason="not installed here: aiobotocore")
def test_aiobotocore_presigns_with_fresh_keys(sts: StsServer, aws_env: dict[str, str]) -> None:
    # Runs in scripts/test-matrix's aio venvs. aiobotocore's generate_presigned_url is a
    # coroutine: the refresh runs off the loop, and the URL carries the new key.
    import asyncio

    import aiobotocore.session

    from brs_autopatch.credentials.async_view import AioRoleCredentials

    clock, creds, _ = _setup(sts)
    old_key = creds.get_frozen_credentials().access_key
    clock.advance(2400)

    async def main() -> tuple[str, str]:
        session = aiobotocore.session.get_session()
        session._credentials = AioRoleCredentials(creds)  # what the patch gives its sessions
        presign.register(session)
        async with session.create_client("s3", config=SIGV4) as s3:
            fits = await s3.generate_presigned_url(
                "get_object", Params={"Bucket": BUCKET, "Key": "k"}, ExpiresIn=1000
            )
            assert sts.count("sts:AssumeRole") == 0
            long = await s3.generate_presigned_url(
                "get_object", Params={"Bucket": BUCKET, "Key": "k"}, ExpiresIn=3000
            )
        return fits, long

    fits, long = asyncio.run(main())
    assert _key_of(fits) == old_key
    assert sts.count("sts:AssumeRole") == 1
    assert _key_of(long) == creds.get_frozen_credentials().access_key != old_key
    assert _fetch(long) == BODY
