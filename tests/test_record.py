"""`make record-<proto>`: the student's own session, driven by hand while it records, in every runtime.

Each test starts the recorder the way `make record-<proto>` does, runs the clients as a student
would in other terminals (with edited flags: another MQTT topic, other messages), stops it with
Ctrl+C (SIGINT) or DURATION, and reads the file back with tshark: the student's messages are in it,
the scripted demo's are not. The analyzer's TCP flags, ARP and MQTT roles are checked against tshark
on these same recordings, and the make targets open the file they wrote.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import wire
from wire import payload_bytes, tshark, values

from labkit import compose
from labkit.analyze import analyze
from labkit.analyze.analysis import flag_name
from labkit.analyze.report import to_json
from labkit.procs import REPO, Proc, free_port, python_env

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="namespaces and tcpdump need root (CI runs as root)")
#: Seconds for the recorder to say it is recording (the Docker runtime may build images first).
READY_TIMEOUT = 60
DOCKER_READY_TIMEOUT = 600
STOP_TIMEOUT = 60
MAKE_TIMEOUT = 300


def start_recorder(spawn, proto: str, runtime: str, out: Path, *extra: str, env: dict | None = None) -> Proc:
    rec = spawn([sys.executable, "-m", "labkit.record", proto, "--runtime", runtime, "--out", str(out), *extra],
                cwd=REPO, label="record", env=env or python_env())
    rec.wait_for(rf"=== record-{proto}: recording", timeout=DOCKER_READY_TIMEOUT if runtime == "docker"
                 else READY_TIMEOUT)
    return rec


def stop_recorder(rec: Proc) -> Path:
    """Ctrl+C, as the student stops it; returns the file it wrote (its own, timestamped name)."""
    rec.signal(signal.SIGINT)
    assert rec.wait(STOP_TIMEOUT) == 0, rec.output
    m = re.search(r"-> (\S+\.pcapng) \(and (\S+\.pcapng), the latest\)", rec.output)
    assert m, rec.output
    stamped, latest = Path(m.group(1)), Path(m.group(2))
    assert re.fullmatch(r"[a-z]+-\d{8}-\d{6}(-\d+)?\.pcapng", stamped.name), stamped
    assert latest.read_bytes() == stamped.read_bytes() and not latest.is_symlink()
    return stamped


def suggested(rec: Proc, script: str) -> list[str]:
    """The command the recorder told the student to run for `script`, as argv."""
    for line in rec.lines:
        if line.strip().endswith(script) or f"{script} --host" in line:
            return line.split()
    raise AssertionError(f"no command for {script} in:\n{rec.output}")


def run_client(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=python_env())
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def opened_by_make_targets(pcap: Path, proto: str, tmp_path: Path, wireshark_env: dict) -> None:
    """`make analyze-<proto>` and `make wireshark-<proto>` open the latest file (WIRESHARK= records its argv)."""
    folder = pcap.parent
    analyzed = subprocess.run(["make", "--no-print-directory", f"analyze-{proto}", f"CAPTURES={folder}"], cwd=REPO,
                              capture_output=True, text=True, timeout=MAKE_TIMEOUT)
    assert analyzed.returncode == 0, analyzed.stdout + analyzed.stderr
    assert f"Capture {folder / f'{proto}.pcapng'}" in analyzed.stdout
    argv_log = tmp_path / "wireshark-argv.json"
    fake_gui = tmp_path / "wireshark-stand-in"
    # Records how the target called Wireshark, then reads the file with tshark and the same options.
    fake_gui.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {argv_log}\n"
                        "last=\"\"; for a in \"$@\"; do last=\"$a\"; done\n"
                        "exec tshark \"$1\" \"$2\" \"$3\" \"$4\" -r \"$last\" -c 3\n")
    fake_gui.chmod(0o755)
    opened = subprocess.run(["make", "--no-print-directory", f"wireshark-{proto}", f"CAPTURES={folder}",
                             f"WIRESHARK={fake_gui}"], cwd=REPO, capture_output=True, text=True,
                            timeout=MAKE_TIMEOUT, env=wireshark_env)
    assert opened.returncode == 0, opened.stdout + opened.stderr
    argv = argv_log.read_text().split("\n")
    assert argv[:2] == ["-C", "messaging-lab"] and str(folder / f"{proto}.pcapng") in argv
    assert len(opened.stdout.strip().splitlines()) >= 3, opened.stdout  # tshark read the packets


@pytest.fixture
def wireshark_env(tmp_path) -> dict:
    return wire.wireshark_home(tmp_path / "home")


# ------------------------------------------------------------------ loopback


@needs_root
def test_local_recording_holds_the_students_own_lines_not_the_scripted_ones(spawn, tmp_path, wireshark_env):
    port = free_port()
    rec = start_recorder(spawn, "reqresp", "local", tmp_path, "--port", str(port))
    assert f"listening on processes on 127.0.0.1, tcpdump on lo, filter tcp port {port}" in rec.output
    command = suggested(rec, "client.py")
    assert command[-4:] == ["--host", "127.0.0.1", "--port", str(port)]
    run_client([sys.executable, *command[1:], "halo dari siswa", "pesan kedua", "bye"])
    rec.wait_for(r"Got [1-9]\d* packets so far", timeout=10)  # the live counter
    pcap = stop_recorder(rec)
    sent = payload_bytes(wireshark_env, pcap)
    assert b"halo dari siswa\n" in sent and b"Echo: pesan kedua\n" in sent
    assert b"one\n" not in sent and b"three" not in sent  # the scripted demo did not run
    comments = wire.file_comments(pcap)
    assert "recording of reqresp" in comments and "Runtime: local" in comments and re.search(
        r"Recorded: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC to .* with `make record-reqresp RUNTIME=local`", comments)
    opened_by_make_targets(pcap, "reqresp", tmp_path, wireshark_env)


@needs_root
def test_duration_stops_the_recording_by_itself(spawn, tmp_path, wireshark_env):
    port = free_port()
    rec = start_recorder(spawn, "upcall", "local", tmp_path, "--port", str(port), "--duration", "4")
    run_client([sys.executable, str(REPO / "upcall" / "clientcall.py"), "--host", "127.0.0.1", "--port", str(port),
                "--messages", "tugas satu,bye", "--log", str(tmp_path / "client.log")])
    assert rec.wait(STOP_TIMEOUT) == 0, rec.output
    pcap = tmp_path / "upcall.pcapng"
    assert b"Upcall event: Processing tugas satu" in payload_bytes(wireshark_env, pcap)


@needs_root
def test_a_recording_without_packets_keeps_the_last_real_one_as_the_latest(spawn, tmp_path, wireshark_env):
    port = free_port()
    rec = start_recorder(spawn, "reqresp", "local", tmp_path, "--port", str(port))
    run_client([sys.executable, str(REPO / "reqresp" / "client.py"), "--host", "127.0.0.1", "--port", str(port),
                "tugas pertama", "bye"])
    rec.wait_for(r"Got [1-9]\d* packets so far", timeout=10)
    real = stop_recorder(rec)
    latest = tmp_path / "reqresp.pcapng"

    rec = start_recorder(spawn, "reqresp", "local", tmp_path, "--port", str(port), "--duration", "1")
    assert rec.wait(STOP_TIMEOUT) == 0, rec.output
    empty = re.search(r"0 packets in \d+ s -> (\S+\.pcapng);", rec.output)
    assert empty, rec.output
    assert Path(empty.group(1)).is_file() and Path(empty.group(1)) != real  # the empty one is kept under its own name
    assert f"{latest} still holds your last recording with packets" in rec.output
    assert "no packets: did the clients talk to this lab?" in rec.output
    assert latest.read_bytes() == real.read_bytes()  # make analyze-reqresp still opens the student's session
    assert b"tugas pertama\n" in payload_bytes(wireshark_env, latest)


# ------------------------------------------------------------------ the namespace lab


@needs_root
def test_netns_recording_of_mqtt_with_another_topic_agrees_with_tshark(spawn, tmp_path, wireshark_env):
    rec = start_recorder(spawn, "mqtt", "netns", tmp_path)
    assert "listening on namespaces from compose/mqtt.yml, bridge br-mqtt" in rec.output
    sub_cmd, pub_cmd = suggested(rec, "sub.py"), suggested(rec, "pub.py")
    assert sub_cmd[:3] == ["sudo", "ip", "netns"] and sub_cmd[4].endswith("-mqtt-sub")
    topic, message = "kelas/tugas", "Ada kanal Youtube baru nih"
    sub = spawn([*sub_cmd[1:], "--topic", topic, "--count", "2", "--log", str(tmp_path / "sub.log")], cwd=REPO,
                label="sub")
    sub.wait_for(r"Subscribed", timeout=20)
    run_client([*pub_cmd[1:], "--topic", topic, "--message", message, "--count", "2", "--interval", "0.2"])
    assert sub.wait(20) == 0, sub.output
    pcap = stop_recorder(rec)

    topics = values(tshark(wireshark_env, pcap, "mqtt.msgtype == 3", "mqtt.topic"))
    assert topics and set(topics) == {topic}, "only the student's topic, never the demo's sister/temp"
    assert message.encode() in payload_bytes(wireshark_env, pcap)
    assert "Runtime: netns" in wire.file_comments(pcap)

    report = json.loads(to_json(analyze(pcap)))
    flags_match_tshark(report, pcap, wireshark_env)
    arp_matches_tshark(report, pcap, wireshark_env)
    mqtt_matches_tshark(report, pcap, wireshark_env)
    roles = {h["ip"]: h["roles"] for h in report["hosts"]}
    lab = {h.name: str(h.address.ip) for h in lab_hosts("mqtt")}
    assert roles[lab["mqtt-pub"]] == ["MQTT client (publisher)"]
    assert roles[lab["mqtt-sub"]] == ["MQTT client (subscriber)"]
    opened_by_make_targets(pcap, "mqtt", tmp_path, wireshark_env)


def lab_hosts(proto: str):
    from labkit import netns

    return netns.NetnsLab(compose.compose_file(proto), proto).hosts.values()


def flags_match_tshark(report: dict, pcap: Path, env: dict) -> None:
    """Every TCP segment's flags, frame by frame, and who closed first."""
    theirs = {int(f): flag_name(int(bits, 16) & 0xFF)
              for f, bits in tshark(env, pcap, "tcp", "frame.number", "tcp.flags")}
    ours = {s["frame"]: s["flags"] for c in report["conversations"] for s in c["segments"]}
    assert ours == theirs
    assert {"SYN", "SYN-ACK", "ACK", "PSH-ACK", "FIN-ACK"} <= set(ours.values())
    for m in report["messages"]:
        assert m["tcp_flags"] == theirs[m["frame"]]
    for c in report["conversations"]:
        td = c["teardown"]
        first_fin = [int(f) for f, in tshark(env, pcap, f"tcp.flags.fin == 1 && tcp.stream == {c['index'] - 1}",
                                               "frame.number")][0]
        assert td["first_fin_frame"] == first_fin
        fin_from_client = tshark(env, pcap, f"frame.number == {first_fin}", "tcp.srcport")[0][0] == str(
            c["client"]["port"])
        assert c["closed_first"] == ("client" if fin_from_client else c["server"]["role"])


