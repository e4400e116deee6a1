"""Upcall: the server calls the client back on its own initiative, not only in reply.

For each message the server answers at once `Upcall event: Processing <message>`; then, while
it "works" on the message, it sends `Progress` and `Done` events nobody asked for (see
`handle_message()`). So the client must listen all the time, not only after it has sent.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import itertools
import os
import signal
import sys
import time

HOST = "0.0.0.0"  # every interface, so that the client container can reach the server
PORT = 4141
DNS_NAME = "upcall-server"  # the compose service name: how the client container finds the server
#: Every line the server sends starts with this, errors too.
EVENT_PREFIX = "Upcall event: "
#: Seconds after a message arrives that the server calls back with `Progress <message> 50%`.
PROGRESS_DELAY_SECONDS = 0.5
#: Seconds after a message arrives that the server calls back with `Done <message>`.
DONE_DELAY_SECONDS = 1.0
#: Messages one connection may have in processing; beyond that the server reads nothing more from
#: that client until one is done (and TCP flow control slows the sender down).
MAX_IN_FLIGHT = 64
#: Longest message accepted, in bytes of UTF-8 without the line ending. A longer line is
#: answered `Upcall event: Error: line too long` and discarded; the connection stays open.
MAX_LINE_BYTES = 64 * 1024
#: A client that sends nothing (or reads nothing) for this long is sent
#: `Upcall event: Error: idle timeout` and disconnected.
IDLE_TIMEOUT_SECONDS = 300.0
#: Lines answered for one client before the others get their turn: one pouring lines delays nobody.
LINES_PER_TURN = 100
#: Clients served at once; one more is told `Upcall event: Error: server busy` and disconnected.
MAX_CONNECTIONS = 256
#: The message that ends a conversation: the server sends the events still in flight, then closes.
BYE = "bye"

clients: dict[asyncio.StreamWriter, float] = {}  # every connection served: when we last heard from it
server_log = None  # with SERVER_LOG set, the file that every printed line is appended to as well


def log(line: str) -> None:
    """Print one line of the server's output (and append it to SERVER_LOG, when that is set)."""
    print(line, flush=True)
    if server_log:
        server_log.write(line + "\n")


def printable(text: str) -> str:
    """`text` for a terminal: control characters (ESC, NUL, ...) shown escaped."""
    return text if text.isprintable() else repr(text)[1:-1]


class BadLine(Exception):
    """A line the server refuses: answered `Upcall event: Error: <reason>`; the connection stays open."""


async def skip_line(reader: asyncio.StreamReader, consumed: int) -> None:
    """Drop a line that is too long: what has arrived of it, then the rest up to its "\\n"."""
    while True:
        await reader.readexactly(consumed)
        try:
            await reader.readuntil(b"\n")  # the end of that line
            return
        except asyncio.LimitOverrunError as e:  # more of it, still without its end
            consumed = e.consumed
        except asyncio.IncompleteReadError:  # the client has gone
            return


async def read_message(reader: asyncio.StreamReader, peer) -> str | None:
    """The next line without its "\\n" (or "\\r\\n"); None once the client has gone."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as e:  # the stream ended, perhaps in the middle of a line
        if e.partial:
            log(f"Connection from {peer} ended mid-line ({len(e.partial)} bytes discarded)")
        return None
    except asyncio.LimitOverrunError as e:  # no "\n" within the limit
        await skip_line(reader, e.consumed)
        raise BadLine("line too long") from None
    line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
    if len(line) > MAX_LINE_BYTES:
        raise BadLine("line too long")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise BadLine("invalid UTF-8") from None


def send_event(writer: asyncio.StreamWriter, event: str) -> None:
    if not writer.is_closing():
        writer.write(f"{EVENT_PREFIX}{event}\n".encode())


def upcall(writer: asyncio.StreamWriter, event: str, slots: asyncio.Semaphore | None = None) -> None:
    """The server calling the client, unasked; with `slots`, the message is done and frees its slot."""
    if not writer.is_closing():
        log(f"Upcall to {writer.get_extra_info('peername')}: {printable(event)}")
        send_event(writer, event)
    if slots:
        slots.release()


async def handle_message(writer: asyncio.StreamWriter, message: str, slots: asyncio.Semaphore) -> None:
    """Reply at once; then, later and on the server's own initiative, call the client back twice."""
    await slots.acquire()  # one of MAX_IN_FLIGHT places; until one is free, this client's next lines wait
    send_event(writer, f"Processing {message}")
    loop = asyncio.get_running_loop()
    loop.call_later(PROGRESS_DELAY_SECONDS, upcall, writer, f"Progress {message} 50%")
    loop.call_later(DONE_DELAY_SECONDS, upcall, writer, f"Done {message}", slots)


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One client's conversation: a reply per message now, upcalls later, until bye."""
    peer = writer.get_extra_info("peername")
    if len(clients) >= MAX_CONNECTIONS:
        log(f"Refused {peer}: server busy ({MAX_CONNECTIONS} connections)")
        send_event(writer, "Error: server busy")
        writer.close()
        return
    loop = asyncio.get_running_loop()
    clients[writer] = loop.time()
    log(f"Connection from: {peer}")
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    try:
        for turn in itertools.count(1):
            if turn % LINES_PER_TURN == 0:
                await asyncio.sleep(0)  # let the other clients have their turn
            try:
                message = await read_message(reader, peer)
                if message is None:  # the client has gone, or stopped sending (like `nc -N`): as bye
                    break
                log(f"Received from client: {printable(message)}")
                if message.strip().lower() == BYE:
                    break
                await handle_message(writer, message, slots)
            except BadLine as e:
                log(f"Error from {peer}: {e}")
                send_event(writer, f"Error: {e}")
            await writer.drain()  # waits while the client is not reading (TCP flow control)
            clients[writer] = loop.time()  # heard from it just now
        for _ in range(MAX_IN_FLIGHT):  # bye: wait for every slot, so every Done, to come back
            await slots.acquire()
        await writer.drain()
    except OSError:  # the client vanished (connection reset), or was cut off as idle
        pass
    finally:
        del clients[writer]
        writer.close()
        log(f"Connection closed: {peer}")


