"""``brs-run --install-pth`` / ``--remove-pth``: the interpreter-wide way in, as a ``.pth`` line.

``site`` runs the ``import`` lines of every ``*.pth`` file in site-packages at start-up,
for every interpreter of that environment (``python -S`` aside), before ``sitecustomize``.
That makes a ``.pth`` line work where a ``sitecustomize.py`` copied into site-packages is
shadowed: Debian's and Ubuntu's interpreters, and venvs made from them, import
``/usr/lib/python3.X/sitecustomize.py`` first (it is earlier on ``sys.path``).

The line written here (``brs_autopatch.launch.pth``) does nothing unless ``BRS_ROLE_ARN`` or
``BRS_METHOD`` is set; then it loads brs-run's bootstrap file (bootstrap/sitecustomize.py)
under another name, which puts the same finder on ``sys.meta_path`` as brs-run does:
brs_autopatch itself is imported only when botocore is. Under brs-run both arm one finder.
Any error is one line on stderr and the interpreter starts unpatched: a ``.pth`` line that
raises would print a traceback and skip the rest of its file.

Opt-in, not shipped in the wheel: a ``.pth`` in the wheel would patch every interpreter
of every environment brs_autopatch is installed in (a venv that has it only for
``brs-run --check``, CI images...) whenever ``BRS_ROLE_ARN`` is inherited, and would undo
``BRS_PROPAGATE=0``. Installing it is the explicit act of whoever owns the interpreter.
pip does not know the file: ``--remove-pth`` (or deleting it) before ``pip uninstall``;
a line left behind says so on stderr in processes that set ``BRS_ROLE_ARN``.

Not for Python 3.18+, which ignores ``import`` lines in ``.pth`` files (PEP 829, whose
``.start`` files take ``pkg.mod:callable`` entry points from 3.15 on).
"""

from __future__ import annotations

import os
import sys

from .. import BOOTSTRAP_DIR

PTH_NAME = "brs_autopatch.launch.pth"
# The bootstrap module's own constant (bootstrap/sitecustomize.py SITE_NAME): it cannot
# import this package, tests/launch/test_pth.py checks that both agree.
SITE_NAME = "brs_autopatch_site"
_HEADER = "# brs_autopatch: written by `brs-run --install-pth`"

# Run by site at every start-up of the environment's interpreters: two dictionary lookups
# when unset. When set, it loads the bootstrap with the PathFinder already on sys.meta_path
# (its loader's get_code reads the bootstrap's cached bytecode): importing importlib.machinery
# would cost more than the bootstrap itself. The module name goes into sys.modules before
# anything runs, None on failure: Debian's venvs run site-packages' .pth lines twice per
# start-up (its site.venv() adds them, then site.main() again), and this must act once.
_CODE = """\
if (os.environ.get("BRS_ROLE_ARN") or os.environ.get("BRS_METHOD")) and {name!r} not in sys.modules:
    sys.modules[{name!r}] = None
    try:
        finder = [f for f in sys.meta_path if getattr(f, "__name__", "") == "PathFinder"][0]
        spec = finder.find_spec("sitecustomize", [{directory!r}])
        if spec is None or spec.loader is None:
            raise FileNotFoundError({directory!r} + " is gone (brs_autopatch uninstalled?): delete this file")
        module = type(sys)({name!r})
        module.__file__ = spec.origin
        code = spec.loader.get_code("sitecustomize")
        sys.modules[{name!r}] = module
        exec(code, module.__dict__)
    except Exception as error:
        sys.modules[{name!r}] = None
        if sys.stderr is not None:
            sys.stderr.write("brs_autopatch: not patching this process (%s): %s: %s\\n"
                             % ({pth!r}, type(error).__name__, error))
"""


def site_directory() -> str:
    """This interpreter's site-packages (``purelib``): where ``site`` reads ``.pth`` files."""
    import sysconfig

    return sysconfig.get_path("purelib")


def pth_text(directory: str, bootstrap_dir: str = BOOTSTRAP_DIR) -> str:
    """The file: two comment lines and one ``import`` line (site runs lines that start so)."""
    pth = os.path.join(directory, PTH_NAME)
    code = _CODE.format(name=SITE_NAME, directory=bootstrap_dir, pth=pth)
    line = f"import os, sys; exec({code!r})"
    return (
        f"{_HEADER}; `brs-run --remove-pth` or deleting this file removes it.\n"
        "# Patches every Python of this environment that starts with BRS_ROLE_ARN (or BRS_METHOD) set.\n"
        f"{line}\n"
    )


def is_ours(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as file:
            return file.readline().startswith(_HEADER)
    except OSError:
        return False


def install(directory: str) -> str:
    """Write the file (atomically: a start-up never reads half of it); returns its path."""
    pth = os.path.join(directory, PTH_NAME)
    if os.path.exists(pth) and not is_ours(pth):
        raise OSError(f"{pth} exists and was not written by brs-run --install-pth: not replacing it")
    temporary = f"{pth}.{os.getpid()}.tmp"  # not *.pth: site never reads it
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(pth_text(directory))
        os.replace(temporary, pth)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return pth


def remove(directory: str) -> str | None:
    """Delete the file if it is ours; returns its path, or None if there was none."""
    pth = os.path.join(directory, PTH_NAME)
    if not os.path.exists(pth):
        return None
    if not is_ours(pth):
        raise OSError(f"{pth} was not written by brs-run --install-pth: not removing it")
    os.unlink(pth)
    return pth


def _loads(directory: str) -> bool:
    """Whether a new interpreter of this environment runs the line (BRS_ROLE_ARN set, no botocore)."""
    import subprocess

    env = {key: value for key, value in os.environ.items() if not key.startswith("BRS_")}
    env["BRS_ROLE_ARN"] = "arn:aws:iam::123456789012:role/brs-install-pth-check"
    code = f"import sys; print(sys.modules.get({SITE_NAME!r}) is not None)"
    try:
        result = subprocess.run(
            [sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.stdout.strip() == "True"


def run(action: str, prog: str) -> int:
    """The launcher's ``--install-pth`` / ``--remove-pth``: one line on stdout, exit 0 or 1."""
    directory = site_directory()
    try:
        if action == "install-pth":
            pth = install(directory)
        else:
            removed = remove(directory)
            sys.stdout.write(f"{prog}: removed {removed}\n" if removed else
                             f"{prog}: no {PTH_NAME} in {directory}: nothing to remove\n")
            return 0
    except OSError as error:
        sys.stderr.write(f"{prog}: {error}\n")
        return 1
    if not _loads(directory):
        sys.stderr.write(f"{prog}: wrote {pth}, but {sys.executable} does not run it at start-up\n")
        return 1
    sys.stdout.write(
        f"{prog}: installed {pth}: every {sys.executable} started with BRS_ROLE_ARN set is patched\n"
    )
    return 0
