"""BRS_METHOD: sts, web-identity, custom, and plugins found through entry points.

The unmodified-app cases run in fresh interpreters, twice: after ``import brs_autopatch``
and under the launcher (``python -m brs_autopatch python app.py``, the same as brs-run).
The plugin is a throw-away wheel, built here and installed with pip into a temporary venv.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import boto3
import pytest
from engine_helpers import SERIAL, Timeline
from launching import Result, app_env, run_command
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, StsServer, child_base_env, make_role_arn

from brs_autopatch import ConfigError, CredentialRefreshError, methods
from brs_autopatch import build as factory
from brs_autopatch.config.from_env import from_env
from brs_autopatch.config.settings import Settings
from brs_autopatch.config.variables import BUILTIN_METHODS
from brs_autopatch.credentials import sources
from brs_autopatch.credentials.engine import RoleCredentials

WI_ROLE = make_role_arn("web-identity-role")
CUSTOM_ROLE = make_role_arn("custom-role")
ROLE = make_role_arn("on-top")
PLUGIN_ROLE = make_role_arn("plugin-role")
ACCOUNT = "arn:aws:sts::123456789012"

# The unmodified application: it knows nothing of brs_autopatch. boto3.client() first,
# so boto3's default session exists before the credentials are first fetched.
APP = """\
import json, boto3, botocore.session
sts = boto3.client("sts")
print(json.dumps([
    sts.get_caller_identity()["Arn"],
    boto3.Session().client("sts").get_caller_identity()["Arn"],
    botocore.session.get_session().create_client("sts").get_caller_identity()["Arn"],
]))
"""
# The same app with the one-line opt-in instead of the launcher.
IMPORTED = "import brs_autopatch\n" + APP


def role_client(creds: RoleCredentials) -> Any:
    return boto3.Session(botocore_session=sources.session_with(creds)).client("sts")


# -- running things in fresh interpreters --------------------------------------------------


def run_app(
    how: str,
    env: Mapping[str, str],
    cwd: Path,
    python: str = sys.executable,
    app: str = APP,
) -> Result:
    """Run ``app`` with ``python``: after an import ("import") or under the launcher ("launcher")."""
    script = cwd / "app.py"
    script.write_text(IMPORTED if how == "import" else app)
    cmd: Sequence[str] = (
        [python, str(script)] if how == "import" else [python, "-m", "brs_autopatch", python, str(script)]
    )
    return run_command(cmd, env, cwd)


def arns(result: Result) -> list[str]:
    assert result.returncode == 0, result.stderr
    found: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


# -- discovery ------------------------------------------------------------------------------


def test_builtins_are_registered_as_entry_points() -> None:
    registered = {entry.name: entry for entry in entry_points(group=methods.ENTRY_POINT_GROUP)}
    for name in BUILTIN_METHODS:
        assert registered[name].load() is methods.load(name)
    assert set(BUILTIN_METHODS) <= set(methods.available())


def test_unknown_method_lists_the_available_ones(aws_env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        factory.build(from_env({"BRS_METHOD": "no-such-method", "BRS_ROLE_ARN": ROLE}))
    message = str(caught.value)
    assert message.startswith("BRS_METHOD='no-such-method' is not valid: expected one of ")
    assert "custom, served, sts, web-identity" in message and "\n" not in message


def test_unknown_method_under_import_fails_with_the_config_error(
    aws_env: dict[str, str], tmp_path: Path, sts: StsServer
) -> None:
    env = {**app_env(aws_env, tmp_path), "BRS_METHOD": "no-such-method"}
    result = run_app("import", env, tmp_path)
    assert result.returncode == 1
    assert "ConfigError: BRS_METHOD='no-such-method' is not valid: expected one of" in result.stderr
    assert sts.count("AssumeRole") == 0


# -- web-identity ---------------------------------------------------------------------------


def web_identity_env(token_file: Path, **extra: str) -> dict[str, str]:
    return {
        "BRS_METHOD": "web-identity",
        "BRS_ROLE_ARN": WI_ROLE,
        "BRS_ROLE_SESSION_NAME": "wi",
        "BRS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
        **extra,
    }


def test_web_identity_rereads_the_token_file_on_every_refresh(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="brs_autopatch")
    token = tmp_path / "token"
    token.write_text("token-one\n")
    timeline = Timeline(sts)
    creds = factory.build(from_env(web_identity_env(token, BRS_DURATION_SECONDS="900")), clock=timeline)
    client = role_client(creds)
    assert client.get_caller_identity()["Arn"] == f"{ACCOUNT}:assumed-role/web-identity-role/wi"
    for rotated in ("token-two", "token-three"):
        token.write_text(rotated)  # a token issuer rotates the file in place
        timeline.into_advisory_window(creds)
        for _ in range(3):
            client.get_caller_identity()

    calls = sts.calls("sts:AssumeRoleWithWebIdentity")
    assert [call["params"]["WebIdentityToken"] for call in calls] == ["token-one", "token-two", "token-three"]
    for call in calls:
        assert call["access_key_id"] is None  # unsigned: the token is the credential
        assert (call["params"]["RoleArn"], call["params"]["DurationSeconds"]) == (WI_ROLE, "900")
    assert sts.count("sts:AssumeRole") == 0
    assert not [r for r in caplog.records if "token-" in r.getMessage()]


@pytest.mark.parametrize("problem", ["missing", "empty"])
def test_web_identity_token_file_problems_are_clear(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path, problem: str
) -> None:
    token = tmp_path / "token"
    if problem == "empty":
        token.write_text(" \n")
    creds = factory.build(from_env(web_identity_env(token)))
    with pytest.raises(CredentialRefreshError) as caught:
        role_client(creds).get_caller_identity()
    expected = "No such file or directory" if problem == "missing" else "is empty"
    assert str(token) in str(caught.value) and expected in str(caught.value)
    assert caught.value.transient  # a projected token may appear in a moment
    assert sts.count("AssumeRoleWithWebIdentity") == 0


@pytest.mark.parametrize(
    "extra, variable",
    [
        ({"BRS_EXTERNAL_ID": "ext-1"}, "BRS_EXTERNAL_ID"),
        (
            {"BRS_MFA_SERIAL": "arn:aws:iam::123456789012:mfa/u", "BRS_MFA_TOKEN_COMMAND": "x"},
            "BRS_MFA_SERIAL",
        ),
        ({"BRS_ASSUME_ROLE_KWARGS": '{"Tags": [{"Key": "k", "Value": "v"}]}'}, "BRS_ASSUME_ROLE_KWARGS"),
        ({"BRS_ROLE_ARN": f"{WI_ROLE},{ROLE}"}, "BRS_ROLE_ARN"),
        ({"BRS_ROLE_ARN": ""}, "BRS_ROLE_ARN"),
        ({"BRS_WEB_IDENTITY_TOKEN_FILE": ""}, "BRS_WEB_IDENTITY_TOKEN_FILE"),
    ],
)
def test_web_identity_refuses_what_it_cannot_send(extra: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_env({**web_identity_env(Path("/tmp/token")), **extra})
    assert str(caught.value).startswith(variable)
    assert "ext-1" not in str(caught.value)
    policy = '{"Policy": "{}", "PolicyArns": [{"arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}]}'
    assert from_env({**web_identity_env(Path("/tmp/token")), "BRS_ASSUME_ROLE_KWARGS": policy})


@pytest.mark.parametrize("how", ["import", "launcher"])
def test_web_identity_on_an_unmodified_app(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path, how: str
) -> None:
    token = tmp_path / "token"
    token.write_text("k8s-projected-token")
    env = {**app_env(aws_env, tmp_path), **web_identity_env(token)}
    # In a pod there are no source credentials at all.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(name)
    assert arns(run_app(how, env, tmp_path)) == [f"{ACCOUNT}:assumed-role/web-identity-role/wi"] * 3
    (call,) = sts.calls("sts:AssumeRoleWithWebIdentity")
    assert call["params"]["WebIdentityToken"] == "k8s-projected-token"
    assert sts.count("sts:AssumeRole") == 0


# -- custom -----------------------------------------------------------------------------------

CUSTOM_MODULE = f"""\
import datetime
import boto3

