"""Dask workers sign as the role under the recipes of docs/recipes.md (real scheduler, nanny, workers)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed", reason="Dask engine tests run in scripts/test-engines")
pytest.register_assert_rewrite("engine_fixtures")

from distributed import Client  # noqa: E402
from engine_fixtures import (  # noqa: E402
    APPS_DIR,
    EngineEnv,
    StartEngine,
    assert_signed_as_role,
    run_to_end,
    tool,
)
from stsclient import StsServer  # noqa: E402

pytest_plugins = ("engine_fixtures",)
pytestmark = pytest.mark.engines

if str(APPS_DIR) not in sys.path:
    sys.path.insert(0, str(APPS_DIR))
from brs_probe import whoami  # noqa: E402

WORKERS = 2


def _cluster(
    engines: StartEngine, env: dict[str, str], tmp_path: Path, worker_cmd: list[str]
) -> list[dict[str, Any]]:
    """Start a scheduler and ``worker_cmd`` (2 worker processes); whoami() on every worker."""
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = engines(
        [
            tool("dask"),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        ],
        env,
        name="scheduler",
    )
    scheduler.wait_for(lambda: True if scheduler_file.exists() else None, "scheduler file", 60)
    workers = engines(
        [
            *worker_cmd,
            "--scheduler-file",
            str(scheduler_file),
            "--host",
            "127.0.0.1",
            "--nworkers",
            str(WORKERS),
            "--nthreads",
            "1",
            "--no-dashboard",
        ],
        env,
        name="workers",
    )
    with Client(scheduler_file=str(scheduler_file), timeout=60) as client:
        workers.wait_for(
            lambda: True if len(client.scheduler_info()["workers"]) >= WORKERS else None,
            f"{WORKERS} workers",
            90,
        )
        return list(client.run(whoami).values())


@pytest.mark.parametrize("recipe", ["preload", "brs-run"])
def test_dask_workers_sign_as_role(
    recipe: str, *, engines: StartEngine, engine_env: EngineEnv, sts: StsServer, role_arn: str, tmp_path: Path
) -> None:
    session = f"dask-{recipe}"
    env = engine_env(BRS_ROLE_SESSION_NAME=session)
    if recipe == "preload":  # dask worker --preload brs_autopatch
        cmd = [tool("dask"), "worker", "--preload", "brs_autopatch"]
    else:  # brs-run dask worker
        cmd = [tool("brs-run"), tool("dask"), "worker"]
    answers = _cluster(engines, env, tmp_path, cmd)
    assert_signed_as_role(sts, answers, role_arn, session, min_workers=WORKERS)


def test_dask_worker_without_recipe_signs_as_source(
    engines: StartEngine, engine_env: EngineEnv, sts: StsServer, tmp_path: Path
) -> None:
    """The control: BRS_ROLE_ARN alone does nothing in a plain `dask worker`."""
    answers = _cluster(engines, engine_env(), tmp_path, [tool("dask"), "worker"])
    assert answers and all(":user/" in a["arn"] for a in answers), answers
    assert sts.count("sts:AssumeRole") == 0


def test_dask_local_cluster_under_brs_run(
    engine_env: EngineEnv, sts: StsServer, role_arn: str, tmp_path: Path
) -> None:
    """`brs-run python app.py` where app.py starts a LocalCluster: spawned workers are patched."""
    env = engine_env(BRS_ROLE_SESSION_NAME="dask-local")
    result = run_to_end([tool("brs-run"), sys.executable, str(APPS_DIR / "dask_local.py")], env, tmp_path)
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert_signed_as_role(sts, answers, role_arn, "dask-local", min_workers=WORKERS)
