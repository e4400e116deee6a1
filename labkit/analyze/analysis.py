"""From a capture to an analysis: conversations, who is client or server, messages, timing, bytes.

Each TCP connection is reassembled and its protocol recognised from what it
carries (an HTTP request line, an MQTT CONNECT, the lab's text lines), the way
Wireshark's heuristic dissectors work; the lab's ports are only a hint when
the content says nothing (a connection that carried no data).
"""

from __future__ import annotations

import gc
import itertools
import math
from array import array
from bisect import bisect_left
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


@dataclass(slots=True)
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
        kept = self._memo.get("payload_bytes")
        return (len(self.cs), len(self.sc)) if kept is None else kept

    @property
    def message_count(self) -> int:
        return self._memo.get("message_count", len(self.messages))

    @property
    def segment_count(self) -> int:
        """How many TCP segments the connection had (segments() may list only the first few: spill.Spill)."""
        return self._memo.get("segment_count", len(self.conn.log))

    @property
    def duration(self) -> float:
        return self.conn.last_time - self.conn.first_time

    def segments(self) -> list[dict]:
        """Every TCP segment of the connection: frame, time, who sent it, its flags and payload bytes."""
        if "segments" not in self._memo:
            t0, names = self._memo.get("t0_ns", 0), _FLAG_NAMES
            sender = ("server", "client") if self.client_is_a else ("client", "server")  # indexed by from_a
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
    conversations: list  # recognised, in order of their first packet (spilled: the first KEPT_CONVERSATIONS)
    unrecognised: list  # TCP conversations whose content the analyzer does not know
    messages: list  # in capture order (spilled: the first KEPT_MESSAGES)
    hosts: list
    warnings: list
    _latency: list | None = field(default=None, repr=False)
    _totals: dict | None = field(default=None, repr=False)
    memo: dict = field(default_factory=dict, repr=False)  # what the report builders computed once
    message_count: int = 0  # all the messages of the capture
    conversation_count: int = 0  # all its recognised conversations
    spill: object = field(default=None, repr=False)  # spill.Spill when the full lists are in files, else None

    @property
    def complete(self) -> bool:
        """Are all the messages and conversations in `messages` and `conversations`?"""
        return self.spill is None

    def conversation(self, index: int) -> Conversation:
        """The conversation with this index (any conversation one of `messages` belongs to)."""
        if "by_index" not in self.memo:
            by_index = {c.index: c for c in self.conversations}
            for m in self.messages:
                if m.conversation not in by_index and m._conv is not None:
                    by_index[m.conversation] = m._conv
            self.memo["by_index"] = by_index
        return self.memo["by_index"][index]

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
        """Count, min, median, p99 and max of each kind of exchange (request -> response, ...)."""
        return self._latency or []

    def totals(self) -> dict:
        """Packets and bytes on the wire, recognised and left out, per protocol."""
        return self._totals or {}


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
            stage: Callable[[str, int], None] | None = None, *, keep_messages: bool = True,
            on_message: Callable[[Message], None] | None = None, spill_dir=None,
            all_text: bool = False, on_conversation: Callable[[Conversation], None] | None = None) -> Analysis:
    """Read and analyse one capture file (raises capture.CaptureError if it is not one).

    The file is read once, as a stream: each TCP connection is decoded when it has ended (and a
    little after, for late segments), its messages handed on in capture order as soon as no
    connection still open can put one before them.

    - `keep_messages=True` (the default): everything stays in memory, as the API has always
      given it (`messages`, every conversation with its streams and segments).
    - `keep_messages=False`: memory stays bounded on any capture. Once the capture is bigger than
      a lab exercise (more than SPILL_AFTER_MESSAGES messages or SPILL_AFTER_CONVERSATIONS
      conversations), `messages` keeps the first KEPT_MESSAGES, `conversations` the first
      KEPT_CONVERSATIONS (their counts are `message_count`, `conversation_count`), and the
      JSON's full lists (and, with `all_text`, the text lines of every message) are written to
      temporary files in `spill_dir` as they come; report.write_json and report.write_text put
      them back in place. Below that size the analysis is complete, as with keep_messages=True.
    - `on_message(message)` is called for every message, numbered, in capture order (either mode),
      before it is kept or written out: what it changes in the message is what the reports show.
    - `on_conversation(conversation)` is called for every TCP conversation once it is decoded,
      recognised (`protocol` set, `messages` decoded) or not (`protocol` None), with its streams
      (`cs.data`, `sc.data`), before a spilling analysis lets go of them.

    `progress(done, total)` is told how far reading has got; `stage(name, total)` is called once
    reading is done and the connections still open are decoded.
    """
    enabled = gc.isenabled()
    gc.disable()  # millions of small tuples and no cycles: the collector would only slow us down
    try:
        if keep_messages:
            sink = Collector()
        else:
            from .spill import Spill

            sink = Spill(spill_dir, all_text)
        builder = Builder(sink, on_message, on_conversation)
        cap = read_capture(path, progress, on_end=builder.ended, on_table=builder.attach)
        if stage is not None:
            stage("decoding", len(cap.connections))
        return builder.finish(cap)
    finally:
        if enabled:
            gc.enable()


