"""A big capture's analysis in bounded memory: the long lists go to files as they are built.

What the text report lists (the first messages and conversations) stays in memory; every
message and conversation is also written, as the JSON report will hold it, to anonymous
temporary files, and report.write_json / report.write_text copy them into place. A capture
the size of a lab exercise never gets here: below SPILL_AFTER_MESSAGES messages and
SPILL_AFTER_CONVERSATIONS conversations the analysis stays complete, exactly as
`analyze(path)` gives it.
"""

from __future__ import annotations

import heapq
import io
import itertools
import os
import tempfile
from array import array

import orjson

from .analysis import Analysis, Collector, Conversation
from .model import Message
from .report import (
    JSON_INDENT_UP_TO,
    MAX_DIAGRAM_MESSAGES,
    MAX_LISTED_CONVERSATIONS,
    MAX_LISTED_MESSAGES,
    MAX_LISTED_SEGMENTS,
    conversation_dict,
    left_out_dict,
    message_row,
)
from .streams import Stream

#: Past this many messages, or conversations, the lists are written out instead of kept.
SPILL_AFTER_MESSAGES = JSON_INDENT_UP_TO
SPILL_AFTER_CONVERSATIONS = 5000
#: What stays in memory once spilling: what the text and Markdown reports list and the pictures draw.
KEPT_MESSAGES = max(MAX_LISTED_MESSAGES, 2 * MAX_DIAGRAM_MESSAGES)
KEPT_CONVERSATIONS = MAX_LISTED_CONVERSATIONS
#: Bytes copied at a time from the spill files.
COPY_CHUNK = 1 << 20
#: Conversations or messages gathered before one write.
BUFFERED = 512
_EMPTY = Stream()


