"""gunicorn and uWSGI workers sign as the role (real masters forking real workers)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("gunicorn", reason="gunicorn/uWSGI engine tests run in scripts/test-engines")
pytest.register_assert_rewrite("engine_fixtures")

from engine_fixtures import (  # noqa: E402
    EngineEnv,
    StartEngine,
    answers_from_workers,
    assert_signed_as_role,
    tool,
)
from stsclient import StsServer  # noqa: E402

pytest_plugins = ("engine_fixtures",)
pytestmark = pytest.mark.engines

WORKERS = 2


@pytest.mark.parametrize(
    ("preload", "cache"),
    [(False, True), (True, True), (True, False)],
    ids=["plain", "preload", "preload-no-cache"],
)
def test_gunicorn_workers_share_one_role_credential(
    preload: bool,
    cache: bool,
    *,
    engines: StartEngine,
    engine_env: EngineEnv,
    sts: StsServer,
    role_arn: str,
    tmp_path: Path,
) -> None:
    """`brs-run gunicorn [--preload] app`: every worker signs as the role and has its own
    background refresher (gunicorn forks with os.fork, so the fork handlers restart it
    under --preload); the workers share one AssumeRole, through BRS_CACHE_DIR or, under
    --preload, inherited from the master that signed a call at import."""
    sock = tmp_path / "gunicorn.sock"
    env = engine_env(
        BRS_ROLE_SESSION_NAME="gunicorn",
        BRS_CACHE_DIR=str(tmp_path / "brs-cache") if cache else None,
        ENGINE_TEST_CALL_AT_IMPORT="1" if preload else "0",
        BRS_DEFER_REFRESH="false",
    )
    cmd = [
        tool("brs-run"),
        tool("gunicorn"),
        "--workers",
        str(WORKERS),
        "--bind",
        f"unix:{sock}",
        *(["--preload"] if preload else []),
        "wsgi_app:application",
    ]
    server = engines(cmd, env, name="gunicorn")
    answers = answers_from_workers(server, sock, WORKERS)
    assert_signed_as_role(sts, answers, role_arn, "gunicorn", min_workers=WORKERS)
    master = server.proc.pid
    assert all((a["loaded_in"] == master) is preload for a in answers), (master, answers)
    assert all(a["refresher"] for a in answers), answers
    assert sts.count("sts:AssumeRole") == 1


@pytest.mark.parametrize("mode", ["lazy-apps", "no-lazy-apps", "py-call-osafterfork"])
def test_uwsgi_workers_sign_as_role(
    mode: str, *, engines: StartEngine, engine_env: EngineEnv, sts: StsServer, role_arn: str, tmp_path: Path
) -> None:
    """`brs-run uwsgi --lazy-apps`: each worker loads the app and has its own refresher.

    Without --lazy-apps the master loads the app (and signs at import) and uWSGI forks
    without Python's fork handlers: the workers still sign as the role with the master's
    credentials (refreshing on the request path), but have no background refresher and
    would keep a lock the master held mid-refresh; brs-run warns. --py-call-osafterfork
    makes uWSGI run the fork handlers.
    """
    sock = tmp_path / "uwsgi.sock"
    env = engine_env(BRS_ROLE_SESSION_NAME="uwsgi", ENGINE_TEST_CALL_AT_IMPORT="1", BRS_DEFER_REFRESH="false")
    flags = {
        "lazy-apps": ["--lazy-apps"],
        "no-lazy-apps": [],
        "py-call-osafterfork": ["--py-call-osafterfork"],
    }
    cmd = [
        tool("brs-run"),
        tool("uwsgi"),
        "--http-socket",
        str(sock),
        "--master",
        "--processes",
        str(WORKERS),
        "--module",
        "wsgi_app:application",
        "--need-app",
        "--die-on-term",
        "--disable-logging",
        *flags[mode],
    ]
    server = engines(cmd, env, name="uwsgi")
    answers = answers_from_workers(server, sock, WORKERS)
    assert_signed_as_role(sts, answers, role_arn, "uwsgi", min_workers=WORKERS)
    lazy = mode == "lazy-apps"
    assert all((a["loaded_in"] == a["pid"]) is lazy for a in answers), answers
    assert all(a["refresher"] is (mode != "no-lazy-apps") for a in answers), answers
    warned = "run it with --lazy-apps" in server.output()
    if mode != "py-call-osafterfork":  # the launcher may or may not know that flag
        assert warned is not lazy
    # One AssumeRole per process that loaded the app.
    assert sts.count("sts:AssumeRole") == (WORKERS if lazy else 1)
