"""MQTT subscriber: prints and logs every message the broker routes to its topic filters.

The broker delivers by topic alone: a subscriber on another topic gets nothing, a wildcard (sister/#)
gets many publishers. on_connect subscribes, so after a broker restart paho reconnects and resubscribes.
"""

import argparse
import logging
import signal
import ssl
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

BROKER = "mqtt-broker"  # the compose service name; without Docker: --host 127.0.0.1
PORT = 1883  # plain MQTT; MQTT over TLS (with --cafile) is usually on 8883
WAIT = 10.0  # s: how long to keep trying to reach the broker at start

connack, received = None, 0  # the broker's answer to our first CONNECT, once it has come; messages so far
connected, finished = threading.Event(), threading.Event()  # CONNACK has come; --count messages have come


def on_connect(client, args, flags, reason_code, _properties):
    """CONNACK: subscribe here, so that after a reconnect a restarted broker gets our subscriptions back."""
    global connack
    if not reason_code.is_failure:  # a failure, e.g. "Bad user name or password": main says so and exits
        resumed = " (session resumed: messages kept for us follow)" if flags.session_present else ""
        again = "Reconnected" if connected.is_set() else "Connected"
        logging.info(f"{again} to MQTT broker {client.host}:{client.port}{resumed}")
        client.subscribe([(topic, args.qos) for topic in args.topic])
    connack = connack or reason_code
    connected.set()


def on_subscribe(_client, args, _mid, reason_codes, _properties):
    answers = zip(args.topic, reason_codes, strict=False)  # SUBACK: the broker's answer for each filter, in order
    logging.info("Subscribed to: " + ", ".join(f"{t} (refused: {c})" if c.is_failure else t for t, c in answers))


def on_message(_client, args, msg):
    global received
    if finished.is_set():  # --count reached: main is disconnecting, later messages are not ours
        return
    text = msg.payload.decode("utf-8", errors="backslashreplace")  # shown escaped: not UTF-8 (\xff), control (\n)
    line = f"Received message: {''.join(c if c.isprintable() else repr(c)[1:-1] for c in text)} (Topic: {msg.topic})"
    logging.info(line)
    try:
        if args.log:  # None once it could not be written
            with open(args.log, "a", encoding="utf-8") as log:
                log.write(f"{datetime.now().isoformat(sep=' ', timespec='milliseconds')} {line}\n")
    except OSError as e:  # e.g. no such folder, or the disk is full: say so once, go on without the log
        print(f"warning: cannot write {args.log}: {e.strerror or e}; not logging (choose another file with --log PATH)",
              file=sys.stderr)
        args.log = None
    received += 1
    if received == args.count:
        finished.set()


def on_disconnect(client, _userdata, _flags, reason_code, _properties):
    if reason_code.is_failure and connected.is_set() and not connack.is_failure:  # paho reconnects: 1 s, then 2 s
        logging.info(f"Lost the connection to the MQTT broker {client.host}:{client.port}; reconnecting...")


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
    p.add_argument("--cafile", help="use TLS, and trust the broker only if this CA signed its certificate")
    p.add_argument("--username", help="log in with this user name (and --password)")
    p.add_argument("--password")
    p.add_argument("--debug", action="store_true", help="show each MQTT packet paho sends and receives")
    args = p.parse_args()
    args.topic = [t for value in args.topic or TOPICS for t in value.split(",") if t]
    for topic in args.topic:  # paho checks a filter in subscribe(); a client not yet connected sends nothing
        try:
            mqtt.Client(CallbackAPIVersion.VERSION2).subscribe(topic)
        except ValueError as e:
            p.error(f"invalid topic {topic!r}: {e} (+ and # stand for whole levels, # only for the last)")
    if args.persistent and not args.client_id:
        p.error("--persistent needs --client-id: the broker keeps the session under that name")
    if args.count < 0 or (args.timeout or 1) <= 0 or args.wait <= 0 or not 0 < args.port < 65536:
        p.error("--count cannot be negative, --timeout and --wait must be positive, --port is 1-65535")
    try:  # Python's default TLS settings: they check the host name, and honour SSLKEYLOGFILE (for Wireshark)
        args.tls = args.cafile and ssl.create_default_context(cafile=args.cafile)
    except OSError as e:  # no such file, or no certificate in it
        p.error(f"cannot read --cafile {args.cafile}: {e.strerror or e}")
    return args


def main() -> int:
    args = parse_args()
    logging.basicConfig(stream=sys.stdout, level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id, clean_session=not args.persistent,
                         userdata=args)
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.on_disconnect = on_disconnect
    client.reconnect_delay_set(min_delay=1, max_delay=2)
    if args.tls:
        client.tls_set_context(args.tls)
    client.username_pw_set(args.username, args.password)  # None: no login
    if args.debug:  # paho's own log of the protocol: "Sending SUBSCRIBE...", "Received PUBLISH..."
        client.enable_logger()
    logging.info(f"Connecting to {args.host}:{args.port}...")
    logging.info("Waiting for messages... (press Ctrl+C to quit)")
    where = f"{args.host}:{args.port}"
    try:  # connect now, or (the broker may not be up yet) let paho's network thread keep trying, until WAIT
        client.connect(args.host, args.port)  # TCP (and TLS), then CONNECT; the broker's CONNACK goes to on_connect
    except ssl.SSLCertVerificationError as e:  # a wrong --cafile, or a certificate made for another host
        sys.exit(f"error: TLS: certificate verify failed for the MQTT broker at {where}: {e.verify_message}")
    except OSError:  # not listening yet, or no such host
        client.connect_async(args.host, args.port)
    client.loop_start()  # paho's network thread: reads, writes, pings, and reconnects whenever it must
    if connected.wait(args.wait) and connack.is_failure:
        sys.exit(f"error: the MQTT broker at {where} refused the login: {connack} (check --username and --password)")
    if not connected.is_set():
        hint = " (running without Docker? add --host 127.0.0.1)" if args.host == BROKER else ""
        sys.exit(f"error: cannot reach the MQTT broker at {where} within {args.wait:g} s{hint}")
    try:
        done = finished.wait(args.timeout)
    finally:
        client.disconnect()  # DISCONNECT (if connected): a clean end, in the capture and in the broker's log
        client.loop_stop()
    if not done:
        got = f"Received {received} message{'s' if received > 1 else ''}" if received else "No messages received"
        logging.info(f"{got} on {', '.join(args.topic)} in {args.timeout:g}s")
    return 1 if args.count and not done else 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True, errors="backslashreplace")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # docker stop, kill: end cleanly (DISCONNECT), status 0
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))  # Ctrl+C: the same, status 130
    sys.exit(main())
