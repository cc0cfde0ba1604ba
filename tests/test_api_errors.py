"""Python-API mistakes name the argument; CredentialRefreshError fits botocore's hierarchy."""

from __future__ import annotations

import pickle

import pytest
from stsclient import RunPython, StsServer

import brs_autopatch
from brs_autopatch import ConfigError, RefreshableSession, Settings
from brs_autopatch.config.arguments import CHECKS, settings_from_arguments
from brs_autopatch.config.settings import FIELDS

ROLE = "arn:aws:iam::123456789012:role/brs-test-role"


def test_every_settings_field_has_an_argument_check() -> None:
    assert set(CHECKS) == set(FIELDS) - {"origin"}


@pytest.mark.parametrize(("arguments", "fragment"), [
    ({"role_arns": ROLE}, "role_arns='arn:aws:iam::123456789012:role/brs-test-role' is not valid: "
                          "expected a tuple of role ARNs such as"),
    ({"role_arns": ("not-an-arn",)}, "role_arns[0]='not-an-arn' is not valid"),
    ({"role_arn": ROLE}, "patched() has no argument 'role_arn' (did you mean role_arns?)"),
    ({"role_arns": (ROLE,), "duration_seconds": "900"}, "duration_seconds='900' is not valid"),
    ({"role_arns": (ROLE,), "defer_refresh": "no"}, "defer_refresh='no' is not valid: expected True"),
    ({"role_arns": (ROLE,), "external_id": "x"}, "external_id=(value hidden) is not valid"),
    ({"role_arns": (ROLE, ROLE), "duration_seconds": 7200}, "duration_seconds=7200"),
    ({"role_arns": (ROLE,), "advisory_refresh_seconds": 60, "mandatory_refresh_seconds": 60},
     "mandatory_refresh_seconds=60 is not valid: expected fewer seconds than advisory_refresh_seconds=60"),
])
def test_patched_checks_its_arguments_before_anything_runs(
    arguments: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught, brs_autopatch.patched(**arguments):  # type: ignore[arg-type]
        pytest.fail("the block must not run")
    message = str(caught.value)
    assert fragment in message and "\n" not in message
    assert "BRS_" not in message


def test_arguments_record_their_origin_for_later_checks(aws_env: dict[str, str]) -> None:
    settings = settings_from_arguments({"role_arns": [ROLE], "assume_role_kwargs": {"Bogus": 1}}, "patched()")
    assert settings.role_arns == (ROLE,)
    assert settings.name_of("assume_role_kwargs") == "assume_role_kwargs"
    assert Settings().name_of("assume_role_kwargs") == "BRS_ASSUME_ROLE_KWARGS"
    assert Settings().name_of("role_arns") == "BRS_ROLE_ARN"
    from brs_autopatch import build as factory

    with pytest.raises(ConfigError, match=r"^assume_role_kwargs has unknown key 'Bogus'"):
        factory.build(settings)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"assume_role_kwargs": {"DurationSecond": 900}},
     "assume_role_kwargs has unknown key 'DurationSecond': expected one of RoleArn,"),
    ({"assume_role_kwargs": {"RoleArn": ROLE, "DurationSeconds": 43201}},
     "assume_role_kwargs['DurationSeconds']=43201 is not valid: expected an integer number of seconds"),
    ({"assume_role_kwargs": {"RoleArn": "arn:aws:iam::123456789012:user/someone"}},
     "assume_role_kwargs['RoleArn']='arn:aws:iam::123456789012:user/someone' is not valid"),
    ({"assume_role_kwargs": {"RoleArn": ROLE}, "sts_client_kwargs": {"regoin_name": "eu-west-1"}},
     "sts_client_kwargs has unknown key 'regoin_name'"),
    ({"assume_role_kwargs": {"RoleArn": ROLE}, "sts_client_kwargs": "eu-west-1"},
     "sts_client_kwargs=(value hidden) is not valid: expected a dict"),
    ({"assume_role_kwargs": {"RoleArn": ROLE}, "defer_refresh": "false"},
     "defer_refresh='false' is not valid: expected True or False"),
])
def test_refreshable_session_errors_name_the_argument(
    aws_env: dict[str, str], sts: StsServer, kwargs: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        RefreshableSession(**kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert fragment in message and "\n" not in message
    assert "BRS_" not in message
    assert sts.count("sts:AssumeRole") == 0


# -- CredentialRefreshError ---------------------------------------------------------------------

def test_credential_refresh_error_without_botocore(run_python: RunPython) -> None:
    code = """
import pickle, sys
import brs_autopatch
from brs_autopatch import CredentialRefreshError
try:
    raise CredentialRefreshError("arn:r", "throttled", transient=True)
except brs_autopatch.CredentialRefreshError as error:
    copy = pickle.loads(pickle.dumps(error))
    same = str(copy) == str(error)
print(copy.role, copy.cause, copy.transient, same)
print(sorted(m for m in ("botocore", "urllib3", "boto3") if m in sys.modules))
import botocore.exceptions
print(isinstance(copy, botocore.exceptions.BotoCoreError), isinstance(copy, RuntimeError))
"""
    result = run_python(code, check=True)
    assert result.stdout.splitlines() == ["arn:r throttled True True", "[]", "True True"]


def test_credential_refresh_error_is_a_botocore_error_and_pickles() -> None:
    import botocore.exceptions

    error = brs_autopatch.CredentialRefreshError(ROLE, "access denied: AccessDenied", transient=False)
    assert isinstance(error, botocore.exceptions.BotoCoreError)
    assert isinstance(error, RuntimeError)
    assert str(error) == f"could not refresh credentials for {ROLE}: access denied: AccessDenied"
    assert error.kwargs == {"role": ROLE, "cause": "access denied: AccessDenied", "transient": False}
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.role, copy.cause, copy.transient, str(copy)) == (
        type(error), error.role, error.cause, error.transient, str(error)
    )


def test_credential_refresh_error_is_built_whatever_its_bases(run_python: RunPython) -> None:
    # Its bases change at run time (BotoCoreError joins them), so its __init__ may not rely
    # on which __init__ comes next: on CPython 3.14, RuntimeError no longer has one of its
    # own and super() reached BotoCoreError's (keywords only), a TypeError. A base next in
    # line that takes keywords only shows the same on every version.
    code = """
from brs_autopatch import CredentialRefreshError

class KeywordsOnly(RuntimeError):
    __slots__ = ()  # RuntimeError's layout, so that __bases__ may be assigned

    def __init__(self, **kwargs):
        super().__init__("keywords only")

CredentialRefreshError.__bases__ = (KeywordsOnly,)
error = CredentialRefreshError("arn:r", "throttled", transient=True)
print(isinstance(error, KeywordsOnly), error.args, error.kwargs)
"""
    result = run_python(code, check=True)
    assert result.stdout == (
        "True ('could not refresh credentials for arn:r: throttled',) "
        "{'role': 'arn:r', 'cause': 'throttled', 'transient': True}\n"
    )


def test_a_botocore_error_handler_catches_a_failed_refresh(run_python: RunPython, sts: StsServer) -> None:
    sts.fault("AssumeRole", "access_denied")
    code = """
import brs_autopatch
import boto3, botocore.exceptions
try:
    boto3.client("sts").get_caller_identity()
except botocore.exceptions.BotoCoreError as error:  # what retry handlers catch
    print(type(error).__name__, error.role)
"""
    result = run_python(code, env={"BRS_ROLE_ARN": ROLE, "BRS_LOG_LEVEL": "CRITICAL"},
                        check=True)
    assert result.stdout == f"CredentialRefreshError {ROLE}\n"
    assert sts.count("sts:GetCallerIdentity") == 0  # never signed with the source instead
