"""Request/response over TCP: the client asks, the server answers, nothing else happens.

Each message is one UTF-8 line ending in "\\n" (the framing that turns TCP's byte stream into
messages); the server answers each with `Echo: <message>`. One asyncio event loop serves every
client at once; `serve_client()` is one conversation: read a line, write a line.
"""

from __future__ import annotations

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
PORT = 2222
#: Longest message accepted, in bytes of UTF-8 without the line ending. A longer line is
#: answered `Error: line too long` and discarded; the connection stays open.
MAX_LINE_BYTES = 64 * 1024
#: A client that sends nothing (or reads none of its replies) for this long is sent
#: `Error: idle timeout` and disconnected.
IDLE_TIMEOUT_SECONDS = 300.0
#: Lines answered for one client before the others get their turn: one pouring lines delays nobody.
LINES_PER_TURN = 100
#: Clients served at once; one more is told `Error: server busy` and disconnected.
MAX_CONNECTIONS = 256
#: The message that ends a conversation: the server echoes it, then closes the connection.
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
    """A line the server refuses: answered `Error: <reason>`; the connection stays open."""


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


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One client's conversation: read a line, write its reply, until bye or the client leaves."""
    peer = writer.get_extra_info("peername")
    if len(clients) >= MAX_CONNECTIONS:
        log(f"Refused {peer}: server busy ({MAX_CONNECTIONS} connections)")
        writer.write(b"Error: server busy\n")
        writer.close()
        return
    loop = asyncio.get_running_loop()
    clients[writer] = loop.time()
    log(f"Connection from: {peer}")
    try:
        for turn in itertools.count(1):
            if turn % LINES_PER_TURN == 0:
                await asyncio.sleep(0)  # let the other clients have their turn
            try:
                message = await read_message(reader, peer)
                if message is None:  # the client has gone
                    break
                log(f"Received from client: {printable(message)}")
                reply = f"Echo: {message}"
            except BadLine as e:
                log(f"Error from {peer}: {e}")
                message, reply = "", f"Error: {e}"
            writer.write(f"{reply}\n".encode())
            await writer.drain()  # waits while the client is not reading its replies (TCP flow control)
            clients[writer] = loop.time()  # heard from it just now
            if message.strip().lower() == BYE:
                break
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
                writer.write(b"Error: idle timeout\n")
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
    if os.environ.get("SERVER_LOG"):  # in Docker: a second `python server.py` follows this file
        server_log = open(os.environ["SERVER_LOG"], "a", buffering=1, encoding="utf-8")
    log(f"Server listening on {host}:{port}")
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    idle_watch = asyncio.create_task(close_idle_connections())
    await stop.wait()
    idle_watch.cancel()
    server.close()
    for writer in list(clients):
        writer.close()  # each client sees the server close, after what it was sent


def main() -> int:
    global IDLE_TIMEOUT_SECONDS, MAX_CONNECTIONS  # the flags override the constants above
    p = argparse.ArgumentParser(description="TCP echo server: one line in, `Echo: <line>` out.")
    p.add_argument("--host", default=HOST, help=f"address to listen on (default: {HOST})")
    p.add_argument("--port", type=int, default=PORT, help=f"port to listen on (default: {PORT})")
    p.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_SECONDS, metavar="SECONDS")
    p.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS, metavar="N")
    args = p.parse_args()
    if not 1 <= args.port <= 65535:
        p.error(f"--port must be 1-65535, not {args.port}")
    IDLE_TIMEOUT_SECONDS, MAX_CONNECTIONS = args.idle_timeout, args.max_connections
    try:
        asyncio.run(serve(args.host, args.port))
    except OSError as e:
        taken = e.errno == errno.EADDRINUSE
        if taken and os.path.isfile(os.environ.get("SERVER_LOG", "")):  # in Docker: show that server's output
            print(f"Following the reqresp server already running in this container (port {args.port}): "
                  "its output from now on. Ctrl+C to stop.", flush=True)
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops following, like Ctrl+C
            with contextlib.suppress(KeyboardInterrupt):
                subprocess.run(["tail", "-n", "0", "-F", os.environ["SERVER_LOG"]])  # its lines as they come
            return 0
        if taken:
            print(f"error: port {args.port} on {args.host} is already in use: stop the other reqresp server "
                  "(or choose another with --port)", file=sys.stderr)
        else:
            print(f"error: cannot start the server on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
