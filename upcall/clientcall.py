"""Upcall, the client side: it registers a callback, and the server calls it, unasked.

A reader thread listens all the time: the reply to the message just sent goes back to the main
thread, every other line (Progress, Done) to the callback `on_upcall()`, even while the user types."""

import argparse
import itertools
import logging
import queue
import signal
import socket
import sys
import threading
from pathlib import Path

HOST = "upcall-server"  # the compose service name; without Docker use --host 127.0.0.1
PORT = 4141
CONNECT_TIMEOUT_SECONDS = 10.0  # how long the client waits for the server to accept the connection
REPLY_TIMEOUT_SECONDS = 10.0  # how long it waits for the reply to each message, and for the end after bye
LOG_FILE = Path(__file__).resolve().with_name("client_log.txt")  # everything sent and received, every error
REPLY_PREFIXES = ("Upcall event: Processing ", "Upcall event: Error:")  # a reply; Progress and Done are upcalls
BYE = "bye"  # sent to end the conversation; the server sends the events still in flight, then closes
PROMPT = "Enter {}message(s), comma-separated (bye to quit): "  # first "", then "another "

console, prompt_shown = threading.Lock(), ""  # one thread prints at a time; the prompt the user is at, if any


def fail(reason: str):  # stop the client: the reason as one line `error: ...` (logged as an ERROR too), status 1
    logging.error("%s", reason)
    sys.exit(f"error: {reason}")


def show(line: str) -> None:  # print a line from any thread; if the user is at the prompt, show it again after
    with console:
        sys.stdout.write(f"\n{line}\n{prompt_shown}" if prompt_shown else f"{line}\n")
        sys.stdout.flush()


def on_upcall(event: str) -> None:  # the callback the client registers: the server calls it, via the reader thread
    show(f"Received upcall from server: {event}")


def read_events(sock: socket.socket, replies: queue.Queue, callback) -> None:
    """The reader thread: each line from the server as it comes; a reply to main, the server's own calls to callback."""
    try:
        for raw in sock.makefile("rb"):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            logging.info("Received: %s", line)
            if line.startswith(REPLY_PREFIXES):
                replies.put(line)
            else:
                callback(line)
    except OSError as e:
        logging.info("Connection ended: %s", e.strerror or e)
    logging.info("The server closed the connection")
    replies.put(None)


def typed_lines():  # the lines the user types at the prompt, until end of input (Ctrl+D)
    global prompt_shown
    for prompt in (PROMPT.format(word) for word in itertools.chain([""], itertools.repeat("another "))):
        with console:
            prompt_shown = prompt
            print(prompt, end="", flush=True)
        line, prompt_shown = sys.stdin.readline(), ""  # "" at the end of input (Ctrl+D)
        if not line:
            show("")  # end the prompt's line
            return
        yield line.removesuffix("\n")


def main() -> None:
    p = argparse.ArgumentParser(description="Upcall client: sends messages, prints the server's replies and calls.")
    p.add_argument("--host", default=HOST, help=f"server to connect to (default: {HOST})")
    p.add_argument("--port", type=int, default=PORT, help=f"server port (default: {PORT})")
    p.add_argument("--messages", metavar="LIST", help="send these first, e.g. 'wanda,riri,bye' (without bye: a prompt)")
    p.add_argument("--log", default=str(LOG_FILE), metavar="PATH", help=f"log file (default: {LOG_FILE})")
    p.add_argument("--reply-timeout", type=float, default=REPLY_TIMEOUT_SECONDS, metavar="SECONDS")
    args = p.parse_args()
    sys.stdin.reconfigure(errors="replace")
    try:
        logging.basicConfig(filename=args.log, encoding="utf-8", level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(message)s")
    except OSError as e:
        print(f"warning: cannot write {args.log}: {e.strerror or e}; not logging (choose another file with "
              "--log PATH)", file=sys.stderr)
        logging.getLogger().addHandler(logging.NullHandler())
    try:
        sock = socket.create_connection((args.host, args.port), timeout=CONNECT_TIMEOUT_SECONDS)
    except (OSError, OverflowError) as e:  # OverflowError: a port beyond 65535
        hint = " (running without Docker? add --host 127.0.0.1)" if "-" in args.host else ""
        fail(f"cannot reach the upcall server at {args.host}:{args.port}: {e.strerror or e}{hint}")
    logging.info("Connected to %s:%s", args.host, args.port)
    sock.settimeout(None)  # the reader thread waits as long as it takes
    replies: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=read_events, args=(sock, replies, on_upcall), daemon=True)
    reader.start()
    try:
        lines = itertools.chain([args.messages] if args.messages else [], typed_lines())
        for message in (piece.strip() for line in lines for piece in line.split(",") if piece.strip()):
            if message.lower() == BYE:
                break
            logging.info("Sent: %s", message)
            sock.sendall(f"{message}\n".encode())
            try:
                reply = replies.get(timeout=args.reply_timeout)
            except queue.Empty:
                fail(f"no reply from the upcall server within {args.reply_timeout:g} s")
            if reply is None:
                fail("the upcall server closed the connection")
            show(f"Received upcall from server: {reply}")
        logging.info("Sent: %s", BYE)  # bye typed, or the end of input (which means the same)
        sock.sendall(f"{BYE}\n".encode())
        reader.join(args.reply_timeout)  # the server sends what is still in flight, then closes
    except OSError as e:
        fail(f"lost the connection to the upcall server: {e.strerror or e}")
    finally:
        sock.close()
        logging.info("Connection closed")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # docker stop, kill: a clean exit
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))  # Ctrl+C: the same, status 130
    sys.exit(main())
