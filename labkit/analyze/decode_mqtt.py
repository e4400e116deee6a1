"""MQTT 3.1, 3.1.1 and 5 control packets on a reassembled TCP stream.

Each packet is framed by its fixed header (type, flags, remaining length), so
several packets in one segment, or one packet over several segments, come out
right. Acknowledgements are paired with what they acknowledge.
"""

from __future__ import annotations

import struct

from .model import Message, preview, printable, short
from .streams import Stream

NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP",
         8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP",
         14: "DISCONNECT", 15: "AUTH"}
CONNACK_V3 = {0: "accepted", 1: "refused: protocol version", 2: "refused: client id", 3: "refused: server unavailable",
              4: "refused: bad user name or password", 5: "refused: not authorised"}
#: What each acknowledgement answers (matched by packet identifier, in the other direction).
ACKS = {"PUBACK": "PUBLISH", "PUBREC": "PUBLISH", "PUBCOMP": "PUBREL", "SUBACK": "SUBSCRIBE",
        "UNSUBACK": "UNSUBSCRIBE"}
# The fixed header's flag bits each type must carry (PUBLISH's vary).
_FIXED_FLAGS = {1: 0, 2: 0, 4: 0, 5: 0, 6: 2, 7: 0, 8: 2, 9: 0, 10: 2, 11: 0, 12: 0, 13: 0, 14: 0, 15: 0}


def looks_like_connect(data: bytes) -> bool:
    """A client stream starting with CONNECT and protocol name "MQTT" (3.1.1, 5) or "MQIsdp" (3.1)."""
    if len(data) < 10 or data[0] != 0x10:
        return False
    p = 1
    while p < 5 and data[p] & 0x80:
        p += 1
    p += 1
    return data[p:p + 6] == b"\x00\x04MQTT" or data[p:p + 8] == b"\x00\x06MQIsdp"


def frames(data: bytes) -> tuple[list[tuple[int, int, int, int]], int]:
    """(offset, header byte, body start, body end) of every whole packet; and the bytes left over."""
    out = []
    pos = 0
    size = len(data)
    while pos + 2 <= size:
        b0 = data[pos]
        n = 0
        mult = 1
        p = pos + 1
        while True:
            if p >= size:
                return out, size - pos
            byte = data[p]
            n += (byte & 0x7F) * mult
            p += 1
            if not byte & 0x80:
                break
            mult *= 128
            if mult > 128 ** 3:
                return out, size - pos  # not MQTT: a length needs at most 4 bytes
        if p + n > size:
            break
        out.append((pos, b0, p, p + n))
        pos = p + n
    return out, size - pos


def valid_stream(data: bytes) -> bool:
    """Do these bytes frame as a run of well-formed MQTT packets (for a capture that missed CONNECT)?"""
    pkts, left = frames(data)
    if not pkts or left:
        return False
    for _off, b0, _s, _e in pkts:
        t = b0 >> 4
        if t == 0 or (t != 3 and _FIXED_FLAGS.get(t) != b0 & 0x0F) or (t == 3 and (b0 >> 1) & 3 == 3):
            return False
    return True


class _Reader:
    __slots__ = ("data", "p", "end")

    def __init__(self, data: bytes, p: int, end: int):
        self.data, self.p, self.end = data, p, end

    def u8(self) -> int:
        v = self.data[self.p]
        self.p += 1
        return v

    def u16(self) -> int:
        v = struct.unpack_from(">H", self.data, self.p)[0]
        self.p += 2
        return v

    def text(self) -> str:
        n = self.u16()
        v = printable(self.data[self.p:self.p + n])
        self.p += n
        return v

    def blob(self) -> bytes:
        n = self.u16()
        v = self.data[self.p:self.p + n]
        self.p += n
        return v

    def varint(self) -> int:
        n, mult = 0, 1
        while True:
            b = self.u8()
            n += (b & 0x7F) * mult
            if not b & 0x80:
                return n
            mult *= 128

    def skip_properties(self, level: int) -> None:
        if level >= 5 and self.p < self.end:
            self.p += self.varint()

    def rest(self) -> bytes:
        return self.data[self.p:self.end]


