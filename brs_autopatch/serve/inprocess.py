"""``BRS_SERVE=true`` with ``import brs_autopatch``: the credential endpoint inside this process.

What ``brs-run --serve`` gives a launch tree, for a program that only imports the package
(a notebook, a job): native clients that never ask botocore — pyarrow's S3 filesystem
(the AWS C++ SDK, under ``pandas.read_parquet`` too), polars' Rust ``object_store``, the
AWS CLI v2, other languages in subprocesses — get the role from a loopback endpoint.

At import (``start``):

1. the source credentials are resolved with botocore's chain while the environment
   still names them, and kept in memory: the STS client of the process's one
   :class:`~brs_autopatch.RoleCredentials` is built from them (now, after a fork, always);
2. a 0700 directory gets the token file and the AWS files without the source identity,
   and ``os.environ`` becomes what ``brs-run --serve`` gives its program
   (:func:`brs_autopatch.serve.start.program_environment`): the container-credentials
   variables, no static keys, no profile selection;
3. :mod:`brs_autopatch.serve.server`'s HTTP server answers on 127.0.0.1 from a daemon thread,
   with the installation's credentials object: boto3 sessions, native clients and
   served Python children share one AssumeRole per refresh.

Fork: the thread does not survive it. A forked child keeps the parent's endpoint (same
variables, same token): the parent's thread answers it, still one AssumeRole per
refresh for the whole tree, as long as the parent runs. The child closes its copy of the
listening socket, so once the parent is gone a request is refused at once, not left hanging.
Exit: the process that started the endpoint removes its directory (``atexit``).

Not here: anything when ``BRS_SERVE`` is off (``brs_autopatch/__init__`` does not import
this module then), or in a process already served (``BRS_METHOD=served``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

# botocore first: its arrival runs the patch's plan, which imports brs_autopatch.methods;
# that must not happen half-way through importing server -> methods.endpoint -> methods.
import botocore.session

from ..config import nested, profiles
from ..methods import endpoint
from ..patch.installation import Installation
from . import start as serve
from .role import Credentials, Unavailable
from .server import POLL_SECONDS, Gate, Server

if TYPE_CHECKING:
    from ..credentials.engine import RoleCredentials

logger = logging.getLogger("brs_autopatch")


class Endpoint:
    """The running endpoint: its server thread, directory and the process that owns them."""

    def __init__(self, url: str, workdir: str, server: Server, thread: threading.Thread) -> None:
        self.url = url
        self.workdir = workdir
        self.server = server
        self.thread = thread
        self.owner = os.getpid()

    def __repr__(self) -> str:
        return f"<brs_autopatch endpoint {self.url} pid={self.owner}>"

    def close(self) -> None:
        """At exit: remove the directory (token file, AWS files), in the owning process only."""
        if os.getpid() != self.owner:
            return  # a forked child: the directory is its parent's
        # The socket stays open: closing it under the serving thread's select() would
        # print a traceback at exit; the process is ending, and the thread with it.
        shutil.rmtree(self.workdir, ignore_errors=True)

    def after_fork_in_child(self) -> None:
        # The serving thread is the parent's; the child's copy of the listening socket
        # would make the kernel queue connections nobody here accepts.
        with contextlib.suppress(OSError):
            self.server.listener.close()


_endpoint: Endpoint | None = None
_lock = threading.Lock()


def current() -> Endpoint | None:
    """The endpoint this process started (or inherited through fork), if any."""
    return _endpoint


def start(state: Installation, environ: Any = None) -> Endpoint | None:
    """Start the endpoint for ``state`` and rewrite ``environ`` (``os.environ``). Idempotent.

    Raises :class:`~brs_autopatch.serve.start.ServeError` (one line) when it cannot listen or
    write its directory; the environment is then left as it was.
    """
    global _endpoint
    env = os.environ if environ is None else environ
    with _lock:
        if _endpoint is not None:
            return _endpoint
        if state.settings.method == "served":
            return None  # already a served child: its server serves this process too
        original = dict(env)
        source = _source(state)
        workdir, listener = serve.open_endpoint()
        try:
            token = serve.new_token()
            url = endpoint.url(listener.getsockname()[1])
            # As brs-run --serve tells its tree: which role is served (BRS_PROFILE resolved
            # from the real files), not BRS_ROLE_ARN/BRS_PROFILE, which in the tree mean what
            # a child asks for itself (brs_autopatch.config.nested): a child inheriting this
            # process's BRS_ROLE_ARN would otherwise chain a second AssumeRole.
            resolved, _ = profiles.resolve(state.settings)
            served = nested.tree_environment(
                serve.program_environment(original, url, token, workdir), resolved
            )
        except BaseException:
            listener.close()
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        state.source = source
        http = Server(listener, Gate(token), Shared(state), endpoint.PATH)
        thread = threading.Thread(
            target=http.serve_forever, args=(POLL_SECONDS,), name="brs-credential-endpoint", daemon=True
        )
        _apply(env, served)
        thread.start()
        _endpoint = Endpoint(url, workdir, http, thread)
        atexit.register(_endpoint.close)
    logger.info("credential endpoint on %s for this process and its children (BRS_SERVE)", url)
    return _endpoint


def _apply(env: Any, served: Mapping[str, str]) -> None:
    """Make ``env`` equal to ``served``: native clients read os.environ as they start."""
    for name in [name for name in env if name not in served]:
        del env[name]
    for name, value in served.items():
        if env.get(name) != value:
            env[name] = value


def _source(state: Installation) -> Callable[[], Any]:
    """The source credentials, resolved now with botocore's chain in the original environment.

    Afterwards the environment no longer names them (that is the point), so the STS
    client, built lazily and again in every forked child, signs with what is resolved
    here (a refreshing source, such as SSO or a credential_process, keeps refreshing).
    The region still comes from the environment and the stripped config file, which
    keeps the selected profile's settings.
    """
    from ..credentials import failures, sources

    try:
        credentials = sources.plain_session(state.settings.source_profile).get_credentials()
    except Exception as error:  # an SSO login expired, a failing credential_process...
        cause, _ = failures.describe_error(error)
        raise serve.ServeError(f"cannot resolve the source credentials: {cause}") from None

    def session() -> botocore.session.Session:
        made = botocore.session.Session()
        if credentials is not None:
            sources.use_credentials(made, credentials)
        return made

    return session


class Shared(Credentials):
    """role.Credentials answering from the installation's credentials object."""

    def __init__(self, state: Installation) -> None:
        super().__init__(state.settings, background=False)
        self._state = state

    def build(self) -> RoleCredentials:
        # The object every boto3 session of the process signs with: built by the first
        # request or session, whichever comes first, and refreshed by either.
        if not self._state.active:
            raise Unavailable("brs_autopatch was unpatched in the serving process")
        return self._state.credentials()

    def stop(self) -> None:
        pass  # the installation owns them


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a parent thread may have held it (starting) at fork time
    if _endpoint is not None:
        _endpoint.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
