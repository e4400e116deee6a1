"""MQTT subscriber: prints and logs every message the broker routes to its topic filters.

The broker delivers by topic alone: another topic gets nothing, a wildcard gets many publishers,
and a persistent session (QoS 1/2) keeps messages for a subscriber while it is away.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import TextIO

from common import DEFAULT_TOPICS, BrokerLink, LineWriter, client_parser, printable, say, split_topics

from labkit import cli

LOG_FILE = "mqtt_messages.log"


class MessageLog:
    """Appends timestamped lines to a file; if the file cannot be written, warns once and goes on.

    Each line is stamped when its message arrives and reaches the file within OUTPUT_DELAY
    (bursts in one write); close() writes the rest.
    """

    def __init__(self, path: str):
        self.path = Path(path)
        self._writer = LineWriter(self._write)
        try:
            self._file: TextIO | None = self.path.open("a", encoding="utf-8")
        except OSError as e:
            self._file = None
            self._warn(e)

    def append(self, line: str) -> None:
        if self._file is not None:
            self._writer.write(f"{datetime.now().isoformat(sep=' ', timespec='milliseconds')} {line}")

    def close(self) -> None:
        self._writer.flush()
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def _write(self, chunk: str) -> None:  # called by the LineWriter, under its lock
        file = self._file
        if file is None:
            return
        try:
            file.write(chunk)
            file.flush()
        except ValueError:  # closed by close() meanwhile: the script is ending
            pass
        except OSError as e:
            self._file = None
            file.close()
            self._warn(e)

    def _warn(self, e: OSError) -> None:
        say(f"warning: cannot write the message log {self.path} ({e.strerror or e}); "
            "messages are only shown here")


class Subscriber:
    """Subscribes on every (re)connect and prints/logs each message that arrives."""

    def __init__(self, link: BrokerLink, *, topics: list[str], qos: int, log: MessageLog, count: int):
        self.topics, self.qos, self.log, self.count = topics, qos, log, count
        self.received = 0
        self.done = threading.Event()  # set when --count messages have arrived
        link.on_connected = self.subscribe
        link.main_thread_sends = False  # all we send comes from paho's thread: SUBSCRIBE, PUBACKs
        link.client.on_subscribe = self._on_subscribe
        link.client.on_message = self._on_message

    def subscribe(self, client) -> None:
        client.subscribe([(topic, self.qos) for topic in self.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):  # noqa: ARG002 - paho signature
        granted = [t for t, rc in zip(self.topics, reason_codes, strict=False) if not rc.is_failure]
        refused = [f"{t} ({rc})" for t, rc in zip(self.topics, reason_codes, strict=False) if rc.is_failure]
        if granted:
            say(f"Subscribed to: {', '.join(granted)}")
        if refused:
            say(f"Subscription refused by the broker: {', '.join(refused)}")

    def _on_message(self, client, userdata, msg):  # noqa: ARG002 - paho signature
        if self.done.is_set():
            return
        line = f"Received message: {printable(msg.payload)} (Topic: {msg.topic})"
        say(line)
        self.log.append(line)
        self.received += 1
        if self.count and self.received >= self.count:
            self.done.set()


def main() -> int:
    p = client_parser(__doc__.splitlines()[0])
    p.add_argument("--topic", action="append", metavar="FILTER",
                   help="topic filter to subscribe to, wildcards allowed (sister/#, sister/+/gaming); "
                        f"repeat it or give a comma list (default: {', '.join(DEFAULT_TOPICS)})")
    p.add_argument("--log", default=LOG_FILE, metavar="PATH",
                   help=f"append each message with a timestamp to this file (default: {LOG_FILE})")
    p.add_argument("--count", type=int, default=0, help="exit after this many messages (default: run until Ctrl+C)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="exit after this many seconds, saying how many messages arrived")
    p.add_argument("--persistent", action="store_true",
                   help="persistent session (clean session off): the broker keeps our subscriptions and "
                        "QoS 1/2 messages while we are away; needs --client-id")
    args = p.parse_args()
    if args.persistent and not args.client_id:
        p.error("--persistent needs --client-id: the broker keeps the session under that name")
    if args.count < 0 or (args.timeout is not None and args.timeout <= 0):
        p.error("--count cannot be negative and --timeout must be positive")
    topics = split_topics(args.topic, wildcards=True) or list(DEFAULT_TOPICS)

    log = MessageLog(args.log)
    link = BrokerLink(args.host, args.port, client_id=args.client_id, clean_session=not args.persistent)
    subscriber = Subscriber(link, topics=topics, qos=args.qos, log=log, count=args.count)
    try:
        link.connect()
        say("Waiting for messages... (press Ctrl+C to quit)")
        finished = subscriber.done.wait(args.timeout)
    finally:
        link.close()
        log.close()
    if not finished:
        n = subscriber.received
        got = f"Received {n} message{'s' if n != 1 else ''}" if n else "No messages received"
        say(f"{got} on {', '.join(topics)} in {args.timeout:g}s")
        if args.count:
            return 1
    return 0


if __name__ == "__main__":
    cli.run(main)
