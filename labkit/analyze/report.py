"""The analysis as text for the terminal, Markdown with a Mermaid sequence diagram, and JSON."""

from __future__ import annotations

import time

from . import tls
from .analysis import Analysis, Conversation
from .decode_lines import SERVER_INITIATED
from .model import Message, short

#: Messages listed in the terminal and Markdown reports before "... N more" (the JSON has all of them).
MAX_LISTED_MESSAGES = 1000
#: Arrows in the Mermaid diagram and the PNG ladder before "... N more" (readable pictures stay small).
MAX_DIAGRAM_MESSAGES = 40
#: Participants (columns) in the pictures: conversations that would need more are left off.
MAX_DIAGRAM_PARTICIPANTS = 6
#: The JSON is indented for people up to this many messages, compact (smaller, faster) above.
JSON_INDENT_UP_TO = 5000
#: Conversations detailed in the text report before a summary line.
MAX_LISTED_CONVERSATIONS = 200
#: TCP segments listed per conversation in the text and Markdown reports (the JSON has every one).
MAX_LISTED_SEGMENTS = 30
#: ARP packets listed in the text and Markdown reports (the JSON has every one).
MAX_LISTED_ARP = 100


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.3f} ms"


def endpoint(ep: tuple) -> str:
    ip, port = ep
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def role_of(conv: Conversation, from_client: bool) -> str:
    if from_client:
        return "client"
    return "broker" if conv.protocol == "MQTT" else "server"


def message_line(m: Message) -> str:
    """The message's own text plus how it relates to others."""
    if m.protocol == "LINE":
        text = f'line "{m.summary}"' if not m.server_initiated else \
            f'line "{m.summary.removesuffix(SERVER_INITIATED)}"{SERVER_INITIATED}'
    else:
        text = f"{m.protocol} {m.summary}"
    if m.request is not None:
        text += f"  [answers #{m.request.number} after {ms(m.latency)}]"
    if m.source is not None:
        text += f"  [forwarded from #{m.source.number}, {ms(m.time - m.source.time)} later]"
    return text


def handshake_text(conv: Conversation) -> str:
    h = conv.handshake()
    if h is None:
        return "not in the capture (the connection was already open when it started)"
    parts = []
    if h["syn"] is not None:
        parts.append(f"SYN at {h['syn']:.6f} s (frame {h['syn_frame']})")
    if h["syn_ack"] is not None:
        parts.append(f"SYN-ACK +{ms(h['syn_to_syn_ack'])}" if h.get("syn_to_syn_ack") is not None
                     else f"SYN-ACK at {h['syn_ack']:.6f} s")
    if h["ack"] is not None and h.get("duration") is not None:
        parts.append(f"ACK +{ms(h['duration'])}")
    text = ", ".join(parts)
    if h.get("duration") is not None:
        text += f" -> connected in {ms(h['duration'])}"
    elif not h["complete"]:
        text += " (incomplete)"
    return text


def teardown_text(conv: Conversation) -> str:
    td = conv.teardown()
    if td["kind"] == "open":
        return "none: still open when the capture ended"
    if td["kind"] == "reset":
        return f"reset (RST) by the {_side(conv, td['by'])} at {td['time']:.6f} s (frame {td['frame']})"
    text = (f"{_side(conv, td['initiator'])} closed first: FIN at {td['first_fin']:.6f} s "
            f"(frame {td['first_fin_frame']})")
    if "second_fin" in td:
        text += f", FIN back +{ms(td['second_fin'] - td['first_fin'])}"
        if "last_ack" in td:
            text += f", last ACK +{ms(td['last_ack'] - td['first_fin'])}"
        text += f" -> closed in {ms(td['duration'])}"
    else:
        text += " (the other side had not closed when the capture ended)"
    return text


def segments_text(conv: Conversation, limit: int = MAX_LISTED_SEGMENTS) -> str:
    """The connection's segments as Wireshark's Info column names them: frame, flags, sender, payload."""
    segs = conv.segments()
    total = conv.segment_count
    parts = [f"{s['frame']} {s['flags']} {_side(conv, s['from'])}" + (f" {s['len']} B" if s["len"] else "")
             for s in segs[:limit]]
    more = f", ... {total - limit} more (see the JSON)" if total > limit else ""
    return ", ".join(parts) + more


