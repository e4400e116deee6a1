"""The benchmark's results as a Markdown table, a JSON file and a PNG chart."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from labkit.bench.core import Row, Settings


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.machine()}


def number(value: float, digits: int = 0) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def verdict(row: Row) -> str:
    if row.target is None:
        return ""
    return f"≥ {row.target:g}x: {'met' if row.met else 'MISSED'}"


def table(rows: Sequence[Row]) -> str:
    """A Markdown table: each figure next to its same-run baseline, the median of the rounds."""
    out = ["| Protocol | Load | Baseline | Ours | Ours / baseline | Target | p50 ms (baseline / ours) "
           "| p99 ms (baseline / ours) | Errors (b / o) |",
           "|---|---|--:|--:|--:|---|--:|--:|--:|"]
    for r in rows:
        out.append(
            f"| {r.protocol} | {r.load} | {number(r.baseline.rate)} {r.unit} | {number(r.ours.rate)} {r.unit} "
            f"| {number(r.ratio, 2)}x | {verdict(r)} "
            f"| {number(r.baseline.p50_ms, 2)} / {number(r.ours.p50_ms, 2)} "
            f"| {number(r.baseline.p99_ms, 2)} / {number(r.ours.p99_ms, 2)} "
            f"| {r.baseline.errors} / {r.ours.errors} |")
    return "\n".join(out)


def legend(rows: Sequence[Row]) -> str:
    """Which servers the columns are, per protocol, and any note."""
    seen: dict[tuple[str, str], Row] = {}
    for r in rows:
        seen.setdefault((r.protocol, r.baseline_name), r)
    lines = []
    for (protocol, _), r in seen.items():
        note = f"; {r.note}" if r.note else ""
        lines.append(f"- {protocol}: baseline = {r.baseline_name}, ours = {r.ours_name}{note}")
    return "\n".join(lines)


def save_json(path: Path, rows: Sequence[Row], settings: Settings, started: str, seconds: float,
              load: tuple[float, float]) -> None:
    data = {"date": started, "seconds": round(seconds, 1), "machine": machine(),
            "load_average": {"before": load[0], "after": load[1]}, "settings": asdict(settings),
            "rows": [r.to_json() for r in rows]}
    path.write_text(json.dumps(without_nan(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def without_nan(value):
    """NaN (a figure that could not be measured) as JSON null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nan(v) for v in value]
    return value


def save_chart(path: Path, rows: Sequence[Row], title: str) -> None:
    """Per protocol: throughput bars (baseline vs ours) above p99 latency bars, one group per load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    protocols = list(dict.fromkeys(r.protocol for r in rows))
    fig, axes = plt.subplots(2, len(protocols), figsize=(3.6 * len(protocols), 6.4), squeeze=False)
    width = 0.38
    for col, protocol in enumerate(protocols):
        mine = [r for r in rows if r.protocol == protocol]
        xs = range(len(mine))
        labels = [r.load.replace(" clients", " cl.").replace(", callbacks both", "\nboth call back") for r in mine]
        top, bottom = axes[0][col], axes[1][col]
        top.bar([x - width / 2 for x in xs], [r.baseline.rate for r in mine], width, label="baseline", color="#9e9e9e")
        top.bar([x + width / 2 for x in xs], [r.ours.rate for r in mine], width, label="ours", color="#1f77b4")
        for x, r in zip(xs, mine, strict=True):
            if not math.isnan(r.ratio):
                top.annotate(f"{r.ratio:.2f}x", (x + width / 2, r.ours.rate), ha="center", va="bottom", fontsize=8)
        top.set_title(protocol)
        top.set_ylabel(mine[0].unit)
        top.set_xticks(list(xs), labels)
        top.margins(y=0.15)
        bottom.bar([x - width / 2 for x in xs], [r.baseline.p99_ms for r in mine], width, color="#9e9e9e")
        bottom.bar([x + width / 2 for x in xs], [r.ours.p99_ms for r in mine], width, color="#1f77b4")
        bottom.set_yscale("log")
        bottom.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        bottom.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        bottom.yaxis.set_minor_formatter(ticker.NullFormatter())
        bottom.set_ylabel("p99 latency, ms (log)")
        bottom.set_xticks(list(xs), labels)
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
