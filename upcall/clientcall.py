"""Upcall, the client side: it registers a callback and the server calls it, unasked.

A reader thread listens to the server all the time. Replies to what the client sent
go back to the code waiting for them; everything else (Progress, Done) is an upcall,
delivered to the callback the client registered, even while the user is still typing.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
from collections.abc import Callable, Iterator

from labkit import cli
from labkit.lineproto import CONNECT_TIMEOUT, REPLY_TIMEOUT, LineClient, printable
from labkit.protocols import UPCALL_PORT, get

WHAT = "upcall server"
EVENT_PREFIX = "Upcall event: "
#: Sent to the server to end the conversation; it then sends what is still in flight and closes.
BYE = "bye"
#: After bye, how long the client waits for the server to deliver the events in flight and close.
DRAIN_TIMEOUT = 10.0
LOG_FILE = "client_log.txt"
FIRST_PROMPT = "Enter message(s), comma-separated (bye to quit): "
NEXT_PROMPT = "Enter another message(s), comma-separated (bye to quit): "

Upcall = Callable[[str], None]


def is_bye(message: str) -> bool:
    return message.strip().lower() == BYE


def split_messages(line: str) -> list[str]:
    """`wanda, riri ,bye` -> ['wanda', 'riri', 'bye']; empty pieces are dropped."""
    return [piece.strip() for piece in line.split(",") if piece.strip()]


class UpcallClient:
    """A connection whose server may speak at any time.

    `send()` waits for the server's immediate reply (`Processing ...`, or an error);
    every other line is an upcall, passed to each callback registered with
    `on_upcall()`, on this client's reader thread.
    """

    def __init__(self, conn: LineClient, logger: logging.Logger):
        self._conn = conn
        self._log = logger
        self._upcalls: list[Upcall] = []
        self._disconnect: list[Callable[[], None]] = []
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._awaiting_reply = False
        self._lock = threading.Lock()
        self._bye_sent = False
        self.closed = threading.Event()
        conn.sock.settimeout(None)  # the reader waits as long as it takes; send() has its own timeout
        self._reader = threading.Thread(target=self._read_events, name="upcall-reader", daemon=True)

    @classmethod
    def connect(cls, host: str, port: int, *, timeout: float = CONNECT_TIMEOUT,
                logger: logging.Logger | None = None) -> UpcallClient:
        logger = logger or logging.getLogger("upcall.client")
        try:
            conn = LineClient.connect(host, port, WHAT, timeout=timeout)
        except cli.LabError as e:
            logger.error("%s", e)
            raise
        logger.info("Connected to %s:%s", host, port)
        client = cls(conn, logger)
        client._reader.start()
        return client

    def on_upcall(self, callback: Upcall) -> Upcall:
        """Register `callback(event_line)` for server-initiated events (usable as a decorator)."""
        self._upcalls.append(callback)
        return callback

    def on_disconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Register `callback()` for when the server closes the connection before bye."""
        self._disconnect.append(callback)
        return callback

    def send(self, message: str, timeout: float = REPLY_TIMEOUT) -> str:
        """Send one message and return the server's immediate reply line."""
        if self.closed.is_set():
            raise self._error(f"the {WHAT} has closed the connection")
        with self._lock:
            self._awaiting_reply = True
        self._send(message)
        try:
            reply = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise self._error(f"no reply from the {WHAT} within {timeout:g} s to {message!r}") from None
        if reply is None:
            raise self._error(f"the {WHAT} closed the connection")
        return reply

    def bye(self, timeout: float = DRAIN_TIMEOUT) -> bool:
        """Say bye, then wait for the server to deliver the events in flight and close."""
        self._bye_sent = True
        if not self.closed.is_set():
            self._send(BYE)
        done = self.closed.wait(timeout)
        if not done:
            self._log.warning("The server did not close within %g s after bye; closing anyway", timeout)
        return done

    def close(self) -> None:
        self._conn.shutdown()
        self._reader.join(1.0)
        self._conn.close()
        self._log.info("Connection closed")

    def _send(self, message: str) -> None:
        self._log.info("Sent: %s", message)  # logged first: the reply may be logged before sendall returns
        try:
            self._conn.send_line(message)
        except OSError as e:
            raise self._error(f"lost the connection to the {WHAT}: {e.strerror or e}") from None

    def _error(self, text: str) -> cli.LabError:
        self._log.error("%s", text)
        return cli.LabError(text)

    def _is_reply(self, line: str) -> bool:
        """The line answering the message `send()` is waiting on: Processing or an error."""
        with self._lock:
            if self._awaiting_reply and line.startswith((f"{EVENT_PREFIX}Processing ", f"{EVENT_PREFIX}Error:")):
                self._awaiting_reply = False
                return True
            return False

    def _read_events(self) -> None:
        while True:
            try:
                line = self._conn.read_line()
            except OSError as e:
                if not self._bye_sent:
                    self._log.error("Connection lost: %s", e.strerror or e)
                line = None
            if line is None:
                break
            self._log.info("Received: %s", line)
            if self._is_reply(line):
                self._replies.put(line)
                continue
            for callback in list(self._upcalls):
                try:
                    callback(line)
                except Exception:  # a broken callback must not stop the reader
                    self._log.exception("Upcall callback %r failed", callback)
        self._log.info("The server closed the connection")
        self.closed.set()
        self._replies.put(None)
        if not self._bye_sent:
            for callback in list(self._disconnect):
                callback()


