"""``python -m bench``: run the scenarios, print the tables, optionally write docs/.

Scenario flags (none given = all): --burst (a), --timeline (b), --threads (c),
--cost (d), --latency (e), --sessions (f), --day (the headline chart's data),
--serve (brs-run --serve: a launch tree's AssumeRole calls, endpoint latency).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from . import fleet, scenarios, serve_scenarios
from .candidates import CANDIDATES, select, versions
from .env import bench_env, process_server
from .report import Table, chart

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = ("burst", "timeline", "threads", "cost", "latency", "sessions", "day", "fleet", "serve")
ORDER = ("day", "burst", "timeline", "threads", "cost", "latency", "sessions", "fleet", "serve_tree",
         "serve_latency")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    for name, help_text in (
        ("burst", "a. 2000 real calls at 900 s and 3600 s: AssumeRole calls, wall time"),
        ("timeline", "b. simulated 2 h with the injected clock: AssumeRole calls"),
        ("threads", "c. 32 threads x 100 calls inside the refresh window"),
        ("cost", "d. get_frozen_credentials() and a stubbed request vs static credentials"),
        ("latency", "e. worst request latency across a refresh with STS slowed to 2 s"),
        ("sessions", "f. 32 threads each with its own session"),
        ("day", "AssumeRole calls over a simulated day per lifetime (the chart)"),
        ("fleet", "g. 1000 processes started together: peak AssumeRole/s, jitter or not"),
        ("serve", "brs-run --serve: 8 Python + 2 other clients over a simulated hour; endpoint latency"),
    ):
        parser.add_argument(f"--{name}", action="store_true", help=help_text)
    parser.add_argument("--candidates", help="comma-separated subset of: "
                        + ", ".join(c.key for c in CANDIDATES))
    parser.add_argument("--calls", type=int, default=2000, help="calls in a and b (default 2000)")
    parser.add_argument("--workers", type=int, default=2, help="processes for b, c and day")
    parser.add_argument("--latency-lifetimes", default="3600",
                        help="lifetimes for e, comma-separated (default 3600)")
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    parser.add_argument("--async", dest="async_", action="store_true",
                        help="only the async scenarios (bench/async_scenarios.py, bench-async extra)")
    parser.add_argument("--write-docs", action="store_true",
                        help="write docs/bench.md and docs/bench.png (needs all scenarios)")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "latest.json",
                        help="raw numbers (default bench/results/latest.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.async_:  # their own venv: aiobotocore pins botocore (see bench/async_scenarios.py)
        from . import async_scenarios

        return async_scenarios.main(["--quick"] if args.quick else [])
    chosen = [s for s in SCENARIOS if getattr(args, s)] or list(SCENARIOS)
    cands = select(args.candidates)
    opts = scenarios.Options(calls=args.calls, workers=max(1, args.workers))
    opts.latency_lifetimes = tuple(int(x) for x in args.latency_lifetimes.split(",") if x.strip())
    if args.quick:
        opts.calls, opts.blocks = min(opts.calls, 200), 2
        opts.frozen_rounds, opts.request_rounds, opts.request_pairs = 3, 3, 50
        opts.per_thread, opts.session_threads = 20, 8
        opts.day_calls = 200
    started = time.perf_counter()
    print(f"brs_autopatch bench: {', '.join(chosen)}; candidates: "
          f"{', '.join(c.key for c in cands)}", flush=True)
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items())
          + f"; commit {_revision()}", flush=True)
    tables: dict[str, Table] = {}
    seconds: dict[str, float] = {}
    day_chart: dict[str, dict[int, int]] = {}

    def done(table: Table, took: float) -> None:
        tables[table.key] = table
        seconds[table.key] = took
        print("\n" + table.text() + f"\n   ({took:.0f} s)", flush=True)

    with bench_env() as env:
        wall = [s for s in ("cost", "burst") if s in chosen]
        if wall:
            with process_server() as server:
                env.use(server.url)
                for name in wall:
                    t0 = time.perf_counter()
                    table = getattr(scenarios, name)(cands, server, opts)
                    done(table, time.perf_counter() - t0)
        if "latency" in chosen:
            t0 = time.perf_counter()
            done(scenarios.latency(cands, env, opts), time.perf_counter() - t0)
        if "fleet" in chosen:
            t0 = time.perf_counter()
            done(fleet.fleet(hours=1.5 if args.quick else 3.0), time.perf_counter() - t0)
        sims = {s: s in chosen for s in ("timeline", "threads", "sessions", "day")}
        if any(sims.values()):
            t0 = time.perf_counter()
            sim_tables, day_chart = scenarios.simulations(cands, opts, **sims)
            took = time.perf_counter() - t0
            for table in sim_tables:
                done(table, took / len(sim_tables))

    if "serve" in chosen:
        for serve_scenario in (serve_scenarios.tree, serve_scenarios.latency):
            t0 = time.perf_counter()
            done(serve_scenario(), time.perf_counter() - t0)

    targets = _targets(tables, opts)
    if targets.rows:
        print("\n" + targets.text(), flush=True)
    total = time.perf_counter() - started
    print(f"\ntotal {total:.0f} s", flush=True)

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(
        {"when": _now(), "commit": _revision(), "versions": versions(), "seconds": seconds,
         "total": total,
         "tables": {k: t.data for k, t in tables.items()}}, indent=1, default=str) + "\n")
    if args.write_docs:
        if args.quick or set(chosen) != set(SCENARIOS) or len(cands) != len(CANDIDATES):
            print("--write-docs needs a full run (all scenarios and candidates, no --quick): "
                  "docs/ left unchanged", file=sys.stderr)
            return 2
        labels = {c.key: c.label for c in cands}
        chart(day_chart, labels, REPO / "docs" / "bench.png", calls=opts.day_calls)
        _write_markdown(REPO / "docs" / "bench.md", tables, targets, total)
        print("wrote docs/bench.md and docs/bench.png", flush=True)
    return 0


def _revision() -> str:
    """The commit measured, and whether brs_autopatch/ had uncommitted changes."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "brs_autopatch")
    return head + (" + uncommitted brs_autopatch changes" if dirty else "")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _targets(tables: dict[str, Table], opts: scenarios.Options) -> Table:
    """Issue 5's numbers for brs_autopatch, measured here."""
    table = Table("targets", "brs_autopatch against the issue-5 targets",
                  ["target", "measured", "ok"])

    def row(target: str, measured: str, ok: bool) -> None:
        table.add(target, measured, "yes" if ok else "MISSED")

    burst = tables.get("burst")
    if burst:
        for key in ("ours-defer", "ours-eager", "autopatch"):
            d = burst.data.get(key)
            if d:
                row(f"{key}: {opts.calls} calls at 900 s, burst -> 1 AssumeRole", str(d["assume_900"]),
                    d["assume_900"] == 1)
                r = d["ratio"]
                row(f"{key}: burst wall 900 s within 1.05x of 3600 s", f"{r:.2f}x", r <= 1.05)
    timeline = tables.get("timeline")
    if timeline:
        for key in ("ours-defer", "ours-eager", "autopatch"):
            d = timeline.data.get(key)
            if d and "assume" in d["900"] and "assume" in d["3600"]:
                row(f"{key}: simulated 2 h, 900 s -> <= 13", str(d["900"]["assume"]),
                    d["900"]["assume"] <= 13 and not d["900"]["errors"])
                row(f"{key}: simulated 2 h, 3600 s -> <= 3", str(d["3600"]["assume"]),
                    d["3600"]["assume"] <= 3 and not d["3600"]["errors"])
    threads = tables.get("threads")
    if threads:
        for key in ("ours-defer", "ours-eager", "autopatch"):
            for cell, result in threads.data.get(key, {}).items():
                if "assume" in result:
                    errors = sum(result["errors"].values())
                    row(f"{key}: {opts.threads}x{opts.per_thread} in window ({cell}) "
                        "-> 1 AssumeRole, 0 errors",
                        f"{result['assume']}, {errors} errors", result["assume"] == 1 and not errors)
    cost = tables.get("cost")
    if cost:
        for key in ("ours-defer", "ours-eager", "autopatch"):
            d = cost.data.get(key)
            if d:
                row(f"{key}: get_frozen_credentials <= 5x static", f"{d['frozen_ratio']:.2f}x",
                    d["frozen_ratio"] <= 5)
                row(f"{key}: stubbed request <= 1.02x static", f"{d['request_ratio']:.3f}x",
                    d["request_ratio"] <= 1.02)
    latency = tables.get("latency")
    if latency:
        for name, d in latency.data.items():
            if name.startswith("ours-eager"):
                row(f"{name}: no request waits on a 2 s STS", f"{d['slow']} waited, worst "
                    f"{d['worst'] * 1000:.0f} ms", d["slow"] == 0)
    sessions = tables.get("sessions")
    if sessions and "autopatch" in sessions.data:
        n = sessions.data["autopatch"]["assume"]
        row(f"autopatch: {opts.session_threads} threads x boto3.Session() -> 1 AssumeRole", str(n),
            n == 1)
    return table


