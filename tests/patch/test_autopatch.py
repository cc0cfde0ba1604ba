"""`import brs_autopatch` patches every boto3/botocore session; each case in a fresh interpreter."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, REPO_ROOT, RunPython, StsServer, child_env

ROLE = "arn:aws:iam::123456789012:role/patched"
ROLE_IDENTITY = "arn:aws:sts::123456789012:assumed-role/patched/"
SOURCE_IDENTITY = "arn:aws:sts::123456789012:user/moto"
ENV = {"BRS_ROLE_ARN": ROLE, "BRS_ROLE_SESSION_NAME": "autopatch"}

# Prints one JSON object: name -> caller identity ARN, for every way of making a session.
IDENTITIES = """
import json, boto3, boto3.session
class Sub(boto3.Session):
    pass
who = lambda s: s.client("sts").get_caller_identity()["Arn"]
out = {
    "boto3.client": boto3.client("sts").get_caller_identity()["Arn"],
    "boto3.Session": who(boto3.Session()),
    "boto3.session.Session": who(boto3.session.Session()),
    "early-bound": who(EarlySession()),
    "subclass": who(Sub()),
    "explicit-keys": who(boto3.Session(aws_access_key_id="AKIDEXPLICIT00000000",
                                       aws_secret_access_key="x")),
    "isinstance": isinstance(Sub(), boto3.Session) and isinstance(EarlySession(), boto3.Session),
}
print(json.dumps(out))
"""


def identities(run_python: RunPython, prelude: str, env: dict[str, str] | None = None) -> dict[str, object]:
    result = run_python(textwrap.dedent(prelude) + IDENTITIES, env={**ENV, **(env or {})}, check=True)
    parsed: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def assert_patched(found: dict[str, object]) -> None:
    for name in ("boto3.client", "boto3.Session", "boto3.session.Session", "early-bound", "subclass"):
        assert str(found[name]).startswith(ROLE_IDENTITY), (name, found[name])
    assert found["explicit-keys"] == SOURCE_IDENTITY
    assert found["isinstance"] is True


def test_import_never_imports_boto3(run_python: RunPython) -> None:
    run_python(
        "import brs_autopatch, sys\n"
        "assert not {'boto3', 'botocore', 'urllib3'} & set(sys.modules), sorted(sys.modules)",
        env=ENV,
        check=True,
    )


def test_import_first(sts: StsServer, run_python: RunPython) -> None:
    found = identities(run_python, "from boto3 import Session as EarlySession\nimport brs_autopatch\n")
    assert_patched(found)
    assert sts.count("sts:AssumeRole") == 1
    assert sts.calls("sts:AssumeRole")[0]["access_key_id"] == FAKE_SOURCE_ACCESS_KEY_ID


def test_import_brs_autopatch_before_boto3(sts: StsServer, run_python: RunPython) -> None:
    found = identities(run_python, "import brs_autopatch\nfrom boto3 import Session as EarlySession\n")
    assert_patched(found)
    assert sts.count("sts:AssumeRole") == 1


def test_boto3_imported_first_and_default_session_replaced(sts: StsServer, run_python: RunPython) -> None:
    code = f"""
        import boto3
        before = boto3.client("sts")  # creates DEFAULT_SESSION with the source credentials
        assert before.get_caller_identity()["Arn"] == "{SOURCE_IDENTITY}"
        from boto3 import Session as EarlySession
        import brs_autopatch
        # A client built before install keeps the credentials it was built with.
        assert before.get_caller_identity()["Arn"] == "{SOURCE_IDENTITY}"
    """
    assert_patched(identities(run_python, code))


def test_explicit_default_session_is_kept(run_python: RunPython, tmp_path: Path) -> None:
    result = run_python(
        textwrap.dedent("""
        import boto3
        boto3.setup_default_session(aws_access_key_id="AKIDEXPLICIT00000000", aws_secret_access_key="x")
        boto3.client("sts")
        import brs_autopatch
        print(boto3.client("sts").get_caller_identity()["Arn"])
    """),
        env=ENV,
        check=True,
    )
    assert result.stdout.strip() == SOURCE_IDENTITY


def test_profile_name_is_respected(run_python: RunPython, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text("[other]\naws_access_key_id = AKIDPROFILE000000000\naws_secret_access_key = p\n")
    result = run_python(
        textwrap.dedent("""
        import brs_autopatch, boto3, botocore.session
        print(boto3.Session(profile_name="other").client("sts").get_caller_identity()["Arn"])
        print(botocore.session.Session(profile="other").create_client("sts").get_caller_identity()["Arn"])
        print(boto3.Session().client("sts").get_caller_identity()["Arn"])
    """),
        env={**ENV, "AWS_SHARED_CREDENTIALS_FILE": str(credentials)},
        check=True,
    )
    profile, botocore_profile, default = result.stdout.split()
    assert profile == botocore_profile == SOURCE_IDENTITY
    assert default.startswith(ROLE_IDENTITY)


def test_two_hundred_sessions_one_assume_role(sts: StsServer, run_python: RunPython) -> None:
    run_python(
        textwrap.dedent("""
        import brs_autopatch, boto3
        arns = {boto3.Session().client("sts").get_caller_identity()["Arn"] for _ in range(200)}
        assert len(arns) == 1 and ":assumed-role/" in arns.pop()
    """),
        env=ENV,
        check=True,
        # A hang guard, not a speed claim (200 clients take ~10 s idle): seen at 120 s
        # with load 19 on the 2-core machine.
        timeout=600,
    )
    assert sts.count("sts:AssumeRole") == 1
    assert sts.count("sts:GetCallerIdentity") == 200


def test_install_is_idempotent_and_unpatch_restores(sts: StsServer, run_python: RunPython) -> None:
    result = run_python(
        textwrap.dedent("""
        import botocore, botocore.session
        original_init = botocore.session.Session.__init__
        original_initializers = list(botocore._INITIALIZERS)
        import brs_autopatch, boto3
        brs_autopatch.install(); brs_autopatch.install()
        ours = lambda: [f for f in botocore._INITIALIZERS if f.__module__.startswith("brs_autopatch")]
        assert len(ours()) == 1, botocore._INITIALIZERS
        who = lambda: boto3.Session().client("sts").get_caller_identity()["Arn"]
        print(who())
        assert brs_autopatch.unpatch() is True
        assert botocore.session.Session.__init__ is original_init
        assert botocore._INITIALIZERS == original_initializers
        assert not hasattr(botocore, "__brs_autopatch__")
        print(who())
        print(boto3.client("sts").get_caller_identity()["Arn"])
        brs_autopatch.install()
        assert len(ours()) == 1
        print(who())
    """),
        env=ENV,
        check=True,
    )
    patched, unpatched, default, again = result.stdout.split()
    assert patched.startswith(ROLE_IDENTITY) and again.startswith(ROLE_IDENTITY)
    assert unpatched == default == SOURCE_IDENTITY


def test_two_copies_of_the_package_patch_once(run_python: RunPython, tmp_path: Path) -> None:
    import shutil

    import brs_autopatch

    copy = tmp_path / "copy"
    shutil.copytree(Path(brs_autopatch.__file__).parent, copy / "brs_autopatch")
    result = run_python(
        textwrap.dedent(f"""
        import sys, botocore, boto3
        import brs_autopatch as first
        for name in [m for m in sys.modules if m.startswith("brs_autopatch")]:
            del sys.modules[name]
        sys.path.insert(0, {str(copy)!r})
        import brs_autopatch as second
        assert first.__file__ != second.__file__
        ours = [f for f in botocore._INITIALIZERS if f.__module__.startswith("brs_autopatch")]
        print(len(ours), boto3.Session().client("sts").get_caller_identity()["Arn"])
    """),
        env=ENV,
        check=True,
    )
    count, arn = result.stdout.split()
    assert count == "1" and arn.startswith(ROLE_IDENTITY)


def test_hook_after_unpatch_does_nothing(run_python: RunPython) -> None:
    result = run_python(
        textwrap.dedent("""
        import sys, brs_autopatch
        brs_autopatch.unpatch()
        import boto3, botocore
        assert not hasattr(botocore, "__brs_autopatch__")
        print(boto3.client("sts").get_caller_identity()["Arn"])
    """),
        env=ENV,
        check=True,
    )
    assert result.stdout.strip() == SOURCE_IDENTITY


def test_context_manager_for_tests(run_python: RunPython) -> None:
    result = run_python(
        textwrap.dedent(f"""
        import boto3, brs_autopatch
        brs_autopatch.unpatch()
        with brs_autopatch.patched(role_arns=({ROLE!r},)):
            print(boto3.Session().client("sts").get_caller_identity()["Arn"])
        print(boto3.Session().client("sts").get_caller_identity()["Arn"])
    """),
        env={"BRS_ROLE_ARN": ""},
        check=True,
    )
    inside, after = result.stdout.split()
    assert inside.startswith(ROLE_IDENTITY) and after == SOURCE_IDENTITY


def test_bad_setting_raises_at_import(run_python: RunPython) -> None:
    result = run_python("import brs_autopatch", env={**ENV, "BRS_DURATION_SECONDS": "soon"})
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "brs_autopatch.errors.ConfigError: BRS_DURATION_SECONDS='soon' is not valid: "
        "expected an integer number of seconds from 900 to 43200"
    )


def test_bad_setting_warns_with_on_error_warn(run_python: RunPython) -> None:
    result = run_python(
        "import brs_autopatch, boto3\nprint(boto3.client('sts').get_caller_identity()['Arn'])",
        env={**ENV, "BRS_DURATION_SECONDS": "soon", "BRS_ON_ERROR": "warn"},
        check=True,
    )
    assert result.stdout.strip() == SOURCE_IDENTITY
    warnings = [line for line in result.stderr.splitlines() if "BRS_DURATION_SECONDS" in line]
    assert len(warnings) == 1 and "BRS_ON_ERROR=warn" in warnings[0]


def test_model_error_surfaces_at_first_session_use(run_python: RunPython) -> None:
    env = {**ENV, "BRS_ASSUME_ROLE_KWARGS": '{"Bogus": 1}'}
    result = run_python("import brs_autopatch, boto3\nboto3.client('sts').get_caller_identity()", env=env)
    assert result.returncode == 1
    assert "ConfigError: BRS_ASSUME_ROLE_KWARGS has unknown key 'Bogus'" in result.stderr
    warned = run_python(
        "import brs_autopatch, boto3\nprint(boto3.client('sts').get_caller_identity()['Arn'])",
        env={**env, "BRS_ON_ERROR": "warn"},
        check=True,
    )
    assert warned.stdout.strip() == SOURCE_IDENTITY and "unknown key 'Bogus'" in warned.stderr


def test_failing_hook_does_not_leave_boto3_silently_unpatched(run_python: RunPython) -> None:
    result = run_python(
        textwrap.dedent("""
        import brs_autopatch
        from brs_autopatch.util import importer
        # Make the registered botocore hook fail once, as an unexpected bug would.
        real, calls = importer._hooks["botocore"][0], []
        def flaky(module):
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("boom")
            real(module)
        importer._hooks["botocore"][0] = flaky
        try:
            import boto3
        except RuntimeError as error:
            print("first import failed:", error)
        import boto3
        print(boto3.client("sts").get_caller_identity()["Arn"])
    """),
        env=ENV,
        check=True,
    )
    first, arn = result.stdout.strip().splitlines()
    assert first == "first import failed: boom" and arn.startswith(ROLE_IDENTITY)


def test_no_role_arn_patches_nothing_and_says_why(run_python: RunPython) -> None:
    result = run_python(
        "import brs_autopatch, boto3\nprint(boto3.client('sts').get_caller_identity()['Arn'])",
        env={"BRS_LOG_LEVEL": "DEBUG"},
        check=True,
    )
    assert result.stdout.strip() == SOURCE_IDENTITY
    assert "nothing patched: BRS_ROLE_ARN is not set" in result.stderr


@pytest.mark.parametrize("broken", [{}, {"BRS_DURATION_SECONDS": "soon", "BRS_PROFILE": "no such"}])
def test_kill_switch(run_python: RunPython, broken: dict[str, str]) -> None:
    # docs/configuration.md: BRS_ENABLED is the kill switch; like brs-run's, it works even when other
    # settings are broken (the program runs with botocore's own credentials, silently).
    result = run_python(
        "import brs_autopatch, boto3\nprint(boto3.client('sts').get_caller_identity()['Arn'])",
        env={**ENV, "BRS_ENABLED": "0", **broken},
        check=True,
    )
    assert result.stdout.strip() == SOURCE_IDENTITY
    assert result.stderr == ""


@pytest.mark.parametrize("defer", ["true", "false"])
def test_fork_while_parent_refreshes(sts: StsServer, run_python: RunPython, defer: str) -> None:
    # The parent's first AssumeRole is held for 3 s at the server; the fork happens while
    # a parent thread holds botocore's refresh lock inside it. Without our fork handler
    # the child would block on that copied lock forever.
    sts.fault("AssumeRole", "delay", delay_seconds=3.0, count=1)
    result = run_python(
        textwrap.dedent("""
        import os, sys, threading, time, brs_autopatch, boto3
        from brs_autopatch.patch import install as patch, providers
        session = boto3.Session()
        creds = None
        if os.environ["BRS_DEFER_REFRESH"] == "true":
            creds = session.get_credentials()  # nothing fetched yet
            worker = threading.Thread(target=creds.get_frozen_credentials)
            worker.start()
            for _ in range(200):
                if creds._refresh_lock.locked():
                    break
                time.sleep(0.01)
            assert creds._refresh_lock.locked(), "parent never started refreshing"
        else:
            creds = session.get_credentials()  # eager: fetched now, refresher thread started
            assert creds.refresher_thread.is_alive()
        pid = os.fork()
        if pid == 0:
            arn = boto3.Session().client("sts").get_caller_identity()["Arn"]
            # defer_refresh=false: the refresher thread did not survive the fork; it must
            # have been restarted in the child.
            thread = creds.refresher_thread
            alive = thread is not None and thread.is_alive()
            os.write(1, f"{arn} {alive}\\n".encode())
            os._exit(0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            sys.exit("child hung")
        sys.exit(os.waitstatus_to_exitcode(status))
    """),
        env={**ENV, "BRS_DEFER_REFRESH": defer},
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    arn, alive = result.stdout.split()
    assert arn.startswith(ROLE_IDENTITY)
    assert alive == ("True" if defer == "false" else "False")


def test_deferred_install_under_the_launcher_marker(sts: StsServer, run_python: RunPython) -> None:
    # brs-run's children defer even settings parsing to the moment botocore is
    # imported, which happens while boto3 itself is only half imported.
    result = run_python(
        "import brs_autopatch, sys\n"
        "assert 'brs_autopatch.config.settings' not in sys.modules and 'logging' not in sys.modules\n"
        "import boto3\n"
        "print(boto3.client('sts').get_caller_identity()['Arn'])",
        env={**ENV, "BRS_BOOTSTRAP": "1"},
        check=True,
    )
    assert result.stdout.strip().startswith(ROLE_IDENTITY)


@pytest.mark.parametrize("configured", [None, "eu-west-1"], ids=["no-region", "configured-region"])
def test_the_tables_defaults_reach_sts(sts: StsServer, run_python: RunPython, configured: str | None) -> None:
    # docs/configuration.md's table, with BRS_ROLE_ARN alone: RoleSessionName brs-autopatch.<host>,
    # no DurationSeconds (STS's default), the STS client in the configured region else the
    # partition's (us-east-1), and AWS_ENDPOINT_URL_STS "works too" for its endpoint.
    result = run_python(
        "import brs_autopatch, boto3\n"
        "print(boto3.client('sts', region_name='ap-south-1').get_caller_identity()['Arn'])",
        env={
            "BRS_ROLE_ARN": ROLE,
            "AWS_DEFAULT_REGION": configured,
            "AWS_ENDPOINT_URL": None,
            "AWS_ENDPOINT_URL_STS": sts.url,
        },
        check=True,
    )
    host = re.sub(r"[^A-Za-z0-9_+=,.@-]", "-", socket.gethostname())
    session_name = f"brs-autopatch.{host}"[:64]
    assert result.stdout.strip() == ROLE_IDENTITY + session_name
    (call,) = sts.calls("sts:AssumeRole")
    assert call["params"]["RoleSessionName"] == session_name
    assert "DurationSeconds" not in call["params"]
    assert call["region"] == (configured or "us-east-1")
    assert call["access_key_id"] == FAKE_SOURCE_ACCESS_KEY_ID


def test_a_default_session_made_with_a_profile_before_install_is_kept(
    run_python: RunPython, tmp_path: Path
) -> None:
    # docs/usage.md "Not covered": a default session made before install is replaced, "unless it
    # was made with explicit keys or a profile" (keys: test_explicit_default_session_is_kept).
    credentials = tmp_path / "credentials"
    credentials.write_text("[other]\naws_access_key_id = AKIDPROFILE000000000\naws_secret_access_key = p\n")
    result = run_python(
        textwrap.dedent("""
        import boto3
        boto3.setup_default_session(profile_name="other")
        import brs_autopatch
        print(boto3.client("sts").get_caller_identity()["Arn"])
        print(boto3.Session().client("sts").get_caller_identity()["Arn"])
    """),
        env={**ENV, "AWS_SHARED_CREDENTIALS_FILE": str(credentials)},
        check=True,
    )
    default, new = result.stdout.split()
    assert default == SOURCE_IDENTITY  # the profile's keys, not the role
    assert new.startswith(ROLE_IDENTITY)


@pytest.mark.parametrize("flag", ["-S", "-I", "-E"])
def test_import_brs_autopatch_works_under_python_flags_that_skip_the_bootstrap(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path, flag: str
) -> None:
    # docs/usage.md "Three ways in": `import brs_autopatch` covers this process also under
    # python -S/-I/-E (which ignore PYTHONPATH or site): put the packages on sys.path by hand.
    # This venv's site-packages, named here: under -S, site.getsitepackages() in the child
    # gives the base interpreter's (Debian: /usr/lib/python3/dist-packages...), where the
    # venv's pyvenv.cfg is not read (before 3.14, site.py sets sys.prefix to the venv).
    code = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(REPO_ROOT)!r}, {sysconfig.get_path("purelib")!r}]
        import brs_autopatch, boto3
        print(boto3.client("sts").get_caller_identity()["Arn"])
    """)
    env = child_env(aws_env, tmp_path, overrides={**ENV})
    result = subprocess.run(
        [sys.executable, flag, "-c", code], env=env, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ROLE_IDENTITY + "autopatch"
    assert sts.count("sts:AssumeRole") == 1