async def close_idle_connections() -> None:
    """Once a second, disconnect every client silent (or not reading) for IDLE_TIMEOUT_SECONDS."""
    while True:
        await asyncio.sleep(1)
        for writer, heard in list(clients.items()):
            if asyncio.get_running_loop().time() - heard >= IDLE_TIMEOUT_SECONDS:
                log(f"Closing idle connection: {writer.get_extra_info('peername')} "
                    f"(nothing received for {IDLE_TIMEOUT_SECONDS:g} s)")
                send_event(writer, "Error: idle timeout")
                if writer.transport.get_write_buffer_size():  # it does not read what it is sent
                    writer.transport.abort()
                else:
                    writer.close()  # its serve_client() then sees the end of the stream


def report_error(_loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """asyncio's own errors as one line, never a traceback; a client's task cancelled at stop is none."""
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        log(f"Error: {context.get('exception') or context['message']}")


async def serve(host: str, port: int) -> None:
    """Listen and serve every client until SIGTERM or Ctrl+C, then close all connections."""
    global server_log
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(report_error)
    server = await asyncio.start_server(serve_client, host, port, limit=MAX_LINE_BYTES + 1, backlog=1024)
    if os.environ.get("SERVER_LOG"):  # in Docker: a second `python servercall.py` follows this file
        server_log = open(os.environ["SERVER_LOG"], "a", buffering=1, encoding="utf-8")
    log(f"Upcall server listening on {host}:{port} (DNS: {DNS_NAME}:{port})")
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    idle_watch = asyncio.create_task(close_idle_connections())
    await stop.wait()
    idle_watch.cancel()
    server.close()
    for writer in list(clients):
        writer.close()  # each client sees the server close, after what it was sent


def follow(path: str, port: int) -> None:
    """Print what the server already running appends to `path`, until SIGTERM or Ctrl+C."""
    print(f"Following the upcall server already running in this container (port {port}): "
          "its output from now on. Ctrl+C to stop.", flush=True)
    with open(path, encoding="utf-8", errors="replace") as lines:
        lines.seek(0, os.SEEK_END)
        while True:
            line = lines.readline()
            if line:
                print(line, end="", flush=True)
            else:
                time.sleep(0.2)


def main() -> int:
    global PROGRESS_DELAY_SECONDS, DONE_DELAY_SECONDS, IDLE_TIMEOUT_SECONDS, MAX_CONNECTIONS  # flags override
    p = argparse.ArgumentParser(description="Upcall server: answers each line, then calls the client back.")
    p.add_argument("--host", default=HOST, help=f"address to listen on (default: {HOST})")
    p.add_argument("--port", type=int, default=PORT, help=f"port to listen on (default: {PORT})")
    p.add_argument("--progress-delay", type=float, default=PROGRESS_DELAY_SECONDS, metavar="SECONDS")
    p.add_argument("--done-delay", type=float, default=DONE_DELAY_SECONDS, metavar="SECONDS")
    p.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_SECONDS, metavar="SECONDS")
    p.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS, metavar="N")
    args = p.parse_args()
    if not 1 <= args.port <= 65535:
        p.error(f"--port must be 1-65535, not {args.port}")
    if not 0 <= args.progress_delay <= args.done_delay:
        p.error("need 0 <= --progress-delay <= --done-delay")
    PROGRESS_DELAY_SECONDS, DONE_DELAY_SECONDS = args.progress_delay, args.done_delay
    IDLE_TIMEOUT_SECONDS, MAX_CONNECTIONS = args.idle_timeout, args.max_connections
    try:
        asyncio.run(serve(args.host, args.port))
    except OSError as e:
        path = os.environ.get("SERVER_LOG")
        if e.errno == errno.EADDRINUSE and path and os.path.isfile(path):
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops following, like Ctrl+C
            try:
                follow(path, args.port)
            except KeyboardInterrupt:
                return 0
        if e.errno == errno.EADDRINUSE:
            print(f"error: port {args.port} on {args.host} is already in use: stop the other upcall server "
                  "(or choose another with --port)", file=sys.stderr)
        else:
            print(f"error: cannot start the server on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
