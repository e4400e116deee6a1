"""Benchmark: the analyzer against `tshark -q -z conv,tcp` on the same 200,000-packet capture.

`python -m labkit.analyze.bench` (or `make bench-analyze`) writes (or reuses) a synthetic
capture of the five lab protocols, runs each command a few times, interleaved, and prints the
best wall-clock and CPU time of each and the ratios: the analysis printing its report, and the
same run also writing the Markdown, PNG and JSON files. A benchmark, not a test: it exits 0.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labkit.procs import REPO, python_env

from .capture import CaptureError, read_capture
from .synth import write_lab_mix

DEFAULT_PACKETS = 200_000
DEFAULT_CAPTURE = REPO / "captures" / "bench-200k.pcapng"


def _timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) for one run; output is discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=python_env())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def ensure_capture(path: Path, packets: int, regenerate: bool) -> None:
    if path.exists() and not regenerate:
        try:
            if read_capture(path).packets == packets:
                print(f"reusing {path}")
                return
        except CaptureError:
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"writing {path} ({packets:,} packets of REST, SOAP, MQTT, reqresp and upcall traffic) ...", flush=True)
    write_lab_mix(path, packets)


def dpkt_read_seconds(path: Path) -> float | None:
    """How long dpkt takes only to parse every packet down to TCP (if dpkt is installed), for comparison."""
    try:
        import dpkt
    except ImportError:
        return None
    start = time.process_time()
    with open(path, "rb") as f:
        reader = dpkt.pcapng.Reader(f) if path.suffix == ".pcapng" else dpkt.pcap.Reader(f)
        for _ts, buf in reader:
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
                _ = ip.data.data
    return time.process_time() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m labkit.analyze.bench", description=__doc__.splitlines()[0])
    p.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE, help=f"capture to use (default: {DEFAULT_CAPTURE})")
    p.add_argument("--packets", type=int, default=DEFAULT_PACKETS, help="packets in the synthetic capture")
    p.add_argument("--runs", type=int, default=3, help="runs of each command; the best is reported (default 3)")
    p.add_argument("--regenerate", action="store_true", help="write the capture again even if it exists")
    args = p.parse_args(argv)
    if not shutil.which("tshark"):
        print("tshark is not installed: run `make setup-test`", file=sys.stderr)
        return 2
    ensure_capture(args.capture, args.packets, args.regenerate)
    size = args.capture.stat().st_size
    with tempfile.TemporaryDirectory(prefix="analyze-bench-") as out:
        analyzer = [sys.executable, "-m", "labkit.analyze", str(args.capture), "--no-progress"]
        commands = {
            "tshark": ["tshark", "-r", str(args.capture), "-q", "-z", "conv,tcp"],
            "report": [*analyzer, "--no-files"],
            "report+files": [*analyzer, "--out-dir", out],
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for i in range(args.runs):  # interleaved, so that a busy moment hurts each alike
            for name, argv_ in commands.items():
                results[name].append(_timed(argv_))
            print(f"  run {i + 1}: " + ", ".join(f"{name} {results[name][-1][0]:.2f} s" for name in commands),
                  flush=True)
    best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in results.items()}
    tw, tc = best["tshark"]
    labels = {
        "tshark": "tshark -r <capture> -q -z conv,tcp",
        "report": "python -m labkit.analyze <capture> --no-files",
        "report+files": "python -m labkit.analyze <capture> (+ .md .png .json)",
    }
    print(f"capture: {args.capture} ({args.packets:,} packets, {size / 1e6:.1f} MB); best of {args.runs} runs")
    for name, (w, c) in best.items():
        ratio = "" if name == "tshark" else f"   ratio to tshark: wall {w / tw:.2f}, cpu {c / tc:.2f}"
        print(f"  {labels[name]:<56} wall {w:5.2f} s  cpu {c:5.2f} s{ratio}")
    aw, ac = best["report"]
    verdict = "no longer than tshark" if aw <= tw else "SLOWER than tshark"
    print(f"ratio analyzer/tshark: {aw / tw:.2f} (the analysis, report printed) -> {verdict}")
    dpkt_time = dpkt_read_seconds(args.capture)
    if dpkt_time is not None:
        print(f"  (dpkt only parsing the packets down to TCP: {dpkt_time:.2f} s CPU)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
