"""MQTT publisher: sends sensor readings (or a fixed message) to topics on a broker, every interval.

The publisher knows only the broker and the topic, never who receives. `Published:` is printed once
the broker has the message: QoS 0 when it is written to the connection, QoS 1 at PUBACK, QoS 2 at PUBCOMP.
"""

from __future__ import annotations

import argparse
import itertools
import queue
import random
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

# What to publish. Edit these, or override them with flags (python pub.py --help).
TOPICS = ["sister/temp", "sister/humidity"]
READINGS = {  # topic: (lowest, highest, unit) of the random reading sent there, e.g. "27.4 °C"
    "sister/temp": (20, 35, "°C"),
    "sister/humidity": (30, 50, "%"),
}
MESSAGE = None  # a fixed text to send instead of readings, e.g. "Ada kanal Youtube baru nih: @Ivanzenatmaja"
INTERVAL = 1.0  # seconds between rounds; a round sends one message to every topic
QOS = 0  # 0 at most once, 1 at least once (the broker answers PUBACK), 2 exactly once
RETAIN = False  # True: the broker keeps each topic's last message for subscribers that come later

# Where the broker is.
BROKER = "mqtt-broker"  # the compose service name; without Docker: --host 127.0.0.1
PORT = 1883
WAIT = 10.0  # s: how long to keep trying to reach the broker at start, and (--count) to wait for its last confirmations

print_lock = threading.Lock()


def say(line: str) -> None:
    """Print one whole line: paho's network thread prints too (connects, disconnects)."""
    with print_lock:
        print(line, flush=True)


def reading(topic: str) -> str:
    low, high, unit = READINGS[topic]
    return f"{random.uniform(low, high):.1f} {unit}"


def on_connect(_client, userdata, _flags, reason_code, _properties):
    """The broker answered our CONNECT: at start, and after each reconnect paho makes by itself."""
    if reason_code.is_failure:  # e.g. "Not authorized" (allow_anonymous false); paho tries again
        say(f"Connection refused by the MQTT broker {userdata['broker']}: {reason_code}")
        return
    say(f"{'Reconnected' if userdata['connected'].is_set() else 'Connected'} to MQTT broker {userdata['broker']}")
    userdata["connected"].set()


def on_disconnect(_client, userdata, _flags, reason_code, _properties):
    if reason_code.is_failure:  # not our own DISCONNECT: paho reconnects after 1 s, then every 2 s
        say(f"Lost the connection to the MQTT broker {userdata['broker']}; reconnecting...")


def on_publish(_client, userdata, mid, _reason_code, _properties):
    """The broker has message `mid`. The main thread prints it: only it knows which text that mid carries."""
    userdata["confirmed"].put(mid)


def connect(client: mqtt.Client, host: str, port: int, wait: float) -> None:
    """Start paho's network thread: it connects (trying again and again), and reconnects whenever it must."""
    say(f"Connecting to {host}:{port}...")
    client.connect_async(host, port)  # TCP, then CONNECT (keep-alive 60 s); the broker's CONNACK goes to on_connect
    client.loop_start()
    if not client.user_data_get()["connected"].wait(wait):
        hint = " (running without Docker? add --host 127.0.0.1)" if host == BROKER else ""
        sys.exit(f"error: cannot reach the MQTT broker at {host}:{port} within {wait:g} s{hint}")


def send(client: mqtt.Client, topic: str, payload: str, args, unconfirmed: dict[int, str]) -> None:
    """Hand one message to paho, and say at once what happens to it if there is no connection."""
    shown = f"{payload} (Topic: {topic})"
    info = client.publish(topic, payload, qos=args.qos, retain=args.retain)
    if info.rc == mqtt.MQTT_ERR_NO_CONN and args.qos == 0:
        say(f"Not sent (no connection to the broker; QoS 0 is never kept for later): {shown}")
        return
    if info.rc == mqtt.MQTT_ERR_NO_CONN:  # paho keeps QoS 1/2 messages and sends them after reconnecting
        say(f"Queued until the broker is back (QoS {args.qos}): {shown}")
    unconfirmed[info.mid] = shown