def arp_matches_tshark(report: dict, pcap: Path, env: dict) -> None:
    rows = tshark(env, pcap, "arp", "frame.number", "arp.opcode", "arp.src.hw_mac", "arp.src.proto_ipv4",
                  "arp.dst.hw_mac", "arp.dst.proto_ipv4")
    ops = {"1": "request", "2": "reply"}
    theirs = [(int(f), ops[op], smac, sip, dmac, dip) for f, op, smac, sip, dmac, dip in rows]
    ours = [(a["frame"], a["op"], a["sender_mac"], a["sender_ip"], a["target_mac"], a["target_ip"])
            for a in report["arp"]]
    assert ours == theirs and any(op == "request" for _, op, *_ in ours) and any(op == "reply" for _, op, *_ in ours)
    assert all("answers_frame" in a for a in report["arp"] if a["op"] == "reply")


MQTT_TYPES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 8: "SUBSCRIBE", 9: "SUBACK", 12: "PINGREQ",
              13: "PINGRESP", 14: "DISCONNECT"}


def mqtt_matches_tshark(report: dict, pcap: Path, env: dict, port: int = 1883) -> None:
    """Each MQTT message: its type, its frame and its direction (to the broker or from it)."""
    theirs = []
    for frame, types, dport in tshark(env, pcap, "mqtt", "frame.number", "mqtt.msgtype", "tcp.dstport",
                                      decode_as=f"tcp.port=={port},mqtt"):
        theirs += [(int(frame), MQTT_TYPES[int(t)], dport == str(port)) for t in types.split("\x1f")]
    ours = [(m["frame"], m["kind"], m["from_client"]) for m in report["messages"] if m["protocol"] == "MQTT"]
    assert sorted(ours) == sorted(theirs)


