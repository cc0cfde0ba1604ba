"""``brs-run --serve`` scenarios: one launch tree, three ways to give it the role.

``tree``: 8 Python workers and 2 non-Python clients, each making one signed call
every ``CALL_EVERY`` simulated seconds for a simulated hour of 900 s credentials.
The real engine decides (factory.build, RoleCredentials, windows, the file cache,
the server's answer and the ``served`` fetch); only STS (a credential method that
counts and stamps ``Expiration = now + 900``), the clock and the HTTP hop between a
child and the server are simulated. Three trees:

* ``--serve``: the server holds one RoleCredentials; Python children use the
  ``served`` method (what brs-run sets), the non-Python clients botocore's
  container-provider policy (refresh 15 min before expiry: with 900 s credentials
  they ask the endpoint on every call, never STS);
* ``BRS_CACHE_DIR``: every Python worker its own RoleCredentials sharing the file
  cache; the non-Python clients cannot use brs_autopatch at all (source key);
* neither: every Python worker on its own; the non-Python clients as above.

``latency``: one answer of the real endpoint (HTTP on 127.0.0.1, token checked)
next to botocore's own container-provider fetch of the same endpoint.
"""

from __future__ import annotations

import http.client
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from .report import Table

LIFETIME = 900
HOUR = 3600
CALL_EVERY = 10  # simulated seconds between two calls of one client
PYTHON_WORKERS = 8
OTHER_CLIENTS = 2
ROLE = "arn:aws:iam::123456789012:role/bench"


class Clock:
    """The simulated wall clock every party reads."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeSts:
    """A credential method (the plugin interface) standing for AssumeRole: counts calls."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
            serial = self.calls
        expiry = datetime.fromtimestamp(self.clock() + LIFETIME, timezone.utc)
        return {"access_key": f"ASIABENCH{serial:011d}", "secret_key": "bench-secret",
                "token": "bench-token", "expiry_time": expiry.isoformat()}


_current: FakeSts | None = None


def fake_sts() -> dict[str, Any]:
    """``BRS_CUSTOM_METHOD=bench.serve_scenarios:fake_sts``."""
    assert _current is not None
    return _current()


def _settings(cache_dir: str | None = None) -> Any:
    from brs_autopatch.config.from_env import from_env

    env = {"BRS_METHOD": "custom", "BRS_CUSTOM_METHOD": "bench.serve_scenarios:fake_sts"}
    if cache_dir:
        env["BRS_CACHE_DIR"] = cache_dir
    return from_env(env)


