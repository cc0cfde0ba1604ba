"""brs-run --serve's server under attack and at the end of its life (issue 17, items 6-8).

Real processes, real signals, a real second local user: the program's user cannot read
the source keys from the server or its supervisor; idle and slow connections from
another user do not delay the tree; a client that leaves early leaves no traceback;
SIGTERM to every process still serves the program's shutdown; a killed server is back
on the same port within a second, and the token directory goes when the program ends.
Tests that need another user switch to ``nobody`` (uid 65534) and need root: they are
skipped otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from launching import MODULE
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, FAKE_SOURCE_SECRET_ACCESS_KEY, StsServer

SERVE = (*MODULE, "--serve")
NOBODY = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to act as a second local user (uid 65534)"
)

# A program that says where its server is, then waits for stdin to close.
WAITING = (
    "import os, sys\n"
    "print(os.getpid(), os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI'],"
    " os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'], flush=True)\n"
    "sys.stdin.read()\n"
)


@contextlib.contextmanager
def _started(
    code: str, env: Mapping[str, str], cwd: Path, *, user: int | None = None
) -> Iterator[subprocess.Popen[str]]:
    """``brs-run --serve python -c code`` with stdin a pipe; killed (the group) at the end."""
    proc = subprocess.Popen(
        [*SERVE, "python", "-c", code], env=dict(env), cwd=cwd, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        user=user, group=user,
    )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.stdin is not None and proc.stdin.closed:
            proc.stdin = None  # closed by the test: communicate() would flush it
        proc.communicate(timeout=10)


def _tree(program: int) -> tuple[int | None, int | None]:
    """(supervisor, server) of ``program``'s tree, found by the titles they show in ps."""
    found: dict[str, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        for kind in ("supervisor", "server"):
            if cmdline.startswith(f"brs-run: credential {kind} for PID {program}\0".encode()):
                found[kind] = int(entry)
    return found.get("supervisor"), found.get("server")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _until(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.02)
    return bool(callable(condition) and condition())


def _get(url: str, token: str, timeout: float) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Authorization": token})
    try:
        with opener.open(request, timeout=timeout) as answer:
            body = json.loads(answer.read())
            return int(answer.status) if "AccessKeyId" in body else -1
    except urllib.error.HTTPError as error:
        return int(error.code)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])


def _read_line(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"the program said nothing; stderr: {proc.stderr.read() if proc.stderr else ''}"
    return line.split()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the second local user can use (tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="brs-trust-"))
    path.chmod(0o755)
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _python_for(user: int) -> str:
    """An interpreter ``user`` may run (ours may live in root's home): stdlib only."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if subprocess.run([candidate, "-c", "pass"], user=user, group=user, timeout=30).returncode == 0:
                return candidate
    pytest.skip(f"no Python interpreter that uid {user} may run")


# -- 6. the server holds its secrets alone ------------------------------------------------------

SNOOP = """
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if os.getuid() == 0:
    # Root without capabilities: the same user as the server and no more (no CAP_SYS_PTRACE).
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: none
    assert libc.capset(header, data) == 0, os.strerror(ctypes.get_errno())
me = os.getpid()
pids = {}
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
        except OSError:
            continue
        for kind in ("supervisor", "server"):
            if cmdline.startswith(f"brs-run: credential {kind} for PID {me}\\0".encode()):
                pids[kind] = int(entry)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
seen = {}
for kind, pid in pids.items():
    for name in ("environ", "mem", "maps", "fd/0"):
        path = f"/proc/{pid}/{name}"
        try:
            if name == "fd/0":
                seen[f"{kind} {name}"] = os.readlink(path)
            else:
                with open(path, "rb") as handle:
                    seen[f"{kind} {name}"] = repr(handle.read(4096))
        except OSError as error:
            seen[f"{kind} {name}"] = type(error).__name__
    attached = libc.ptrace(16, pid, None, None)  # PTRACE_ATTACH
    seen[f"{kind} ptrace"] = "attached" if attached == 0 else os.strerror(ctypes.get_errno())
    if attached == 0:
        os.waitpid(pid, 0)
        libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
