"""What every part of the benchmark shares: settings, results, servers started and stopped, progress.

A figure is always measured in rounds, alternating baseline and ours (B, O, B, O, ...), so that the
noise of a shared 2-core machine falls on both alike; the median round is what the table shows.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labkit.procs import Proc, python_env

SERVER_START_TIMEOUT = 20.0  # s: a server that has not printed its ready line by then is a failure
TOOL_GRACE = 20.0  # s: a load tool still running this long after its planned end is killed


@dataclass(frozen=True)
class Settings:
    """How much load: concurrency levels, rounds per figure, seconds per round, warm-up seconds."""

    levels: tuple[int, ...] = (1, 4, 16)
    rounds: int = 3
    duration: float = 2.0
    warmup: float = 1.0  # once per server, before its first round
    target_level: int = 16
    #: MQTT: messages per throughput round, and the paced rate (msg/s) of the latency rounds.
    mqtt_messages: int = 20000
    mqtt_rate: int = 500
    mqtt_qos: tuple[int, ...] = (0, 1)

    @classmethod
    def quick(cls) -> Settings:
        """Small enough for a smoke test: seconds, not minutes."""
        return cls(levels=(1, 4), rounds=1, duration=1.0, warmup=0.0, target_level=4,
                   mqtt_messages=1000, mqtt_rate=400, mqtt_qos=(0, 1))


@dataclass
class Sample:
    """One round of load against one server."""

    rate: float  # requests (or messages) per second
    p50_ms: float
    p99_ms: float
    count: int  # requests answered (messages delivered)
    errors: int = 0  # failed or wrong answers, lost messages
    extra: dict = field(default_factory=dict)


@dataclass
class Figure:
    """The median of a server's rounds at one load, with every round kept."""

    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    rounds: list[Sample]

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Figure:
        if not samples:
            return cls(float("nan"), float("nan"), float("nan"), 0, [])
        return cls(
            rate=statistics.median(s.rate for s in samples),
            p50_ms=statistics.median(s.p50_ms for s in samples),
            p99_ms=statistics.median(s.p99_ms for s in samples),
            errors=sum(s.errors for s in samples),
            rounds=list(samples),
        )


@dataclass
class Row:
    """One line of the table: a protocol under one load, ours next to its baseline."""

    protocol: str
    load: str  # what varies: "16 clients", "QoS 1"
    level: int  # the number behind `load` (clients, or QoS)
    unit: str  # "req/s", "msg/s"
    baseline_name: str
    ours_name: str
    baseline: Figure
    ours: Figure
    target: float | None = None  # the ratio ours/baseline this row must reach, if it is the target row
    note: str = ""

    @property
    def ratio(self) -> float:
        if not self.baseline.rate or self.baseline.rate != self.baseline.rate:
            return float("nan")
        return self.ours.rate / self.baseline.rate

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio >= self.target

    def to_json(self) -> dict:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["met"] = self.met
        return data


def percentile(values: Sequence[float], pct: float) -> float:
    """The pct-th percentile (nearest rank) of `values`; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


class Progress:
    """Progress on stderr: one line per finished step, with a count and the time so far."""

    def __init__(self, total: int, stream=None):
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream or sys.stderr
        self.start = time.monotonic()

    def step(self, text: str) -> None:
        self.done += 1
        self.say(f"[{self.done:>3}/{self.total}] {text}")

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.start
        print(f"bench {elapsed:6.1f}s {text}", file=self.stream, flush=True)


class Server:
    """A server (or client) process whose output goes to a log file, not through a pipe to us.

    Our servers log every request; reading those lines through a pipe would cost the benchmark
    (which shares the 2 cores) CPU for nothing. `sh -c 'exec "$@" >log'` keeps the PID the server's
    own, so Proc still stops it by PID; the ready line is looked for in the file.
    """

    def __init__(self, name: str, argv: Sequence[str], ready: str | None, logdir: Path, *, cwd: str | None = None,
                 env: dict[str, str] | None = None):
        self.name = name
        self.log = logdir / f"{name}.log"
        self.log.unlink(missing_ok=True)
        self.proc = Proc(list(argv), cwd=cwd, env=env or python_env(), label=name,
                         prefix=["sh", "-c", 'exec "$@" >"$0" 2>&1', str(self.log)])
        if ready is None:
            return
        try:
            wait_for_line(self.log, ready, SERVER_START_TIMEOUT, alive=self.proc.running, what=name)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.proc.stop(timeout=5)


def wait_for_line(path: Path, pattern: str, timeout: float, *, alive: Callable[[], bool] = lambda: True,
                  what: str = "") -> str:
    """Wait until a line of the file at `path` matches `pattern`; return that line."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        for line in text.splitlines():
            if rx.search(line):
                return line
        if not alive():
            raise RuntimeError(f"{what or path.name} exited before printing /{pattern}/:\n{tail(text)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what or path.name} did not print /{pattern}/ within {timeout:g} s:\n{tail(text)}")
        time.sleep(0.05)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run_tool(argv: Sequence[str], timeout: float, *, env: dict[str, str] | None = None, cwd: str | None = None,
             stdin: int | None = subprocess.DEVNULL) -> str:
    """Run a load tool to completion (killed after `timeout`); its stdout, or RuntimeError with its output."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
                              stdin=stdin)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"{argv[0]} did not finish within {timeout:g} s") from e
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:3]))}... exited {done.returncode}:\n"
                           f"{tail(done.stdout + done.stderr)}")
    return done.stdout


def json_line(output: str, marker: str = "BENCH_JSON ") -> dict:
    """The JSON object a tool printed on the line starting with `marker`."""
    for line in output.splitlines():
        if line.startswith(marker):
            return json.loads(line[len(marker):])
    raise RuntimeError(f"no {marker.strip()} line in the output:\n{tail(output)}")


def alternate(measure_baseline: Callable[[], Sample], measure_ours: Callable[[], Sample], rounds: int,
              on_round: Callable[[str, int, Sample], None]) -> tuple[list[Sample], list[Sample]]:
    """`rounds` rounds of each, alternating baseline and ours; on_round(which, n, sample) after each."""
    base: list[Sample] = []
    ours: list[Sample] = []
    for n in range(1, rounds + 1):
        for which, measure, kept in (("baseline", measure_baseline, base), ("ours", measure_ours, ours)):
            sample = measure()
            kept.append(sample)
            on_round(which, n, sample)
    return base, ours


def describe(sample: Sample, unit: str) -> str:
    errors = f", {sample.errors} errors" if sample.errors else ""
    return f"{sample.rate:,.0f} {unit}, p50 {sample.p50_ms:.2f} ms, p99 {sample.p99_ms:.2f} ms{errors}"
