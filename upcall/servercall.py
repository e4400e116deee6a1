"""Upcall: the server calls the client back on its own initiative, not only in reply.

For each message the server answers at once `Upcall event: Processing <message>`, then,
while it "works" on the message, sends `Progress` and `Done` events nobody asked for:
the client must be listening all the time, not just after it has sent something.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time

from labkit import cli, lineproto
from labkit.lineproto import log, printable
from labkit.protocols import UPCALL_PORT, get

#: Every line the server sends starts with this (errors too).
EVENT_PREFIX = "Upcall event: "
#: Seconds after a message arrives that the server calls back with `Progress <message> 50%`.
PROGRESS_DELAY = 0.5
#: Seconds after a message arrives that the server calls back with `Done <message>`.
DONE_DELAY = 1.0
#: Messages one connection may have in processing at once; beyond it the server stops reading
#: from that client until one is done (TCP flow control then slows the sender down).
MAX_IN_FLIGHT = 64
#: After `bye` (or the end of the client's stream) the server sends the events still in flight,
#: waiting at most this long beyond the Done delay, then closes the connection.
FINISH_GRACE = 5.0
#: The message that ends a conversation.
BYE = "bye"


def is_bye(message: str) -> bool:
    return message.strip().lower() == BYE


class UpcallHandler(lineproto.LineHandler):
    """One client: a reply per message now, upcalls later from this connection's own thread."""

    progress_delay = PROGRESS_DELAY
    done_delay = DONE_DELAY

    def setup(self) -> None:
        super().setup()
        self._due: list[tuple[float, int, str, bool]] = []  # (when, order, line, is the last for its message)
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._in_flight = 0
        self._cancelled = False
        self._caller: threading.Thread | None = None

    def handle_line(self, message: str) -> bool:
        log(f"Received from client: {printable(message)}")
        if is_bye(message):
            return False
        with self._changed:
            while self._in_flight >= MAX_IN_FLIGHT and not self._cancelled:
                self._changed.wait()
        if not self.send_line(f"{EVENT_PREFIX}Processing {message}"):
            raise ConnectionResetError("client gone")
        self._schedule_upcalls(message)
        return True

    def _schedule_upcalls(self, message: str) -> None:
        now = time.monotonic()
        with self._changed:
            self._in_flight += 1
            heapq.heappush(self._due, (now + self.progress_delay, next(self._order),
                                       f"{EVENT_PREFIX}Progress {message} 50%", False))
            heapq.heappush(self._due, (now + self.done_delay, next(self._order),
                                       f"{EVENT_PREFIX}Done {message}", True))
            self._changed.notify_all()
            if self._caller is None:
                self._caller = threading.Thread(target=self._call_back, daemon=True,
                                                name=f"upcalls-{self.client_address[1]}")
                self._caller.start()

    def _call_back(self) -> None:
        """Send each scheduled event when it is due: the server speaking first."""
        while True:
            with self._changed:
                while not self._cancelled:
                    wait = self._due[0][0] - time.monotonic() if self._due else None
                    if wait is not None and wait <= 0:
                        break
                    self._changed.wait(wait)
                if self._cancelled:
                    return
                _, _, line, finishes = heapq.heappop(self._due)
            sent = self.send_line(line)
            if sent:
                log(f"Upcall to {self.client_address}: {printable(line.removeprefix(EVENT_PREFIX))}")
            with self._changed:
                if finishes:
                    self._in_flight -= 1
                if not sent:
                    self._cancelled = True
                self._changed.notify_all()

    def finish_connection(self, reason: str) -> None:
        with self._changed:
            if reason in ("bye", "eof"):  # the client said goodbye: deliver what it is still owed
                deadline = time.monotonic() + self.done_delay + FINISH_GRACE
                while self._in_flight and not self._cancelled and time.monotonic() < deadline:
                    self._changed.wait(0.1)
            self._cancelled = True
            self._changed.notify_all()


def main() -> int:
    p = cli.parser("Upcall server: answers each line, then calls the client back with progress.",
                   host="0.0.0.0", port=UPCALL_PORT, server=True)
    lineproto.add_server_limits(p)
    p.add_argument("--progress-delay", type=float, default=PROGRESS_DELAY, metavar="SECONDS",
                   help=f"when to call back with Progress (default: {PROGRESS_DELAY:g})")
    p.add_argument("--done-delay", type=float, default=DONE_DELAY, metavar="SECONDS",
                   help=f"when to call back with Done, at least the progress delay (default: {DONE_DELAY:g})")
    args = p.parse_args()
    if not 0 <= args.progress_delay <= args.done_delay:
        p.error("need 0 <= --progress-delay <= --done-delay")
    UpcallHandler.progress_delay, UpcallHandler.done_delay = args.progress_delay, args.done_delay

    server = lineproto.start_server(args.host, args.port, UpcallHandler, "upcall server",
                                    idle_timeout=args.idle_timeout, max_connections=args.max_connections,
                                    error_prefix=EVENT_PREFIX)
    log(f"Upcall server listening on {args.host}:{server.port} "
        f"(DNS: {get('upcall').server_service}:{server.port})")
    lineproto.serve(server)
    return 0


if __name__ == "__main__":
    cli.run(main)
