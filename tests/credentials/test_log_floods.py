"""Issue 10 H: an outage inside the mandatory window logs one line per attempt, not per request.

botocore logs "Refreshing temporary credentials failed during mandatory refresh period"
with a full traceback on every failed request. The child interpreter below captures
every record of every logger (a handler on the root logger) while 100 requests fail.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from engine_helpers import figure
from stsclient import TESTS_DIR, RunPython, StsServer, make_role_arn

ROLE = make_role_arn("floods")

OUTAGE = f"""
import json, logging, sys, time
from stsclient import StsServer

class Keep(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []
    def emit(self, record):
        self.records.append(record)

keep = Keep()
root = logging.getLogger()
root.addHandler(keep)
root.setLevel(sys.argv[1])

import os
from brs_autopatch import CredentialRefreshError, build as factory
from brs_autopatch.credentials import sources
from brs_autopatch.config.settings import Settings

class Clock:
    offset = 0.0
    def __call__(self):
        return time.time() + self.offset

clock = Clock()
creds = factory.build(
    Settings(role_arns=({ROLE!r},), role_session_name="floods", duration_seconds=900), clock=clock
)
client = sources.session_with(creds).create_client("sts")
client.get_caller_identity()
clock.offset = creds.expiry_time.timestamp() - time.time() - 30  # 30 s before expiry: mandatory
StsServer(os.environ["AWS_ENDPOINT_URL"]).fault("AssumeRole", "503")  # until cleared
mark = len(keep.records)
errors = []
for _ in range(100):
    try:
        client.get_caller_identity()
    except Exception as error:
        errors.append(type(error).__name__)
    clock.offset += 0.25  # 25 simulated seconds in all: several spaced attempts
formatter = logging.Formatter()
print(json.dumps({{
    "errors": errors,
    "failures": creds.stats.failures,
    "records": [
        {{"name": r.name, "level": r.levelno, "text": formatter.format(r)}} for r in keep.records[mark:]
    ],
}}))
"""


@pytest.mark.parametrize("level", ["WARNING", "DEBUG"])
def test_outage_in_the_mandatory_window_logs_once_per_attempt(
    sts: StsServer, run_python: RunPython, level: str
) -> None:
    try:
        result = run_python(
            OUTAGE,
            args=[level],
            env={
                "PYTHONPATH": os.pathsep.join([str(TESTS_DIR.parent), str(TESTS_DIR)]),
                "BRS_ROLE_ARN": None,
            },
            check=True,
        )
    finally:
        sts.clear_faults()  # the child's outage lasts until cleared
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["errors"] == ["CredentialRefreshError"] * 100
    # Each attempt is one AssumeRole call that botocore sends twice (a 503 is retried once).
    attempts = (sts.count("sts:AssumeRole") - 1) // 2
    assert 2 <= attempts == report["failures"] <= 8, (attempts, report["failures"])
    records = report["records"]
    loud = [r for r in records if r["level"] >= 30]  # WARNING and above, every logger
    ours = [r for r in records if r["name"] == "brs_autopatch"]
    tracebacks = [r for r in records if "Traceback" in r["text"]]
    figure(
        f"H {level}", attempts=attempts, warning_plus=len(loud), ours=len(ours), tracebacks=len(tracebacks)
    )
    assert len(loud) <= attempts, [(r["name"], r["text"][:80]) for r in loud]
    assert len(ours) <= attempts, [r["text"][:80] for r in ours]
    assert tracebacks == [], tracebacks[0]["text"][:2000]
    assert all("\n" not in r["text"] for r in ours)
