"""Write synthetic captures: real Ethernet/IPv4/TCP headers around the lab's protocols.

Used by the benchmark (a 200,000-packet capture in a few seconds, no network
needed) and by tests that need what loopback rarely produces (out-of-order
and retransmitted segments, a snap length, odd link types).
"""

from __future__ import annotations

import struct
from pathlib import Path

MSS = 1448  # what Linux uses on Ethernet with TCP timestamps


def ipv4_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f">{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class CaptureWriter:
    """Write packets to a pcap (default) or pcapng file; times are seconds after `epoch`."""

    def __init__(self, path: str | Path, *, pcapng: bool = False, linktype: int = 1, snaplen: int = 262144,
                 epoch: int = 1_763_700_000):
        self.path = Path(path)
        self.epoch = epoch  # packet times are seconds after this (whole seconds since 1970)
        self.pcapng = pcapng
        self.snaplen = snaplen
        self.count = 0
        self._f = open(self.path, "wb")
        if pcapng:
            shb_body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
            self._block(0x0A0D0D0A, shb_body)
            # if_tsresol = 9 (nanoseconds), then end of options
            opts = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)
            self._block(1, struct.pack("<HHI", linktype, 0, snaplen) + opts)
        else:
            self._f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))

    def _block(self, btype: int, body: bytes) -> None:
        pad = (-len(body)) % 4
        length = 12 + len(body) + pad
        self._f.write(struct.pack("<II", btype, length) + body + b"\0" * pad + struct.pack("<I", length))

    def write(self, t: float, frame: bytes, wirelen: int | None = None) -> None:
        wirelen = len(frame) if wirelen is None else wirelen
        frame = frame[: self.snaplen]
        self.count += 1
        if self.pcapng:
            ns = self.epoch * 1_000_000_000 + round(t * 1e9)
            self._block(6, struct.pack("<IIIII", 0, ns >> 32, ns & 0xFFFFFFFF, len(frame), wirelen) + frame)
        else:
            us = self.epoch * 1_000_000 + round(t * 1e6)
            self._f.write(struct.pack("<IIII", us // 1_000_000, us % 1_000_000, len(frame), wirelen) + frame)

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def ether_ipv4_tcp(src: str, sport: int, dst: str, dport: int, seq: int, ack: int, flags: int, payload: bytes,
                   ip_id: int = 0, window: int = 512, tsval: int = 0, tsecr: int = 0) -> bytes:
    """One Ethernet frame: IPv4 + TCP with the NOP,NOP,timestamps option Linux sends."""
    options = struct.pack(">BBBBII", 1, 1, 8, 10, tsval & 0xFFFFFFFF, tsecr & 0xFFFFFFFF)
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, (5 + len(options) // 4) << 4,
                      flags, window, 0, 0) + options
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, ip_id & 0xFFFF, 0x4000, 64, 6, 0,
                     bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    ip = ip[:10] + struct.pack(">H", ipv4_checksum(ip)) + ip[12:]
    eth = b"\x02\x42\xac\x12\x00\x03\x02\x42\xac\x12\x00\x02\x08\x00"
    frame = eth + ip + tcp + payload
    if len(frame) < 60:
        frame += b"\0" * (60 - len(frame))  # Ethernet minimum frame size
    return frame


FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


class TcpFlow:
    """A TCP connection written packet by packet: handshake, data with ACKs, teardown."""

    def __init__(self, out: CaptureWriter, client: tuple[str, int], server: tuple[str, int], *,
                 rtt: float = 0.0002, isn_client: int = 1000, isn_server: int = 5000):
        self.out, self.c, self.s, self.rtt = out, client, server, rtt
        self.seq = {True: isn_client, False: isn_server}  # True: client side
        self.ip_id = {True: 1, False: 1}

    def _send(self, t: float, from_client: bool, flags: int, payload: bytes = b"", seq: int | None = None) -> None:
        src, dst = (self.c, self.s) if from_client else (self.s, self.c)
        s = self.seq[from_client] if seq is None else seq
        ack = self.seq[not from_client] if flags & ACK else 0
        self.out.write(t, ether_ipv4_tcp(src[0], src[1], dst[0], dst[1], s, ack, flags, payload,
                                         ip_id=self.ip_id[from_client], tsval=int(t * 1000)))
        self.ip_id[from_client] += 1

    def handshake(self, t: float) -> float:
        self._send(t, True, SYN)
        self.seq[True] += 1
        self._send(t + self.rtt / 2, False, SYN | ACK)
        self.seq[False] += 1
        self._send(t + self.rtt, True, ACK)
        return t + self.rtt

    def data(self, t: float, from_client: bool, payload: bytes, *, ack: bool = True) -> float:
        """Send `payload` in MSS-sized segments; the peer ACKs after the last one. Returns the end time."""
        for i in range(0, len(payload), MSS):
            chunk = payload[i:i + MSS]
            self._send(t, from_client, PSH | ACK, chunk)
            self.seq[from_client] += len(chunk)
            t += 0.000005
        if ack:
            t += self.rtt / 2
            self._send(t, not from_client, ACK)
        return t

    def segment(self, t: float, from_client: bool, payload: bytes, offset: int) -> None:
        """Write one data segment at `offset` bytes past the current sequence number (for reordering tests)."""
        self._send(t, from_client, PSH | ACK, payload, seq=self.seq[from_client] + offset)

    def advance(self, from_client: bool, nbytes: int) -> None:
        self.seq[from_client] += nbytes

    def close(self, t: float, client_first: bool = True) -> float:
        self._send(t, client_first, FIN | ACK)
        self.seq[client_first] += 1
        t += self.rtt / 2
        self._send(t, not client_first, FIN | ACK)
        self.seq[not client_first] += 1
        t += self.rtt / 2
        self._send(t, client_first, ACK)
        return t

    def close4(self, t: float) -> float:
        """The client closes first and each FIN is ACKed on its own: FIN-ACK, ACK, FIN-ACK, ACK."""
        self._send(t, True, FIN | ACK)
        self.seq[True] += 1
        t += self.rtt / 2
        self._send(t, False, ACK)
        self._send(t + 0.00001, False, FIN | ACK)
        self.seq[False] += 1
        t += self.rtt / 2
        self._send(t, True, ACK)
        return t

    def reset(self, t: float, from_client: bool) -> None:
        self._send(t, from_client, RST | ACK)


def soap_envelope(op: str, a: int, b: int) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><soap-env:Envelope xmlns:soap-env='
            f'"http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body><ns0:{op} xmlns:ns0="spyne.lab.calculator">'
            f"<ns0:a>{a}</ns0:a><ns0:b>{b}</ns0:b></ns0:{op}></soap-env:Body></soap-env:Envelope>").encode()


def soap_result(op: str, value) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><soap11env:Envelope xmlns:soap11env='
            f'"http://schemas.xmlsoap.org/soap/envelope/" xmlns:tns="spyne.lab.calculator"><soap11env:Body>'
            f"<tns:{op}Response><tns:{op}Result>{value}</tns:{op}Result></tns:{op}Response></soap11env:Body>"
            f"</soap11env:Envelope>").encode()


