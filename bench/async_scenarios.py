"""Async scenarios: aiobotocore under brs_autopatch vs the anchors that work.

Candidates (each measured in a fresh interpreter, so the patch of one never touches
another):

* ``aiobotocore-profile`` — aiobotocore's own chain with a config-file role profile;
* ``aioboto3-assume`` — ``aioboto3_assume.assume_role`` (aiobotocore's refreshable
  credentials, botocore's 15/10-minute windows);
* ``brs_autopatch`` — ``import brs_autopatch`` (``BRS_DEFER_REFRESH`` true / false).

Scenarios: ``calls`` (AssumeRole calls for N aiobotocore calls at 900 s), ``latency``
(worst call and worst event-loop lag, a 1 ms ticker, across refreshes of 12-second
credentials with STS slowed to 2 s), ``cost`` (``await get_frozen_credentials()`` vs
static ``AioCredentials``). Needs aiobotocore, aioboto3 and aioboto3-assume
(``pip install -e '.[bench-async]'`` into its own venv: they pin botocore).

    python -m bench.async_scenarios [--quick] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .env import ROLE_ARN, StsServer, bench_env, process_server, profile_name
from .report import Table

REPO = Path(__file__).resolve().parent.parent
CANDIDATES = ("aiobotocore-profile", "aioboto3-assume", "brs_autopatch", "brs_autopatch defer=False")
LATENCY_LIFETIME = 12  # seconds, the server's duration override
STS_DELAY = 2.0


# -- the child: one candidate, one scenario ---------------------------------------------------------


def _session(candidate: str, duration: int) -> Any:
    """An object with ``create_client(name)`` (an async context manager) for ``candidate``."""
    if candidate.startswith("brs_autopatch"):
        import aiobotocore.session

        import brs_autopatch  # noqa: F401  (the patch; settings from BRS_* set by the parent)

        return aiobotocore.session.get_session()
    if candidate == "static AioCredentials":  # the baseline: the machine's own noise
        import aiobotocore.session

        static = aiobotocore.session.get_session()
        static.set_credentials("AKIDSTATIC0000000000", "secret")
        return static
    if candidate == "aiobotocore-profile":
        import aiobotocore.session

        return aiobotocore.session.AioSession(profile=profile_name(duration))
    if candidate == "aioboto3-assume":
        import aioboto3
        from aioboto3_assume import assume_role

        session = assume_role(
            source_session=aioboto3.Session(profile_name="bench-source"),
            assume_role_kwargs={
                "RoleArn": ROLE_ARN,
                "RoleSessionName": "bench-aioboto3-assume",
                "DurationSeconds": duration,
            },
        )

        class Adapter:
            def create_client(self, name: str) -> Any:
                return session.client(name)

        return Adapter()
    raise SystemExit(f"unknown candidate {candidate!r}")


async def _calls(candidate: str, count: int) -> dict[str, Any]:
    session = _session(candidate, 900)
    started = time.perf_counter()
    async with session.create_client("sts") as sts:
        for _ in range(count):  # one after another, as a request loop makes them
            await sts.get_caller_identity()
    return {"seconds": time.perf_counter() - started}


async def _latency(candidate: str, seconds: float) -> dict[str, Any]:
    session = _session(candidate, 900)
    lags: list[float] = []
    calls: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - before - 0.001)

    async with session.create_client("sts") as sts:
        await sts.get_caller_identity()  # the first AssumeRole is not what is measured
        tick = asyncio.create_task(ticker())
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            await sts.get_caller_identity()
            calls.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)
        stop.set()
        await tick
    return {"worst_call_ms": max(calls) * 1000, "worst_lag_ms": max(lags) * 1000, "calls": len(calls)}


async def _cost(candidate: str, rounds: int) -> dict[str, Any]:
    from aiobotocore.credentials import AioCredentials

    if candidate == "static":
        credentials: Any = AioCredentials("AKIDSTATIC0000000000", "secret")
    else:
        session = _session(candidate, 3600)
        async with session.create_client("sts") as sts:
            await sts.get_caller_identity()
            credentials = sts._request_signer._credentials  # what the signer awaits per request
    await credentials.get_frozen_credentials()
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            await credentials.get_frozen_credentials()
        best = min(best, (time.perf_counter() - started) / rounds)
    return {"ns": best * 1e9}


def child(scenario: str, candidate: str, amount: float) -> None:
    if scenario == "calls":
        result = asyncio.run(_calls(candidate, int(amount)))
    elif scenario == "latency":
        result = asyncio.run(_latency(candidate, amount))
    else:
        result = asyncio.run(_cost(candidate, int(amount)))
    print(json.dumps(result))


# -- the parent: run the children against one server, make the tables ------------------------------


def _run_child(scenario: str, candidate: str, amount: float, server: StsServer) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if candidate.startswith("brs_autopatch"):
        env.update(
            BRS_ROLE_ARN=ROLE_ARN,
            BRS_ROLE_SESSION_NAME="bench-brs",
            BRS_DURATION_SECONDS="900" if scenario == "calls" else "3600",
            BRS_DEFER_REFRESH="false" if "defer=False" in candidate else "true",
        )
    command = [sys.executable, "-m", "bench.async_scenarios", "--child", scenario, candidate, str(amount)]
    done = subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{candidate} {scenario} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["assume_role"] = server.count("sts:AssumeRole")
    return result


def run(quick: bool = False, only: tuple[str, ...] = ("calls", "latency", "cost")) -> list[Table]:
    calls = 200 if quick else 2000
    anchor_calls = 100 if quick else 300
    seconds = 6.0 if quick else 10.0
    rounds = 2000 if quick else 20000
    tables: list[Table] = []
    with bench_env() as env, process_server() as server:
        env.use(server.url)
        os.environ.pop("AWS_ACCESS_KEY_ID", None)  # the anchors' source comes from a profile
        os.environ.pop("AWS_SECRET_ACCESS_KEY", None)
        os.environ["AWS_PROFILE"] = "bench-source"

        if "calls" in only:
            tables.append(_calls_table(server, calls, anchor_calls))
        if "latency" in only:
            tables.append(_latency_table(server, seconds))
        if "cost" in only:
            tables.append(_cost_table(server, rounds))
    return tables


def _calls_table(server: StsServer, calls: int, anchor_calls: int) -> Table:
    table = Table("async_calls", "AssumeRole calls for sequential aiobotocore calls, 900 s credentials",
                  ["candidate", "calls", "AssumeRole calls", "per call", "wall time per call"])
    for candidate in CANDIDATES[:3]:
        server.reset(moto=True)
        # The anchors make one AssumeRole per call (900 s is inside botocore's 10-minute
        # mandatory window): fewer calls show that without an hour on a shared machine.
        count = calls if candidate.startswith("brs_autopatch") else anchor_calls
        result = _run_child("calls", candidate, count, server)
        table.add(candidate, count, result["assume_role"], f"{result['assume_role'] / count:.3f}",
                  f"{result['seconds'] / count * 1000:.1f} ms")
        table.data[candidate] = {**result, "calls": count}
    return table


def _latency_table(server: StsServer, seconds: float) -> Table:
    table = Table("async_latency", f"across refreshes of {LATENCY_LIFETIME}-second credentials, "
                  f"STS slowed to {STS_DELAY:.0f} s ({seconds:.0f} s of calls every 10 ms)",
                  ["candidate", "worst call", "worst event-loop lag", "calls made", "AssumeRole"])
    for candidate in ("static AioCredentials", *CANDIDATES):
        server.reset(moto=True)
        server.set_duration_override(LATENCY_LIFETIME)
        server.fault("AssumeRole", "delay", delay_seconds=STS_DELAY)
        result = _run_child("latency", candidate, seconds, server)
        table.add(candidate, f"{result['worst_call_ms']:.0f} ms", f"{result['worst_lag_ms']:.1f} ms",
                  result["calls"], result["assume_role"])
        table.data[candidate] = result
    table.notes.append("event-loop lag: the worst overshoot of a 1 ms asyncio.sleep ticker, started "
                       "after the first call; static AioCredentials (no refresh at all) shows "
                       "what the machine itself adds")
    return table


def _cost_table(server: StsServer, rounds: int) -> Table:
    table = Table("async_cost", "per-request credential cost: await get_frozen_credentials()",
                  ["candidate", "ns per call", "vs static AioCredentials"])
    server.reset(moto=True)
    static = _run_child("cost", "static", rounds, server)["ns"]
    table.add("static AioCredentials", f"{static:.0f}", "1.0x")
    for candidate in CANDIDATES[:3]:
        server.reset(moto=True)
        ns = _run_child("cost", candidate, rounds, server)["ns"]
        table.add(candidate, f"{ns:.0f}", f"{ns / static:.1f}x")
        table.data[candidate] = ns
    return table


BEGIN, END = "<!-- async-scenarios:begin -->", "<!-- async-scenarios:end -->"


def kept_section(path: Path) -> str:
    """The async section of docs/bench.md, for run.py to keep when it rewrites the file."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        return text[text.index(BEGIN) : text.index(END) + len(END)] + "\n"
    return ""


