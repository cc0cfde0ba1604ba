"""Issue 10 G: installations own their credentials and threads; refreshers never die silently.

Patching is process-wide, so every install()/unpatch()/patched() scenario runs in a
fresh interpreter (``run_python``) and reports what it saw as JSON. The refresher
itself is tested in-process on a simulated clock.
"""

from __future__ import annotations

import gc
import json
import textwrap
import threading
import time
from typing import Any

import pytest
from engine_helpers import SimClock, figure, seconds_left, simulated
from stsclient import RunPython, StsServer, make_role_arn

from brs_autopatch import RefreshableSession
from brs_autopatch.config.settings import Settings
from brs_autopatch.credentials.lifecycle import Refresher

ROLE_A = make_role_arn("lifecycle-a")
ROLE_B = make_role_arn("lifecycle-b")

# Shared by the child scripts: which identity a NEW session signs as, refresher threads.
PRELUDE = f"""
import gc, json, threading, time
import boto3
import brs_autopatch
from brs_autopatch.credentials import lifecycle
from brs_autopatch.config.settings import Settings
ROLE_A, ROLE_B = {ROLE_A!r}, {ROLE_B!r}

def identity():
    return boto3.Session().client("sts").get_caller_identity()["Arn"]

def refreshers(wait=3.0):
    # Threads still running after at most `wait` s (stopped threads may take a moment).
    deadline = time.monotonic() + wait
    while True:
        gc.collect()
        alive = sorted(t.name for t in threading.enumerate() if t.name.startswith("brs-refresh"))
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)

def eager(role, name):
    return Settings(role_arns=(role,), role_session_name=name, defer_refresh=False)
"""


def run_child(run_python: RunPython, body: str) -> dict[str, Any]:
    result = run_python(PRELUDE + textwrap.dedent(body), env={"BRS_ROLE_ARN": None}, check=True)
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    report["stderr"] = result.stderr
    figure("G", **{key: value for key, value in report.items() if key != "stderr"})
    return report


def assumed(role: str, session: str) -> str:
    return f"arn:aws:sts::123456789012:assumed-role/{role.rsplit('/', 1)[-1]}/{session}"


def test_five_patched_blocks_leave_no_threads_and_no_credentials(
    sts: StsServer, run_python: RunPython
) -> None:
    report = run_child(
        run_python,
        """
        arns = []
        for i in range(5):
            with brs_autopatch.patched(
                role_arns=(ROLE_A,), role_session_name=f"block-{i}", defer_refresh=False
            ):
                arns.append(identity())
        threads = refreshers()
        gc.collect()
        print(json.dumps({"arns": arns, "threads": threads, "live": len(lifecycle._live)}))
        """,
    )
    assert report["arns"] == [assumed(ROLE_A, f"block-{i}") for i in range(5)]
    assert report["threads"] == []
    assert report["live"] == 0
    assert sts.count("sts:AssumeRole") == 5


def test_install_with_other_settings_replaces_the_active_installation(
    sts: StsServer, run_python: RunPython
) -> None:
    report = run_child(
        run_python,
        """
        from brs_autopatch import install
        first = install(eager(ROLE_A, "first"))
        a = identity()
        again = install(eager(ROLE_A, "first"))  # same settings: nothing changes
        same = identity()
        second = install(eager(ROLE_B, "second"))
        b = identity()
        threads = refreshers(wait=0)  # B's refresher runs; A's must already be stopped
        threads_a = [name for name in threads if ROLE_A in name]
        print(json.dumps({"results": [first, again, second], "arns": [a, same, b], "threads": threads,
                          "threads_a": threads_a}))
        """,
    )
    assert report["results"] == [True, True, True]
    assert report["arns"] == [assumed(ROLE_A, "first"), assumed(ROLE_A, "first"), assumed(ROLE_B, "second")]
    assert report["threads_a"] == [] and len(report["threads"]) == 1, report["threads"]
    assert sts.count("sts:AssumeRole") == 2  # one per installation, none for the repeated install


