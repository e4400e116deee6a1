"""MQTT publisher: sends sensor readings (or a fixed message) to topics on a broker, every interval.

The publisher knows only the broker and the topic, never who receives. `Published:` is printed once
the broker has the message: QoS 0 when it is written to the connection, QoS 1 at PUBACK, QoS 2 at PUBCOMP.
"""

import argparse
import contextlib
import itertools
import logging
import random
import signal
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

# What to publish. Edit these, or override them with flags (python pub.py --help).
TOPICS = ["sister/temp", "sister/humidity"]
READINGS = {"sister/temp": (20, 35, "°C"), "sister/humidity": (30, 50, "%")}  # (lowest, highest, unit): "27.4 °C"
MESSAGE = None  # a fixed text to send instead of readings, e.g. "Ada kanal Youtube baru nih: @Ivanzenatmaja"
INTERVAL = 1.0  # seconds between rounds; a round sends one message to every topic
QOS = 0  # 0 at most once, 1 at least once (the broker answers PUBACK), 2 exactly once
RETAIN = False  # True: the broker keeps each topic's last message for subscribers that come later

BROKER = "mqtt-broker"  # the compose service name; without Docker: --host 127.0.0.1
PORT = 1883  # plain MQTT; MQTT over TLS (with --cafile) is usually on 8883
WAIT = 10.0  # s: how long to keep trying to reach the broker at start, and to wait for it to confirm a message

connack, connected = None, threading.Event()  # the broker's answer to our first CONNECT, once it has come
refused: dict[int, mqtt.ReasonCode] = {}  # message id -> why the broker refused that PUBLISH (MQTT 5 only)


def on_connect(client, _userdata, _flags, reason_code, _properties):
    """CONNACK: at start, and after each reconnect paho makes by itself."""
    global connack
    if not reason_code.is_failure:  # a failure, e.g. "Bad user name or password": main says so and exits
        again = "Reconnected" if connected.is_set() else "Connected"
        logging.info(f"{again} to MQTT broker {client.host}:{client.port}")
    connack = connack or reason_code
    connected.set()


def on_publish(_client, _userdata, mid, reason_code, _properties):
    if reason_code.is_failure:  # MQTT 5: PUBACK "Not authorized" (0x87), a topic outside the account's ACL
        refused[mid] = reason_code


def publish(client: mqtt.Client, topic: str, args) -> bool:
    """Send one message, and wait until the broker has it (or WAIT has passed); say which."""
    low, high, unit = READINGS.get(topic, (0, 0, ""))  # a random reading in the topic's range, e.g. "27.4 °C"
    payload = f"{random.uniform(low, high):.1f} {unit}" if args.message is None else args.message
    shown = f"{payload} (Topic: {topic})"
    if not client.is_connected():  # not handed to paho: it would keep QoS 1/2 for later, never saying when it went
        logging.info(f"Not sent (no connection to the broker): {shown}")
        return False
    info = client.publish(topic, payload, args.qos, args.retain)
    with contextlib.suppress(RuntimeError):  # raised for QoS 0 not yet written when the connection broke
        info.wait_for_publish(args.wait)  # QoS 0: written to the connection; QoS 1: PUBACK; QoS 2: PUBCOMP
    if info.mid in refused:
        sys.exit(f"error: the MQTT broker refused to publish {shown}: {refused[info.mid]} (outside your ACL?)")
    published = info.rc == mqtt.MQTT_ERR_SUCCESS and info.is_published()
    logging.info(f"{'Published' if published else 'Not confirmed by the broker'}: {shown}")
    return published


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
    p.add_argument("--wait", type=float, default=WAIT, help=f"seconds to wait for the broker (default: {WAIT:g})")
    p.add_argument("--cafile", help="use TLS, and trust the broker only if this CA signed its certificate")
    p.add_argument("--username", help="log in with this user name (and --password)")
    p.add_argument("--password")
    p.add_argument("--mqtt-version", choices=("3.1.1", "5"), default="3.1.1", help="3.1.1 (default), or 5: see README")
    p.add_argument("--debug", action="store_true", help="show each MQTT packet paho sends and receives")
    args = p.parse_args()
    args.topic = [t for value in args.topic or TOPICS for t in value.split(",") if t]
    if wild := [t for t in args.topic if "+" in t or "#" in t]:
        p.error(f"invalid topic {wild[0]!r}: wildcards (+, #) are for subscribing only")
    if args.message is None and (no_reading := [t for t in args.topic if t not in READINGS]):
        p.error(f"no reading to publish on {', '.join(no_reading)}: give the text with --message (or MESSAGE)")
    if args.interval < 0 or args.count < 0 or args.wait <= 0 or not 0 < args.port < 65536:
        p.error("--interval and --count cannot be negative, --wait must be positive, --port is 1-65535")
    try:  # Python's default TLS settings: they verify the host name, and honour SSLKEYLOGFILE (for Wireshark)
        args.tls = args.cafile and ssl.create_default_context(cafile=args.cafile)
    except OSError as e:  # no such file, or no certificate in it
        p.error(f"cannot read --cafile {args.cafile}: {e.strerror or e}")
    return args


def main() -> int:
    args = parse_args()
    logging.basicConfig(stream=sys.stdout, level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s")
    version = mqtt.MQTTv5 if args.mqtt_version == "5" else mqtt.MQTTv311  # MQTT 5's PUBACK says why it refuses
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=version)
    client.on_connect, client.on_publish = on_connect, on_publish
    client.reconnect_delay_set(min_delay=1, max_delay=2)
    if args.tls:
        client.tls_set_context(args.tls)
    client.username_pw_set(args.username, args.password)  # None: no login
    if args.debug:  # paho's own log of the protocol: "Sending PUBLISH (d0, q1, r0, m1)...", "Received PUBACK"
        client.enable_logger()
    logging.info(f"Connecting to {args.host}:{args.port}...")  # later, a lost connection shows as `Not sent`
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
        logging.info(f"Publishing every {args.interval:g}s to: {', '.join(args.topic)} "
                     f"(QoS {args.qos}{', retained' if args.retain else ''}; press Ctrl+C to stop)")
        lost = 0
        for round_number in itertools.count(1):
            for topic in args.topic:
                lost += not publish(client, topic, args)
            if round_number == args.count:
                break
            time.sleep(args.interval)
        if lost:
            sys.exit(f"error: {lost} of {args.count * len(args.topic)} messages did not reach the broker at {where}")
    finally:
        client.disconnect()  # DISCONNECT (if connected): a clean end, in the capture and in the broker's log
        client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True, errors="backslashreplace")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # docker stop, kill: end cleanly (DISCONNECT), status 0
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))  # Ctrl+C: the same, status 130
    sys.exit(main())
