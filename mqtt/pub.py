"""MQTT publisher: sensor readings (or a fixed message) sent to topics on a broker, every interval.

The publisher knows only the broker and a topic, never who receives. `Published:` comes once the
broker has the message, so QoS 0 (dropped) and QoS 1/2 (queued, resent) differ when the broker goes away.
"""

from __future__ import annotations

import itertools
import random
import threading
import time

import paho.mqtt.client as mqtt
from common import (
    DEFAULT_TOPICS,
    HUMIDITY_TOPIC,
    TEMPERATURE_TOPIC,
    BrokerLink,
    client_parser,
    coalesce_bursts,
    say,
    split_topics,
)

from labkit import cli

DELIVERY_TIMEOUT = 10.0  # s: with --count, how long to wait at the end for the broker to confirm everything


def temperature() -> str:
    return f"{random.uniform(20, 35):.1f} °C"


def humidity() -> str:
    return f"{random.uniform(30, 50):.1f} %"


READINGS = {TEMPERATURE_TOPIC: temperature, HUMIDITY_TOPIC: humidity}


class Publisher:
    """Publishes and reports each message once the broker has it (paho's on_publish).

    QoS 0: when it is written to the broker's connection. QoS 1: at PUBACK. QoS 2: at PUBCOMP.
    """

    def __init__(self, link: BrokerLink, *, qos: int, retain: bool):
        self.link, self.qos, self.retain = link, qos, retain
        self._unconfirmed: dict[int, str] = {}  # mid -> what to print once the broker has it
        self._confirmed_early: set[int] = set()  # on_publish that beat publish() returning its mid
        self._changed = threading.Condition()  # notified when nothing is left unconfirmed
        link.client.on_publish = self._on_publish
        coalesce_bursts(link.client)  # --interval 0 publishes faster than one TCP segment per message
        link.on_connection_lost = self._drop_unsent_qos0

    def publish(self, topic: str, payload: str) -> None:
        shown = f"{payload} (Topic: {topic})"
        info = self.link.client.publish(topic, payload.encode("utf-8"), qos=self.qos, retain=self.retain)
        if info.rc == mqtt.MQTT_ERR_NO_CONN:
            if self.qos == 0:
                say(f"Not sent (no connection to the broker; QoS 0 is never kept for later): {shown}")
                return
            say(f"Queued until the broker is back (QoS {self.qos}): {shown}")
        elif info.rc != mqtt.MQTT_ERR_SUCCESS:
            say(f"Not sent ({mqtt.error_string(info.rc)}): {shown}")
            return
        with self._changed:
            if info.mid in self._confirmed_early:
                self._confirmed_early.discard(info.mid)
                say(f"Published: {shown}")
            else:
                self._unconfirmed[info.mid] = shown

    def wait_until_delivered(self, timeout: float) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: not self._unconfirmed, timeout):
                n = len(self._unconfirmed)
                raise cli.LabError(f"{n} message{'s' if n != 1 else ''} not confirmed by the MQTT broker "
                                   f"at {self.link.address} within {timeout:.0f} s")

    def _on_publish(self, client, userdata, mid, reason_code, properties):  # noqa: ARG002 - paho signature
        with self._changed:
            shown = self._unconfirmed.pop(mid, None)
            if shown is None:
                self._confirmed_early.add(mid)
                return
            say(f"Published: {shown}")
            if not self._unconfirmed:  # wake wait_until_delivered once, not at every message
                self._changed.notify_all()

    def _drop_unsent_qos0(self) -> None:
        """QoS 0 messages not yet written when the connection broke are gone: say so."""
        if self.qos != 0:
            return
        with self._changed:
            for shown in self._unconfirmed.values():
                say(f"Lost with the connection (QoS 0): {shown}")
            self._unconfirmed.clear()
            self._changed.notify_all()


def main() -> int:
    p = client_parser(__doc__.splitlines()[0])
    p.add_argument("--topic", action="append", metavar="TOPIC",
                   help="topic to publish to; repeat it or give a comma list "
                        f"(default: {', '.join(DEFAULT_TOPICS)})")
    p.add_argument("--message", metavar="TEXT",
                   help="publish this fixed text instead of readings (needed for topics other than the defaults)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between rounds (default: 1)")
    p.add_argument("--count", type=int, default=0,
                   help="publish this many rounds (one message per topic each), wait until the broker "
                        "has them all, then exit (default: run until Ctrl+C)")
    p.add_argument("--retain", action="store_true", help="ask the broker to keep the last message for new subscribers")
    args = p.parse_args()
    if args.interval < 0 or args.count < 0:
        p.error("--interval and --count cannot be negative")
    topics = split_topics(args.topic, wildcards=False) or list(DEFAULT_TOPICS)
    if args.message is None:
        no_reading = [t for t in topics if t not in READINGS]
        if no_reading:
            raise cli.LabError(f"no reading to publish on {', '.join(no_reading)}: give the text with --message "
                               f"(readings exist for {', '.join(READINGS)})", code=2)

    link = BrokerLink(args.host, args.port, client_id=args.client_id)
    publisher = Publisher(link, qos=args.qos, retain=args.retain)
    try:
        link.connect()
        say(f"Publishing every {args.interval:g}s to: {', '.join(topics)} (QoS {args.qos}"
              f"{', retained' if args.retain else ''}; press Ctrl+C to stop)")
        next_round = time.monotonic()
        for round_no in itertools.count(1):
            for topic in topics:
                publisher.publish(topic, args.message if args.message is not None else READINGS[topic]())
            if round_no == args.count:
                break
            next_round += args.interval
            delay = next_round - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        publisher.wait_until_delivered(DELIVERY_TIMEOUT)
    finally:
        link.close()
    return 0


if __name__ == "__main__":
    cli.run(main)
