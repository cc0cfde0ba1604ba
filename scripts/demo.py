"""Run sitecustomize_example/app.py, unmodified, under brs-run against a local STS.

The local STS (moto, tests/sts_server.py) listens on 127.0.0.1 only and issues
credentials that live 12 seconds, so brs_autopatch's lifetime-scaled refresh is
visible within seconds. At the end the server says how many AssumeRole calls it saw.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from stsclient import isolated_aws_env, start_server  # noqa: E402

LIFETIME = 12
CALLS = 10


def main() -> int:
    brs_run = shutil.which("brs-run", path=str(Path(sys.executable).parent))
    if brs_run is None:
        sys.exit("brs-run not found next to this interpreter: run ./scripts/demo")
    with tempfile.TemporaryDirectory() as tmp, start_server() as server:
        server.set_duration_override(LIFETIME)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BRS_"))}
        env.update(isolated_aws_env(server.url, Path(tmp)))
        env.update(
            BRS_ROLE_ARN="arn:aws:iam::123456789012:role/demo",
            BRS_ROLE_SESSION_NAME="brs-demo",
            BRS_LOG_LEVEL="INFO",
            DEMO_CALLS=str(CALLS),
            DEMO_INTERVAL="1",
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        )
        print(f"local STS at {server.url}; credentials live {LIFETIME} s", flush=True)
        print(f"$ brs-run python sitecustomize_example/app.py   (BRS_ROLE_ARN={env['BRS_ROLE_ARN']})\n",
              flush=True)
        done = subprocess.run(
            [brs_run, "python", str(ROOT / "sitecustomize_example" / "app.py")], env=env, check=False
        )
        counts = server.counts()
        print(
            f"\nSTS server saw {counts.get('sts:AssumeRole', 0)} AssumeRole and "
            f"{counts.get('sts:GetCallerIdentity', 0)} GetCallerIdentity calls "
            f"for {CALLS} app calls over ~{CALLS} s with {LIFETIME}-second credentials."
        )
        return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
