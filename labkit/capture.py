"""Record a protocol's scripted demo into captures/<proto>.pcapng, ready to read in Wireshark.

`python -m labkit.capture <proto|all> [--runtime docker|netns|local]` (what `make capture-<proto>`
runs) starts tcpdump, waits until it listens, runs the demo, lets the last FIN/ACKs pass,
stops tcpdump and stores the packets as pcapng with a file comment (protocol, demo
command, runtime, UTC time). The runtime is chosen automatically unless --runtime says:
  docker  a Docker engine answers: a capture sidecar (compose profile `capture`) runs tcpdump
          inside the server's network namespace; the demo runs with `docker compose exec`
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
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from labkit import cli, compose, demo, netns
from labkit.procs import REPO, Proc
from labkit.protocols import NAMES, PROTOCOLS, Protocol, Step

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
                 prefix: list[str] | None = None):
        exe = need_tool("tcpdump", "it records the traffic")
        self.interface = interface
        self.argv = [*(prefix or []), exe, "-i", interface, "-n", "-U", "--immediate-mode", "-B", str(BUFFER_KIB),
                     "-w", "-",
                     *(bpf_filter or [])]
        self.out = out
        self.stderr_lines: list[str] = []
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
        return CaptureStats(captured=_count(r"(\d+) packets? captured", text),
                            dropped=_count(r"(\d+) packets? dropped by kernel", text))


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


def comments_for(proto: Protocol, runtime: str, where: str, commands: list[str],
                 made_with: str | None = None) -> list[str]:
    """The capture file comments: what was captured, how, and when (UTC)."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return [
        f"Messaging-protocols lab capture of {proto.name}: {proto.title}, port {proto.port}",
        f"Demo: {'; '.join(commands)}",
        f"Runtime: {runtime} ({where})",
        f"Captured: {when} with `{made_with or f'make capture-{proto.name} RUNTIME={runtime}'}`",
        f"Decode with the captures/profile Wireshark profile and captures/lineproto.lua "
        f"(make wireshark-{proto.name})",
    ]