def assume():
    # What a user writes: the default boto3 client. brs_autopatch signs its requests
    # with the source credentials (in a patched process too).
    response = boto3.client("sts").assume_role(RoleArn={CUSTOM_ROLE!r}, RoleSessionName="custom")
    return response["Credentials"]

def static_keys():
    return {{
        "access_key": "AKIDCUSTOMSTATIC0000",
        "secret_key": "custom-secret",
        "token": None,
        "expiry_time": datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1),
    }}

def not_a_mapping():
    return ("AKIDCUSTOMSTATIC0000", "custom-secret")

def missing_secret():
    return {{"access_key": "AKIDCUSTOMSTATIC0000", "token": "t", "expiry_time": "2100-01-01T00:00:00Z"}}

def naive_expiry():
    return {{"AccessKeyId": "AKIDCUSTOMSTATIC0000", "SecretAccessKey": "custom-secret",
             "SessionToken": "t", "Expiration": datetime.datetime.utcnow() + datetime.timedelta(hours=1)}}

def naive_string():
    return {{"access_key": "AKIDCUSTOMSTATIC0000", "secret_key": "custom-secret", "token": None,
             "expiry_time": (datetime.datetime.utcnow() + datetime.timedelta(hours=1)).isoformat()}}

not_callable = 42
"""


@pytest.fixture
def custom_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "custom"
    directory.mkdir()
    (directory / "brs_test_custom.py").write_text(CUSTOM_MODULE)
    monkeypatch.syspath_prepend(str(directory))
    sys.modules.pop("brs_test_custom", None)
    return directory


def custom(path: str, **extra: Any) -> Settings:
    return Settings(method="custom", custom_method=f"brs_test_custom:{path}", **extra)


def test_custom_sts_credentials_shape(sts: StsServer, aws_env: dict[str, str], custom_module: Path) -> None:
    creds = factory.build(custom("assume"))
    assert role_client(creds).get_caller_identity()["Arn"] == f"{ACCOUNT}:assumed-role/custom-role/custom"
    (call,) = sts.calls("sts:AssumeRole")
    assert call["access_key_id"] == FAKE_SOURCE_ACCESS_KEY_ID


def test_custom_metadata_shape_with_a_role_on_top(
    sts: StsServer, aws_env: dict[str, str], custom_module: Path
) -> None:
    creds = factory.build(custom("static_keys", role_arns=(ROLE,), role_session_name="top"))
    assert role_client(creds).get_caller_identity()["Arn"] == f"{ACCOUNT}:assumed-role/on-top/top"
    (call,) = sts.calls("sts:AssumeRole")
    assert (call["params"]["RoleArn"], call["access_key_id"]) == (ROLE, "AKIDCUSTOMSTATIC0000")


def test_custom_with_a_role_on_top_carries_the_assume_role_conditions(
    sts: StsServer, aws_env: dict[str, str], custom_module: Path
) -> None:
    # They belong to the first role assumed, not to the custom hop (where they were dropped).
    settings = custom(
        "static_keys", role_arns=(ROLE,), role_session_name="top", external_id="ext-top", mfa_serial=SERIAL
    )
    creds = factory.build(settings, mfa_token_provider=lambda: "135790")
    role_client(creds).get_caller_identity()
    (call,) = sts.calls("sts:AssumeRole")
    params = call["params"]
    assert (params["ExternalId"], params["SerialNumber"], params["TokenCode"]) == (
        "ext-top",
        SERIAL,
        "135790",
    )
    assert call["access_key_id"] == "AKIDCUSTOMSTATIC0000"


@pytest.mark.parametrize(
    "extra",
    [
        {"BRS_EXTERNAL_ID": "ext-1"},
        {"BRS_MFA_SERIAL": SERIAL, "BRS_MFA_TOKEN_COMMAND": "ykman oath accounts code -s aws"},
        {"BRS_ASSUME_ROLE_KWARGS": '{"Tags": [{"Key": "k", "Value": "v"}]}'},
    ],
)
def test_custom_without_a_role_refuses_assume_role_parameters(extra: dict[str, str]) -> None:
    env = {"BRS_METHOD": "custom", "BRS_CUSTOM_METHOD": "brs_test_custom:assume", **extra}
    with pytest.raises(ConfigError, match="BRS_ROLE_ARN as well"):
        from_env(env)
    assert from_env({**env, "BRS_ROLE_ARN": ROLE}).role_arns == (ROLE,)


@pytest.mark.parametrize("path", ["naive_expiry", "naive_string"])
def test_custom_naive_expiry_is_utc(aws_env: dict[str, str], custom_module: Path, path: str) -> None:
    # botocore compares expiry with an aware "now": a naive one raised TypeError in its refresh.
    creds = factory.build(custom(path))
    creds.get_frozen_credentials()
    left = creds.expiry_time - datetime.now(timezone.utc)
    assert timedelta(minutes=59) < left <= timedelta(hours=1)


@pytest.mark.parametrize(
    "path, fragment",
    [
        ("not_a_mapping", "brs_test_custom:not_a_mapping returned tuple, expected a mapping"),
        ("missing_secret", "brs_test_custom:missing_secret returned no secret_key"),
    ],
)
def test_custom_bad_answers_are_clear_and_never_echoed(
    aws_env: dict[str, str], custom_module: Path, path: str, fragment: str
) -> None:
    creds = factory.build(custom(path))
    with pytest.raises(CredentialRefreshError) as caught:
        creds.get_frozen_credentials()
    assert fragment in str(caught.value)
    assert "custom-secret" not in str(caught.value) and "AKIDCUSTOM" not in str(caught.value)
    assert not caught.value.transient


@pytest.mark.parametrize(
    "path, fragment",
    [
        ("no_such_function", "cannot import it"),
        ("not_callable", "expected a callable"),
    ],
)
def test_custom_bad_paths_are_config_errors(custom_module: Path, path: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        methods.custom_method(methods.MethodContext(custom(path), None, {}, {}, sources.plain_session))


@pytest.mark.parametrize(
    "how_defer", [("import", "true"), ("import", "false"), ("launcher", "true"), ("launcher", "false")]
)
def test_custom_on_an_unmodified_app(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path, custom_module: Path, how_defer: tuple[str, str]
) -> None:
    how, defer = how_defer
    env = {
        **app_env(aws_env, tmp_path, custom_module),
        "BRS_METHOD": "custom",
        "BRS_CUSTOM_METHOD": "brs_test_custom:assume",
        "BRS_DEFER_REFRESH": defer,
    }
    # Before the fix this deadlocked: the callable's boto3.client() signed with the
    # credentials being fetched, under their refresh lock.
    assert arns(run_app(how, env, tmp_path)) == [f"{ACCOUNT}:assumed-role/custom-role/custom"] * 3
    (call,) = sts.calls("sts:AssumeRole")
    assert call["access_key_id"] == FAKE_SOURCE_ACCESS_KEY_ID
    assert {c["access_key_id"] for c in sts.calls("sts:GetCallerIdentity")} != {FAKE_SOURCE_ACCESS_KEY_ID}
    assert len({c["access_key_id"] for c in sts.calls("sts:GetCallerIdentity")}) == 1


def test_default_session_made_by_the_custom_callable_still_gets_the_role(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path, custom_module: Path
) -> None:
    # Eager start from an explicit session: the callable's boto3.client() creates boto3's
    # default session while the role credentials are being built, and it signs with the
    # source. The application must still get the role from that default session.
    app = (
        "import json, brs_autopatch, boto3\n"
        "first = boto3.Session().client('sts').get_caller_identity()['Arn']\n"
        "second = boto3.client('sts').get_caller_identity()['Arn']\n"
        "print(json.dumps([first, second]))\n"
    )
    (tmp_path / "explicit.py").write_text(app)
    env = {
        **app_env(aws_env, tmp_path, custom_module),
        "BRS_METHOD": "custom",
        "BRS_CUSTOM_METHOD": "brs_test_custom:assume",
        "BRS_DEFER_REFRESH": "false",
    }
    result = run_command([sys.executable, tmp_path / "explicit.py"], env, tmp_path)
    assert arns(result) == [f"{ACCOUNT}:assumed-role/custom-role/custom"] * 2
    assert sts.count("sts:AssumeRole") == 1


def test_custom_without_source_credentials_fails_clearly_instead_of_hanging(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path, custom_module: Path
) -> None:
    env = {
        **app_env(aws_env, tmp_path, custom_module),
        "BRS_METHOD": "custom",
        "BRS_CUSTOM_METHOD": "brs_test_custom:assume",
    }
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(name)
    result = run_app("import", env, tmp_path)
    assert result.returncode == 1
    assert (
        "CredentialRefreshError: could not refresh credentials for method custom: "
        "no source credentials to call STS with" in result.stderr
    )
    assert sts.count("AssumeRole") == 0


# -- a plugin from a throw-away package ---------------------------------------------------------

PLUGIN_SOURCE = f"""\
'''A throw-away brs_autopatch credential method, built and installed by the tests.'''

