"""Request/response over TCP: the client asks, the server answers, nothing else happens.

Each message is one UTF-8 line; the server echoes it as `Echo: <message>` to the
client that sent it, serving many clients at once from one event loop (asyncio).
"""

from __future__ import annotations

from labkit import cli, lineproto
from labkit.lineproto import log, printable
from labkit.protocols import REQRESP_PORT

#: The message that ends a conversation: the server echoes it, then closes the connection.
BYE = "bye"


class EchoHandler(lineproto.LineHandler):
    """Answer every line with `Echo: <line>`; after `bye`, close."""

    def handle_line(self, message: str) -> bool:
        log(f"Received from client: {printable(message)}")
        if not self.send_line(f"Echo: {message}"):
            return False
        return message.strip().lower() != BYE


def main() -> int:
    p = cli.parser("TCP echo server: one line in, `Echo: <line>` out.", host="0.0.0.0", port=REQRESP_PORT,
                   server=True)
    lineproto.add_server_limits(p)
    args = p.parse_args()
    server = lineproto.start_server(args.host, args.port, EchoHandler, "reqresp server",
                                    idle_timeout=args.idle_timeout, max_connections=args.max_connections)
    log(f"Server listening on {args.host}:{server.port}")
    lineproto.serve(server)
    return 0


if __name__ == "__main__":
    cli.run(main)
