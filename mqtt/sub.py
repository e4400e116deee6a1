"""MQTT subscriber: prints and logs every message the broker routes to its topic filters.

The broker delivers by topic alone: a subscriber on another topic gets nothing, a wildcard (sister/#)
gets many publishers. on_connect subscribes, so after a broker restart paho reconnects and resubscribes.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

# What to receive. Edit these, or override them with flags (python sub.py --help).
TOPICS = ["sister/temp", "sister/humidity"]  # topic filters; wildcards: sister/# (all below), sister/+/gaming
QOS = 0  # the highest QoS we accept; the broker sends min(publisher's, ours)
LOG_FILE = Path(__file__).with_name("mqtt_messages.log")  # each message with a timestamp, next to this script

# Where the broker is.
BROKER = "mqtt-broker"  # the compose service name; without Docker: --host 127.0.0.1
PORT = 1883
WAIT = 10.0  # s: how long to keep trying to reach the broker at start


def printable(payload: bytes) -> str:
    """A payload as one line of text: UTF-8, with other bytes (\\xff) and control characters (\\n) escaped."""
    text = payload.decode("utf-8", errors="backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def on_connect(client, userdata, flags, reason_code, _properties):
    """Connected, or reconnected by paho: subscribe here, so a restarted broker gets our subscriptions back."""
    if reason_code.is_failure:  # e.g. "Not authorized" (allow_anonymous false); paho tries again
        print(f"Connection refused by the MQTT broker {userdata['broker']}: {reason_code}")
        return
    resumed = " (session resumed: messages kept for us follow)" if flags.session_present else ""
    print(f"{'Reconnected' if userdata['connected'].is_set() else 'Connected'} to MQTT broker {userdata['broker']}"
          f"{resumed}")
    userdata["connected"].set()
    client.subscribe([(topic, userdata["qos"]) for topic in userdata["topics"]])


def on_subscribe(_client, userdata, _mid, reason_codes, _properties):
    """SUBACK: the broker's answer for each topic filter, in order (a code of 0x80 or more: refused)."""
    answers = zip(userdata["topics"], reason_codes, strict=False)
    print("Subscribed to: " + ", ".join(f"{t} (refused: {code})" if code.is_failure else t for t, code in answers))


def on_message(_client, userdata, msg):
    if userdata["done"].is_set():  # --count reached: main is disconnecting, later messages are not ours
        return
    line = f"Received message: {printable(msg.payload)} (Topic: {msg.topic})"
    print(line)
    if userdata["log"]:
        try:
            userdata["log"].write(f"{datetime.now().isoformat(sep=' ', timespec='milliseconds')} {line}\n")
        except OSError as e:  # e.g. the disk is full: say so once, keep receiving
            warn_not_logging(userdata["log"].name, e)
            userdata["log"] = None
    userdata["received"] += 1
    if userdata["received"] == userdata["count"]:
        userdata["done"].set()


def on_disconnect(_client, userdata, _flags, reason_code, _properties):
    if reason_code.is_failure:  # not our own DISCONNECT: paho reconnects after 1 s, then every 2 s
        print(f"Lost the connection to the MQTT broker {userdata['broker']}; reconnecting...")


def open_log(path: str):
    try:
        return open(path, "a", encoding="utf-8", buffering=1)  # line-buffered: each message reaches the file
    except OSError as e:
        warn_not_logging(path, e)
        return None


def warn_not_logging(path: str, e: OSError) -> None:
    """The one warning when the log cannot be written: sub.py goes on, printing messages without logging them."""
    print(f"warning: cannot write {path}: {e.strerror or e}; not logging (choose another file with --log PATH)",
          file=sys.stderr)


def connect(client: mqtt.Client, host: str, port: int, wait: float) -> None:
    """Start paho's network thread: it connects (trying again and again), and reconnects whenever it must."""
    print(f"Connecting to {host}:{port}...")
    print("Waiting for messages... (press Ctrl+C to quit)")  # from here on only paho's thread prints, till the end
    client.connect_async(host, port)  # TCP, then CONNECT (keep-alive 60 s); the broker's CONNACK goes to on_connect
    client.loop_start()
    if not client.user_data_get()["connected"].wait(wait):
        hint = " (running without Docker? add --host 127.0.0.1)" if host == BROKER else ""
        sys.exit(f"error: cannot reach the MQTT broker at {host}:{port} within {wait:g} s{hint}")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default=BROKER, help=f"the broker (default: {BROKER})")
    p.add_argument("--port", type=int, default=PORT, help=f"the broker's port (default: {PORT})")
    p.add_argument("--topic", action="append", help=f"a topic filter; repeat it (default: {' '.join(TOPICS)})")
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=QOS, help=f"quality of service (default: {QOS})")
    p.add_argument("--log", default=str(LOG_FILE), help=f"the message log (default: {LOG_FILE.name} here)")
    p.add_argument("--count", type=int, default=0, help="exit after this many messages (default: until Ctrl+C)")
    p.add_argument("--timeout", type=float, help="exit after this many seconds, saying how many messages came")
    p.add_argument("--client-id", default="", help="MQTT client id (default: none, the broker assigns one)")
    p.add_argument("--persistent", action="store_true", help="the broker keeps our session while we are away")
    p.add_argument("--wait", type=float, default=WAIT, help=f"seconds to wait for the broker (default: {WAIT:g})")
    args = p.parse_args()
    args.topic = [t for value in args.topic or TOPICS for t in value.split(",") if t]
    for topic in args.topic:  # a wildcard stands for a whole level (sister/+/gaming), # only for the last (sister/#)
        levels = topic.split("/")
        if "#" in levels[:-1] or any(("+" in lv or "#" in lv) and lv not in ("+", "#") for lv in levels):
            p.error(f"invalid topic {topic!r}: + and # must be whole levels, # the last one")
    if args.persistent and not args.client_id:
        p.error("--persistent needs --client-id: the broker keeps the session under that name")
    if args.count < 0 or (args.timeout or 1) <= 0 or args.wait <= 0 or not 0 < args.port < 65536:
        p.error("--count cannot be negative, --timeout and --wait must be positive, --port is 1-65535")
    return args


def main() -> int:
    args = parse_args()
    userdata = {"broker": f"{args.host}:{args.port}", "topics": args.topic, "qos": args.qos, "count": args.count,
                "received": 0, "done": threading.Event(), "connected": threading.Event(), "log": open_log(args.log)}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id, clean_session=not args.persistent,
                         userdata=userdata)
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.on_disconnect = on_disconnect
    client.reconnect_delay_set(min_delay=1, max_delay=2)
    try:
        connect(client, args.host, args.port, args.wait)
        finished = userdata["done"].wait(args.timeout)
    finally:
        if client.is_connected():
            client.disconnect()  # DISCONNECT: a clean end, in the capture and in the broker's log
            client.loop_stop()
    if not finished:
        n = userdata["received"]
        got = f"Received {n} message{'s' if n > 1 else ''}" if n else "No messages received"
        print(f"{got} on {', '.join(args.topic)} in {args.timeout:g}s")
        return 1 if args.count else 0
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True, errors="backslashreplace")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # docker stop, kill: end cleanly, status 0
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl+C
        sys.exit(130)
