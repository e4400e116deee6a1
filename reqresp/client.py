"""Request/response over TCP, the client side: send a message, block until its answer comes.

The client always speaks first and the server only ever answers: one request line,
one reply line, in lockstep. `bye` (or the end of input) ends the conversation.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from labkit import cli
from labkit.lineproto import CONNECT_TIMEOUT, REPLY_TIMEOUT, LineClient, printable
from labkit.protocols import REQRESP_PORT, get

WHAT = "reqresp server"
#: Sent to the server to end the conversation; the server echoes it and closes.
BYE = "bye"


def is_bye(message: str) -> bool:
    return message.strip().lower() == BYE


def typed_messages() -> Iterator[str]:
    """Messages typed at the prompt, until end of input (Ctrl+D)."""
    prompt = "Enter message: "
    while True:
        try:
            line = input(prompt)
        except EOFError:
            print()
            return
        if not line.strip():
            continue
        yield line
        prompt = "Enter another message: "


def given_messages(arguments: list[str]) -> Iterator[str]:
    for argument in arguments:
        yield from argument.splitlines() or [""]


def exchange(client: LineClient, message: str) -> str:
    """Send one message and wait for its reply line."""
    try:
        client.send_line(message)
        reply = client.read_line()
    except TimeoutError:
        raise cli.LabError(f"no reply from the {WHAT} within {REPLY_TIMEOUT:g} s") from None
    except OSError as e:
        raise cli.LabError(f"lost the connection to the {WHAT}: {e.strerror or e}") from None
    if reply is None:
        raise cli.LabError(f"the {WHAT} closed the connection")
    return reply


def wait_for_server_close(client: LineClient) -> None:
    """After bye the server closes first; closing after it makes the teardown the same every time."""
    try:
        while client.read_line() is not None:
            pass
    except OSError:  # no close within the reply timeout, or a reset: close our side anyway
        pass


def main() -> int:
    p = cli.parser("TCP request/response client: sends lines, prints the server's echo.",
                   host=get("reqresp").server_service, port=REQRESP_PORT, server=False)
    p.add_argument("messages", nargs="*",
                   help="send these messages then bye, and exit (scripted); without them, ask at a prompt")
    p.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT, metavar="SECONDS",
                   help=f"give up connecting after this long (default: {CONNECT_TIMEOUT:g})")
    args = p.parse_args()
    sys.stdin.reconfigure(errors="replace")

    client = LineClient.connect(args.host, args.port, WHAT, timeout=args.connect_timeout)
    try:
        messages = given_messages(args.messages) if args.messages else typed_messages()
        for message in messages:
            print(f"Received from server: {printable(exchange(client, message))}")
            if is_bye(message):
                break
        else:  # end of input means the same as bye
            print(f"Received from server: {printable(exchange(client, BYE))}")
        wait_for_server_close(client)
        return 0
    finally:
        client.close()


if __name__ == "__main__":
    cli.run(main)
