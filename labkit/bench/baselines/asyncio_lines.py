"""Baseline for the TCP line protocols: a minimal asyncio server, one coroutine per client.

`--reply echo` answers each line with `Echo: <line>` (reqresp), `--reply upcall` with
`Upcall event: Processing <line>` (upcall). With `--callbacks P D` it also sends, like the lab's
upcall server, `Progress <line> 50%` P seconds and `Done <line>` D seconds later (loop.call_later).
No limits, no logging: the least a server can do per message, which the lab's servers are held against.
"""

from __future__ import annotations

import asyncio

from labkit import cli
from labkit.protocols import REQRESP_PORT

PREFIXES = {"echo": b"Echo: ", "upcall": b"Upcall event: Processing "}


async def serve(host: str, port: int, prefix: bytes, callbacks: tuple[float, float] | None) -> None:
    loop = asyncio.get_running_loop()

    def send_later(writer: asyncio.StreamWriter, line: bytes) -> None:
        if not writer.is_closing():
            writer.write(line)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(prefix + line)
                if callbacks:
                    message = line.rstrip(b"\r\n")
                    loop.call_later(callbacks[0], send_later, writer, b"Upcall event: Progress " + message + b" 50%\n")
                    loop.call_later(callbacks[1], send_later, writer, b"Upcall event: Done " + message + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, host, port, backlog=1024)
    print(f"asyncio line server listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> int:
    p = cli.parser(__doc__.splitlines()[0], host="127.0.0.1", port=REQRESP_PORT, server=True)
    p.add_argument("--reply", choices=sorted(PREFIXES), default="echo", help="what to answer (default: echo)")
    p.add_argument("--callbacks", type=float, nargs=2, metavar=("PROGRESS", "DONE"),
                   help="upcall: also send Progress and Done this many seconds after each message")
    args = p.parse_args()
    cli.ensure_port_free(args.host, args.port, "asyncio line server")
    asyncio.run(serve(args.host, args.port, PREFIXES[args.reply], tuple(args.callbacks) if args.callbacks else None))
    return 0


if __name__ == "__main__":
    cli.run(main)
