"""Every user command works as a newcomer runs it: in a fresh clone, on a machine without Docker, with only
the set-up that command does itself.

The suite itself runs in the fullest .venv (`make test`), so it cannot see a command whose own set-up
forgets what it imports (a capture profile without a package the namespace runtime needs). Here each
command runs in a copy of the working tree with no .venv, and a PATH without `docker` or a compose binary.
Commands that share a set-up profile share a copy: the first one builds .venv with that profile, exactly
as it would on a student's machine (`make record-mqtt` installs what `make capture-rest` would).
Each must exit 0, or fail with one clear line; never a traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from labkit.procs import REPO
from labkit.protocols import NAMES

pytestmark = [
    pytest.mark.timeout(1800),
    pytest.mark.skipif(os.geteuid() != 0, reason="the namespace runtime and tcpdump need root (CI runs as root)"),
]
#: Seconds one make command may take, its set-up included (pip installs the lab's requirements once per copy).
MAKE_TIMEOUT = 900
#: Seconds `make record-<proto>` records before it stops by itself (nobody talks: it says so).
RECORD_SECONDS = "2"


def fresh_copy(dest: Path) -> Path:
    """What `git clone` of this working tree gives: tracked and new unignored files, no .venv, no captures."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    assert not (dest / ".venv").exists()
    return dest


def path_without_docker(bin_dir: Path) -> str:
    """A PATH that finds every program here except Docker's (docker, dockerd, docker-compose)."""
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            if entry.name.startswith("docker") or (bin_dir / entry.name).exists():
                continue
            if os.access(entry.path, os.X_OK) and not entry.is_dir():
                (bin_dir / entry.name).symlink_to(entry.path)
    return str(bin_dir)


@pytest.fixture(scope="module")
def machine(tmp_path_factory) -> dict:
    """The environment of a student's machine without Docker: no engine, no CLI, no compose plugin."""
    home = tmp_path_factory.mktemp("home")
    # Not inherited from `make test` either: MAKEFLAGS and MAKELEVEL would make each command a sub-make.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST", "VIRTUAL_ENV", "PYTHON", "DOCKER", "MAKE", "MFLAGS"))}
    env.update(PATH=path_without_docker(tmp_path_factory.mktemp("path") / "bin"), HOME=str(home),
               PIP_CACHE_DIR=str(Path.home() / ".cache" / "pip"))  # a warm pip cache: the packages, not the network
    assert shutil.which("docker", path=env["PATH"]) is None
    return env


class Clone:
    """One fresh copy of the lab; `make(...)` runs a make command in it the way a student types it."""

    def __init__(self, root: Path, env: dict):
        self.root, self.env = root, env

    def make(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(["make", *args], cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=MAKE_TIMEOUT, stdin=subprocess.DEVNULL)
        print(f"$ make {' '.join(args)}  (exit {done.returncode})\n{done.stdout}{done.stderr}")
        return done


def no_traceback(done: subprocess.CompletedProcess) -> None:
    assert "Traceback (most recent call last)" not in done.stdout + done.stderr, done.stdout + done.stderr


def one_clear_line(done: subprocess.CompletedProcess) -> str:
    """A refusal: non-zero exit, no traceback, and one line of its own on stderr (besides make's own)."""
    no_traceback(done)
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("make: ***")]
    assert done.returncode != 0 and len(lines) == 1, done.stdout + done.stderr
    return lines[0]


def works(done: subprocess.CompletedProcess) -> None:
    no_traceback(done)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def clones(tmp_path_factory, machine):
    """One copy per set-up profile, made on first use."""
    made: dict[str, Clone] = {}

    def get(profile: str) -> Clone:
        if profile not in made:
            made[profile] = Clone(fresh_copy(tmp_path_factory.mktemp(f"clone-{profile}")), machine)
        return made[profile]

    return get


@pytest.mark.parametrize("proto", NAMES)
def test_make_demo(clones, proto):
    done = clones("demo").make(f"demo-{proto}")
    works(done)
    assert f"demo-{proto}" in done.stdout or proto in done.stdout


@pytest.mark.parametrize("runtime", ["netns", "local"])
@pytest.mark.parametrize("proto", NAMES)
def test_make_record_then_capture_without_docker(clones, proto, runtime):
    clone = clones("capture")
    recorded = clone.make(f"record-{proto}", f"RUNTIME={runtime}", f"DURATION={RECORD_SECONDS}")
    works(recorded)
    assert f"record-{proto}: recording" in recorded.stderr + recorded.stdout
    captured = clone.make(f"capture-{proto}", f"RUNTIME={runtime}")
    works(captured)
    latest = clone.root / "captures" / f"{proto}.pcapng"
    assert latest.is_file() and latest.stat().st_size > 0
    assert f"RUNTIME={runtime}" in captured.stdout + captured.stderr or runtime in captured.stdout + captured.stderr


def test_make_analyze_reads_a_capture_as_its_first_command(clones, tmp_path):
    capture = clones("capture")
    source = capture.root / "captures" / "mqtt.pcapng"
    if not source.is_file():  # this test alone: the capture clone made none yet
        works(capture.make("capture-mqtt", "RUNTIME=local"))
    pcap = tmp_path / "student.pcapng"
    shutil.copy(source, pcap)
    clone = clones("analyze")
    done = clone.make("analyze", f"PCAP={pcap}")
    works(done)
    assert "MQTT" in done.stdout and (tmp_path / "student.md").is_file() and (tmp_path / "student.json").is_file()
    assert one_clear_line(clone.make("analyze")).startswith("usage: make analyze PCAP=")
    assert "does not exist yet: run `make record-rest`" in one_clear_line(clone.make("analyze-rest"))


def test_make_compare(clones):
    clone = clones("compare")
    done = clone.make("compare", "N=3")
    works(done)
    assert (clone.root / "captures" / "compare" / "compare.md").is_file()


def test_make_wireshark_profile(clones, machine):
    clone = clones("wireshark")
    done = clone.make("wireshark-profile")
    works(done)
    home = Path(machine["HOME"])
    assert (home / ".config" / "wireshark" / "profiles" / "messaging-lab").is_dir()
    assert (home / ".local" / "lib" / "wireshark" / "plugins" / "lineproto.lua").is_file()
