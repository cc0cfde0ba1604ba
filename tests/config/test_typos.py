"""Mistyped BRS_* variables: one WARNING with a did-you-mean, an error line in --check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from launching import MODULE, ROLE, Launch
from stsclient import REPO_ROOT, RunPython, StsServer

from brs_autopatch.config.variables import INTERNAL_VARIABLES, VARIABLES, unknown_variables
from brs_autopatch.launch.credential_process import GUARD_ENV


@pytest.mark.parametrize(("typo", "meant"), [
    ("BRS_ROLE_AR", "BRS_ROLE_ARN"),
    ("BRS_DURATION_SECOND", "BRS_DURATION_SECONDS"),
    ("BRS_SESSION_NAME", "BRS_ROLE_SESSION_NAME"),
    ("BRS_LOGLEVEL", "BRS_LOG_LEVEL"),
    ("BRS_XYZZY_QUUX", None),
])
def test_unknown_variables_suggest_the_closest_setting(typo: str, meant: str | None) -> None:
    assert unknown_variables({typo: "x", "BRS_ROLE_ARN": ROLE, "HOME": "/"}) == [(typo, meant)]


def test_internal_empty_and_foreign_variables_are_not_typos() -> None:
    env = {name: "1" for name in INTERNAL_VARIABLES}
    env.update({"BRS_ROLE_AR": " ", "AWS_ROLE_ARN": ROLE, "XBRS_ROLE_AR": "1"})
    assert unknown_variables(env) == []


def test_the_projects_own_tool_variables_are_not_typos() -> None:
    # docs/development.md documents BRS_MATRIX=skip, BRS_ENGINES=0, BRS_ENGINES_SKIP=...: exported
    # in a shell, they must not make `import brs_autopatch` warn or `brs-run --check` fail.
    names = {GUARD_ENV}
    for script in (REPO_ROOT / "scripts").iterdir():
        if script.is_file():
            names |= set(re.findall(r"\bBRS_[A-Z0-9_]*[A-Z0-9]\b", script.read_text(errors="replace")))
    assert {"BRS_MATRIX", "BRS_ENGINES", "BRS_ENGINES_SKIP", "BRS_VENV"} <= names  # the scan works
    assert unknown_variables(dict.fromkeys(names, "1")) == []


@given(st.sets(st.sampled_from(sorted(VARIABLES)), max_size=8), st.text(min_size=1, max_size=20))
def test_every_setting_in_the_table_is_known(names: set[str], value: str) -> None:
    # Derived from the table: a variable another module adds is known at once.
    env = dict.fromkeys(names, value if value.strip() else "x")
    assert unknown_variables(env) == []


@given(st.from_regex(r"BRS_[A-Z0-9_]{1,30}", fullmatch=True), st.text(min_size=1, max_size=5))
def test_any_other_brs_name_is_reported_with_a_real_setting_or_none(name: str, value: str) -> None:
    found = unknown_variables({name: value})
    if name in VARIABLES or name in INTERNAL_VARIABLES or not value.strip():
        assert found == []
    else:
        [(reported, close)] = found
        assert reported == name and (close is None or close in VARIABLES)


def test_import_warns_once_and_imports_no_botocore(run_python: RunPython) -> None:
    code = "import sys, brs_autopatch; import brs_autopatch; print('botocore' in sys.modules)"
    result = run_python(code, env={"BRS_ROLE_AR": ROLE, "BRS_DURATION_SECOND": "900"}, check=True)
    assert result.stdout == "False\n"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "BRS_ROLE_AR (did you mean BRS_ROLE_ARN?)" in lines[0]
    assert "BRS_DURATION_SECOND (did you mean BRS_DURATION_SECONDS?)" in lines[0]


def test_import_is_silent_without_typos(run_python: RunPython) -> None:
    result = run_python("import brs_autopatch", env={"BRS_ROLE_ARN": ROLE, "BRS_VENV": "/x"}, check=True)
    assert result.stderr == ""


def test_under_brs_run_the_warning_waits_for_the_first_session(launch: Launch, sts: StsServer) -> None:
    typo = {"BRS_SESSION_NAME": "me"}
    # No botocore, or no session: start-up stays lean, and silent (brs_autopatch.patch.deferred).
    for program in ("import json", "import botocore.session"):
        quiet = launch([*MODULE, "python", "-c", program], env=typo)
        assert (quiet.returncode, quiet.stderr) == (0, ""), program
    loud = launch([*MODULE, "python", "-c", "import botocore.session; botocore.session.Session()"], env=typo)
    assert loud.returncode == 0, loud.stderr
    lines = loud.stderr.splitlines()
    assert len(lines) == 1 and "BRS_SESSION_NAME (did you mean BRS_ROLE_SESSION_NAME?)" in lines[0], lines


def test_brs_run_without_a_role_names_the_typo(launch: Launch) -> None:
    result = launch([*MODULE, "true"], env={"BRS_ROLE_ARN": None, "BRS_ROLE_AR": ROLE})
    assert result.returncode == 2
    assert "BRS_ROLE_ARN is not set" in result.stderr and "did you mean BRS_ROLE_ARN?" in result.stderr


def _report(stdout: str) -> list[tuple[str, str]]:
    return [(line[:23].strip(), line[23:]) for line in stdout.splitlines()]


def test_check_lists_a_typo_as_an_error_and_fails(launch: Launch, sts: StsServer) -> None:
    result = launch([*MODULE, "--check"], env={"BRS_DURATION_SECOND": "900"})
    assert result.returncode == 1
    report = _report(result.stdout)
    assert ("error", "unknown variable BRS_DURATION_SECOND: did you mean BRS_DURATION_SECONDS?") in report
    assert dict(report)["result"].startswith("FAILED: unknown variable BRS_DURATION_SECOND")


def test_check_hints_at_aws_role_arn_only_without_brs_role_arn(launch: Launch, sts: StsServer) -> None:
    hinted = launch([*MODULE, "--check"], env={"BRS_ROLE_ARN": None, "AWS_ROLE_ARN": ROLE})
    assert hinted.returncode == 1
    assert "AWS_ROLE_ARN is set, BRS_ROLE_ARN is not" in dict(_report(hinted.stdout))["hint"]
    both = launch([*MODULE, "--check"], env={"AWS_ROLE_ARN": ROLE})
    assert both.returncode == 0, both.stdout
    assert "hint" not in dict(_report(both.stdout))


def test_check_warns_when_static_keys_hide_aws_profile(
    launch: Launch, sts: StsServer, aws_env: dict[str, str]
) -> None:
    Path(aws_env["AWS_CONFIG_FILE"]).write_text(
        "[profile prod]\naws_access_key_id = AKIAPRODPROFILE00000\naws_secret_access_key = s\n"
    )
    result = launch([*MODULE, "--check"], env={"AWS_PROFILE": "prod"})
    assert result.returncode == 0, result.stdout + result.stderr
    report = dict(_report(result.stdout))
    assert report["source credentials"].startswith("env ")
    assert "AWS_PROFILE=prod is ignored" in report["warning"], result.stdout
    quiet = launch([*MODULE, "--check"], env={"AWS_PROFILE": "prod", "AWS_ACCESS_KEY_ID": None})
    assert "warning" not in dict(_report(quiet.stdout)), quiet.stdout
