"""Read a capture of the lab's protocols and explain it: who talks to whom, how, how fast, at what cost.

`python -m labkit.analyze <file.pcap[ng]>` prints the report and writes it beside the capture as
Markdown (with a Mermaid sequence diagram), a PNG ladder diagram and JSON. The same analysis a
student writes by hand from Wireshark: hosts and roles, TCP handshakes and teardowns, every
application message, latency, and what the protocol costs in bytes.

The API, for tools built on it (labkit.compare, the assignment checks):

- `analyze(path)` returns an `Analysis` with everything in memory: `conversations` (each with
  `.messages`, `.handshake()`, `.teardown()`, `.closed_first()`, `.segments()`), `messages` in
  capture order (numbered, paired: `reply_to`, `forwarded_from`), `hosts`, `warnings`, `arp()`,
  `totals()`, `latency_stats()`. A file that is not a capture raises `CaptureError`.
- The file is read as a stream either way: a connection is decoded once it has ended, and its
  messages are handed on in capture order. `analyze(path, on_message=f)` calls `f(message)` for
  every message as it is numbered, before it is kept or written out (what `f` masks stays
  masked), e.g. to look at each one without keeping them; `on_conversation=g` calls
  `g(conversation)` for every TCP conversation, recognised or not, with its reassembled streams.
- `analyze(path, keep_messages=False)` (what `python -m labkit.analyze` uses) keeps memory
  bounded on any capture: past a lab-sized one (5,000 messages or conversations) only what the
  text report lists stays in `messages` and `conversations` (`message_count` and
  `conversation_count` count them all; `complete` is False), and the full lists go to
  temporary files that `report.write_json` and `report.write_text` copy into place.
- A protocol is a `decode_<name>.py` module plus an entry in `analysis.DECODERS` and in
  `analysis.detect`.
"""

from .analysis import Analysis, analyze
from .capture import CaptureError

__all__ = ["Analysis", "CaptureError", "analyze"]
