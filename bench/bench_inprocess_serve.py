"""Cost of ``BRS_SERVE=true`` with ``import brs_autopatch``: start-up, and the endpoint's answers.

    python bench/bench_inprocess_serve.py [--rounds 15] [--answers 300] [--json PATH]

Run it with the Python of a venv where brs_autopatch is installed, from the repository
root (the fake credential method lives in ``bench``). No network: the role comes from a
``custom`` credential method that returns fake credentials at once
(:func:`fake_role`), so what is timed is brs_autopatch, not STS.

* start-up: fresh interpreters running ``import brs_autopatch`` with the role set, with
  and without ``BRS_SERVE=true``, in interleaved rounds (the order flips every round);
  medians of the wall and CPU (user + system, steadier on a busy machine) time of the
  whole process and of the import alone (timed inside it). References for the question
  "switch on when a native client is imported?": ``python -c pass``, ``import botocore``
  (BRS_SERVE resolves the source credentials with botocore at import) and
  ``import pyarrow.fs``.
* answers: in one process with BRS_SERVE=true, the first GET of the endpoint (it builds
  the credentials object and fetches) and then ``--answers`` GETs on new connections,
  p50/p99, as a native client's container provider makes them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASE_ENV = {
    "BRS_METHOD": "custom",
    "BRS_CUSTOM_METHOD": "bench.bench_inprocess_serve:fake_role",
    "AWS_ACCESS_KEY_ID": "AKIDBENCHSOURCE00000",
    "AWS_SECRET_ACCESS_KEY": "bench-source-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/brs-bench/config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/brs-bench/credentials",
}
IMPORT = (
    "import time; t = time.perf_counter(); import brs_autopatch; "
    "print((time.perf_counter() - t) * 1000)"
)
# The same, in a program that imports botocore anyway (any boto3 user): the difference
# is then what BRS_SERVE itself costs.
IMPORT_AFTER_BOTOCORE = "import botocore.session; " + IMPORT
ANSWERS = """
import http.client, json, os, sys, time
t = time.perf_counter()
import brs_autopatch
started = (time.perf_counter() - t) * 1000
url = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
token = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
def get():
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    t = time.perf_counter()
    connection.request("GET", "/credentials", headers={"Authorization": token})
    body = connection.getresponse().read()
    elapsed = (time.perf_counter() - t) * 1000
    connection.close()
    assert json.loads(body)["AccessKeyId"], body
    return elapsed
first = get()
samples = [get() for _ in range(int(sys.argv[1]))]
print(json.dumps({"import_ms": started, "first_ms": first, "samples": samples}))
"""


BEGIN, END = "<!-- inprocess-serve:begin -->", "<!-- inprocess-serve:end -->"


def kept_section(path: Path) -> str:
    """This bench's section of docs/bench.md (figures and notes written by hand from its
    output), for run.py to keep when it rewrites the file."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        return text[text.index(BEGIN) : text.index(END) + len(END)] + "\n"
    return ""


def fake_role() -> dict[str, Any]:
    """``BRS_CUSTOM_METHOD=bench.bench_inprocess_serve:fake_role``: 1-hour fake credentials."""
    expiry = datetime.fromtimestamp(time.time() + 3600, timezone.utc)
    return {"access_key": "ASIABENCHROLE0000000", "secret_key": "bench-secret", "token": "bench-token",
            "expiry_time": expiry.isoformat()}


def environment(**extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "BRS_")) and name != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(BASE_ENV)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(code: str, env: dict[str, str]) -> tuple[float, float, str]:
    """Wall and CPU (user + system) milliseconds of one child, and its stdout."""
    cpu = _cpu()
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    wall = (time.perf_counter() - started) * 1000
    if result.returncode != 0:
        raise SystemExit(f"bench child failed ({code!r}):\n{result.stderr}")
    return wall, (_cpu() - cpu) * 1000, result.stdout.strip()


def startup(rounds: int) -> dict[str, dict[str, float]]:
    cases = {
        "python -c pass": ("pass", environment()),
        "import brs_autopatch (role set)": (IMPORT, environment()),
        "import brs_autopatch, BRS_SERVE=true": (IMPORT, environment(BRS_SERVE="true")),
        "botocore, then import brs_autopatch": (IMPORT_AFTER_BOTOCORE, environment()),
        "botocore, then import brs_autopatch, BRS_SERVE=true": (
            IMPORT_AFTER_BOTOCORE, environment(BRS_SERVE="true")
        ),
        "import botocore (reference)": ("import botocore.session", environment()),
        "import pyarrow.fs (reference)": ("import pyarrow.fs", environment()),
    }
    walls: dict[str, list[float]] = {name: [] for name in cases}
    cpus: dict[str, list[float]] = {name: [] for name in cases}
    inner: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for _ in range(2):  # warm the page cache and the bytecode
        for name in names:
            timed(*cases[name])
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            wall, cpu, out = timed(*cases[name])
            walls[name].append(wall)
            cpus[name].append(cpu)
            if cases[name][0] in (IMPORT, IMPORT_AFTER_BOTOCORE):
                inner[name].append(float(out))
    return {
        name: {
            "wall_ms": statistics.median(walls[name]),
            "cpu_ms": statistics.median(cpus[name]),
            **({"import_ms": statistics.median(inner[name])} if inner[name] else {}),
        }
        for name in names
    }


def answers(count: int) -> dict[str, float]:
    _, _, out = timed(ANSWERS.replace("sys.argv[1]", str(count)), environment(BRS_SERVE="true"))
    found = json.loads(out.splitlines()[-1])
    samples = sorted(found["samples"])
    return {
        "first_ms": found["first_ms"],
        "p50_ms": statistics.median(samples),
        "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--answers", type=int, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started, answered = startup(args.rounds), answers(args.answers)
    results = {"startup": started, "answers": answered}
    print(f"### import brs_autopatch with BRS_SERVE=true ({args.rounds} interleaved rounds, medians)\n")
    print("| process | wall ms | CPU ms | import ms |")
    print("|---|---:|---:|---:|")
    for name, row in started.items():
        inner = f"{row['import_ms']:.1f}" if "import_ms" in row else "-"
        print(f"| {name} | {row['wall_ms']:.1f} | {row['cpu_ms']:.1f} | {inner} |")
    answer = answered
    print(f"\n### the in-process endpoint's answers ({args.answers} GETs, new connection each)\n")
    print("| first answer ms | p50 ms | p99 ms |")
    print("|---:|---:|---:|")
    print(f"| {answer['first_ms']:.2f} | {answer['p50_ms']:.2f} | {answer['p99_ms']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
