"""install() / unpatch(): every botocore and boto3 session gets the role credentials.

Importing this module imports neither boto3 nor botocore: install() registers a
post-import hook, and the work happens when botocore is imported (at once if it
already is). The patch itself is a botocore session initializer, so every session
created afterwards is covered — ``boto3.Session()``, ``boto3.session.Session``, a
name bound by ``from boto3 import Session`` earlier, subclasses, the default
session behind ``boto3.client()``, and plain ``botocore.session.get_session()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any

from ..config.from_env import from_env
from ..config.settings import Settings
from ..errors import ConfigError
from ..util import importer, logs
from . import deferred
from .installation import Installation

logger = logging.getLogger("brs_autopatch")

# The marker lives on the botocore module object, so two imports, the launcher plus
# an explicit import, or two copies of this package on sys.path patch only once.
MARKER = "__brs_autopatch__"

_lock = threading.RLock()
_generation = 0
# The installation this copy of the package made last (None after unpatch()).
_installed: Installation | None = None
# The initializer brs_autopatch.patch.deferred registered already, while install_adopting
# makes the installation that takes it over (under _lock).
_adopting: Any = None


def _reset_after_fork() -> None:
    # Another parent thread may have been inside install()/unpatch() (a plan being made)
    # at fork time; the child has no such thread, and would wait for it forever.
    global _lock
    _lock = threading.RLock()


os.register_at_fork(after_in_child=_reset_after_fork)

# The installation used to be called PatchState; the name stays for existing code.
PatchState = Installation


def install(settings: Settings | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Patch boto3/botocore (now or when imported). True if a patch is, or will be, in place.

    Calling it again with the same settings changes nothing (and re-applies a patch that
    ``importlib.reload(botocore)`` dropped); with other settings the active installation
    is replaced: its credentials and background threads are stopped.

    Bad settings raise :class:`ConfigError`, or with ``BRS_ON_ERROR=warn`` log one
    warning and patch nothing.
    """
    deferred.settle()  # under brs-run: what the first session would have made comes first
    return _install(settings, environ)


def install_adopting(initializer: Callable[[Any], None]) -> Callable[[Any], None] | None:
    """brs_autopatch.patch.deferred's first session: install from ``os.environ`` now.

    ``initializer`` is registered on botocore already and becomes the installation's.
    Returns how to patch a session, or None when nothing is patched (off, or
    BRS_ON_ERROR=warn with bad settings). Bad settings raise :class:`ConfigError`.
    """
    global _adopting
    with _lock:
        state = current()
        if state is None or state.initializer is not initializer:
            _adopting = initializer
            try:
                _install(None, None)
            finally:
                _adopting = None
            state = current()
        if state is None or state.initializer is not initializer:
            return None
    return _session_patcher(state)


def _session_patcher(state: Installation) -> Callable[[Any], None]:
    """What an installation does to each new botocore session."""

    def patch(session: Any) -> None:
        # Imported on the first session, not with botocore: a program that imports
        # boto3 without making a session pays nothing (every child under brs-run).
        from .dispatch import patch_session

        patch_session(session, state)

    return patch


def _install(settings: Settings | None, environ: Mapping[str, str] | None) -> bool:
    global _generation, _installed
    env = os.environ if environ is None else environ
    from_environment = settings is None
    try:
        if settings is None:
            settings = from_env(env)
    except ConfigError as error:
        if _switched_off(env):
            # The kill switch works even when other settings are broken (as in brs-run).
            logs.configure(None)
            logger.debug("nothing patched: BRS_ENABLED is false")
            return False
        if (env.get("BRS_ON_ERROR") or "").strip().lower() == "warn":
            logs.configure(None)
            logger.warning("brs_autopatch is not patching (BRS_ON_ERROR=warn): %s", error)
            return False
        raise
    logs.configure(settings.log_level)
    if not settings.active:
        logger.debug(
            "nothing patched: %s",
            "BRS_ENABLED is false" if not settings.enabled else "BRS_ROLE_ARN is not set",
        )
        return False
    with _lock:
        previous = _installed
        if previous is not None and previous.active and previous.settings.key() == settings.key():
            state = previous  # the same installation again: only check it is still in place
        else:
            if previous is not None and previous.active:
                logger.info("replacing the active brs_autopatch installation (other settings)")
                unpatch()
            _generation += 1
            state = _installed = Installation(settings, _generation)
            # Settings read from an environment: brs-run may have checked that one already.
            state.environ = env if from_environment else None
    importer.when_imported("botocore", _hook(state, _plan_then_patch))
    importer.when_imported("boto3", _hook(state, _patch_boto3))
    return True