#: Connections that have ended stay in the reader's table this long (counted in ended connections) before
#: they are decoded and let go, so that a late segment (a repeated FIN, an ACK) still counts for them.
ENDED_KEPT = 2048
#: How many of them are decoded at once when there are more.
DECODE_BATCH = 1024


class Collector:
    """Receives the analysis as it is built: each decoded conversation, each message in capture order.

    Keeps everything (the API's complete analysis) and the aggregates the report needs
    (totals per protocol, hosts and their roles, latency), which need nothing else kept.
    spill.Spill, the command line's bounded version, keeps only what the text report lists.
    """

    def __init__(self) -> None:
        self.conversations: list[Conversation] = []
        self.unrecognised: list[Conversation] = []
        self.messages: list[Message] = []
        self.message_count = 0
        self.conversation_count = 0
        self.per_protocol: dict = {}  # label -> [first index, conversations, packets, wire, payload, messages]
        # (label, protocol, server, client ip, client sides) -> [index of the first such conversation, how many]
        self.pairs: dict = {}
        self.left_out = [0, 0, 0]  # unrecognised TCP conversations, packets, wire bytes

    def conversation(self, conv: Conversation) -> None:
        self.conversation_count += 1
        self._aggregate(conv)
        self.conversations.append(conv)

    def _aggregate(self, c: Conversation) -> None:
        ab, ba = c.conn.ab, c.conn.ba
        p = self.per_protocol.get(c.label)
        if p is None:
            p = self.per_protocol[c.label] = [c.index, 0, 0, 0, 0, 0]
        elif c.index < p[0]:
            p[0] = c.index
        p[1] += 1
        p[2] += ab.packets + ba.packets
        p[3] += ab.wire_bytes + ba.wire_bytes
        p[4] += len(c.cs) + len(c.sc)
        p[5] += len(c.messages)
        key = (c.label, c.protocol, c.server, c.client[0], c.client_sides)
        pair = self.pairs.get(key)
        if pair is None:
            self.pairs[key] = [c.index, 1]
        else:
            pair[1] += 1
            if c.index < pair[0]:
                pair[0] = c.index

    def not_recognised(self, conv: Conversation) -> None:
        self.left_out[0] += 1
        self.left_out[1] += conv.conn.packets
        self.left_out[2] += conv.conn.ab.wire_bytes + conv.conn.ba.wire_bytes
        self.unrecognised.append(conv)

    def message(self, m: Message) -> None:
        self.message_count += 1
        self.messages.append(m)

    def hosts(self) -> list[Host]:
        """Each host with its roles, in the order the conversations first show them."""
        roles: dict = {}  # ip -> {role text: (index of the first conversation, 0 server / 1 client)}
        kinds: dict = {}  # ip -> {"server", "client", "broker"}
        count: Counter = Counter()
        for (label, protocol, server, client_ip, sides), (first, n) in self.pairs.items():
            server_role = SERVER_ROLE[protocol]
            what = f"client ({', '.join(sides)})" if sides else "client"
            for ip, role, kind, slot in ((server[0], f"{label} {server_role} on port {server[1]}", server_role, 0),
                                         (client_ip, f"{label} {what}", "client", 1)):
                seen = roles.setdefault(ip, {})
                if role not in seen or (first, slot) < seen[role]:
                    seen[role] = (first, slot)
                kinds.setdefault(ip, set()).add(kind)
            count[client_ip] += n
            if server[0] != client_ip:
                count[server[0]] += n
        order = {"server": 0, "broker": 0, "client": 1}
        hosts = [Host(ip, sorted(r, key=r.__getitem__), ", ".join(sorted(kinds[ip], key=lambda k: (order[k], k))),
                      count[ip]) for ip, r in roles.items()]
        hosts.sort(key=lambda h: (order[h.kind.split(",")[0]], _ip_key(h.ip)))
        return hosts

    def totals(self, cap: CaptureRead) -> dict:
        per_protocol = {label: {"conversations": n, "packets": packets, "wire_bytes": wire, "payload_bytes": payload,
                                "messages": msgs}
                        for label, (_first, n, packets, wire, payload, msgs)
                        in sorted(self.per_protocol.items(), key=lambda kv: kv[1][0])}
        conv_wire = sum(p["wire_bytes"] for p in per_protocol.values())
        payload = sum(p["payload_bytes"] for p in per_protocol.values())
        return {
            "packets": cap.packets, "wire_bytes": cap.wire_bytes,
            "recognised_packets": sum(p["packets"] for p in per_protocol.values()),
            "recognised_wire_bytes": conv_wire,
            "application_payload_bytes": payload,
            "payload_share": payload / conv_wire if conv_wire else 0.0,
            "messages": self.message_count,
            "by_protocol": per_protocol,
            "left_out": {
                "tcp_conversations": self.left_out[0],
                "tcp_packets": self.left_out[1],
                "tcp_wire_bytes": self.left_out[2],
                "other_packets": dict(cap.other.most_common()),
                "other_wire_bytes": cap.other_bytes,
            },
        }

    def finish(self, a: Analysis) -> None:
        """Called once everything is decoded; `a` is the analysis to complete."""


