"""brs-run's bootstrap: the ``sitecustomize`` of every Python process started under brs-run.

brs-run (brs_autopatch.launch.main) puts this file's directory first on ``PYTHONPATH``
and describes the interpreter it set up in ``BRS_BOOTSTRAP``::

    2:X.Y:<fingerprint>:<this directory>:<sys.prefix>

(protocol, Python version, the fingerprint of the settings the launcher checked,
bootstrap directory, interpreter prefix). At start-up this module, in order:

1. runs the user's own ``sitecustomize`` (the one the rest of ``sys.path`` holds, from
   ``PYTHONPATH`` or site-packages) exactly once, so one that sets ``BRS_*``/``AWS_*``
   variables is honoured; ``sys.modules["sitecustomize"]`` ends up as the user's module,
   or this one if there is none or it raised (reported on stderr the way site.py does);
2. checks that this interpreter is the one brs-run set up (same protocol, Python X.Y,
   bootstrap directory and ``sys.prefix``). A child from another venv, another Python or
   a stale bootstrap stops here, quietly (one line on stderr with BRS_LOG_LEVEL=DEBUG);
3. puts a finder on ``sys.meta_path`` that imports ``brs_autopatch`` when botocore is
   imported (at once if it already is): brs_autopatch's post-import hook then patches
   botocore as it arrives. A process that never imports botocore never loads brs_autopatch.
   The finder keeps a copy of the environment this process started with (``as_launched``:
   no ``BRS_*`` variable changed since), so that brs_autopatch.patch.deferred can leave
   the settings to the first session;
4. with ``BRS_PROPAGATE`` off, removes itself from the environment that children inherit
   (this process stays patched).

Before all that it takes its own directory off ``sys.path`` (``PYTHONPATH`` keeps it, for
children): the program sees the ``sys.path`` it would have without brs-run, and its
imports do not search one more directory (about 1% of ``import boto3``).

The same file is the ``brs_autopatch.launch.pth`` way in (``brs-run --install-pth``, see
brs_autopatch.launch.pth): that start-up line loads it under the name ``brs_autopatch_site``
(SITE_NAME) when ``BRS_ROLE_ARN`` or ``BRS_METHOD`` is set, and :func:`_site` only does
step 3, without a guard (the environment's owner installed the line) and without touching
``sitecustomize``, which runs as it would without brs_autopatch. Both ways arm one finder
per process: under brs-run in an environment with the line, the line arms it first (site
runs ``.pth`` lines before ``sitecustomize``) and the bootstrap hands it its ``BRS_BOOTSTRAP``.

It runs in every Python process under brs-run, most of which never import boto3: so no
``typing``, ``logging``, ``json``, ``re`` or ``importlib`` here, nothing before botocore
is needed, and never a byte on stdout.
"""

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from importlib.machinery import ModuleSpec, PathFinder
    from types import ModuleType

PROTOCOL = "2"
ENV = "BRS_BOOTSTRAP"
# The module name the brs_autopatch.launch.pth line loads this file under (brs_autopatch.launch.pth).
SITE_NAME = "brs_autopatch_site"
_FALSE = ("0", "false", "no", "off")
# Any brs_autopatch install's bootstrap directory ends like this.
_TAIL = os.sep + os.path.join("brs_autopatch", "bootstrap")


def _same_path(a: str, b: str) -> bool:
    return a == b or os.path.realpath(a) == os.path.realpath(b)


def _is_bootstrap_dir(entry: str, here: str) -> bool:
    """This directory, or another install's bootstrap (a nested or stale brs-run)."""
    if not entry:
        return False
    if entry == here:
        return True
    if "bootstrap" not in entry:  # most entries: no need to normalise them (~3 us each)
        return False
    path = os.path.normpath(os.path.abspath(entry))
    return path == here or path.endswith(_TAIL)


def _new_module(spec: "ModuleSpec") -> "ModuleType":
    # importlib.util.module_from_spec, without importing importlib.util (and contextlib,
    # functools, collections... with it).
    module = None
    if spec.loader is not None and hasattr(spec.loader, "create_module"):
        module = spec.loader.create_module(spec)
    if module is None:
        module = type(sys)(spec.name)
    module.__spec__ = spec
    module.__loader__ = spec.loader
    module.__package__ = spec.parent
    if spec.submodule_search_locations is not None:
        module.__path__ = spec.submodule_search_locations
    if spec.has_location and spec.origin is not None:
        module.__file__ = spec.origin
        if spec.cached is not None:
            module.__dict__["__cached__"] = spec.cached
    return module


