"""MQTT under faults (issue 6): hostile payloads, a broker restart mid-stream, a subscriber that goes away."""

from __future__ import annotations

import random
import signal
import threading

import paho.mqtt.client as mqtt
import pytest
from helpers import MQTT_HOST as HOST
from helpers import PUBLISHED, RECEIVED, index_of, matches, start_pub, start_sub
from paho.mqtt.enums import CallbackAPIVersion

BATCH = 200  # hostile payloads per batch, each must arrive as exactly one line


def hostile_payloads(rng: random.Random, n: int) -> list[bytes]:
    """Random bytes (mostly not UTF-8), plus the awkward ones: empty, NUL, control characters, 64 KiB."""
    fixed = [b"", b"\x00", b"\xff\xfe\xfd", b"\x1b[2J\x1b[31mred", b"line\nbreak\r\n", b"\xed\xa0\x80",
             bytes(range(256)), rng.randbytes(64 * 1024)]
    return fixed + [rng.randbytes(rng.randint(1, 300)) for _ in range(n - len(fixed))]


class OutsidePublisher:
    """A paho client in the test process (not the demo's pub.py) that reconnects on its own."""

    def __init__(self, port: int):
        self.connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda *_: self.connected.set()
        self.client.on_disconnect = lambda *_: self.connected.clear()
        self.client.reconnect_delay_set(1, 1)
        self.client.connect(HOST, port)
        self.client.loop_start()

    def publish_all(self, topic: str, payloads: list[bytes], qos: int = 1) -> None:
        assert self.connected.wait(15), "the test's own publisher did not (re)connect"
        infos = [self.client.publish(topic, payload, qos=qos) for payload in payloads]
        for info in infos:
            info.wait_for_publish(15)
            assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_sub_keeps_receiving_through_hostile_payloads_and_a_broker_restart_mid_stream(spawn, broker, tmp_path):
    rng = random.Random(6)
    sub = start_sub(spawn, broker.port, tmp_path, "--topic", "sister/#,torture/#", "--qos", "1")
    pub = start_pub(spawn, broker.port, "--interval", "0.1", "--qos", "1")
    sub.wait_for(RECEIVED.pattern)

    outside = OutsidePublisher(broker.port)
    try:
        outside.publish_all("torture/bytes", [*hostile_payloads(rng, BATCH), b"end of batch 1"])
        first = index_of(sub, r"^Received message: end of batch 1 \(Topic: torture/bytes\)$")
        assert [m["topic"] for m in matches(sub, RECEIVED, end=first + 1)].count("torture/bytes") == BATCH + 1
        assert r"Received message: \xff\xfe\xfd (Topic: torture/bytes)" in sub.lines

        # Restart the broker while pub.py's readings and a flood of random bytes are in flight.
        stop_flood = threading.Event()

        def flood() -> None:
            for _ in range(5000):  # bounded: about 10 s at most
                if stop_flood.wait(0.002):
                    return
                outside.client.publish("torture/flood", rng.randbytes(rng.randint(0, 200)), qos=0)

        flooding = threading.Thread(target=flood, daemon=True)
        flooding.start()
        try:
            broker.restart()
            lost = index_of(sub, r"^Lost the connection to the MQTT broker", start=first)
            resubscribed = index_of(sub, r"^Subscribed to: sister/#, torture/#$", start=lost)
            pub.wait_for(r"^Reconnected to MQTT broker")
        finally:
            stop_flood.set()
            flooding.join(5)

        outside.publish_all("torture/bytes", [*hostile_payloads(rng, BATCH), b"end of batch 2"])
        second = index_of(sub, r"^Received message: end of batch 2 \(Topic: torture/bytes\)$", start=resubscribed)
    finally:
        outside.close()
    batch2 = [m["topic"] for m in matches(sub, RECEIVED, start=resubscribed, end=second + 1)]
    assert batch2.count("torture/bytes") == BATCH + 1
    sub.wait_for(r"^Received message: \d+\.\d °C \(Topic: sister/temp\)$", start=second)  # readings flow again
    assert sub.running() and pub.running()
    assert "Traceback" not in sub.output + pub.output
    assert (tmp_path / "mqtt_messages.log").read_text(encoding="utf-8").count(" Received message: ") >= 2 * BATCH


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "clean"])
def test_qos1_persistent_session_keeps_what_was_published_while_sub_was_away(spawn, broker, tmp_path,
                                                                              persistent, how):
    session = ["--client-id", "lab-sub-away", "--qos", "1", *(["--persistent"] if persistent else [])]
    sub = start_sub(spawn, broker.port, tmp_path, *session)
    sub.stop(sig=signal.SIGTERM if how == "sigterm" else signal.SIGKILL)  # the subscriber goes away...
    broker.proc.wait_for(r"Client lab-sub-away (disconnected|closed its connection)", timeout=10)

    pub = start_pub(spawn, broker.port, "--qos", "1", "--count", "3", "--interval", "0")  # ...readings go on
    assert pub.wait(15) == 0, pub.output
    published = [(m["payload"], m["topic"]) for m in matches(pub, PUBLISHED)]
    assert len(published) == 6

    back = start_sub(spawn, broker.port, tmp_path, *session, "--timeout", "3")  # ...and comes back
    assert back.wait(15) == 0, back.output
    received = [(m["payload"], m["topic"]) for m in matches(back, RECEIVED)]
    if persistent:
        assert f"Connected to MQTT broker {HOST}:{broker.port} (session resumed: messages kept for us follow)" \
            in back.lines
        assert received == published  # nothing lost, nothing twice, in order
    else:
        assert received == []  # the contrast: a clean session keeps nothing
        assert back.lines[-1] == "No messages received on sister/temp, sister/humidity in 3s"
