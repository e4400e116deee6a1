"""Record whatever happens on one protocol's network while the student runs the demo by hand.

`python -m labkit.record <proto> [--runtime docker|netns|local] [--duration N]` (what
`make record-<proto>` runs) makes the lab reachable, says where it listens and which commands to run
in other terminals, counts packets as they arrive, and on Ctrl+C (or after N seconds) writes
captures/<proto>-<UTC time>.pcapng with a comment naming the protocol, runtime and time, plus
captures/<proto>.pcapng, a copy of the latest (what `make analyze-<proto>` and `make wireshark-<proto>` open).
With a TLS key log (SSLKEYLOGFILE=<file> in the environment, or --keylog <file>) the secrets of the recorded TLS
sessions go into the pcapng (`editcap --inject-secrets`), so Wireshark decrypts it with no settings.
The runtime is chosen as for `make capture-<proto>`:
  docker  the compose file's containers (started if they are not up); tcpdump on the network's fixed
          bridge br-<proto> (Linux, as root), else the capture sidecar in the server's network namespace
          (Docker Desktop/WSL2, where the host cannot see the bridge)
  netns   the compose file rebuilt as namespaces, its servers started here; the clients run in their
          own namespaces with `sudo ip netns exec <namespace> ...` (the exact commands are printed)
  local   loopback: the folder's servers start here on 127.0.0.1, unless one already listens on the
          port (then that one, yours, is recorded); the clients run with --host 127.0.0.1
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from labkit import capture, cli, compose, demo, netns
from labkit.capture import CAPTURES, Tcpdump, say
from labkit.procs import REPO, Proc
from labkit.protocols import NAMES, PROTOCOLS, Protocol

#: Seconds between two updates of the live packet counter on a terminal.
COUNTER_EVERY_SECONDS = 0.5
#: Without a terminal (a log, a test) the counter is a line of its own, at most this often, when it changed.
COUNTER_LINE_EVERY_SECONDS = 2.0


@dataclass
class Session:
    """One runtime made ready for the student: where tcpdump listens and what they run."""

    runtime: str
    where: str  # for the file comment and the first line
    dump: Tcpdump | None = None
    commands: list[str] = field(default_factory=list)  # what the student runs in other terminals
    notes: list[str] = field(default_factory=list)  # said once, before recording starts
    editcap: list[str] | None = None  # editcap elsewhere (the sidecar's), when this host has none


def client_scripts(proto: Protocol) -> list[tuple[str, str]]:
    """(compose service, script) of each client of the demo, e.g. ("mqtt-pub", "pub.py")."""
    return list(dict.fromkeys((step.service, step.argv[1]) for step in proto.demo))


def python_here() -> str:
    """This interpreter as the student types it from the repository folder."""
    exe = Path(sys.executable)
    return str(exe.relative_to(REPO)) if exe.is_relative_to(REPO) else str(exe)


# ------------------------------------------------------------------ the three runtimes


def open_docker(proto: Protocol, raw: Path, stack: ExitStack, via: str | None = None) -> Session:
    """`via` "bridge" or "sidecar"; by default the bridge where this host can capture on it."""
    sidecar = capture.Sidecar(proto)
    say(f"=== record-{proto.name}: starting the containers of {sidecar.compose_path} (if they are not up)")
    sidecar.up()
    network = next(iter(compose.load(REPO / sidecar.compose_path).networks.values()))
    bridge = network.bridge or f"br-{proto.name}"
    exec_ = f"docker compose -f {sidecar.compose_path} exec"
    session = Session("docker", "")
    bridge_here = os.geteuid() == 0 and Path("/sys/class/net", bridge).exists() and shutil.which("tcpdump")
    if via == "bridge" and not bridge_here:
        raise cli.LabError(f"cannot capture on {bridge} here (it needs root, tcpdump and Docker Engine on this "
                           "host, not Docker Desktop): leave out --via to use the capture sidecar")
    if via != "sidecar" and bridge_here:
        session.where = f"the Docker bridge {bridge} of {sidecar.compose_path} (every container on it)"
        session.dump = Tcpdump(bridge, raw)
    else:
        session.where = f"{sidecar.where} (this host cannot capture on {bridge} itself)"
        session.dump = sidecar.tcpdump(raw)
        session.editcap = sidecar.editcap()
        stack.callback(sidecar.remove)
    for step in proto.servers:
        if step.argv[0] == "python":
            session.commands.append(f"{exec_} {step.service} {shlex.join(step.argv)}   (follows the running server)")
        else:
            session.commands.append(f"docker compose -f {sidecar.compose_path} logs -f {step.service}")
    session.commands += [f"{exec_} {service} python {script}" for service, script in client_scripts(proto)]
    session.notes.append(f"the containers stay up after the recording: `make down-{proto.name}` stops them")
    return session


def open_netns(proto: Protocol, raw: Path, stack: ExitStack, echo_line) -> Session:
    runtime = netns.NetnsRuntime(proto)
    runtime.open()
    stack.callback(runtime.close)
    session = Session("netns", runtime.describe())
    session.dump = Tcpdump(runtime.lab.bridge, raw, prefix=runtime.lab.exec_prefix_bridge())
    _start_servers(proto, runtime, stack, echo_line)
    python = python_here()
    for service, script in client_scripts(proto):
        ns = runtime.lab.host(service).netns
        session.commands.append(f"sudo ip netns exec {ns} {python} {proto.folder}/{script}")
    session.notes += [
        f"the servers run here in their namespaces ({', '.join(s.service for s in proto.servers)}); "
        "their output appears below",
        f"run the commands from {REPO}; inside a namespace the service names resolve as in Docker",
        "stopping the recording removes the namespaces, and stops whatever still runs in them",
    ]
    return session


def open_local(proto: Protocol, raw: Path, stack: ExitStack, echo_line) -> Session:
    runtime = demo.LocalRuntime()
    stack.callback(runtime.close)
    session = Session("local", f"processes on 127.0.0.1, tcpdump on lo, filter tcp port {proto.port}")
    session.dump = Tcpdump("lo", raw, ["tcp", "port", str(proto.port)])
    try:
        for step in proto.servers:
            runtime.check_port(proto, step)
    except cli.LabError:
        session.notes.append(f"a server already listens on 127.0.0.1:{proto.port}: recording that one (yours)")
    else:
        _start_servers(proto, runtime, stack, echo_line)
        session.notes.append(f"the {proto.name} server runs here on 127.0.0.1:{proto.port}; its output appears below")
    python = python_here()
    port = "" if proto.port == PROTOCOLS[proto.name].port else f" --port {proto.port}"
    session.commands += [f"{python} {proto.folder}/{script} --host 127.0.0.1{port}"
                         for _service, script in client_scripts(proto)]
    return session


def _start_servers(proto: Protocol, runtime, stack: ExitStack, echo_line) -> None:
    for step in proto.servers:
        proc: Proc = runtime.start(proto, step, echo_line)
        stack.callback(proc.stop, 3)
        demo.wait_ready(proc, step, demo.SERVER_START_TIMEOUT)


# ------------------------------------------------------------------ the live counter


class Counter:
    """`Got N` as tcpdump shows it: one line redrawn on a terminal, a line now and then otherwise."""

    def __init__(self, label: str, stream=sys.stdout):
        self.label = label
        self.stream = stream
        self.tty = stream.isatty()
        self.lock = threading.Lock()
        self.shown: int | None = None
        self.shown_at = 0.0

    def echo(self, label: str, line: str) -> None:
        """A server's output line, printed above the counter."""
        with self.lock:
            if self.tty:
                self.stream.write("\r\033[K")
            demo.echo(label, line)
            if self.tty and self.shown is not None:
                self.stream.write(self._text(self.shown))
                self.stream.flush()

    def _text(self, n: int) -> str:
        return f"=== {self.label}: Got {n}"

    def update(self, n: int) -> None:
        now = time.monotonic()
        with self.lock:
            if self.tty:
                self.stream.write("\r\033[K" + self._text(n))
                self.stream.flush()
                self.shown = n
            elif n != self.shown and now - self.shown_at >= COUNTER_LINE_EVERY_SECONDS:
                self.stream.write(self._text(n) + " packets so far\n")
                self.stream.flush()
                self.shown, self.shown_at = n, now

    def end(self) -> None:
        with self.lock:
            if self.tty and self.shown is not None:
                self.stream.write("\n")
                self.stream.flush()


