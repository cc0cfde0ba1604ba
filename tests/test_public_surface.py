"""The public surface, pinned: what users and plugins rely on, written out literally.

A refactoring (moving modules into subpackages, renaming internals) must leave every
assertion here unchanged. A change to this file is a change to the public API: it
belongs in the CHANGELOG. The values are literals on purpose; deriving them from the
code under test would make the test unable to fail.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import brs_autopatch

PUBLIC_NAMES = [
    "ConfigError",
    "CredentialRefreshError",
    "RefreshableSession",
    "RoleCredentials",
    "Settings",
    "__version__",
    "from_env",
    "install",
    "patched",
    "unpatch",
]

# Every BRS_* setting, in the order of the table (docs/configuration.md, --help).
VARIABLES = [
    "BRS_ROLE_ARN",
    "BRS_ROLE_SESSION_NAME",
    "BRS_DURATION_SECONDS",
    "BRS_DEFER_REFRESH",
    "BRS_EXTERNAL_ID",
    "BRS_ASSUME_ROLE_KWARGS",
    "BRS_STS_REGION",
    "BRS_STS_ENDPOINT_URL",
    "BRS_STS_CLIENT_KWARGS",
    "BRS_ENABLED",
    "BRS_LOG_LEVEL",
    "BRS_ON_ERROR",
    "BRS_PROPAGATE",
    "BRS_ADVISORY_REFRESH_SECONDS",
    "BRS_MANDATORY_REFRESH_SECONDS",
    "BRS_CACHE_DIR",
    "BRS_MFA_SERIAL",
    "BRS_MFA_TOKEN_COMMAND",
    "BRS_MFA_TIMEOUT_SECONDS",
    "BRS_METHOD",
    "BRS_WEB_IDENTITY_TOKEN_FILE",
    "BRS_CUSTOM_METHOD",
    "BRS_PROFILE",
    "BRS_ADOPT_OWN_KEYS",
    "BRS_SERVE",
]
BOOLEAN_VARIABLES = {"BRS_ADOPT_OWN_KEYS", "BRS_DEFER_REFRESH", "BRS_ENABLED", "BRS_PROPAGATE", "BRS_SERVE"}
SECRET_VARIABLES = {
    "BRS_ASSUME_ROLE_KWARGS",
    "BRS_EXTERNAL_ID",
    "BRS_MFA_TOKEN_COMMAND",
    "BRS_STS_CLIENT_KWARGS",
}

# Settings fields and their defaults (an empty environment).
DEFAULTS: dict[str, object] = {
    "role_arns": (),
    "role_session_name": None,
    "duration_seconds": None,
    "defer_refresh": True,
    "external_id": None,
    "assume_role_kwargs": {},
    "sts_region": None,
    "sts_endpoint_url": None,
    "sts_client_kwargs": {},
    "enabled": True,
    "log_level": None,
    "on_error": "raise",
    "propagate": True,
    "advisory_refresh_seconds": None,
    "mandatory_refresh_seconds": None,
    "cache_dir": None,
    "mfa_serial": None,
    "mfa_token_command": (),
    "mfa_timeout_seconds": 30,
    "method": "sts",
    "web_identity_token_file": None,
    "custom_method": None,
    "profile": None,
    "source_profile": None,
    "adopt_own_keys": True,
    "serve": False,
    # brs-run --serve tells its tree the served role (BRS_SERVED_ROLE_ARN, internal).
    "served_role_arns": (),
    "origin": {},
}

# brs-run's own options and one per setting (booleans as --[no-]x).
LAUNCHER_OPTIONS = {
    "--help",
    "--version",
    "--check",
    "--credential-process",
    "--serve",
    "--debug",
    "--session-name",
}
SETTING_OPTIONS = {
    "BRS_ROLE_ARN": "--role-arn",
    "BRS_ROLE_SESSION_NAME": "--role-session-name",
    "BRS_DURATION_SECONDS": "--duration-seconds",
    "BRS_DEFER_REFRESH": "--[no-]defer-refresh",
    "BRS_EXTERNAL_ID": "--external-id",
    "BRS_ASSUME_ROLE_KWARGS": "--assume-role-kwargs",
    "BRS_STS_REGION": "--sts-region",
    "BRS_STS_ENDPOINT_URL": "--sts-endpoint-url",
    "BRS_STS_CLIENT_KWARGS": "--sts-client-kwargs",
    "BRS_ENABLED": "--[no-]enabled",
    "BRS_LOG_LEVEL": "--log-level",
    "BRS_ON_ERROR": "--on-error",
    "BRS_PROPAGATE": "--[no-]propagate",
    "BRS_ADVISORY_REFRESH_SECONDS": "--advisory-refresh-seconds",
    "BRS_MANDATORY_REFRESH_SECONDS": "--mandatory-refresh-seconds",
    "BRS_CACHE_DIR": "--cache-dir",
    "BRS_MFA_SERIAL": "--mfa-serial",
    "BRS_MFA_TOKEN_COMMAND": "--mfa-token-command",
    "BRS_MFA_TIMEOUT_SECONDS": "--mfa-timeout-seconds",
    "BRS_METHOD": "--method",
    "BRS_WEB_IDENTITY_TOKEN_FILE": "--web-identity-token-file",
    "BRS_CUSTOM_METHOD": "--custom-method",
    "BRS_PROFILE": "--profile",
    "BRS_ADOPT_OWN_KEYS": "--[no-]adopt-own-keys",
    "BRS_SERVE": "--[no-]serve",
}

# The plugin API (docs/configuration.md "MFA, role chains, other credential methods").
METHODS_MODULE = "brs_autopatch.methods"
METHODS_API = {
    "ENTRY_POINT_GROUP",
    "Fetch",
    "MethodContext",
    "MethodError",
    "WebIdentityTokenError",
    "assume_role_method",
    "available",
    "custom_method",
    "from_sts_response",
    "load",
    "make_fetcher",
    "served_method",
    "utc_iso",
    "web_identity_method",
}
METHOD_CONTEXT_FIELDS = [
    "settings",
    "role_arn",
    "params",
    "sts_client_kwargs",
    "source",
    "mfa_token_provider",
]
METHOD_CONTEXT_METHODS = {"sts_client"}
ENTRY_POINTS = {"custom", "served", "sts", "web-identity"}


def test_the_package_exports_exactly_the_public_names() -> None:
    assert sorted(brs_autopatch.__all__) == PUBLIC_NAMES
    for name in PUBLIC_NAMES:
        assert getattr(brs_autopatch, name) is not None, name


def test_the_errors_are_exceptions_users_can_catch() -> None:
    assert issubclass(brs_autopatch.ConfigError, ValueError)
    assert issubclass(brs_autopatch.CredentialRefreshError, RuntimeError)


def _brs_run_help() -> str:
    # The console script of the interpreter running the tests.
    return _help(str(Path(sys.executable).with_name("brs-run")))


def test_every_setting_variable_is_pinned_with_its_kind() -> None:
    # Read from what users read (brs-run --help is generated from the code's table), so
    # that moving the table between modules cannot change this test.
    lines = re.findall(r"^  (BRS_[A-Z_]+) +(--\S+)[^\n]*\n +([^\n]*)$", _brs_run_help(), re.M)
    assert [variable for variable, _, _ in lines] == VARIABLES
    assert {variable for variable, option, _ in lines if option.startswith("--[no-]")} == BOOLEAN_VARIABLES
    assert {variable for variable, _, text in lines if "(secret: never echoed)" in text} == SECRET_VARIABLES


def test_every_setting_has_its_pinned_default() -> None:
    settings = brs_autopatch.from_env({})
    assert {name: getattr(settings, name) for name in DEFAULTS} == DEFAULTS
    assert list(brs_autopatch.Settings.FIELDS) == list(DEFAULTS)


def _help(*command: str) -> str:
    done = subprocess.run(
        [*command, "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


@pytest.mark.parametrize(
    "command",
    [
        pytest.param((sys.executable, "-m", "brs_autopatch"), id="python -m brs_autopatch"),
        pytest.param(("brs-run",), id="brs-run"),
    ],
)
def test_every_launcher_option_is_pinned(command: tuple[str, ...]) -> None:
    text = _brs_run_help() if command == ("brs-run",) else _help(*command)
    for option in LAUNCHER_OPTIONS:
        assert re.search(rf"(^|\s){re.escape(option)}(\s|,|$)", text, re.M), option
    for variable, option in SETTING_OPTIONS.items():
        assert re.search(rf"^\s+{variable}\s+{re.escape(option)}(\s|$)", text, re.M), (variable, option)


def test_python_dash_m_and_brs_run_print_the_same_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "brs_autopatch", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert brs_autopatch.__version__ in done.stdout


def test_the_plugin_api_is_pinned() -> None:
    methods = importlib.import_module(METHODS_MODULE)
    missing = {name for name in METHODS_API if not hasattr(methods, name)}
    assert not missing
    assert methods.ENTRY_POINT_GROUP == "brs_autopatch.methods"
    assert [field.name for field in dataclasses.fields(methods.MethodContext)] == METHOD_CONTEXT_FIELDS
    for name in METHOD_CONTEXT_METHODS:
        assert callable(getattr(methods.MethodContext, name))
    assert set(methods.available()) >= ENTRY_POINTS


def test_the_entry_points_are_registered_and_load() -> None:
    found = {ep.name: ep for ep in importlib.metadata.entry_points(group="brs_autopatch.methods")}
    assert set(found) >= ENTRY_POINTS
    for name in ENTRY_POINTS:
        assert callable(found[name].load()), name