from brs_autopatch.methods import from_sts_response


def method(context):
    client = context.sts_client()  # signs with the source credentials

    def fetch():
        response = client.assume_role(RoleArn={PLUGIN_ROLE!r}, RoleSessionName="plugin")
        return from_sts_response(response)

    return fetch
"""
PLUGIN_ENTRY_POINTS = """\
[brs_autopatch.methods]
demo = brs_plugin_demo:method
broken = brs_plugin_demo.missing:method
"""


def build_wheel(directory: Path) -> Path:
    """brs_plugin_demo-0.1-py3-none-any.whl: a minimal, valid wheel (no build backend needed)."""
    dist_info = "brs_plugin_demo-0.1.dist-info"
    files = {
        "brs_plugin_demo/__init__.py": PLUGIN_SOURCE,
        f"{dist_info}/METADATA": "Metadata-Version: 2.1\nName: brs-plugin-demo\nVersion: 0.1\n",
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: brs-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{dist_info}/entry_points.txt": PLUGIN_ENTRY_POINTS,
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{dist_info}/RECORD"] = "\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n"
    wheel = directory / "brs_plugin_demo-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


@pytest.fixture(scope="session")
def plugin_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The python of a temporary venv holding this environment's packages plus the plugin."""
    root = tmp_path_factory.mktemp("plugin")
    wheel = build_wheel(root)
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site_packages = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
    )
    # boto3, botocore and brs_autopatch come from the environment running the tests.
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site_packages / "brs_test_parent_env.pth").write_text(
        "".join(f"import site; site.addsitedir({path!r})\n" for path in sorted(ours))
    )
    pip_env = {**child_base_env(), "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"}
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--target",
            str(site_packages),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        env=pip_env,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return str(python)


