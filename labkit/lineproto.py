"""The line protocol the reqresp and upcall demos share: one UTF-8 line per message.

Framing by "\\n" is what turns a TCP byte stream into messages: without it, `one`,
`two`, `three` sent back to back arrive as `onetwothree`. The server here is the
standard library's `socketserver.ThreadingTCPServer` (one thread per client), with
the limits that keep one misbehaving client from hurting the others.
"""

from __future__ import annotations

import socket
import socketserver
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
#: How often serve_forever() looks at its shutdown flag: a stop takes at most this long.
POLL_INTERVAL = 0.2
#: On stop, how long open connections get to close before the process exits.
STOP_GRACE = 0.5

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


class LineHandler(socketserver.StreamRequestHandler):
    """One client connection: reads lines and hands each to `handle_line()`.

    Subclasses implement `handle_line(message)` (return False to close the
    connection after it) and may override `finish_connection(reason)`.
    Errors in the framing are answered on the connection, which stays open.
    """

    server: LineServer
    disable_nagle_algorithm = True  # each line leaves at once, as its own TCP segment

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout  # StreamRequestHandler applies it to the socket
        super().setup()
        self._write_lock = threading.Lock()

    def send_line(self, text: str) -> bool:
        """Send one line; thread-safe. False if the client is gone."""
        data = encode_line(text)
        try:
            with self._write_lock:
                self.wfile.write(data)
            return True
        except OSError:
            return False

    def send_error(self, reason: str) -> bool:
        return self.send_line(self.server.error_line(reason))

    def handle_line(self, message: str) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def finish_connection(self, reason: str) -> None:
        """Called once when the conversation ends: reason is bye, eof, idle, reset or stop."""

    def handle(self) -> None:
        peer = self.client_address
        log(f"Connection from: {peer}")
        reason = "eof"
        try:
            while True:
                try:
                    message = read_line(self.rfile)
                except LineTooLong:
                    log(f"Error from {peer}: line too long (over {MAX_LINE_BYTES} bytes, discarded)")
                    if not self.send_error("line too long"):
                        reason = "reset"
                        break
                    continue
                except InvalidUTF8:
                    log(f"Error from {peer}: invalid UTF-8 (line discarded)")
                    if not self.send_error("invalid UTF-8"):
                        reason = "reset"
                        break
                    continue
                except IncompleteLine as e:
                    log(f"Connection from {peer} ended mid-line ({e.nbytes} bytes discarded)")
                    break
                if message is None:
                    break
                if not self.handle_line(message):
                    reason = "bye"
                    break
        except TimeoutError:
            reason = "idle"
            log(f"Closing idle connection: {peer} (nothing received for {self.server.idle_timeout:g} s)")
            self.send_error("idle timeout")
        except OSError:
            reason = "stop" if self.server.stopping else "reset"
        try:
            self.finish_connection(reason)
        except OSError:
            pass
        log(f"Connection closed: {peer}")

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass  # the client vanished: nothing left to flush


class LineServer(socketserver.ThreadingTCPServer):
    """A thread per client, a cap on clients, and a stop that never waits on a client."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False  # server_close() must not wait for idle clients
    request_queue_size = 1024  # listen backlog: many clients may connect at the same instant

    def __init__(self, host: str, port: int, handler: type[LineHandler], *, idle_timeout: float = IDLE_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS, error_prefix: str = ""):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.error_prefix = error_prefix
        self.stopping = False
        self._active: set[socket.socket] = set()
        self._active_changed = threading.Condition()
        super().__init__((host, port), handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def error_line(self, reason: str) -> str:
        return f"{self.error_prefix}Error: {reason}"

    def active_connections(self) -> int:
        with self._active_changed:
            return len(self._active)

    def process_request(self, request, client_address) -> None:
        with self._active_changed:
            busy = len(self._active) >= self.max_connections
            if not busy:
                self._active.add(request)
        if busy:
            log(f"Refused {client_address}: server busy ({self.max_connections} connections)")
            try:
                request.settimeout(1.0)
                request.sendall(encode_line(self.error_line("server busy")))
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._active_changed:
                self._active.discard(request)
                self._active_changed.notify_all()

    def handle_error(self, request, client_address) -> None:  # noqa: ARG002 - socketserver signature
        # Never a traceback on the console for one client's trouble: one line instead.
        log(f"Error with {client_address}: {sys.exc_info()[1]!r}")

    def stop(self) -> None:
        """Close the listening socket and every connection; give handlers STOP_GRACE to finish."""
        global _quiet
        self.stopping = True
        self.server_close()
        with self._active_changed:
            for conn in list(self._active):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            deadline = time.monotonic() + STOP_GRACE
            while self._active and time.monotonic() < deadline:
                self._active_changed.wait(0.05)
        with _print_lock:
            _quiet = True  # handler threads still running must not write while Python exits


def start_server(host: str, port: int, handler: type[LineHandler], what: str, **options) -> LineServer:
    """Check the port, bind and listen; raise LabError with one line if that fails."""
    cli.ensure_port_free(host, port, what)
    try:
        return LineServer(host, port, handler, **options)
    except OSError as e:
        raise cli.LabError(f"cannot listen on {host}:{port}: {e.strerror or e}", code=2) from None


def serve(server: LineServer) -> None:
    """Serve until SIGTERM/Ctrl+C (labkit.cli.run turns them into a clean exit), then stop."""
    try:
        server.serve_forever(poll_interval=POLL_INTERVAL)
    finally:
        server.stop()


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

