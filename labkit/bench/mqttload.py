"""Paced paho clients with a send timestamp in every payload: the latency figures of `make bench`.

pub.py publishes readings or a fixed --message, so its payloads cannot carry a send time. These two
clients use the same library the same way (paho-mqtt, CallbackAPIVersion.VERSION2, loop_start, one
`Received message:` line per message) with a payload of `<send time in ns> <sequence>`. They are
the bench's own; the demo scripts are run as programs, never imported.

    python -m labkit.bench.mqttload sub --port P --topic T --qos 1 --count N --out latencies.json
    python -m labkit.bench.mqttload pub --port P --topic T --qos 1 --count N --rate 500
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from labkit import cli

#: How long to wait for the broker: the CONNACK at start, and (pub) the last confirmations.
BROKER_TIMEOUT = 10.0


def connected_client(args, on_connect=None, on_message=None) -> mqtt.Client:
    """A paho client connected to the bench broker, its network thread running."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id)
    connected = threading.Event()

    def connect_done(client, userdata, flags, reason_code, properties):
        if on_connect and not reason_code.is_failure:
            on_connect(client, userdata, flags, reason_code, properties)
        connected.set()

    client.on_connect = connect_done
    client.on_message = on_message
    try:
        client.connect(args.host, args.port)
    except OSError as e:
        raise cli.unreachable("MQTT broker", args.host, args.port, e.strerror or e) from None
    client.loop_start()
    if not connected.wait(BROKER_TIMEOUT) or not client.is_connected():
        raise cli.unreachable("MQTT broker", args.host, args.port, "no CONNACK from the broker")
    return client


def close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def publish(args) -> int:
    client = connected_client(args)
    try:
        began = time.monotonic()
        sent = []
        for sequence in range(args.count):
            delay = began + sequence / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent.append(client.publish(args.topic, f"{time.time_ns()} {sequence}", qos=args.qos))
        for info in sent:
            info.wait_for_publish(BROKER_TIMEOUT)
        unconfirmed = sum(1 for info in sent if not info.is_published())
        if unconfirmed:
            raise cli.LabError(f"{unconfirmed} messages not confirmed by the MQTT broker within {BROKER_TIMEOUT:g} s")
    finally:
        close(client)
    return 0


def subscribe(args) -> int:
    latencies_ms: list[float] = []
    done = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):  # noqa: ARG001 - paho's signature
        client.subscribe(args.topic, args.qos)

    def on_message(client, userdata, msg):  # noqa: ARG001 - paho's signature
        arrived = time.time_ns()
        try:
            latencies_ms.append((arrived - int(msg.payload.split(b" ", 1)[0])) / 1e6)
        except ValueError:
            pass
        print(f"Received message: {msg.payload.decode('utf-8', 'backslashreplace')} (Topic: {msg.topic})")
        if len(latencies_ms) >= args.count:
            done.set()

    client = connected_client(args, on_connect, on_message)
    try:
        done.wait(args.timeout)
    finally:
        close(client)
        Path(args.out).write_text(json.dumps({"latencies_ms": latencies_ms}), encoding="utf-8")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("role", choices=("pub", "sub"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=cli.port_number, required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=0)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate", type=float, default=500.0, help="pub: messages per second")
    p.add_argument("--client-id", default="")
    p.add_argument("--out", help="sub: where to write the latencies (JSON)")
    p.add_argument("--timeout", type=float, default=60.0, help="sub: give up after this many seconds")
    args = p.parse_args()
    if args.role == "sub" and not args.out:
        p.error("sub needs --out")
    return publish(args) if args.role == "pub" else subscribe(args)


if __name__ == "__main__":
    cli.run(main)