def in_plugin_venv(plugin_python: str, code: str, env: Mapping[str, str], cwd: Path) -> Result:
    return run_command([plugin_python, "-c", code], env, cwd)


def test_plugin_is_discovered_in_its_venv_only(
    plugin_python: str, aws_env: dict[str, str], tmp_path: Path
) -> None:
    code = "import json; from brs_autopatch import methods; print(json.dumps(methods.available()))"
    result = in_plugin_venv(plugin_python, code, app_env(aws_env, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["demo"] == "brs_plugin_demo:method"
    assert {"sts", "web-identity", "custom"} <= set(found)
    assert "demo" not in methods.available()  # not installed where the tests run


@pytest.mark.parametrize("how", ["import", "launcher"])
def test_plugin_is_used_for_an_unmodified_app(
    plugin_python: str, sts: StsServer, aws_env: dict[str, str], tmp_path: Path, how: str
) -> None:
    env = {**app_env(aws_env, tmp_path), "BRS_METHOD": "demo"}
    result = run_app(how, env, tmp_path, python=plugin_python)
    assert arns(result) == [f"{ACCOUNT}:assumed-role/plugin-role/plugin"] * 3
    (call,) = sts.calls("sts:AssumeRole")
    assert (call["params"]["RoleArn"], call["access_key_id"]) == (PLUGIN_ROLE, FAKE_SOURCE_ACCESS_KEY_ID)


def test_plugin_with_a_role_on_top(
    plugin_python: str, sts: StsServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **app_env(aws_env, tmp_path),
        "BRS_METHOD": "demo",
        "BRS_ROLE_ARN": ROLE,
        "BRS_ROLE_SESSION_NAME": "top",
    }
    assert (
        arns(run_app("import", env, tmp_path, python=plugin_python))
        == [f"{ACCOUNT}:assumed-role/on-top/top"] * 3
    )
    plugin_call, top_call = sts.calls("sts:AssumeRole")
    assert plugin_call["params"]["RoleArn"] == PLUGIN_ROLE
    assert top_call["params"]["RoleArn"] == ROLE and top_call["access_key_id"] != FAKE_SOURCE_ACCESS_KEY_ID


PLUGIN_ERRORS = {
    "broken": "BRS_METHOD='broken' is not valid: its entry point brs_plugin_demo.missing:method "
    "cannot be loaded (ModuleNotFoundError",
    "nope": "BRS_METHOD='nope' is not valid: expected one of broken, custom, demo, served, sts, web-identity",
}


@pytest.mark.parametrize("method", sorted(PLUGIN_ERRORS))
def test_plugin_errors_name_the_method(
    plugin_python: str, sts: StsServer, aws_env: dict[str, str], tmp_path: Path, method: str
) -> None:
    env = {**app_env(aws_env, tmp_path), "BRS_METHOD": method}
    result = run_app("import", env, tmp_path, python=plugin_python)
    assert result.returncode == 1 and PLUGIN_ERRORS[method] in result.stderr
    assert sts.count("AssumeRole") == 0