def _path_finder() -> "type[PathFinder]":
    # importlib.machinery.PathFinder is the class on sys.meta_path already: importing
    # importlib.machinery for it costs more than all the rest of this module.
    for finder in sys.meta_path:
        if getattr(finder, "__name__", None) == "PathFinder" and hasattr(finder, "find_spec"):
            return finder  # type: ignore[return-value]
    from importlib.machinery import PathFinder

    return PathFinder


def _chain() -> None:
    """Run the sitecustomize that would have run without brs-run, exactly once."""
    spec = _path_finder().find_spec("sitecustomize", sys.path)
    if spec is None or spec.loader is None:
        return  # none: this module stays sys.modules["sitecustomize"], as an import left it
    ours = sys.modules.get("sitecustomize")
    module = _new_module(spec)
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        # Never leave the entry empty: site.py's own `import sitecustomize` (the import
        # running us) reads it back and would fail with KeyError.
        if ours is not None:
            sys.modules["sitecustomize"] = ours
        # What site.py prints for a failing sitecustomize; start-up goes on.
        if sys.flags.verbose:
            sys.excepthook(*sys.exc_info())
        elif sys.stderr is not None:
            sys.stderr.write(
                "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n"
                f"{error.__class__.__name__}: {error}\n"
            )
    except BaseException:  # SystemExit, KeyboardInterrupt: propagate, as without brs-run
        if ours is not None:
            sys.modules["sitecustomize"] = ours
        raise


def _guard(here: str) -> "str | None":
    """None if this interpreter is the one brs-run set up; otherwise why not."""
    value = os.environ.get(ENV)
    if not value:
        return f"{ENV} is not set (not started by brs-run)"
    parts = value.split(":", 4)
    if len(parts) != 5 or parts[0] != PROTOCOL:
        return f"{ENV}={value!r} was written by another brs_autopatch version"
    _, version, _checked, directory, prefix = parts
    ours = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if version != ours:
        return f"this is Python {ours}, brs-run ran under Python {version}"
    if not _same_path(directory, here):
        return f"stale bootstrap {here}: brs-run set up {directory}"
    if not _same_path(prefix, sys.prefix):
        return f"this interpreter's prefix is {sys.prefix}, brs-run's is {prefix}"
    return None


def _debug(message: str) -> None:
    if os.environ.get("BRS_LOG_LEVEL", "").strip().upper() == "DEBUG" and sys.stderr is not None:
        sys.stderr.write(f"brs_autopatch[{os.getpid()}] DEBUG bootstrap: {message}\n")