class Builder:
    """Decodes connections as the reader hands them over and passes messages on in capture order.

    Messages are numbered in the order of (time, frame, connection, offset), as a list sorted at
    the end would be. A message is handed on once every connection still in the reader's table
    has its first data after it: none of them can complete an earlier one. On a capture whose
    timestamps never go backwards (one interface, as tcpdump writes it) the order is exactly that
    of the sorted list; a connection that stays open holds back the messages after its first
    data until it ends, so its length, not the file's, bounds the memory.
    """

    def __init__(self, sink: Collector, on_message: Callable[[Message], None] | None = None,
                 on_conversation: Callable[[Conversation], None] | None = None):
        self.sink = sink
        self.on_message = on_message
        self.on_conversation = on_conversation
        self.table = None
        self.ended_conns: dict = {}  # index -> Connection that has ended, in the order they ended
        # (time, frame, connection, offset, tie, message) decoded, not yet handed on; sorted when handing on
        # (timsort merges the runs each batch adds in about linear time: cheaper than a heap's pushes and pops)
        self.pending: list = []
        self.tie = 0
        self.number = 0
        self.brokers: set = set()  # endpoints of the MQTT brokers known so far
        self.broker_of: dict = {}  # MQTT conversation index -> its broker's endpoint
        self.held: dict = {}  # index -> unrecognised Conversation that may be MQTT once its broker is known
        self.last_publish: dict = {}  # (broker, topic, payload) -> the last PUBLISH a broker received
        self.latency: dict = {}  # what -> latencies (seconds), in message order
        self.t0_ns = 0
        self.warnings: list = []

    def attach(self, table) -> None:
        self.table = table

    def ended(self, conn: Connection) -> None:
        self.ended_conns[conn.index] = conn
        if len(self.ended_conns) > ENDED_KEPT:
            self.t0_ns = self.table.t0_ns
            for index in list(itertools.islice(self.ended_conns, DECODE_BATCH)):
                c = self.ended_conns.pop(index)
                self.table.forget(c)
                c.to_seconds(self.t0_ns)
                self.decode(c)
            self.hand_on(max(conn.ab.last_ns, conn.ba.last_ns))

    def decode(self, conn: Connection) -> None:
        t0 = self.t0_ns
        ab, ba = reassemble(conn.ab, t0), reassemble(conn.ba, t0)
        conn.ab.segments = conn.ba.segments = None  # free the memory: the streams hold the bytes now
        conv = _conversation(conn, ab, ba, _orient(conn, ab, ba))
        conv._memo["t0_ns"] = t0
        conv.protocol, conv.detected_by = detect(conv.cs.data, conv.sc.data, conv.server[1])
        if conv.protocol is None:
            if not self._may_be_mqtt(conv):
                self._not_recognised(conv)
            return
        self._recognised(conv)
        if conv.protocol == "MQTT" and conv.server not in self.brokers:
            self.brokers.add(conv.server)
            for held in [h for h in self.held.values() if h.conn.a == conv.server or h.conn.b == conv.server]:
                del self.held[held.index]
                self._as_mqtt(held)

    def _not_recognised(self, conv: Conversation) -> None:
        if self.on_conversation is not None:
            self.on_conversation(conv)
        self.sink.not_recognised(conv)

    def _may_be_mqtt(self, conv: Conversation) -> bool:
        """A connection to a broker known from another connection, carrying well-formed MQTT, is MQTT too (a
        subscriber whose CONNECT and SUBSCRIBE came before the capture started, on any port). True if it is,
        or may be once its broker is known (then it waits in `held`)."""
        cs, sc = conv.cs.data[:65536], conv.sc.data[:65536]
        if not (cs or sc) or (cs and not decode_mqtt.valid_stream(cs)) or (sc and not decode_mqtt.valid_stream(sc)):
            return False
        if conv.conn.a in self.brokers or conv.conn.b in self.brokers:
            self._as_mqtt(conv)
        else:
            self.held[conv.index] = conv
        return True

    def _as_mqtt(self, conv: Conversation) -> None:
        conn = conv.conn
        conv = _conversation(conn, *((conv.cs, conv.sc) if conv.client_is_a else (conv.sc, conv.cs)),
                             conn.b in self.brokers)
        conv._memo["t0_ns"] = self.t0_ns
        conv.protocol, conv.detected_by = "MQTT", "broker"
        self._recognised(conv)

    def _recognised(self, conv: Conversation) -> None:
        msgs = _decode(conv)
        if conv.protocol == "MQTT":
            self.broker_of[conv.index] = conv.server
        pending = self.pending
        for m in msgs:
            self.tie += 1
            pending.append((m.time, m.frame, m.conversation, m._offset, self.tie, m))
        if self.on_conversation is not None:
            self.on_conversation(conv)
        self.sink.conversation(conv)

    def hand_on(self, now_ns: int | None) -> None:
        """Number and hand on the decoded messages no connection still open can come before (all: None)."""
        pending = self.pending
        if now_ns is None:
            bound = math.inf
        else:
            firsts = [now_ns]
            for c in self.table.live.values():
                f = c.first_data_ns()
                if f is not None:
                    firsts.append(f)
            bound = (min(firsts) - self.t0_ns) / 1e9
            for conv in self.held.values():
                for stream in (conv.cs, conv.sc):
                    if stream.times:
                        bound = min(bound, stream.times[0])
        pending.sort()  # the tie makes every key unique: the order is total and a message is never compared
        ready = bisect_left(pending, (bound,))  # the first one at or after the bound
        message = self.message
        for item in pending[:ready]:
            message(item[5])
        del pending[:ready]

    def message(self, m: Message) -> None:
        self.number += 1
        m.number = self.number
        # m._request, m._source, m._pair_label: what m.request, m.source, m.pair_label give (read for every message)
        if m._request is not None:  # a request comes before its answer, so it has its number already
            m.reply_to = m._request.number
        if m.kind == "PUBLISH" and m.protocol == "MQTT" and "topic" in m.fields:
            # link each PUBLISH a broker delivered to the last PUBLISH it received with that topic and payload
            key = (self.broker_of[m.conversation], m.fields["topic"], m.fields.get("payload"))
            if m.from_client:
                self.last_publish[key] = m
            else:
                src = self.last_publish.get(key)
                if src is not None:
                    m.forwarded(src)
                    m.forwarded_from = src.number
        if m.latency is not None:
            self._latency(m._pair_label, m.latency)
        if m._source is not None:
            self._latency("MQTT PUBLISH -> broker -> subscriber", m.time - m._source.time)
        if self.on_message is not None:  # first: it may amend the message (tls.Credentials masks a password)
            self.on_message(m)
        self.sink.message(m)

    def _latency(self, what: str, value: float) -> None:
        values = self.latency.get(what)
        if values is None:
            values = self.latency[what] = array("d")
        values.append(value)

    def finish(self, cap: CaptureRead) -> Analysis:
        """The file is read: decode what is left, in order of the connections' first packets."""
        self.t0_ns = cap.t0_ns
        for conn in cap.connections:  # already in seconds (capture._finish)
            self.decode(conn)
        self.ended_conns.clear()
        for conv in sorted(self.held.values(), key=attrgetter("index")):
            self._not_recognised(conv)
        self.held.clear()
        self.hand_on(None)
        sink = self.sink
        sink.conversations.sort(key=attrgetter("index"))
        sink.unrecognised.sort(key=lambda c: c["index"] if isinstance(c, dict) else c.index)  # spill.Spill: dicts
        warnings: list[str] = []
        if cap.truncated:
            warnings.append(f"capture truncated: {cap.truncated}")
        if cap.snapped:
            warnings.append(f"{cap.snapped} packets were cut short by the capture's snap length: "
                            "their data is missing from the streams")
        a = Analysis(cap, sink.conversations, sink.unrecognised, sink.messages, sink.hosts(), warnings)
        a.message_count, a.conversation_count = sink.message_count, sink.conversation_count
        a._latency = [dict(what=k, **stats(v)) for k, v in self.latency.items()]
        a._totals = sink.totals(cap)
        sink.finish(a)
        return a


