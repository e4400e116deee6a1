"""Request/response over TCP, the client side: send a message, block until its answer comes.

The client always speaks first and the server only ever answers: one request line, one
reply line, in lockstep. `bye` (or the end of input) ends the conversation.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys

HOST = "reqresp-server"  # the compose service name; without Docker use --host 127.0.0.1
PORT = 2222
#: How long the client waits for the server to accept the connection.
CONNECT_TIMEOUT_SECONDS = 10.0
#: How long the client waits for the reply to a message.
REPLY_TIMEOUT_SECONDS = 10.0
#: Sent to end the conversation: the server echoes it, then closes the connection.
BYE = "bye"


class ClientError(Exception):
    """Printed as one line `error: ...`, exit status 1."""


def typed_messages():
    """Messages typed at the prompt, until end of input (Ctrl+D)."""
    prompt = "Enter message: "
    while True:
        try:
            line = input(prompt)
        except EOFError:
            print()
            return
        if line.strip():
            yield line
            prompt = "Enter another message: "


def exchange(sock: socket.socket, replies, message: str) -> str:
    """Send one request line and wait for its reply line: the whole protocol."""
    try:
        sock.sendall(f"{message}\n".encode())
        reply = replies.readline()
    except TimeoutError:
        raise ClientError(f"no reply from the reqresp server within {sock.gettimeout():g} s") from None
    except OSError as e:
        raise ClientError(f"lost the connection to the reqresp server: {e.strerror or e}") from None
    if not reply:
        raise ClientError("the reqresp server closed the connection")
    return reply.decode("utf-8", errors="replace").rstrip("\r\n")


def main() -> int:
    p = argparse.ArgumentParser(description="TCP request/response client: sends lines, prints the echoes.")
    p.add_argument("messages", nargs="*", help="send these, then bye, and exit; without them, ask at a prompt")
    p.add_argument("--host", default=HOST, help=f"server to connect to (default: {HOST})")
    p.add_argument("--port", type=int, default=PORT, help=f"server port (default: {PORT})")
    p.add_argument("--reply-timeout", type=float, default=REPLY_TIMEOUT_SECONDS, metavar="SECONDS",
                   help=f"give up waiting for a reply after this long (default: {REPLY_TIMEOUT_SECONDS:g})")
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    sys.stdin.reconfigure(errors="replace")

    try:
        sock = socket.create_connection((args.host, args.port), timeout=CONNECT_TIMEOUT_SECONDS)
    except (OSError, OverflowError) as e:  # OverflowError: a port beyond 65535
        hint = " (running without Docker? add --host 127.0.0.1)" if "-" in args.host else ""
        where = f"{args.host}:{args.port}"
        raise ClientError(f"cannot reach the reqresp server at {where}: {e.strerror or e}{hint}") from None
    sock.settimeout(args.reply_timeout)
    replies = sock.makefile("rb")
    with sock, replies:
        given = [line for argument in args.messages for line in argument.splitlines() or [""]]
        for message in given or typed_messages():
            print(f"Received from server: {exchange(sock, replies, message)}")
            if message.strip().lower() == BYE:
                break
        else:  # end of input means the same as bye
            print(f"Received from server: {exchange(sock, replies, BYE)}")
        try:  # the server closes first after bye; we close after it
            replies.read()
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # docker stop, kill: a clean exit
    try:
        sys.exit(main())
    except ClientError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
