"""Load client for the TCP line protocols: N connections, each sending a line and waiting for its reply.

Run as its own process (`python -m labkit.bench.lineload ...`) so that it has a core of its own to
contend for; prints one `BENCH_JSON {...}` line: replies per second and reply latency percentiles.
For the upcall server, the reply is the `Upcall event: Processing <m>` line; the Progress/Done
callbacks that arrive meanwhile are counted, not waited for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from labkit.bench.core import percentile

REPLIES = {"echo": "Echo: {}", "upcall": "Upcall event: Processing {}"}
CALLBACK_PREFIX = b"Upcall event: "
CONNECT_TIMEOUT = 10.0
REPLY_TIMEOUT = 10.0  # s: a reply later than this ends that connection's run as an error


class Totals:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.callbacks = 0
        self.errors = 0


async def one_client(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: str,
                     stop_at: float, totals: Totals) -> None:
    try:
        sequence = 0
        while time.perf_counter() < stop_at:
            message = f"c{number}m{sequence}"
            expected = (reply.format(message) + "\n").encode()
            sent = time.perf_counter()
            writer.write(f"{message}\n".encode())
            while True:
                line = await asyncio.wait_for(reader.readline(), REPLY_TIMEOUT)
                if line == expected:
                    totals.latencies.append(time.perf_counter() - sent)
                    break
                if not line:
                    raise ConnectionError("the server closed the connection")
                if line.startswith(CALLBACK_PREFIX) and b" Processing " not in line:
                    totals.callbacks += 1  # Progress/Done of an earlier message: the upcalls
                    continue
                totals.errors += 1  # a wrong answer
                break
            sequence += 1
    except (TimeoutError, OSError, ConnectionError):
        totals.errors += 1
    finally:
        writer.close()


async def load(host: str, port: int, connections: int, duration: float, reply: str) -> dict:
    """Connect every client first, then run them all for `duration` seconds."""
    totals = Totals()
    streams = await asyncio.wait_for(
        asyncio.gather(*(asyncio.open_connection(host, port) for _ in range(connections))), CONNECT_TIMEOUT)
    began = time.perf_counter()
    await asyncio.gather(*(one_client(n, reader, writer, reply, began + duration, totals)
                           for n, (reader, writer) in enumerate(streams)))
    elapsed = time.perf_counter() - began
    lat_ms = [x * 1000 for x in totals.latencies]
    return {"replies": len(lat_ms), "seconds": elapsed, "rate": len(lat_ms) / elapsed,
            "p50_ms": percentile(lat_ms, 50), "p99_ms": percentile(lat_ms, 99),
            "callbacks": totals.callbacks, "errors": totals.errors}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--reply", choices=sorted(REPLIES), default="echo")
    args = p.parse_args()
    result = asyncio.run(load(args.host, args.port, args.connections, args.duration, REPLIES[args.reply]))
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
