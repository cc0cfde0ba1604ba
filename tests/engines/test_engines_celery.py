"""Celery prefork workers sign as the role under `brs-run celery -A proj worker`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("celery", reason="Celery engine tests run in scripts/test-engines")
pytest.register_assert_rewrite("engine_fixtures")

from engine_fixtures import (  # noqa: E402
    APPS_DIR,
    Engine,
    EngineEnv,
    StartEngine,
    assert_signed_as_role,
    tool,
)
from stsclient import StsServer  # noqa: E402

pytest_plugins = ("engine_fixtures",)
pytestmark = pytest.mark.engines

if str(APPS_DIR) not in sys.path:
    sys.path.insert(0, str(APPS_DIR))
import celery_app  # noqa: E402

CHILDREN = 2


def _worker(engines: StartEngine, env: dict[str, str], folder: Path) -> Engine:
    worker = engines(
        [
            tool("brs-run"),
            tool("celery"),
            "-A",
            "celery_app",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            str(CHILDREN),
            "-O",
            "fair",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
        ],
        {**env, "ENGINE_TEST_CELERY_DIR": str(folder)},
        name="celery",
    )
    worker.wait_output("ready.", timeout=60)
    return worker


def _batch(app: Any, worker: Engine, count: int) -> list[dict[str, Any]]:
    results = [app.send_task("brs.whoami", args=(0.5,)) for _ in range(count)]
    answers: list[dict[str, Any]] = []
    for result in results:
        deadline = time.monotonic() + 60
        while not result.ready():
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                worker.fail("task did not finish")
            time.sleep(0.05)
        answers.append(result.get(timeout=5))
    return answers


def test_celery_prefork_children_sign_as_role(
    engines: StartEngine, engine_env: EngineEnv, sts: StsServer, role_arn: str, tmp_path: Path
) -> None:
    folder = tmp_path / "celery"
    app = celery_app.make_app(str(folder))
    worker = _worker(engines, engine_env(BRS_ROLE_SESSION_NAME="celery"), folder)
    answers = _batch(app, worker, 2 * CHILDREN)
    assert_signed_as_role(sts, answers, role_arn, "celery", min_workers=CHILDREN)


def test_celery_children_refresh_12_second_credentials(
    engines: StartEngine, engine_env: EngineEnv, sts: StsServer, role_arn: str, tmp_path: Path
) -> None:
    """Credentials that expire every 12 s: tasks after the expiry sign with new, valid keys."""
    sts.set_duration_override(12)
    folder = tmp_path / "celery"
    app = celery_app.make_app(str(folder))
    worker = _worker(engines, engine_env(BRS_ROLE_SESSION_NAME="celery-refresh"), folder)
    first = _batch(app, worker, 2 * CHILDREN)
    first_keys = {c["access_key_id"] for c in sts.calls("sts:GetCallerIdentity")}
    seen = len(sts.calls("sts:GetCallerIdentity"))
    # Wait (polling the clock, bounded) until every credential of the first batch has expired.
    expired_at = time.time() + max(a["seconds_left"] for a in first) + 0.5
    assert expired_at - time.time() < 13
    while time.time() < expired_at:
        time.sleep(0.2)
    second = _batch(app, worker, 2 * CHILDREN)
    answers = first + second
    assert_signed_as_role(sts, answers, role_arn, "celery-refresh", min_workers=CHILDREN)
    # Every task signed with credentials that had time left, and the second batch with new keys.
    assert all(a["seconds_left"] > 0 for a in answers), answers
    second_keys = {c["access_key_id"] for c in sts.calls("sts:GetCallerIdentity")[seen:]}
    assert second_keys and not second_keys & first_keys, (first_keys, second_keys)
    # Refreshed per credential lifetime, not per call: at most a few AssumeRole per child.
    assume = sts.count("sts:AssumeRole")
    assert CHILDREN <= assume <= 4 * CHILDREN, assume
