"""brs-run's children make the installation with their first session (brs_autopatch.patch.deferred).

Every case runs a program under brs-run in a fresh process tree, against the local STS,
which counts the AssumeRole calls.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from launching import ASSUMED, MODULE, Launch
from stsclient import REPO_ROOT, StsServer

# brs_autopatch's modules a launched child holds after `import boto3` (relative names).
DEFERRED_PATH = ["patch", "patch.deferred", "util", "util.importer"]
OURS = """\
import sys
def ours():
    return sorted(m.split(".", 1)[1] for m in sys.modules if m.startswith("brs_autopatch."))
"""


def _report(launch: Launch, program: str, env: dict[str, str] | None = None) -> Any:
    """Run ``program`` under brs-run; the JSON it printed last (it must succeed, silently)."""
    result = launch([*MODULE, "python", "-c", program], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_boto3_loads_four_small_modules_and_the_first_session_the_rest(
    launch: Launch, sts: StsServer
) -> None:
    program = OURS + (
        "import boto3\nimported = ours()\n"
        "arn = boto3.client('sts').get_caller_identity()['Arn']\n"
        "import json; print(json.dumps([imported, arn, 'patch.install' in ours()]))\n"
    )
    imported, arn, installed = _report(launch, program)
    assert imported == DEFERRED_PATH
    assert (arn, installed) == (ASSUMED, True)
    assert sts.count("sts:AssumeRole") == 1


def test_first_sessions_in_many_threads_make_one_installation(launch: Launch, sts: StsServer) -> None:
    program = (
        "import json, threading, boto3, botocore\n"
        "barrier = threading.Barrier(12)\n"
        "arns, states = [], []\n"
        "def first():\n"
        "    barrier.wait(30)\n"
        "    session = boto3.Session()\n"
        "    states.append(id(getattr(botocore, '__brs_autopatch__', None)))\n"
        "    arns.append(session.client('sts').get_caller_identity()['Arn'])\n"
        "threads = [threading.Thread(target=first) for _ in range(12)]\n"
        "for t in threads: t.start()\n"
        "for t in threads: t.join(60)\n"
        "print(json.dumps([arns, len(set(states))]))\n"
    )
    arns, installations = _report(launch, program)
    assert arns == [ASSUMED] * 12
    assert installations == 1
    assert sts.count("sts:AssumeRole") == 1


def test_unpatch_before_the_first_session_undoes_the_launchers_installation(
    launch: Launch, sts: StsServer
) -> None:
    program = (
        "import json, boto3, brs_autopatch\n"
        "undone = brs_autopatch.unpatch()\n"
        "arn = boto3.client('sts').get_caller_identity()['Arn']\n"
        "print(json.dumps([undone, arn]))\n"
    )
    undone, arn = _report(launch, program)
    assert undone is True and ":user/" in arn  # botocore's own chain: the source user
    assert sts.count("sts:AssumeRole") == 0


def test_an_explicit_installation_before_the_first_session_wins_and_the_launchers_returns(
    launch: Launch, sts: StsServer
) -> None:
    program = (
        "import json, os, boto3, brs_autopatch\n"
        "role = os.environ['BRS_ROLE_ARN']\n"
        "with brs_autopatch.patched(role_arns=(role,), role_session_name='explicit'):\n"
        "    inside = boto3.Session().client('sts').get_caller_identity()['Arn']\n"
        "after = boto3.Session().client('sts').get_caller_identity()['Arn']\n"
        "print(json.dumps([inside, after]))\n"
    )
    inside, after = _report(launch, program)
    assert inside == ASSUMED.rsplit("/", 1)[0] + "/explicit"
    assert after == ASSUMED
    assert sts.count("sts:AssumeRole") == 2


def test_settings_gone_bad_fail_every_session_until_fixed_then_it_patches(
    launch: Launch, sts: StsServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    # Checked by the launcher, replaced by a file before the first session: every session
    # raises the one-line ConfigError (never the source's identity) until it is a directory again.
    program = (
        "import json, os, boto3\n"
        f"cache = {str(cache)!r}\n"
        "os.rmdir(cache); open(cache, 'w').close()\n"
        "errors = []\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        boto3.Session().client('sts').get_caller_identity()\n"
        "    except Exception as error:\n"
        "        errors.append(f'{type(error).__name__}: {error}')\n"
        "os.remove(cache); os.mkdir(cache, 0o700)\n"
        "arn = boto3.Session().client('sts').get_caller_identity()['Arn']\n"
        "print(json.dumps([errors, arn]))\n"
    )
    errors, arn = _report(launch, program, {"BRS_CACHE_DIR": str(cache)})
    assert len(errors) == 2, errors
    assert all(e.startswith("ConfigError: BRS_CACHE_DIR=") and "not a directory" in e for e in errors)
    assert arn == ASSUMED
    assert sts.count("sts:AssumeRole") == 1


@pytest.mark.parametrize(
    ("changed", "value"),
    [
        ("BRS_ROLE_SESSION_NAME", "changed-by-parent"),
        # A secret the launcher never saw: checked with botocore's model, which makes a
        # botocore session of its own while the first session's installation is being made.
        ("BRS_ASSUME_ROLE_KWARGS", '{"Tags": [{"Key": "team", "Value": "data"}]}'),
    ],
)
def test_a_child_whose_parent_changed_a_variable_checks_it_at_its_first_session(
    launch: Launch, sts: StsServer, changed: str, value: str
) -> None:
    child = OURS + (
        "import json, boto3\nimported = ours()\n"
        "arn = boto3.client('sts').get_caller_identity()['Arn']\n"
        "print(json.dumps([imported, arn, 'plan' in ours()]))\n"
    )
    parent = (
        "import os, subprocess, sys\n"
        f"env = dict(os.environ, {changed}={value!r})\n"
        f"sys.exit(subprocess.run([sys.executable, '-c', {child!r}], env=env).returncode)\n"
    )
    imported, arn, planned = _report(launch, parent)
    # Its environment is the one it started with: the first session checks it, since it
    # is not the one the launcher fingerprinted, and makes the plan.
    assert imported == DEFERRED_PATH and planned is True
    if changed == "BRS_ROLE_SESSION_NAME":
        assert arn == ASSUMED.rsplit("/", 1)[0] + "/changed-by-parent"
    else:
        assert arn == ASSUMED
        (call,) = sts.calls("AssumeRole")
        assert call["params"].get("Tags.member.1.Key") == "team", call["params"]
    assert sts.count("sts:AssumeRole") == 1


def test_a_launcher_that_checked_nothing_leaves_the_check_to_botocores_arrival(
    launch: Launch, sts: StsServer, tmp_path: Path
) -> None:
    # BRS_CUSTOM_METHOD runs user code the launcher does not run: BRS_BOOTSTRAP says "-".
    module = tmp_path / "mine.py"
    module.write_text(
        "import botocore.credentials\n"
        "def fetch(**_):\n"
        "    raise RuntimeError('never called: no session is made')\n"
    )
    program = OURS + "import boto3\nprint(ours())\n"
    env = {
        "BRS_METHOD": "custom",
        "BRS_CUSTOM_METHOD": "mine:fetch",
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}",
    }
    result = launch([*MODULE, "python", "-c", program], env=env)
    assert result.returncode == 0, result.stderr
    assert "patch.install" in result.stdout and "config.settings" in result.stdout


def test_a_variable_the_users_sitecustomize_sets_is_checked_as_botocore_arrives(
    launch: Launch, sts: StsServer, tmp_path: Path
) -> None:
    # The user's sitecustomize is part of the program: what it sets is a change since the
    # launch, checked with botocore, as a change by the program itself.
    site = tmp_path / "site"
    site.mkdir()
    # Only in the program: brs-run, a Python process too, runs it as well (and checks what it sets).
    (site / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('BRS_BOOTSTRAP'):\n"
        "    os.environ['BRS_ROLE_SESSION_NAME'] = 'set-by-site'\n"
    )
    program = OURS + (
        "import json, boto3\nimported = ours()\n"
        "arn = boto3.client('sts').get_caller_identity()['Arn']\n"
        "print(json.dumps([imported, arn]))\n"
    )
    imported, arn = _report(launch, program, {"PYTHONPATH": f"{site}{os.pathsep}{REPO_ROOT}"})
    assert "patch.install" in imported and "config.settings" in imported
    assert arn == ASSUMED.rsplit("/", 1)[0] + "/set-by-site"