def _switched_off(env: Mapping[str, str]) -> bool:
    """Whether BRS_ENABLED says false (a bad BRS_ENABLED itself is not "off")."""
    from ..config.variables import parse_bool, read

    raw = read(env, "BRS_ENABLED")
    try:
        return raw is not None and not parse_bool("BRS_ENABLED", raw)
    except ConfigError:
        return False


def _hook(state: Installation, apply: Any) -> importer.Hook:
    def hook(module: ModuleType) -> None:
        if state.generation != _generation:
            return  # unpatch() or a newer install() came after this hook was registered
        apply(module, state)

    return hook


def _plan_then_patch(botocore: ModuleType, state: Installation) -> None:
    """Validate everything (:func:`brs_autopatch.plan.make`) as botocore arrives, then patch.

    A bad value raises here: from ``import brs_autopatch`` when botocore was imported
    first, else from the import of botocore (the hook stays armed, so a second import
    raises again instead of going on unpatched). BRS_ON_ERROR=warn: one warning, no patch.
    """
    try:
        try:
            if state.plan is None and not _checked_by_launcher(state):
                from .. import plan

                state.plan = plan.make(state.settings)
        except ConfigError:
            raise
        except Exception as bug:  # a check that broke (an old botocore...): still one line
            text = " ".join(str(bug).split())
            raise ConfigError(f"the settings could not be checked: {type(bug).__name__}: {text}") from None
    except ConfigError as error:
        if state.settings.on_error != "warn":
            raise
        logger.warning("brs_autopatch is not patching (BRS_ON_ERROR=warn): %s", error)
        return
    _patch_botocore(botocore, state)


def _checked_by_launcher(state: Installation) -> bool:
    """brs-run checked these very settings (brs_autopatch.config.fingerprint): plan with the credentials.

    Then nothing is left to check as botocore arrives, and the plan (botocore's Config,
    the methods) stays off the start-up of every child that imports boto3 and makes no
    session. Installation.credentials() makes it, and a ConfigError there (a cache
    directory removed since) follows BRS_ON_ERROR like any other.
    """
    if state.environ is None:
        return False
    from ..config import fingerprint as checked

    if not checked.by_launcher(state.settings, state.environ):
        return False
    logger.debug("settings checked by brs-run: the plan is made with the credentials")
    return True


def _patch_botocore(botocore: ModuleType, state: Installation) -> None:
    with _lock:
        current = getattr(botocore, MARKER, None)
        if current is state and state.initializer is not None:
            if _still_registered(botocore, state.initializer):
                return
            # importlib.reload(botocore) re-ran botocore/__init__.py: its initializer list
            # is new and empty while our marker (an attribute it does not set) survived.
            logger.warning("botocore was reloaded, which dropped the patch: patching it again")
            botocore.register_initializer(state.initializer)
            return
        if current is not None and current.active:
            logger.debug("botocore already patched by %r", current)
            return
        if _adopting is not None:
            state.initializer = _adopting  # registered by brs_autopatch.patch.deferred
        else:
            state.initializer = _session_patcher(state)
            botocore.register_initializer(state.initializer)
        setattr(botocore, MARKER, state)
    logger.debug(
        "patched botocore sessions for %s", state.settings.role_arn or f"method {state.settings.method}"
    )


