"""Tables (terminal and Markdown) and the headline chart."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Table:
    key: str
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # raw numbers, for the JSON file

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def text(self) -> str:
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=False)]

        def line(cells: Sequence[str]) -> str:
            first, *rest = cells
            return "  ".join([first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:],
                                                                                  strict=False))])

        out = [f"== {self.title}", line(self.columns), line(["-" * w for w in widths])]
        out += [line(row) for row in self.rows]
        out += [f"   {note}" for note in self.notes]
        return "\n".join(out)

    def markdown(self) -> str:
        out = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
               "|" + "|".join(["---"] + ["---:"] * (len(self.columns) - 1)) + "|"]
        out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {note}" for note in self.notes]
        return "\n".join(out)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """``median (p25-p75)`` of ratios: the second part shows the noise."""
    if len(values) < 4:
        return f"{median(values):.2f}x"
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{median(values):.2f}x ({q1:.2f}-{q3:.2f})"


def ratio(value: float, base: float) -> str:
    if not (math.isfinite(value) and math.isfinite(base)) or base <= 0:
        return "-"
    return f"{value / base:.2f}x"


def ms(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


COLORS = {
    "botocore": "#7570b3",
    "b3rs-defer": "#d95f02",
    "b3rs-eager": "#fc8d62",
    "aarl": "#e7298a",
    "ours-defer": "#1b9e77",
    "ours-eager": "#66c2a5",
    "autopatch": "#0b6e4f",
}


def chart(day: dict[str, dict[int, int]], labels: dict[str, str], out: Path, *, calls: int) -> None:
    """Grouped bars: AssumeRole calls per simulated day, per lifetime, per candidate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in labels if k in day]
    lifetimes = sorted({d for per in day.values() for d in per})
    fig, ax = plt.subplots(figsize=(10, 5.2), dpi=110)
    width = 0.8 / max(len(keys), 1)
    for i, key in enumerate(keys):
        xs = [j + (i - (len(keys) - 1) / 2) * width for j in range(len(lifetimes))]
        ys = [max(day[key].get(d, 0), 0.8) for d in lifetimes]
        bars = ax.bar(xs, ys, width * 0.92, label=labels[key], color=COLORS.get(key, "#999999"),
                      edgecolor="black", linewidth=0.4)
        for bar, d in zip(bars, lifetimes, strict=False):
            value = day[key].get(d, 0)
            ax.annotate(str(value), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7, rotation=90, xytext=(0, 2),
                        textcoords="offset points")
    ax.set_yscale("log")
    ax.set_ylim(0.7, max(max(per.values()) for per in day.values()) * 4)
    ax.set_xticks(range(len(lifetimes)))
    ax.set_xticklabels([f"DurationSeconds={d}\n({d // 60} min)" for d in lifetimes])
    ax.set_ylabel("AssumeRole calls per day (log scale)")
    ax.set_title(f"AssumeRole calls in one simulated day: {calls} API calls, one every "
                 f"{86400 / calls:.1f} s (fewer is better)")
    fig.text(0.01, 0.01, "botocore's 15-min advisory window covers all of a 15-min credential: "
             "every call refreshes. Local moto STS, injected clock; python -m bench --day.",
             fontsize=7, color="#555555")
    ax.legend(fontsize=8, ncol=2, loc="upper right")
    ax.grid(axis="y", which="major", alpha=0.3)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
