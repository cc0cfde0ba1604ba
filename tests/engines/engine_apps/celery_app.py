"""A Celery app on kombu's filesystem transport (no broker to install) for the engine tests.

The worker: ``celery -A celery_app worker`` with ENGINE_TEST_CELERY_DIR set; the test
sends tasks with ``make_app(same_dir)``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from brs_probe import whoami
from celery import Celery


def make_app(folder: str) -> Celery:
    base = Path(folder)
    for sub in ("queue", "processed", "results", "control"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    app = Celery("celery_app", broker="filesystem://", backend=f"file://{base / 'results'}")
    app.conf.update(
        broker_transport_options={
            "data_folder_in": str(base / "queue"),
            "data_folder_out": str(base / "queue"),
            "processed_folder": str(base / "processed"),
            "control_folder": str(base / "control"),  # default: ./control in the cwd
        },
        broker_connection_retry_on_startup=True,
        worker_enable_remote_control=False,  # no pidbox fanout over files
        worker_prefetch_multiplier=1,  # one task per child at a time: both children work
        task_acks_late=True,
    )

    app.task(name="brs.whoami")(_whoami_task)
    return app


def _whoami_task(delay: float = 0.0) -> dict[str, Any]:
    time.sleep(delay)  # keeps this child busy so the next task goes to the other one
    return whoami()


# `celery -A celery_app worker` looks for `app`; the test process imports only make_app.
if "ENGINE_TEST_CELERY_DIR" in os.environ:
    app = make_app(os.environ["ENGINE_TEST_CELERY_DIR"])
