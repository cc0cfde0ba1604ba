"""Inside a ``brs-run --serve`` tree: another role is chained or refused, never swapped.

And ``BRS_PROFILE`` under ``--serve`` works as under plain brs-run, whatever the profile holds.

Every case runs a real served tree (the outer ``brs-run --serve``) against the local moto
STS. Proof of identity is server-side: GetCallerIdentity's assumed-role ARN, and the
access key moto recorded for each AssumeRole (the chained one must be signed by the
served role's key, never the source's).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import pytest
from launching import ASSUMED, JS_CLIENT, ROLE, SESSION, Launch, write
from stsclient import DEFAULT_ACCOUNT_ID, FAKE_SOURCE_ACCESS_KEY_ID, REPO_ROOT, StsServer, make_role_arn

from brs_autopatch import plan
from brs_autopatch.config import nested
from brs_autopatch.config.from_env import from_env
from brs_autopatch.config.settings import Settings
from brs_autopatch.errors import ConfigError

SERVE = (sys.executable, "-m", "brs_autopatch", "--serve")
INNER_RUN = f"{shlex.quote(sys.executable)} -m brs_autopatch"
OTHER = make_role_arn("brs-other-role")
OTHER_ASSUMED = f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:assumed-role/brs-other-role/{SESSION}"
IDENTITY = "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])"
# boto3 without the bootstrap: a client of the container endpoint like any other SDK.
UNPATCHED = f"env -u BRS_BOOTSTRAP -u PYTHONPATH python -c {shlex.quote(IDENTITY)}"
PATCHED = f"python -c {shlex.quote(IDENTITY)}"
# Signs GetCallerIdentity with the keys `brs-run --credential-process` printed.
WITH_PRINTED_KEYS = (
    "import json, sys, boto3\n"
    "keys = json.load(sys.stdin)\n"
    "print(boto3.client('sts', aws_access_key_id=keys['AccessKeyId'], "
    "aws_secret_access_key=keys['SecretAccessKey'], aws_session_token=keys['SessionToken'])"
    ".get_caller_identity()['Arn'])\n"
)


def served(launch: Launch, inner: str, env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    result = launch([*SERVE, "sh", "-c", inner], env=env)
    return result.returncode, result.stdout, result.stderr


def role_keys(sts: StsServer) -> dict[str, str]:
    """RoleArn -> the access key that signed its AssumeRole."""
    calls = sts.calls("sts:AssumeRole")
    return {str(call["params"]["RoleArn"]): str(call["access_key_id"]) for call in calls}


def assert_chained_from_the_served_role(sts: StsServer, *, outer: str = ROLE) -> None:
    signed = role_keys(sts)
    assert set(signed) == {outer, OTHER}, signed
    assert signed[outer] == FAKE_SOURCE_ACCESS_KEY_ID
    # The outer program asked first: its GetCallerIdentity is signed with the served key.
    served_key = sts.calls("sts:GetCallerIdentity")[0]["access_key_id"]
    # The other role was assumed with the served role's credentials: role chaining.
    assert signed[OTHER] == served_key != FAKE_SOURCE_ACCESS_KEY_ID


# -- item 4: another role is chained from the served one --------------------------------------

@pytest.mark.parametrize("inner", [
    pytest.param(f"{INNER_RUN} --role-arn {OTHER} {PATCHED}", id="brs-run --role-arn"),
    pytest.param(f"BRS_ROLE_ARN={OTHER} {PATCHED}", id="BRS_ROLE_ARN python"),
    pytest.param(f"{INNER_RUN} --serve --role-arn {OTHER} {PATCHED}", id="--serve python"),
    pytest.param(f"{INNER_RUN} --serve --role-arn {OTHER} {UNPATCHED}", id="--serve other client"),
])
def test_another_role_inside_a_served_tree_is_chained_from_the_served_role(
    launch: Launch, sts: StsServer, inner: str
) -> None:
    code, out, err = served(launch, f"{PATCHED} && {inner} && {UNPATCHED}")
    assert code == 0, err
    # The outer program still has its role; the child the one it asked for.
    assert out.split() == [ASSUMED, OTHER_ASSUMED, ASSUMED], err
    assert_chained_from_the_served_role(sts)


def test_credential_process_for_another_role_inside_a_served_tree(launch: Launch, sts: StsServer) -> None:
    printed = f"python -c {shlex.quote(WITH_PRINTED_KEYS)}"
    inner = f"{INNER_RUN} --credential-process --role-arn {OTHER} | {printed}"
    code, out, err = served(launch, f"{PATCHED} && {inner}")
    assert code == 0, err
    assert out.split() == [ASSUMED, OTHER_ASSUMED], err
    assert_chained_from_the_served_role(sts)


@pytest.mark.parametrize("inner", [
    pytest.param(f"{INNER_RUN} --role-arn {ROLE} {PATCHED}", id="brs-run --role-arn"),
    pytest.param(f"BRS_ROLE_ARN={ROLE} {PATCHED}", id="BRS_ROLE_ARN python"),
    pytest.param(f"{INNER_RUN} --serve --role-arn {ROLE} {UNPATCHED}", id="--serve"),
    pytest.param(f"{INNER_RUN} --credential-process --role-arn {ROLE} | "
                 f"python -c {shlex.quote(WITH_PRINTED_KEYS)}", id="--credential-process"),
])
def test_the_served_role_asked_again_is_served_not_assumed_again(
    launch: Launch, sts: StsServer, inner: str
) -> None:
    code, out, err = served(launch, f"{PATCHED} && {inner}")
    assert code == 0, err
    assert out.split() == [ASSUMED, ASSUMED], err
    assert sts.count("sts:AssumeRole") == 1  # the outer server's only


@pytest.mark.parametrize("inner", [
    pytest.param(f"{INNER_RUN} --role-arn {OTHER} --duration-seconds 7200 {PATCHED}", id="brs-run"),
    pytest.param(f"{INNER_RUN} --serve --role-arn {OTHER} --duration-seconds 7200 {PATCHED}", id="--serve"),
    pytest.param(f"{INNER_RUN} --credential-process --role-arn {OTHER} --duration-seconds 7200", id="--cp"),
])
def test_a_chained_role_longer_than_an_hour_exits_2_with_one_line(
    launch: Launch, sts: StsServer, inner: str
) -> None:
    _, out, err = served(launch, f"{inner}; echo exit=$?")
    assert out.split() == ["exit=2"], (out, err)
    (line,) = err.strip().splitlines()
    assert "BRS_DURATION_SECONDS='7200' is not valid" in line and "3600" in line, line
    assert "chain" in line and sts.count("sts:AssumeRole") == 0


def test_a_python_child_asking_for_a_chained_role_too_long_gets_no_credentials(
    launch: Launch, sts: StsServer
) -> None:
    _, out, err = served(
        launch, f"BRS_ROLE_ARN={OTHER} BRS_DURATION_SECONDS=7200 {PATCHED}; echo exit=$?"
    )
    assert out.split()[-1] != "exit=0" and ASSUMED not in out, (out, err)
    assert "BRS_DURATION_SECONDS='7200' is not valid" in err and "3600" in err
    assert sts.count("sts:AssumeRole") == 0


def test_the_outer_duration_is_not_inherited_as_the_chained_one(launch: Launch, sts: StsServer) -> None:
    # The outer role may last 12 h; what the child asks for is chained, so 1 h at most,
    # and the child says so only when it asks for more itself.
    code, out, err = served(launch, f"{INNER_RUN} --role-arn {OTHER} {PATCHED}",
                            env={"BRS_DURATION_SECONDS": "43200"})
    assert code == 0, err
    assert out.split() == [OTHER_ASSUMED]
    params = {str(call["params"]["RoleArn"]): call["params"] for call in sts.calls("sts:AssumeRole")}
    assert params[ROLE]["DurationSeconds"] == "43200"
    assert "DurationSeconds" not in params[OTHER]  # STS's default, 1 h



def test_a_profile_for_another_role_inside_a_served_tree_is_chained_too(
    launch: Launch, sts: StsServer, tmp_path: Path
) -> None:
    # A nested BRS_PROFILE names another role: chained from the served role like any
    # other (the served credentials are the source of every role in the tree, not the
    # profile's source_profile), and its duration_seconds is held to the 1 h cap.
    config = write(tmp_path / "aws-config", (
        f"[profile other]\nrole_arn = {OTHER}\nsource_profile = keys\n\n"
        f"[profile long]\nrole_arn = {OTHER}\nsource_profile = keys\nduration_seconds = 7200\n\n"
        "[profile keys]\naws_access_key_id = AKIDNAMEDPROFILE0000\naws_secret_access_key = s\n"
    ))
    inner = (f"{PATCHED} && BRS_PROFILE=other {INNER_RUN} {PATCHED} && "
             f"BRS_PROFILE=long {INNER_RUN} {PATCHED}; echo exit=$?")
    _, out, err = served(launch, inner, env={"AWS_CONFIG_FILE": str(config)})
    assert out.split() == [ASSUMED, OTHER_ASSUMED, "exit=2"], err
    (line,) = err.strip().splitlines()
    assert line == (
        "brs-run: BRS_PROFILE='long' is not valid: profile 'long' duration_seconds='7200': "
        "expected 900-3600 (a chained role: AWS caps its session at 1 h)"
    )
    assert_chained_from_the_served_role(sts)


CUSTOM_METHOD = """
import datetime
def credentials():
    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    return {"access_key": "AKIDCUSTOMMETHOD0000", "secret_key": "s", "token": "t", "expiry_time": expiry}
