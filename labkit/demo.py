"""Run a protocol's scripted demo: its server(s), then its client steps, with labelled output.

`python -m labkit.demo rest mqtt ...` (what `make demo-<proto>` runs) starts
every process on 127.0.0.1 with the protocol's usual port, prints each line as
`[service] line`, and stops everything it started, also on Ctrl+C. The capture
tool runs the same steps through another `Runtime` (network namespaces or Docker).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from labkit import cli
from labkit.procs import REPO, Proc, python_env
from labkit.protocols import NAMES, PROTOCOLS, Protocol, Step

SERVER_START_TIMEOUT = 15.0
STEP_TIMEOUT = 60.0

_print_lock = threading.Lock()


def echo(label: str, line: str) -> None:
    """Print one line of a process's output, labelled with its compose service name."""
    with _print_lock:
        print(f"[{label:>14}] {line}", flush=True)


class LocalRuntime:
    """Plain processes on 127.0.0.1, the protocol's own port: no Docker, no root."""

    name = "local"
    host = "127.0.0.1"

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="lab-demo-")

    def argv(self, proto: Protocol, step: Step) -> list[str]:
        argv = list(step.argv)
        if argv[0] == "mosquitto":
            return ["mosquitto", "-c", str(self._broker_conf(proto.port))]
        if argv[0] == "python":
            argv[0] = sys.executable
        return [*argv, "--host", self.host, "--port", str(proto.port)]

    def _broker_conf(self, port: int) -> Path:
        conf = Path(self._tmp.name) / "mosquitto.conf"
        # stderr: Mosquitto's stdout on a pipe is block-buffered, its ready line would come at exit.
        conf.write_text(f"listener {port} {self.host}\nallow_anonymous true\npersistence false\n"
                        "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
                        "log_type information\n")
        return conf

    def check_port(self, proto: Protocol, step: Step) -> None:
        """One clear line if the server's port on 127.0.0.1 is taken (another demo, a system broker)."""
        cli.ensure_port_free(self.host, proto.port, step.service)

    def start(self, proto: Protocol, step: Step, echo_line=echo) -> Proc:
        if step.argv[0] == "mosquitto" and not shutil.which("mosquitto"):
            raise cli.LabError("mosquitto is not installed: run `make setup` as root, "
                               "or `sudo apt-get install mosquitto`")
        return Proc(self.argv(proto, step), cwd=REPO / proto.folder, env=python_env(),
                    label=step.service, echo=echo_line)

    def close(self) -> None:
        self._tmp.cleanup()


def run_demo(proto: Protocol, runtime, echo_line=echo) -> int:
    """Servers up, client steps in order, everything down; returns the worst client exit code."""
    started: list[Proc] = []
    worst = 0
    try:
        for step in proto.servers:
            runtime.check_port(proto, step)
            proc = runtime.start(proto, step, echo_line)
            started.append(proc)
            wait_ready(proc, step, SERVER_START_TIMEOUT)
        background: list[Proc] = []
        for step in proto.demo:
            proc = runtime.start(proto, step, echo_line)
            started.append(proc)
            if step.background:
                background.append(proc)
                if step.ready:
                    wait_ready(proc, step, SERVER_START_TIMEOUT)
                continue
            worst = max(worst, _finish(proc))
        for proc in background:
            worst = max(worst, _finish(proc))
    finally:
        for proc in reversed(started):
            proc.stop(timeout=3)
    return worst


def wait_ready(proc: Proc, step: Step, timeout: float) -> None:
    try:
        proc.wait_for(step.ready or ".", timeout=timeout)
    except (TimeoutError, RuntimeError):
        last = proc.lines[-1] if proc.lines else "(no output)"
        raise cli.LabError(f"{step.service} did not start: {last}") from None


def _finish(proc: Proc) -> int:
    try:
        return proc.wait(STEP_TIMEOUT)
    except Exception:  # noqa: BLE001 - a hung step is reported, then stopped
        echo(proc.label, f"(still running after {STEP_TIMEOUT:.0f}s: stopping it)")
        proc.stop()
        return 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("protocols", nargs="*", default=list(NAMES), choices=NAMES, metavar="PROTO",
                    help=f"which demos to run (default: all of {', '.join(NAMES)})")
    args = ap.parse_args()
    runtime = LocalRuntime()
    failed = []
    try:
        for name in args.protocols:
            proto = PROTOCOLS[name]
            print(f"=== demo-{name}: {proto.title} on {runtime.host}:{proto.port} (runtime: {runtime.name})",
                  flush=True)
            code = run_demo(proto, runtime)
            print(f"=== demo-{name}: {'ok' if code == 0 else f'FAILED (exit {code})'}\n", flush=True)
            if code:
                failed.append(name)
    finally:
        runtime.close()
    if failed:
        raise cli.LabError(f"demo failed: {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    cli.run(main)
