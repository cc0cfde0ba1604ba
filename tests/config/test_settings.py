"""BRS_* environment variables -> Settings, and the one-line ConfigError for bad values."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brs_autopatch import ConfigError
from brs_autopatch.config.from_env import from_env
from brs_autopatch.config.settings import FIELDS, Settings
from brs_autopatch.config.variables import VARIABLES

ARN = "arn:aws:iam::123456789012:role/app"


def error_for(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        from_env(env)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_without_variables() -> None:
    s = from_env({})
    assert s == Settings()
    assert not s.active and s.defer_refresh and s.enabled and s.propagate
    assert s.method == "sts" and s.on_error == "raise"


def test_full_configuration_parses() -> None:
    s = from_env(
        {
            "BRS_ROLE_ARN": ARN,
            "BRS_ROLE_SESSION_NAME": "svc@host.example",
            "BRS_DURATION_SECONDS": "900",
            "BRS_DEFER_REFRESH": "Off",
            "BRS_EXTERNAL_ID": "ext-123",
            "BRS_ASSUME_ROLE_KWARGS": '{"Tags": [{"Key": "team", "Value": "a"}]}',
            "BRS_STS_REGION": "eu-west-1",
            "BRS_STS_ENDPOINT_URL": "http://127.0.0.1:5000",
            "BRS_STS_CLIENT_KWARGS": '{"verify": false}',
            "BRS_ENABLED": "YES",
            "BRS_LOG_LEVEL": "debug",
            "BRS_ADVISORY_REFRESH_SECONDS": "300",
            "BRS_MANDATORY_REFRESH_SECONDS": "30",
        }
    )
    assert s.active and s.role_arn == ARN and s.duration_seconds == 900
    assert s.defer_refresh is False and s.log_level == "DEBUG"
    assert s.assume_role_kwargs == {"Tags": [{"Key": "team", "Value": "a"}]}
    assert (s.advisory_refresh_seconds, s.mandatory_refresh_seconds) == (300, 30)


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::123456789012:role/app",
        "arn:aws-cn:iam::123456789012:role/app",
        "arn:aws-us-gov:iam::123456789012:role/path/to/app",
        "arn:aws-iso-b:iam::123456789012:role/a+b=c,d.e@f-g",
    ],
)
def test_role_arn_any_partition(arn: str) -> None:
    assert from_env({"BRS_ROLE_ARN": arn}).role_arns == (arn,)


def test_role_chain() -> None:
    chain = f"{ARN}, arn:aws:iam::210987654321:role/b"
    assert from_env({"BRS_ROLE_ARN": chain}).role_arns == (ARN, "arn:aws:iam::210987654321:role/b")


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"BRS_ROLE_ARN": "arn:aws:iam::123456789012:user/app"}, "IAM role ARN"),
        ({"BRS_ROLE_ARN": "arn:aws:iam::12345:role/app"}, "IAM role ARN"),
        ({"BRS_ROLE_ARN": "app"}, "IAM role ARN"),
        ({"BRS_DURATION_SECONDS": "abc"}, "integer number of seconds from 900 to 43200"),
        ({"BRS_DURATION_SECONDS": "899"}, "from 900 to 43200"),
        ({"BRS_DURATION_SECONDS": "43201"}, "from 900 to 43200"),
        ({"BRS_DURATION_SECONDS": "1.5e3"}, "integer"),
        ({"BRS_ROLE_ARN": f"{ARN},{ARN}", "BRS_DURATION_SECONDS": "7200"}, "role chain"),
        ({"BRS_DEFER_REFRESH": "maybe"}, "1/0, true/false, yes/no or on/off"),
        ({"BRS_ENABLED": "2"}, "boolean"),
        ({"BRS_PROPAGATE": "nope"}, "boolean"),
        ({"BRS_ROLE_SESSION_NAME": "has space"}, "2 to 64 characters"),
        ({"BRS_ROLE_SESSION_NAME": "x"}, "2 to 64 characters"),
        ({"BRS_ROLE_SESSION_NAME": "a" * 65}, "2 to 64 characters"),
        ({"BRS_ASSUME_ROLE_KWARGS": "{"}, "does not parse"),
        ({"BRS_ASSUME_ROLE_KWARGS": "[1, 2]"}, "not an object"),
        ({"BRS_ASSUME_ROLE_KWARGS": '{"RoleArn": "x"}'}, "set BRS_ROLE_ARN instead"),
        ({"BRS_STS_CLIENT_KWARGS": "3"}, "not an object"),
        ({"BRS_STS_REGION": "Mars"}, "region name"),
        ({"BRS_STS_ENDPOINT_URL": "ftp://x"}, "http:// or https:// URL"),
        ({"BRS_LOG_LEVEL": "LOUD"}, "DEBUG"),
        ({"BRS_ON_ERROR": "ignore"}, "raise or warn"),
        ({"BRS_ADVISORY_REFRESH_SECONDS": "0"}, "integer"),
        (
            {"BRS_ADVISORY_REFRESH_SECONDS": "100", "BRS_MANDATORY_REFRESH_SECONDS": "100"},
            "0 < mandatory < advisory",
        ),
        ({"BRS_DURATION_SECONDS": "900", "BRS_ADVISORY_REFRESH_SECONDS": "900"}, "below the lifetime"),
        ({"BRS_MFA_SERIAL": "arn:aws:iam::123456789012:mfa/me"}, "BRS_MFA_TOKEN_COMMAND"),
        ({"BRS_MFA_TOKEN_COMMAND": "echo 123456"}, "BRS_MFA_SERIAL"),
        ({"BRS_MFA_SERIAL": "x", "BRS_MFA_TOKEN_COMMAND": "y"}, "MFA device"),
        (
            {"BRS_MFA_SERIAL": "arn:aws:iam::123456789012:mfa/me", "BRS_MFA_TOKEN_COMMAND": "'x"},
            "balanced quotes",
        ),
        ({"BRS_METHOD": "No Such"}, "method name"),
        ({"BRS_METHOD": "web-identity", "BRS_ROLE_ARN": ARN}, "BRS_WEB_IDENTITY_TOKEN_FILE"),
        ({"BRS_METHOD": "custom"}, "package.module:callable"),
        ({"BRS_CUSTOM_METHOD": "not a path"}, "package.module:callable"),
    ],
)
def test_bad_value_names_variable_value_and_form(env: dict[str, str], fragment: str) -> None:
    message = error_for(env)
    assert fragment in message
    assert any(message.startswith(name + "=") for name in VARIABLES), message


def test_each_variable_is_named_in_its_error() -> None:
    assert error_for({"BRS_DURATION_SECONDS": "abc"}).startswith("BRS_DURATION_SECONDS='abc' ")
    assert error_for({"BRS_DEFER_REFRESH": "maybe"}).startswith("BRS_DEFER_REFRESH='maybe' ")


@pytest.mark.parametrize(
    "env",
    [
        {"BRS_EXTERNAL_ID": "!secret value!"},
        {"BRS_ASSUME_ROLE_KWARGS": '["secret value"]'},
        {"BRS_STS_CLIENT_KWARGS": '"secret value"'},
    ],
)
def test_secret_values_are_never_echoed(env: dict[str, str]) -> None:
    message = error_for(env)
    assert "secret value" not in message and "(value hidden)" in message


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("OFF", False),
        (" off ", False),
    ],
)
def test_booleans(raw: str, expected: bool) -> None:
    assert from_env({"BRS_DEFER_REFRESH": raw}).defer_refresh is expected


def test_empty_variables_mean_unset() -> None:
    assert from_env({"BRS_ROLE_ARN": "", "BRS_DURATION_SECONDS": " "}) == Settings()


def test_kill_switch_deactivates() -> None:
    assert not from_env({"BRS_ROLE_ARN": ARN, "BRS_ENABLED": "false"}).active


def test_redacted_hides_secrets_and_policy_values() -> None:
    s = from_env(
        {
            "BRS_ROLE_ARN": ARN,
            "BRS_EXTERNAL_ID": "topsecret",
            "BRS_ASSUME_ROLE_KWARGS": '{"Policy": "{\\"secret\\": 1}"}',
        }
    )
    shown = repr(s) + repr(s.redacted())
    assert "topsecret" not in shown and "secret\\" not in shown
    assert s.redacted()["external_id"] == "(set, hidden)"
    assert s.redacted()["assume_role_kwargs"] == "keys: Policy"


def test_settings_key_identifies_credentials() -> None:
    a = from_env({"BRS_ROLE_ARN": ARN})
    assert a.key() == from_env({"BRS_ROLE_ARN": ARN, "BRS_LOG_LEVEL": "INFO"}).key()
    assert a.key() != from_env({"BRS_ROLE_ARN": ARN, "BRS_DURATION_SECONDS": "900"}).key()


_names = st.sampled_from(sorted(VARIABLES))
_values = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "1",
            "true",
            "900",
            "43200",
            "{}",
            "[]",
            '{"a":1}',
            ARN,
            "arn:aws:iam::123456789012:mfa/x",
            "a:b",
            "web-identity",
            "custom",
        ]
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_names, _values, max_size=8))
def test_parser_raises_only_config_error(env: dict[str, str]) -> None:
    try:
        result = from_env(env)
    except ConfigError as error:
        assert "\n" not in str(error)
    else:
        assert isinstance(result, Settings)


# -- the Settings value object (a plain class with __slots__, not a dataclass) -------------------


def test_settings_are_immutable_and_replace_makes_a_copy() -> None:
    s = from_env({"BRS_ROLE_ARN": ARN})
    with pytest.raises(AttributeError, match="immutable"):
        s.role_arns = ()
    with pytest.raises(AttributeError):
        del s.method
    changed = s.replace(duration_seconds=900)
    assert changed.duration_seconds == 900 and s.duration_seconds is None
    assert changed.replace(duration_seconds=None) == s
    with pytest.raises(TypeError):
        s.replace(no_such_field=1)
    with pytest.raises(TypeError):
        Settings((ARN,))  # type: ignore[call-arg]  # keyword-only, like the variables


def test_every_field_is_a_keyword_of_init_and_a_slot() -> None:
    assert set(FIELDS) == set(Settings.__slots__)
    assert set(Settings().as_dict()) == set(FIELDS)


def test_mapping_defaults_are_not_shared() -> None:
    a, b = Settings(), Settings()
    assert a.assume_role_kwargs == {} and a.assume_role_kwargs is not b.assume_role_kwargs


def test_equality_ignores_origin_and_hash_follows_it() -> None:
    a = Settings(role_arns=(ARN,), assume_role_kwargs={"Policy": "p"})
    b = Settings(role_arns=(ARN,), assume_role_kwargs={"Policy": "p"}, origin={"role_arns": "role_arn"})
    assert a == b and hash(a) == hash(b) and a != a.replace(method="custom")
    assert a != (ARN,)


def test_pickle_and_copy_round_trip() -> None:
    s = from_env(
        {"BRS_ROLE_ARN": ARN, "BRS_ASSUME_ROLE_KWARGS": '{"Policy": "p"}', "BRS_DURATION_SECONDS": "900"}
    )
    for twin in (pickle.loads(pickle.dumps(s)), copy.copy(s), copy.deepcopy(s)):
        assert twin == s and twin.key() == s.key() and twin is not s


def test_repr_shows_settings_not_secrets() -> None:
    s = Settings(role_arns=(ARN,), external_id="ext-secret-1", mfa_token_command=("oathtool", "SEED123"))
    text = repr(s)
    assert text.startswith("Settings(role_arns=(") and ARN in text
    assert "ext-secret-1" not in text and "SEED123" not in text