def report_confirmed(confirmed: queue.Queue, unconfirmed: dict[int, str], until: float, all_of_them=False) -> None:
    """Print `Published:` for each message the broker confirms before `until` (or, all_of_them, once none is left)."""
    while unconfirmed or not all_of_them:
        try:
            mid = confirmed.get(timeout=max(0.0, until - time.monotonic()))
        except queue.Empty:
            return
        if mid in unconfirmed:
            say(f"Published: {unconfirmed.pop(mid)}")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default=BROKER, help=f"the broker (default: {BROKER})")
    p.add_argument("--port", type=int, default=PORT, help=f"the broker's port (default: {PORT})")
    p.add_argument("--topic", action="append", help=f"a topic to publish to; repeat it (default: {' '.join(TOPICS)})")
    p.add_argument("--message", default=MESSAGE, help="publish this text instead of readings")
    p.add_argument("--interval", type=float, default=INTERVAL, help=f"seconds between rounds (default: {INTERVAL:g})")
    p.add_argument("--count", type=int, default=0, help="send this many rounds, then exit (default: until Ctrl+C)")
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=QOS, help=f"quality of service (default: {QOS})")
    p.add_argument("--retain", action=argparse.BooleanOptionalAction, default=RETAIN, help="keep it for latecomers")
    p.add_argument("--client-id", default="", help="MQTT client id (default: none, the broker assigns one)")
    p.add_argument("--wait", type=float, default=WAIT, help=f"seconds to wait for the broker (default: {WAIT:g})")
    args = p.parse_args()
    args.topic = [t for value in args.topic or TOPICS for t in value.split(",") if t]
    for topic in args.topic:
        if "+" in topic or "#" in topic:
            p.error(f"invalid topic {topic!r}: wildcards (+, #) are for subscribing only")
    no_reading = [t for t in args.topic if t not in READINGS]
    if args.message is None and no_reading:
        p.error(f"no reading to publish on {', '.join(no_reading)}: give the text with --message (or MESSAGE)")
    if args.interval < 0 or args.count < 0 or args.wait <= 0 or not 0 < args.port < 65536:
        p.error("--interval and --count cannot be negative, --wait must be positive, --port is 1-65535")
    return args


def main() -> int:
    args = parse_args()
    userdata = {"broker": f"{args.host}:{args.port}", "connected": threading.Event(), "confirmed": queue.Queue()}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id, userdata=userdata)
    client.on_connect, client.on_disconnect, client.on_publish = on_connect, on_disconnect, on_publish
    client.reconnect_delay_set(min_delay=1, max_delay=2)
    unconfirmed: dict[int, str] = {}  # message id -> what to print once the broker confirms it
    try:
        connect(client, args.host, args.port, args.wait)
        say(f"Publishing every {args.interval:g}s to: {', '.join(args.topic)} "
            f"(QoS {args.qos}{', retained' if args.retain else ''}; press Ctrl+C to stop)")
        next_round = time.monotonic()
        for round_number in itertools.count(1):
            for topic in args.topic:
                send(client, topic, reading(topic) if args.message is None else args.message, args, unconfirmed)
            if round_number == args.count:
                break
            next_round += args.interval
            report_confirmed(userdata["confirmed"], unconfirmed, until=next_round)
        report_confirmed(userdata["confirmed"], unconfirmed, until=time.monotonic() + args.wait, all_of_them=True)
        if unconfirmed:
            n = len(unconfirmed)
            sys.exit(f"error: {n} message{'s' if n > 1 else ''} not confirmed by the MQTT broker at "
                     f"{userdata['broker']} within {args.wait:g} s")
    finally:
        if client.is_connected():
            client.disconnect()  # DISCONNECT: a clean end, in the capture and in the broker's log
            client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True, errors="backslashreplace")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # docker stop, kill: end cleanly, status 0
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl+C
        sys.exit(130)
