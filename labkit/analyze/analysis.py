"""From a capture to an analysis: conversations, who is client or server, messages, timing, bytes.

Each TCP connection is reassembled and its protocol recognised from what it
carries (an HTTP request line, an MQTT CONNECT, the lab's text lines), the way
Wireshark's heuristic dissectors work; the lab's ports are only a hint when
the content says nothing (a connection that carried no data).
"""

from __future__ import annotations

import gc
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter

from labkit.protocols import PROTOCOLS, REST_HOST_PORT

from . import decode_http, decode_lines, decode_mqtt
from .capture import CaptureRead, Connection, read_capture
from .model import Message
from .streams import Stream, reassemble

#: What each lab port suggests when a connection's content does not say (no data, or a capture that
#: started in the middle of a connection).
PORT_HINTS = {p.port: {"http": "HTTP", "mqtt": "MQTT", "lineproto": "LINE"}[p.wire] for p in PROTOCOLS.values()}
PORT_HINTS[REST_HOST_PORT] = "HTTP"
LABELS = {"HTTP": "HTTP", "SOAP": "SOAP over HTTP", "MQTT": "MQTT", "LINE": "line protocol"}
SERVER_ROLE = {"HTTP": "server", "SOAP": "server", "MQTT": "broker", "LINE": "server"}
#: TCP flag bits in the order Wireshark lists them ("[FIN, PSH, ACK]"); joined with "-": "FIN-PSH-ACK".
TCP_FLAGS = ((0x01, "FIN"), (0x02, "SYN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"), (0x20, "URG"),
             (0x40, "ECE"), (0x80, "CWR"))


def _flag_name(bits: int) -> str:
    return "-".join(name for bit, name in TCP_FLAGS if bits & bit) or "none"


_FLAG_NAMES = [_flag_name(bits) for bits in range(256)]  # named once: a capture has a segment per packet


def flag_name(bits: int) -> str:
    """SYN, SYN-ACK, ACK, PSH-ACK, FIN-ACK, RST, RST-ACK ...: the flags of one segment."""
    return _FLAG_NAMES[bits & 0xFF]