print(json.dumps({"pids": pids, "seen": seen, "uid": os.getuid()}), flush=True)
sys.stdin.read()
"""


def test_the_programs_user_reads_no_source_key_from_the_server_or_its_supervisor(
    base_env: dict[str, str], sts: StsServer, tmp_path: Path
) -> None:
    # The program's user, as the program itself: run as root, it first drops every
    # capability (root may read any process), so it is just the server's user.
    with _started(SNOOP, base_env, tmp_path) as proc:
        assert proc.stdout is not None
        report = json.loads(proc.stdout.readline())
        assert set(report["pids"]) == {"supervisor", "server"}, report
        for what, result in report["seen"].items():
            assert result in ("PermissionError", "Operation not permitted"), (what, result)
        if os.geteuid() == 0:
            # Root can read them: neither environment block holds a source key any more.
            for pid in report["pids"].values():
                block = Path(f"/proc/{pid}/environ").read_bytes()
                assert FAKE_SOURCE_ACCESS_KEY_ID.encode() not in block
                assert FAKE_SOURCE_SECRET_ACCESS_KEY.encode() not in block
                assert block.strip(b"\0") == b"", block[:200]
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                assert b"--serve" not in cmdline and b"python" not in cmdline


# -- 7. the server survives its clients -----------------------------------------------------------

TIMED_CLIENT = """
import json, os, sys, urllib.error, urllib.request
url = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
token = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
print(url, flush=True)
sys.stdin.readline()  # go: the other user's connections are open
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
results = []
for _ in range(10):
    try:
        request = urllib.request.Request(url, headers={"Authorization": token})
        with opener.open(request, timeout=1.0) as answer:
            results.append("ok" if "AccessKeyId" in json.loads(answer.read()) else "no keys")
    except Exception as error:
        results.append(type(error).__name__)
print(json.dumps(results), flush=True)
"""

# Another user's connections: idle ones, and slow ones that send a byte at a time;
# each reopened when the server drops it. Runs until stdin closes (at most 30 s).
HOLDER = """
import select, socket, sys, time
port, idle, slow = (int(value) for value in sys.argv[1:4])
def connect():
    return socket.create_connection(("127.0.0.1", port), timeout=2)
idle_ones = [connect() for _ in range(idle)]
slow_ones = [[connect(), 0] for _ in range(slow)]
head = b"GET /credentials HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: "
print("ready", len(idle_ones) + len(slow_ones), flush=True)
deadline = time.monotonic() + 30
reopened = 0
while time.monotonic() < deadline:
    if select.select([sys.stdin], [], [], 0.2)[0]:
        break
    for index, connection in enumerate(idle_ones):
        if select.select([connection], [], [], 0)[0]:  # dropped by the server
            connection.close()
            idle_ones[index] = connect()
            reopened += 1
    for entry in slow_ones:
        try:
            entry[0].send(head[entry[1] % len(head):][:1])
            entry[1] += 1
        except OSError:
            entry[0].close()
            entry[:] = [connect(), 0]
            reopened += 1
print("reopened", reopened, flush=True)
"""


@needs_root
def test_idle_and_slow_connections_of_another_user_do_not_delay_the_tree(
    base_env: dict[str, str], sts: StsServer, tmp_path: Path, shared_dir: Path
) -> None:
    # The first AssumeRole before the program starts: the one-second budget is for the
    # answers, not for STS.
    env = {**base_env, "BRS_DEFER_REFRESH": "false"}
    with _started(TIMED_CLIENT, env, tmp_path) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        port = _port(_read_line(proc)[0])
        holder = subprocess.Popen(
            [_python_for(NOBODY), "-c", HOLDER, str(port), "60", "20"], cwd=shared_dir,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, user=NOBODY, group=NOBODY,
        )
        try:
            assert holder.stdout is not None and holder.stdin is not None
            assert holder.stdout.readline().split() == ["ready", "80"]
            proc.stdin.write("go\n")
            proc.stdin.flush()
            results = json.loads(proc.stdout.readline())
        finally:
            with contextlib.suppress(BrokenPipeError):
                holder.communicate(input="stop\n", timeout=20)
    # Ten requests, each given one second: every one answered (before: 32 slots, 5 s each).
    assert results == ["ok"] * 10, results


LEAVER = """
import json, os, socket, struct, sys, urllib.request
url = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
token = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
port = int(url.rsplit(":", 1)[1].split("/")[0])
request = f"GET /credentials HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: {token}\\r\\n\\r\\n".encode()
wrong = b"GET /credentials HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: wrong\\r\\n\\r\\n"
for index in range(60):
    connection = socket.create_connection(("127.0.0.1", port), timeout=2)
    connection.sendall(request if index % 3 else wrong)
    if index % 2:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    connection.close()
    if index % 5 == 0:  # and some that leave while the head is half sent
        connection = socket.create_connection(("127.0.0.1", port), timeout=2)
        connection.sendall(request[:20])
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(urllib.request.Request(url, headers={"Authorization": token}), timeout=5) as answer:
    print("ok" if "AccessKeyId" in json.loads(answer.read()) else "no keys", flush=True)