def _packet(data: bytes, b0: int, start: int, end: int, level: int) -> tuple[str, dict, str]:
    """(type name, fields, one-line summary) of one packet."""
    t = b0 >> 4
    name = NAMES.get(t, f"reserved type {t}")
    r = _Reader(data, start, end)
    f: dict = {}
    if t == 1:
        f["protocol_name"] = r.text()
        f["protocol_level"] = level = r.u8()
        flags = r.u8()
        f["keepalive"] = r.u16()
        r.skip_properties(level)
        f["client_id"] = r.text()
        f["clean_session"] = bool(flags & 0x02)
        if flags & 0x04:
            r.skip_properties(level)
            f["will_topic"] = r.text()
            f["will_message"] = printable(r.blob())
            f["will_qos"] = (flags >> 3) & 3
        if flags & 0x80:
            f["username"] = r.text()
        if flags & 0x40:  # a password follows; never kept, only that it was sent (labkit.analyze.tls flags it)
            f["password_sent"] = True
        version = {3: "3.1", 4: "3.1.1", 5: "5.0"}.get(level, str(level))
        client = f["client_id"] or "(empty)"
        return name, f, f"CONNECT client_id={client} (MQTT {version}, keepalive {f['keepalive']} s)"
    if t == 2:
        f["session_present"] = bool(r.u8() & 1)
        code = r.u8()
        f["return_code"] = code
        what = CONNACK_V3.get(code, f"code {code}") if level < 5 else ("accepted" if code == 0 else f"reason {code}")
        return name, f, f"CONNACK {what}"
    if t == 3:
        qos = (b0 >> 1) & 3
        f["qos"] = qos
        f["retain"] = bool(b0 & 1)
        f["dup"] = bool(b0 & 8)
        f["topic"] = r.text()
        if qos:
            f["packet_id"] = r.u16()
        r.skip_properties(level)
        payload = r.rest()
        f["payload"] = preview(printable(payload))
        f["payload_bytes"] = len(payload)
        extra = " retain" if f["retain"] else ""
        pid = f" id={f['packet_id']}" if qos else ""
        return name, f, f"PUBLISH {f['topic']} qos={qos}{pid}{extra}: {short(f['payload'], 60)}"
    if t in (4, 5, 6, 7, 11):
        f["packet_id"] = r.u16()
        return name, f, f"{name} id={f['packet_id']}"
    if t == 8:
        f["packet_id"] = r.u16()
        r.skip_properties(level)
        subs = []
        while r.p < end:
            topic = r.text()
            subs.append({"topic": topic, "qos": r.u8() & 3})
        f["subscriptions"] = subs
        topics = ", ".join(f"{s['topic']} (qos {s['qos']})" for s in subs)
        return name, f, f"SUBSCRIBE id={f['packet_id']} {topics}"
    if t == 9:
        f["packet_id"] = r.u16()
        r.skip_properties(level)
        f["granted"] = list(r.rest())
        granted = ", ".join("failure" if g >= 0x80 else f"qos {g}" for g in f["granted"])
        return name, f, f"SUBACK id={f['packet_id']} granted {granted}"
    if t == 10:
        f["packet_id"] = r.u16()
        r.skip_properties(level)
        topics = []
        while r.p < end:
            topics.append(r.text())
        f["topics"] = topics
        return name, f, f"UNSUBSCRIBE id={f['packet_id']} {', '.join(topics)}"
    return name, f, name


def decode(conn: int, cs: Stream, sc: Stream) -> tuple[list[Message], list[str]]:
    """The MQTT packets of one connection, acknowledgements paired with what they acknowledge."""
    notes: list[str] = []
    level = 4
    found: list[tuple] = []
    for stream, from_client in ((cs, True), (sc, False)):
        pkts, left = frames(stream.data)
        if left:
            notes.append(f"{left} bytes from the {'client' if from_client else 'broker'} do not form a whole "
                         "MQTT packet (the capture ends inside one)")
        for off, b0, start, end in pkts:
            if from_client and b0 >> 4 == 1 and end - start >= 7:  # CONNECT: protocol name, then its level
                name_len = (stream.data[start] << 8) | stream.data[start + 1]
                if start + 2 + name_len < end:
                    level = stream.data[start + 2 + name_len]
            found.append((stream, from_client, off, b0, start, end))
    messages: list[Message] = []
    for stream, from_client, off, b0, start, end in found:
        data = stream.data
        t = b0 >> 4
        try:
            if t == 3 and level < 5:  # the common case, PUBLISH, without the general reader
                name = "PUBLISH"
                qos = (b0 >> 1) & 3
                p = start + 2 + ((data[start] << 8) | data[start + 1])
                topic = data[start + 2:p].decode("utf-8", "backslashreplace")
                fields = {"topic": topic, "qos": qos, "retain": bool(b0 & 1), "dup": bool(b0 & 8)}
                pid = ""
                if qos:
                    fields["packet_id"] = (data[p] << 8) | data[p + 1]
                    pid = f" id={fields['packet_id']}"
                    p += 2
                payload = data[p:end].decode("utf-8", "backslashreplace")
                fields["payload"] = preview(payload)
                fields["payload_bytes"] = end - p
                summary = f"PUBLISH {topic} qos={qos}{pid}{' retain' if b0 & 1 else ''}: {short(payload, 60)}"
            elif t == 4 and end - start == 2:  # PUBACK
                name = "PUBACK"
                pid = (data[start] << 8) | data[start + 1]
                fields = {"packet_id": pid}
                summary = f"PUBACK id={pid}"
            else:
                name, fields, summary = _packet(data, b0, start, end, level)
        except (IndexError, struct.error):
            name = NAMES.get(t, "?")
            fields, summary = {"malformed": True}, f"{name} (malformed)"
        when, frame, first_frame = stream.span(off, end)
        messages.append(Message(when, frame, conn, from_client, "MQTT", name, summary, end - off, fields,
                                first_frame, off))
    messages.sort(key=_order)
    _pair(messages)
    return messages, notes


def _order(m: Message) -> tuple:
    return m.time, m.frame, not m.from_client


def _pair(messages: list[Message]) -> None:
    waiting: dict = {}  # (direction of the request, type, packet id) -> request
    connect = ping = None
    for m in messages:
        kind = m.kind
        if kind == "CONNECT":
            connect = m
        elif kind == "CONNACK" and connect is not None:
            m.pair(connect, "MQTT CONNECT -> CONNACK")
            connect = None
        elif kind == "PINGREQ":
            ping = m
        elif kind == "PINGRESP" and ping is not None:
            m.pair(ping, "MQTT PINGREQ -> PINGRESP")
            ping = None
        elif kind in ("PUBLISH", "PUBREL", "SUBSCRIBE", "UNSUBSCRIBE"):
            if kind != "PUBLISH" or m.fields.get("qos"):
                waiting[(m.from_client, kind, m.fields.get("packet_id"))] = m
        elif kind in ACKS:
            req = waiting.pop((not m.from_client, ACKS[kind], m.fields.get("packet_id")), None)
            if req is not None:
                qos = f" qos {req.fields['qos']}" if req.kind == "PUBLISH" else ""
                m.pair(req, f"MQTT {req.kind}{qos} -> {kind}")