@dataclass
class Conversation:
    """One TCP connection seen from the application: client, server, protocol, messages."""

    conn: Connection
    client: tuple  # (ip, port)
    server: tuple
    client_is_a: bool
    protocol: str | None  # "HTTP", "SOAP", "MQTT", "LINE" or None (not recognised)
    detected_by: str  # "content" or "port" (the lab port, when the content said nothing)
    cs: Stream
    sc: Stream
    messages: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    client_name: str = ""  # MQTT client id, when the connection carried one
    client_sides: tuple = ()  # MQTT: ("publisher",), ("subscriber",) or both
    _memo: dict = field(default_factory=dict, repr=False)
    index: int = 0  # the connection's number, in order of its first packet

    def __post_init__(self) -> None:
        self.index = self.conn.index

    @property
    def label(self) -> str:
        return LABELS.get(self.protocol or "", "unrecognised")

    def direction(self, from_client: bool):
        c = self.conn
        return (c.ab if self.client_is_a else c.ba) if from_client else (c.ba if self.client_is_a else c.ab)

    @property
    def packets(self) -> tuple[int, int]:
        return self.direction(True).packets, self.direction(False).packets

    @property
    def wire_bytes(self) -> tuple[int, int]:
        return self.direction(True).wire_bytes, self.direction(False).wire_bytes

    @property
    def payload_bytes(self) -> tuple[int, int]:
        return len(self.cs), len(self.sc)

    @property
    def duration(self) -> float:
        return self.conn.last_time - self.conn.first_time

    def segments(self) -> list[dict]:
        """Every TCP segment of the connection: frame, time, who sent it, its flags and payload bytes."""
        if "segments" not in self._memo:
            t0, names = self._memo.get("t0_ns", 0), _FLAG_NAMES
            sender = {self.client_is_a: "client", not self.client_is_a: "server"}
            self._memo["segments"] = [
                {"frame": frame, "time": (t - t0) / 1e9, "from": sender[from_a], "flags": names[bits], "len": size}
                for frame, t, bits, from_a, size in self.conn.log]
        return self._memo["segments"]

    def flags_of(self, frame: int) -> str:
        """The flags of the segment in `frame` ("" if it is not one of this connection's)."""
        if "flags" not in self._memo:
            self._memo["flags"] = {frame: bits for frame, _t, bits, _a, _n in self.conn.log}
        bits = self._memo["flags"].get(frame)
        return "" if bits is None else flag_name(bits)

    def closed_first(self) -> str | None:
        """Who ended the connection first (FIN or RST): "client", the server's role, or None (still open)."""
        td = self.teardown()
        who = td.get("initiator") or td.get("by")
        if who is None:
            return None
        return "client" if who == "client" else SERVER_ROLE.get(self.protocol or "", "server")

    def handshake(self) -> dict | None:
        """SYN, SYN-ACK and ACK: when, in which frames, how long (None if the capture started later)."""
        if "handshake" not in self._memo:
            self._memo["handshake"] = self._handshake()
        return self._memo["handshake"]

    def teardown(self) -> dict:
        """How the connection ended: FINs (who first, how long), a reset, or still open."""
        if "teardown" not in self._memo:
            self._memo["teardown"] = self._teardown()
        return self._memo["teardown"]

    def _handshake(self) -> dict | None:
        c = self.conn
        if c.syn is None and c.synack is None:
            return None
        out = {"syn": c.syn and c.syn[0], "syn_frame": c.syn and c.syn[1],
               "syn_ack": c.synack and c.synack[0], "syn_ack_frame": c.synack and c.synack[1],
               "ack": c.handshake_ack and c.handshake_ack[0], "ack_frame": c.handshake_ack and c.handshake_ack[1]}
        if c.syn and c.synack:
            out["syn_to_syn_ack"] = c.synack[0] - c.syn[0]
        if c.syn and c.handshake_ack:
            out["duration"] = c.handshake_ack[0] - c.syn[0]
        out["complete"] = bool(c.syn and c.synack and c.handshake_ack)
        return out

    def _teardown(self) -> dict:
        cd, sd = self.direction(True), self.direction(False)
        if cd.rst or sd.rst:
            (t, frame), who = min((d.rst, who) for d, who in ((cd, "client"), (sd, "server")) if d.rst)
            return {"kind": "reset", "by": who, "time": t, "frame": frame}
        if not (cd.fin or sd.fin):
            return {"kind": "open"}
        if cd.fin and sd.fin:
            (first, f1), (second, f2) = (cd.fin, sd.fin) if cd.fin <= sd.fin else (sd.fin, cd.fin)
            out = {"kind": "fin", "initiator": "client" if cd.fin <= sd.fin else "server", "first_fin": first,
                   "first_fin_frame": f1, "second_fin": second, "second_fin_frame": f2}
            last = self.conn.last_ack
            if last:
                out["last_ack"], out["last_ack_frame"] = last[0], last[1]
                out["duration"] = last[0] - first
            else:
                out["duration"] = second - first
            return out
        t, frame = cd.fin or sd.fin
        return {"kind": "fin", "initiator": "client" if cd.fin else "server", "first_fin": t,
                "first_fin_frame": frame, "half_closed": True}


@dataclass
class Host:
    ip: str
    roles: list  # e.g. ["MQTT broker on :1883", "MQTT client (publisher)"]
    kind: str  # the short role: client, server, broker, or "client, server"
    conversations: int