def _container_client(clock: Clock, fetch: Callable[[], dict[str, Any]]) -> Any:
    """A client with botocore's container-provider policy (its default 15/10 min windows)."""
    from botocore.credentials import RefreshableCredentials

    def refresh() -> dict[str, Any]:
        answer = fetch()
        return {"access_key": answer["AccessKeyId"], "secret_key": answer["SecretAccessKey"],
                "token": answer["Token"], "expiry_time": answer["Expiration"]}

    metadata = refresh()
    return RefreshableCredentials(
        metadata["access_key"], metadata["secret_key"], metadata["token"],
        datetime.strptime(metadata["expiry_time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc),
        refresh, "container-role", time_fetcher=lambda: datetime.fromtimestamp(clock(), timezone.utc),
    )


def _run_tree(mode: str) -> dict[str, int]:
    global _current
    from brs_autopatch import build as factory
    from brs_autopatch.methods import served
    from brs_autopatch.serve.role import Credentials

    clock = Clock()
    sts = _current = FakeSts(clock)
    workdir = tempfile.mkdtemp(prefix="brs-bench-")
    endpoint = {"answers": 0}
    try:
        python: list[Any] = []
        others: list[Any] = []
        if mode == "serve":
            server = Credentials(_settings(), clock=clock, background=False)

            def answer(newer_than: float | None = None) -> dict[str, Any]:
                endpoint["answers"] += 1
                return server.answer(newer_than)

            from brs_autopatch.credentials.engine import RoleCredentials

            python = [RoleCredentials(lambda: served.fetcher(answer, "bench"), label="served", clock=clock)
                      for _ in range(PYTHON_WORKERS)]
            others = [_container_client(clock, answer) for _ in range(OTHER_CLIENTS)]
        else:
            cache = workdir if mode == "cache" else None
            python = [factory.build(_settings(cache), clock=clock) for _ in range(PYTHON_WORKERS)]
        signed_by_source = 0
        for step in range(0, HOUR, CALL_EVERY):
            clock.now += CALL_EVERY if step else 0
            for credentials in python:
                assert credentials.get_frozen_credentials().access_key.startswith("ASIABENCH")
            if others:
                for client in others:
                    assert client.get_frozen_credentials().access_key.startswith("ASIABENCH")
            else:
                signed_by_source += OTHER_CLIENTS  # no way to the role for them
        return {"assume_role": sts.calls, "endpoint": endpoint["answers"], "source": signed_by_source,
                "calls": (PYTHON_WORKERS + OTHER_CLIENTS) * (HOUR // CALL_EVERY)}
    finally:
        _current = None
        shutil.rmtree(workdir, ignore_errors=True)


def tree() -> Table:
    table = Table(
        "serve_tree",
        f"launch tree of {PYTHON_WORKERS} Python workers + {OTHER_CLIENTS} non-Python clients, "
        f"simulated hour of {LIFETIME} s credentials, one call per client every {CALL_EVERY} s",
        ["setup", "AssumeRole", "endpoint answers", "calls signed with the source key", "calls"],
    )
    for mode, label in (("serve", "brs-run --serve"), ("cache", "BRS_CACHE_DIR"), ("neither", "neither")):
        result = _run_tree(mode)
        table.data[mode] = result
        table.add(label, result["assume_role"], result["endpoint"] if mode == "serve" else "-",
                  result["source"], result["calls"])
    table.notes.append(
        "non-Python clients under --serve follow botocore's container-provider windows (refresh 15 min "
        "before expiry): with 900 s credentials every call asks the endpoint, none asks STS"
    )
    return table


# -- latency of one endpoint answer ----------------------------------------------------------


@contextmanager
def _endpoint() -> Iterator[tuple[str, str]]:
    global _current
    import socket

    from brs_autopatch.serve.role import Credentials
    from brs_autopatch.serve.server import Gate, Server

    clock = Clock()
    clock.now = time.time()
    _current = FakeSts(clock)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    token = os.urandom(32).hex()
    server = Server(listener, Gate(token), Credentials(_settings(), background=False), "/credentials")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/credentials", token
    finally:
        server.shutdown()
        server.server_close()
        _current = None


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def latency(rounds: int = 300) -> Table:
    from botocore.credentials import ContainerProvider

    table = Table("serve_latency", f"one answer of the credential endpoint ({rounds} requests, loopback)",
                  ["client", "p50 ms", "p99 ms"])
    with _endpoint() as (url, token):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        raw: list[float] = []
        for _ in range(rounds):
            started = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/credentials", headers={"Authorization": token})
            response = connection.getresponse()
            response.read()
            connection.close()
            raw.append(time.perf_counter() - started)
            assert response.status == 200
        provider = ContainerProvider(environ={"AWS_CONTAINER_CREDENTIALS_FULL_URI": url,
                                              "AWS_CONTAINER_AUTHORIZATION_TOKEN": token})
        botocore: list[float] = []
        for _ in range(rounds):
            started = time.perf_counter()
            credentials = provider.load()
            assert credentials is not None and credentials.get_frozen_credentials().access_key
            botocore.append(time.perf_counter() - started)
    measured = (("HTTP GET (http.client)", raw), ("botocore ContainerProvider().load()", botocore))
    for label, samples in measured:
        p50, p99 = _percentiles(samples)
        table.add(label, f"{p50:.2f}", f"{p99:.2f}")
        table.data[label] = {"p50_ms": p50, "p99_ms": p99}
    table.notes.append("each request on a new connection, as the SDKs do; token checked in constant time")
    return table


def run() -> list[Table]:
    """Both scenarios: a few seconds in all."""
    return [tree(), latency()]