def _stop_propagation(here: str) -> None:
    """BRS_PROPAGATE=0: children of this process start without the bootstrap."""
    if os.environ.get("BRS_PROPAGATE", "").strip().lower() not in _FALSE:
        return
    entries = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    kept = [entry for entry in entries if entry and not _is_bootstrap_dir(entry, here)]
    if kept:
        os.environ["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        os.environ.pop("PYTHONPATH", None)
    os.environ.pop(ENV, None)


def _leave_sys_path(here: str) -> None:
    """Take every bootstrap directory (this one, a nested or stale brs-run's) off sys.path."""
    kept = [entry for entry in sys.path if not _is_bootstrap_dir(entry, here)]
    if len(kept) != len(sys.path):
        sys.path[:] = kept


def _load(bootstrap: str, as_launched: "Callable[[], bool] | None") -> bool:
    """Import brs_autopatch (its post-import hook on botocore); False if it cannot be."""
    try:
        from brs_autopatch.patch import deferred

        # BRS_PROPAGATE=0 took BRS_BOOTSTRAP off os.environ already: hand it over.
        deferred.receive(bootstrap, as_launched)
    except Exception as error:
        if sys.stderr is not None:
            sys.stderr.write(
                f"brs_autopatch: not patching this process: {error.__class__.__name__}: {error}\n"
            )
        return False
    return True


def _raw_environ() -> "dict[bytes, bytes] | None":
    """A copy of os.environ's own bytes mapping (~1 us; decoding it costs 100 times more)."""
    data = getattr(os.environ, "_data", None) if os.name == "posix" else None
    return dict(data) if isinstance(data, dict) else None


def _settings_of(raw: "dict[bytes, bytes]") -> "dict[bytes, bytes]":
    bootstrap = ENV.encode()
    return {name: value for name, value in raw.items() if name[:4] == b"BRS_" and name != bootstrap}


class _BeforeBotocore:
    """On sys.meta_path until botocore is imported, then loads brs_autopatch and lets its
    post-import hook (brs_autopatch.util.importer) find botocore. Finds nothing else, ever."""

    bootstrap = ""
    # The environment this process started with (brs-run's bootstrap only): as_launched.
    started: "dict[bytes, bytes] | None" = None
    armed = True
    # How _arm and brs_autopatch.patch.deferred recognise this finder, whatever the
    # name this file was loaded under (.pth, brs-run).
    brs_autopatch_finder = True

    @classmethod
    def as_launched(cls) -> bool:
        """Whether brs-run checked this process's settings and no BRS_* variable changed
        since it started (brs_autopatch.patch.deferred: then the patch waits for a session)."""
        parts = cls.bootstrap.split(":", 4)
        if len(parts) != 5 or parts[0] != PROTOCOL or parts[2] in ("", "-") or cls.started is None:
            return False
        now = _raw_environ()
        return now is not None and _settings_of(now) == _settings_of(cls.started)

    @classmethod
    def find_spec(cls, fullname: str, path: object = None, target: object = None) -> "ModuleSpec | None":
        if fullname != "botocore" or not cls.armed:
            return None
        cls.armed = False  # once; staying on sys.meta_path is cheaper than leaving it mid-search
        if not _load(cls.bootstrap, cls.as_launched):
            return None
        from brs_autopatch.util import importer

        # brs_autopatch put its own finder first on sys.meta_path, before this one: the
        # search under way has passed it, so ask it here.
        spec: ModuleSpec | None = importer.find_spec(fullname, path, target)
        return spec


def _main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    _leave_sys_path(here)
    # Before the user's sitecustomize: a BRS_* variable it sets is the program's change
    # (checked as botocore arrives), not the launcher's.
    started = _raw_environ()
    _chain()
    reason = _guard(here)
    if reason is not None:
        value = os.environ.get(ENV, "")
        if value and ":" not in value and sys.stderr is not None:
            # Set by hand (an old Lambda wrapper recipe said BRS_BOOTSTRAP=1): no brs-run
            # writes that, so say it once instead of running with the source credentials.
            sys.stderr.write(
                f"brs_autopatch: not patching: {ENV}={value!r} is written by brs-run only; "
                "start the program with brs-run (python -m brs_autopatch) or import brs_autopatch\n"
            )
            return
        _debug(f"not patching this interpreter: {reason}")
        return
    try:
        _arm(os.environ.get(ENV, ""), started)
    finally:
        _stop_propagation(here)


def _arm(bootstrap: str, started: "dict[bytes, bytes] | None" = None) -> None:
    """Load brs_autopatch with botocore: once per process, whichever way in comes first."""
    if "botocore" in sys.modules:  # a user sitecustomize or another .pth imported it
        _load(bootstrap, None)
        return
    started = started if bootstrap else None
    for finder in sys.meta_path:
        if getattr(finder, "brs_autopatch_finder", False):
            # Armed already (the .pth line, then brs-run's bootstrap): one finder, and
            # brs-run's description of what it checked, if there is one.
            if bootstrap:
                finder.bootstrap = bootstrap  # type: ignore[attr-defined]
                finder.started = started  # type: ignore[attr-defined]
            return
    _BeforeBotocore.bootstrap = bootstrap
    _BeforeBotocore.started = started
    sys.meta_path.insert(0, _BeforeBotocore)


def _site() -> None:
    """The brs_autopatch.launch.pth line: arm the finder unless BRS_ENABLED says no."""
    if os.environ.get("BRS_ENABLED", "").strip().lower() in _FALSE:
        return
    _arm("")


if __name__ == "sitecustomize":  # brs-run put this directory first on PYTHONPATH
    _main()
elif __name__ == SITE_NAME:  # loaded by the brs_autopatch.launch.pth line
    _site()
