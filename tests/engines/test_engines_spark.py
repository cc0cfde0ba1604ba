"""PySpark (local mode, a real JVM and Python workers) signs as the role.

scripts/test-engines installs pyspark (~520 MB) and runs these when ``java`` is on PATH
(BRS_ENGINES_SPARK=0 turns them off, =1 on).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyspark", reason="Spark tests run in scripts/test-engines")
if shutil.which("java") is None:
    pytest.skip("Spark tests need a Java runtime (java on PATH)", allow_module_level=True)
pytest.register_assert_rewrite("engine_fixtures")

from engine_fixtures import APPS_DIR, EngineEnv, assert_signed_as_role, run_to_end, tool  # noqa: E402
from stsclient import StsServer  # noqa: E402

pytest_plugins = ("engine_fixtures",)
pytestmark = pytest.mark.engines

JOB = str(APPS_DIR / "spark_job.py")


def _answers(stdout: str) -> list[dict[str, object]]:
    answers: list[dict[str, object]] = json.loads(stdout.strip().splitlines()[-1])
    return answers


def test_spark_executor_env(engine_env: EngineEnv, sts: StsServer, role_arn: str, tmp_path: Path) -> None:
    """Not under brs-run: spark.executorEnv.BRS_ROLE_ARN + `import brs_autopatch` in the task."""
    env = engine_env(BRS_ROLE_ARN=None, ENGINE_TEST_ROLE_ARN=role_arn)
    result = run_to_end([sys.executable, JOB, "executor-env"], env, tmp_path, timeout=180)
    assert_signed_as_role(sts, _answers(result.stdout), role_arn, "spark-executor-env", min_workers=2)


def test_spark_job_under_brs_run(
    engine_env: EngineEnv, sts: StsServer, role_arn: str, tmp_path: Path
) -> None:
    """`brs-run python job.py` (local mode): the JVM starts Python workers with the bootstrap."""
    env = engine_env(BRS_ROLE_SESSION_NAME="spark-brs-run")
    result = run_to_end([tool("brs-run"), sys.executable, JOB, "plain"], env, tmp_path, timeout=180)
    assert_signed_as_role(sts, _answers(result.stdout), role_arn, "spark-brs-run", min_workers=2)
