"""The broker limits in mqtt/mosquitto.conf are real: an oversize PUBLISH and one client too many are refused.

The shipped config runs on a free 127.0.0.1 port; the limits are read from the file, not restated here.
"""

from __future__ import annotations

import re
import socket
import subprocess

from helpers import MQTT_HOST as HOST
from helpers import SHIPPED_MOSQUITTO_CONF, mosquitto_with_conf

SHIPPED = SHIPPED_MOSQUITTO_CONF.read_text(encoding="utf-8")


def limit(name: str) -> int:
    m = re.search(rf"^{name} (\d+)$", SHIPPED, re.M)
    assert m, f"mqtt/mosquitto.conf sets no {name}"
    return int(m.group(1))


def shipped_broker(spawn, tmp_path):
    return mosquitto_with_conf(spawn, SHIPPED_MOSQUITTO_CONF, tmp_path / "mosquitto.conf")


def mqtt_connect_packet(client_id: str) -> bytes:
    """A minimal MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s)."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


def test_publish_larger_than_max_packet_size_is_refused_and_others_still_flow(spawn, tmp_path):
    broker, port = shipped_broker(spawn, tmp_path)
    sub = spawn.script("mqtt", "sub.py", "--host", HOST, "--port", str(port), "--topic", "lab/limits",
                       "--log", str(tmp_path / "log.txt"), "--count", "1")
    sub.wait_for("Subscribed")
    oversize = "x" * (limit("max_packet_size") + 1024)
    subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(port), "-t", "lab/limits", "-s"],
                   input=oversize, text=True, timeout=10, check=False)
    broker.wait_for(r"disconnected due to oversize packet")
    subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(port), "-t", "lab/limits", "-m", "small"],
                   timeout=10, check=True)
    assert sub.wait(15) == 0, sub.output
    assert [line for line in sub.lines if line.startswith("Received message:")] == [
        "Received message: small (Topic: lab/limits)"]


def test_one_client_beyond_max_connections_is_refused(spawn, tmp_path):
    broker, port = shipped_broker(spawn, tmp_path)
    most = limit("max_connections")
    conns: list[socket.socket] = []
    try:
        for i in range(most + 2):  # Mosquitto 2.0 admits max_connections + 1 before it refuses
            s = socket.create_connection((HOST, port), timeout=5)
            s.sendall(mqtt_connect_packet(f"limit-{i}"))
            conns.append(s)
        broker.wait_for(r"denied: max_connections exceeded")
        answered = 0
        for s in conns:
            try:
                answered += s.recv(4)[:1] == b"\x20"  # CONNACK
            except OSError:
                pass
        assert most <= answered < len(conns)
    finally:
        for s in conns:
            s.close()
    # everyone else is still served once the crowd has gone
    done = subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(port), "-t", "lab/limits", "-m", "after"],
                          timeout=10, check=False)
    assert done.returncode == 0


def test_a_session_keeps_at_most_max_queued_messages_for_an_absent_subscriber(spawn, tmp_path):
    broker, port = shipped_broker(spawn, tmp_path)
    most, beyond = limit("max_queued_messages"), 50
    session = ["--host", HOST, "--port", str(port), "--topic", "lab/queue", "--qos", "1",
               "--client-id", "lab-away", "--persistent", "--log", str(tmp_path / "log.txt")]
    away = spawn.script("mqtt", "sub.py", *session)
    away.wait_for("Subscribed")
    assert away.stop() == 0, away.output  # a clean DISCONNECT: the broker keeps the session and queues for it
    broker.wait_for(r"Client lab-away disconnected\.")
    pub = spawn.script("mqtt", "pub.py", "--host", HOST, "--port", str(port), "--topic", "lab/queue",
                       "--message", "while you were away", "--qos", "1", "--interval", "0",
                       "--count", str(most + beyond))
    assert pub.wait(30) == 0, pub.output[-2000:]
    broker.wait_for(r"Outgoing messages are being dropped for client lab-away")

    back = spawn.script("mqtt", "sub.py", *session, "--timeout", "3")
    assert back.wait(20) == 0, back.output[-2000:]
    received = back.count(r"^Received message: while you were away \(Topic: lab/queue\)$")
    assert most <= received < most + beyond, received  # the queue (plus what counts as in flight), no more