@dataclass
class Analysis:
    capture: CaptureRead
    conversations: list  # recognised, in order of their first packet
    unrecognised: list  # TCP conversations whose content the analyzer does not know
    messages: list
    hosts: list
    warnings: list
    _latency: list | None = field(default=None, repr=False)
    _totals: dict | None = field(default=None, repr=False)
    memo: dict = field(default_factory=dict, repr=False)  # what the report builders computed once

    def arp(self) -> list[dict]:
        """ARP requests and replies in capture order: who asks for whom, who answers; a reply names its request."""
        if "arp" not in self.memo:
            asked: dict = {}
            out = []
            for a in self.capture.arp:
                row = {"frame": a.frame, "time": a.time, "op": a.op, "sender_ip": a.sender_ip,
                       "sender_mac": a.sender_mac, "target_ip": a.target_ip, "target_mac": a.target_mac}
                if a.op == "request":
                    asked[(a.sender_ip, a.target_ip)] = row
                elif a.op == "reply":
                    request = asked.pop((a.target_ip, a.sender_ip), None)
                    if request is not None:
                        row["answers_frame"] = request["frame"]
                        row["after"] = a.time - request["time"]
                out.append(row)
            self.memo["arp"] = out
        return self.memo["arp"]

    def latency_stats(self) -> list[dict]:
        if self._latency is None:
            self._latency = self._latency_stats()
        return self._latency

    def _latency_stats(self) -> list[dict]:
        groups: dict[str, list[float]] = {}
        for m in self.messages:
            if m.latency is not None:
                groups.setdefault(m.pair_label, []).append(m.latency)
            if m.source is not None:
                groups.setdefault("MQTT PUBLISH -> broker -> subscriber", []).append(m.time - m.source.time)
        return [dict(what=k, **stats(v)) for k, v in groups.items()]

    def totals(self) -> dict:
        if self._totals is None:
            self._totals = self._count()
        return self._totals

    def _count(self) -> dict:
        cap = self.capture
        per_protocol: dict = {}
        for c in self.conversations:
            p = per_protocol.get(c.label)
            if p is None:
                p = per_protocol[c.label] = {"conversations": 0, "packets": 0, "wire_bytes": 0, "payload_bytes": 0,
                                             "messages": 0}
            ab, ba = c.conn.ab, c.conn.ba
            p["conversations"] += 1
            p["packets"] += ab.packets + ba.packets
            p["wire_bytes"] += ab.wire_bytes + ba.wire_bytes
            p["payload_bytes"] += len(c.cs.data) + len(c.sc.data)
            p["messages"] += len(c.messages)
        conv_wire = sum(p["wire_bytes"] for p in per_protocol.values())
        payload = sum(p["payload_bytes"] for p in per_protocol.values())
        return {
            "packets": cap.packets, "wire_bytes": cap.wire_bytes,
            "recognised_packets": sum(p["packets"] for p in per_protocol.values()),
            "recognised_wire_bytes": conv_wire,
            "application_payload_bytes": payload,
            "payload_share": payload / conv_wire if conv_wire else 0.0,
            "messages": len(self.messages),
            "by_protocol": per_protocol,
            "left_out": {
                "tcp_conversations": len(self.unrecognised),
                "tcp_packets": sum(c.conn.packets for c in self.unrecognised),
                "tcp_wire_bytes": sum(c.conn.ab.wire_bytes + c.conn.ba.wire_bytes for c in self.unrecognised),
                "other_packets": dict(cap.other.most_common()),
                "other_wire_bytes": cap.other_bytes,
            },
        }


def stats(values: list[float]) -> dict:
    v = sorted(values)
    n = len(v)
    median = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    return {"count": n, "min": v[0], "median": median, "p99": v[min(n - 1, math.ceil(0.99 * n) - 1)], "max": v[-1]}


def detect(cs: bytes, sc: bytes, server_port: int) -> tuple[str | None, str]:
    """(protocol, how it was recognised) from the first bytes each side sent."""
    if decode_http.looks_like_request(cs) or decode_http.looks_like_response(sc):
        return "HTTP", "content"
    if decode_mqtt.looks_like_connect(cs):
        return "MQTT", "content"
    hint = PORT_HINTS.get(server_port)
    if (cs or sc) and decode_lines.looks_like_lines(cs, sc, hint == "LINE"):
        return "LINE", "content" if sc.startswith(decode_lines.KNOWN_PREFIXES) else "port"
    if hint == "MQTT" and (cs or sc) and (not cs or decode_mqtt.valid_stream(cs[:65536])) \
            and (not sc or decode_mqtt.valid_stream(sc[:65536])):
        return "MQTT", "port"
    if hint and not cs and not sc:
        return hint, "port"
    return None, "content"


