"""A Ray driver for the engine tests; prints the whoami() of two actor worker processes.

``python ray_driver.py hook``: docs/recipes.md's recipe for a driver that is not under brs-run
(``worker_process_setup_hook`` plus the BRS_* variables in ``env_vars``); ``hook-callable``
gives the hook as the function instead of its name.
``brs-run python ray_driver.py plain``: the driver starts the local cluster, whose
workers inherit brs-run's environment.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import ray
from brs_probe import whoami


@ray.remote(num_cpus=1)
class Probe:
    def whoami(self) -> dict[str, Any]:
        return whoami()


def main(mode: str) -> None:
    runtime_env: dict[str, Any] = {}
    if mode in ("hook", "hook-callable"):
        hook: Any = "brs_autopatch.install"
        if mode == "hook-callable":  # the function itself: Ray pickles it (by reference)
            import brs_autopatch

            hook = brs_autopatch.install
        runtime_env = {
            "worker_process_setup_hook": hook,
            # e.g. {"BRS_ROLE_ARN": "arn:aws:iam::123456789012:role/app", ...}
            "env_vars": json.loads(os.environ["ENGINE_TEST_RAY_ENV_VARS"]),
        }
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",  # loopback only
        _temp_dir=os.environ["ENGINE_TEST_RAY_TMP"],
        object_store_memory=80 * 1024 * 1024,
        runtime_env=runtime_env or None,
        log_to_driver=False,
    )
    try:
        probes = [Probe.remote() for _ in range(2)]  # type: ignore[attr-defined]
        print(json.dumps(ray.get([p.whoami.remote() for p in probes], timeout=120)))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
