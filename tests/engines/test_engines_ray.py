"""Ray workers sign as the role: worker_process_setup_hook + env_vars, or brs-run on the driver."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray engine tests run in scripts/test-engines")
pytest.register_assert_rewrite("engine_fixtures")

from engine_fixtures import APPS_DIR, EngineEnv, assert_signed_as_role, run_to_end, tool  # noqa: E402
from stsclient import StsServer  # noqa: E402

pytest_plugins = ("engine_fixtures",)
pytestmark = pytest.mark.engines

DRIVER = str(APPS_DIR / "ray_driver.py")


@pytest.fixture
def ray_tmp() -> Iterator[str]:
    # Ray puts unix sockets under its temp dir: keep the path short (108-byte limit).
    path = tempfile.mkdtemp(prefix="brs-ray-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _ray_env(engine_env: EngineEnv, ray_tmp: str, **overrides: str | None) -> dict[str, str]:
    return engine_env(
        ENGINE_TEST_RAY_TMP=ray_tmp,
        RAY_USAGE_STATS_ENABLED="0",  # no usage report to the internet
        RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
        # Single-node mode: Ray then uses the loopback address for every component
        # (otherwise it resolves 127.0.0.1 to the machine's own address).
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        **overrides,
    )


@pytest.mark.parametrize("hook", ["hook", "hook-callable"])
def test_ray_worker_process_setup_hook(
    hook: str, *, engine_env: EngineEnv, ray_tmp: str, sts: StsServer, role_arn: str, tmp_path: Path
) -> None:
    """A driver not under brs-run, and without BRS_* itself: the runtime_env carries them.
    Ray takes the hook as "brs_autopatch.install" or as the function."""
    env_vars = {"BRS_ROLE_ARN": role_arn, "BRS_ROLE_SESSION_NAME": "ray-hook"}
    env = _ray_env(engine_env, ray_tmp, BRS_ROLE_ARN=None, ENGINE_TEST_RAY_ENV_VARS=json.dumps(env_vars))
    result = run_to_end([sys.executable, DRIVER, hook], env, tmp_path, timeout=180)
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert_signed_as_role(sts, answers, role_arn, "ray-hook", min_workers=2)


def test_ray_driver_under_brs_run(
    engine_env: EngineEnv, ray_tmp: str, sts: StsServer, role_arn: str, tmp_path: Path
) -> None:
    """`brs-run python driver.py`: the local cluster ray.init() starts inherits the bootstrap."""
    env = _ray_env(engine_env, ray_tmp, BRS_ROLE_SESSION_NAME="ray-brs-run")
    result = run_to_end([tool("brs-run"), sys.executable, DRIVER, "plain"], env, tmp_path, timeout=180)
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert_signed_as_role(sts, answers, role_arn, "ray-brs-run", min_workers=2)