def _orient(conn: Connection, ab: Stream, ba: Stream) -> bool:
    """Is side A (who sent the first packet we saw) the client?"""
    if conn.syn is not None:
        return conn.syn[2]
    if conn.synack is not None:
        return not conn.synack[2]
    a, b = ab.data[:4096], ba.data[:4096]
    if decode_http.looks_like_request(a) or decode_mqtt.looks_like_connect(a) or decode_http.looks_like_response(b):
        return True
    if decode_http.looks_like_request(b) or decode_mqtt.looks_like_connect(b) or decode_http.looks_like_response(a):
        return False
    if conn.b[1] in PORT_HINTS or conn.a[1] in PORT_HINTS:
        return conn.b[1] in PORT_HINTS
    return conn.b[1] <= conn.a[1]  # the lower port is more likely the server's


def analyze(path, progress: Callable[[int, int], None] | None = None,
            stage: Callable[[str, int], None] | None = None) -> Analysis:
    """Read and analyse one capture file (raises capture.CaptureError if it is not one).

    `progress(done, total)` is told how far reading, then decoding, has got; `stage(name, total)`
    when decoding starts.
    """
    enabled = gc.isenabled()
    gc.disable()  # millions of small tuples and no cycles: the collector would only slow us down
    try:
        cap = read_capture(path, progress)
        if stage is not None:
            stage("decoding", len(cap.connections))
        return build(cap, progress)
    finally:
        if enabled:
            gc.enable()


def build(cap: CaptureRead, progress: Callable[[int, int], None] | None = None) -> Analysis:
    recognised: list[Conversation] = []
    unrecognised: list[Conversation] = []
    warnings: list[str] = []
    if cap.truncated:
        warnings.append(f"capture truncated: {cap.truncated}")
    if cap.snapped:
        warnings.append(f"{cap.snapped} packets were cut short by the capture's snap length: "
                        "their data is missing from the streams")
    messages: list[Message] = []
    total = len(cap.connections)
    for conn in cap.connections:
        if progress is not None and not conn.index % 1024:
            progress(conn.index, total)
        ab, ba = reassemble(conn.ab, cap.t0_ns), reassemble(conn.ba, cap.t0_ns)
        conn.ab.segments = conn.ba.segments = None  # free the memory: the streams hold the bytes now
        conv = _conversation(conn, ab, ba, _orient(conn, ab, ba))
        conv.protocol, conv.detected_by = detect(conv.cs.data, conv.sc.data, conv.server[1])
        if conv.protocol is None:
            unrecognised.append(conv)
            continue
        messages += _decode(conv, cap)
        recognised.append(conv)
    # A connection to a broker already known from another connection, carrying well-formed MQTT, is MQTT
    # too: a subscriber whose CONNECT and SUBSCRIBE came before the capture started, on any port.
    brokers = {c.server for c in recognised if c.protocol == "MQTT"}
    for conv in [c for c in unrecognised if c.conn.a in brokers or c.conn.b in brokers]:
        conv = _conversation(conv.conn, *((conv.cs, conv.sc) if conv.client_is_a else (conv.sc, conv.cs)),
                             conv.conn.b in brokers)
        cs, sc = conv.cs.data[:65536], conv.sc.data[:65536]
        if (cs or sc) and (not cs or decode_mqtt.valid_stream(cs)) and (not sc or decode_mqtt.valid_stream(sc)):
            conv.protocol, conv.detected_by = "MQTT", "broker"
            unrecognised = [c for c in unrecognised if c.conn is not conv.conn]
            messages += _decode(conv, cap)
            recognised.append(conv)
    recognised.sort(key=attrgetter("index"))
    messages.sort(key=attrgetter("time", "frame", "conversation", "_offset"))
    for i, m in enumerate(messages, 1):
        m.number = i
        if m.request is not None:  # a request comes before its answer, so it has its number already
            m.reply_to = m.request.number
    _relays(messages, recognised)
    return Analysis(cap, recognised, unrecognised, messages, _hosts(recognised), warnings)