def _write_markdown(path: Path, tables: dict[str, Table], targets: Table, total: float) -> None:
    cpu = os.cpu_count()
    lines = [
        "# brs_autopatch bench",
        "",
        f"Generated by `scripts/bench` ({_now()}, {total:.0f} s; Python "
        f"{platform.python_version()}, {cpu} CPUs; commit {_revision()}). Versions: "
        + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".",
        "",
        "All traffic goes to a local moto server on 127.0.0.1 (`tests/sts_server.py`); "
        "AssumeRole calls are counted by the server. Competitors are installed by the "
        "`bench` extra only.",
        "",
        "![AssumeRole calls per simulated day](bench.png)",
        "",
        "## Candidates",
        "",
        "| candidate | what it is |",
        "|---|---|",
        *[f"| {c.label} | {c.engine} |" for c in CANDIDATES],
        "",
        "Every candidate assumes the same role with the same fake source credentials; each "
        "scenario builds fresh sessions, so every count starts from nothing.",
        "",
        "## Run it",
        "",
        "```",
        "scripts/bench                  # everything; rewrites this file and bench.png",
        "scripts/bench --burst --cost   # a subset: --burst --timeline --threads --cost "
        "--latency --sessions --day",
        "scripts/bench --quick          # small numbers, a smoke run",
        "scripts/bench --help",
        "```",
        "",
        "Timings come from a shared 2-core machine: ratios are medians of paired, interleaved "
        "samples, with the interquartile range in brackets where noise matters. Counts do not "
        "depend on the machine.",
        "",
        "## How time is simulated",
        "",
        "`bench/clock.py` injects one fake clock (real time + an offset, optionally faster) "
        "into every party: botocore (`botocore.credentials._local_now` and each credentials "
        "object's `_time_fetcher`), brs_autopatch (`RoleCredentials`' injectable clock, and "
        "its background refresher's sleeps), and moto itself, which then runs *in the bench "
        "process* (`moto.sts.models.utcnow`), so AssumeRole stamps `Expiration = fake now + "
        "DurationSeconds`. Requests in the simulations are real botocore requests (signed "
        "with the candidate's frozen credentials) answered by a `before-send` handler; only "
        "AssumeRole goes over HTTP to moto. The clock moves like a discrete-event "
        "simulation: a jump to the next request stops at each deadline of a sleeping "
        "background refresher (its `threading.Event` is swapped for one that counts fake "
        "seconds) and lets it finish, as real time between the two requests would.",
        "",
    ]
    for key in ORDER:
        if key in tables:
            lines += [tables[key].markdown(), ""]
    lines += [targets.markdown(), ""]
    from .async_scenarios import kept_section  # measured in another venv: keep it
    from .bench_inprocess_serve import kept_section as kept_inprocess  # its own script

    lines += [kept_inprocess(path), kept_section(path)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
