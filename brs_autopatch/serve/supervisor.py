"""The launch tree's credential server as processes: the supervisor and the server it forks.

Two processes, which :mod:`brs_autopatch.serve.start` double-forks before brs-run becomes
the program. The *supervisor* (:func:`run`) holds the listening socket and forks the
*server* (:func:`serve`) that answers on it (:class:`~brs_autopatch.serve.server.Server`,
with the source credentials and one refreshing
:class:`~brs_autopatch.serve.role.Credentials`); if the server dies while the program
runs (OOM killer, ``kill -9``) it forks another at once, on the same socket: same port,
same token, and the port is never free for anyone else to bind.

Both processes are not dumpable (no ptrace, ``/proc/PID/environ`` and ``mem`` root-only)
and blank the environment block inherited from brs-run (:mod:`brs_autopatch.serve.watch`).

Lifetime: exactly the program's. Both ignore SIGTERM, SIGINT and SIGHUP (meant for
the program, which may still need credentials while it shuts down). A pidfd (Linux
>= 5.3; else polling the PID) says when the program has ended, however it ended; the
server and the supervisor then remove the directory (token file, AWS files) and exit
within about a second. Whichever of the two outlives the other cleans up; if both were
killed, the next ``brs-run --serve`` of the same user removes it
(:func:`brs_autopatch.serve.tokendir.sweep`).

Not here: HTTP (:mod:`brs_autopatch.serve.server`), the answer
(:mod:`brs_autopatch.serve.role`), the program's environment (:mod:`brs_autopatch.serve.start`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from ..methods import endpoint
from . import tokendir
from .role import Credentials, Unavailable
from .server import POLL_SECONDS, Gate, Server
from .watch import detach, first_ended, make_private, pidfd, scrub, set_title, watcher

if TYPE_CHECKING:
    from ..config.settings import Settings

logger = logging.getLogger("brs_autopatch")

START_FAILED = 1  # a server's exit status when it could not start (and said why): no restart
LOOP_FAILED = 70  # its accept-and-read loop failed: restarted


def run(
    listener: socket.socket,
    status_fd: int,
    *,
    program: int,
    env: dict[str, str],
    settings: Settings,
    token: str,
    workdir: str,
) -> int:
    """The supervisor: hold the listening socket, keep a server on it while ``program`` runs.

    Forks the server (:func:`serve`), which reports on ``status_fd``; when a server
    ends while the program runs (OOM killer, ``kill -9``), forks another on the same
    socket at once: the port is never free, the token and URL stay. Ignores the stop
    signals meant for the program. When the program has ended, however it ended, makes
    sure the server has ended too and removes ``workdir``.
    """
    try:
        try:
            detach(keep={listener.fileno(), status_fd})
            program_fd = pidfd(program)
        except OSError as error:  # EMFILE, no /dev/null...: say why, in brs-run's one line
            _report(status_fd, f"the credential server cannot start: {error.strerror or error}")
            return START_FAILED
        _ignore_stop_signals()
        if not make_private("brs-supervisor") and sys.platform.startswith("linux"):
            # Fail closed: a dumpable server would hand the source keys to the program's user.
            _report(status_fd, "the credential server cannot start: cannot make it non-dumpable (prctl)")
            return START_FAILED
        scrub(f"brs-run: credential supervisor for PID {program}")
        from ..util import logs

        logs.configure(settings.log_level)
        settings = _with_cache(settings, workdir)
        # Marked before the first server is forked, hence before it tells brs-run "ok"
        # and the program starts: a tree killed whole at any moment after that leaves a
        # directory the next launch's sweep recognises.
        tokendir.mark(workdir, program)
        report: int | None = status_fd
        quick = 0
        while True:
            started = time.monotonic()
            child = _fork_server(listener, report, program=program, env=env, settings=settings,
                                 token=token, workdir=workdir)
            first, report = report is not None, None
            if first:
                with contextlib.suppress(OSError):  # the server's now: brs-run sees its end
                    os.close(status_fd)
                _preload()  # while the first server starts: a restarted one serves sooner
                tokendir.sweep(workdir)
            if child is None:  # fork failed (EAGAIN, ENOMEM): brs-run was told, or try again
                if first or first_ended([program], [program_fd], 0.5) is not None:
                    return START_FAILED if first else 0
                continue
            child_fd = pidfd(child)
            ended = None
            while ended is None:
                ended = first_ended([program, child], [program_fd, child_fd], 3600.0)
            if ended == program:
                _end(child, child_fd)
                return 0
            _, status = os.waitpid(child, 0)
            if child_fd is not None:
                os.close(child_fd)
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) in (0, START_FAILED):
                # It ended as planned (it saw the program end) or could not start and said
                # why: nothing to restart. Clean up once the program has ended.
                while first_ended([program], [program_fd], 3600.0) is None:
                    pass
                return 0
            quick = quick + 1 if time.monotonic() - started < 1.0 else 0
            logger.warning(
                "credential server (process %s) %s; starting another on the same port", child, _how(status)
            )
            # A server that keeps dying at once is not restarted in a tight loop.
            pause = min(0.5, 0.05 * 2.0**quick) if quick > 1 else 0.0
            if pause and first_ended([program], [program_fd], pause) is not None:
                return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _with_cache(settings: Settings, workdir: str) -> Settings:
    """Settings whose credentials go through a file cache, ``BRS_CACHE_DIR`` or the workdir's.

    A restarted server then starts from the role credentials its predecessor got (a
    cache hit builds no STS client, the slow part of a start) and answers at once.
    The cache holds the role's credentials only, which the token gives anyway, in the
    0700 token directory that goes with the program.
    """
    if settings.cache_dir is not None:
        return settings
    cache = os.path.join(workdir, "cache")
    try:
        os.mkdir(cache, 0o700)
    except OSError:
        return settings
    return settings.replace(cache_dir=cache)


def _fork_server(
    listener: socket.socket, report: int | None, **kwargs: Any
) -> int | None:
    try:
        child = os.fork()
    except OSError as error:
        if report is not None:
            _report(report, f"cannot start the credential server: {error.strerror or error}")
        else:
            logger.warning("credential server: cannot start another: %s", error.strerror or error)
        return None
    if child:
        return child
    code = START_FAILED  # pragma: no cover - runs in the forked child
    try:
        code = serve(listener, report, **kwargs)
    except Exception as error:
        _report_or_warn(report, f"the credential server cannot start: {type(error).__name__}: {error}")
    finally:
        os._exit(code)


def _ignore_stop_signals() -> None:
    # systemd, docker and Kubernetes signal every process of the unit; these are meant
    # for the program, which may still need credentials while it shuts down.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


def _preload() -> None:
    # Imports a server does before it can answer; done here once, every restarted
    # server inherits them (measured: a restart answered in 0.6-1.0 s instead of
    # 0.1-0.4 s under load when the methods were imported after each fork).
    with contextlib.suppress(Exception):
        from .. import build  # noqa: F401  (the plan, the engine, the methods' base)
        from ..credentials import failures  # noqa: F401
        from ..methods import registry  # noqa: F401  (the built-in methods)


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"was killed by {signal.Signals(number).name}"
        except ValueError:
            return f"was killed by signal {number}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _end(child: int, child_fd: int | None) -> None:
    # The server sees the program end too and exits within POLL_SECONDS; one that does
    # not (stopped, stuck) is killed.
    if first_ended([child], [child_fd], 1.0) is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(child, 0)
    if child_fd is not None:
        os.close(child_fd)


def serve(
    listener: socket.socket,
    status_fd: int | None,
    *,
    program: int,
    env: dict[str, str],
    settings: Settings,
    token: str,
    workdir: str,
) -> int:
    """The server process: start, report on ``status_fd`` (the first one), serve until ``program`` ends."""
    try:
        watch = watcher(program)
    except OSError as error:
        _report_or_warn(status_fd, f"the credential server cannot start: {error.strerror or error}")
        return START_FAILED
    set_title(f"brs-run: credential server for PID {program}")
    make_private("brs-server")
    os.environ.update(env)  # the launcher's environment: the source credentials
    credentials = Credentials(settings)
    if status_fd is None:
        # A restart: the tree is waiting, fetch now rather than on the first request.
        threading.Thread(target=_warm, args=(credentials,), daemon=True).start()
    elif not settings.defer_refresh:
        quiet = _Quiet()
        logger.addFilter(quiet)  # brs-run's one line says it all
        try:
            credentials.build()  # the first AssumeRole, before the program starts
        except Unavailable as error:
            _report(status_fd, f"cannot get the first credentials: {error}")
            return START_FAILED
        finally:
            logger.removeFilter(quiet)
    server = Server(listener, Gate(token), credentials, endpoint.PATH)
    thread = threading.Thread(target=_serve_or_exit, args=(server,), daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    logger.info("credential server on %s for process %s", endpoint.url(port), program)
    if status_fd is not None:
        _report(status_fd, "ok")
    while not watch(POLL_SECONDS):
        pass
    # No waiting for the loop or the workers: os._exit (the caller) ends every thread.
    credentials.stop()
    if server.gate.refused:
        refused = server.gate.refused
        logger.info("credential server: refused %s requests (missing or wrong token)", refused)
    shutil.rmtree(workdir, ignore_errors=True)  # the program has ended (the supervisor does it too)
    return 0


def _serve_or_exit(server: Server) -> None:
    # A server that no longer answers must not look alive: end the process, and the
    # supervisor starts another on the same socket.
    try:
        server.serve_forever(POLL_SECONDS)
    except BaseException as error:
        logger.warning("credential server: %s: %s", type(error).__name__, str(error).splitlines()[:1])
    os._exit(LOOP_FAILED)


def _warm(credentials: Credentials) -> None:
    with contextlib.suppress(Exception):
        credentials.build()


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


def _report_or_warn(fd: int | None, line: str) -> None:
    """The first server reports to brs-run (its one line before exit 2); a restarted one,
    with nobody waiting for a status, logs a WARNING instead."""
    if fd is not None:
        _report(fd, line)
    else:
        logger.warning("%s", line)


def _report(fd: int, line: str) -> None:
    try:
        os.write(fd, (line.replace("\n", " ") + "\n").encode("utf-8", "replace"))
        os.close(fd)
    except OSError:
        pass