class Spill(Collector):
    """A Collector that, past a lab-sized capture, writes conversations and messages out as JSON."""

    def __init__(self, directory=None, all_text: bool = False):
        super().__init__()
        self.directory = directory  # where the temporary files go (None: the system's temporary folder)
        self.all_text = all_text  # also write every message's line of the text report (--all)
        self.spilling = False
        self.conv_file = self.msg_file = self.text_file = None
        # where each conversation's JSON is in conv_file: its index, offset and length
        self.conv_at = (array("q"), array("q"), array("q"))
        self.conv_end = 0
        self.kept: list = []  # max-heap of (-index, conversation): the KEPT_CONVERSATIONS lowest indexes so far
        # the pictures' conversations: those that began before the last message they may draw (the horizon)
        self.early: dict = {}
        self.horizon: float | None = None
        self.messages_written = 0
        self.conv_buffer: list = []  # JSON not yet written (one write per BUFFERED)
        self.msg_buffer: list = []  # messages not yet written (complete: nothing changes them once received)
        self.text_buffer: list = []

    # --- receiving -----------------------------------------------------------------------------------------

    def conversation(self, conv: Conversation) -> None:
        if not self.spilling:
            super().conversation(conv)
            if self.conversation_count > SPILL_AFTER_CONVERSATIONS:
                self._start()
            return
        self.conversation_count += 1
        self._aggregate(conv)
        self._write_conversation(conv)

    def not_recognised(self, conv: Conversation) -> None:
        super().not_recognised(conv)
        if self.spilling:
            self.unrecognised[-1] = left_out_dict(conv)  # its streams are not needed any more

    def message(self, m: Message) -> None:
        if self.message_count + 1 == 2 * MAX_DIAGRAM_MESSAGES:  # the last message the pictures may draw
            self.horizon = m.time
            for index in [i for i, c in self.early.items() if c.conn.first_time > m.time]:
                del self.early[index]
        if not self.spilling:
            super().message(m)
            if self.message_count > SPILL_AFTER_MESSAGES:
                self._start()
            return
        self.message_count += 1
        self._write_message(m)
        if len(self.messages) < KEPT_MESSAGES:
            self.messages.append(m)

    def _start(self) -> None:
        """Write out everything received so far; from now on keep only what the text report lists."""
        self.spilling = True
        self.conv_file = tempfile.TemporaryFile(prefix="analyze-conversations-", dir=self.directory)
        self.msg_file = tempfile.TemporaryFile(prefix="analyze-messages-", dir=self.directory)
        if self.all_text:
            self.text_file = tempfile.TemporaryFile(prefix="analyze-text-", dir=self.directory)
        for conv in self.conversations:
            self._write_conversation(conv)
        self.conversations = []
        for m in self.messages:
            self._write_message(m)
        del self.messages[KEPT_MESSAGES:]
        self.unrecognised = [c if isinstance(c, dict) else left_out_dict(c) for c in self.unrecognised]

    def _write_conversation(self, conv: Conversation) -> None:
        data = orjson.dumps(conversation_dict(conv))
        index, offset, length = self.conv_at
        index.append(conv.index)
        offset.append(self.conv_end)
        length.append(len(data))
        self.conv_buffer.append(data)
        if len(self.conv_buffer) >= BUFFERED:
            self._flush_conversations()
        self.conv_end += len(data) + 1
        early = self.horizon is None or conv.conn.first_time <= self.horizon
        if early:
            _trim(conv)
            self.early[conv.index] = conv
        if len(self.kept) < KEPT_CONVERSATIONS or conv.index < -self.kept[0][0]:
            if not early:
                _trim(conv)
            (heapq.heappush if len(self.kept) < KEPT_CONVERSATIONS else heapq.heapreplace)(self.kept,
                                                                                       (-conv.index, conv))
        elif not early:  # its messages still point at it, for their endpoints: let go of everything else
            conv.messages = []
            conv.conn.log = []
            conv.cs = conv.sc = _EMPTY

    def _flush_conversations(self) -> None:
        if self.conv_buffer:
            self.conv_file.write(b",".join(self.conv_buffer) + b",")
            self.conv_buffer.clear()

    def _write_message(self, m: Message) -> None:
        self.msg_buffer.append(m)  # written BUFFERED at a time: one orjson call for the list (the same bytes)
        if self.text_file is not None:
            self.text_buffer.append(message_row(m, m._conv))
        if len(self.msg_buffer) >= BUFFERED:
            self._flush_messages()

    def _flush_messages(self) -> None:
        if self.msg_buffer:
            if self.messages_written:
                self.msg_file.write(b",")
            self.msg_file.write(orjson.dumps(self.msg_buffer)[1:-1])  # "[m1,m2]" without its brackets
            self.messages_written += len(self.msg_buffer)
            self.msg_buffer.clear()
        if self.text_buffer:
            self.text_file.write(("\n".join(self.text_buffer) + "\n").encode())
            self.text_buffer.clear()

    def finish(self, a: Analysis) -> None:
        if not self.spilling:
            return
        a.spill = self
        kept = {c.index: c for _i, c in self.kept}
        kept.update(self.early)
        a.conversations = sorted(kept.values(), key=lambda c: c.index)  # the first ones: what the text lists
        a.messages = self.messages
        a.unrecognised = sorted(self.unrecognised, key=lambda c: c["index"] if isinstance(c, dict) else c.index)
        self._flush_conversations()
        self._flush_messages()
        for f in (self.conv_file, self.msg_file, self.text_file):
            if f is not None:
                f.flush()

    # --- writing the reports -------------------------------------------------------------------------------

    def write_json(self, parts: dict, out) -> None:
        """The compact JSON report: `parts` (report._json_parts) around the spilled lists."""
        dumps = orjson.dumps
        out.write(b'{"capture":' + dumps(parts["capture"]) + b',"warnings":' + dumps(parts["warnings"])
                  + b',"hosts":' + dumps(parts["hosts"]) + b',"conversations":[')
        self._copy_conversations(out)
        out.write(b'],"arp":' + dumps(parts["arp"]) + b',"messages":[')
        self.msg_file.seek(0)
        _copy(self.msg_file, out)
        out.write(b'],"latency":' + dumps(parts["latency"]) + b',"totals":' + dumps(parts["totals"])
                  + b',"left_out_conversations":' + dumps(parts["left_out_conversations"]) + b"}\n")

    def _copy_conversations(self, out) -> None:
        """In order of their index (they were written as they ended; each with a comma after it): runs that
        follow each other in the file are copied in one read."""
        index, offset, length = self.conv_at
        fd = self.conv_file.fileno()
        start = end = -1
        for i in sorted(range(len(index)), key=index.__getitem__):
            if offset[i] != end:
                if start >= 0:
                    _pread_to(fd, start, end, out)
                start = offset[i]
            end = offset[i] + length[i] + 1
        if start >= 0:
            _pread_to(fd, start, end - 1, out)  # without the last comma

    def copy_text(self, stream, limit: int) -> None:
        """Write the first `limit` message lines of the text report (analyze(all_text=True) wrote them)."""
        if self.text_file is None:
            raise ValueError("the message lines were not kept: analyze(..., all_text=True) keeps them")
        self.text_file.seek(0)
        lines = io.TextIOWrapper(self.text_file, encoding="utf-8", newline="")
        for line in itertools.islice(lines, limit):
            stream.write(line)
        lines.detach()


def _trim(conv: Conversation) -> None:
    """Keep of a written-out conversation what the text report and the pictures use."""
    memo, conn = conv._memo, conv.conn
    memo["payload_bytes"] = conv.payload_bytes
    memo["message_count"] = len(conv.messages)
    memo["segment_count"] = len(conn.log)
    memo["segments"] = conv.segments()[:MAX_LISTED_SEGMENTS]
    flags = memo.get("flags")
    if flags is None:
        conv.flags_of(0)
        flags = memo["flags"]
    wanted = [ev[1] for ev in (conn.syn, conn.synack, conn.handshake_ack, conn.last_ack,
                               conn.ab.fin, conn.ba.fin, conn.ab.rst, conn.ba.rst) if ev is not None]
    memo["flags"] = {frame: flags[frame] for frame in wanted if frame in flags}
    conv.messages = []
    conn.log = []
    conv.cs = conv.sc = Stream()


def _pread_to(fd: int, start: int, end: int, out) -> None:
    while start < end:
        chunk = os.pread(fd, min(COPY_CHUNK, end - start), start)
        if not chunk:
            raise OSError("a temporary file of the analysis ended early")
        out.write(chunk)
        start += len(chunk)


def _copy(f, out) -> None:
    while chunk := f.read(COPY_CHUNK):
        out.write(chunk)
