"""Container healthcheck: exit 0 once something listens on a TCP port in this network namespace.

Compose runs `python -m labkit.health --port N` inside a server's container, so
clients start only after their server accepts connections. It reads the kernel's
socket table (/proc/net/tcp, tcp6) instead of connecting: a probe connection
would appear in the server's log and in captures every few seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from labkit import cli

#: Socket tables of the current network namespace; `st` 0A is TCP_LISTEN.
SOCKET_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
TCP_LISTEN = "0A"


def listening_ports(tables=SOCKET_TABLES) -> set[int]:
    """Every TCP port with a listening socket in this network namespace."""
    ports: set[int] = set()
    for table in tables:
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:  # no IPv6 in this namespace, or no /proc
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[3] == TCP_LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True, help="TCP port that must be listening")
    args = ap.parse_args()
    if args.port in listening_ports():
        return 0
    print(f"nothing listens on TCP port {args.port} yet")
    return 1


if __name__ == "__main__":
    cli.run(main)