def arp_text(row: dict) -> str:
    """One ARP packet in words: who asks for whom, or who answers with which MAC address."""
    if row["op"] == "request":
        return f"{row['sender_ip']} ({row['sender_mac']}) asks: who has {row['target_ip']}?"
    if row["op"] == "reply":
        text = f"{row['sender_ip']} is at {row['sender_mac']} (tells {row['target_ip']})"
        if "answers_frame" in row:
            text += f"  [answers frame {row['answers_frame']} after {ms(row['after'])}]"
        return text
    return f"{row['op']}: {row['sender_ip']} -> {row['target_ip']}"


def _side(conv: Conversation, who: str) -> str:
    return "client" if who == "client" else role_of(conv, False)


def _fmt(n: int) -> str:
    return f"{n:,}"


def _capture_line(a: Analysis) -> list[str]:
    cap = a.capture
    start = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(cap.first_epoch)) if cap.first_epoch else "-"
    return [f"{cap.file_format}, link type {', '.join(cap.link_types) or '-'}; {_fmt(cap.packets)} packets, "
            f"{_fmt(cap.wire_bytes)} bytes on the wire; {cap.duration:.6f} s starting {start}"]


def _left_out(t: dict) -> str:
    lo = t["left_out"]
    parts = []
    if lo["tcp_conversations"]:
        parts.append(f"{lo['tcp_conversations']} TCP conversation(s) with content it does not recognise "
                     f"({_fmt(lo['tcp_packets'])} packets)")
    if lo["other_packets"]:
        parts.append(", ".join(f"{n} {kind}" + (" (listed under ARP)" if kind == "ARP" else "")
                               for kind, n in lo["other_packets"].items()) + " packets")
    return "; ".join(parts) if parts else "nothing"


def message_row(m: Message, conv: Conversation) -> str:
    """One message's line in the terminal report (`conv`: its conversation)."""
    src, dst = (conv.client, conv.server) if m.from_client else (conv.server, conv.client)
    route = f"{endpoint(src)} -> {endpoint(dst)}"
    return (f"  {m.number:>5} {m.time:>11.6f} {m.frame:>6} {m.conversation:>5}  {route:<45} "
            f"{m.tcp_flags:<11} {message_line(m)}")


def text(a: Analysis, max_messages: int = MAX_LISTED_MESSAGES) -> str:
    """The terminal report."""
    import io

    out = io.StringIO()
    write_text(a, out, max_messages)
    return out.getvalue()


def write_text(a: Analysis, stream, max_messages: int = MAX_LISTED_MESSAGES) -> None:
    """Write the terminal report to a text stream; with `max_messages` 0, every message (from the spill
    file if the analysis has one)."""
    out = _text_head(a)
    out.append("Messages in capture order (time: seconds since the first packet)")
    if a.message_count:
        out.append(f"  {'#':>5} {'time':>11} {'frame':>6} {'conv':>5}  {'from -> to':<45} {'TCP flags':<11} message")
    limit = a.message_count if max_messages <= 0 else max_messages
    if a.message_count > len(a.messages) and limit > len(a.messages):  # the rest is in the spill file
        stream.write("\n".join(out) + "\n")
        a.spill.copy_text(stream, limit)
        out = []
    else:
        out += [message_row(m, a.conversation(m.conversation)) for m in a.messages[:limit]]
    if a.message_count > limit:
        out.append(f"  ... {a.message_count - limit} more messages: see the JSON file, or use --all")
    if not a.message_count:
        out.append("  none")
    out += _text_tail(a)
    stream.write("\n".join(out) + "\n")