def write_pcapng(raw: Path, out: Path, comments: list[str]) -> Path:
    """pcap -> pcapng with the file comments (editcap), replacing `out` only when done."""
    editcap = need_tool("editcap", "it writes the pcapng file and its comment; it comes with tshark")
    partial = out.with_name(f".partial-{out.name}")  # *.pcapng: ignored by git
    argv = [editcap, "-F", "pcapng"]
    for comment in comments:
        argv += ["--capture-comment", comment]
    done = subprocess.run([*argv, str(raw), str(partial)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise cli.LabError(f"editcap failed: {(done.stderr or done.stdout).strip()}")
    os.replace(partial, out)
    _give_to_folder_owner(out)
    return out


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
                 made_with: str | None = None) -> Path:
    """Capture with processes on this machine: `netns` (a bridge of namespaces) or `local` (lo).

    `made_with` is the command the file comment names (default: `make capture-<proto>`).
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
    out = out_dir / f"{proto.name}.pcapng"
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
        write_pcapng(raw, out, comments_for(proto, kind, where, demo_commands(proto, kind, runtime), made_with))
    _report(proto, out, stats, code)
    return out


def _report(proto: Protocol, out: Path, stats: CaptureStats, code: int) -> None:
    shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    dropped = "" if not stats.dropped else f", {stats.dropped} DROPPED by the kernel (capture again)"
    opener = (f"make wireshark-{proto.name}" if out == CAPTURES / f"{proto.name}.pcapng"
              else f"make wireshark-profile, then wireshark -C {PROFILE_NAME} {shown}")
    say(f"=== capture-{proto.name}: {stats.captured if stats.captured is not None else '?'} packets{dropped} "
        f"-> {shown}; open it with: {opener}")
    if code:
        raise cli.LabError(f"the {proto.name} demo failed (exit {code}); what was captured is in {shown}")


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


def capture_docker(proto: Protocol, out_dir: Path, echo_line=demo.echo) -> Path:
    """Sidecar tcpdump in the server's network namespace (works on Docker Desktop and WSL2 too)."""
    if out_dir.resolve() != CAPTURES.resolve():
        raise cli.LabError("with Docker the capture is written to captures/ (the folder the sidecar mounts)")
    compose_path = compose.compose_file(proto.name).relative_to(REPO)
    base = ["docker", "compose", "-f", str(compose_path)]
    with_sidecar = [*base, "--profile", SIDECAR]
    where = f"sidecar `{SIDECAR}` in {proto.server_service}'s network namespace, {compose_path}"
    say(f"=== capture-{proto.name}: {proto.title}; runtime: docker ({where})")
    raw_name = f".{proto.name}.pcap"
    _docker([*base, "up", "-d", "--build", "--wait"], "start the lab")
    _docker([*with_sidecar, "up", "-d", "--build", "--no-deps", "--force-recreate", SIDECAR],
            "start the capture sidecar")
    stopped = False
    try:
        _wait_sidecar_listening(with_sidecar)
        say(f"=== capture-{proto.name}: tcpdump is listening in {proto.server_service}; running the demo")
        code = demo.run_demo(proto, DockerRuntime(base), echo_line)
        time.sleep(SETTLE_SECONDS)
        _docker([*with_sidecar, "stop", "-t", str(int(STOP_TIMEOUT)), SIDECAR], "stop the capture sidecar")
        stopped = True
        log = _docker([*with_sidecar, "logs", "--no-log-prefix", SIDECAR], "read the sidecar's log")
        stats = CaptureStats(captured=_count(r"(\d+) packets? captured", log),
                             dropped=_count(r"(\d+) packets? dropped by kernel", log))
        comments = comments_for(proto, "docker", where, demo_commands(proto, "docker"))
        script = (f'editcap -F pcapng "$@" /captures/{raw_name} /captures/.partial-{proto.name}.pcapng && '
                  f'mv /captures/.partial-{proto.name}.pcapng /captures/{proto.name}.pcapng && '
                  f'chown --reference=/captures /captures/{proto.name}.pcapng && rm -f /captures/{raw_name}'
                  )
        args = [a for c in comments for a in ("--capture-comment", c)]
        _docker([*with_sidecar, "run", "--rm", "--no-deps", "--entrypoint", "sh", SIDECAR, "-c", script, "sh",
                 *args], "write the pcapng file")
    finally:
        if not stopped:
            subprocess.run([*with_sidecar, "stop", "-t", str(int(STOP_TIMEOUT)), SIDECAR], cwd=REPO)
        subprocess.run([*with_sidecar, "rm", "-f", SIDECAR], cwd=REPO, capture_output=True)
    out = out_dir / f"{proto.name}.pcapng"
    _report(proto, out, stats, code)
    say(f"=== the {proto.name} containers are still up: `make down-{proto.name}` stops them")
    return out


def _docker(argv: list[str], what: str) -> str:
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise cli.LabError(f"could not {what}: `{shlex.join(argv)}`: {last[-1] if last else done.returncode}")
    return done.stdout + done.stderr


def _wait_sidecar_listening(with_sidecar: list[str]) -> None:
    deadline = time.monotonic() + LISTEN_TIMEOUT
    while time.monotonic() < deadline:
        log = _docker([*with_sidecar, "logs", "--no-log-prefix", SIDECAR], "read the sidecar's log")
        if "listening on" in log:
            return
        time.sleep(0.5)
    raise cli.LabError(f"the capture sidecar's tcpdump did not start listening within {LISTEN_TIMEOUT:g} s: "
                       f"`{shlex.join([*with_sidecar, 'logs', SIDECAR])}` says why")


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
                    help="folder for <proto>.pcapng (default: captures/)")
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
