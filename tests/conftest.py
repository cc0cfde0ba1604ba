"""Shared fixtures: a fake STS server process and an isolated AWS environment.

Fixtures
--------
sts_server   session: the ``StsServer`` (one per pytest session / xdist worker)
sts          function: same server, after clearing counts, calls, faults,
             settings (duration override) and moto state
aws_env      function: isolated AWS env vars (monkeypatched), returns the dict
role_arn     function: ``arn:aws:iam::123456789012:role/brs-test-role``
run_python   function: run code/a script in a fresh interpreter with an
             isolated env; returns ``CompletedProcess[str]``
base_env     function: the environment a user launches with (``launching.make_base_env``:
             ``aws_env``, a role and session set, this venv first on PATH); with the
             ``node`` fixture, also node's (``launching.NODE_ENV``)
launch       function: ``launch(cmd, env=, cwd=, timeout=)`` -> ``launching.Result``, a
             program started from ``base_env`` in its own process group
node         session: the node binary, @aws-sdk/client-sts installed (else skip)

Every fixture that more than one test module uses is defined here, once (the engine
tests' own are in engines/engine_fixtures.py, a plugin those modules load); plain
helpers live in modules beside it (stsclient.py, launching.py, engine_helpers.py,
doc_blocks.py). Test modules import those, never conftest or one another
(tests/test_layout.py checks both; tests/README.md says which folder a test goes in).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

# Make the harness modules importable whatever pytest's import mode/rootdir
# (e.g. --import-mode=importlib does not put this directory on sys.path).
_TESTS_DIR = Path(__file__).resolve().parent
if str(_TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(_TESTS_DIR))

# The helper modules' asserts explain themselves as the tests' own do (registered before
# anything imports them).
pytest.register_assert_rewrite("doc_blocks", "engine_helpers", "launching")

from launching import NODE_ENV, Launch, make_base_env, make_launch  # noqa: E402
from stsclient import (  # noqa: E402
    REPO_ROOT,
    RunPython,
    StsServer,
    child_env,
    isolated_aws_env,
    make_role_arn,
    start_server,
)

# Session-wide safety net, applied at import time (before any test or fixture
# runs): no test may ever read the developer's ~/.aws or reach the instance
# metadata service, even if it forgets to request ``aws_env``.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["AWS_CONFIG_FILE"] = "/nonexistent/brs-autopatch-tests/aws-config"
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/brs-autopatch-tests/aws-credentials"
for _name in ("NO_PROXY", "no_proxy"):
    # Loopback traffic to the fake server must never go through a proxy.
    _current = os.environ.get(_name, "")
    if "127.0.0.1" not in _current.split(","):
        os.environ[_name] = ",".join(filter(None, [_current, "127.0.0.1", "localhost"]))


@pytest.fixture(scope="session")
def sts_server() -> Iterator[StsServer]:
    """One fake STS/moto server process for the whole session (per xdist worker)."""
    with start_server(timeout=30) as server:
        yield server
    # __exit__ terminated and reaped the process.


@pytest.fixture
def sts(sts_server: StsServer) -> StsServer:
    """The session server with counts, calls, faults, settings and moto state cleared."""
    sts_server.reset(moto=True)
    return sts_server


@pytest.fixture
def aws_env(sts: StsServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Point the AWS SDK at the fake server (cleared: no fault or count of an earlier
    test on this worker survives) with fake source credentials.

    Removes every ``AWS_*`` and ``BRS_*`` variable (AWS_PROFILE,
    AWS_SESSION_TOKEN, AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE, ...), then
    sets the values returned (see ``stsclient.isolated_aws_env``).
    """
    for name in list(os.environ):
        if name.startswith(("AWS_", "BRS_")):
            monkeypatch.delenv(name)
    env = isolated_aws_env(sts.url, tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def role_arn() -> str:
    """A role ARN in moto's default account.

    moto 5.2.5's STS does not check that the role exists (``assume_role``
    accepts any ARN, and the credentials belong to the account in the ARN), so
    no IAM CreateRole call is needed. The only visible difference: for a
    non-existent role AssumedRoleId is a fresh random ``AROA...`` id.
    """
    return make_role_arn("brs-test-role")


@pytest.fixture
def run_python(aws_env: dict[str, str], tmp_path: Path) -> RunPython:
    """Run Python code (``code``) or a file (``script``) in a fresh interpreter.

    The child env is built from scratch (not copied from ours): PATH/locale,
    the ``aws_env`` values, ``HOME`` = an empty temp dir, the repo root on
    PYTHONPATH (so ``import brs_autopatch`` works uninstalled), then ``env``
    overrides (a None value removes a variable). Later ``monkeypatch`` changes
    in the test are NOT inherited; pass them via ``env``. On timeout the
    process group is killed and the test fails showing the output so far;
    with ``check=True`` a non-zero exit fails the test the same way.
    """
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)

    def run(
        code: str | None = None,
        *,
        script: str | os.PathLike[str] | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str | None] | None = None,
        timeout: float = 60.0,
        cwd: str | os.PathLike[str] | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        if code is not None and script is None:
            cmd = [sys.executable, "-c", code, *args]
        elif script is not None and code is None:
            cmd = [sys.executable, os.fspath(script), *args]
        else:
            raise TypeError("pass exactly one of code= or script=")
        environment = child_env(aws_env, home, pythonpath=REPO_ROOT, overrides=env)
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
            cwd=os.fspath(cwd) if cwd is not None else str(tmp_path),
            # Own process group, so a timeout kill also gets grandchildren
            # (which would otherwise keep the pipes open and hang us).
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate(timeout=10)
            pytest.fail(
                f"subprocess timed out after {timeout}s: {cmd!r}\n"
                f"--- stdout ---\n{out}\n--- stderr ---\n{err}",
                pytrace=False,
            )
        except BaseException:
            _kill_group(proc)
            proc.communicate(timeout=10)
            raise
        result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
        if check and result.returncode != 0:
            pytest.fail(
                f"subprocess exited with {result.returncode}: {cmd!r}\n"
                f"--- stdout ---\n{out}\n--- stderr ---\n{err}",
                pytrace=False,
            )
        return result

    return run


@pytest.fixture
def base_env(aws_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment a user launches with (see ``launching.make_base_env``).

    A test that asks for ``node`` runs the JavaScript SDK under the launcher, so its
    children also get ``NODE_ENV`` (where scripts/node-deps put the SDK).
    """
    env = make_base_env(aws_env, tmp_path)
    if "node" in request.fixturenames:
        env.update(NODE_ENV)
    return env


@pytest.fixture
def launch(base_env: dict[str, str], tmp_path: Path) -> Launch:
    """Start a program from ``base_env`` (see ``launching.make_launch``)."""
    return make_launch(base_env, tmp_path)


@pytest.fixture(scope="session")
def node() -> str:
    """node with @aws-sdk/client-sts as locks/node/ pins it (scripts/node-deps: npm ci into
    .cache/node, once, under a lock)."""
    binary = shutil.which("node")
    npm = shutil.which("npm")
    if binary is None or npm is None:
        pytest.skip("node/npm is not installed: the AWS SDK for JavaScript v3 test needs it")
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "node-deps")], capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"scripts/node-deps failed:\n{result.stdout}\n{result.stderr}"
    return binary


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