def _conversation(conn: Connection, ab: Stream, ba: Stream, client_is_a: bool) -> Conversation:
    cs, sc = (ab, ba) if client_is_a else (ba, ab)
    client, server = (conn.a, conn.b) if client_is_a else (conn.b, conn.a)
    return Conversation(conn, client, server, client_is_a, None, "content", cs, sc)


def _decode_http(conv: Conversation) -> tuple[list[Message], list[str]]:
    server = conv.direction(False)
    closed = server.fin is not None or server.rst is not None
    msgs, notes = decode_http.decode(conv.index, conv.cs, conv.sc, closed)
    for m in msgs:
        if m.protocol == "SOAP":
            conv.protocol = "SOAP"
            break
    return msgs, notes


def _decode_mqtt(conv: Conversation) -> tuple[list[Message], list[str]]:
    msgs, notes = decode_mqtt.decode(conv.index, conv.cs, conv.sc)
    conv.client_sides = mqtt_sides(msgs)
    conv.client_name = next((m.fields.get("client_id", "") for m in msgs if m.kind == "CONNECT"), "")
    return msgs, notes


def _decode_lines(conv: Conversation) -> tuple[list[Message], list[str]]:
    return decode_lines.decode(conv.index, conv.cs, conv.sc)


#: The decoder of each protocol `detect` names: (conversation) -> (its messages, notes for the report).
#: A new protocol adds its decode_<name>.py, a line here and its test in `detect`.
DECODERS: dict[str, Callable[[Conversation], tuple[list[Message], list[str]]]] = {
    "HTTP": _decode_http, "MQTT": _decode_mqtt, "LINE": _decode_lines}


