"""RefreshableSession against the local STS server: lazy/eager fetch, identity, S3, errors."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, StsServer

from brs_autopatch import ConfigError, RefreshableSession


def assumed(role_arn: str, session_name: str) -> str:
    return role_arn.replace(":iam::", ":sts::").replace(":role/", ":assumed-role/") + "/" + session_name


def test_is_a_boto3_session(aws_env: dict[str, str], role_arn: str) -> None:
    session = RefreshableSession({"RoleArn": role_arn}, region_name="eu-west-1")
    assert isinstance(session, boto3.Session)
    assert session.region_name == "eu-west-1"


def test_deferred_makes_no_call_until_first_use(
    sts: StsServer, aws_env: dict[str, str], role_arn: str
) -> None:
    session = RefreshableSession({"RoleArn": role_arn, "RoleSessionName": "lazy"})
    client = session.client("sts")
    assert sts.count("sts:AssumeRole") == 0
    arn = client.get_caller_identity()["Arn"]
    assert arn == assumed(role_arn, "lazy")
    assert sts.count("sts:AssumeRole") == 1
    client.get_caller_identity()
    assert sts.count("sts:AssumeRole") == 1


def test_eager_calls_sts_in_constructor(sts: StsServer, aws_env: dict[str, str], role_arn: str) -> None:
    session = RefreshableSession({"RoleArn": role_arn, "RoleSessionName": "eager"}, defer_refresh=False)
    assert sts.count("sts:AssumeRole") == 1
    assert session.client("sts").get_caller_identity()["Arn"] == assumed(role_arn, "eager")
    assert sts.count("sts:AssumeRole") == 1
    session.refreshable_credentials.stop()


def test_eager_failure_raises_at_once(sts: StsServer, aws_env: dict[str, str], role_arn: str) -> None:
    sts.fault("AssumeRole", "access_denied")
    from brs_autopatch import CredentialRefreshError

    with pytest.raises(CredentialRefreshError) as caught:
        RefreshableSession({"RoleArn": role_arn}, defer_refresh=False)
    assert role_arn in str(caught.value) and "AccessDenied" in str(caught.value)


def test_assume_role_is_signed_by_source_and_sts_client_is_the_role(
    sts: StsServer, aws_env: dict[str, str], role_arn: str
) -> None:
    session = RefreshableSession({"RoleArn": role_arn})
    identity = session.client("sts").get_caller_identity()
    assert ":assumed-role/" in identity["Arn"]
    (assume,) = sts.calls("sts:AssumeRole")
    assert assume["access_key_id"] == FAKE_SOURCE_ACCESS_KEY_ID
    (whoami,) = sts.calls("sts:GetCallerIdentity")
    assert whoami["access_key_id"] != FAKE_SOURCE_ACCESS_KEY_ID


def test_explicit_source_keys_sign_assume_role(
    sts: StsServer, aws_env: dict[str, str], role_arn: str
) -> None:
    session = RefreshableSession(
        {"RoleArn": role_arn}, aws_access_key_id="AKIDEXPLICITSOURCE01", aws_secret_access_key="s"
    )
    assert ":assumed-role/" in session.client("sts").get_caller_identity()["Arn"]
    assert sts.calls("sts:AssumeRole")[0]["access_key_id"] == "AKIDEXPLICITSOURCE01"


def test_profile_name_chooses_the_source_and_the_session_signs_as_the_role(
    sts: StsServer, aws_env: dict[str, str], role_arn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docs/api.md: "Explicit keys or profile_name given to it choose the *source* credentials."
    credentials = tmp_path / "credentials"
    credentials.write_text("[src]\naws_access_key_id = AKIDPROFILESOURCE001\naws_secret_access_key = p\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    session = RefreshableSession({"RoleArn": role_arn, "RoleSessionName": "from-src"}, profile_name="src")
    assert session.client("sts").get_caller_identity()["Arn"] == assumed(role_arn, "from-src")
    assert sts.calls("sts:AssumeRole")[0]["access_key_id"] == "AKIDPROFILESOURCE001"


def test_window_and_cache_keywords_are_in_force(
    sts: StsServer, aws_env: dict[str, str], role_arn: str, tmp_path: Path
) -> None:
    # docs/api.md: further keywords advisory_refresh_seconds, mandatory_refresh_seconds, cache_dir.
    cache = tmp_path / "cache"

    def make() -> RefreshableSession:
        return RefreshableSession(
            {"RoleArn": role_arn, "DurationSeconds": 3600},
            advisory_refresh_seconds=1200,
            mandatory_refresh_seconds=120,
            cache_dir=str(cache),
        )

    first = make()
    creds = first.refreshable_credentials
    creds.get_frozen_credentials()
    assert (creds.schedule.advisory, creds.schedule.mandatory) == (1200, 120)
    assert [entry.suffix for entry in cache.iterdir() if entry.suffix == ".json"] == [".json"]
    # A second session (another process would do the same) is served from the cache.
    second = make()
    assert second.refreshable_credentials.get_frozen_credentials() == creds.get_frozen_credentials()
    assert second.refreshable_credentials.stats.cache_hits == 1
    assert sts.count("sts:AssumeRole") == 1


def test_all_assume_role_parameters_pass_through(
    sts: StsServer, aws_env: dict[str, str], role_arn: str
) -> None:
    session = RefreshableSession(
        {
            "RoleArn": role_arn,
            "RoleSessionName": "params",
            "DurationSeconds": 1800,
            "ExternalId": "ext-1",
            "Tags": [{"Key": "team", "Value": "a"}],
            "SourceIdentity": "alice",
        }
    )
    session.client("sts").get_caller_identity()
    params = sts.calls("sts:AssumeRole")[0]["params"]
    assert params["DurationSeconds"] == "1800" and params["ExternalId"] == "ext-1"
    assert params["SourceIdentity"] == "alice" and params["Tags.member.1.Key"] == "team"


def test_sts_client_kwargs_reach_the_sts_client(
    sts: StsServer, aws_env: dict[str, str], role_arn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    session = RefreshableSession(
        {"RoleArn": role_arn}, sts_client_kwargs={"endpoint_url": sts.url, "region_name": "eu-west-2"}
    )
    creds = session.refreshable_credentials.get_frozen_credentials()
    assert creds.access_key != FAKE_SOURCE_ACCESS_KEY_ID
    assert sts.calls("sts:AssumeRole")[0]["region"] == "eu-west-2"


def test_s3_client_and_resource_use_role_credentials(
    sts: StsServer, aws_env: dict[str, str], role_arn: str
) -> None:
    session = RefreshableSession({"RoleArn": role_arn})
    client = session.client("s3")
    client.create_bucket(Bucket="brs-test-bucket")
    client.put_object(Bucket="brs-test-bucket", Key="k", Body=b"v")
    bucket = session.resource("s3").Bucket("brs-test-bucket")
    assert [o.key for o in bucket.objects.all()] == ["k"]
    s3_calls = [c for c in sts.calls() if c["service"] == "s3"]
    assert s3_calls and all(c["access_key_id"] != FAKE_SOURCE_ACCESS_KEY_ID for c in s3_calls)
    assert sts.count("sts:AssumeRole") == 1


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"RoleArn": "arn:aws:iam::123456789012:role/x", "Bogus": 1}, "unknown key 'Bogus'"),
        ({"RoleArn": "arn:aws:iam::123456789012:role/x", "Tags": "nope"}, "key Tags"),
        ({"RoleArn": "arn:aws:iam::123456789012:role/x", "DurationSeconds": "900"}, "DurationSeconds"),
        ({"RoleSessionName": "x"}, "missing required key 'RoleArn'"),
        ({"RoleArn": "arn:aws:iam::123456789012:role/x", "TokenCode": "123456"}, "mfa_token_provider"),
    ],
)
def test_bad_assume_role_kwargs_are_clear(
    aws_env: dict[str, str], kwargs: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        RefreshableSession(kwargs)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_secret_parameter_value_never_in_error(aws_env: dict[str, str], role_arn: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RefreshableSession({"RoleArn": role_arn, "ExternalId": 12345678})
    assert "12345678" not in str(caught.value) and "ExternalId" in str(caught.value)


def test_bad_sts_client_kwargs(aws_env: dict[str, str], role_arn: str) -> None:
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        RefreshableSession({"RoleArn": role_arn}, sts_client_kwargs={"bogus": 1})


def test_repr_shows_role_never_secrets(sts: StsServer, aws_env: dict[str, str], role_arn: str) -> None:
    session = RefreshableSession({"RoleArn": role_arn, "RoleSessionName": "rep", "ExternalId": "ext-secret"})
    frozen = session.refreshable_credentials.get_frozen_credentials()
    text = repr(session) + repr(session.refreshable_credentials)
    assert role_arn in text and "rep" in text
    for secret in (str(frozen.secret_key), str(frozen.token), "ext-secret", aws_env["AWS_SECRET_ACCESS_KEY"]):
        assert secret not in text