def _still_registered(botocore: ModuleType, initializer: Any) -> bool:
    # botocore has no public "is registered" query; unregister_initializer raises
    # ValueError for an unknown callback, so unregister and register again.
    try:
        botocore.unregister_initializer(initializer)
    except ValueError:
        return False
    botocore.register_initializer(initializer)
    return True


def _patch_boto3(boto3: Any, state: Installation) -> None:
    """Replace a default session made before install, unless it was explicit."""
    botocore = sys.modules.get("botocore")
    if getattr(botocore, MARKER, None) is not state:
        return
    # getattr: under brs-run this runs while boto3 itself is still being imported
    # (botocore is imported from boto3's first lines), before DEFAULT_SESSION exists.
    old = getattr(boto3, "DEFAULT_SESSION", None)
    if old is None:
        return
    from ..credentials.sources import botocore_session_of, loaded_credentials

    inner = botocore_session_of(old)
    loaded = loaded_credentials(inner)
    if inner.instance_variables().get("profile") or (loaded is not None and loaded.method == "explicit"):
        return  # setup_default_session(profile_name=... / keys): the caller chose
    state.saved_default_session = old
    boto3.DEFAULT_SESSION = boto3.Session(region_name=old.region_name)
    logger.debug("replaced the boto3 default session made before install")


def unpatch() -> bool:
    """Undo install(): stop patching new sessions, restore the default session if ours.

    The installation's credentials stop (background thread included) and are dropped.
    Sessions that already hold them keep them (refreshing on use); sessions that have
    not loaded credentials yet fall back to botocore's chain. True if anything was undone.
    """
    global _generation, _installed
    deferred.settle()  # under brs-run: undo what the first session would have made
    with _lock:
        _generation += 1  # hooks registered earlier now do nothing
        ours, _installed = _installed, None
        botocore = sys.modules.get("botocore")
        state = getattr(botocore, MARKER, None)
        if ours is not None and ours is not state:
            ours.stop()  # installed, but botocore never arrived (or another copy patched)
        if botocore is None or state is None:
            return ours is not None
        _deactivate(botocore, state)
        state.stop()
    logger.debug("unpatched")
    return True


def _deactivate(botocore: ModuleType, state: Installation) -> None:
    state.active = False
    if state.initializer is not None:
        with contextlib.suppress(ValueError):
            botocore.unregister_initializer(state.initializer)
    if getattr(botocore, MARKER, None) is state:
        delattr(botocore, MARKER)
    boto3: Any = sys.modules.get("boto3")
    if boto3 is not None and _is_ours(getattr(boto3, "DEFAULT_SESSION", None), state):
        boto3.DEFAULT_SESSION = state.saved_default_session


def _is_ours(session: Any, state: Installation) -> bool:
    if session is None:
        return False
    from ..credentials.sources import botocore_session_of

    resolver = botocore_session_of(session).get_component("credential_provider")
    return getattr(resolver, "state", None) is state


def installed() -> Installation | None:
    """The installation the last install() made, active or waiting for botocore."""
    deferred.settle()  # under brs-run the first session makes it: now, then
    return _installed


def current() -> Installation | None:
    """The active installation, if botocore is imported and patched."""
    state: Installation | None = getattr(sys.modules.get("botocore"), MARKER, None)
    return state


@contextlib.contextmanager
def patched(environ: Mapping[str, str] | None = None, **settings: Any) -> Iterator[Installation | None]:
    """``with patched(role_arns=("arn:...",)):`` — install for a block, then undo exactly that.

    Pass ``environ`` (a mapping of BRS_* variables) or Settings fields. Blocks nest: the
    installation active before the block (its settings) is back after it. For tests.
    Arguments are checked here: a bad one is a ConfigError naming it.
    """
    from ..config.arguments import settings_from_arguments

    chosen = settings_from_arguments(settings, "patched()") if settings else None
    deferred.settle()  # under brs-run: the outer installation is the first session's
    with _lock:
        outer = _installed.settings if _installed is not None and _installed.active else None
    install(chosen, environ)
    try:
        yield current()
    finally:
        unpatch()
        if outer is not None:
            install(outer)
