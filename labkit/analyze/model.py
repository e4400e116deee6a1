"""What an analysis is made of: application messages and how they pair."""

from __future__ import annotations

from dataclasses import dataclass

#: Longest text kept of a body or payload in the report (the JSON keeps this much too).
BODY_PREVIEW_CHARS = 2000


@dataclass(eq=False)  # not slots: orjson writes a plain dataclass much faster
class Message:
    """One application-level message: an HTTP request, an MQTT packet, a text line.

    Its public fields are what the JSON report holds for it (orjson writes the dataclass as it
    is and leaves out the fields starting with "_": the links to other messages).
    """

    time: float  # when its last byte had arrived, seconds since the capture's first packet
    frame: int  # the frame that completed it (Wireshark's frame number)
    conversation: int  # index of its TCP connection
    from_client: bool
    protocol: str  # "HTTP", "SOAP", "MQTT", "LINE"
    kind: str  # e.g. "request", "response", "PUBLISH", "line", "reply", "event"
    summary: str  # one line for people
    size: int  # bytes of the stream it occupies (headers and body)
    fields: dict  # what it carries, decoded (method, uri, status, topic, payload, text, ...)
    first_frame: int = 0  # the frame carrying its first byte
    _offset: int = 0  # where it starts in its direction's stream (decoders pass both positionally: faster)
    number: int = 0  # its position in the whole capture's message list (1-based)
    reply_to: int | None = None  # number of the request it answers
    latency: float | None = None  # seconds from that request to this message
    forwarded_from: int | None = None  # MQTT: number of the PUBLISH the broker forwarded here
    server_initiated: bool = False  # a line the server sent on its own (an upcall)
    tcp_flags: str = ""  # the TCP flags of the segment that completed it, as Wireshark names them (e.g. "PSH-ACK")
    _request: Message | None = None
    _source: Message | None = None
    _pair_label: str = ""  # what kind of exchange it completes, e.g. "HTTP GET /add -> response"
    _conv: object = None  # the analysis.Conversation it belongs to

    @property
    def request(self) -> Message | None:
        """The request this message answers."""
        return self._request

    @property
    def source(self) -> Message | None:
        """MQTT: the PUBLISH a broker received that it forwarded as this one."""
        return self._source

    def pair(self, request: Message, label: str) -> None:
        """This message answers `request`; `label` groups such exchanges in the latency table."""
        self._request = request
        self._pair_label = label
        self.latency = max(0.0, self.time - request.time)

    @property
    def pair_label(self) -> str:
        return self._pair_label

    def forwarded(self, source: Message) -> None:
        self._source = source


def preview(text: str, limit: int = BODY_PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


def printable(data: bytes) -> str:
    """UTF-8 text, with anything that is not valid UTF-8 shown escaped (\\xNN)."""
    return data.decode("utf-8", "backslashreplace")


def short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split()) if ("\n" in text or "\r" in text or "  " in text) else text
    return text if len(text) <= limit else text[: limit - 1] + "…"
