"""The line protocol the reqresp and upcall demos share: one UTF-8 line per message.

Framing by "\\n" is what turns a TCP byte stream into messages: without it, `one`,
`two`, `three` sent back to back arrive as `onetwothree`. The server here is one
asyncio event loop serving every client (a handler object per connection, no thread
each), with the limits that keep one misbehaving client from hurting the others.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import threading
import time
import unicodedata
from typing import BinaryIO

from labkit import cli

#: Longest message accepted, in bytes of UTF-8 without the line ending.
MAX_LINE_BYTES = 64 * 1024
#: A connection that sends nothing for this many seconds is closed.
IDLE_TIMEOUT = 300.0
#: Clients served at once; one more is told `Error: server busy` and closed.
MAX_CONNECTIONS = 256
#: How long a client tries to connect before it gives up (and retries a refused connection meanwhile).
CONNECT_TIMEOUT = 10.0
#: How long a client waits for the reply to a message.
REPLY_TIMEOUT = 10.0
#: Longest line a client accepts: a reply is a whole message plus a short prefix.
MAX_REPLY_BYTES = MAX_LINE_BYTES + 1024
#: On stop, how long open connections get to close before the process exits.
STOP_GRACE = 0.5
#: Listen backlog: many clients may connect at the same instant.
LISTEN_BACKLOG = 1024
#: Lines the server handles for one client before it serves the others: a client sending thousands
#: of lines at once delays nobody by more than that many.
LINES_PER_TURN = 100

ENCODING = "utf-8"


class LineTooLong(ValueError):
    """A line longer than the limit arrived; the rest of it has been read and discarded."""


class InvalidUTF8(ValueError):
    """A complete line arrived that is not valid UTF-8."""


class IncompleteLine(EOFError):
    """The stream ended in the middle of a line (the sender vanished mid-message)."""

    def __init__(self, nbytes: int):
        super().__init__(f"stream ended after {nbytes} bytes of an unfinished line")
        self.nbytes = nbytes


def read_line(rfile: BinaryIO, limit: int = MAX_LINE_BYTES) -> str | None:
    """The next line from `rfile` without its `\\n` or `\\r\\n`; None at a clean end of stream.

    Raises LineTooLong (after discarding the rest of that line), InvalidUTF8,
    IncompleteLine, or the socket's TimeoutError/OSError.
    """
    raw = rfile.readline(limit + 2)  # room for the body, "\r" and "\n"
    if not raw:
        return None
    if not raw.endswith(b"\n"):
        if len(raw) < limit + 2:
            raise IncompleteLine(len(raw))
        while True:  # too long: skip to the end of this line
            rest = rfile.readline(limit + 2)
            if not rest or rest.endswith(b"\n"):
                raise LineTooLong(f"line longer than {limit} bytes")
    body = raw[:-1]
    if body.endswith(b"\r"):
        body = body[:-1]
    if len(body) > limit:
        raise LineTooLong(f"line longer than {limit} bytes")
    try:
        return body.decode(ENCODING)
    except UnicodeDecodeError:
        raise InvalidUTF8("line is not valid UTF-8") from None


class LineBuffer:
    """The bytes received so far, cut into lines by the rules of `read_line()`, without ever waiting.

    The server feeds it whatever each read brought (part of a line, several lines) and takes
    the complete lines out; `read_line()` is the same for a client that can block.
    """

    def __init__(self, limit: int = MAX_LINE_BYTES):
        self.limit = limit
        self.ended = False  # the stream has ended (fed b"")
        self._data = bytearray()
        self._skipping = False  # inside a line already known to be too long: dropped up to its "\n"

    def feed(self, data: bytes) -> None:
        """Add what a read returned; b"" is the end of the stream."""
        if data:
            self._data += data
        else:
            self.ended = True

    def next_line(self) -> str | None:
        """The next complete line without its `\\n` or `\\r\\n`; None if none is buffered (see `ended`).

        Raises LineTooLong (once the whole line has arrived, or the stream ended inside it),
        InvalidUTF8, or at the end of the stream IncompleteLine.
        """
        end = self._data.find(b"\n")
        if self._skipping:
            if end >= 0:
                del self._data[:end + 1]  # the rest of the long line
            else:
                self._data.clear()
                if not self.ended:
                    return None
            self._skipping = False
            raise LineTooLong(f"line longer than {self.limit} bytes")
        if end < 0:
            if len(self._data) >= self.limit + 2:  # room for the body and "\r": longer without a "\n" yet
                self._data.clear()
                self._skipping = True
                return self.next_line() if self.ended else None
            if self.ended and self._data:
                nbytes = len(self._data)
                self._data.clear()
                raise IncompleteLine(nbytes)
            return None
        body = bytes(self._data[:end])
        del self._data[:end + 1]
        if body.endswith(b"\r"):
            body = body[:-1]
        if len(body) > self.limit:
            raise LineTooLong(f"line longer than {self.limit} bytes")
        try:
            return body.decode(ENCODING)
        except UnicodeDecodeError:
            raise InvalidUTF8("line is not valid UTF-8") from None


def encode_line(text: str) -> bytes:
    """`text` as one line on the wire."""
    return (text + "\n").encode(ENCODING)


def printable(text: str) -> str:
    """`text` for a terminal: control characters (ESC, NUL, ...) shown escaped, the rest as is."""
    if text.isprintable():
        return text
    return "".join(repr(c)[1:-1] if unicodedata.category(c) == "Cc" else c for c in text)


_print_lock = threading.Lock()
_quiet = False


def log(line: str) -> None:
    """Print one whole line, safely from any thread (lines never interleave)."""
    with _print_lock:
        if _quiet:
            return
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


# --------------------------------------------------------------------------- server


class LineHandler(asyncio.Protocol):
    """One client connection: cuts what arrives into lines and hands each to `handle_line()`.

    Subclasses implement `handle_line(message)` (return False to end the conversation after it)
    and may override `accepting_lines()` and `finish_connection(reason)`. Every
    handler runs on the server's one event loop, so none may block: `send_line()` hands the
    bytes to the loop, and later work is a loop timer (`self.loop.call_later`).
    Errors in the framing are answered on the connection, which stays open.
    """

    def __init__(self, server: LineServer):
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.client_address = None
        self._lines = LineBuffer()
        self._over = False  # the conversation has ended: the connection closes, now or once its work is done
        self._refused = False
        self._reading_paused = False
        self._writing_paused = False  # the client is not reading what it is sent (the loop's buffer is full)
        self._write_stuck_since = 0.0
        self._waiting_since = 0.0  # since when the client owes us something (its idle time)
        self._idle_timer: asyncio.TimerHandle | None = None
        self._next_turn: asyncio.Handle | None = None  # process_lines() again, once the others had their turn

    # --- what a protocol's handler overrides

    def handle_line(self, message: str) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def accepting_lines(self) -> bool:
        """False leaves the client's next lines unread; call `process_lines()` when it turns True again."""
        return True

    def finish_connection(self, reason: str) -> None:  # noqa: ARG002 - for subclasses
        """Called once when the conversation ends (reason: bye, eof, idle, reset or stop).

        Closes the connection; a subclass may instead call `close()` later, once it has sent
        what the client is still owed.
        """
        self.close()

    # --- what a handler uses

    def send_line(self, text: str) -> bool:
        """Send one line (the loop writes it at once, or as soon as the client reads); False if closing."""
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(encode_line(text))
        return True

    def send_error(self, reason: str) -> bool:
        return self.send_line(self.server.error_line(reason))

    def close(self) -> None:
        """Close after the lines already sent have left; at once if the client does not read them."""
        if self.transport is None or self.transport.is_closing():
            return
        if self._writing_paused:
            self.transport.abort()
        else:
            self.transport.close()

    def process_lines(self) -> None:
        """Handle the lines that have arrived, as far as the handler accepts them, then read on (or not).

        At most LINES_PER_TURN at a time: then the loop serves the other clients, and comes back.
        """
        peer = self.client_address
        more = False  # this turn ended with lines perhaps still waiting
        try:
            for _ in range(LINES_PER_TURN):
                if self._over or self._writing_paused or not self.accepting_lines():
                    break
                try:
                    message = self._lines.next_line()
                except LineTooLong:
                    log(f"Error from {peer}: line too long (over {MAX_LINE_BYTES} bytes, discarded)")
                    if not self.send_error("line too long"):
                        self._end("reset")
                    continue
                except InvalidUTF8:
                    log(f"Error from {peer}: invalid UTF-8 (line discarded)")
                    if not self.send_error("invalid UTF-8"):
                        self._end("reset")
                    continue
                except IncompleteLine as e:
                    log(f"Connection from {peer} ended mid-line ({e.nbytes} bytes discarded)")
                    self._end("eof")
                    return
                if message is None:
                    if self._lines.ended:
                        self._end("eof")
                    break
                if not self.handle_line(message):
                    self._end("bye")
            else:
                more = True
        except OSError:  # the client is gone
            self._end("stop" if self.server.stopping else "reset")
        if self._over or self.transport.is_closing():
            return
        if more and self._next_turn is None:
            self._next_turn = self.loop.call_soon(self._take_turn)
        if self._lines.ended:
            return
        # Flow control: while lines wait here, or the client does not read, TCP slows the client down.
        hold = more or self._writing_paused or not self.accepting_lines()
        if hold and not self._reading_paused:
            self.transport.pause_reading()
            self._reading_paused = True
        elif not hold and self._reading_paused:
            self.transport.resume_reading()
            self._reading_paused = False
            self._waiting_since = self.loop.time()

    def _take_turn(self) -> None:
        self._next_turn = None
        self.process_lines()

    def stop(self) -> None:
        """The server is stopping: end the conversation and close."""
        if not self._over:
            self._end("stop")
        self.close()

    def _end(self, reason: str) -> None:
        if self._over:
            return
        self._over = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if not self._reading_paused and not self._lines.ended and not self.transport.is_closing():
            self.transport.pause_reading()  # nothing more is read: what follows a bye is not handled
            self._reading_paused = True
        self.finish_connection(reason)

    def _check_idle(self) -> None:
        self._idle_timer = None
        if self._over:
            return
        now, timeout = self.loop.time(), self.server.idle_timeout
        if self._writing_paused:  # not idle, but not reading what it is sent: gone, as good as
            if now - self._write_stuck_since >= timeout:
                self.transport.abort()
                return
            check_at = self._write_stuck_since + timeout
        elif self._reading_paused or self._lines.ended:  # we owe it work; it owes us nothing yet
            check_at = now + timeout
        elif now - self._waiting_since >= timeout:
            log(f"Closing idle connection: {self.client_address} (nothing received for {timeout:g} s)")
            self.send_error("idle timeout")
            self._end("idle")
            return
        else:
            check_at = self._waiting_since + timeout
        self._idle_timer = self.loop.call_at(check_at, self._check_idle)

    # --- asyncio.Protocol: the loop calls these

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.client_address = transport.get_extra_info("peername")
        if not self.server.admit(self):
            self._refused = True
            log(f"Refused {self.client_address}: server busy ({self.server.max_connections} connections)")
            transport.write(encode_line(self.server.error_line("server busy")))
            transport.close()
            return
        log(f"Connection from: {self.client_address}")
        self._waiting_since = self.loop.time()
        self._idle_timer = self.loop.call_at(self._waiting_since + self.server.idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        if self._over:
            return
        self._waiting_since = self.loop.time()
        self._lines.feed(data)
        self.process_lines()

    def eof_received(self) -> bool:
        if not self._over and not self._lines.ended:
            self._lines.feed(b"")
            self.process_lines()
        return True  # keep our sending side open: what the client is still owed goes out first

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._write_stuck_since = self.loop.time()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self.process_lines()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - the reason does not matter here
        if self._refused:
            return
        if not self._over:
            self._end("stop" if self.server.stopping else "reset")
        self.server.release(self)
        log(f"Connection closed: {self.client_address}")


class LineServer:
    """A listening socket served by one asyncio event loop: a handler per client, a cap on clients,
    and a stop that never waits on a client for long."""

    def __init__(self, loop: asyncio.AbstractEventLoop, handler: type[LineHandler], *,
                 idle_timeout: float = IDLE_TIMEOUT, max_connections: int = MAX_CONNECTIONS, error_prefix: str = ""):
        self.loop = loop
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.error_prefix = error_prefix
        self.stopping = False
        self._active: set[LineHandler] = set()
        self._listener: asyncio.Server | None = None
        self._all_closed: asyncio.Future | None = None

    async def listen(self, host: str, port: int) -> None:
        self._listener = await self.loop.create_server(lambda: self.handler(self), host, port,
                                                       backlog=LISTEN_BACKLOG, reuse_address=True)

    @property
    def port(self) -> int:
        return self._listener.sockets[0].getsockname()[1]

    def error_line(self, reason: str) -> str:
        return f"{self.error_prefix}Error: {reason}"

    def admit(self, handler: LineHandler) -> bool:
        if len(self._active) >= self.max_connections:
            return False
        self._active.add(handler)
        return True

    def release(self, handler: LineHandler) -> None:
        self._active.discard(handler)
        if not self._active and self._all_closed is not None and not self._all_closed.done():
            self._all_closed.set_result(None)

    def stop(self) -> None:
        """Stop listening, close every connection; give them STOP_GRACE to go, then cut the rest."""
        global _quiet
        self.stopping = True
        if self._listener is not None:
            self._listener.close()
        if self._active:
            self._all_closed = all_closed = self.loop.create_future()
            self.loop.call_later(STOP_GRACE, lambda: all_closed.done() or all_closed.set_result(None))
            for handler in list(self._active):
                handler.stop()
            self.loop.run_until_complete(all_closed)
            for handler in list(self._active):  # those still open after STOP_GRACE
                handler.transport.abort()
        with _print_lock:
            _quiet = True  # nothing more on the console while Python exits


def _report_error(loop: asyncio.AbstractEventLoop, context: dict) -> None:  # noqa: ARG001 - asyncio's signature
    """Never a traceback on the console for one client's trouble: one line instead."""
    peer = getattr(context.get("protocol"), "client_address", None)
    problem = context.get("exception") or context.get("message")
    log(f"Error with {peer}: {problem!r}" if peer else f"Error: {context.get('message')}: {problem!r}")


def start_server(host: str, port: int, handler: type[LineHandler], what: str, **options) -> LineServer:
    """Check the port, bind and listen; raise LabError with one line if that fails."""
    cli.ensure_port_free(host, port, what)
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(_report_error)
    server = LineServer(loop, handler, **options)
    try:
        loop.run_until_complete(server.listen(host, port))
    except OSError as e:
        loop.close()
        raise cli.LabError(f"cannot listen on {host}:{port}: {e.strerror or e}", code=2) from None
    return server


def serve(server: LineServer) -> None:
    """Serve until SIGTERM or Ctrl+C, stop, then raise what labkit.cli.run turns into a clean exit."""
    loop = server.loop
    stop_requested = loop.create_future()

    def request_stop(signum: int) -> None:
        if not stop_requested.done():
            stop_requested.set_result(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop, signum)
    try:
        signum = loop.run_until_complete(stop_requested)
    finally:
        server.stop()
        loop.close()
    raise cli.Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def add_server_limits(parser, *, idle_timeout: float = IDLE_TIMEOUT, max_connections: int = MAX_CONNECTIONS) -> None:
    """The flags that tune the server limits (tests use small values)."""
    parser.add_argument("--idle-timeout", type=float, default=idle_timeout, metavar="SECONDS",
                        help=f"close a connection that sends nothing for this long (default: {idle_timeout:g})")
    parser.add_argument("--max-connections", type=int, default=max_connections, metavar="N",
                        help=f"clients served at once; more are told 'server busy' (default: {max_connections})")


# --------------------------------------------------------------------------- client


class LineClient:
    """A client connection: send a line, read a line. Sending is thread-safe."""

    def __init__(self, sock: socket.socket, host: str, port: int):
        self.sock = sock
        self.host, self.port = host, port
        self._rfile = sock.makefile("rb")
        self._write_lock = threading.Lock()

    @classmethod
    def connect(cls, host: str, port: int, what: str, *, timeout: float = CONNECT_TIMEOUT,
                reply_timeout: float | None = REPLY_TIMEOUT) -> LineClient:
        """Connect within `timeout` seconds (a refused connection is retried meanwhile, so a
        client may start just before its server), or raise the one-line LabError."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                sock = socket.create_connection((host, port), timeout=max(left, 0.1))
                break
            except ConnectionRefusedError as e:
                if left <= 0.25:
                    raise cli.unreachable(what, host, port, e.strerror or "connection refused") from None
                time.sleep(0.2)
            except socket.gaierror as e:
                raise cli.unreachable(what, host, port, f"unknown host ({e.strerror})") from None
            except TimeoutError:
                raise cli.unreachable(what, host, port, f"no answer within {timeout:g} s") from None
            except OSError as e:
                raise cli.unreachable(what, host, port, e.strerror or e) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(reply_timeout)
        return cls(sock, host, port)

    def send_line(self, text: str) -> None:
        data = encode_line(text)
        with self._write_lock:
            self.sock.sendall(data)

    def read_line(self) -> str | None:
        """The next line from the server (None when it closed); undecodable bytes are replaced."""
        try:
            return read_line(self._rfile, MAX_REPLY_BYTES)
        except InvalidUTF8:
            return "(a line that is not valid UTF-8)"
        except LineTooLong:
            return f"(a line longer than {MAX_REPLY_BYTES} bytes)"
        except IncompleteLine:
            return None

    def shutdown(self) -> None:
        """Wake any thread blocked reading (it sees end of stream)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        for closing in (self._rfile.close, self.sock.close):
            try:
                closing()
            except OSError:
                pass