def _text_head(a: Analysis) -> list[str]:
    out: list[str] = [f"Capture {a.capture.path}", *("  " + s for s in _capture_line(a))]
    for w in a.warnings:
        out.append(f"  warning: {w}")
    out.append("")
    out.append("Hosts and roles")
    if not a.hosts:
        out.append("  none: no traffic of the lab's protocols (HTTP, SOAP, MQTT, line protocol) in this capture")
    for h in a.hosts:
        out.append(f"  {h.ip:<16} {h.kind:<15} {'; '.join(h.roles)}")
    out.append("")
    out.append("Conversations (TCP)")
    for conv in a.conversations[:MAX_LISTED_CONVERSATIONS]:
        pc, ps = conv.packets
        bc, bs = conv.wire_bytes
        yc, ys = conv.payload_bytes
        who = f", client id {conv.client_name}" if conv.client_name else ""
        how = {"port": " (recognised by its port: it carried no data)",
               "broker": " (recognised by its broker, known from another connection: it began before the capture)",
               }.get(conv.detected_by, "")
        out.append(f"  #{conv.index} {endpoint(conv.client)} -> {endpoint(conv.server)}  {conv.label}{who}{how}")
        out.append(f"      client->{role_of(conv, False)}: {pc} packets, {_fmt(bc)} bytes ({_fmt(yc)} payload); "
                   f"{role_of(conv, False)}->client: {ps} packets, {_fmt(bs)} bytes ({_fmt(ys)} payload); "
                   f"{conv.message_count} messages; lasted {conv.duration:.6f} s")
        out.append(f"      handshake: {handshake_text(conv)}")
        out.append(f"      teardown:  {teardown_text(conv)}")
        out.append(f"      segments (frame, TCP flags, sender, payload): {segments_text(conv)}")
        for note in conv.notes:
            out.append(f"      note: {note}")
    if a.conversation_count > MAX_LISTED_CONVERSATIONS:
        out.append(f"  ... and {a.conversation_count - MAX_LISTED_CONVERSATIONS} more conversations (see the JSON)")
    if not a.conversation_count:
        out.append("  none recognised")
    out.append("")
    out += tls.text_lines(a)
    out.append("ARP (who asks for whose MAC address, who answers)")
    for row in a.arp()[:MAX_LISTED_ARP]:
        out.append(f"  frame {row['frame']:>6} {row['time']:>11.6f} {row['op']:<8} {arp_text(row)}")
    if len(a.arp()) > MAX_LISTED_ARP:
        out.append(f"  ... and {len(a.arp()) - MAX_LISTED_ARP} more (see the JSON)")
    if not a.arp():
        out.append("  none (on loopback there is no ARP)")
    out.append("")
    return out


def _text_tail(a: Analysis) -> list[str]:
    out = [""]
    out.append("Latency (request -> response; MQTT: publisher -> broker -> subscriber)")
    lat = a.latency_stats()
    if lat:
        width = max(len(s["what"]) for s in lat)
        out.append(f"  {'what':<{width}} {'count':>6} {'min':>12} {'median':>12} {'p99':>12} {'max':>12}")
        for s in lat:
            out.append(f"  {s['what']:<{width}} {s['count']:>6} {ms(s['min']):>12} {ms(s['median']):>12} "
                       f"{ms(s['p99']):>12} {ms(s['max']):>12}")
    else:
        out.append("  no request/response pairs")
    t = a.totals()
    out.append("")
    out.append("Totals")
    out.append(f"  on the wire:  {_fmt(t['packets'])} packets, {_fmt(t['wire_bytes'])} bytes")
    out.append(f"  recognised:   {_fmt(t['recognised_packets'])} packets, {_fmt(t['recognised_wire_bytes'])} bytes "
               f"on the wire carrying {_fmt(t['application_payload_bytes'])} bytes of application payload "
               f"({t['payload_share'] * 100:.1f} %; the rest is Ethernet/IP/TCP headers, handshakes and ACKs)")
    for label, p in t["by_protocol"].items():
        out.append(f"    {label}: {p['conversations']} conversations, {p['messages']} messages, "
                   f"{_fmt(p['packets'])} packets, {_fmt(p['wire_bytes'])} wire bytes, "
                   f"{_fmt(p['payload_bytes'])} payload bytes")
    out.append(f"  left out:     {_left_out(t)}")
    return out


# --- JSON -------------------------------------------------------------------------------------------

def conversation_dict(c: Conversation) -> dict:
    """One conversation as the JSON has it, with every segment."""
    conn = c.conn
    cd, sd = (conn.ab, conn.ba) if c.client_is_a else (conn.ba, conn.ab)  # c.direction(True), c.direction(False)
    pc, ps = c.payload_bytes
    return {
        "index": c.index, "protocol": c.label, "recognised_by": c.detected_by,
        "client": {"ip": c.client[0], "port": c.client[1]},
        "server": {"ip": c.server[0], "port": c.server[1], "role": role_of(c, False)},
        "client_id": c.client_name or None,
        "client_role": list(c.client_sides),  # MQTT: publisher and/or subscriber, from what it sent and got
        "packets": {"client_to_server": cd.packets, "server_to_client": sd.packets},
        "wire_bytes": {"client_to_server": cd.wire_bytes, "server_to_client": sd.wire_bytes},
        "payload_bytes": {"client_to_server": pc, "server_to_client": ps},
        "start": conn.first_time, "end": conn.last_time, "duration": conn.last_time - conn.first_time,
        "handshake": c.handshake(), "teardown": c.teardown(), "closed_first": c.closed_first(),
        "messages": c.message_count, "notes": c.notes, "segments": c.segments(),
    }


