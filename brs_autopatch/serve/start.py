"""``brs-run --serve``, the launcher's side: start the credential server, then the program.

brs-run stays the program (``os.execve``: same PID, signals, exit code). Before the
exec it

1. makes a 0700 directory holding the 0600 token file and the program's AWS files;
2. binds the listening socket on 127.0.0.1, a random port (so the port is known
   before anything else starts, and a bind failure stops brs-run with exit 2);
3. double-forks the server's supervisor (:mod:`brs_autopatch.serve.supervisor`, which forks the
   server and restarts it on the same socket if it dies): the intermediate child
   exits at once and is reaped here, so neither is anybody's child in the
   program's process tree (a program calling ``os.wait()`` never gets them) and
   none becomes a zombie (init reaps the supervisor, the supervisor its servers);
   they run in their own session, away from the terminal's Ctrl-C, ignore the stop
   signals meant for the program, and watch the program's PID (a pidfd) to end with it;
4. waits for the server's status line: at once, or with ``BRS_DEFER_REFRESH=false``
   after the first AssumeRole, whose failure ends brs-run with exit 2;
5. returns the program's environment: the container-credentials variables, no
   source identity (see :func:`program_environment`).
"""

from __future__ import annotations

import contextlib
import locale
import os
import secrets
import select
import shutil
import socket
import sys
import time
from collections.abc import Mapping

from ..config.settings import Settings
from ..methods import endpoint
from . import awsfiles, tokendir
from .awsread import AwsFileError

__all__ = ["ServeError", "program_environment", "start", "start_if_wanted"]

START_TIMEOUT = 5.0
# The first AssumeRole: STS timeouts (2 x (5 + 15) s) plus an MFA command's 30 s.
FIRST_CREDENTIALS_TIMEOUT = 120.0

# Where SDKs find credentials before the container endpoint; none may reach the program.
SOURCE_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_ACCESS_KEY",  # the Java SDK's older names
    "AWS_SECRET_KEY",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",  # web identity (EKS IRSA) is asked before the container endpoint
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    *endpoint.VARIABLES,  # another endpoint's (the relative URI wins over ours in most SDKs)
)
# BRS_* the children do not need once the server assumes the role: secrets stay out
# of the program's environment, the cache and MFA belong to the server.
SERVER_ONLY_VARIABLES = (
    "BRS_SERVE",
    "BRS_EXTERNAL_ID",
    "BRS_ASSUME_ROLE_KWARGS",
    "BRS_MFA_SERIAL",
    "BRS_MFA_TOKEN_COMMAND",
    "BRS_MFA_TIMEOUT_SECONDS",
    "BRS_CACHE_DIR",
    "BRS_WEB_IDENTITY_TOKEN_FILE",
    "BRS_CUSTOM_METHOD",
    # The server takes the role from this profile; the program's copies of the AWS files
    # no longer hold it (its role settings lead to the source, see awsfiles).
    "BRS_PROFILE",
)
class ServeError(Exception):
    """The server could not start or get the first credentials: one line, exit 2."""


def program_environment(
    env: Mapping[str, str], url: str, token: str, workdir: str
) -> dict[str, str]:
    """What the program and its children see: the server, not the source identity.

    Static keys, profile selection and other credential variables are removed. The
    AWS files are replaced by copies in ``workdir`` without the source identity
    (:mod:`brs_autopatch.serve.awsfiles`): the config file's ``[default]`` holds the
    non-credential settings, region included, of the profile botocore would have used.
    Named profiles with other identities stay: a program can still be explicit about
    another identity. Raises :class:`~brs_autopatch.serve.awsread.AwsFileError` (one line)
    for an AWS file that does not parse or is too large.
    """
    child = {name: value for name, value in env.items() if name not in SOURCE_VARIABLES}
    for name in SERVER_ONLY_VARIABLES:
        child.pop(name, None)
    config, credentials = awsfiles.program_files(env, workdir)
    child["AWS_CONFIG_FILE"] = _write(workdir, "config", config)
    child["AWS_SHARED_CREDENTIALS_FILE"] = _write(workdir, "credentials", credentials)
    child[endpoint.URI_ENV] = url
    child[endpoint.TOKEN_FILE_ENV] = _write(workdir, "token", token)
    child[endpoint.TOKEN_ENV] = token  # SDKs that read no token file
    child["BRS_METHOD"] = "served"
    child["BRS_DEFER_REFRESH"] = "true"  # a child refreshes at its window, after the server
    return child


