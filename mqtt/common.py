"""What pub.py and sub.py share: one way to reach the broker, name topics and show payloads.

In publish/subscribe the two sides never talk to each other, only to the broker; so both
clients connect, retry and reconnect the same way, through `BrokerLink` below.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from labkit import cli
from labkit.protocols import MQTT_PORT

BROKER_SERVICE = "mqtt-broker"  # the compose service name: the clients' default --host
TEMPERATURE_TOPIC = "sister/temp"
HUMIDITY_TOPIC = "sister/humidity"
DEFAULT_TOPICS = (TEMPERATURE_TOPIC, HUMIDITY_TOPIC)

CONNECT_TIMEOUT = 10.0  # s: how long a client keeps trying to reach the broker at start
CONNECT_RETRY_DELAY = 1.0  # s: pause between those first attempts
RECONNECT_MIN_DELAY = 1  # s: after losing the broker, paho retries after 1 s, 2 s, 2 s, ...
RECONNECT_MAX_DELAY = 2
KEEPALIVE = 60  # s: the MQTT keep-alive the clients announce in CONNECT
CLOSE_GRACE = 0.5  # s: on exit, how long to wait for our DISCONNECT to reach the wire

OUTPUT_DELAY = 0.005  # s: how long a printed or logged line may wait for the lines that follow it


class LineWriter:
    """Whole lines from any thread, in order, written a burst at a time instead of one write() per line.

    A line waits at most OUTPUT_DELAY (nothing a reader can see) for the lines right behind it,
    so a flood of messages costs a system call every few ms, not one per message. `flush()`
    writes at once: BrokerLink.close() and interpreter exit call it, so no line is lost at the
    end, on Ctrl+C or SIGTERM, and none comes after the error line of a failing script.
    """

    def __init__(self, write: Callable[[str], object], delay: float = OUTPUT_DELAY):
        self._write = write  # takes a chunk of whole lines, each ending in a newline
        self._delay = delay
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._due = threading.Event()
        self._flusher: threading.Thread | None = None
        atexit.register(self.flush)

    def write(self, line: str) -> None:
        with self._lock:
            self._pending.append(line)
            if len(self._pending) > 1:  # the flusher is already due: it takes this line too
                return
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_soon, name="line-writer", daemon=True)
                self._flusher.start()
        self._due.set()

    def flush(self) -> None:
        with self._lock:  # held while writing, so chunks from two threads never swap places
            if self._pending:
                chunk = "\n".join(self._pending) + "\n"
                self._pending.clear()
                self._write(chunk)

    def _flush_soon(self) -> None:
        while True:
            self._due.wait()
            time.sleep(self._delay)
            self._due.clear()
            self.flush()


def _write_stdout(chunk: str) -> None:
    try:
        sys.stdout.write(chunk)
        sys.stdout.flush()
    except (OSError, ValueError):  # stdout closed (a pipe whose reader left): nobody to tell
        pass


_console = LineWriter(_write_stdout)


def say(line: str) -> None:
    """Print one whole line: paho's network thread and the main thread both print, never mid-line."""
    _console.write(line)


def flush_output() -> None:
    """Write every line said so far, now."""
    _console.flush()


def client_parser(description: str) -> argparse.ArgumentParser:
    """The flags both clients share: --host/--port (default mqtt-broker:1883), --qos, --client-id."""
    p = cli.parser(description, host=BROKER_SERVICE, port=MQTT_PORT, server=False)
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=0,
                   help="MQTT quality of service: 0 at most once, 1 at least once, 2 exactly once (default: 0)")
    p.add_argument("--client-id", default="",
                   help="MQTT client identifier (default: none, the broker assigns one)")
    return p


def split_topics(values: Iterable[str] | None, *, wildcards: bool) -> list[str]:
    """`--topic a --topic b,c` -> [a, b, c], each checked as an MQTT topic (or filter)."""
    topics = [t.strip() for value in (values or ()) for t in value.split(",") if t.strip()]
    for topic in topics:
        problem = topic_problem(topic, wildcards=wildcards)
        if problem:
            raise cli.LabError(f"invalid topic {topic!r}: {problem}", code=2)
    return topics


def topic_problem(topic: str, *, wildcards: bool) -> str | None:
    """Why `topic` is not a valid MQTT topic name (or, with `wildcards`, filter); None if it is."""
    if "\0" in topic:
        return "it contains a NUL character"
    if len(topic.encode("utf-8")) > 65535:
        return "it is longer than 65535 bytes"
    levels = topic.split("/")
    if not wildcards:
        return "wildcards (+, #) are for subscribing only" if "+" in topic or "#" in topic else None
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be a whole level and the last one (sister/#)"
        if "+" in level and level != "+":
            return "'+' must be a whole level (sister/+/gaming)"
    return None


def printable(payload: bytes) -> str:
    """A payload as one line of text: UTF-8 decoded, anything else escaped like Python's repr.

    Bytes that are not UTF-8 become `\\xff`, control characters `\\n`, `\\x1b`, so a payload
    can neither crash the subscriber nor break (or recolour) its terminal and log lines.
    """
    text = payload.decode("utf-8", errors="backslashreplace")
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def send_without_delay(sock: socket.socket | None) -> None:
    """TCP_NODELAY on the broker connection: each MQTT packet leaves when paho writes it.

    paho leaves Nagle's algorithm on, which holds a small PUBLISH while an earlier one is still
    unacknowledged: readings at QoS 0 then waited for the broker's delayed ACK (p99 about 20 ms).
    """
    if sock is not None:
        with contextlib.suppress(OSError):  # the connection is gone already: the next one sets it
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _cork(sock: socket.socket, on: bool) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, on)


