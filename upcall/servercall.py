"""Upcall: the server calls the client back on its own initiative, not only in reply.

For each message the server answers at once `Upcall event: Processing <message>`, then,
while it "works" on the message, sends `Progress` and `Done` events nobody asked for:
the client must be listening all the time, not just after it has sent something.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

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
    """One client: a reply per message now, upcalls later, when the event loop's timer says they are due."""

    progress_delay = PROGRESS_DELAY
    done_delay = DONE_DELAY

    def __init__(self, server: lineproto.LineServer):
        super().__init__(server)
        self._due: list[tuple[float, int, str, bool]] = []  # (when, order, line, is the last for its message)
        self._order = itertools.count()
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None  # wakes this connection for its next due event
        self._close_when_done = False

    def handle_line(self, message: str) -> bool:
        log(f"Received from client: {printable(message)}")
        if is_bye(message):
            return False
        if not self.send_line(f"{EVENT_PREFIX}Processing {message}"):
            raise ConnectionResetError("client gone")
        now = self.loop.time()
        self._in_flight += 1
        heapq.heappush(self._due, (now + self.progress_delay, next(self._order),
                                   f"{EVENT_PREFIX}Progress {message} 50%", False))
        heapq.heappush(self._due, (now + self.done_delay, next(self._order), f"{EVENT_PREFIX}Done {message}", True))
        self._wake_at_next_due()
        return True

    def accepting_lines(self) -> bool:
        return self._in_flight < MAX_IN_FLIGHT

    def _wake_at_next_due(self) -> None:
        if not self._due:
            return
        when = self._due[0][0]
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._call_back)

    def _call_back(self) -> None:
        """Send each scheduled event that is due: the server speaking first."""
        self._timer = None
        now = self.loop.time()
        held = not self.accepting_lines()
        while self._due and self._due[0][0] <= now:
            _, _, line, finishes = heapq.heappop(self._due)
            if not self.send_line(line):  # the connection is closing
                self._due.clear()
                return
            log(f"Upcall to {self.client_address}: {printable(line.removeprefix(EVENT_PREFIX))}")
            if finishes:
                self._in_flight -= 1
        self._wake_at_next_due()
        if self._close_when_done and not self._in_flight:
            self.close()
        elif held and self.accepting_lines():
            self.process_lines()  # a place is free: read the client's next lines

    def _cancel_events(self) -> None:
        self._due.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def finish_connection(self, reason: str) -> None:
        if reason in ("bye", "eof") and self._in_flight:
            # The client said goodbye: deliver what it is still owed, then close (within a deadline).
            self._close_when_done = True
            self.loop.call_later(self.done_delay + FINISH_GRACE, self.close)
            return
        self._cancel_events()
        super().finish_connection(reason)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_events()
        super().connection_lost(exc)


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
