"""Run the benchmark: `python -m labkit.bench [--quick] [--protocols rest soap mqtt reqresp upcall]`.

Progress goes to stderr, the table to stdout; bench.md, bench.json and bench.png go to --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import time
from datetime import datetime
from pathlib import Path

from labkit import cli
from labkit.bench import http, lines, mqtt, report
from labkit.bench.core import Progress, Row, Settings
from labkit.procs import REPO
from labkit.protocols import NAMES

DEFAULT_OUT = REPO / "bench-results"
TOOLS = {"rest": ("wrk",), "soap": ("wrk",), "mqtt": ("mosquitto", "mosquitto_pub", "mosquitto_sub", "stdbuf"),
         "reqresp": (), "upcall": ()}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m labkit.bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few seconds per protocol (smoke test), not minutes")
    p.add_argument("--protocols", nargs="+", choices=NAMES, default=list(NAMES), metavar="PROTO",
                   help=f"which to measure (default: all: {' '.join(NAMES)})")
    p.add_argument("--levels", type=int, nargs="+", metavar="N", help="concurrent clients (default: 1 4 16)")
    p.add_argument("--rounds", type=int, help="rounds per figure, the median is kept (default: 3)")
    p.add_argument("--duration", type=float, help="seconds per round (default: 3)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up per server and level (default: 1)")
    p.add_argument("--mqtt-messages", type=int, help="messages per MQTT rate round (default: 20000)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where results go (default: {DEFAULT_OUT.name}/)")
    args = p.parse_args()
    for name in ("rounds", "duration", "mqtt_messages"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.levels and min(args.levels) < 1:
        p.error("--levels must be at least 1")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings.quick() if args.quick else Settings()
    changes = {name: getattr(args, name) for name in ("rounds", "duration", "warmup", "mqtt_messages")
               if getattr(args, name) is not None}
    if args.levels:
        levels = tuple(sorted(set(args.levels)))
        changes.update(levels=levels, target_level=16 if 16 in levels else levels[-1])
    return dataclasses.replace(settings, **changes)


def main() -> int:
    args = parse_args()
    settings = settings_from(args)
    protocols = [p for p in NAMES if p in args.protocols]
    missing = sorted({tool for p in protocols for tool in TOOLS[p] if not shutil.which(tool)})
    if missing:
        raise cli.LabError(f"not installed: {', '.join(missing)} (run `make setup-test`)", code=2)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    logdir = out / "logs"
    logdir.mkdir(exist_ok=True)
    started = datetime.now().astimezone()
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    steps = sum(mqtt.steps(settings) if p == "mqtt" else http.steps(settings) if p in http.CASES
                else lines.steps(settings, p) for p in protocols)
    progress = Progress(steps)
    progress.say(f"{', '.join(protocols)}: levels {list(settings.levels)}, {settings.rounds} rounds of "
                 f"{settings.duration:g} s, warm-up {settings.warmup:g} s; logs in {logdir}")

    rows: list[Row] = []
    for protocol in protocols:
        if protocol in http.CASES:
            rows += http.run(protocol, settings, progress, logdir)
        elif protocol in lines.CASES:
            rows += lines.run(protocol, settings, progress, logdir)
        else:
            rows += mqtt.run(settings, progress, logdir)
    seconds = time.monotonic() - began
    # The machine's load average before and after: other work on the same cores is noise in every figure.
    load = (load_before, os.getloadavg()[0])

    title = (f"make bench, {started:%Y-%m-%d %H:%M %Z}, {report.machine()['cpus']} cores "
             f"(load generator and servers share them), load average {load[0]:.1f} before, {load[1]:.1f} after; "
             f"median of {settings.rounds} rounds")
    text = f"{title}\n\n{report.table(rows)}\n\n{report.legend(rows)}\n"
    (out / "bench.md").write_text(text, encoding="utf-8")
    report.save_json(out / "bench.json", rows, settings, started.isoformat(timespec="seconds"), seconds, load)
    report.save_chart(out / "bench.png", rows, title)
    print(text)
    progress.say(f"done in {seconds:.0f} s: {out / 'bench.md'}, {out / 'bench.json'}, {out / 'bench.png'}")
    return 0


if __name__ == "__main__":
    cli.run(main)
