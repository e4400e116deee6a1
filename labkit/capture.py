"""Record a protocol's scripted demo into captures/, ready to read in Wireshark.

`python -m labkit.capture <proto|all> [--runtime docker|netns|local]` (what `make capture-<proto>`
runs) starts tcpdump, waits until it listens, runs the demo, lets the last FIN/ACKs pass,
stops tcpdump and stores the packets as pcapng with a file comment (protocol, demo
command, runtime, UTC time). Every capture gets a name of its own, captures/<proto>-<UTC time>.pcapng,
and captures/<proto>.pcapng is a copy of the latest (what `make analyze-<proto>` and
`make wireshark-<proto>` open); labkit.record writes the same names for a student's own session.
The runtime is chosen automatically unless --runtime says:
  docker  a Docker engine answers: a capture sidecar (compose profile `capture`) runs tcpdump
          inside the server's network namespace and streams it here; the demo runs with `docker compose exec`
  netns   root and `ip netns` work: the compose file rebuilt as network namespaces
          (labkit.netns); tcpdump on its bridge sees distinct hosts, ARP and handshakes
  local   plain processes on 127.0.0.1, tcpdump on `lo` with a port filter
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from labkit import cli, compose, demo, netns
from labkit.procs import REPO, Proc
from labkit.protocols import NAMES, PROTOCOLS, Protocol, Step

UTC = timezone.utc  # datetime.UTC is Python 3.11+; the lab runs on 3.10 too
RUNTIMES = ("docker", "netns", "local")
CAPTURES = REPO / "captures"
PROFILE_DIR = CAPTURES / "profile"
LUA_DISSECTOR = CAPTURES / "lineproto.lua"
#: The name the profile gets in Wireshark's personal profiles folder.
PROFILE_NAME = "messaging-lab"
#: Seconds tcpdump may take to report that it is listening.
LISTEN_TIMEOUT = 20.0
#: Seconds between the end of the demo and stopping tcpdump, so the last FIN/ACKs are recorded.
SETTLE_SECONDS = 1.0
#: Seconds tcpdump gets to write its last packets and exit after SIGINT, before SIGKILL.
STOP_TIMEOUT = 10.0
#: tcpdump's capture buffer (-B, KiB). Its default (2 MiB) holds only a few dozen packets of lo's 64 KiB
#: frames: a burst (the upcall server's callbacks) was dropped by the kernel before tcpdump read it.
BUFFER_KIB = 32768
#: Seconds `docker info` may take to prove that a Docker engine answers.
DOCKER_PROBE_TIMEOUT = 5.0
#: Name of the capture sidecar service in every compose file (under the compose profile of the same name).
SIDECAR = "capture"

INSTALL_HINT = "run `sudo make capture` (it installs tcpdump and tshark) or `sudo apt-get install tcpdump tshark`"


def say(line: str) -> None:
    print(line, flush=True)


# ------------------------------------------------------------------ choosing a runtime


def docker_engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                              timeout=DOCKER_PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def choose_runtime(requested: str | None) -> tuple[str, str]:
    """(runtime, why): the requested one if it can work here, else the first of docker, netns, local."""
    if requested == "docker":
        if not docker_engine_answers():
            raise cli.LabError("RUNTIME=docker: no Docker engine answers (`docker info` failed): start Docker "
                               "(Docker Desktop, or `sudo systemctl start docker`), or use RUNTIME=netns or local")
        return "docker", "asked for"
    if requested == "netns":
        reason = netns.unavailable_reason()
        if reason:
            raise cli.LabError(f"RUNTIME=netns: {reason}; or use RUNTIME=local")
        return "netns", "asked for"
    if requested == "local":
        return "local", "asked for"
    if docker_engine_answers():
        return "docker", "a Docker engine answers"
    reason = netns.unavailable_reason()
    if reason is None:
        return "netns", "no Docker engine; root and `ip netns` work"
    return "local", f"no Docker engine, and no namespaces: {reason}"


def need_tool(name: str, why: str) -> str:
    path = shutil.which(name)
    if not path:
        raise cli.LabError(f"{name} is not installed ({why}): {INSTALL_HINT}")
    return path


# ------------------------------------------------------------------ tcpdump


@dataclass
class CaptureStats:
    captured: int | None
    dropped: int | None


class Tcpdump:
    """tcpdump writing pcap to a pipe (so its privilege drop never meets file permissions).

    -U --immediate-mode: every packet is handed over at once, so nothing is
    still buffered when it is stopped with SIGINT, its clean way out.
    """

    def __init__(self, interface: str, out: Path, bpf_filter: list[str] | None = None,
                 prefix: list[str] | None = None, argv: list[str] | None = None,
                 stop_argv: list[str] | None = None):
        """`argv` replaces the whole tcpdump command (the Docker sidecar's `compose run`, which writes pcap
        to its stdout too); `stop_argv` then stops it (`docker stop`), instead of SIGINT to the process."""
        if argv is None:
            exe = need_tool("tcpdump", "it records the traffic")
            argv = [*(prefix or []), exe, "-i", interface, "-n", "-U", "--immediate-mode", "-B", str(BUFFER_KIB),
                    "-w", "-", *(bpf_filter or [])]
        self.interface = interface
        self.argv = argv
        self.stop_argv = stop_argv
        self.out = out
        self.stderr_lines: list[str] = []
        self.packets = PcapCounter()
        self._listening = threading.Event()
        self._file = open(out, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, bufsize=0, start_new_session=True)
        self._writer = threading.Thread(target=self._copy_packets, daemon=True)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._writer.start()
        self._reader.start()

    def _copy_packets(self) -> None:
        assert self.popen.stdout is not None
        while chunk := self.popen.stdout.read(65536):
            self._file.write(chunk)
            self.packets.feed(chunk)
        self._file.flush()

    def _read_stderr(self) -> None:
        assert self.popen.stderr is not None
        for raw in self.popen.stderr:
            line = raw.decode("utf-8", "backslashreplace").rstrip()
            self.stderr_lines.append(line)
            if "listening on" in line:
                self._listening.set()

    def wait_listening(self, timeout: float = LISTEN_TIMEOUT) -> None:
        """Return once tcpdump says `listening on`; one clear LabError if it fails or hangs."""
        deadline = time.monotonic() + timeout
        while not self._listening.wait(0.1):
            if self.popen.poll() is not None:
                self._reader.join(2)
                raise cli.LabError(self._failure())
            if time.monotonic() > deadline:
                raise cli.LabError(f"tcpdump did not start listening on {self.interface} within {timeout:g} s")

    def _failure(self) -> str:
        text = " ".join(line for line in self.stderr_lines if line)
        if re.search(r"permission|not permitted", text, re.IGNORECASE):
            return (f"tcpdump may not capture on {self.interface}: capturing needs root: run `sudo make capture`"
                    " (or `sudo .venv/bin/python -m labkit.capture ...`)")
        if "No such device" in text:
            return f"tcpdump: there is no interface {self.interface}: {text}"
        return f"tcpdump failed: {text or f'exit code {self.popen.returncode}'}"

    def stop(self) -> CaptureStats:
        """SIGINT (tcpdump writes what it has and exits), SIGKILL only if it hangs; its counters."""
        if self.popen.poll() is None:
            if self.stop_argv:
                subprocess.run(self.stop_argv, capture_output=True, timeout=STOP_TIMEOUT + 20)
            else:
                self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._writer.join(5)
        self._reader.join(5)
        self._file.close()
        text = "\n".join(self.stderr_lines)
        return CaptureStats(captured=_count(r"(\d+) packets? captured", text) or self.packets.count,
                            dropped=_count(r"(\d+) packets? dropped by kernel", text))


class PcapCounter:
    """Counts the packets of a pcap byte stream as it arrives (tcpdump -w -): the live counter."""

    def __init__(self) -> None:
        self.count = 0
        self._head = b""  # an incomplete header carried over to the next chunk
        self._skip = 0  # bytes of the current packet still to come
        self._record: struct.Struct | None = None  # the record header, in the stream's byte order

    def feed(self, chunk: bytes) -> None:
        data, i = self._head + chunk, 0
        self._head = b""
        while True:
            if self._skip:
                take = min(self._skip, len(data) - i)
                i += take
                self._skip -= take
                if self._skip:
                    return
            if self._record is None:  # the file header: magic number first, 24 bytes in all
                if len(data) - i < 24:
                    self._head = data[i:]
                    return
                little = data[i:i + 4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
                self._record = struct.Struct("<8xI4x" if little else ">8xI4x")
                i += 24
                continue
            if len(data) - i < 16:
                self._head = data[i:]
                return
            self._skip = self._record.unpack_from(data, i)[0]
            self.count += 1
            i += 16


def _count(pattern: str, text: str) -> int | None:
    m = re.search(pattern, text)
    return int(m.group(1)) if m else None


# ------------------------------------------------------------------ pcapng with a comment


def demo_commands(proto: Protocol, kind: str, runtime=None) -> list[str]:
    """Each process of the demo as the runtime ran it: `service: command`."""
    compose_path = compose.compose_file(proto.name).relative_to(REPO)
    lines = []
    for step in (*proto.servers, *proto.demo):
        command = shlex.join(step.argv)
        is_server = step in proto.servers
        if kind == "local":
            command += f" --host 127.0.0.1 --port {proto.port}" if step.argv[0] == "python" else " (lab config)"
        elif kind == "netns" and is_server and runtime is not None:
            command = shlex.join(runtime.lab.host(step.service).service.command) + f" (from {compose_path})"
        elif kind == "docker":
            command = (f"(running, from {compose_path})" if is_server
                       else f"docker compose -f {compose_path} exec {step.service} {command}")
        lines.append(f"{step.service}: {command}")
    return lines


def comments_for(proto: Protocol, runtime: str, where: str, commands: list[str], made_with: str | None = None,
                 recorded: tuple[datetime, datetime] | None = None) -> list[str]:
    """The capture file comments: what was captured, how, and when (UTC).

    `recorded` (start, end) marks a recording of the student's own session (`commands`: what they were told
    to run); without it, the scripted demo's `commands` ran.
    """
    fmt = "%Y-%m-%d %H:%M:%S UTC"
    if recorded:
        start, end = recorded
        what, activity = "recording", f"Session: driven by hand while recording; suggested: {'; '.join(commands)}"
        when = f"Recorded: {start.strftime(fmt)} to {end.strftime(fmt)}"
    else:
        what, activity = "capture", f"Demo: {'; '.join(commands)}"
        when = f"Captured: {datetime.now(UTC).strftime(fmt)}"
    return [
        f"Messaging-protocols lab {what} of {proto.name}: {proto.title}, port {proto.port}",
        activity,
        f"Runtime: {runtime} ({where})",
        f"{when} with `{made_with or f'make capture-{proto.name} RUNTIME={runtime}'}`",
        f"Decode with the captures/profile Wireshark profile and captures/lineproto.lua "
        f"(make wireshark-{proto.name})",
    ]


def write_pcapng(raw: Path, out: Path, comments: list[str], editcap: list[str] | None = None) -> Path:
    """pcap -> pcapng with the file comments (editcap), replacing `out` only when done.

    `editcap` runs it another way (the Docker sidecar's, for a host without tshark): pcap on its stdin,
    pcapng on its stdout.
    """
    partial = out.with_name(f".partial-{out.name}")  # *.pcapng: ignored by git, renamed when complete
    options = ["-F", "pcapng", *(a for c in comments for a in ("--capture-comment", c))]
    if editcap is None or shutil.which("editcap"):
        exe = need_tool("editcap", "it writes the pcapng file and its comment; it comes with tshark")
        done = subprocess.run([exe, *options, str(raw), str(partial)], capture_output=True, text=True, timeout=120)
        error = (done.stderr or done.stdout).strip()
    else:
        with open(raw, "rb") as src, open(partial, "wb") as dst:
            done = subprocess.run([*editcap, *options, "-", "-"], stdin=src, stdout=dst, stderr=subprocess.PIPE,
                                  timeout=300)
        error = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise cli.LabError(f"editcap failed: {error}")
    os.replace(partial, out)
    _give_to_folder_owner(out)
    return out


def stamped_path(out_dir: Path, proto: Protocol, started: datetime) -> Path:
    """captures/<proto>-<UTC date>-<time>.pcapng: a name of its own for every capture and recording."""
    base = f"{proto.name}-{started.strftime('%Y%m%d-%H%M%S')}"
    path, n = out_dir / f"{base}.pcapng", 1
    while path.exists():
        n += 1
        path = out_dir / f"{base}-{n}.pcapng"
    return path


def latest_path(out_dir: Path, proto: Protocol) -> Path:
    """captures/<proto>.pcapng: the latest capture of the protocol, what the analyze and wireshark targets open."""
    return out_dir / f"{proto.name}.pcapng"


def keep_as_latest(stamped: Path, latest: Path) -> Path:
    """Make `latest` a copy of `stamped`: a plain file, readable by every program on every system.

    A copy, not a symlink (Windows programs reading the WSL or a mounted folder do not follow Linux symlinks)
    and not a hard link (a tool that writes into the latest file would change the stamped one too).
    """
    partial = latest.with_name(f".partial-{latest.name}")
    shutil.copyfile(stamped, partial)
    os.replace(partial, latest)
    _give_to_folder_owner(latest)
    return latest


def store(raw: Path, out_dir: Path, proto: Protocol, started: datetime, comments: list[str],
          editcap: list[str] | None = None, history: bool = True, latest: bool = True) -> Path:
    """Write the pcapng (stamped name, plus the latest copy) and return the stamped path.

    With `history` False only <proto>.pcapng is written (compare's folder keeps one per protocol).
    With `latest` False only the stamped file is written: a recording that caught no packets must not
    replace the student's last real one, which `make analyze-<proto>` opens.
    """
    if not history:
        return write_pcapng(raw, latest_path(out_dir, proto), comments, editcap)
    stamped = write_pcapng(raw, stamped_path(out_dir, proto, started), comments, editcap)
    if latest:
        keep_as_latest(stamped, latest_path(out_dir, proto))
    return stamped


def _give_to_folder_owner(path: Path) -> None:
    """Under sudo, the file belongs to whoever owns captures/, so the student can delete it."""
    if os.geteuid() != 0:
        return
    folder = path.parent.stat()
    if (folder.st_uid, folder.st_gid) != (0, 0):
        try:
            os.chown(path, folder.st_uid, folder.st_gid)
        except OSError:
            pass


# ------------------------------------------------------------------ local and namespace captures


def capture_here(proto: Protocol, kind: str, out_dir: Path, echo_line=demo.echo,
                 made_with: str | None = None, history: bool = True) -> Path:
    """Capture with processes on this machine: `netns` (a bridge of namespaces) or `local` (lo).

    `made_with` is the command the file comment names (default: `make capture-<proto>`). Returns the
    latest file, <proto>.pcapng (with `history`, a copy of the one with a time in its name).
    """
    need_tool("tcpdump", "it records the traffic")
    need_tool("editcap", "it writes the pcapng file and its comment; it comes with tshark")
    if kind == "netns":
        runtime = netns.NetnsRuntime(proto)
        where = runtime.describe()
    else:
        runtime = demo.LocalRuntime()
        where = f"processes on 127.0.0.1, tcpdump on lo, filter tcp port {proto.port}"
    say(f"=== capture-{proto.name}: {proto.title}; runtime: {kind} ({where})")
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="lab-capture-") as tmp:
        raw = Path(tmp) / f"{proto.name}.pcap"
        try:
            if kind == "netns":
                runtime.open()
                dump = Tcpdump(runtime.lab.bridge, raw, prefix=runtime.lab.exec_prefix_bridge())
            else:
                for step in proto.servers:
                    runtime.check_port(proto, step)  # before tcpdump: a busy port is one clear line
                dump = Tcpdump("lo", raw, ["tcp", "port", str(proto.port)])
            try:
                dump.wait_listening()
                say(f"=== capture-{proto.name}: tcpdump is listening on {dump.interface}; running the demo")
                code = demo.run_demo(proto, runtime, echo_line)
                time.sleep(SETTLE_SECONDS)
            finally:
                stats = dump.stop()
        finally:
            runtime.close()
        comments = comments_for(proto, kind, where, demo_commands(proto, kind, runtime), made_with)
        out = store(raw, out_dir, proto, started, comments, history=history)
    _report(proto, out, stats, code)
    return latest_path(out_dir, proto)


def _report(proto: Protocol, out: Path, stats: CaptureStats, code: int, verb: str = "capture") -> None:
    say(f"=== {verb}-{proto.name}: {stats.captured if stats.captured is not None else '?'} packets"
        f"{dropped_text(stats)} -> {shown(out)}{latest_text(proto, out)}; {openers(proto, out)}")
    if code:
        raise cli.LabError(f"the {proto.name} demo failed (exit {code}); what was captured is in {shown(out)}")


def shown(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def dropped_text(stats: CaptureStats) -> str:
    return "" if not stats.dropped else f", {stats.dropped} DROPPED by the kernel (capture again)"


def latest_text(proto: Protocol, out: Path) -> str:
    latest = latest_path(out.parent, proto)
    return "" if out == latest else f" (and {shown(latest)}, the latest)"


def openers(proto: Protocol, out: Path) -> str:
    """How to open what was just written: the make targets, or the commands they run."""
    if out.parent.resolve() == CAPTURES.resolve():
        return f"open it with: make analyze-{proto.name}, make wireshark-{proto.name}"
    where = shown(out.parent)
    return (f"open it with: make analyze-{proto.name} CAPTURES={where}, "
            f"make wireshark-{proto.name} CAPTURES={where}")


# ------------------------------------------------------------------ Docker: the capture sidecar


class DockerRuntime:
    """labkit.demo runtime over running compose services: servers are followed, steps are exec'd."""

    name = "docker"

    def __init__(self, base: list[str]):
        self.base = base
        self.host = "docker"

    def check_port(self, proto: Protocol, step: Step) -> None:  # noqa: ARG002 - compose owns the ports
        return None

    def start(self, proto: Protocol, step: Step, echo_line=demo.echo) -> Proc:
        if any(s.service == step.service for s in proto.servers):
            # Started by `up`: follow its log, where run_demo finds the ready line.
            return Proc([*self.base, "logs", "-f", "--no-log-prefix", step.service], cwd=REPO,
                        label=step.service, echo=echo_line)
        return Proc([*self.base, "exec", "-T", step.service, *step.argv], cwd=REPO, label=step.service,
                    echo=echo_line)


class Sidecar:
    """The compose file's `capture` service (compose profile `capture`): tcpdump in the server's network
    namespace, writing pcap to its standard output, which `docker compose run` hands to us.

    It works wherever Docker does, also on Docker Desktop/WSL2 where the host cannot see the bridge,
    and it writes no file of its own: this process writes the pcapng.
    """

    def __init__(self, proto: Protocol):
        self.proto = proto
        self.compose_path = compose.compose_file(proto.name).relative_to(REPO)
        self.base = ["docker", "compose", "-f", str(self.compose_path)]
        self.with_profile = [*self.base, "--profile", SIDECAR]
        self.container = f"lab-{proto.name}-{SIDECAR}-{os.getpid()}"
        self.where = f"sidecar `{SIDECAR}` in {proto.server_service}'s network namespace, {self.compose_path}"

    def up(self) -> None:
        """The protocol's containers up (healthy), and the sidecar's image built."""
        docker_run([*self.base, "up", "-d", "--build", "--wait"], "start the lab")
        docker_run([*self.with_profile, "build", SIDECAR], "build the capture sidecar")

    def tcpdump(self, raw: Path) -> Tcpdump:
        return Tcpdump(f"eth0 of {self.proto.server_service}", raw,
                       argv=[*self.with_profile, "run", "--rm", "-T", "--no-deps", "--name", self.container, SIDECAR],
                       stop_argv=["docker", "stop", "-t", str(int(STOP_TIMEOUT)), self.container])

    def editcap(self) -> list[str]:
        """editcap in the sidecar (pcap on stdin, pcapng on stdout): for a host without tshark."""
        return [*self.with_profile, "run", "--rm", "-T", "--no-deps", "--entrypoint", "editcap", SIDECAR]

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.container], capture_output=True, timeout=60)


