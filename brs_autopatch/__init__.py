"""brs_autopatch: refreshing STS AssumeRole credentials for every boto3 session.

``import brs_autopatch`` installs the patch when ``BRS_ROLE_ARN`` is set (and
``BRS_ENABLED`` is not false). It never imports boto3 or botocore itself: the patch
is applied when botocore is imported, or at once if it already is. The exception is
``BRS_SERVE=true`` (:mod:`brs_autopatch.serve.inprocess`), which resolves the source
credentials with botocore before it serves the role to native clients.

Under brs-run, with settings the launcher checked and the program has not changed,
the installation is made by the first session instead (:mod:`brs_autopatch.patch.deferred`).
"""

from __future__ import annotations

import os
import sys

from .util import importer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any

    from ._version import __version__
    from .config.from_env import from_env
    from .config.settings import Settings
    from .credentials.engine import RoleCredentials
    from .errors import ConfigError, CredentialRefreshError
    from .patch.install import install, patched, unpatch
    from .session import RefreshableSession

__all__ = [
    "ConfigError",
    "CredentialRefreshError",
    "RefreshableSession",
    "RoleCredentials",
    "Settings",
    "__version__",
    "from_env",
    "install",
    "patched",
    "unpatch",
]

# Public name -> module. Loaded on first access so that `import brs_autopatch`
# stays cheap and never pulls in boto3 (RefreshableSession needs it).
_LAZY = {
    # Even the version: every Python child under brs-run that imports botocore imports
    # this package (brs_autopatch.patch.deferred), and one module fewer is measurable there.
    "__version__": "_version",
    "ConfigError": "errors",
    "CredentialRefreshError": "errors",
    "RefreshableSession": "session",
    "RoleCredentials": "credentials.engine",
    "Settings": "config.settings",
    "from_env": "config.from_env",
    "install": "patch.install",
    "patched": "patch.install",
    "unpatch": "patch.install",
}

# The directory brs-run puts first on PYTHONPATH and the .pth line loads from
# (brs_autopatch.launch.main, brs_autopatch.launch.pth): defined here, below both.
BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap")


__getattr__ = importer.lazy_attributes(globals(), _LAZY)


def _warn_unknown_variables() -> None:
    """One WARNING for mistyped BRS_* variables: they would be ignored silently."""
    if not any(name.startswith("BRS_") for name in os.environ):
        return
    from .config.variables import LOG_LEVELS, describe_unknown, unknown_variables

    found = unknown_variables(os.environ)
    if not found:
        return
    from .util import logs

    level = os.environ.get("BRS_LOG_LEVEL", "").strip().upper()
    logger = logs.configure(level if level in LOG_LEVELS else None)
    logger.warning(
        "brs_autopatch ignores unknown variable%s %s",
        "s" if len(found) > 1 else "",
        describe_unknown(found),
    )


def _when_botocore_arrives(botocore: ModuleType) -> None:
    from .patch import deferred

    if deferred.may_defer():
        # brs-run checked these settings and the program changed none: the first
        # session makes the installation (brs_autopatch.patch.deferred).
        deferred.arm(botocore, _install_at_first_session)
        return
    _receive_launcher_value()
    from .patch.install import install

    _warn_unknown_variables()
    install()


def _install_at_first_session(initializer: Callable[[Any], None]) -> Callable[[Any], None] | None:
    from .patch.install import install_adopting

    _receive_launcher_value()
    _warn_unknown_variables()
    return install_adopting(initializer)


def _receive_launcher_value() -> None:
    """What brs-run checked (BRS_BOOTSTRAP as this process started) to the fingerprint check."""
    from .patch import deferred

    value = deferred.bootstrap_value()
    if value:
        from .config import fingerprint

        fingerprint.receive(value)


def _launcher_process() -> bool:
    """True in the brs-run process itself: it validates and execs, and must not patch."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "brs-run":
        return True
    # `python -m brs_autopatch`: while the package is being imported argv[0] is "-m".
    return argv0 == "-m" and "brs_autopatch" in getattr(sys, "orig_argv", ())


def _started_by_brs_run() -> bool:
    """BRS_BOOTSTRAP is set, though no bootstrap armed this interpreter (``python -I``...)."""
    from .config.fingerprint import BOOTSTRAP_ENV

    return bool(os.environ.get(BOOTSTRAP_ENV))


def _autoinstall() -> None:
    if _launcher_process():
        return
    from .patch import deferred

    if "botocore" not in sys.modules and (deferred.launched() or _started_by_brs_run()):
        # Started by brs-run, which validated the settings already: parse them, and pay
        # for logging and the rest, only in a process that imports botocore.
        importer.when_imported("botocore", _when_botocore_arrives)
        return
    _receive_launcher_value()
    from .patch.install import install

    _warn_unknown_variables()
    if install() and os.environ.get("BRS_SERVE"):
        # Only then: the server code, sockets and botocore stay out of every other import.
        _serve_in_process()


def _serve_in_process() -> None:
    """BRS_SERVE=true: the credential endpoint in this process (brs_autopatch.serve.inprocess)."""
    from .patch.install import installed

    state = installed()
    if state is None or not state.settings.serve:
        return
    from .errors import ConfigError
    from .serve.inprocess import start
    from .serve.start import ServeError

    try:
        start(state)
    except ServeError as error:
        if state.settings.on_error != "warn":
            raise ConfigError(f"BRS_SERVE=true: {error}") from None
        import logging

        logging.getLogger("brs_autopatch").warning(
            "brs_autopatch is not serving (BRS_ON_ERROR=warn): BRS_SERVE=true: %s", error
        )


_autoinstall()
