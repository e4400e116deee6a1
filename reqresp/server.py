"""Request/response over TCP: the client asks, the server answers, nothing else happens.

Each message is one UTF-8 line ending in "\\n" (the framing that turns TCP's byte stream into
messages); the server answers each with `Echo: <message>`. One asyncio event loop serves every
client at once; `serve_client()` is one conversation: read a line, write a line."""

import argparse
import asyncio
import errno
import functools
import os
import signal
import sys

HOST = "0.0.0.0"  # every interface, so that the client container can reach the server
PORT = 2222
MAX_CONNECTIONS = 256  # clients served at once; one more is told `Error: server busy` and disconnected
BYE = "bye"  # the message that ends a conversation: the server echoes it, then closes the connection
PREFIX = ""  # what every line the server sends starts with (the upcall server's: "Upcall event: ")

clients: set[asyncio.StreamWriter] = set()  # every connection being served
log = functools.partial(print, flush=True)  # one line of output, at once (in Docker, also to SERVER_LOG: see the end)


def printable(text: str) -> str:  # `text` for a terminal: control characters (ESC, NUL, ...) shown escaped
    return text if text.isprintable() else repr(text)[1:-1]


# ---- Line framing: this block is word for word the same in reqresp/server.py and upcall/servercall.py ----
MAX_LINE_BYTES = 64 * 1024  # the longest message, in bytes of UTF-8 without "\n"; longer: `Error: line too long`
IDLE_TIMEOUT_SECONDS = 300.0  # a client that sends no line (or reads no reply) this long: `Error: idle timeout`


def close_idle(writer: asyncio.StreamWriter, peer) -> None:  # the idle timer went off: tell the client, hang up
    log(f"Closing idle connection: {peer} (nothing received for {IDLE_TIMEOUT_SECONDS:g} s)")
    writer.write(f"{PREFIX}Error: idle timeout\n".encode())
    if writer.transport.get_write_buffer_size():  # it does not read what it is sent
        writer.transport.abort()
    writer.close()  # messages() then sees the stream end


async def messages(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    """Each line the client sends, without its "\\n" (or "\\r\\n"), until it leaves or stays idle too long.

    A line too long or not UTF-8 is answered `Error: ...` here, and the connection stays open."""
    peer, too_long, loop = writer.get_extra_info("peername"), False, asyncio.get_running_loop()
    while True:
        idle = loop.call_later(IDLE_TIMEOUT_SECONDS, close_idle, writer, peer)  # the idle timeout, while we wait
        try:  # wait while the client reads none of our replies (TCP flow control), then for its next line
            await writer.drain()
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as e:  # no "\n" within MAX_LINE_BYTES: drop what came, read on to it
            await reader.readexactly(e.consumed)
            too_long = True
            continue
        except asyncio.IncompleteReadError:  # the client has gone (or idled out); an unfinished line is dropped
            return
        finally:
            idle.cancel()
        line = line[:-1].removesuffix(b"\r")
        await asyncio.sleep(0)  # let the other clients have their turn: one pouring lines delays nobody
        if too_long or len(line) > MAX_LINE_BYTES:
            error, too_long = "line too long", False
        else:
            try:
                yield line.decode("utf-8")
                continue
            except UnicodeDecodeError:
                error = "invalid UTF-8"
        log(f"Error from {peer}: {error}")  # answered here; the connection stays open
        writer.write(f"{PREFIX}Error: {error}\n".encode())
# ---- end of the line framing block ----


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One client's conversation: read a line, write its reply, until bye or the client leaves."""
    peer = writer.get_extra_info("peername")
    if len(clients) >= MAX_CONNECTIONS:
        log(f"Refused {peer}: server busy ({MAX_CONNECTIONS} connections)")
        writer.write(f"{PREFIX}Error: server busy\n".encode())
        writer.close()
        return
    clients.add(writer)
    log(f"Connection from: {peer}")
    try:
        async for message in messages(reader, writer):
            log(f"Received from client: {printable(message)}")
            writer.write(f"Echo: {message}\n".encode())
            if message.strip().lower() == BYE:
                break
    except (OSError, asyncio.CancelledError):  # the client vanished (connection reset), or the server stops
        pass
    finally:
        clients.discard(writer)
        writer.close()  # after what it was sent
        log(f"Connection closed: {peer}")


async def serve(host: str, port: int) -> None:
    """Listen and serve every client until SIGTERM or Ctrl+C."""
    server = await asyncio.start_server(serve_client, host, port, limit=MAX_LINE_BYTES + 1, backlog=1024)
    log(f"Server listening on {host}:{port}")
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):  # docker stop, Ctrl+C: asyncio's documented way
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()  # asyncio.run() then cancels every client's task: each closes its connection


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
        if e.errno == errno.EADDRINUSE and SERVER_LOG:
            follow_running_server(args.port)
        why = (" is already in use: stop the other reqresp server (or choose another with --port)"
               if e.errno == errno.EADDRINUSE else f": {e.strerror or e}")
        print(f"error: port {args.port} on {args.host}{why}", file=sys.stderr)
        return 2
    return 0


# ---- Docker only: `docker compose exec reqresp-server python server.py` follows the server already running ----
# The image sets SERVER_LOG: log() appends each line there too, and a second server.py, finding the port taken,
# becomes `tail -F` of that file instead of failing.
SERVER_LOG = os.environ.get("SERVER_LOG")
if SERVER_LOG:  # without it, none of this runs
    server_log = open(SERVER_LOG, "a", buffering=1, encoding="utf-8")
    def log(line: str) -> None:  # replaces log() above: each line printed, and appended to SERVER_LOG
        print(line, flush=True)
        print(line, file=server_log)


def follow_running_server(port: int) -> None:
    print(f"Following the reqresp server already running in this container (port {port}): "
          "its output from now on. Ctrl+C to stop.", flush=True)
    os.execvp("tail", ["tail", "-n", "0", "-F", SERVER_LOG])  # this process becomes tail: the lines as they come
# ---- end of Docker only ----


if __name__ == "__main__":
    sys.exit(main())