def left_out_dict(c: Conversation) -> dict:
    return {"index": c.index, "client": endpoint(c.client), "server": endpoint(c.server),
            "packets": sum(c.packets), "wire_bytes": sum(c.wire_bytes)}


def to_dict(a: Analysis) -> dict:
    """The whole report as one dict (a complete analysis; write_json writes any)."""
    out = _json_parts(a)
    out["conversations"] = [conversation_dict(c) for c in a.conversations]
    out["messages"] = a.messages  # dataclasses: orjson writes their public fields
    return {k: out[k] for k in JSON_KEYS}


#: The JSON report's keys, in order.
JSON_KEYS = ("capture", "warnings", "hosts", "conversations", "arp", "messages", "latency", "totals",
             "left_out_conversations")


def _json_parts(a: Analysis) -> dict:
    """Everything of the JSON report but its two long lists, conversations and messages."""
    cap = a.capture
    return {
        "capture": {"file": str(cap.path), "format": cap.file_format, "link_types": cap.link_types,
                    "packets": cap.packets, "wire_bytes": cap.wire_bytes, "start_epoch": cap.first_epoch,
                    "duration": cap.duration, "truncated": cap.truncated, "tls": tls.section(a)},
        "warnings": a.warnings,
        "hosts": [{"ip": h.ip, "role": h.kind, "roles": h.roles, "conversations": h.conversations} for h in a.hosts],
        "arp": a.arp(),
        "latency": a.latency_stats(),
        "totals": a.totals(),
        "left_out_conversations": [c if isinstance(c, dict) else left_out_dict(c) for c in a.unrecognised],
    }


def to_json(a: Analysis) -> bytes:
    """UTF-8 JSON (orjson: the standard library's encoder takes longer than the whole analysis)."""
    import io

    out = io.BytesIO()
    write_json(a, out)
    return out.getvalue()


def write_json(a: Analysis, out) -> None:
    """Write the JSON report to a binary stream: indented for people up to JSON_INDENT_UP_TO messages.

    A spilled analysis (spill.Spill) has its conversations and messages in files, already as JSON:
    they are copied in between the other parts, byte for byte what orjson writes for the whole dict.
    """
    import orjson

    indent = orjson.OPT_INDENT_2 if a.message_count <= JSON_INDENT_UP_TO else 0
    if a.complete:
        out.write(orjson.dumps(to_dict(a), option=indent | orjson.OPT_APPEND_NEWLINE))
        return
    if indent:  # few messages but many conversations: small enough to load back and indent
        import io

        compact = io.BytesIO()
        a.spill.write_json(_json_parts(a), compact)
        out.write(orjson.dumps(orjson.loads(compact.getvalue()), option=indent | orjson.OPT_APPEND_NEWLINE))
        return
    a.spill.write_json(_json_parts(a), out)


# --- Markdown + Mermaid ---------------------------------------------------------------------------------

def _participant_keys(c: Conversation) -> tuple[tuple, str, tuple, str]:
    role = " and ".join(c.client_sides) or "client"  # MQTT: publisher, subscriber
    client_key = ("client", c.client[0], c.client_name or "", role)
    client_label = f"{role} {c.client_name} {c.client[0]}" if c.client_name else f"{role} {c.client[0]}"
    return client_key, client_label, ("server", c.server), f"{role_of(c, False)} {endpoint(c.server)}"


def participants(a: Analysis, events: list[dict]) -> tuple[dict, list[tuple[str, str]]]:
    """Who appears in the pictures: each server endpoint, and each client host (or MQTT client id).

    Only conversations that have an event in `events` take part. Returns
    {(conv index, from_client) -> participant id} and [(id, label)] in order of appearance.
    """
    ids: dict = {}
    order: list[tuple[str, str]] = []
    by_key: dict = {}
    for e in events:
        c = a.conversation(e["conv"])
        if (c.index, True) in ids:
            continue
        client_key, client_label, server_key, server_label = _participant_keys(c)
        for from_client, key, label in ((True, client_key, client_label), (False, server_key, server_label)):
            if key not in by_key:
                by_key[key] = f"P{len(order) + 1}"
                order.append((by_key[key], label))
            ids[(c.index, from_client)] = by_key[key]
    return ids, order


