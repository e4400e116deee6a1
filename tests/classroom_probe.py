"""A test's own raw MQTT-over-TLS and TCP client, run as a program on a student's namespace host.

tests/test_classroom.py runs it with `ip netns exec <student> python tests/classroom_probe.py ...` to do
what no ordinary client does on purpose: hold many sessions, never acknowledge, stay silent.
Standard library only; MQTT 3.1.1 packets written by hand (OASIS spec, section 3).

    hold   --count N  ...   open N sessions; "ok i" or "refused i: why"; after stdin closes, "alive K" (PINGRESPs)
    noack  --topic T  ...   subscribe at QoS 1 and never PUBACK: "received N" once the broker stops sending
    idle   [--tls]    ...   connect and say nothing: "closed after S s" or "still open after S s"
"""

from __future__ import annotations

import argparse
import socket
import ssl
import struct
import sys
import time


def string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def packet(first: int, body: bytes) -> bytes:
    """Fixed header (type and flags, remaining length as MQTT's variable-length integer), then body."""
    length, encoded = len(body), b""
    while True:
        byte, length = length % 128, length // 128
        encoded += bytes([byte | (0x80 if length else 0)])
        if not length:
            return bytes([first]) + encoded + body


def read_packet(sock) -> tuple[int, bytes] | None:
    """(first byte, body) of the next packet, or None once the connection is closed."""
    head = sock.recv(1)
    if not head:
        return None
    length, shift = 0, 0
    while True:
        b = sock.recv(1)
        if not b:
            return None
        length |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            break
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            return None
        body += chunk
    return head[0], body


def connect(args, client_id: str, timeout: float = 10.0):
    """A TLS connection that has sent CONNECT (user, password, clean session) and got CONNACK 0."""
    raw = socket.create_connection((args.host, args.port), timeout=timeout)
    ctx = ssl.create_default_context(cafile=args.cafile)
    sock = ctx.wrap_socket(raw, server_hostname=args.host)
    body = string("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 60) + string(client_id) \
        + string(args.user) + string(args.password)
    sock.sendall(packet(0x10, body))
    answer = read_packet(sock)
    if answer is None:
        raise ConnectionError("closed before CONNACK")
    if answer[0] != 0x20 or answer[1][1] != 0:
        raise ConnectionError(f"CONNACK {answer[1].hex()}")
    return sock


def hold(args) -> int:
    held = []
    for i in range(1, args.count + 1):
        try:
            held.append(connect(args, f"{args.user}-hold-{i}"))
            print(f"ok {i}", flush=True)
        except (OSError, ConnectionError) as e:
            print(f"refused {i}: {e}", flush=True)
    print("holding", flush=True)
    sys.stdin.read()  # until the test closes stdin
    alive = 0
    for sock in held:
        try:
            sock.sendall(b"\xc0\x00")  # PINGREQ
            alive += read_packet(sock) == (0xD0, b"")
        except OSError:
            pass
    print(f"alive {alive}", flush=True)
    return 0


def noack(args) -> int:
    sock = connect(args, f"{args.user}-noack")
    sock.sendall(packet(0x82, struct.pack("!H", 1) + string(args.topic) + b"\x01"))  # SUBSCRIBE, QoS 1
    first, _ = read_packet(sock)
    assert first == 0x90, f"expected SUBACK, got {first:#x}"
    print("subscribed", flush=True)
    received = 0
    sock.settimeout(args.quiet)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            got = read_packet(sock)
        except TimeoutError:
            if received:
                break
            continue
        if got is None:
            break
        received += got[0] >> 4 == 3  # PUBLISH; never answered with PUBACK
    print(f"received {received}", flush=True)
    return 0


def idle(args) -> int:
    started = time.monotonic()
    sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
    if args.tls:
        sock = ssl.create_default_context(cafile=args.cafile).wrap_socket(sock, server_hostname=args.host)
    print("connected", flush=True)
    try:
        closed = sock.recv(1) == b""
    except TimeoutError:
        closed = False
    except OSError:
        closed = True  # reset
    seconds = time.monotonic() - started
    print(f"closed after {seconds:.1f} s" if closed else f"still open after {seconds:.1f} s", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["hold", "noack", "idle"])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cafile")
    ap.add_argument("--user", default="")
    ap.add_argument("--password", default="")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--topic", default="kelas/#")
    ap.add_argument("--quiet", type=float, default=1.5, help="seconds without a packet that end noack")
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--tls", action="store_true")
    args = ap.parse_args()
    return {"hold": hold, "noack": noack, "idle": idle}[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
