"""Read a pcap or pcapng file and sort its TCP segments into connections.

A hand-tuned reader (struct.unpack_from over a memory map, no per-packet
objects) so that 200,000 packets take well under a second: the whole file is
walked once, each TCP segment lands in its connection, everything else is
only counted. Connections are handed over as they end (`on_end`), so that the
analysis can stream; pages of the map already read are given back to the
kernel, so the file's size does not count in the process's memory.

Why not a library: measured on this project's 2-core machine (issue 18), on the
200,000-packet capture of short HTTP connections (25 MB pcapng) that
`make bench-analyze` writes, CPU seconds best of 3: this reader, the whole
connection table built, 0.60 s; dpkt 1.9.8 (the fast, well-kept pure-Python
parser) 1.04 s only to iterate its pcapng.Reader, 3.82 s when each packet is
also parsed down to TCP (Ethernet, IP, TCP objects). That is 6x slower before
any analysis starts, and the other pure-Python readers (python-pcapng, scapy's
RawPcapNgReader, pypcapkit) build at least as many objects per packet. The
benchmark prints both figures again on every run, when dpkt is installed; measured
again after the second pass on the analyzer's time (best of 3, the machine busy
with other jobs): this reader 0.84 s, dpkt 1.38 s to iterate, 4.88 s to parse.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Link-layer types (https://www.tcpdump.org/linktypes.html) the reader understands.
LINK_NULL = 0
LINK_ETHERNET = 1
LINK_RAW = 101
LINK_LOOP = 108
LINK_LINUX_SLL = 113
LINK_IPV4 = 228
LINK_IPV6 = 229
LINK_LINUX_SLL2 = 276
LINK_NAMES = {
    LINK_NULL: "BSD loopback", LINK_ETHERNET: "Ethernet", LINK_RAW: "raw IP", LINK_LOOP: "OpenBSD loopback",
    LINK_LINUX_SLL: "Linux cooked (any)", LINK_IPV4: "raw IPv4", LINK_IPV6: "raw IPv6",
    LINK_LINUX_SLL2: "Linux cooked v2 (any)",
}

#: A record claiming to be bigger than this is corruption, not a packet.
MAX_RECORD_BYTES = 64 * 1024 * 1024
#: How many packets between two progress updates (a power of two: RELEASE_EVERY is its mask).
PROGRESS_EVERY = 8192
RELEASE_EVERY = PROGRESS_EVERY - 1
#: Read pages of the memory map are given back once this many bytes have been read past the last release.
RELEASE_BYTES = 16 * 1024 * 1024
PAGE_MASK = ~(mmap.PAGESIZE - 1)

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"

TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10


class CaptureError(Exception):
    """The file cannot be read as a capture at all (one clear line for the user)."""


class Direction:
    """One direction of a TCP connection: counters and the data segments seen."""

    __slots__ = ("conn", "from_a", "packets", "wire_bytes", "last_ns", "segments", "isn", "fin", "rst",
                 "truncated_segments")

    def __init__(self, conn: Connection, from_a: bool):
        self.conn = conn
        self.from_a = from_a
        self.packets = 0
        self.wire_bytes = 0
        self.last_ns = 0
        # (seq, payload, time in ns, frame number, length on the wire) of every segment that carried data
        self.segments: list = []
        self.isn: int | None = None  # sequence number of this side's SYN
        self.fin: tuple | None = None  # (time, frame) of the first FIN
        self.rst: tuple | None = None  # (time, frame) of the first RST
        self.truncated_segments = 0  # segments cut short by the capture's snap length


class Connection:
    """One TCP connection: side A is whoever sent the first packet we saw.

    Times are nanoseconds since 1970 while reading and seconds since the
    capture's first packet once `read_capture` returns.
    """

    __slots__ = ("index", "a", "b", "first_time", "first_frame", "last_time", "ab", "ba", "syn", "synack",
                 "handshake_ack", "last_ack", "family", "watch", "ended", "keys", "log")

    def __init__(self, index: int, a: tuple, b: tuple, first_ns: int, first_frame: int, family: int):
        self.index = index
        self.a = a  # (ip string, port)
        self.b = b
        self.first_time: float = first_ns  # type: ignore[assignment]
        self.first_frame = first_frame
        self.last_time = 0.0
        self.ab = Direction(self, True)
        self.ba = Direction(self, False)
        self.syn: tuple | None = None  # (time, frame, from_a)
        self.synack: tuple | None = None  # (time, frame, from_a)
        self.handshake_ack: tuple | None = None  # (time, frame)
        self.last_ack: tuple | None = None  # (time, frame, from_a): the ACK of the second FIN
        self.family = family
        self.watch = False  # True while a handshake or teardown ACK is still awaited
        self.ended = False  # its teardown is complete (last ACK or a reset), or a new connection took its ports
        self.keys: tuple = ()  # its two keys in the reader's table (one per direction)
        # every segment: (frame, time in ns, TCP flags, from A?, payload bytes); what Wireshark's Info column says
        self.log: list = []

    @property
    def packets(self) -> int:
        return self.ab.packets + self.ba.packets

    def first_data_ns(self) -> int | None:
        """When the first segment carrying data arrived (nanoseconds since 1970), or None: no message of this
        connection can end before it."""
        a, b = self.ab.segments, self.ba.segments
        if a:
            return min(a[0][2], b[0][2]) if b else a[0][2]
        return b[0][2] if b else None

    def to_seconds(self, t0: int) -> None:
        """Turn the times read (nanoseconds since 1970) into seconds since the capture's first packet `t0`."""
        self.first_time = (self.first_time - t0) / 1e9
        ab, ba = self.ab, self.ba
        self.last_time = (max(ab.last_ns, ba.last_ns) - t0) / 1e9
        # (time, frame, from A) and (time, frame): written out, not sliced, since every connection comes here
        if (e := self.syn) is not None:
            self.syn = ((e[0] - t0) / 1e9, e[1], e[2])
        if (e := self.synack) is not None:
            self.synack = ((e[0] - t0) / 1e9, e[1], e[2])
        if (e := self.handshake_ack) is not None:
            self.handshake_ack = ((e[0] - t0) / 1e9, e[1])
        if (e := self.last_ack) is not None:
            self.last_ack = ((e[0] - t0) / 1e9, e[1], e[2])
        for d in (ab, ba):
            if (e := d.fin) is not None:
                d.fin = ((e[0] - t0) / 1e9, e[1])
            if (e := d.rst) is not None:
                d.rst = ((e[0] - t0) / 1e9, e[1])


