"""The lab's MQTT clients, paced, with a send timestamp in every payload: for latency figures.

pub.py cannot put a timestamp in its payloads (its --message is fixed text), so this runs the very
classes pub.py and sub.py are built from (BrokerLink, Publisher, Subscriber, MessageLog: same paho
settings, same printing and logging per message) with a payload of `<send time in ns> <sequence>`.

    python -m labkit.bench.mqttload sub --port P --topic T --qos 1 --count N --out latencies.json
    python -m labkit.bench.mqttload pub --port P --topic T --qos 1 --count N --rate 500
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from labkit import cli
from labkit.bench.baselines import load_script


def publish(args) -> int:
    common = load_script("mqtt", "common.py")
    pub = load_script("mqtt", "pub.py")
    link = common.BrokerLink(args.host, args.port, client_id=args.client_id)
    publisher = pub.Publisher(link, qos=args.qos, retain=False)
    try:
        link.connect()
        began = time.monotonic()
        for sequence in range(args.count):
            delay = began + sequence / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            publisher.publish(args.topic, f"{time.time_ns()} {sequence}")
        publisher.wait_until_delivered(pub.DELIVERY_TIMEOUT)
    finally:
        link.close()
    return 0


def subscribe(args) -> int:
    common = load_script("mqtt", "common.py")
    sub = load_script("mqtt", "sub.py")
    latencies_ms: list[float] = []
    log = sub.MessageLog(args.log)
    link = common.BrokerLink(args.host, args.port, client_id=args.client_id)
    subscriber = sub.Subscriber(link, topics=[args.topic], qos=args.qos, log=log, count=args.count)
    print_and_log = subscriber._on_message

    def on_message(client, userdata, msg):
        arrived = time.time_ns()
        try:
            latencies_ms.append((arrived - int(msg.payload.split(b" ", 1)[0])) / 1e6)
        except ValueError:
            pass
        print_and_log(client, userdata, msg)

    link.client.on_message = on_message
    try:
        link.connect()
        subscriber.done.wait(args.timeout)
    finally:
        link.close()
        log.close()
        Path(args.out).write_text(json.dumps({"latencies_ms": latencies_ms}), encoding="utf-8")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("role", choices=("pub", "sub"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=0)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate", type=float, default=500.0, help="pub: messages per second")
    p.add_argument("--client-id", default="")
    p.add_argument("--out", help="sub: where to write the latencies (JSON)")
    p.add_argument("--log", default="/dev/null", help="sub: the message log sub.py would append to")
    p.add_argument("--timeout", type=float, default=60.0, help="sub: give up after this many seconds")
    args = p.parse_args()
    return publish(args) if args.role == "pub" else subscribe(args)


if __name__ == "__main__":
    cli.run(main)
