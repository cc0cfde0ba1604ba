"""The bench's isolated AWS environment and its two local STS servers.

* the **process** server: ``tests/sts_server.py`` started by ``stsclient.start_server``
  (moto in its own process, as the test suite uses it) — for wall-time scenarios;
* the **in-process** server: the same ``HarnessServer`` serving from a thread of the
  bench process, so that its moto reads the injected clock (``bench.clock``) — for
  the simulated timelines. Its counters are read through the same HTTP control API.

Only 127.0.0.1 is ever contacted. Every ``AWS_*``/``BRS_*`` variable of the caller is
removed; config and credential files live in a temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from stsclient import (  # noqa: E402
    FAKE_SOURCE_ACCESS_KEY_ID,
    FAKE_SOURCE_SECRET_ACCESS_KEY,
    StsServer,
    isolated_aws_env,
    make_role_arn,
    start_server,
)

__all__ = [
    "DURATIONS",
    "ROLE_ARN",
    "SOURCE_KEY",
    "BenchEnv",
    "StsServer",
    "bench_env",
    "inprocess_server",
    "process_server",
    "profile_name",
]

ROLE_ARN = make_role_arn("brs-bench-role")
SOURCE_KEY = FAKE_SOURCE_ACCESS_KEY_ID
SOURCE_PROFILE = "bench-source"
DURATIONS = (900, 1800, 3600, 43200)


def profile_name(duration: int) -> str:
    return f"bench-role-{duration}"


def _write_files(directory: Path) -> tuple[Path, Path]:
    config = directory / "config"
    credentials = directory / "credentials"
    lines = [f"[profile {SOURCE_PROFILE}]", "region = us-east-1", ""]
    for duration in DURATIONS:
        lines += [
            f"[profile {profile_name(duration)}]",
            f"role_arn = {ROLE_ARN}",
            f"source_profile = {SOURCE_PROFILE}",
            f"duration_seconds = {duration}",
            "role_session_name = bench-botocore",
            "region = us-east-1",
            "",
        ]
    config.write_text("\n".join(lines), encoding="utf-8")
    credentials.write_text(
        f"[{SOURCE_PROFILE}]\naws_access_key_id = {FAKE_SOURCE_ACCESS_KEY_ID}\n"
        f"aws_secret_access_key = {FAKE_SOURCE_SECRET_ACCESS_KEY}\n",
        encoding="utf-8",
    )
    return config, credentials


class BenchEnv:
    """os.environ pointing the SDK at one of the local servers."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.config_file, self.credentials_file = _write_files(directory)

    def use(self, url: str) -> None:
        """Send every AWS call (``AWS_ENDPOINT_URL``) to ``url``."""
        for name in list(os.environ):
            if name.startswith(("AWS_", "BRS_")):
                del os.environ[name]
        os.environ.update(isolated_aws_env(url, self.directory))
        os.environ["AWS_CONFIG_FILE"] = str(self.config_file)
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(self.credentials_file)


@contextlib.contextmanager
def bench_env() -> Iterator[BenchEnv]:
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="brs-bench-") as tmp:
        try:
            yield BenchEnv(Path(tmp))
        finally:
            os.environ.clear()
            os.environ.update(saved)


@contextlib.contextmanager
def process_server() -> Iterator[StsServer]:
    """moto in its own process (tests/sts_server.py)."""
    with start_server(timeout=60) as server:
        yield server


@contextlib.contextmanager
def inprocess_server() -> Iterator[StsServer]:
    """moto serving from a thread of this process; reads bench.clock when installed."""
    from sts_server import HarnessServer

    harness = HarnessServer("127.0.0.1", 0)
    harness.start_background()
    try:
        yield StsServer(harness.url)
    finally:
        harness.shutdown()
