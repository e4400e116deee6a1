"""The lab's line protocol (reqresp and upcall): one UTF-8 line per message, `\\n` ends it.

Client lines are requests. A server line answers the oldest unanswered request
(`Echo: <message>`, `Upcall event: Processing <message>`, `Error: ...`), or,
when nothing is waiting or it is another `Upcall event:`, is a call the
server made on its own initiative: the upcall that request/response lacks.
"""

from __future__ import annotations

import re

from .model import BODY_PREVIEW_CHARS, Message, preview, short
from .streams import Stream

REPLY_PREFIXES = ("Echo: ", "Error: ", "Upcall event: Processing ")
EVENT_PREFIX = "Upcall event: "
SERVER_INITIATED = " (server-initiated)"
KNOWN_PREFIXES = (b"Echo: ", b"Error: ", b"Upcall event: ")
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # control characters no text line has
#: Bytes at the start of each stream that are looked at to recognise the protocol.
SNIFF_BYTES = 4096


def _text(data: bytes, whole_lines: bool) -> bool:
    """Printable UTF-8 (a multi-byte character cut at the end is fine); with `whole_lines`, at least one line."""
    if not data:
        return True
    if whole_lines and b"\n" not in data:
        return False
    if _CONTROL.search(data):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start >= len(data) - 3 and e.reason == "unexpected end of data"
    return True


def looks_like_lines(cs: bytes, sc: bytes, lab_port: bool) -> bool:
    """The server answers in text lines like the lab's servers do.

    Without a lab port the server's first line must start with one of the lab's
    prefixes (so an unknown text protocol is not claimed). The client's side is
    not judged: a line too long or not UTF-8 is what the server answers with `Error:`.
    """
    cs, sc = cs[:SNIFF_BYTES], sc[:SNIFF_BYTES]
    if sc.startswith(KNOWN_PREFIXES):
        return _text(sc, whole_lines=False)
    if not lab_port:
        return False
    if sc:
        return _text(sc, whole_lines=len(sc) < SNIFF_BYTES)
    return _text(cs, whole_lines=False)


def decode(conn: int, cs: Stream, sc: Stream) -> tuple[list[Message], list[str]]:
    notes: list[str] = []
    messages: list[Message] = []
    for stream, from_client in ((cs, True), (sc, False)):
        data = stream.data
        if not data:
            continue
        parts = data.split(b"\n")
        if parts[-1]:
            notes.append(f"the {'client' if from_client else 'server'}'s last line has no newline "
                         "(still being written when the capture stopped, or cut off)")
        else:
            parts.pop()
        kind = "line" if from_client else "reply"
        start = 0
        span = stream.span
        size = len(data)
        for part in parts:
            end = start + len(part) + 1
            if end > size:  # the last line, without its newline
                end = size
            text = part.decode("utf-8", "backslashreplace").rstrip("\r")
            if len(text) > BODY_PREVIEW_CHARS:
                text = preview(text)
            t, frame, first_frame = span(start, end)
            messages.append(Message(t, frame, conn, from_client, "LINE", kind, text, end - start,
                                    {"text": text}, first_frame, start))
            start = end
    messages.sort(key=_order)
    pending: list[Message] = []
    for m in messages:
        text = m.summary
        if m.from_client:
            if len(text) > 100:
                m.summary = short(text, 100)
            pending.append(m)
            continue
        reply = text.startswith(REPLY_PREFIXES) or (pending and not text.startswith(EVENT_PREFIX))
        if reply and pending:
            subject = text.split(": ", 1)[1] if ": " in text else ""
            if subject.startswith("Processing "):
                subject = subject[len("Processing "):]
            req = pending[0] if pending[0].fields["text"] == subject else \
                next((p for p in pending if p.fields["text"] == subject), pending[0])
            pending.remove(req)
            kind = "Upcall event: Processing" if text.startswith("Upcall event: Processing") else \
                text.split(":", 1)[0] if ": " in text else "reply"
            m.pair(req, f"line -> {kind}")
            if len(text) > 100:
                m.summary = short(text, 100)
        else:
            m.kind = "event"
            m.server_initiated = True
            m.summary = f"{short(text, 90)}{SERVER_INITIATED}"
    return messages, notes


def _order(m: Message) -> tuple:
    return m.time, m.frame, not m.from_client, m._offset
