"""Slow clients do not take the HTTP servers down (REST and SOAP, each run as `python server.py`).

100 clients send half a request line, then the rest of it, then a header line every second, and never end
the head. Meanwhile a good client is answered within 2 s, and the server drops every slow client once the
header timeout of its gunicorn.conf.py (HEADER_TIMEOUT_SECONDS, gunicorn's `keepalive`) has passed, without
answering it.
"""

from __future__ import annotations

import select
import socket
import sys
import threading
import time

import pytest
import requests
from helpers import REST_READY, SOAP_READY, script_constant

from labkit.procs import REPO

#: folder -> (ready line, a GET the server answers 200)
SERVERS = {"rest": (REST_READY, "/add?a=1&b=2"), "soap": (SOAP_READY, "/?wsdl")}
SLOW_CLIENTS = 100
#: The issue's bound for the good client's answer while the slow clients trickle.
GOOD_CLIENT_SECONDS = 2.0


def trickle(clients: list[socket.socket], request_line: bytes, seconds: float) -> dict[socket.socket, float]:
    """Each second, the next piece of each open client's request head; returns when each was dropped (seconds
    from now), until all are or `seconds` have passed. A client that receives any byte fails the test."""
    started = time.monotonic()
    pieces = [request_line[len(request_line) // 2:]] + [f"X-Trickle-{n}: {n}\r\n".encode() for n in range(1, 60)]
    dropped: dict[socket.socket, float] = {}
    for piece in pieces:
        tick = time.monotonic() + 1.0
        while (left := tick - time.monotonic()) > 0 and len(dropped) < len(clients):
            readable, _, _ = select.select([c for c in clients if c not in dropped], [], [], left)
            for client in readable:
                try:
                    data = client.recv(4096)
                except ConnectionResetError:
                    data = b""
                assert data == b"", f"a slow client got an answer: {data[:200]!r}"
                dropped[client] = time.monotonic() - started
        if len(dropped) == len(clients) or time.monotonic() - started > seconds:
            return dropped
        for client in clients:
            if client not in dropped:
                try:
                    client.sendall(piece)
                except OSError:
                    dropped[client] = time.monotonic() - started
    return dropped


@pytest.mark.parametrize("folder", sorted(SERVERS))
def test_100_slow_clients_do_not_stall_a_good_one_and_are_dropped_after_the_header_timeout(spawn, port, folder):
    ready, path = SERVERS[folder]
    header_timeout = script_constant(REPO / folder / "gunicorn.conf.py", "HEADER_TIMEOUT_SECONDS")
    server = spawn([sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(port)], cwd=str(REPO / folder))
    server.wait_for(ready, timeout=30)
    request_line = f"GET {path} HTTP/1.1\r\n".encode()
    slow = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(SLOW_CLIENTS)]
    good: dict[str, object] = {}

    def good_client() -> None:
        time.sleep(1.5)  # the slow clients are well into their request heads by now
        started = time.monotonic()
        try:
            good["status"] = requests.get(f"http://127.0.0.1:{port}{path}", timeout=GOOD_CLIENT_SECONDS).status_code
        except requests.RequestException as e:
            good["status"] = repr(e)
        good["seconds"] = time.monotonic() - started

    try:
        for client in slow:
            client.sendall(request_line[:len(request_line) // 2])
        thread = threading.Thread(target=good_client)
        thread.start()
        dropped = trickle(slow, request_line, seconds=header_timeout + 5)
        thread.join(timeout=GOOD_CLIENT_SECONDS + 5)
    finally:
        for client in slow:
            client.close()
    assert good["status"] == 200, f"the good client: {good}\n{server.output}"
    assert good["seconds"] < GOOD_CLIENT_SECONDS
    assert len(dropped) == SLOW_CLIENTS, f"{SLOW_CLIENTS - len(dropped)} slow clients still connected"
    earliest, latest = min(dropped.values()), max(dropped.values())
    assert earliest >= header_timeout - 1, f"dropped after {earliest:.1f} s, before the header timeout"
    assert latest <= header_timeout + 3, f"dropped after {latest:.1f} s"
    assert "Traceback" not in server.output
