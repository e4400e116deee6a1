"""Upcall: the server calls the client back on its own initiative, not only in reply.

Each message is answered at once (`Processing`); then, while the server "works" on it, it sends
`Progress` and `Done` nobody asked for (`handle_message()`), so the client must listen all the time.
"""

import argparse
import asyncio
import contextlib
import errno
import itertools
import os
import signal
import subprocess
import sys

HOST = "0.0.0.0"  # every interface, so that the client container can reach the server
PORT = 4141
DNS_NAME = "upcall-server"  # the compose service name: how the client container finds the server
EVENT_PREFIX = "Upcall event: "  # every line the server sends starts with this, errors too
PROGRESS_DELAY_SECONDS = 0.5  # after a message arrives, the server calls back with `Progress <message> 50%`
DONE_DELAY_SECONDS = 1.0  # and then with `Done <message>`
MAX_IN_FLIGHT = 64  # messages in processing per connection; beyond that the server reads no more until one is done
#: Longest message, in bytes of UTF-8 without the line ending; a longer one gets `Error: line too long`.
MAX_LINE_BYTES = 64 * 1024
IDLE_TIMEOUT_SECONDS = 300.0  # a client that sends no line (or reads nothing) this long: `Error: idle timeout`, closed
LINES_PER_TURN = 100  # lines answered for one client before the others get their turn: a pouring one delays nobody
MAX_CONNECTIONS = 256  # clients served at once; one more is told `Error: server busy` and disconnected
BYE = "bye"  # the message that ends a conversation: the server sends the events still in flight, then closes

clients: set[asyncio.StreamWriter] = set()  # every connection being served
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


async def read_message(reader: asyncio.StreamReader, peer) -> str | None:
    """The next line without its "\\n" (or "\\r\\n"); None once the client has gone."""
    too_long = False
    while True:
        try:
            line = await reader.readuntil(b"\n")
            break
        except asyncio.LimitOverrunError as e:  # no "\n" within the limit: drop what has come, read on
            await reader.readexactly(e.consumed)
            too_long = True
        except asyncio.IncompleteReadError as e:  # the stream ended, perhaps in the middle of a line
            if e.partial:
                log(f"Connection from {peer} ended mid-line ({len(e.partial)} bytes discarded)")
            return None
    line = line[:-1].removesuffix(b"\r")
    if too_long or len(line) > MAX_LINE_BYTES:
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


def close_idle(writer: asyncio.StreamWriter) -> None:
    """Disconnect a client that has sent no line (or read nothing) for IDLE_TIMEOUT_SECONDS."""
    log(f"Closing idle connection: {writer.get_extra_info('peername')} "
        f"(nothing received for {IDLE_TIMEOUT_SECONDS:g} s)")
    send_event(writer, "Error: idle timeout")
    if writer.transport.get_write_buffer_size():  # it does not read what it is sent
        writer.transport.abort()
    else:
        writer.close()  # its serve_client() then sees the end of the stream


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One client's conversation: a reply per message now, upcalls later, until bye."""
    peer = writer.get_extra_info("peername")
    if len(clients) >= MAX_CONNECTIONS:
        log(f"Refused {peer}: server busy ({MAX_CONNECTIONS} connections)")
        send_event(writer, "Error: server busy")
        writer.close()
        return
    clients.add(writer)
    log(f"Connection from: {peer}")
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    loop = asyncio.get_running_loop()
    idle = loop.call_later(IDLE_TIMEOUT_SECONDS, close_idle, writer)
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
            idle.cancel()  # heard from it just now: the idle timeout starts again
            idle = loop.call_later(IDLE_TIMEOUT_SECONDS, close_idle, writer)
        for _ in range(MAX_IN_FLIGHT):  # bye: wait for every slot, so every Done, to come back
            await slots.acquire()
        await writer.drain()
    except OSError:  # the client vanished (connection reset), or was cut off as idle
        pass
    finally:
        idle.cancel()
        clients.discard(writer)
        writer.close()
        log(f"Connection closed: {peer}")


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
    await stop.wait()
    server.close()
    for writer in list(clients):
        writer.close()  # each client sees the server close, after what it was sent


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
        taken = e.errno == errno.EADDRINUSE
        if taken and os.path.isfile(os.environ.get("SERVER_LOG", "")):  # in Docker: show that server's output
            print(f"Following the upcall server already running in this container (port {args.port}): "
                  "its output from now on. Ctrl+C to stop.", flush=True)
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops following, like Ctrl+C
            with contextlib.suppress(KeyboardInterrupt):
                subprocess.run(["tail", "-n", "0", "-F", os.environ["SERVER_LOG"]])  # its lines as they come
            return 0
        if taken:
            print(f"error: port {args.port} on {args.host} is already in use: stop the other upcall server "
                  "(or choose another with --port)", file=sys.stderr)
        else:
            print(f"error: cannot start the server on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
