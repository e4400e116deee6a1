"""Benchmark: the analyzer against `tshark -q -z conv,tcp` on the same captures, time and peak memory.

`python -m labkit.analyze.bench` (or `make bench-analyze`) writes (or reuses, from
.cache/analyze-bench/) synthetic captures of short REST connections, 11 packets each
(synth.write_short_http: the many-connections case), of 200,000 and 2,000,000 packets.
For each it runs `python -m labkit.analyze <capture>` (the report printed and the .md,
.png and .json written) and tshark, alternating, `--runs` times, and prints the median
wall-clock time, CPU seconds (user + system) and peak memory (the child's maximum resident set
size) of each and the ratios. A benchmark, not a test: it prints figures and exits 0 whatever they are.

Last measured (issue 18, docs/analyze.md; medians of 3 alternating runs on a shared 2-core machine):
2,000,000 packets, the analyzer 29.96 s CPU (31.54 s wall, 0.07 GB) against tshark's 26.24 s CPU
(27.47 s wall, 1.45 GB): 1.14x the time, 0.05x the memory; 200,000 packets 1.10x and 0.23x.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from labkit.procs import REPO, python_env

from .capture import CaptureError, read_capture
from .synth import write_lab_mix, write_short_http

DEFAULT_PACKETS = (200_000, 2_000_000)
CACHE = REPO / ".cache" / "analyze-bench"  # git-ignored: the captures are written once and reused
KINDS = {"short-http": write_short_http, "lab-mix": write_lab_mix}


def run_measured(argv: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds (user + system), peak resident memory in bytes) of one run of `argv`; its
    output is discarded. On a shared machine the CPU seconds are the steadier figure: another job's load
    stretches the wall-clock time of both commands, far less their CPU time.

    posix_spawn (vfork), not fork: a forked child's peak memory would start at this process's own size.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        start = time.perf_counter()
        pid = os.posix_spawnp(argv[0], argv, python_env(), file_actions=[
            (os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)])
        _pid, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - start
    finally:
        os.close(devnull)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} failed with exit code {code}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024  # Linux reports kilobytes


def ensure_capture(path: Path, packets: int, kind: str, regenerate: bool) -> None:
    """Write the capture unless it is there already: a `.written` file beside it says it was written whole
    (packets and size), without reading 2,000,000 packets again to count them."""
    stamp = path.with_name(path.name + ".written")
    if path.exists() and not regenerate:
        if stamp.exists() and stamp.read_text().split() == [str(packets), str(path.stat().st_size)]:
            print(f"reusing {path}")
            return
        try:
            if count_packets(path) == packets:
                stamp.write_text(f"{packets} {path.stat().st_size}\n")
                print(f"reusing {path}")
                return
        except CaptureError:
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"writing {path} ({packets:,} packets, {kind}) ...", flush=True)
    stamp.unlink(missing_ok=True)
    KINDS[kind](path, packets)
    stamp.write_text(f"{packets} {path.stat().st_size}\n")


def count_packets(path: Path) -> int:
    """Packets in a capture, each connection forgotten as it ends (this process stays small)."""
    tables = []
    return read_capture(path, on_table=tables.append, on_end=lambda conn: tables[0].forget(conn)).packets


def reader_seconds(path: Path) -> dict[str, float]:
    """CPU seconds only to read the capture: the hand-written reader (with its connection table) and, if
    installed, dpkt's reader alone and dpkt parsing each packet down to TCP. The garbage collector is off,
    as in the analyzer."""
    gc.disable()
    try:
        return _reader_seconds(path)
    finally:
        gc.enable()


def _reader_seconds(path: Path) -> dict[str, float]:
    out = {}
    start = time.process_time()
    read_capture(path, on_end=lambda _conn: None)
    out["hand-written reader, connection table included"] = time.process_time() - start
    try:
        import dpkt
    except ImportError:
        return out
    reader = dpkt.pcapng.Reader if path.suffix == ".pcapng" else dpkt.pcap.Reader
    start = time.process_time()
    with open(path, "rb") as f:
        for _ts, _buf in reader(f):
            pass
    out[f"dpkt {dpkt.__version__} reader alone"] = time.process_time() - start
    start = time.process_time()
    with open(path, "rb") as f:
        for _ts, buf in reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
                _ = ip.data.data
    out[f"dpkt {dpkt.__version__} reader, Ethernet/IP/TCP parsed"] = time.process_time() - start
    return out


def gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m labkit.analyze.bench", description=__doc__.splitlines()[0])
    p.add_argument("--packets", type=int, nargs="+", default=list(DEFAULT_PACKETS),
                   help="sizes of the synthetic captures, in packets (default: 200000 2000000)")
    p.add_argument("--kind", choices=sorted(KINDS), default="short-http",
                   help="short-http: short REST connections, 11 packets each (default); lab-mix: the five protocols")
    p.add_argument("--capture", type=Path, help="use this capture (written if missing) instead of the cached ones; "
                                                 "with one --packets size")
    p.add_argument("--runs", type=int, default=3, help="runs of each command; the median is reported (default 3)")
    p.add_argument("--regenerate", action="store_true", help="write the captures again even if they exist")
    args = p.parse_args(argv)
    if not shutil.which("tshark"):
        print("tshark is not installed: run `make setup-test`", file=sys.stderr)
        return 2
    if args.capture is not None and len(args.packets) != 1:
        p.error("--capture takes one --packets size")
    rows = []
    for packets in args.packets:
        capture = args.capture or CACHE / f"{args.kind}-{packets}.pcapng"
        ensure_capture(capture, packets, args.kind, args.regenerate)
        with tempfile.TemporaryDirectory(prefix="analyze-bench-") as out:
            commands = {
                "ours": [sys.executable, "-m", "labkit.analyze", str(capture), "--no-progress", "--out-dir", out],
                "tshark": ["tshark", "-r", str(capture), "-q", "-z", "conv,tcp"],
            }
            runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in commands}
            for i in range(args.runs):  # alternating, so that a busy moment hurts both alike
                for name, command in commands.items():
                    runs[name].append(run_measured(command))
                print(f"  {packets:,} packets, run {i + 1}: " + ", ".join(
                    f"{name} {runs[name][-1][0]:.2f} s ({runs[name][-1][1]:.2f} s CPU) {gb(runs[name][-1][2])}"
                    for name in commands), flush=True)
        med = {name: tuple(statistics.median(run[k] for run in r) for k in range(3)) for name, r in runs.items()}
        rows.append((packets, capture.stat().st_size, med["ours"], med["tshark"]))
    print()
    print(f"python -m labkit.analyze <capture> (report printed, .md .png .json written) against "
          f"tshark -r <capture> -q -z conv,tcp; {args.kind}, median of {args.runs} alternating runs")
    print(f"{'packets':>10} {'file':>8} | {'ours: time, peak memory':>24} | {'tshark: time, peak memory':>26} | "
          f"{'ratio time':>10} {'ratio memory':>12} | {'CPU s: ours':>11} {'tshark':>7} {'ratio':>6}")
    for packets, size, (ow, oc, om), (tw, tc, tm) in rows:
        print(f"{packets:>10,} {size / 1e6:>5.0f} MB | {ow:>10.2f} s, {gb(om):>9} | {tw:>12.2f} s, {gb(tm):>9} | "
              f"{ow / tw:>9.2f}x {om / tm:>11.2f}x | {oc:>11.2f} {tc:>7.2f} {oc / tc:>5.2f}x")
    print("ratio analyzer/tshark (time): " + ", ".join(f"{ow / tw:.2f} at {packets:,} packets"
                                                       for packets, _s, (ow, _oc, _om), (tw, _tc, _tm) in rows))
    print("ratio analyzer/tshark (CPU seconds): " + ", ".join(
        f"{oc / tc:.2f} at {packets:,} packets" for packets, _s, (_ow, oc, _om), (_tw, tc, _tm) in rows))
    print("targets (issue 18): time <= 1.0x and peak memory <= 0.5x tshark's on the 2,000,000-packet capture")
    smallest = min(rows)[0]
    capture = args.capture or CACHE / f"{args.kind}-{smallest}.pcapng"
    print(f"reading only, {smallest:,} packets (CPU):")
    for name, seconds in reader_seconds(capture).items():
        print(f"  {name:<52} {seconds:6.2f} s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