def _decode(conv: Conversation) -> list[Message]:
    """The conversation's messages, by its protocol; notes on what the capture misses."""
    msgs, notes = DECODERS[conv.protocol](conv)
    for stream, who in ((conv.cs, "client"), (conv.sc, "server")):
        if stream.gap is not None:
            notes.append(f"the capture misses data the {who} sent after byte {stream.gap}: "
                         "messages after that point are not shown")
    conv.messages, conv.notes = msgs, notes
    if msgs:
        # what conv.flags_of says, looked up among the segments that carried data only: a message is completed
        # by one of those (the decoders take its frame from Stream.span)
        bits_of = {frame: bits for frame, _t, bits, _a, size in conv.conn.log if size}
        for m in msgs:
            bits = bits_of.get(m.frame)
            m.tcp_flags = "" if bits is None else _FLAG_NAMES[bits]
            m._conv = conv
    return msgs


def mqtt_sides(msgs: list[Message]) -> tuple:
    """What an MQTT client did, from its packets: it publishes (PUBLISH to the broker), it subscribes
    (SUBSCRIBE, or the broker forwarding PUBLISH to it: so also when the capture began after its SUBSCRIBE)."""
    publishes = any(m.kind == "PUBLISH" and m.from_client for m in msgs)
    subscribes = any((m.kind == "SUBSCRIBE" and m.from_client) or (m.kind == "PUBLISH" and not m.from_client)
                     for m in msgs)
    return tuple(side for side, did in (("publisher", publishes), ("subscriber", subscribes)) if did)


def _ip_key(ip: str):
    try:
        return (0, tuple(int(x) for x in ip.split(".")))
    except ValueError:
        return (1, ip)
