"""Shared fixtures: real processes on real sockets, always cleaned up."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labkit.procs import REPO, Proc, free_port, python_env, script  # noqa: E402


class Spawner:
    """Starts processes for one test and stops every one of them afterwards."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def __call__(self, argv, **kw) -> Proc:
        kw.setdefault("env", python_env())
        p = Proc(argv, **kw)
        self.procs.append(p)
        return p

    def script(self, folder: str, name: str, *args: str, **kw) -> Proc:
        kw.setdefault("cwd", kw.pop("cwd", None) or str(REPO / folder))
        return self(script(folder, name, *args), **kw)

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            p.stop(timeout=3)


@pytest.fixture
def spawn():
    s = Spawner()
    try:
        yield s
    finally:
        s.stop_all()


@pytest.fixture
def port() -> int:
    return free_port()


class Broker:
    """A real Mosquitto on 127.0.0.1:<free port>, restartable on the same port."""

    def __init__(self, spawn: Spawner, workdir: Path):
        self.spawn = spawn
        self.port = free_port()
        self.conf = workdir / "mosquitto-test.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "log_dest stdout\nlog_type all\n")
        self.proc: Proc | None = None
        self.start()

    def start(self) -> None:
        # Mosquitto's log to stdout is block-buffered on a pipe: stdbuf makes it line-buffered,
        # or the ready line (and the log lines tests look for) would only come at exit.
        self.proc = self.spawn(["mosquitto", "-c", str(self.conf)], label="mosquitto", prefix=["stdbuf", "-oL"])
        self.proc.wait_for(r"Opening ipv4 listen socket|mosquitto version .* running", timeout=10)

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def broker(spawn, tmp_path):
    if not shutil.which("mosquitto"):
        pytest.fail("mosquitto is not installed: run `make setup` (as root it installs it)")
    b = Broker(spawn, tmp_path)
    yield b
    b.stop()