def test_nested_patched_blocks_restore_the_outer_installation(sts: StsServer, run_python: RunPython) -> None:
    report = run_child(
        run_python,
        """
        with brs_autopatch.patched(role_arns=(ROLE_A,), role_session_name="outer"):
            before = identity()
            with brs_autopatch.patched(role_arns=(ROLE_B,), role_session_name="inner"):
                inner = identity()
            after = identity()
        outside = identity()
        print(json.dumps({"arns": [before, inner, after, outside]}))
        """,
    )
    before, inner, after, outside = report["arns"]
    assert (before, inner, after) == (
        assumed(ROLE_A, "outer"),
        assumed(ROLE_B, "inner"),
        assumed(ROLE_A, "outer"),
    )
    assert ":assumed-role/" not in outside  # after the outer block: the source credentials


def test_install_after_reload_of_botocore_patches_again_with_one_warning(
    sts: StsServer, run_python: RunPython
) -> None:
    report = run_child(
        run_python,
        """
        import importlib, logging
        import botocore
        from brs_autopatch import install

        class Keep(logging.Handler):
            def __init__(self):
                super().__init__(logging.WARNING)
                self.messages = []
            def emit(self, record):
                self.messages.append(record.getMessage())

        keep = Keep()
        logging.getLogger("brs_autopatch").addHandler(keep)
        settings = Settings(role_arns=(ROLE_A,), role_session_name="reload")
        install(settings)
        before = identity()
        importlib.reload(botocore)  # re-runs botocore/__init__.py: the initializer list is new
        dropped = identity()
        result = install(settings)
        after = identity()
        install(settings)  # already in place again: no second warning
        print(json.dumps({"arns": [before, dropped, after], "result": result, "warnings": keep.messages}))
        """,
    )
    before, dropped, after = report["arns"]
    assert before == after == assumed(ROLE_A, "reload")
    assert ":assumed-role/" not in dropped  # what the reload did: the premise of the test
    assert report["result"] is True
    assert len(report["warnings"]) == 1 and "reload" in report["warnings"][0], report["warnings"]


# -- the refresher thread, in-process --------------------------------------------------------------


def test_refresher_survives_an_unexpected_exception(
    sts: StsServer, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Refresher, "max_sleep", 0.02)
    monkeypatch.setattr(Refresher, "error_pause", 0.05, raising=False)
    clock = SimClock()
    creds = simulated(
        Settings(
            role_arns=(ROLE_A,), role_session_name="survivor", duration_seconds=900, defer_refresh=False
        ),
        clock,
    )
    try:
        real = creds.refresh_in_background
        raised: list[bool] = []

        def fails_once() -> None:
            if not raised:
                raised.append(True)
                raise RuntimeError(
                    "Credentials were refreshed, but the refreshed credentials are still expired."
                )
            real()

        creds.refresh_in_background = fails_once  # type: ignore[method-assign]
        thread = creds.refresher_thread
        assert thread is not None and thread.is_alive()
        advisory, _ = creds.windows
        clock.advance(seconds_left(creds, clock) - advisory - 5)  # inside the background lead
        deadline = time.monotonic() + 10
        while creds.stats.background_fetches == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        figure("G refresher", alive=thread.is_alive(), background_fetches=creds.stats.background_fetches)
        assert raised == [True]
        assert thread.is_alive()
        assert creds.stats.background_fetches == 1
        assert sts.count("sts:AssumeRole") == 2
    finally:
        creds.stop()


def test_dropped_eager_refreshable_session_stops_its_thread_at_once(
    sts: StsServer, aws_env: dict[str, str]
) -> None:
    session = RefreshableSession({"RoleArn": ROLE_A}, defer_refresh=False)
    thread = session.refreshable_credentials.refresher_thread
    assert thread is not None and thread.is_alive()
    del session
    gc.collect()
    thread.join(2.0)  # the refresher sleeps up to a minute between looks at the clock
    figure("G dropped session", alive_after_2s=thread.is_alive())
    assert not thread.is_alive()
    assert not [t for t in threading.enumerate() if t is thread]