# ------------------------------------------------------------------ a recording started mid-session


@needs_root
def test_subscriber_is_named_even_when_the_recording_starts_after_its_subscribe(broker, spawn, tmp_path,
                                                                               wireshark_env):
    sub = spawn([sys.executable, str(REPO / "mqtt" / "sub.py"), "--host", "127.0.0.1", "--port", str(broker.port),
                 "--topic", "lab/late", "--log", str(tmp_path / "sub.log")], label="sub")
    sub.wait_for(r"Subscribed", timeout=20)
    rec = start_recorder(spawn, "mqtt", "local", tmp_path, "--port", str(broker.port))
    assert f"a server already listens on 127.0.0.1:{broker.port}: recording that one" in rec.output
    run_client([sys.executable, str(REPO / "mqtt" / "pub.py"), "--host", "127.0.0.1", "--port", str(broker.port),
                "--topic", "lab/late", "--message", "terlambat", "--count", "2", "--interval", "0.2"])
    sub.wait_for_count(r"Received message: terlambat", 2, timeout=20)
    pcap = stop_recorder(rec)
    mqtt = f"tcp.port=={broker.port},mqtt"
    assert tshark(wireshark_env, pcap, "mqtt.msgtype == 3", "frame.number", decode_as=mqtt)
    assert not tshark(wireshark_env, pcap, "mqtt.msgtype == 8", "frame.number", decode_as=mqtt), \
        "the SUBSCRIBE was sent before the recording started"
    report = json.loads(to_json(analyze(pcap)))
    forwarded = tshark(wireshark_env, pcap, f"mqtt.msgtype == 3 && tcp.srcport == {broker.port}", "tcp.dstport",
                       decode_as=mqtt)
    published = tshark(wireshark_env, pcap, f"mqtt.msgtype == 3 && tcp.dstport == {broker.port}", "tcp.srcport",
                       decode_as=mqtt)
    role = {c["client"]["port"]: c["client_role"] for c in report["conversations"]}
    assert role[int(forwarded[0][0])] == ["subscriber"] and role[int(published[0][0])] == ["publisher"]
    roles = [r for h in report["hosts"] for r in h["roles"]]
    assert "MQTT client (subscriber)" in roles and "MQTT client (publisher)" in roles
    mqtt_matches_tshark(report, pcap, wireshark_env, broker.port)


