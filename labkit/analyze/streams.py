"""TCP stream reassembly: the bytes each side sent, in order, once, with when they arrived.

Segments are put in sequence-number order; retransmissions and overlaps are
dropped, so a decoder sees exactly the byte stream the application wrote. A
hole (a segment the capture missed, or one cut by the snap length) ends the
stream there, and the stream says so.
"""

from __future__ import annotations

from bisect import bisect_left

from .capture import Direction

_WRAP = 1 << 32
_HALF = 1 << 31


class Stream:
    """One direction's reassembled bytes and the time/frame at which each part arrived."""

    __slots__ = ("data", "ends", "times", "frames", "gap", "retransmitted")

    def __init__(self, data: bytes = b"", ends: list | None = None, times: list | None = None,
                 frames: list | None = None, gap: int | None = None, retransmitted: int = 0):
        self.data = data
        self.ends = ends if ends is not None else []  # stream offset just past each arriving piece, increasing
        self.times = times if times is not None else []  # seconds since the capture's first packet
        self.frames = frames if frames is not None else []
        self.gap = gap  # offset where data is missing from the capture, if any
        self.retransmitted = retransmitted  # segments that repeated bytes already seen

    def __len__(self) -> int:
        return len(self.data)

    def span(self, start: int, end: int) -> tuple[float, int, int]:
        """For the bytes start..end: (time the last one arrived, its frame, the frame of the first one)."""
        ends = self.ends
        last = len(ends) - 1
        i = bisect_left(ends, end)
        if i > last:
            i = last
        j = bisect_left(ends, start + 1, 0, i + 1)
        if j > last:
            j = last
        return self.times[i], self.frames[i], self.frames[j]


def reassemble(d: Direction, t0_ns: int) -> Stream:
    """Put one direction's segments together into a Stream."""
    segs = d.segments
    if not segs:
        return Stream()
    if d.isn is not None:
        base = (d.isn + 1) & 0xFFFFFFFF
        if len(segs) == 1:  # the usual single request or answer of a short connection
            seq, payload, ts, frame, wire_len = segs[0]
            if seq == base and len(payload) == wire_len:
                return Stream(payload, [wire_len], [(ts - t0_ns) / 1e9], [frame])
    else:  # no SYN in the capture: start at the lowest sequence number seen
        s0 = segs[0][0]
        low = 0
        for seg in segs:
            rel = (seg[0] - s0) & 0xFFFFFFFF
            if rel >= _HALF:
                rel -= _WRAP
            low = min(low, rel)
        base = (s0 + low) & 0xFFFFFFFF
    parts: list = []
    ends: list = []
    times: list = []
    frames: list = []
    expected = 0
    in_order = True
    for seq, payload, ts, frame, wire_len in segs:
        if (seq - base) & 0xFFFFFFFF != expected or len(payload) != wire_len:
            in_order = False
            break
        parts.append(payload)
        expected += wire_len
        ends.append(expected)
        times.append(ts)
        frames.append(frame)
    if in_order:
        return Stream(b"".join(parts), ends, [(t - t0_ns) / 1e9 for t in times], frames)
    return _reassemble_sorted(segs, base, t0_ns)


def _reassemble_sorted(segs, base: int, t0_ns: int) -> Stream:
    """Out-of-order, retransmitted or missing segments: the careful path."""
    ordered = []
    for seq, payload, ts, frame, wire_len in segs:
        rel = (seq - base) & 0xFFFFFFFF
        if rel >= _HALF:  # before the start (e.g. a keep-alive probe at ISN): nothing new
            rel -= _WRAP
        ordered.append((rel, -wire_len, ts, frame, payload, wire_len))
    ordered.sort(key=lambda s: (s[0], s[1]))
    parts: list = []
    ends: list = []
    times: list = []
    frames: list = []
    expected = 0
    latest_ts, latest_frame = None, 0
    retransmitted = 0
    gap = None
    for rel, _neg, ts, frame, payload, wire_len in ordered:
        end = rel + wire_len
        if end <= expected:
            retransmitted += 1
            continue
        if rel > expected:  # a hole: the capture missed these bytes
            gap = expected
            break
        new = payload[expected - rel:]
        if latest_ts is None or ts > latest_ts:  # the data is complete when its last piece arrived
            latest_ts, latest_frame = ts, frame
        if not new:
            gap = expected
            break
        parts.append(new)
        expected += len(new)
        ends.append(expected)
        times.append((latest_ts - t0_ns) / 1e9)
        frames.append(latest_frame)
        if len(payload) < wire_len:  # cut by the snap length
            gap = expected
            break
    return Stream(b"".join(parts), ends, times, frames, gap, retransmitted)