@dataclass
class CaptureRead:
    path: Path
    file_format: str  # "pcap" or "pcapng"
    link_types: list  # names of the link types present
    packets: int = 0
    wire_bytes: int = 0
    first_epoch: float | None = None  # absolute time of the first packet (seconds since 1970)
    duration: float = 0.0
    connections: list = field(default_factory=list)
    other: Counter = field(default_factory=Counter)  # what was left out: kind -> packets
    other_bytes: int = 0
    truncated: str | None = None  # why reading stopped early, if it did
    snapped: int = 0  # packets whose stored length is shorter than on the wire
    t0_ns: int = 0  # time of the first packet, nanoseconds since 1970 (segment times are in this clock)
    arp: list = field(default_factory=list)  # ArpPacket, in capture order


@dataclass
class ArpPacket:
    """One ARP request or reply: who asks for whom, who answers with which MAC address."""

    frame: int
    time: float  # seconds since the capture's first packet
    op: str  # "request", "reply" or "op <n>"
    sender_mac: str
    sender_ip: str
    target_mac: str
    target_ip: str


ARP_OPS = {1: "request", 2: "reply"}


def _mac_text(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _ip_text(b: bytes) -> str:
    if len(b) == 4:
        return f"{b[0]}.{b[1]}.{b[2]}.{b[3]}"
    import ipaddress

    return str(ipaddress.IPv6Address(b))


_TCP_HEAD = struct.Struct(">HHIIH")
_IP_PROTOS = {1: "ICMP", 17: "UDP", 58: "ICMPv6", 2: "IGMP", 132: "SCTP", 47: "GRE", 50: "ESP"}
_ETHERTYPES = {0x0806: "ARP", 0x88CC: "LLDP", 0x8035: "RARP"}
# Fast path: link header, then IPv4 without options, then TCP. Fields: ethertype, version+IHL, total length,
# flags+fragment offset, protocol, the 12 bytes src ip + dst ip + src port + dst port, seq, ack, offset+flags.
_FAST = {
    LINK_ETHERNET: (14, struct.Struct(">12xHBxH2xHxB2x12sIIH")),
    LINK_LINUX_SLL: (16, struct.Struct(">14xHBxH2xHxB2x12sIIH")),
    LINK_LINUX_SLL2: (20, struct.Struct(">H18xBxH2xHxB2x12sIIH")),
}


class _Table:
    """The connection table and the per-packet work that does not fit the fast path.

    `on_end(conn)`, if given, is called once a connection's teardown is complete (the ACK of
    the second FIN, or a reset) or a new connection took over its ports: the streaming
    analysis decodes it then (capture.py only reads; analysis.py decides when to let go).
    """

    def __init__(self, result: CaptureRead, on_end: Callable[[Connection], None] | None = None):
        self.r = result
        self.conns: dict = {}  # key bytes (src ip, dst ip, src port, dst port) -> Direction
        self.live: dict = {}  # index -> Connection, every connection not yet handed over (in order of index)
        self.count = 0  # connections seen
        self.t0_ns: int | None = None
        self.last_ns: int | None = None  # time of the latest packet read
        self.names: dict = {}  # address bytes -> text, each formatted once
        self.on_end = on_end
        self.finished_wire_bytes = 0  # wire bytes of the connections handed over and forgotten

    def forget(self, conn: Connection) -> None:
        """Drop a connection from the table (the streaming analysis has decoded it)."""
        self.live.pop(conn.index, None)
        conns, ab, ba = self.conns, conn.ab, conn.ba
        key_ab, key_ba = conn.keys
        if conns.get(key_ab) is ab:  # not if a new connection has taken its ports
            del conns[key_ab]
        if conns.get(key_ba) is ba:
            del conns[key_ba]
        self.finished_wire_bytes += ab.wire_bytes + ba.wire_bytes
        ab.conn = ba.conn = None  # no reference cycle left: it is freed as soon as it is dropped

    def new(self, key: bytes, ts: int, frame: int) -> Direction:
        """A new connection whose first packet has `key`."""
        alen = (len(key) - 4) // 2
        src, dst = key[:alen], key[alen:2 * alen]
        sport, dport = struct.unpack_from(">HH", key, 2 * alen)
        names = self.names
        a = names.get(src) or names.setdefault(src, _ip_text(src))
        b = names.get(dst) or names.setdefault(dst, _ip_text(dst))
        self.count += 1
        conn = Connection(self.count, (a, sport), (b, dport), ts, frame, 4 if alen == 4 else 6)
        self.live[conn.index] = conn
        back = dst + src + key[2 * alen + 2:] + key[2 * alen:2 * alen + 2]
        old = self.conns.get(key)
        conn.keys = (key, back)
        self.conns[key] = conn.ab
        self.conns[back] = conn.ba
        if old is not None and not old.conn.ended:  # its ports are taken over: it will see no more packets
            old.conn.ended = True
            if self.on_end is not None:
                self.on_end(old.conn)
        return conn.ab

    def general(self, ts: int, link: int, buf, off: int, caplen: int, wirelen: int, frame: int) -> None:
        """Any packet the fast path declined: other link types, IPv6, IP options, VLANs, non-TCP."""
        end = off + caplen
        if link == LINK_ETHERNET:
            if caplen < 14:
                return self.other("short frame", wirelen)
            etype = (buf[off + 12] << 8) | buf[off + 13]
            p = off + 14
            while etype in (0x8100, 0x88A8) and p + 4 <= end:  # VLAN tags
                etype = (buf[p + 2] << 8) | buf[p + 3]
                p += 4
        elif link == LINK_LINUX_SLL2:
            etype = (buf[off] << 8) | buf[off + 1] if caplen >= 20 else 0
            p = off + 20
        elif link == LINK_LINUX_SLL:
            etype = (buf[off + 14] << 8) | buf[off + 15] if caplen >= 16 else 0
            p = off + 16
        elif link in (LINK_RAW, LINK_IPV4, LINK_IPV6):
            v = buf[off] >> 4 if caplen else 0
            etype = 0x0800 if v == 4 else 0x86DD if v == 6 else 0
            p = off
        elif link in (LINK_NULL, LINK_LOOP):
            fam = struct.unpack_from("<I" if link == LINK_NULL else ">I", buf, off)[0] if caplen >= 4 else 0
            if link == LINK_NULL and fam > 0xFFFF:
                fam = struct.unpack_from(">I", buf, off)[0]
            etype = 0x0800 if fam == 2 else 0x86DD if fam in (10, 24, 28, 30) else 0
            p = off + 4
        else:
            return self.other(f"link type {link}", wirelen)
        if etype == 0x0800:
            if p + 20 > end:
                return self.other("short IPv4", wirelen)
            ihl = (buf[p] & 0x0F) * 4
            total = (buf[p + 2] << 8) | buf[p + 3]
            proto = buf[p + 9]
            if proto != 6:
                return self.other(_IP_PROTOS.get(proto, f"IP protocol {proto}"), wirelen)
            if ((buf[p + 6] & 0x3F) << 8) | buf[p + 7]:  # MF flag or a fragment offset
                return self.other("IPv4 fragment", wirelen)
            addrs = bytes(buf[p + 12:p + 20])
            tcp = p + ihl
            ip_end = p + total if total else end
        elif etype == 0x86DD:
            if p + 40 > end:
                return self.other("short IPv6", wirelen)
            nxt = buf[p + 6]
            ip_end = p + 40 + ((buf[p + 4] << 8) | buf[p + 5])
            addrs = bytes(buf[p + 8:p + 40])
            tcp = p + 40
            while nxt in (0, 43, 60) and tcp + 8 <= end:  # hop-by-hop, routing, destination options
                nxt = buf[tcp]
                tcp += (buf[tcp + 1] + 1) * 8
            if nxt != 6:
                return self.other(_IP_PROTOS.get(nxt, f"IPv6 next header {nxt}"), wirelen)
        else:
            if etype == 0x0806 and p + 28 <= end and buf[p + 4] == 6 and buf[p + 5] == 4:  # ARP for IPv4 on Ethernet
                op = (buf[p + 6] << 8) | buf[p + 7]
                self.r.arp.append(ArpPacket(frame, ts, ARP_OPS.get(op, f"op {op}"), _mac_text(buf[p + 8:p + 14]),
                                            _ip_text(bytes(buf[p + 14:p + 18])), _mac_text(buf[p + 18:p + 24]),
                                            _ip_text(bytes(buf[p + 24:p + 28]))))
            return self.other(_ETHERTYPES.get(etype, f"ethertype 0x{etype:04x}"), wirelen)
        if tcp + 20 > end:
            return self.other("short TCP", wirelen)
        sport, dport, seq, _ack, hlf = _TCP_HEAD.unpack_from(buf, tcp)
        key = addrs + bytes(buf[tcp:tcp + 4])
        self.tcp(key, ts, frame, wirelen, seq, hlf, buf, tcp + ((hlf >> 12) << 2), ip_end, end)

    def tcp(self, key: bytes, ts: int, frame: int, wirelen: int, seq: int, hlf: int, buf, data: int, ip_end: int,
            end: int) -> None:
        """The slow path's TCP bookkeeping (the fast path in _scan does the same inline)."""
        d = self.conns.get(key)
        flags = hlf & 0x3F
        if d is None or (flags & 0x12 == TCP_SYN and d.isn is not None and d.isn != seq):  # port reuse
            d = self.new(key, ts, frame)
        d.packets += 1
        d.wire_bytes += wirelen
        d.last_ns = ts
        data_len = ip_end - data
        d.conn.log.append((frame, ts, hlf & 0xFF, d.from_a, max(data_len, 0)))
        if data_len > 0:
            if ip_end > end:
                self.r.snapped += 1
                d.truncated_segments += 1
            d.segments.append((seq, buf[data:min(ip_end, end)], ts, frame, data_len))
        if (flags & 7 or d.conn.watch) and control(d, flags, seq, ts, frame, data_len) and self.on_end is not None:
            self.on_end(d.conn)

    def other(self, kind: str, wirelen: int) -> None:
        self.r.other[kind] += 1
        self.r.other_bytes += wirelen


def control(d: Direction, flags: int, seq: int, t: int, frame: int, data_len: int) -> bool:
    """Handshake and teardown bookkeeping; called for SYN/FIN/RST and while an ACK is awaited.

    True when this segment ended the connection (the ACK of the second FIN, or the first reset).
    """
    conn = d.conn
    from_a = d.from_a
    if flags & TCP_SYN:
        if d.isn is None:
            d.isn = seq
        if flags & TCP_ACK:
            if conn.synack is None:
                conn.synack = (t, frame, from_a)
        elif conn.syn is None:
            conn.syn = (t, frame, from_a)
    elif flags & TCP_RST:
        if d.rst is None:
            d.rst = (t, frame)
    elif flags & TCP_ACK:
        if conn.handshake_ack is None and conn.synack is not None and conn.synack[2] != from_a:
            conn.handshake_ack = (t, frame)
        if flags & TCP_FIN:
            if d.fin is None:
                d.fin = (t, frame)
        elif data_len == 0 and conn.last_ack is None:
            other = conn.ba if from_a else conn.ab
            # the last ACK answers the second FIN, so it comes from the side that closed first
            if other.fin is not None and d.fin is not None and d.fin[1] < other.fin[1]:
                conn.last_ack = (t, frame, from_a)
    elif flags & TCP_FIN and d.fin is None:
        d.fin = (t, frame)
    conn.watch = ((conn.synack is not None and conn.handshake_ack is None)
                  or ((conn.ab.fin is not None or conn.ba.fin is not None) and conn.last_ack is None
                      and conn.ab.rst is None and conn.ba.rst is None))
    if not conn.ended and (conn.last_ack is not None or conn.ab.rst is not None or conn.ba.rst is not None):
        conn.ended = True
        return True
    return False


def read_capture(path: str | os.PathLike, progress: Callable[[int, int], None] | None = None, *,
                 on_end: Callable[[Connection], None] | None = None,
                 on_table: Callable[[_Table], None] | None = None) -> CaptureRead:
    """Read `path` (pcap or pcapng); raise CaptureError when it is not a capture.

    `progress(done_bytes, total_bytes)` is called every PROGRESS_EVERY packets.
    A capture that ends in the middle of a packet is read up to there and
    `truncated` says so.

    Streaming: `on_end(conn)` is called as each connection ends (see _Table) and `on_table(table)`
    once, before the first packet, so that the caller can `forget` connections it has decoded;
    `connections` then lists only those still in the table when the file ends.
    """
    p = Path(path)
    if not p.exists():
        raise CaptureError(f"{p}: no such file")
    if p.is_dir():
        raise CaptureError(f"{p} is a directory, not a capture file")
    try:
        f = open(p, "rb")
    except OSError as e:
        raise CaptureError(f"cannot open {p}: {e.strerror}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise CaptureError(f"{p} is empty: not a pcap or pcapng capture")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            head = bytes(buf[:4])
            if head in PCAP_MAGICS:
                result = CaptureRead(p, "pcap", [])
                if size < 24:
                    raise CaptureError(f"{p} is truncated: it starts like a pcap capture but its file header is "
                                      f"incomplete ({size} of 24 bytes)")
            elif head == PCAPNG_SHB:
                result = CaptureRead(p, "pcapng", [])
            else:
                raise CaptureError(f"{p} is not a pcap or pcapng capture (it starts with bytes "
                                   f"{bytes(buf[:8]).hex(' ')}); record one with tcpdump -w or dumpcap")
            table = _Table(result, on_end)
            if on_table is not None:
                on_table(table)
            _scan(buf, size, result, table, progress)
    _finish(table, result)
    return result


def _scan(buf, size: int, result: CaptureRead, table: _Table, progress) -> None:
    """Walk every packet once. TCP over plain IPv4 takes the inlined fast path, the rest `general`.

    pcap records and pcapng Enhanced Packet Blocks are parsed inline too; the other pcapng
    blocks (section and interface descriptions, simple packets) go through _PcapngBlocks.
    """
    get = table.conns.get
    new = table.new
    on_end = table.on_end
    general = table.general
    pcapng = result.file_format == "pcapng"
    if pcapng:
        blocks = _PcapngBlocks(buf, size, result)
        head = blocks.head
        off = 0
    else:
        endian, ts_mult = PCAP_MAGICS[bytes(buf[:4])]
        linktype = struct.unpack_from(endian + "I", buf, 20)[0] & 0x0FFFFFFF
        result.link_types.append(LINK_NAMES.get(linktype, f"link type {linktype}"))
        link, l2, fast = _link(linktype)
        record = struct.Struct(endian + "IIII").unpack_from
        off = 24
    n = 0
    t0 = last = None
    # Pages of the file already read are handed back: a memory map's pages count as the process's own
    # memory while mapped (tshark, reading with read(), holds none), and nothing refers to them any more
    # (segments are copied out).
    release = getattr(buf, "madvise", None) if hasattr(mmap, "MADV_DONTNEED") else None
    released = 0
    current = -1  # pcapng: the interface whose link type and time unit are loaded
    while off < size:
        if pcapng:
            btype = blen = caplen = 0
            if off + 28 <= size:
                btype, blen, iface, ts_hi, ts_lo, caplen, wirelen = head(buf, off)
            if btype == 6 and 32 <= blen <= size - off and caplen <= blen - 32:  # a whole Enhanced Packet Block
                if iface != current:
                    (link, l2, fast), num, den = blocks.interface(iface)
                    current = iface
                ts = ((ts_hi << 32) | ts_lo) * num // den
                p = off + 28
                off += blen
            else:
                step = blocks.block(off)
                if step is None:
                    break
                off, packet = step
                head, current = blocks.head, -1
                if packet is None:
                    continue
                ts, (link, l2, fast), p, caplen, wirelen = packet
                if ts is None:  # a Simple Packet Block has no time: it gets the previous packet's
                    ts = last if last is not None else 0
        else:
            if off + 16 > size:
                result.truncated = (f"the capture ends inside the header of packet {n + 1} "
                                    f"({size - off} of 16 bytes); the {n} packets before it were read")
                break
            sec, frac, caplen, wirelen = record(buf, off)
            p = off + 16
            if caplen > MAX_RECORD_BYTES:
                result.truncated = f"packet {n + 1} claims {caplen} bytes: the file is damaged after {n} packets"
                break
            if p + caplen > size:
                result.truncated = (f"the capture ends inside packet {n + 1} ({size - p} of {caplen} bytes); "
                                    f"the {n} packets before it were read")
                break
            off = p + caplen
            ts = sec * 1_000_000_000 + frac * ts_mult
        n += 1
        last = ts
        if t0 is None:
            t0 = table.t0_ns = ts
        if not n & RELEASE_EVERY:
            if progress is not None:
                progress(off, size)
            if release is not None and off - released > RELEASE_BYTES:
                release(mmap.MADV_DONTNEED, released, (off - released) & PAGE_MASK)
                released += (off - released) & PAGE_MASK
        # --- the fast path: TCP in IPv4 without options (kept in step with _Table.general and _Table.tcp)
        if fast is not None and caplen >= l2 + 34:
            etype, verihl, total, ff, proto, key, seq, _ack, hlf = fast(buf, p)
            if etype == 0x0800 and verihl == 0x45 and proto == 6 and not ff & 0x3FFF and total:
                d = get(key)
                if d is None or (hlf & 0x12 == 2 and d.isn is not None and d.isn != seq):  # 2: SYN without ACK
                    d = new(key, ts, n)
                d.packets += 1
                d.wire_bytes += wirelen
                d.last_ns = ts
                conn = d.conn
                data = p + l2 + 20 + ((hlf >> 12) << 2)
                ip_end = p + l2 + total
                if ip_end > data:
                    conn.log.append((n, ts, hlf & 0xFF, d.from_a, ip_end - data))
                    end = p + caplen
                    if ip_end > end:
                        result.snapped += 1
                        d.truncated_segments += 1
                        d.segments.append((seq, buf[data:end], ts, n, ip_end - data))
                    else:
                        d.segments.append((seq, buf[data:ip_end], ts, n, ip_end - data))
                else:
                    conn.log.append((n, ts, hlf & 0xFF, d.from_a, 0))
                if (hlf & 7 or conn.watch) and control(d, hlf & 0x3F, seq, ts, n, ip_end - data) and on_end:
                    on_end(conn)
                continue
        general(ts, link, buf, p, caplen, wirelen, n)
    result.packets = n
    result.connections = list(table.live.values())
    result.wire_bytes = result.other_bytes + table.finished_wire_bytes + sum(
        c.ab.wire_bytes + c.ba.wire_bytes for c in result.connections)
    table.t0_ns = t0
    table.last_ns = last


def _link(link: int) -> tuple:
    """(link type, link header length, fast-path unpacker or None) for a link type."""
    fast = _FAST.get(link)
    return (link, fast[0], fast[1].unpack_from) if fast else (link, 0, None)


class _PcapngBlocks:
    """The pcapng blocks other than a plain Enhanced Packet Block: sections, interfaces, other packets."""

    def __init__(self, buf, size: int, result: CaptureRead):
        self.buf, self.size, self.result = buf, size, result
        self.interfaces: list = []  # (link tuple, ns per unit numerator, denominator)
        self.endian = "<"
        self.head = struct.Struct("<IIIIIII").unpack_from  # block type, length, then an EPB's first fields

    def interface(self, index: int) -> tuple:
        try:
            return self.interfaces[index]
        except IndexError:  # a packet of an interface never described: count it, decode nothing
            return _link(-1), 1000, 1

    def block(self, off: int):
        """(offset of the next block, packet or None) for the block at `off`; None when reading must stop."""
        buf, size, result = self.buf, self.size, self.result
        if off + 12 > size:
            if off == 0:
                raise CaptureError(f"{result.path} is truncated: it starts like a pcapng capture but its section "
                                   f"header is incomplete ({size} bytes)")
            result.truncated = f"the capture ends inside a block header ({size - off} bytes left over)"
            return None
        if buf[off:off + 4] == PCAPNG_SHB:
            bom = buf[off + 8:off + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                self.endian = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                self.endian = ">"
            else:
                raise CaptureError(f"{result.path} is not a valid pcapng capture (bad byte-order magic)")
            self.head = struct.Struct(self.endian + "IIIIIII").unpack_from
            self.interfaces = []  # a new section starts a new list of interfaces
            btype = 0x0A0D0D0A
        else:
            btype = struct.unpack_from(self.endian + "I", buf, off)[0]
        blen = struct.unpack_from(self.endian + "I", buf, off + 4)[0]
        if blen < 12 or blen % 4 or blen > MAX_RECORD_BYTES:
            if off == 0:
                raise CaptureError(f"{result.path} is not a valid pcapng capture (its first block is damaged)")
            result.truncated = f"a block at byte {off} has an impossible length ({blen}): the file is damaged there"
            return None
        if off + blen > size:
            if off == 0:
                raise CaptureError(f"{result.path} is truncated: it starts like a pcapng capture but its section "
                                   f"header is incomplete ({size} bytes)")
            what = "a packet" if btype in (6, 3, 2) else "a block"
            result.truncated = (f"the capture ends inside {what} ({size - off} of {blen} bytes); "
                                "the packets before it were read")
            return None
        packet = None
        e = self.endian
        if btype == 1:  # Interface Description Block
            linktype = struct.unpack_from(e + "H", buf, off + 8)[0]
            num, den = _if_tsresol(buf, off, blen, e)
            self.interfaces.append((_link(linktype), num, den))
            name = LINK_NAMES.get(linktype, f"link type {linktype}")
            if name not in result.link_types:
                result.link_types.append(name)
        elif btype == 6 and blen >= 32:  # an Enhanced Packet Block whose captured length overflows its block
            iface, ts_hi, ts_lo, caplen, wirelen = struct.unpack_from(e + "IIIII", buf, off + 8)
            link, num, den = self.interface(iface)
            packet = (((ts_hi << 32) | ts_lo) * num // den, link, off + 28, min(caplen, blen - 32), wirelen)
        elif btype == 3 and blen >= 16:  # Simple Packet Block: no timestamp of its own
            wirelen = struct.unpack_from(e + "I", buf, off + 8)[0]
            link = self.interface(0)[0]
            packet = (None, link, off + 12, min(wirelen, blen - 16), wirelen)  # the caller uses the last time
        elif btype == 2 and blen >= 32:  # obsolete Packet Block
            iface, _drops, ts_hi, ts_lo, caplen, wirelen = struct.unpack_from(e + "HHIIII", buf, off + 8)
            link, num, den = self.interface(iface)
            packet = (((ts_hi << 32) | ts_lo) * num // den, link, off + 28, min(caplen, blen - 32), wirelen)
        return off + blen, packet


def _if_tsresol(buf, off: int, blen: int, endian: str) -> tuple[int, int]:
    """(numerator, denominator) turning this interface's timestamp units into nanoseconds."""
    p = off + 16
    end = off + blen - 4
    while p + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", buf, p)
        if code == 0:
            break
        if code == 9 and length >= 1:  # if_tsresol
            v = buf[p + 4]
            if v & 0x80:
                return 1_000_000_000, 1 << (v & 0x7F)
            exp = v
            return (10 ** (9 - exp), 1) if exp <= 9 else (1, 10 ** (exp - 9))
        p += 4 + ((length + 3) & ~3)
    return 1000, 1  # default: microseconds


def _finish(table: _Table, result: CaptureRead) -> None:
    """Turn nanoseconds since 1970 into seconds since the first packet."""
    t0 = table.t0_ns
    if t0 is None:
        return
    result.first_epoch = t0 / 1e9
    result.duration = (table.last_ns - t0) / 1e9
    result.t0_ns = t0
    for a in result.arp:
        a.time = (a.time - t0) / 1e9
    for c in result.connections:
        c.to_seconds(t0)

