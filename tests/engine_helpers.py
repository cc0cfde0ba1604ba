"""A simulated clock for refresh tests that still talk to the real (local) STS.

moto stamps ``Expiration = real now + DurationSeconds``. To simulate hours, the
credentials get a clock ``real time + offset`` and every answer from STS is shifted
by the same offset, as if STS ran on the simulated clock. The AssumeRole calls are
real and counted at the server. ``Timeline`` goes the other way: the server follows
the clock (its duration override), so nothing STS returns is edited.
"""

from __future__ import annotations

import contextlib
import re
import socket
import textwrap
import threading
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from dateutil.parser import isoparse
from stsclient import StsServer

from brs_autopatch import build as factory
from brs_autopatch.config.settings import Settings
from brs_autopatch.credentials.engine import RoleCredentials


class SimClock:
    def __init__(self) -> None:
        self.offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.offset += seconds


# The MFA device of the tests that send one (BRS_MFA_SERIAL, SerialNumber).
SERIAL = "arn:aws:iam::123456789012:mfa/alice"


class Timeline:
    """A clock for RoleCredentials that the local STS follows.

    moto stamps ``Expiration = real now + DurationSeconds``. This clock is real time
    plus an offset that only grows; every jump also sets the server's duration
    override to ``offset + lifetime``, so each credential STS issues lasts ``lifetime``
    seconds *on this clock*. Issue time, expiry and the refresh windows chosen from
    them stay what they would be on a real timeline; nothing returned by STS is edited.
    """

    def __init__(self, sts: StsServer, lifetime: int = 900) -> None:
        self.sts = sts
        self.lifetime = lifetime
        self.offset = 0.0
        sts.set_duration_override(lifetime)

    def __call__(self) -> float:
        return time.time() + self.offset

    def jump_to(self, when: float) -> None:
        offset = when - time.time()
        assert offset >= self.offset, "the timeline only moves forward"
        self.offset = offset
        self.sts.set_duration_override(round(offset) + self.lifetime)

    def jump(self, seconds: float) -> None:
        self.jump_to(self() + seconds)

    def into_advisory_window(self, creds: RoleCredentials) -> None:
        """Jump to the middle of ``creds``' advisory window (past it: no mandatory refresh)."""
        advisory, mandatory = creds.windows
        self.jump_to(creds.expiry_time.timestamp() - (advisory + mandatory) / 2)


def simulated(settings: Settings, clock: SimClock) -> RoleCredentials:
    """factory.build with ``clock``, STS answers shifted onto the simulated clock."""
    creds = factory.build(settings, clock=clock)
    real_factory = creds._factory

    def shifted_factory() -> Any:
        fetch = real_factory()

        def shifted() -> Mapping[str, Any]:
            answer = dict(fetch())
            expiry = isoparse(str(answer["expiry_time"])) + timedelta(seconds=clock.offset)
            answer["expiry_time"] = expiry.isoformat()
            return answer

        return shifted

    creds._factory = shifted_factory
    creds._fetcher = None  # with defer_refresh=False, build() already made an unshifted one
    return creds


def seconds_left(creds: RoleCredentials, clock: SimClock) -> float:
    return creds._expiry_ts - clock()


# -- fault-injection helpers (tests/test_fork_safety.py, test_storms.py, ...) ----------------


def record_answers(creds: RoleCredentials) -> dict[str, float]:
    """Wrap ``creds``' fetcher: access key -> expiry (epoch seconds) of every answer it got.

    Put on top of :func:`simulated`, so the expiry is the one the engine saw.
    """
    seen: dict[str, float] = {}
    inner_factory = creds._factory

    def recording_factory() -> Any:
        fetch = inner_factory()

        def recording() -> Mapping[str, Any]:
            answer = fetch()
            seen[str(answer["access_key"])] = isoparse(str(answer["expiry_time"])).timestamp()
            return answer

        return recording

    creds._factory = recording_factory
    creds._fetcher = None
    return seen


def write_plugin(directory: Path, name: str, source: str) -> Path:
    """A real plugin distribution in ``directory``: ``brs_autopatch.methods`` entry point
    ``name`` -> ``<module>:method`` where the module holds ``source``. Put ``directory``
    on sys.path (or PYTHONPATH) and importlib.metadata finds it, as pip would install it.
    """
    module = "brs_fault_plugin_" + re.sub(r"\W", "_", name)
    dist_info = directory / f"{module}-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[brs_autopatch.methods]\n{name} = {module}:method\n")
    (directory / f"{module}.py").write_text(textwrap.dedent(source))
    return directory


def free_port() -> int:
    """A loopback port nobody listens on (closed: connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PortForwarder:
    """A loopback port that refuses connections until :meth:`open`, then forwards to ``target``.

    Models an STS endpoint that is unreachable (connection refused: the request never left
    the machine) and then comes back, without changing the client's endpoint.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.connections = 0
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.settimeout(0.2)
        self._listener = listener
        self._spawn(self._accept, listener)

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        for thread in self._threads:
            thread.join(2)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except OSError:  # timeout (look at the flag again) or closed
                continue
            self.connections += 1
            upstream = socket.create_connection(self.target, timeout=10)
            self._spawn(_pump, client, upstream)
            self._spawn(_pump, upstream, client)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def figure(test: str, **values: Any) -> None:
    """One line of measured figures (shown with ``pytest -rA``; before/after tables)."""
    print("FIGURE", test, " ".join(f"{name}={value!r}" for name, value in values.items()))
