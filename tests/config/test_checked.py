"""brs-run checks the settings once per launch tree (brs_autopatch.config.fingerprint).

A Python child whose BRS_* variables are the ones the launcher checked makes its plan
with the credentials, at the first session that asks (and, when its program changed no
variable, reads its settings then too: tests/patch/test_deferred.py); a child that changed
a variable, or whose settings run code the launcher does not run, checks everything as
botocore arrives. Either way a bad value is one ConfigError line, and BRS_ON_ERROR
decides what it does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from launching import MODULE, SESSION, Launch
from stsclient import DEFAULT_ACCOUNT_ID

from brs_autopatch.config import fingerprint as checked
from brs_autopatch.config.from_env import from_env
from brs_autopatch.launch.main import bootstrap_value

ROLE_ENV = {"BRS_ROLE_ARN": "arn:aws:iam::123456789012:role/app", "BRS_ROLE_SESSION_NAME": "s1"}
ASSUMED = f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:assumed-role/brs-test-role/{SESSION}"
# What the program reports: brs_autopatch's modules before and after its first session.
PROGRAM = """\
import sys
def ours():
    return sorted(m.split(".", 1)[1] for m in sys.modules if m.startswith("brs_autopatch."))
import boto3
print("imported", *ours())
print("identity", boto3.client("sts").get_caller_identity()["Arn"])
print("session", *ours())
"""
PLANNING = {"plan", "methods", "build"}


def _launched(env: dict[str, str]) -> dict[str, str]:
    return {**env, checked.BOOTSTRAP_ENV: bootstrap_value(env)}


def _report(stdout: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in stdout.splitlines() if line.strip()}


# -- the fingerprint (pure) ----------------------------------------------------------------------


def test_the_fingerprint_follows_every_non_secret_value_and_the_names_of_secrets() -> None:
    base = {**ROLE_ENV, "BRS_EXTERNAL_ID": "ext-secret-1", "HOME": "/h"}
    mark = checked.fingerprint(base)
    assert len(mark) == 8 and int(mark, 16) >= 0
    assert checked.fingerprint(dict(reversed(list(base.items())))) == mark  # order does not matter
    for changed in (
        {**base, "BRS_ROLE_SESSION_NAME": "s2"},
        {**base, "BRS_DURATION_SECONDS": "900"},
        {k: v for k, v in base.items() if k != "BRS_EXTERNAL_ID"},
        {**base, "BRS_STS_CLIENT_KWARGS": "{}"},
    ):
        assert checked.fingerprint(changed) != mark, changed
    # Not in it: secret values, BRS_BOOTSTRAP itself, variables that are not BRS_*.
    for same in (
        {**base, "BRS_EXTERNAL_ID": "another-secret"},
        {**base, "BRS_BOOTSTRAP": "2:3.11:00000000:/x:/y"},
        {**base, "HOME": "/elsewhere", "AWS_REGION": "eu-west-1"},
    ):
        assert checked.fingerprint(same) == mark, same


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, True),
        ({"BRS_DEFER_REFRESH": "false", "BRS_CACHE_DIR": "/tmp/x"}, True),
        ({"BRS_METHOD": "custom", "BRS_CUSTOM_METHOD": "mod:get"}, False),  # the launcher ran no user code
        ({"BRS_METHOD": "some-plugin"}, False),
        ({"BRS_PROFILE": "dev"}, False),  # resolved from the AWS config files
        ({"BRS_ASSUME_ROLE_KWARGS": '{"Policy": "{}"}'}, False),  # secret: not in the fingerprint
        ({"BRS_STS_CLIENT_KWARGS": '{"region_name": "us-east-1"}'}, False),
    ],
    ids=["plain", "options", "custom", "plugin", "profile", "assume-role-kwargs", "client-kwargs"],
)
def test_what_the_launcher_checked_for_a_child(extra: dict[str, str], expected: bool) -> None:
    env = {**ROLE_ENV, **extra}
    assert checked.by_launcher(from_env(env), _launched(env)) is expected


def test_a_changed_missing_or_foreign_mark_means_check_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checked, "_received", None)
    settings = from_env(ROLE_ENV)
    assert not checked.by_launcher(settings, ROLE_ENV)  # not started by brs-run
    launched = _launched(ROLE_ENV)
    assert not checked.by_launcher(settings, {**launched, "BRS_ROLE_SESSION_NAME": "s2"})
    assert not checked.by_launcher(settings, {**ROLE_ENV, checked.BOOTSTRAP_ENV: bootstrap_value()})
    _, version, mark, rest = launched[checked.BOOTSTRAP_ENV].split(":", 3)
    older = f"1:{version}:{mark}:{rest}"
    assert not checked.by_launcher(settings, {**ROLE_ENV, checked.BOOTSTRAP_ENV: older})
    # BRS_PROPAGATE=0 takes BRS_BOOTSTRAP off os.environ: the bootstrap hands it over.
    checked.receive(launched[checked.BOOTSTRAP_ENV])
    assert checked.by_launcher(settings, ROLE_ENV)


# -- children under brs-run ----------------------------------------------------------------------


@pytest.mark.parametrize("propagate", ["1", "0"], ids=["propagate", "no-propagate"])
def test_a_child_the_launcher_checked_plans_at_its_first_session(launch: Launch, propagate: str) -> None:
    result = launch([*MODULE, "python", "-c", PROGRAM], env={"BRS_PROPAGATE": propagate})
    assert result.returncode == 0, result.stderr
    report = _report(result.stdout)
    assert "patch" in report["imported"] and not PLANNING & set(report["imported"])
    assert report["identity"] == [ASSUMED]
    assert set(report["session"]) >= PLANNING
    assert result.stderr == ""


def test_a_child_that_changed_a_variable_checks_it_as_botocore_arrives(
    launch: Launch, tmp_path: Path
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    code = f"import os; os.environ['BRS_CACHE_DIR'] = {str(not_a_dir)!r}\n{PROGRAM}"
    result = launch([*MODULE, "python", "-c", code])
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("brs_autopatch.errors.ConfigError: BRS_CACHE_DIR=") and "not a directory" in last
    assert "imported" not in result.stdout  # raised by `import boto3`, before any session


@pytest.mark.parametrize("on_error", ["raise", "warn"])
def test_settings_that_went_bad_after_the_launch_follow_on_error_at_the_first_session(
    launch: Launch, tmp_path: Path, on_error: str
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    # The launcher checks the directory; the program replaces it with a file, then
    # makes its first session: the plan, made then, refuses it.
    code = f"import os; os.rmdir({str(cache)!r}); open({str(cache)!r}, 'w').close()\n{PROGRAM}"
    env = {"BRS_CACHE_DIR": str(cache), "BRS_ON_ERROR": on_error}
    result = launch([*MODULE, "python", "-c", code], env=env)
    report = _report(result.stdout)
    assert not PLANNING & set(report["imported"])
    if on_error == "raise":
        assert result.returncode == 1 and "identity" not in report
        last = result.stderr.strip().splitlines()[-1]
        assert "ConfigError: BRS_CACHE_DIR=" in last, result.stderr
    else:
        assert result.returncode == 0, result.stderr
        # botocore's own chain decides: the source user, not the role.
        assert report["identity"] != [ASSUMED] and ":user/" in report["identity"][0]
        warnings = [line for line in result.stderr.splitlines() if "BRS_ON_ERROR=warn" in line]
        assert len(warnings) == 1 and "BRS_CACHE_DIR=" in warnings[0], result.stderr
