"""A PySpark job (local mode, 2 Python worker processes) printing each partition's whoami().

``python spark_job.py executor-env``: not under brs-run; the role reaches the executors
as ``spark.executorEnv.BRS_ROLE_ARN`` and the task imports brs_autopatch itself.
``brs-run python spark_job.py plain``: the Python workers inherit brs-run's environment.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from pyspark.sql import SparkSession


def probe(_rows: Iterable[int]) -> Iterator[dict[str, Any]]:
    if os.environ.get("ENGINE_TEST_SPARK_MODE") == "executor-env":
        import brs_autopatch  # noqa: F401  (installs the patch from the executor's BRS_*)
    from brs_probe import whoami

    yield whoami()


def main(mode: str) -> None:
    builder = (
        SparkSession.builder.master("local[2]")
        .appName("brs-engine-test")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.python.worker.reuse", "false")
        .config("spark.executorEnv.ENGINE_TEST_SPARK_MODE", mode)
    )
    if mode == "executor-env":
        builder = builder.config("spark.executorEnv.BRS_ROLE_ARN", os.environ["ENGINE_TEST_ROLE_ARN"])
        builder = builder.config("spark.executorEnv.BRS_ROLE_SESSION_NAME", "spark-executor-env")
    spark = builder.getOrCreate()
    try:
        answers = spark.sparkContext.parallelize(range(2), 2).mapPartitions(probe).collect()
        print(json.dumps(answers))
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