def coalesce_bursts(client: mqtt.Client) -> None:
    """For a client that writes bursts: send a burst of packets in a few full TCP segments.

    With TCP_NODELAY every packet is a segment of its own, which in a flood costs the sender, the
    broker and the kernel per segment. paho says when its send queue fills (on_socket_register_write)
    and when it has written it all (on_socket_unregister_write): the socket is corked in between, and
    uncorking sends the rest at once, so a lone reading still waits for nothing. It costs two system
    calls per burst, which is why sub.py (one PUBACK at a time) does not use it. Linux only
    (TCP_CORK, as in the lab's containers); elsewhere packets simply go one by one.
    """
    if hasattr(socket, "TCP_CORK"):
        client.on_socket_register_write = lambda _client, _userdata, sock: _cork(sock, True)
        client.on_socket_unregister_write = lambda _client, _userdata, sock: _cork(sock, False)


class BrokerLink:
    """One paho client connected the lab's way.

    At start, `connect()` tries for up to CONNECT_TIMEOUT seconds and then fails with one line.
    Once connected, paho's network thread reconnects by itself whenever the broker goes away;
    `on_connected` runs after every successful CONNACK (sub.py subscribes there, so a restarted
    broker gets its subscriptions back).

    paho's network thread is started by `loop_start()`, which adds a socket pair through which
    another thread's publish() wakes it. A client whose packets all come from paho's own thread
    (sub.py: SUBSCRIBE from on_connect, a PUBACK after each message) sets `main_thread_sends`
    to False: the same `loop_forever()` then runs in a thread of ours without that socket pair,
    and paho writes each PUBACK at once instead of waking itself (two system calls and a turn
    of its loop per message). close()'s DISCONNECT paho writes at once from the calling thread.
    """

    def __init__(self, host: str, port: int, *, client_id: str = "", clean_session: bool = True,
                 on_connected: Callable[[mqtt.Client], None] | None = None):
        self.host, self.port = host, port
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
        self.client.reconnect_delay_set(RECONNECT_MIN_DELAY, RECONNECT_MAX_DELAY)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.on_connected = on_connected
        self.on_connection_lost: Callable[[], None] | None = None
        self.main_thread_sends = True  # see the class docstring; set before connect()
        self.connected = threading.Event()
        self._closed = threading.Event()
        self._closing = False
        self._connects = 0
        self._refused: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self) -> None:
        """Connect (retrying) and start paho's network thread; raise LabError if it cannot."""
        say(f"Connecting to {self.address}...")
        deadline = time.monotonic() + CONNECT_TIMEOUT
        said_retrying = False
        while True:
            try:
                self.client.connect(self.host, self.port, keepalive=KEEPALIVE)
                break
            except (ValueError, OverflowError) as e:  # a bad --host/--port: retrying will not help
                raise cli.unreachable("MQTT broker", self.host, self.port, e) from None
            except OSError as e:
                reason = e.strerror or str(e) or type(e).__name__
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise cli.unreachable("MQTT broker", self.host, self.port,
                                      f"{reason}; tried for {CONNECT_TIMEOUT:.0f} s")
            if not said_retrying:
                say(f"MQTT broker not reachable yet ({reason}); retrying for up to {CONNECT_TIMEOUT:.0f} s")
                said_retrying = True
            time.sleep(min(CONNECT_RETRY_DELAY, remaining))
        if self.main_thread_sends:
            self.client.loop_start()
        else:  # what loop_start()'s thread runs, without the wake-up socket pair
            threading.Thread(target=self.client.loop_forever, kwargs={"retry_first_connection": True},
                             name="paho-mqtt-loop", daemon=True).start()
        connack_deadline = time.monotonic() + self.client.connect_timeout
        while not self.connected.wait(0.1):
            if self._refused:
                raise cli.LabError(f"the MQTT broker at {self.address} refused the connection: {self._refused}")
            if time.monotonic() >= connack_deadline:
                raise cli.unreachable("MQTT broker", self.host, self.port, "no CONNACK from the broker")

    def close(self) -> None:
        """Send DISCONNECT (a clean teardown in the capture) and stop, within CLOSE_GRACE."""
        flush_output()  # what happened before the teardown shows before it
        self._closing = True
        if self.client.disconnect() == mqtt.MQTT_ERR_SUCCESS:
            self._closed.wait(CLOSE_GRACE)
        # paho's network thread is a daemon thread: it may still sit in a reconnect wait of up
        # to a second, so it is not joined here (the process exits without waiting for it).
        flush_output()

    def _on_connect(self, client, userdata, flags, reason_code, properties):  # noqa: ARG002 - paho signature
        if reason_code.is_failure:
            self._refused = str(reason_code)
            say(f"Connection refused by the MQTT broker {self.address}: {reason_code}")
            return
        send_without_delay(client.socket())
        self._connects += 1
        verb = "Connected to" if self._connects == 1 else "Reconnected to"
        resumed = " (session resumed: messages kept for us follow)" if flags.session_present else ""
        say(f"{verb} MQTT broker {self.address}{resumed}")
        self.connected.set()
        if self.on_connected:
            self.on_connected(client)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):  # noqa: ARG002 - paho signature
        if self._closing:
            self._closed.set()
            return
        if not self.connected.is_set():
            return
        self.connected.clear()
        say(f"Lost the connection to the MQTT broker {self.address}; reconnecting...")
        if self.on_connection_lost:
            self.on_connection_lost()
