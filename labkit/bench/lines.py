"""reqresp and upcall under load: our socketserver line servers against a minimal asyncio server.

The load is labkit.bench.lineload in its own process: N connections, each sending a line and
waiting for its reply before the next (closed loop). For upcall the reply timed is the immediate
`Processing` line; ours also sends the Progress and Done callbacks for every message (the demo),
the asyncio baseline does not.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from labkit.bench.core import (
    TOOL_GRACE,
    Figure,
    Progress,
    Row,
    Sample,
    Server,
    Settings,
    alternate,
    describe,
    free_port,
    json_line,
    run_tool,
)
from labkit.procs import REPO, python_env

#: Upcall callbacks under load: Progress and Done this soon after each message (the demo uses 0.5 s and
#: 1 s). With the demo's delays MAX_IN_FLIGHT (64 messages being processed per connection) caps a
#: connection at 64 messages/s, by design; short delays measure the server, callbacks still included.
UPCALL_PROGRESS_DELAY = 0.005
UPCALL_DONE_DELAY = 0.01


@dataclass(frozen=True)
class LineCase:
    protocol: str
    reply: str  # lineload --reply: what the answer looks like
    ours_script: tuple[str, str]
    ours_args: tuple[str, ...]
    ours_ready: str
    ours_name: str
    target: float = 0.8


CASES = {
    "reqresp": LineCase("reqresp", "echo", ("reqresp", "server.py"), (), r"Server listening on",
                        "socketserver threads (reqresp/server.py)"),
    "upcall": LineCase("upcall", "upcall", ("upcall", "servercall.py"),
                       ("--progress-delay", str(UPCALL_PROGRESS_DELAY), "--done-delay", str(UPCALL_DONE_DELAY)),
                       r"Upcall server listening on", "socketserver threads (upcall/servercall.py)"),
}
BASELINE_NAME = "asyncio server"


def steps(settings: Settings) -> int:
    return len(settings.levels) * settings.rounds * 2


def lineload(port: int, connections: int, seconds: float, reply: str) -> Sample:
    argv = [sys.executable, "-m", "labkit.bench.lineload", "--port", str(port), "--connections", str(connections),
            "--duration", str(seconds), "--reply", reply]
    data = json_line(run_tool(argv, seconds + TOOL_GRACE, env=python_env(), cwd=str(REPO)))
    return Sample(rate=data["rate"], p50_ms=data["p50_ms"], p99_ms=data["p99_ms"], count=data["replies"],
                  errors=data["errors"], extra={"callbacks": data["callbacks"]})


def run(protocol: str, settings: Settings, progress: Progress, logdir: Path) -> list[Row]:
    case = CASES[protocol]
    base_port, ours_port = free_port(), free_port()
    servers: list[Server] = []
    try:
        servers.append(Server(f"{protocol}-baseline", [sys.executable, "-m", "labkit.bench.baselines.asyncio_lines",
                                                       "--reply", case.reply, "--host", "127.0.0.1",
                                                       "--port", str(base_port)],
                              r"listening on", logdir, cwd=str(REPO)))
        folder, name = case.ours_script
        servers.append(Server(f"{protocol}-ours", [sys.executable, name, *case.ours_args, "--host", "127.0.0.1",
                                                   "--port", str(ours_port)],
                              case.ours_ready, logdir, cwd=str(REPO / folder)))
        rows = []
        for level in settings.levels:
            if settings.warmup > 0:
                progress.say(f"{protocol}: warm-up at {level} connections")
                lineload(base_port, level, settings.warmup, case.reply)
                lineload(ours_port, level, settings.warmup, case.reply)

            def report(which: str, n: int, sample: Sample, level: int = level) -> None:
                who = BASELINE_NAME if which == "baseline" else case.ours_name
                callbacks = sample.extra.get("callbacks")
                more = f", {callbacks} callbacks" if callbacks else ""
                progress.step(f"{protocol} c={level} round {n}/{settings.rounds} {who}: "
                              f"{describe(sample, 'msg/s')}{more}")

            base, ours = alternate(lambda level=level: lineload(base_port, level, settings.duration, case.reply),
                                   lambda level=level: lineload(ours_port, level, settings.duration, case.reply),
                                   settings.rounds, report)
            note = ""
            if protocol == "upcall":
                note = (f"ours also sends Progress and Done for every message ({UPCALL_PROGRESS_DELAY:g} s and "
                        f"{UPCALL_DONE_DELAY:g} s later)")
            rows.append(Row(protocol=protocol, load=f"{level} clients", level=level, unit="msg/s",
                            baseline_name=BASELINE_NAME, ours_name=case.ours_name,
                            baseline=Figure.of(base), ours=Figure.of(ours),
                            target=case.target if level == settings.target_level else None, note=note))
        return rows
    finally:
        for server in reversed(servers):
            server.stop()