def _conversation(conn: Connection, ab: Stream, ba: Stream, client_is_a: bool) -> Conversation:
    cs, sc = (ab, ba) if client_is_a else (ba, ab)
    client, server = (conn.a, conn.b) if client_is_a else (conn.b, conn.a)
    return Conversation(conn, client, server, client_is_a, None, "content", cs, sc)


def _decode(conv: Conversation, cap: CaptureRead) -> list[Message]:
    """The conversation's messages, by its protocol; notes on what the capture misses."""
    cs, sc, index = conv.cs, conv.sc, conv.index
    closed = conv.direction(False).fin is not None or conv.direction(False).rst is not None
    if conv.protocol == "HTTP":
        msgs, notes = decode_http.decode(index, cs, sc, closed)
        if any(m.protocol == "SOAP" for m in msgs):
            conv.protocol = "SOAP"
    elif conv.protocol == "MQTT":
        msgs, notes = decode_mqtt.decode(index, cs, sc)
        conv.client_sides = mqtt_sides(msgs)
        conv.client_name = next((m.fields.get("client_id", "") for m in msgs if m.kind == "CONNECT"), "")
    else:
        msgs, notes = decode_lines.decode(index, cs, sc)
    for stream, who in ((cs, "client"), (sc, "server")):
        if stream.gap is not None:
            notes.append(f"the capture misses data the {who} sent after byte {stream.gap}: "
                         "messages after that point are not shown")
    conv.messages, conv.notes = msgs, notes
    conv._memo["t0_ns"] = cap.t0_ns
    for m in msgs:
        m.tcp_flags = conv.flags_of(m.frame)
    return msgs


def mqtt_sides(msgs: list[Message]) -> tuple:
    """What an MQTT client did, from its packets: it publishes (PUBLISH to the broker), it subscribes
    (SUBSCRIBE, or the broker forwarding PUBLISH to it: so also when the capture began after its SUBSCRIBE)."""
    publishes = any(m.kind == "PUBLISH" and m.from_client for m in msgs)
    subscribes = any((m.kind == "SUBSCRIBE" and m.from_client) or (m.kind == "PUBLISH" and not m.from_client)
                     for m in msgs)
    return tuple(side for side, did in (("publisher", publishes), ("subscriber", subscribes)) if did)


def _relays(messages: list[Message], convs: list[Conversation]) -> None:
    """MQTT: link each PUBLISH a broker delivered to the last PUBLISH it received with that topic and payload."""
    broker = {c.index: c.server for c in convs if c.protocol == "MQTT"}
    if not broker:
        return
    last: dict = {}
    for m in messages:  # in capture order
        if m.kind == "PUBLISH" and m.protocol == "MQTT" and "topic" in m.fields:
            key = (broker[m.conversation], m.fields["topic"], m.fields.get("payload"))
            if m.from_client:
                last[key] = m
            else:
                src = last.get(key)
                if src is not None:
                    m.forwarded(src)
                    m.forwarded_from = src.number


def _hosts(convs: list[Conversation]) -> list[Host]:
    roles: dict[str, dict[str, None]] = {}
    kinds: dict[str, set] = {}
    count: Counter = Counter()
    for c in convs:
        proto = c.label
        server_role = SERVER_ROLE[c.protocol]
        roles.setdefault(c.server[0], {})[f"{proto} {server_role} on port {c.server[1]}"] = None
        kinds.setdefault(c.server[0], set()).add(server_role)
        what = f"client ({', '.join(c.client_sides)})" if c.client_sides else "client"
        roles.setdefault(c.client[0], {})[f"{proto} {what}"] = None
        kinds.setdefault(c.client[0], set()).add("client")
        count[c.client[0]] += 1
        if c.server[0] != c.client[0]:
            count[c.server[0]] += 1
    order = {"server": 0, "broker": 0, "client": 1}
    hosts = [Host(ip, list(r), ", ".join(sorted(kinds[ip], key=lambda k: (order[k], k))), count[ip])
             for ip, r in roles.items()]
    hosts.sort(key=lambda h: (order[h.kind.split(",")[0]], _ip_key(h.ip)))
    return hosts


def _ip_key(ip: str):
    try:
        return (0, tuple(int(x) for x in ip.split(".")))
    except ValueError:
        return (1, ip)
