"""A compose file's network rebuilt from Linux network namespaces: Docker's picture without Docker.

Each compose service gets a namespace of its own (its own IP address, ARP table and
ports), joined by veth pairs to one bridge (`br-<proto>`) that lives in a namespace of
its own too; /etc/netns/<ns>/hosts makes the service names resolve. A capture on that
bridge shows what one on Docker's shows: distinct hosts, ARP, handshakes, teardown.
Needs root and iproute2 (`ip netns`). Everything is removed again, also on failure,
Ctrl+C or SIGTERM; leftovers of a run that was killed outright are removed by the next.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from labkit import cli, compose
from labkit.procs import REPO, Proc
from labkit.protocols import Protocol, Step

#: Every namespace this module creates is called lab-<proto>-<pid>-<service>; the bridge's ends in -bridge.
NS_PREFIX = "lab"
NS_PATTERN = re.compile(rf"^{NS_PREFIX}-[a-z0-9]+-(\d+)-[A-Za-z0-9_.-]+$")
BRIDGE_SUFFIX = "bridge"
NETNS_ETC = Path("/etc/netns")
#: Linux limits interface names to 15 characters.
IFNAME_MAX = 15
#: Seconds one `ip` command may take.
IP_TIMEOUT = 20.0
#: How long processes left in a namespace get after SIGTERM before SIGKILL, when the lab is torn down.
KILL_GRACE = 3.0


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT)
    if check and done.returncode != 0:
        raise cli.LabError(f"`{' '.join(argv)}` failed: {(done.stderr or done.stdout).strip()}")
    return done


def unavailable_reason() -> str | None:
    """Why a namespace lab cannot be built here (None if it can): root and a working `ip netns`."""
    if os.geteuid() != 0:
        return "network namespaces need root (run with sudo)"
    if not shutil.which("ip"):
        return "the `ip` command is missing (apt-get install iproute2)"
    probe = f"{NS_PREFIX}-probe-{os.getpid()}-x"
    try:
        made = _run(["ip", "netns", "add", probe], check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return f"`ip netns add` failed: {e}"
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _run(["ip", "netns", "delete", probe], check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces() -> list[str]:
    done = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _kill_pids_in(ns: str) -> None:
    """Stop every process still in namespace `ns` (all started by this module), by PID."""
    pids = [int(p) for p in _run(["ip", "netns", "pids", ns], check=False).stdout.split() if p.isdigit()]
    pids = [p for p in pids if p != os.getpid()]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _pid_alive(p)]
        time.sleep(0.05)
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def remove_namespace(ns: str) -> None:
    """Stop its processes, delete the namespace (its veths and bridge go with it) and /etc/netns/<ns>."""
    if ns in list_namespaces():
        _kill_pids_in(ns)
        _run(["ip", "netns", "delete", ns], check=False)
    shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)


def remove_stale() -> list[str]:
    """Remove namespaces (and /etc/netns dirs) left by lab runs whose process no longer exists."""
    names = set(list_namespaces())
    if NETNS_ETC.is_dir():
        names |= {p.name for p in NETNS_ETC.iterdir()}
    stale = []
    for name in sorted(names):
        m = NS_PATTERN.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            remove_namespace(name)
            stale.append(name)
    return stale


@dataclass
class Host:
    """One compose service as a namespace on the lab network."""

    service: compose.Service
    netns: str
    address: ipaddress.IPv4Interface

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def mac(self) -> str:
        """02:42 + the IPv4 address, as Docker used to: the same MAC for the same host in every capture."""
        return "02:42:" + ":".join(f"{b:02x}" for b in self.address.ip.packed)


class NetnsLab:
    """The network of one compose file as namespaces; use as a context manager.

    >>> with NetnsLab(compose.compose_file("rest"), "rest") as lab:
    ...     Proc(["python", "server.py"], prefix=lab.exec_prefix("rest-server"))
    """

    def __init__(self, compose_path: Path, name: str):
        try:
            self.compose = compose.load(compose_path)
        except compose.ComposeError as e:
            raise cli.LabError(f"cannot read {compose_path.name}: {e}") from None
        self.compose_path = compose_path
        if len(self.compose.networks) != 1:
            raise cli.LabError(f"{compose_path.name}: the namespace lab needs exactly one network")
        network = next(iter(self.compose.networks.values()))
        if not network.subnets:
            raise cli.LabError(f"{compose_path.name}: network {network.key} has no fixed subnet (ipam config)")
        self.subnet = ipaddress.IPv4Network(network.subnets[0])
        self.bridge = (network.bridge or f"br-{name}")[:IFNAME_MAX]
        self.tag = f"{NS_PREFIX}-{name}-{os.getpid()}"
        self.bridge_netns = f"{self.tag}-{BRIDGE_SUFFIX}"
        self.hosts = self._assign_addresses()
        self._created: list[str] = []

    def _assign_addresses(self) -> dict[str, Host]:
        """Fixed addresses from the file; the others in order from .2 up (.1 is Docker's gateway)."""
        taken = {ipaddress.IPv4Address(s.ipv4_address) for s in self.compose.services.values() if s.ipv4_address}
        free = (a for a in self.subnet.hosts() if a not in taken and a != next(self.subnet.hosts()))
        hosts = {}
        for name in sorted(self.compose.services):
            svc = self.compose.services[name]
            address = ipaddress.IPv4Address(svc.ipv4_address) if svc.ipv4_address else next(free)
            hosts[name] = Host(svc, f"{self.tag}-{name}",
                               ipaddress.IPv4Interface(f"{address}/{self.subnet.prefixlen}"))
        return hosts

    # ------------------------------------------------------------ building and removing

    def __enter__(self) -> NetnsLab:
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def up(self) -> None:
        """Create the bridge, one namespace per service, addresses and hosts files."""
        reason = unavailable_reason()
        if reason:
            raise cli.LabError(f"cannot build the namespace lab: {reason}")
        remove_stale()
        try:
            with _signals_deferred():
                self._add_netns(self.bridge_netns)
                ipn = ["ip", "-n", self.bridge_netns]
                _run([*ipn, "link", "set", "lo", "up"])
                _run([*ipn, "link", "add", self.bridge, "type", "bridge", "mcast_snooping", "0"])
                _run([*ipn, "link", "set", self.bridge, "up"])
                hosts_file = self.hosts_file()
                for index, host in enumerate(self.hosts.values()):
                    self._add_host(index, host, hosts_file)
        except BaseException:
            self.down()
            raise

    def _add_netns(self, ns: str) -> None:
        self._created.append(ns)
        _run(["ip", "netns", "add", ns])
        # As in Docker's default networks: no IPv6, so no router solicitations or MLD in the capture.
        _run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
              "net.ipv6.conf.default.disable_ipv6=1"], check=False)

    def _add_host(self, index: int, host: Host, hosts_file: str) -> None:
        self._add_netns(host.netns)
        etc = NETNS_ETC / host.netns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(hosts_file, encoding="utf-8")
        veth = f"veth{index}"
        _run(["ip", "-n", self.bridge_netns, "link", "add", veth, "type", "veth",
              "peer", "name", "eth0", "netns", host.netns])
        _run(["ip", "-n", self.bridge_netns, "link", "set", veth, "master", self.bridge, "up"])
        ipn = ["ip", "-n", host.netns]
        _run([*ipn, "link", "set", "eth0", "address", host.mac])
        _run([*ipn, "addr", "add", str(host.address), "dev", "eth0"])
        _run([*ipn, "link", "set", "eth0", "up"])
        _run([*ipn, "link", "set", "lo", "up"])

    def hosts_file(self) -> str:
        lines = [f"# {self.tag}: the services of {self.compose_path.name} (written by labkit.netns)",
                 "127.0.0.1\tlocalhost"]
        lines += [f"{h.address.ip}\t{h.name}" for h in self.hosts.values()]
        return "\n".join(lines) + "\n"

    def down(self) -> None:
        """Remove everything up() created; safe to call twice, and never interrupted by Ctrl+C."""
        with _signals_deferred():
            for ns in reversed(self._created):
                remove_namespace(ns)
            for host in self.hosts.values():
                shutil.rmtree(NETNS_ETC / host.netns, ignore_errors=True)
            self._created.clear()

    def leftovers(self) -> list[str]:
        """Namespaces or /etc/netns entries of this lab that still exist (for tests)."""
        mine = [h.netns for h in self.hosts.values()] + [self.bridge_netns]
        present = set(list_namespaces())
        return [ns for ns in mine if ns in present or (NETNS_ETC / ns).exists()]

    # ------------------------------------------------------------ running things inside

    def exec_prefix(self, service: str) -> list[str]:
        """argv prefix that runs a command as `service` (its namespace, its /etc/hosts)."""
        return ["ip", "netns", "exec", self.host(service).netns]

    def exec_prefix_bridge(self) -> list[str]:
        """argv prefix that runs a command in the bridge's namespace (where tcpdump sees every host)."""
        return ["ip", "netns", "exec", self.bridge_netns]

    def host(self, service: str) -> Host:
        try:
            return self.hosts[service]
        except KeyError:
            raise cli.LabError(f"{self.compose_path.name} has no service {service!r}") from None

    def describe(self) -> str:
        addresses = ", ".join(f"{h.name} {h.address.ip}" for h in self.hosts.values())
        return f"namespaces from {self.compose_path.relative_to(REPO)}, bridge {self.bridge} ({addresses})"