def capture_docker(proto: Protocol, out_dir: Path, echo_line=demo.echo, history: bool = True) -> Path:
    """The demo run with `docker compose exec` while the capture sidecar records."""
    sidecar = Sidecar(proto)
    say(f"=== capture-{proto.name}: {proto.title}; runtime: docker ({sidecar.where})")
    started = datetime.now(UTC)
    sidecar.up()
    with tempfile.TemporaryDirectory(prefix="lab-capture-") as tmp:
        raw = Path(tmp) / f"{proto.name}.pcap"
        try:
            dump = sidecar.tcpdump(raw)
            try:
                dump.wait_listening()
                say(f"=== capture-{proto.name}: tcpdump is listening in {proto.server_service}; running the demo")
                code = demo.run_demo(proto, DockerRuntime(sidecar.base), echo_line)
                time.sleep(SETTLE_SECONDS)
            finally:
                stats = dump.stop()
        finally:
            sidecar.remove()
        comments = comments_for(proto, "docker", sidecar.where, demo_commands(proto, "docker"))
        out = store(raw, out_dir, proto, started, comments, editcap=sidecar.editcap(), history=history)
    _report(proto, out, stats, code)
    say(f"=== the {proto.name} containers are still up: `make down-{proto.name}` stops them")
    return latest_path(out_dir, proto)