def diagram_events(a: Analysis, limit: int = MAX_DIAGRAM_MESSAGES) -> tuple[list[dict], int]:
    """Arrows for the pictures in time order (TCP handshakes and teardowns, messages); and how many
    messages were left off.

    At most 2 x `limit` arrows between at most MAX_DIAGRAM_PARTICIPANTS participants: the beginning
    of the capture, so that a picture stays readable.
    """
    key = ("diagram", limit)
    if key not in a.memo:
        a.memo[key] = _diagram_events(a, limit)
    return a.memo[key]


def _diagram_events(a: Analysis, limit: int) -> tuple[list[dict], int]:
    most = limit * 2
    shown = a.messages[:most]
    horizon = shown[-1].time if a.message_count > most else float("inf")
    events = []
    for c in a.conversations:
        if c.conn.first_time > horizon:
            break  # conversations are in order of their first packet
        events += [e for e in _tcp_events(c) if e["time"] <= horizon]
    for m in shown:
        label = short(f"{m.protocol if m.protocol != 'LINE' else ''} {m.summary}".strip(), 60)
        if m.latency is not None:
            label += f" ({ms(m.latency)})"
        events.append({"time": m.time, "conv": m.conversation, "from_client": m.from_client, "text": label,
                       "tcp": False, "number": m.number, "server_initiated": m.server_initiated})
    events.sort(key=lambda e: (e["time"], e.get("number", 0)))
    seen: set = set()
    kept = []
    for e in events:  # leave off conversations that would need more columns than fit
        client_key, _, server_key, _ = _participant_keys(a.conversation(e["conv"]))
        new = {client_key, server_key} - seen
        if len(seen) + len(new) > MAX_DIAGRAM_PARTICIPANTS:
            continue
        seen |= new
        kept.append(e)
        if len(kept) == most:
            break
    return kept, a.message_count - sum(1 for e in kept if not e["tcp"])


def _tcp_events(c: Conversation) -> list[dict]:
    h = c.handshake()
    td = c.teardown()
    marks = []  # (time, frame, from the client?, what the frame is if its flags are unknown)
    if h and h["syn"] is not None:
        marks.append((h["syn"], h["syn_frame"], True, "SYN"))
        if h["syn_ack"] is not None:
            marks.append((h["syn_ack"], h["syn_ack_frame"], False, "SYN-ACK"))
        if h["ack"] is not None:
            marks.append((h["ack"], h["ack_frame"], True, "ACK"))
    if td["kind"] == "reset":
        marks.append((td["time"], td["frame"], td["by"] == "client", "RST"))
    elif td["kind"] == "fin":
        first = td["initiator"] == "client"
        marks.append((td["first_fin"], td["first_fin_frame"], first, "FIN"))
        if "second_fin" in td:
            marks.append((td["second_fin"], td["second_fin_frame"], not first, "FIN"))
        if "last_ack" in td:
            marks.append((td["last_ack"], td["last_ack_frame"], first, "ACK"))
    return [{"time": t, "conv": c.index, "from_client": from_client, "text": c.flags_of(frame) or what, "tcp": True}
            for t, frame, from_client, what in marks]


_MERMAID_ENTITIES = {"#": "#35;", ";": "#59;", "<": "#lt;", ">": "#gt;", '"': "#quot;"}


def _mermaid_text(s: str) -> str:
    """Mermaid message text: one line, with the characters Mermaid reads as syntax written as entity codes."""
    return "".join(_MERMAID_ENTITIES.get(ch, ch) for ch in " ".join(s.split()))