def _write(workdir: str, name: str, text: str) -> str:
    path = os.path.join(workdir, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    # The copies are read by botocore with the locale's encoding, like the originals.
    with os.fdopen(fd, "w", encoding=locale.getpreferredencoding(False)) as handle:
        handle.write(text)
    return path


# -- starting the server ----------------------------------------------------------------


def start(env: Mapping[str, str], settings: Settings) -> dict[str, str]:
    """Start the server for this launch tree; returns the program's environment.

    Raises :class:`ServeError` (one line) when it cannot start or, without deferred
    refresh, cannot get the first credentials. In a tree already served (a nested
    ``brs-run --serve``) the outer server serves this one too, unless it asks for another
    role: a server of its own then chains that role from the served one (brs_autopatch.config.nested).
    """
    from ..config.nested import serves

    if serves(settings):
        return dict(env)
    workdir, listener = open_endpoint()
    try:
        token = new_token()
        url = endpoint.url(listener.getsockname()[1])
        try:
            child_env = program_environment(env, url, token, workdir)
        except AwsFileError as error:
            raise ServeError(str(error)) from None
        try:
            _spawn(listener, env, settings, token, workdir)
        except OSError as error:  # fork: EAGAIN, ENOMEM
            raise ServeError(f"cannot start the credential server: {error.strerror or error}") from None
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return child_env


def open_endpoint() -> tuple[str, socket.socket]:
    """An endpoint's token directory (:mod:`brs_autopatch.serve.tokendir`) and listening
    socket (127.0.0.1, a random port). Raises :class:`ServeError` (one line) when either
    cannot be had, leaving nothing behind."""
    try:
        workdir = tokendir.make()
    except OSError as error:
        raise ServeError(f"cannot create the token directory: {error.strerror or error}") from None
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((endpoint.HOST, 0))
        listener.listen(128)
    except OSError as error:
        listener.close()
        shutil.rmtree(workdir, ignore_errors=True)
        raise ServeError(f"cannot listen on {endpoint.HOST}: {error.strerror or error}") from None
    return workdir, listener


def new_token() -> str:
    """A new endpoint token: 256 bits, hex (what the SDKs send back as the header)."""
    return secrets.token_hex(32)


def _spawn(
    listener: socket.socket, env: Mapping[str, str], settings: Settings, token: str, workdir: str
) -> None:
    program = os.getpid()  # after execve, the program has this PID
    status_read, status_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    middle = os.fork()
    if middle == 0:  # pragma: no cover - runs in the forked children
        code = 1
        try:
            os.close(status_read)
            from .watch import make_private

            make_private("brs-run")  # first: this process holds the source keys too
            os.setsid()  # no terminal signals; the server ends with the program instead
            if os.fork() == 0:
                try:
                    from .supervisor import run

                    code = run(
                        listener, status_write, program=program, env=dict(env), settings=settings,
                        token=token, workdir=workdir,
                    )
                except Exception as error:  # say why in brs-run's one line, if the pipe is open
                    line = f"the credential server cannot start: {type(error).__name__}: {error}\n"
                    with contextlib.suppress(OSError):
                        os.write(status_write, line.replace("\n", " ").strip().encode() + b"\n")
            else:
                code = 0
        finally:
            os._exit(code)
    os.close(status_write)
    listener.close()
    os.waitpid(middle, 0)
    timeout = START_TIMEOUT if settings.defer_refresh else FIRST_CREDENTIALS_TIMEOUT
    try:
        status = _read_line(status_read, timeout)
    finally:
        os.close(status_read)
    if status != "ok":
        raise ServeError(status or "the credential server exited before it was ready")


def _read_line(fd: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            return f"the credential server did not answer within {timeout:.0f} s"
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace").split("\n", 1)[0].strip()


def start_if_wanted(env: Mapping[str, str]) -> dict[str, str]:
    """The launcher's one call: start the server if ``BRS_SERVE`` (``--serve``) says so."""
    from ..config.from_env import from_env

    settings = from_env(env)
    return start(env, settings) if settings.serve else dict(env)