def docker_run(argv: list[str], what: str) -> str:
    """Run a docker command; one clear LabError with its last line if it fails."""
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise cli.LabError(f"could not {what}: `{shlex.join(argv)}`: {last[-1] if last else done.returncode}")
    return done.stdout + done.stderr


# ------------------------------------------------------------------ command line


def capture(proto: Protocol, kind: str, out_dir: Path = CAPTURES, echo_line=demo.echo) -> Path:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise cli.LabError(f"cannot write captures to {out_dir}: {e.strerror}") from None
    if kind == "docker":
        return capture_docker(proto, out_dir, echo_line)
    return capture_here(proto, kind, out_dir, echo_line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("protocols", nargs="+", choices=(*NAMES, "all"), metavar="PROTO",
                    help=f"what to capture: {', '.join(NAMES)} or all")
    ap.add_argument("--runtime", choices=RUNTIMES, default=None,
                    help="docker, netns or local (default: the first that works here, in that order)")
    ap.add_argument("--out", type=Path, default=CAPTURES, metavar="DIR",
                    help="folder for <proto>-<time>.pcapng and <proto>.pcapng, the latest (default: captures/)")
    args = ap.parse_args()
    # A closed terminal stops the capture like Ctrl+C does: cleanly, namespaces removed.
    signal.signal(signal.SIGHUP, signal.getsignal(signal.SIGTERM))
    names = list(NAMES) if "all" in args.protocols else list(dict.fromkeys(args.protocols))
    kind, why = choose_runtime(args.runtime)
    say(f"=== capture: runtime {kind} ({why}); override with RUNTIME=docker|netns|local")
    failed = []
    for name in names:
        try:
            capture(PROTOCOLS[name], kind, args.out)
        except cli.LabError as e:
            if len(names) == 1:
                raise
            say(f"=== capture-{name}: FAILED: {e}")
            failed.append(name)
    if failed:
        raise cli.LabError(f"capture failed for {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    cli.run(main)