def mermaid(a: Analysis, limit: int = MAX_DIAGRAM_MESSAGES) -> str:
    events, cut = diagram_events(a, limit)
    ids, order = participants(a, events)
    lines = ["sequenceDiagram"]
    for pid, label in order:
        lines.append(f"    participant {pid} as {_mermaid_text(label)}")
    for e in events:
        src = ids[(e["conv"], e["from_client"])]
        dst = ids[(e["conv"], not e["from_client"])]
        arrow = "-->>" if e["tcp"] else ("-)" if e.get("server_initiated") else "->>")
        text = e["text"] if e["tcp"] else f"[{e['number']}] {e['text']}"
        lines.append(f"    {src}{arrow}{dst}: {_mermaid_text(text)}")
    if cut:
        lines.append(f"    Note over {order[0][0]}: ... and {cut} more messages (see the report)")
    if not order:
        lines += ["    participant Capture", "    Note over Capture: no messages of the lab's protocols"]
    return "\n".join(lines) + "\n"


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def markdown(a: Analysis, png_name: str | None = None, max_messages: int = MAX_LISTED_MESSAGES) -> str:
    cap = a.capture
    out = [f"# Capture analysis: {cap.path.name}", "", *_capture_line(a), ""]
    for w in a.warnings:
        out.append(f"> **Warning:** {w}")
        out.append("")
    out += ["## Hosts and roles", "", "| host | role | what it does |", "| --- | --- | --- |"]
    for h in a.hosts:
        out.append(f"| {h.ip} | {h.kind} | {_md_escape('; '.join(h.roles))} |")
    out += ["", "## Conversations (TCP)", "",
            "| # | client | server | protocol | packets c→s / s→c | bytes c→s / s→c | payload c→s / s→c | duration |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in a.conversations[:MAX_LISTED_CONVERSATIONS]:
        pc, ps = c.packets
        bc, bs = c.wire_bytes
        yc, ys = c.payload_bytes
        out.append(f"| {c.index} | {endpoint(c.client)} | {endpoint(c.server)} | {c.label} | {pc} / {ps} | "
                   f"{_fmt(bc)} / {_fmt(bs)} | {_fmt(yc)} / {_fmt(ys)} | {c.duration:.6f} s |")
    out += ["", "### Handshakes and teardowns", ""]
    for c in a.conversations[:MAX_LISTED_CONVERSATIONS]:
        out.append(f"- **#{c.index}** handshake: {handshake_text(c)}; teardown: {teardown_text(c)}")
        out.append(f"  - segments (frame, TCP flags, sender, payload): {segments_text(c)}")
        for note in c.notes:
            out.append(f"  - note: {note}")
    out += ["", "### ARP", ""]
    if a.arp():
        out += ["| frame | time (s) | op | who asks / answers |", "| --- | --- | --- | --- |"]
        out += [f"| {row['frame']} | {row['time']:.6f} | {row['op']} | {_md_escape(arp_text(row))} |"
                for row in a.arp()[:MAX_LISTED_ARP]]
    else:
        out.append("None (on loopback there is no ARP).")
    out += ["", *tls.markdown_lines(a)]
    out += ["## The exchange", "", "```mermaid", mermaid(a).rstrip("\n"), "```", ""]
    if png_name:
        out += [f"![Ladder diagram]({png_name})", ""]
    out += ["## Messages", "", "| # | time (s) | frame | conv | from → to | TCP flags | message |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    limit = a.message_count if max_messages <= 0 else max_messages
    for m in a.messages[:limit]:
        conv = a.conversation(m.conversation)
        src, dst = (conv.client, conv.server) if m.from_client else (conv.server, conv.client)
        out.append(f"| {m.number} | {m.time:.6f} | {m.frame} | {m.conversation} | {endpoint(src)} → {endpoint(dst)} | "
                   f"{m.tcp_flags} | {_md_escape(message_line(m))} |")
    if a.message_count > limit:
        out.append(f"\n... {a.message_count - limit} more messages in the JSON file.")
    out += ["", "## Latency", "", "| what | count | min | median | p99 | max |",
            "| --- | --- | --- | --- | --- | --- |"]
    for s in a.latency_stats():
        out.append(f"| {s['what']} | {s['count']} | {ms(s['min'])} | {ms(s['median'])} | {ms(s['p99'])} | "
                   f"{ms(s['max'])} |")
    t = a.totals()
    out += ["", "## Totals", "",
            f"- On the wire: {_fmt(t['packets'])} packets, {_fmt(t['wire_bytes'])} bytes.",
            f"- Recognised conversations: {_fmt(t['recognised_packets'])} packets, "
            f"{_fmt(t['recognised_wire_bytes'])} bytes on the wire carrying {_fmt(t['application_payload_bytes'])} "
            f"bytes of application payload ({t['payload_share'] * 100:.1f} %).",
            f"- Left out: {_left_out(t)}.", ""]
    return "\n".join(out)