def soap_fault(code: str, text: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><soap11env:Envelope xmlns:soap11env='
            f'"http://schemas.xmlsoap.org/soap/envelope/"><soap11env:Body><soap11env:Fault>'
            f"<faultcode>soap11env:{code}</faultcode><faultstring>{text}</faultstring></soap11env:Fault>"
            f"</soap11env:Body></soap11env:Envelope>").encode()


def http_request(method: str, path: str, host: str, body: bytes = b"", content_type: str | None = None,
                 extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: python-requests/2.34.2\r\n" \
           f"Accept: */*\r\nConnection: keep-alive\r\n{extra}"
    if body or method in ("POST", "PUT"):
        head += f"Content-Type: {content_type or 'application/octet-stream'}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def http_response(status: int, reason: str, body: bytes, content_type: str) -> bytes:
    return (f"HTTP/1.1 {status} {reason}\r\nServer: gunicorn\r\nDate: Fri, 21 Nov 2025 05:40:00 GMT\r\n"
            f"Connection: keep-alive\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def mqtt_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_packet(ptype: int, flags: int, body: bytes) -> bytes:
    return bytes([(ptype << 4) | flags]) + mqtt_varint(len(body)) + body


def mqtt_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def mqtt_connect(client_id: str, keepalive: int = 60) -> bytes:
    return mqtt_packet(1, 0, mqtt_str("MQTT") + bytes([4, 0x02]) + struct.pack(">H", keepalive) + mqtt_str(client_id))


def mqtt_publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 1, retain: bool = False) -> bytes:
    body = mqtt_str(topic) + (struct.pack(">H", packet_id) if qos else b"") + payload
    return mqtt_packet(3, (qos << 1) | int(retain), body)


def write_lab_mix(path: str | Path, packets: int, *, pcapng: bool = True) -> int:
    """A capture of exactly `packets` packets mixing the five lab protocols on their usual hosts.

    REST keep-alive connections, SOAP calls (some faults), an MQTT publisher and
    subscriber, reqresp echo lines and upcall events, one after the other like a
    busy lab session. The last connection may be cut off, as in a real capture.
    """
    from labkit.protocols import MQTT_PORT, REQRESP_PORT, REST_PORT, SOAP_PORT, UPCALL_PORT

    out = CaptureWriter(path, pcapng=pcapng)
    t = 0.0
    eph = 32768
    n = 0
    cli, srv = "172.18.0.3", "172.18.0.2"
    try:
        while out.count < packets:
            eph = 32768 + (eph - 32768 + 1) % 28000
            kind = n % 5
            n += 1
            if kind == 0:  # REST: four calculations on one keep-alive connection
                f = TcpFlow(out, (cli, eph), (srv, REST_PORT), isn_client=n * 7919, isn_server=n * 104729)
                t = f.handshake(t)
                for i, op in enumerate(("add", "sub", "mul", "div")):
                    t = f.data(t + 0.0001, True, http_request("GET", f"/{op}?a={n}&b={i}", f"{srv}:{REST_PORT}"))
                    body = b'{"error":"Division by zero"}\n' if (op == "div" and i == 0) else \
                        b'{"result":%d.0}\n' % (n + i)
                    status = (400, "BAD REQUEST") if b"error" in body else (200, "OK")
                    t = f.data(t + 0.0008, False, http_response(*status, body, "application/json"))
                t = f.close(t + 0.0001)
            elif kind == 1:  # SOAP: one call per connection, like zeep without a session
                f = TcpFlow(out, (cli, eph), (srv, SOAP_PORT), isn_client=n * 7919, isn_server=n * 104729)
                t = f.handshake(t)
                op = ("add", "subtract", "multiply", "divide")[n % 4]
                b = 0 if n % 20 == 1 else 5
                req = http_request("POST", "/", f"{srv}:{SOAP_PORT}", soap_envelope(op, n, b),
                                   'text/xml; charset=utf-8', f'SOAPAction: "{op}"\r\n')
                t = f.data(t + 0.0001, True, req)
                if b == 0:
                    resp = http_response(500, "Internal Server Error", soap_fault("Client", "Division by zero"),
                                         "text/xml; charset=utf-8")
                else:
                    resp = http_response(200, "OK", soap_result(op, n + b), "text/xml; charset=utf-8")
                t = f.data(t + 0.002, False, resp)
                t = f.close(t + 0.0001)
            elif kind == 2:  # MQTT: publisher and subscriber sessions
                sub = TcpFlow(out, ("172.18.0.4", eph), (srv, MQTT_PORT), isn_client=n * 31, isn_server=n * 37)
                pub = TcpFlow(out, (cli, eph + 1), (srv, MQTT_PORT), isn_client=n * 41, isn_server=n * 43)
                eph += 1
                t = sub.handshake(t)
                t = sub.data(t + 0.0001, True, mqtt_connect(f"sub-{n}"))
                t = sub.data(t + 0.0001, False, mqtt_packet(2, 0, b"\0\0"))
                t = sub.data(t + 0.0001, True, mqtt_packet(8, 2, struct.pack(">H", 1) + mqtt_str("sister/#") + b"\1"))
                t = sub.data(t + 0.0001, False, mqtt_packet(9, 0, struct.pack(">H", 1) + b"\1"))
                t = pub.handshake(t)
                t = pub.data(t + 0.0001, True, mqtt_connect(f"pub-{n}"))
                t = pub.data(t + 0.0001, False, mqtt_packet(2, 0, b"\0\0"))
                for i in range(6):
                    topic = "sister/temp" if i % 2 == 0 else "sister/humidity"
                    payload = ("%.1f °C" % (20 + (n + i) % 15) if i % 2 == 0 else "%.1f %%" % (30 + i)).encode()
                    qos = i % 2
                    t = pub.data(t + 0.001, True, mqtt_publish(topic, payload, qos, i + 1), ack=not qos)
                    if qos:
                        t = pub.data(t + 0.0001, False, mqtt_packet(4, 0, struct.pack(">H", i + 1)))
                    t = sub.data(t + 0.0001, False, mqtt_publish(topic, payload, qos, i + 1), ack=not qos)
                    if qos:
                        t = sub.data(t + 0.0001, True, mqtt_packet(4, 0, struct.pack(">H", i + 1)))
                t = pub.data(t + 0.0001, True, mqtt_packet(14, 0, b""))
                t = pub.close(t + 0.0001)
                t = sub.data(t + 0.0001, True, mqtt_packet(14, 0, b""))
                t = sub.close(t + 0.0001)
            elif kind == 3:  # reqresp: three lines and their echoes
                f = TcpFlow(out, (cli, eph), (srv, REQRESP_PORT), isn_client=n * 7, isn_server=n * 11)
                t = f.handshake(t)
                for word in ("one", "two", "three", "bye"):
                    t = f.data(t + 0.0002, True, f"{word}\n".encode())
                    t = f.data(t + 0.0001, False, f"Echo: {word}\n".encode())
                t = f.close(t + 0.0001)
            else:  # upcall: replies plus events the server sends on its own
                f = TcpFlow(out, (cli, eph), (srv, UPCALL_PORT), isn_client=n * 13, isn_server=n * 17)
                t = f.handshake(t)
                for word in ("wanda", "riri"):
                    t = f.data(t + 0.0002, True, f"{word}\n".encode())
                    t = f.data(t + 0.0001, False, f"Upcall event: Processing {word}\n".encode())
                    t = f.data(t + 0.05, False, f"Upcall event: Progress {word} 50%\n".encode())
                    t = f.data(t + 0.05, False, f"Upcall event: Done {word}\n".encode())
                t = f.data(t + 0.0002, True, b"bye\n")
                t = f.close(t + 0.0001, client_first=False)
            t += 0.001
    finally:
        out.close()
    _truncate_to(path, pcapng, packets)
    return packets


def _truncate_to(path: str | Path, pcapng: bool, packets: int) -> None:
    """Cut the file after exactly `packets` packets (the last connection ends mid-way)."""
    data = Path(path).read_bytes()
    off, n = 0, 0
    if pcapng:
        while off < len(data) and n < packets:
            btype, blen = struct.unpack_from("<II", data, off)
            n += btype == 6
            off += blen
    else:
        off = 24
        while off < len(data) and n < packets:
            off += 16 + struct.unpack_from("<I", data, off + 8)[0]
            n += 1
    with open(path, "r+b") as f:
        f.truncate(off)


def write_short_http(path: str | Path, packets: int, *, pcapng: bool = True) -> int:
    """A capture of exactly `packets` packets of short REST connections, 11 packets each.

    Each connection: SYN, SYN-ACK, ACK; one `GET /add` and its ACK; the JSON answer and its
    ACK; then the four-segment close (FIN-ACK, ACK, FIN-ACK, ACK), the way a client without
    keep-alive talks to the REST server. The many-connections case the analyzer must keep
    within tshark's time and half its memory (issue 18). The last connection may be cut off.
    """
    from labkit.protocols import REST_PORT

    out = CaptureWriter(path, pcapng=pcapng)
    t = 0.0
    n = 0
    cli, srv = "172.18.0.3", "172.18.0.2"
    try:
        while out.count < packets:
            n += 1
            f = TcpFlow(out, (cli, 32768 + n % 28000), (srv, REST_PORT), isn_client=n * 7919, isn_server=n * 104729)
            t = f.handshake(t)
            t = f.data(t + 0.0001, True, http_request("GET", f"/add?a={n}&b=1", f"{srv}:{REST_PORT}"))
            t = f.data(t + 0.0008, False, http_response(200, "OK", b'{"result":%d.0}\n' % (n + 1), "application/json"))
            t = f.close4(t + 0.0001)
            t += 0.0005
    finally:
        out.close()
    _truncate_to(path, pcapng, packets)
    return packets