class Console:
    """Prints whole lines from any thread; if the user is at the prompt, shows the prompt again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prompt: str | None = None

    def show(self, line: str) -> None:
        with self._lock:
            if self._prompt is None:
                sys.stdout.write(line + "\n")
            else:  # interrupting the prompt: finish its line, print, prompt again (typed text is kept)
                sys.stdout.write("\n" + line + "\n" + self._prompt)
            sys.stdout.flush()

    def ask(self, prompt: str) -> str:
        with self._lock:
            sys.stdout.write(prompt)
            sys.stdout.flush()
            self._prompt = prompt
        try:
            return input()
        finally:
            with self._lock:
                self._prompt = None


def typed_messages(console: Console) -> Iterator[str]:
    """Messages typed at the prompt, comma-separated, until end of input."""
    prompt = FIRST_PROMPT
    while True:
        try:
            line = console.ask(prompt)
        except EOFError:
            console.show("")
            return
        yield from split_messages(line)
        prompt = NEXT_PROMPT


def open_log(path: str) -> logging.Logger:
    logger = logging.getLogger("upcall.client")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as e:
        raise cli.LabError(f"cannot write the log file {path}: {e.strerror or e}") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger


def main() -> int:
    p = cli.parser("Upcall client: sends messages, prints replies and the server's callbacks.",
                   host=get("upcall").server_service, port=UPCALL_PORT, server=False)
    p.add_argument("--messages", metavar="LIST",
                   help="comma-separated messages to send first, e.g. 'wanda,riri,bye'; "
                        "without bye, the prompt follows")
    p.add_argument("--log", default=LOG_FILE, metavar="PATH", help=f"log file (default: {LOG_FILE})")
    p.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT, metavar="SECONDS",
                   help=f"give up connecting after this long (default: {CONNECT_TIMEOUT:g})")
    args = p.parse_args()
    sys.stdin.reconfigure(errors="replace")
    logger = open_log(args.log)
    console = Console()

    client = UpcallClient.connect(args.host, args.port, timeout=args.connect_timeout, logger=logger)

    @client.on_upcall
    def show_upcall(event: str) -> None:
        console.show(f"Received upcall from server: {printable(event)}")

    @client.on_disconnect
    def show_disconnect() -> None:
        console.show(f"The {WHAT} closed the connection")

    def messages() -> Iterator[str]:
        yield from split_messages(args.messages or "")
        yield from typed_messages(console)

    try:
        for message in messages():
            if is_bye(message):
                break
            reply = client.send(message)
            console.show(f"Received upcall from server: {printable(reply)}")
        # bye typed, or end of input (which means the same)
        client.bye()
        return 0
    finally:
        client.close()


if __name__ == "__main__":
    cli.run(main)