def write_docs(path: Path, markdown: str) -> None:
    """Put (or replace) the async section at the end of docs/bench.md."""
    text = path.read_text() if path.exists() else ""
    old = kept_section(path)
    if old:
        text = text.replace(old, "")
    section = f"{BEGIN}\n## Async stacks\n\n{markdown}\n{END}\n"
    path.write_text(text.rstrip("\n") + "\n\n" + section)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("botocore", "aiobotocore", "aioboto3", "aioboto3-assume"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.async_scenarios", description=__doc__)
    parser.add_argument("--child", nargs=3, metavar=("SCENARIO", "CANDIDATE", "AMOUNT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small numbers (~3 min)")
    parser.add_argument("--only", default="calls,latency,cost", help="scenarios, comma-separated")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown to this file")
    parser.add_argument("--write-docs", action="store_true",
                        help="put the tables into docs/bench.md (section 'Async stacks')")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], float(args.child[2]))
        return 0
    if args.write_docs and set(args.only.split(",")) != {"calls", "latency", "cost"}:
        parser.error("--write-docs needs every scenario (no --only)")
    started = time.perf_counter()
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()), flush=True)
    tables = run(quick=args.quick, only=tuple(args.only.split(",")))
    for table in tables:
        print("\n" + table.text(), flush=True)
    total = time.perf_counter() - started
    print(f"\ntotal {total:.0f} s", flush=True)
    head = ("Generated by `python -m bench.async_scenarios` (in a venv with the `bench-async` "
            "extra). Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items())
            + f"; {'--quick, ' if args.quick else ''}{total:.0f} s on {os.cpu_count()} CPUs.")
    markdown = "\n\n".join([head, *(t.markdown() for t in tables)]) + "\n"
    if args.markdown:
        args.markdown.write_text(markdown)
    if args.write_docs:
        write_docs(REPO / "docs" / "bench.md", markdown)
        print("wrote the async section of docs/bench.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