# ------------------------------------------------------------------ recording


def record(proto: Protocol, kind: str, out_dir: Path = CAPTURES, duration: float | None = None,
           via: str | None = None, keylog: Path | None = None) -> Path:
    """Record until Ctrl+C/SIGTERM or `duration` seconds; returns the file written (its own name).

    With `keylog` (a TLS key log, SSLKEYLOGFILE) the secrets of the recording's TLS connections go into the file.
    """
    if kind != "docker":  # with Docker, the sidecar's editcap does it when this host has none
        capture.need_tool("editcap", "it writes the pcapng file and its comment; it comes with tshark")
    label = f"record-{proto.name}"
    counter = Counter(label)
    made_with = f"make record-{proto.name} RUNTIME={kind}"
    with tempfile.TemporaryDirectory(prefix="lab-record-") as tmp, ExitStack() as stack:
        raw = Path(tmp) / f"{proto.name}.pcap"
        if kind == "docker":
            session = open_docker(proto, raw, stack, via)
        elif kind == "netns":
            session = open_netns(proto, raw, stack, counter.echo)
        else:
            session = open_local(proto, raw, stack, counter.echo)
        dump = session.dump
        assert dump is not None
        try:
            dump.wait_listening()
            started = datetime.now(capture.UTC)
            say(f"=== {label}: {proto.title}; runtime {kind}; listening on {session.where}")
            for note in session.notes:
                say(f"    {note}")
            say("    Run the demo in other terminals, as you like (edit a script, add flags), e.g.:")
            for command in session.commands:
                say(f"      {command}")
            if keylog:
                say(f"    TLS clients log their secrets with SSLKEYLOGFILE={keylog} in their environment; "
                    "they go into the recording")
            until = f"for {duration:g} s, or " if duration else ""
            say(f"=== {label}: recording {until}until Ctrl+C")
            _wait(dump, counter, duration)
        finally:
            stats = dump.stop()
            counter.end()
        ended = datetime.now(capture.UTC)
        stack.close()  # servers and namespaces down before the file is written
        count = stats.captured if stats.captured is not None else dump.packets.count
        comments = capture.comments_for(proto, kind, session.where, session.commands, made_with,
                                        recorded=(started, ended))
        out = capture.store(raw, out_dir, proto, started, comments, editcap=session.editcap, latest=bool(count))
        if keylog and count and embed_secrets(out, keylog, label):
            capture.keep_as_latest(out, capture.latest_path(out.parent, proto))
    took = f"in {(ended - started).total_seconds():.0f} s -> {capture.shown(out)}"
    if not count:
        latest = capture.latest_path(out.parent, proto)
        kept = (f"{capture.shown(latest)} still holds your last recording with packets" if latest.exists()
                else f"no {capture.shown(latest)} was made")
        say(f"=== {label}: 0 packets {took}; {kept}")
        say(f"=== {label}: no packets: did the clients talk to this lab? (the commands above)")
        return out
    say(f"=== {label}: {count} packets{capture.dropped_text(stats)} {took}{capture.latest_text(proto, out)}; "
        f"{capture.openers(proto, out)}")
    say(f"    check it against your worksheet: make check-{proto.name} STUDENT=<your id>"
        f"{'' if out.parent.resolve() == capture.CAPTURES.resolve() else f' PCAP={capture.shown(out)}'}")
    return out


