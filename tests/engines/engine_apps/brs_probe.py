"""Imported by engine workers (Dask, Ray, Celery, gunicorn, uWSGI): who signs here?

``whoami()`` signs one GetCallerIdentity with the process's default boto3 session, as
an unmodified program would, and returns what the test checks besides the server's
own records: the PID (several workers must answer), the ARN (moto derives it from the
signing key: an assumed-role ARN only for keys that an AssumeRole issued) and how long
the credentials in use still had (a worker that failed to refresh has expired ones).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any


def whoami() -> dict[str, Any]:
    import boto3

    session = boto3.Session()
    arn = session.client("sts").get_caller_identity()["Arn"]
    creds: Any = session.get_credentials()
    expiry = getattr(creds, "expiry_time", None)
    return {
        "pid": os.getpid(),
        "arn": arn,
        "credentials": type(creds).__name__,
        "seconds_left": None if expiry is None else expiry.timestamp() - time.time(),
        "refresher": _refresher_running(),
    }


def _refresher_running() -> bool:
    # After a fork that skipped Python's fork handlers, threading.enumerate() still lists
    # the parent's threads: ask the kernel which threads this process really has.
    tasks = {int(tid) for tid in os.listdir("/proc/self/task")}
    return any(t.name.startswith("brs-refresh") and t.native_id in tasks for t in threading.enumerate())
