"""reqresp and upcall under load: the demo servers, run as programs, against a minimal asyncio server.

The demo servers are reqresp/server.py and upcall/servercall.py exactly as a student runs them: asyncio streams,
their limits, and a log line printed for every message (the baseline prints nothing). The load is
labkit.bench.lineload in its own process: N connections, each sending a line and
waiting for its reply before the next (closed loop). For upcall the reply timed is the immediate
`Processing` line; ours also sends the Progress and Done callbacks for every message (the demo).
Its target row is like for like, against an asyncio server that sends the same callbacks; the rows
against the one that only answers `Processing` are for information.
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
    json_line,
    run_tool,
)
from labkit.procs import REPO, free_port, python_env

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
    #: upcall: the target is met against the baseline that sends the same callbacks, not these rows.
    target_like_for_like: bool = False


CASES = {
    "reqresp": LineCase("reqresp", "echo", ("reqresp", "server.py"), (), r"Server listening on",
                        "reqresp/server.py (asyncio streams)"),
    "upcall": LineCase("upcall", "upcall", ("upcall", "servercall.py"),
                       ("--progress-delay", str(UPCALL_PROGRESS_DELAY), "--done-delay", str(UPCALL_DONE_DELAY)),
                       r"Upcall server listening on", "upcall/servercall.py (asyncio streams)",
                       target_like_for_like=True),
}
BASELINE_NAME = "asyncio server"
ALIKE_NAME = "asyncio server with callbacks"


def steps(settings: Settings, protocol: str = "reqresp") -> int:
    per_level = settings.rounds * 2
    return len(settings.levels) * per_level + (per_level if protocol == "upcall" else 0)


def lineload(port: int, connections: int, seconds: float, reply: str) -> Sample:
    argv = [sys.executable, "-m", "labkit.bench.lineload", "--port", str(port), "--connections", str(connections),
            "--duration", str(seconds), "--reply", reply]
    data = json_line(run_tool(argv, seconds + TOOL_GRACE, env=python_env(), cwd=str(REPO)))
    return Sample(rate=data["rate"], p50_ms=data["p50_ms"], p99_ms=data["p99_ms"], count=data["replies"],
                  errors=data["errors"], extra={"callbacks": data["callbacks"]})


def run(protocol: str, settings: Settings, progress: Progress, logdir: Path) -> list[Row]:
    case = CASES[protocol]
    ports = {"baseline": free_port(), "ours": free_port(), "alike": free_port()}
    asyncio_server = [sys.executable, "-m", "labkit.bench.baselines.asyncio_lines", "--reply", case.reply,
                      "--host", "127.0.0.1"]
    servers: list[Server] = []
    try:
        servers.append(Server(f"{protocol}-baseline", [*asyncio_server, "--port", str(ports["baseline"])],
                              r"listening on", logdir, cwd=str(REPO)))
        folder, name = case.ours_script
        servers.append(Server(f"{protocol}-ours", [sys.executable, name, *case.ours_args, "--host", "127.0.0.1",
                                                   "--port", str(ports["ours"])],
                              case.ours_ready, logdir, cwd=str(REPO / folder)))
        if protocol == "upcall":
            servers.append(Server(f"{protocol}-baseline-alike", [
                *asyncio_server, "--port", str(ports["alike"]), "--callbacks", str(UPCALL_PROGRESS_DELAY),
                str(UPCALL_DONE_DELAY)], r"listening on", logdir, cwd=str(REPO)))
        if settings.warmup > 0:
            busiest = max(settings.levels)
            progress.say(f"{protocol}: warm-up, {settings.warmup:g} s at {busiest} connections per server")
            for server_port in ports.values() if protocol == "upcall" else (ports["baseline"], ports["ours"]):
                lineload(server_port, busiest, settings.warmup, case.reply)

        def compare(level: int, baseline_port: int, baseline_name: str, load: str, target: float | None,
                    note: str) -> Row:
            def report(which: str, n: int, sample: Sample) -> None:
                who = baseline_name if which == "baseline" else case.ours_name
                callbacks = sample.extra.get("callbacks")
                more = f", {callbacks} callbacks" if callbacks else ""
                progress.step(f"{protocol} c={level} round {n}/{settings.rounds} {who}: "
                              f"{describe(sample, 'msg/s')}{more}")

            base, ours = alternate(lambda: lineload(baseline_port, level, settings.duration, case.reply),
                                   lambda: lineload(ports["ours"], level, settings.duration, case.reply),
                                   settings.rounds, report)
            return Row(protocol=protocol, load=load, level=level, unit="msg/s", baseline_name=baseline_name,
                       ours_name=case.ours_name, baseline=Figure.of(base), ours=Figure.of(ours), target=target,
                       note=note)

        note = ""
        if protocol == "upcall":
            note = (f"ours also sends Progress and Done for every message ({UPCALL_PROGRESS_DELAY:g} s and "
                    f"{UPCALL_DONE_DELAY:g} s later), the baseline only the Processing reply: for information")
        rows = [compare(level, ports["baseline"], BASELINE_NAME, f"{level} clients",
                        case.target if level == settings.target_level and not case.target_like_for_like else None,
                        note)
                for level in settings.levels]
        if protocol == "upcall":  # the target: like for like, an asyncio server that calls back too
            level = settings.target_level
            rows.append(compare(level, ports["alike"], ALIKE_NAME, f"{level} clients, callbacks both", case.target,
                                f"baseline also sends Progress and Done {UPCALL_PROGRESS_DELAY:g} s and "
                                f"{UPCALL_DONE_DELAY:g} s later (loop.call_later), as ours does: the target row"))
        return rows
    finally:
        for server in reversed(servers):
            server.stop()