def client_randoms(pcapng: Path) -> set[str] | None:
    """The client randoms (hex) of the file's TLS ClientHellos, as tshark reads them; None without tshark."""
    exe = shutil.which("tshark")
    if exe is None:
        return None
    done = subprocess.run([exe, "-n", "-r", str(pcapng), "-Y", "tls.handshake.type == 1", "-T", "fields",
                           "-e", "tls.handshake.random"], capture_output=True, text=True, timeout=120)
    return {r.replace(":", "").lower() for r in done.stdout.split()} if done.returncode == 0 else None


def embed_secrets(pcapng: Path, keylog: Path, label: str) -> bool:
    """Put the TLS secrets of the file's connections, read from `keylog`, into it: `editcap --inject-secrets`
    (Wireshark 3.0+) writes them in a Decryption Secrets Block, and Wireshark decrypts with no settings.

    Only the lines of this file's TLS sessions go in (a key log may hold a browser's too). Returns whether the file
    changed; a missing or empty key log is one line, and the recording is kept as it is.
    """
    try:
        lines = keylog.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        say(f"=== {label}: no TLS secrets embedded: key log {keylog}: {e.strerror} (did a TLS client run with "
            f"SSLKEYLOGFILE={keylog}?); the recording is kept without them")
        return False
    secrets = [line for line in lines if len(line.split()) == 3 and not line.startswith("#")]
    if not secrets:
        say(f"=== {label}: no TLS secrets embedded: key log {keylog} is empty (did a TLS client run with "
            f"SSLKEYLOGFILE={keylog}?); the recording is kept without them")
        return False
    randoms = client_randoms(pcapng)
    if randoms is not None:
        secrets = [line for line in secrets if line.split()[1].lower() in randoms]
        if not secrets:
            say(f"=== {label}: no TLS secrets embedded: {keylog} has none for the "
                f"{len(randoms)} TLS connection(s) of this recording")
            return False
    exe = shutil.which("editcap")
    if exe is None:
        say(f"=== {label}: no TLS secrets embedded: editcap is not installed here (it comes with tshark); "
            f"`editcap --inject-secrets tls,{keylog} {pcapng.name} out.pcapng` does it")
        return False
    partial = pcapng.with_name(f".partial-{pcapng.name}")
    with tempfile.TemporaryDirectory(prefix="lab-keylog-") as tmp:
        mine = Path(tmp) / "keylog.txt"
        mine.write_text("\n".join(secrets) + "\n", encoding="utf-8")
        done = subprocess.run([exe, "--inject-secrets", f"tls,{mine}", str(pcapng), str(partial)],
                              capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        say(f"=== {label}: no TLS secrets embedded: editcap failed: {(done.stderr or done.stdout).strip()}")
        return False
    os.replace(partial, pcapng)
    sessions = len({line.split()[1] for line in secrets})
    say(f"=== {label}: TLS secrets of {sessions} session(s) embedded ({len(secrets)} key log lines): "
        "Wireshark and tshark decrypt this file with no settings")
    return True


def _wait(dump: Tcpdump, counter: Counter, duration: float | None) -> None:
    """Show the counter until Ctrl+C/SIGTERM (not an error here: it is how one stops) or the duration ends."""
    deadline = time.monotonic() + duration if duration else None
    try:
        while deadline is None or time.monotonic() < deadline:
            if dump.popen.poll() is not None:
                said = " ".join(dump.stderr_lines[-2:]) or "no reason given"
                raise cli.LabError(f"tcpdump stopped by itself: {said}")
            counter.update(dump.packets.count)
            time.sleep(COUNTER_EVERY_SECONDS)
    except KeyboardInterrupt:  # Ctrl+C, and cli.Terminated (SIGTERM, SIGHUP)
        pass
    counter.update(dump.packets.count)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("protocol", choices=NAMES, metavar="PROTO", help=f"whose network to record: {', '.join(NAMES)}")
    ap.add_argument("--runtime", choices=capture.RUNTIMES, default=None,
                    help="docker, netns or local (default: the first that works here, in that order)")
    ap.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                    help="stop after this many seconds (default: at Ctrl+C)")
    ap.add_argument("--out", type=Path, default=CAPTURES, metavar="DIR",
                    help="folder for <proto>-<time>.pcapng and <proto>.pcapng, the latest (default: captures/)")
    ap.add_argument("--port", type=cli.port_number, default=None,
                    help="local runtime: record this port (and start the server on it) instead of the usual one")
    ap.add_argument("--keylog", type=Path, default=os.environ.get("SSLKEYLOGFILE") or None, metavar="FILE",
                    help="TLS key log (NSS format) whose secrets go into the recording (default: $SSLKEYLOGFILE)")
    ap.add_argument("--via", choices=("bridge", "sidecar"), default=None,
                    help="docker runtime: listen on the bridge br-<proto> or with the capture sidecar "
                         "(default: the bridge where this host can, as root on Linux, else the sidecar)")
    args = ap.parse_args()
    if args.duration is not None and args.duration <= 0:
        raise cli.LabError(f"--duration must be a positive number of seconds, not {args.duration:g}", code=2)
    signal.signal(signal.SIGHUP, signal.getsignal(signal.SIGTERM))  # a closed terminal stops it like Ctrl+C
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl+C stops it even if started with SIGINT ignored
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise cli.LabError(f"cannot write captures to {args.out}: {e.strerror}") from None
    kind, why = capture.choose_runtime(args.runtime)
    say(f"=== record: runtime {kind} ({why}); override with RUNTIME=docker|netns|local")
    proto = PROTOCOLS[args.protocol]
    if args.port is not None:
        if kind != "local":
            raise cli.LabError(f"--port is for the local runtime; with {kind} the compose file sets the ports",
                               code=2)
        proto = dataclasses.replace(proto, port=args.port)
    if args.via and kind != "docker":
        raise cli.LabError(f"--via is for the docker runtime, not {kind}", code=2)
    record(proto, kind, args.out, args.duration, args.via, args.keylog.absolute() if args.keylog else None)
    return 0


if __name__ == "__main__":
    cli.run(main)
