"""Read a capture of the lab's protocols and explain it: who talks to whom, how, how fast, at what cost.

`python -m labkit.analyze <file.pcap[ng]>` prints the report and writes it beside the capture as
Markdown (with a Mermaid sequence diagram), a PNG ladder diagram and JSON. The same analysis a
student writes by hand from Wireshark: hosts and roles, TCP handshakes and teardowns, every
application message, latency, and what the protocol costs in bytes.
"""

from .analysis import Analysis, analyze
from .capture import CaptureError

__all__ = ["Analysis", "CaptureError", "analyze"]