@contextmanager
def _signals_deferred():
    """Hold SIGINT/SIGTERM/SIGHUP while namespaces are made or removed; they act right after."""
    signals = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def local_argv(argv: list[str] | tuple[str, ...], host_path: Callable[[str], Path | None]) -> list[str]:
    """A container command as a command here: python is this interpreter, container paths are host paths."""
    argv = list(argv)
    program = argv[0]
    if Path(program).name in ("python", "python3") or re.fullmatch(r"python3\.\d+", Path(program).name):
        argv[0] = sys.executable
    elif not (program.startswith("/") and Path(program).exists()):
        local = shutil.which(Path(program).name, path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
        if not local:
            raise cli.LabError(f"{Path(program).name} is not installed here (needed to run `{' '.join(argv)}`"
                               " without Docker): run `make setup` as root")
        argv[0] = local
    for i, arg in enumerate(argv[1:], start=1):
        if arg.startswith("/"):
            mapped = host_path(arg)
            if mapped is not None:
                argv[i] = str(mapped)
    return argv


def line_buffered() -> list[str]:
    """argv prefix that makes a C program's stdout line-buffered on a pipe (coreutils' stdbuf)."""
    return ["stdbuf", "-oL"] if shutil.which("stdbuf") else []


class NetnsRuntime:
    """labkit.demo runtime: each process in its compose service's namespace, with the compose command.

    Servers run the compose file's `command` (so the file is what gets tested);
    the scripted demo steps run in their client's namespace without --host/--port,
    so the default host names (the compose service names) must resolve and answer.
    """

    name = "netns"

    def __init__(self, proto: Protocol, compose_path: Path | None = None):
        self.lab = NetnsLab(compose_path or compose.compose_file(proto.name), proto.name)
        self.host = self.lab.bridge

    def open(self) -> None:
        self.lab.up()

    def close(self) -> None:
        self.lab.down()

    def describe(self) -> str:
        return self.lab.describe()

    def check_port(self, proto: Protocol, step: Step) -> None:  # noqa: ARG002 - fresh namespaces: ports are free
        return None

    def start(self, proto: Protocol, step: Step, echo_line=None) -> Proc:
        host = self.lab.host(step.service)
        svc = host.service
        is_server = any(s.service == step.service for s in proto.servers)
        command = svc.command if is_server and svc.command else list(step.argv)
        argv = local_argv(command, svc.host_path)
        if argv[0] != sys.executable:
            argv = [*line_buffered(), *argv]  # a C program's log must not wait in a pipe buffer
        cwd = svc.local_cwd() or REPO / proto.folder
        if not cwd.is_dir():
            raise cli.LabError(f"{step.service}: working directory {svc.workdir} maps to no folder here")
        return Proc(argv, cwd=cwd, env=svc.local_env(), label=step.service, echo=echo_line,
                    prefix=self.lab.exec_prefix(step.service))
