"""Starting programs the way users do: brs-run, a fresh venv, a node client.

Plain helpers and constants, shared by the test modules that launch programs (the
fixtures built on them, ``base_env`` and ``launch``, are in conftest.py). Not a test
module: test modules import from here, never from each other.

* the launcher: ``MODULE`` / ``BRS_RUN``, the role and session every launch assumes
  (``ROLE``, ``SESSION``, ``ASSUMED``), ``run_command`` -> ``Result``,
  ``make_base_env`` / ``make_launch`` (what the fixtures return), ``write``;
* a plain child environment without a role (``app_env``);
* a user's own sitecustomize (``USER_SITE``), a venv that carries one (``make_venv``)
  and the interpreter's native one (``native_sitecustomize``);
* the AWS SDK for JavaScript v3: ``NODE_DIR``, ``NODE_ENV``, ``JS_CLIENT``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from stsclient import DEFAULT_ACCOUNT_ID, REPO_ROOT, child_base_env, child_env, make_role_arn

VENV_BIN = Path(sys.executable).parent
BRS_RUN = VENV_BIN / "brs-run"
MODULE = (sys.executable, "-m", "brs_autopatch")
SESSION = "brs-test"
ROLE = make_role_arn("brs-test-role")
ASSUMED = f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:assumed-role/brs-test-role/{SESSION}"
TIMEOUT = 60.0


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    pid: int


Launch = Callable[..., Result]


def run_command(
    cmd: Sequence[str | os.PathLike[str]],
    env: Mapping[str, str],
    cwd: str | os.PathLike[str],
    timeout: float = TIMEOUT,
) -> Result:
    """Run ``cmd`` in its own process group; on timeout kill the group and fail."""
    args = [os.fspath(part) for part in cmd]
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=dict(env), cwd=os.fspath(cwd), start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as error:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        if isinstance(error, subprocess.TimeoutExpired):
            pytest.fail(f"timed out after {timeout}s: {args!r}\n--- stdout ---\n{out}\n"
                        f"--- stderr ---\n{err}", pytrace=False)
        raise
    return Result(proc.returncode, out, err, proc.pid)


def make_base_env(aws_env: Mapping[str, str], tmp_path: Path) -> dict[str, str]:
    """The environment a user would launch with: AWS pointed at the local STS, a role set.

    The repo root is on PYTHONPATH (as for run_python), so the launcher and every
    child import this checkout's brs_autopatch; the venv's bin comes first on PATH,
    so `python` is this venv's interpreter.
    """
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return child_env(
        aws_env,
        home,
        bin_dir=VENV_BIN,
        pythonpath=REPO_ROOT,
        overrides={"BRS_ROLE_ARN": ROLE, "BRS_ROLE_SESSION_NAME": SESSION},
    )


def make_launch(base_env: Mapping[str, str], tmp_path: Path) -> Launch:
    """``launch(cmd, env={...overrides, None removes}, cwd=tmp_path, timeout=60)``."""

    def run(
        cmd: Sequence[str | os.PathLike[str]],
        env: Mapping[str, str | None] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = TIMEOUT,
    ) -> Result:
        env_for_child = dict(base_env)
        for name, value in (env or {}).items():
            if value is None:
                env_for_child.pop(name, None)
            else:
                env_for_child[name] = value
        return run_command(cmd, env_for_child, tmp_path if cwd is None else cwd, timeout)

    return run


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def app_env(aws_env: Mapping[str, str], tmp_path: Path, *pythonpath: Path) -> dict[str, str]:
    """A child environment without a role: ``aws_env``, HOME = an empty temp dir, and
    ``pythonpath`` then the repo root on PYTHONPATH (PATH and locale as ``child_base_env``)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = child_base_env()
    env.update(aws_env)
    env["HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (*pythonpath, REPO_ROOT))
    return env


# -- a user's own sitecustomize ----------------------------------------------------------------

# A user's own sitecustomize, steered by variables so one file serves every test. Its
# log says which interpreter ran it: the program (BRS_BOOTSTRAP set) or the launcher
# itself, a Python process too, which runs the same site-packages / PYTHONPATH start-up.
USER_SITE = """\
import os
if os.environ.get("USER_SITE_LOG"):
    who = "program" if "BRS_BOOTSTRAP" in os.environ else "launcher"
    with open(os.environ["USER_SITE_LOG"], "a") as log:
        log.write(who + " " + __file__ + "\\n")
if os.environ.get("USER_SITE_SESSION"):
    os.environ["BRS_ROLE_SESSION_NAME"] = os.environ["USER_SITE_SESSION"]
if os.environ.get("USER_SITE_RAISE"):
    raise RuntimeError(os.environ["USER_SITE_RAISE"])
USER_SITE_RAN = True
"""


def make_venv(base: Path | str, root: Path) -> Path:
    """A venv from ``base`` that sees this venv's packages (boto3, brs_autopatch) and has a
    user sitecustomize in its site-packages. Returns its python."""
    subprocess.run([base, "-m", "venv", "--without-pip", str(root)],
                   check=True, capture_output=True, timeout=120)
    python = root / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()
    ours = sysconfig.get_path("purelib")
    write(Path(site) / "brs-test-deps.pth", f"import site; site.addsitedir({ours!r})\n")
    write(Path(site) / "sitecustomize.py", USER_SITE)
    return python


_NATIVE: dict[str, str | None] = {}


def native_sitecustomize(python: str | os.PathLike[str]) -> str | None:
    """The sitecustomize ``python`` runs without brs-run (no PYTHONPATH), or None.

    Debian's and Ubuntu's interpreters (and venvs made from them) have one of their own,
    /usr/lib/python3.X/sitecustomize.py, ahead of site-packages; python.org, pyenv and
    Docker ``python:*`` builds have none. The bootstrap runs that one, as Python would.
    """
    key = os.fspath(python)
    if key not in _NATIVE:
        code = "import sys, sitecustomize; print(getattr(sitecustomize, '__file__', None))"
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("PYTHON", "BRS_", "USER_SITE_"))}
        result = subprocess.run([key, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        found = result.stdout.strip() if result.returncode == 0 else "None"
        _NATIVE[key] = None if found == "None" else found
    return _NATIVE[key]


# -- the AWS SDK for JavaScript v3 -------------------------------------------------------------

# Where scripts/node-deps installs @aws-sdk/client-sts (the `node` fixture runs it).
NODE_DIR = REPO_ROOT / ".cache" / "node"
NODE_ENV = {
    "NODE_PATH": str(NODE_DIR / "node_modules"),
    "NODE_NO_WARNINGS": "1",  # the SDK's "node >= 22 soon" notice
}
JS_CLIENT = """
const { STSClient, GetCallerIdentityCommand } = require("@aws-sdk/client-sts");
const n = parseInt(process.argv[2] || "1"), gap = parseFloat(process.argv[3] || "0");
(async () => {
  const client = new STSClient({ region: process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION });
  for (let i = 0; i < n; i++) {
    const answer = await client.send(new GetCallerIdentityCommand({}));
    console.log(answer.Arn);
    if (gap) await new Promise((done) => setTimeout(done, gap * 1000));
  }
})().catch((error) => { console.error(String(error)); process.exit(1); });
"""