# ------------------------------------------------------------------ Docker


@pytest.mark.usefixtures("docker_engine")
@pytest.mark.parametrize("via, host_tools", [pytest.param("bridge", True, marks=needs_root), ("sidecar", True),
                                             ("sidecar", False)], ids=["bridge", "sidecar", "sidecar-bare-host"])
def test_docker_recording_holds_the_lines_sent_with_compose_exec(spawn, tmp_path, wireshark_env, via, host_tools):
    """On the bridge (Linux, root) and with the sidecar (what Docker Desktop uses), also on a host whose
    only tool is docker (no tcpdump, no tshark: the sidecar's editcap writes the pcapng)."""
    compose_file = str(compose.compose_file("reqresp").relative_to(REPO))
    was_up = bool(subprocess.run(["docker", "compose", "-f", compose_file, "ps", "-q"], cwd=REPO,
                                 capture_output=True, text=True, timeout=60).stdout.strip())
    env = python_env()
    if not host_tools:
        bare = tmp_path / "bin"
        bare.mkdir()
        (bare / "docker").symlink_to(shutil.which("docker"))
        env["PATH"] = str(bare)
        assert shutil.which("editcap", path=env["PATH"]) is None
    try:
        rec = start_recorder(spawn, "reqresp", "docker", tmp_path, "--via", via, env=env)
        where = "the Docker bridge br-reqresp" if via == "bridge" else "sidecar `capture` in reqresp-server's"
        assert f"listening on {where}" in rec.output
        command = suggested(rec, "client.py")
        assert command[:5] == ["docker", "compose", "-f", compose_file, "exec"]
        run_client([*command[:5], "-T", *command[5:], f"dari docker lewat {via}", "bye"], timeout=120)
        pcap = stop_recorder(rec)
        sent = payload_bytes(wireshark_env, pcap)
        assert f"Echo: dari docker lewat {via}\n".encode() in sent and b"one\n" not in sent
        assert "Runtime: docker" in wire.file_comments(pcap)
        opened_by_make_targets(pcap, "reqresp", tmp_path, wireshark_env)
    finally:
        if not was_up:
            subprocess.run(["docker", "compose", "-f", compose_file, "down", "-t", "3"], cwd=REPO,
                           capture_output=True, timeout=300)


# ------------------------------------------------------------------ what make installs


def test_make_analyze_works_without_mosquitto_and_never_calls_apt(tmp_path):
    """The analyze profile needs only the venv: with Mosquitto hidden and apt unusable it still works."""
    from labkit.analyze.synth import write_lab_mix

    pcap = tmp_path / "lab.pcapng"
    write_lab_mix(pcap, 300)
    shims = tmp_path / "bin"
    shims.mkdir()
    calls = tmp_path / "apt-calls"
    for tool in ("apt-get", "apt", "dpkg", "sudo"):  # any attempt to install is recorded and fails
        (shims / tool).write_text(f"#!/bin/sh\necho \"{tool} $*\" >> {calls}\nexit 1\n")
        (shims / tool).chmod(0o755)
    path = f"{shims}:/usr/local/bin:/usr/bin:/bin"  # no /usr/sbin: no mosquitto
    assert shutil.which("mosquitto", path=path) is None
    env = {**python_env(), "PATH": path}
    done = subprocess.run(["make", "--no-print-directory", "analyze", f"PCAP={pcap}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=MAKE_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Hosts and roles" in done.stdout and "mosquitto" not in (done.stdout + done.stderr).lower()
    assert not calls.exists(), calls.read_text()