"""


def test_a_role_asked_where_a_method_own_identity_is_served_is_chained(
    launch: Launch, sts: StsServer, tmp_path: Path
) -> None:
    # No role names the served identity (a custom method's own keys): a role asked for
    # cannot be told from it, so it is assumed with the served keys, never skipped.
    write(tmp_path / "lib" / "brs_nested_method.py", CUSTOM_METHOD)
    env: dict[str, str | None] = {
        "BRS_ROLE_ARN": None, "BRS_METHOD": "custom", "BRS_CUSTOM_METHOD": "brs_nested_method:credentials",
        "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{tmp_path / 'lib'}",
    }
    _, out, err = served(launch, f"{INNER_RUN} --role-arn {OTHER} {PATCHED}; echo exit=$?", env=env)
    assert out.split() == [OTHER_ASSUMED, "exit=0"], err
    assert role_keys(sts) == {OTHER: "AKIDCUSTOMMETHOD0000"}

# -- item 5: BRS_PROFILE under --serve ---------------------------------------------------------

SOURCE_KEY = "AKIDPROFILESOURCE000"
PROFILE_ROLE = make_role_arn("profile-role")
PROFILE_ASSUMED = f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:assumed-role/profile-role/"
CONFIGS = {
    "default": (
        "default",
        f"[default]\nrole_arn = {PROFILE_ROLE}\nsource_profile = src\nregion = us-east-1\n\n"
        f"[profile src]\naws_access_key_id = {SOURCE_KEY}\naws_secret_access_key = src-secret\n",
    ),
    "mfa_serial": (
        "mfa",
        f"[profile mfa]\nrole_arn = {PROFILE_ROLE}\nsource_profile = src\n"
        f"mfa_serial = arn:aws:iam::{DEFAULT_ACCOUNT_ID}:mfa/me\n\n"
        f"[profile src]\naws_access_key_id = {SOURCE_KEY}\naws_secret_access_key = src-secret\n",
    ),
    "source_profile": (
        "chain",
        f"[profile first]\nrole_arn = {make_role_arn('first')}\nsource_profile = src\n\n"
        f"[profile chain]\nrole_arn = {PROFILE_ROLE}\nsource_profile = first\n\n"
        f"[profile src]\naws_access_key_id = {SOURCE_KEY}\naws_secret_access_key = src-secret\n",
    ),
    "credential_process": (
        "proc",
        f"[profile proc]\nrole_arn = {PROFILE_ROLE}\nsource_profile = keys\n\n"
        "[profile keys]\ncredential_process = {python} {tmp}/process.py\n",
    ),
}


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_brs_profile_under_serve_works_as_under_plain_brs_run(
    launch: Launch, sts: StsServer, tmp_path: Path, kind: str
) -> None:
    profile, text = CONFIGS[kind]
    keys = {"Version": 1, "AccessKeyId": SOURCE_KEY, "SecretAccessKey": "s"}
    write(tmp_path / "process.py", f"import json; print(json.dumps({keys!r}))")
    text = text.replace("{python}", sys.executable).replace("{tmp}", str(tmp_path))
    config = write(tmp_path / "aws-config", text)
    env: dict[str, str | None] = {
        "AWS_CONFIG_FILE": str(config), "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
        "BRS_ROLE_ARN": None, "BRS_ROLE_SESSION_NAME": None, "BRS_PROFILE": profile,
    }
    if kind == "mfa_serial":
        env["BRS_MFA_TOKEN_COMMAND"] = f"{sys.executable} -c print(123456)"
    plain = launch([sys.executable, "-m", "brs_autopatch", "python", "-c", IDENTITY], env=env)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith(PROFILE_ASSUMED)
    sts.reset(moto=True)
    code, out, err = served(launch, f"{PATCHED} && {UNPATCHED}", env=env)
    assert code == 0, err
    assert out.split() == [plain.stdout.strip()] * 2, err
    calls = sts.calls("sts:AssumeRole")
    assert len(calls) == (2 if kind == "source_profile" else 1)  # the server's, once
    assert calls[0]["access_key_id"] == SOURCE_KEY
    if kind == "mfa_serial":
        assert calls[0]["params"]["TokenCode"] == "123456"


@pytest.mark.parametrize("inner", [
    pytest.param(f"{INNER_RUN} --role-arn {PROFILE_ROLE} {PATCHED}", id="its role"),
    pytest.param(f"BRS_PROFILE=mfa {INNER_RUN} {PATCHED}", id="its profile"),
])
def test_a_served_child_asking_for_the_profile_role_again_is_served(
    launch: Launch, sts: StsServer, tmp_path: Path, inner: str
) -> None:
    # The profile's role is what the tree is served: a nested brs-run naming it again gets
    # it from the server (the MFA code and the profile's source keys are the server's).
    profile, text = CONFIGS["mfa_serial"]
    config = write(tmp_path / "aws-config", text)
    env: dict[str, str | None] = {
        "AWS_CONFIG_FILE": str(config), "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
        "BRS_ROLE_ARN": None, "BRS_PROFILE": profile,
        "BRS_MFA_TOKEN_COMMAND": f"{sys.executable} -c print(123456)",
    }
    code, out, err = served(launch, f"env | grep ^BRS_ | sort && {inner}", env=env)
    assert code == 0, err
    lines = out.splitlines()
    # The tree is told the role, not the profile (resolved with files it does not see).
    assert f"BRS_SERVED_ROLE_ARN={PROFILE_ROLE}" in lines
    assert not any(line.startswith(("BRS_ROLE_ARN=", "BRS_PROFILE=", "BRS_MFA_")) for line in lines)
    assert lines[-1].startswith(PROFILE_ASSUMED)
    assert sts.count("sts:AssumeRole") == 1


# -- the rule, as pure logic -------------------------------------------------------------------

A, B, C = (make_role_arn(name) for name in ("a", "b", "c"))


@pytest.mark.parametrize(("served", "asked", "chained"), [
    ((A,), (), ()),  # nothing asked: the served role
    ((A,), (A,), ()),  # the served role asked again
    ((A, B), (B,), ()),  # the served identity is the chain's last role
    ((A, B), (C, B), ()),  # a chain ending in it, too
    ((A,), (B,), (B,)),  # another role: on top of the served one
    ((A,), (A, B), (B,)),  # the served chain extended: the roles after it
    ((A, B), (A, C), (A, C)),  # not an extension: all of it on top
    ((), (B,), (B,)),  # a method's own identity, or BRS_METHOD=served by hand: chained
    ((), (), ()),
])
def test_which_roles_are_chained_on_the_served_one(
    served: tuple[str, ...], asked: tuple[str, ...], chained: tuple[str, ...]
) -> None:
    settings = Settings(method="served", role_arns=asked, served_role_arns=served)
    assert nested.chained_roles(settings) == chained
    assert nested.serves(settings) == (not chained)
    assert nested.chained_roles(settings.replace(method="sts")) == ()  # outside a served tree


def test_the_chained_duration_is_checked_and_names_the_variable() -> None:
    settings = from_env({"BRS_METHOD": "served", "BRS_SERVED_ROLE_ARN": A, "BRS_ROLE_ARN": B,
                         "BRS_DURATION_SECONDS": "3601"})
    with pytest.raises(ConfigError) as caught:
        plan.make(settings)
    expected = "BRS_DURATION_SECONDS='3601' is not valid: expected at most 3600 for "
    assert str(caught.value).startswith(expected)
    assert [hop.role_arn for hop in plan.make(settings.replace(duration_seconds=3600)).hops] == [None, B]
    # The served role itself: its duration is the server's business.
    assert [hop.role_arn for hop in plan.make(settings.replace(role_arns=(A,))).hops] == [None]


def test_a_malformed_served_role_is_one_line_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^BRS_SERVED_ROLE_ARN='nope' is not valid: expected an IAM role"):
        from_env({"BRS_METHOD": "served", "BRS_SERVED_ROLE_ARN": "nope"})


def test_the_javascript_sdk_gets_the_profile_role_and_a_chained_one(
    launch: Launch, sts: StsServer, tmp_path: Path, node: str,
) -> None:
    # A client nobody here wrote: the AWS SDK for JavaScript v3 reads the container
    # endpoint of the outer tree (BRS_PROFILE with mfa_serial) and of a nested --serve.
    profile, text = CONFIGS["mfa_serial"]
    config = write(tmp_path / "aws-config", text)
    write(tmp_path / "client.js", JS_CLIENT)
    env: dict[str, str | None] = {
        "AWS_CONFIG_FILE": str(config), "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
        "BRS_ROLE_ARN": None, "BRS_PROFILE": profile,
        "BRS_MFA_TOKEN_COMMAND": f"{sys.executable} -c print(123456)",
    }
    js = f"{shlex.quote(node)} client.js"
    code, out, err = served(launch, f"{js} && {INNER_RUN} --serve --role-arn {OTHER} {js} && {PATCHED}",
                            env=env)
    assert code == 0, err
    first, chained, patched = out.split()
    assert first.startswith(PROFILE_ASSUMED) and patched == first
    assert chained.startswith(f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:assumed-role/brs-other-role/")
    signed = role_keys(sts)
    assert signed[PROFILE_ROLE] == SOURCE_KEY
    assert signed[OTHER] not in (SOURCE_KEY, FAKE_SOURCE_ACCESS_KEY_ID)
    assert sts.count("sts:AssumeRole") == 2