"""


def test_clients_that_leave_mid_answer_leave_no_traceback(
    base_env: dict[str, str], sts: StsServer, tmp_path: Path
) -> None:
    with _started(LEAVER, {**base_env, "BRS_LOG_LEVEL": "DEBUG"}, tmp_path) as proc:
        out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (0, "ok\n"), err
    assert "Traceback" not in err and "Error" not in err, err
    assert err.count("with a wrong token") == 1  # the flood is still logged once per peer and kind


# -- 8. lifecycle -------------------------------------------------------------------------------

SHUTDOWN = """
import json, os, signal, sys, time, urllib.error, urllib.request
url = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
token = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
print(os.getpid(), url, os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"], flush=True)
deadline = time.monotonic() + 30
while not stopping and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(0.5)  # the stop signal reached every process of the unit meanwhile
# The shutdown handler flushes to S3: it needs credentials now.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(urllib.request.Request(url, headers={"Authorization": token}), timeout=5) as answer:
        print("shutdown got", "keys" if "AccessKeyId" in json.loads(answer.read()) else "nothing", flush=True)
except Exception as error:
    print("shutdown got", type(error).__name__, flush=True)
"""


def test_sigterm_to_every_process_of_the_tree_still_serves_the_programs_shutdown(
    base_env: dict[str, str], sts: StsServer, tmp_path: Path
) -> None:
    with _started(SHUTDOWN, base_env, tmp_path) as proc:
        pid, _, token_file = _read_line(proc)
        supervisor, server = _tree(int(pid))
        assert supervisor is not None and server is not None
        # systemd's KillMode=control-group, docker stop with an init: every process gets it.
        os.killpg(proc.pid, signal.SIGTERM)
        for other in (supervisor, server):
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                os.kill(other, signum)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.strip() == "shutdown got keys", (out, err)
    # Then, the program gone, both go and take the token directory with them.
    assert _until(lambda: not _alive(supervisor) and not _alive(server), 3.0)
    assert not Path(token_file).parent.exists()


def test_a_killed_server_is_back_on_the_same_port_within_a_second(
    base_env: dict[str, str], sts: StsServer, tmp_path: Path
) -> None:
    with _started(WAITING, base_env, tmp_path) as proc:
        assert proc.stdin is not None
        pid, url, token_file = _read_line(proc)
        token = Path(token_file).read_text()
        supervisor, server = _tree(int(pid))
        assert supervisor is not None and server is not None
        assert _get(url, token, 5.0) == 200
        for _ in range(2):  # twice: the second one quickly after the first
            os.kill(server, signal.SIGKILL)
            killed = time.monotonic()
            # The port is never free: nobody else can bind it while the server is away.
            with socket.socket() as squatter, pytest.raises(OSError) as refused:
                squatter.bind(("127.0.0.1", _port(url)))
            assert refused.value.errno == errno.EADDRINUSE
            status = None
            while status != 200 and time.monotonic() - killed < 1.0:
                with contextlib.suppress(OSError):
                    status = _get(url, token, max(0.05, 1.0 - (time.monotonic() - killed)))
            assert status == 200, f"no credentials within a second of the kill ({status})"
            print(f"credentials again {time.monotonic() - killed:.3f} s after the kill")
            again, restarted = _tree(int(pid))
            assert again == supervisor and restarted not in (None, server)
            assert restarted is not None
            server = restarted
        # The restarted servers started from the role's credentials in the tree's cache.
        assert sts.count("sts:AssumeRole") == 1
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
        assert _until(lambda: not _alive(supervisor) and not _alive(server), 3.0)
        assert not Path(token_file).parent.exists()
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert err.count("was killed by SIGKILL; starting another on the same port") == 2, err


@pytest.mark.parametrize("victim", ["server", "supervisor"])
def test_the_token_directory_goes_with_the_program_whichever_helper_was_killed(
    base_env: dict[str, str], sts: StsServer, tmp_path: Path, victim: str
) -> None:
    with _started(WAITING, base_env, tmp_path) as proc:
        pid, _, token_file = _read_line(proc)
        supervisor, server = _tree(int(pid))
        assert supervisor is not None and server is not None
        os.kill(server if victim == "server" else supervisor, signal.SIGKILL)
        time.sleep(0.3)
        assert Path(token_file).exists()  # the program still runs: its token stays
        os.kill(int(pid), signal.SIGKILL)  # and the program ends without a word
        proc.wait(timeout=10)
        assert _until(lambda: not Path(token_file).parent.exists(), 3.0)
        assert _until(lambda: not any(_alive(p) for p in (supervisor, server) if p), 3.0)
        restarted = _tree(int(pid))
        assert restarted == (None, None)


def test_a_later_launch_removes_the_directory_of_a_tree_killed_whole(
    base_env: dict[str, str], sts: StsServer, tmp_path: Path
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir(mode=0o700)
    env = {**base_env, "TMPDIR": str(temporary)}
    with _started(WAITING, env, tmp_path) as proc:
        pid, _, token_file = _read_line(proc)
        # Marked before the program started (the supervisor marks before it forks the
        # server that says "ok"): killed at any moment from here, the tree is swept.
        assert (Path(token_file).parent / "program").read_text() == f"{pid}\n"
        supervisor, server = _tree(int(pid))
        assert supervisor is not None and server is not None
        for victim in (supervisor, server, int(pid)):  # nothing left to clean up
            os.kill(victim, signal.SIGKILL)
        proc.wait(timeout=10)
    left = Path(token_file).parent
    assert _until(lambda: not _alive(supervisor) and not _alive(server), 3.0)
    assert left.exists() and (left / "program").read_text() == f"{pid}\n"
    # What a sweep must leave alone: a tree still running, a directory without a mark,
    # a symlink (to a marked directory of a dead PID).
    running = temporary / "brs-serve-running"
    running.mkdir(mode=0o700)
    (running / "program").write_text(f"{os.getpid()}\n")
    unmarked = temporary / "brs-serve-unmarked"
    unmarked.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "program").write_text(f"{pid}\n")
    (temporary / "brs-serve-link").symlink_to(elsewhere)
    with _started(WAITING, env, tmp_path) as proc:
        _read_line(proc)
        assert _until(lambda: not left.exists(), 3.0), "the next launch did not remove it"
        assert running.exists() and unmarked.exists() and (elsewhere / "program").exists()


@contextlib.contextmanager
def _in_process_server(role_arn: str, token: str) -> Iterator[int]:
    """The HTTP side alone, in this process, with real credentials (the fake STS)."""
    from brs_autopatch.config.from_env import from_env
    from brs_autopatch.serve.role import Credentials
    from brs_autopatch.serve.server import Gate, Server

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    credentials = Credentials(from_env({"BRS_ROLE_ARN": role_arn}))
    server = Server(listener, Gate(token), credentials, "/credentials")
    import threading

    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        server.shutdown()
        server.server_close()
        credentials.stop()


def _closed_by_server(connection: socket.socket, within: float) -> bool:
    connection.settimeout(within)
    try:
        return connection.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_beyond_the_limit_the_oldest_unfinished_connections_make_room(
    aws_env: dict[str, str], sts: StsServer, role_arn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brs_autopatch.serve import server

    monkeypatch.setattr(server, "MAX_READING", 8)
    monkeypatch.setattr(server, "READ_DEADLINE", 60.0)
    token = "t" * 64
    with _in_process_server(role_arn, token) as port:
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
        try:
            url = f"http://127.0.0.1:{port}/credentials"
            assert _get(url, token, 5.0) == 200  # the 21st: room made for it
            assert all(_closed_by_server(connection, 3.0) for connection in idle[:13])
            assert not any(_closed_by_server(connection, 0.3) for connection in idle[13:])
        finally:
            for connection in idle:
                connection.close()


def test_a_connection_gets_a_deadline_for_its_whole_request_however_it_trickles(
    aws_env: dict[str, str], sts: StsServer, role_arn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brs_autopatch.serve import server

    monkeypatch.setattr(server, "READ_DEADLINE", 0.5)
    token = "t" * 64
    with _in_process_server(role_arn, token) as port:
        silent = socket.create_connection(("127.0.0.1", port), timeout=5)
        trickle = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            started = time.monotonic()
            closed = False
            for byte in b"GET /credentials HTTP/1.1\r\nAuthorization: ":  # a byte per 0.1 s
                try:
                    trickle.send(bytes([byte]))
                except OSError:
                    closed = True
                    break
                if _closed_by_server(trickle, 0.1):
                    closed = True
                    break
            assert closed and time.monotonic() - started < 3.0  # well before the head was done
            assert _closed_by_server(silent, 3.0)
            assert _get(f"http://127.0.0.1:{port}/credentials", token, 5.0) == 200
        finally:
            silent.close()
            trickle.close()


def test_a_failing_first_assume_role_is_retried_after_a_backoff_not_per_request(
    aws_env: dict[str, str], sts: StsServer, role_arn: str
) -> None:
    # Until the first AssumeRole succeeds every request is refused; they keep coming
    # meanwhile. STS is asked again only after the backoff (0.5-1 s after the first
    # failure), and an access denied (permanent elsewhere) is retried on that same
    # short rule, not after the 30 s cap.
    from brs_autopatch.config.from_env import from_env
    from brs_autopatch.serve.role import Credentials, Unavailable

    sts.fault("AssumeRole", "access_denied", count=1)
    credentials = Credentials(from_env({"BRS_ROLE_ARN": role_arn}))
    try:
        for _ in range(20):
            with pytest.raises(Unavailable, match="AccessDenied"):
                credentials.build()
        assert sts.count("sts:AssumeRole") == 1
        failed = time.monotonic()
        built = None
        while built is None and time.monotonic() - failed < 5.0:
            with contextlib.suppress(Unavailable):
                built = credentials.build()
            time.sleep(0.02)
        assert built is not None, "not retried within 5 s"
        assert sts.count("sts:AssumeRole") == 2
    finally:
        credentials.stop()
