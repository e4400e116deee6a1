"""HTTP/1.x on a reassembled TCP stream: requests, responses, and SOAP inside them.

Messages are framed as RFC 9112 says (Content-Length, chunked, or until the
connection closes), so keep-alive and pipelined requests come out one by one.
A SOAP body is parsed without resolving entities or loading DTDs.
"""

from __future__ import annotations

import re
import zlib

from .model import BODY_PREVIEW_CHARS, Message, preview, printable, short
from .streams import Stream

METHODS = (b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT")
_HEAD_END = b"\r\n\r\n"
_METHOD_NAMES = frozenset(m.decode() for m in METHODS)
_HEADER = re.compile(r"\r\n([^:\r\n]+):[ \t]*([^\r\n]*)")
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")
#: A header block longer than this is not HTTP we can read.
MAX_HEADER_BYTES = 256 * 1024
#: Header blocks parsed once and remembered: the same client and server send the same headers again and
#: again (a capture of many short connections repeats them on each), so most are parsed only once.
MAX_HEADER_BLOCKS_SEEN = 4096
_HEADERS_SEEN: dict = {}


def looks_like_request(data: bytes) -> bool:
    """Does a stream start with an HTTP/1.x request line (`GET /path HTTP/1.1`)?"""
    sp = data.find(b" ", 0, 8)
    if sp < 3 or data[:sp] not in METHODS:
        return False
    eol = data.find(b"\r\n", sp, 8192)
    line = data[sp:eol] if eol > 0 else data[sp:8192]
    return b" HTTP/1." in line or (eol < 0 and len(data) < 8192)


def looks_like_response(data: bytes) -> bool:
    return data[:7] == b"HTTP/1." and data[8:9] == b" " and data[9:12].isdigit()


class _Raw:
    __slots__ = ("start", "end", "first_line", "headers", "body")

    def __init__(self, start, end, first_line, headers, body):
        self.start, self.end, self.first_line, self.headers, self.body = start, end, first_line, headers, body


def _parse(data: bytes, requests: bool, methods: list[str] | None = None, closed: bool = True) -> tuple[list, int]:
    """Split a stream into HTTP messages; returns them and how many bytes were left incomplete."""
    out: list = []
    pos = 0
    size = len(data)
    answered = 0  # responses: how many requests have been answered so far (for HEAD)
    while pos < size:
        while data.startswith(b"\r\n", pos):  # tolerated between messages
            pos += 2
        if pos >= size:
            break
        head_end = data.find(_HEAD_END, pos, pos + MAX_HEADER_BYTES)
        if head_end < 0:
            break
        head = data[pos:head_end].decode("latin-1")
        eol = head.find("\r\n")
        first = head if eol < 0 else head[:eol]
        if requests and first[:first.find(" ")] not in _METHOD_NAMES:
            break
        if not requests and not first.startswith("HTTP/1."):
            break
        fields = head[eol:] if eol >= 0 else ""
        known = _HEADERS_SEEN.get(fields)
        if known is None:
            if len(_HEADERS_SEEN) >= MAX_HEADER_BLOCKS_SEEN:
                _HEADERS_SEEN.clear()
            known = _HEADERS_SEEN[fields] = {name.strip().lower(): value.rstrip()
                                             for name, value in _HEADER.findall(fields)}
        headers = dict(known)  # each message its own dict
        body_start = head_end + 4
        status = 0
        if not requests:
            try:
                status = int(first.split(" ", 2)[1])
            except (IndexError, ValueError):
                break
        te = headers.get("transfer-encoding", "").lower()
        if not requests and (100 <= status < 200 or status in (204, 304)
                             or (methods and answered < len(methods) and methods[answered] == "HEAD")):
            body, end = b"", body_start
        elif "chunked" in te:
            got = _dechunk(data, body_start)
            if got is None:
                break
            body, end = got
        elif (length := headers.get("content-length")) is not None:
            try:
                n = int(length)
            except ValueError:
                break
            end = body_start + n
            if end > size:
                break
            body = data[body_start:end]
        elif requests:
            body, end = b"", body_start
        else:  # a response without a length: its body runs until the server closes
            if not closed:
                break
            body, end = data[body_start:], size
        out.append(_Raw(pos, end, first, headers, body))
        if not requests and not (100 <= status < 200 and status != 101):
            answered += 1
        pos = end
    return out, size - pos


def _dechunk(data: bytes, pos: int):
    body = []
    size = len(data)
    while True:
        eol = data.find(b"\r\n", pos, pos + 1024)
        if eol < 0:
            return None
        try:
            n = int(data[pos:eol].split(b";", 1)[0].strip(), 16)
        except ValueError:
            return None
        pos = eol + 2
        if n == 0:
            trailer_end = data.find(b"\r\n\r\n", pos - 2, pos + 8192)
            if trailer_end < 0:
                return None
            return b"".join(body), trailer_end + 4
        if pos + n + 2 > size:
            return None
        body.append(data[pos:pos + n])
        pos += n + 2


def _body_text(raw: _Raw) -> str:
    body = raw.body
    enc = raw.headers.get("content-encoding", "").lower()
    ctype = raw.headers.get("content-type", "").lower()
    if not enc and ("json" in ctype or "xml" in ctype or ctype.startswith("text/")) and \
            ("charset" not in ctype or "utf-8" in ctype):  # the usual case: JSON, XML or text in UTF-8
        return body.decode("utf-8", "backslashreplace")
    try:
        if enc == "gzip":
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            body = zlib.decompress(body)
    except zlib.error:
        return f"<{len(raw.body)} bytes, {enc} that does not decompress>"
    charset = "utf-8"
    if "charset=" in ctype:
        charset = ctype.split("charset=", 1)[1].split(";")[0].strip().strip('"') or "utf-8"
    if body and not _is_text(body, ctype):
        return f"<{len(body)} bytes of {ctype or 'binary data'}>"
    try:
        return body.decode(charset, errors="backslashreplace")
    except LookupError:
        return printable(body)


def _is_text(body: bytes, ctype: str) -> bool:
    if ctype.startswith("text/") or "json" in ctype or "xml" in ctype or "form-urlencoded" in ctype:
        return True
    return not _CONTROL.search(body, 0, 512)


def _is_soap(raw: _Raw) -> bool:
    ctype = raw.headers.get("content-type", "").lower()
    if "soap" in ctype or "soapaction" in raw.headers:
        return True
    return ("xml" in ctype or raw.body.lstrip()[:1] == b"<") and b"Envelope" in raw.body[:2048]


def _is_wsdl(raw: _Raw) -> bool:
    body = raw.body  # searched in its first 4096 bytes, without copying them
    return body.find(b"definitions", 0, 4096) >= 0 and (body.find(b"wsdl", 0, 4096) >= 0
                                                          or body.find(b"WSDL", 0, 4096) >= 0)


def decode(conn: int, cs: Stream, sc: Stream, closed: bool = True) -> tuple[list[Message], list[str]]:
    """The HTTP messages of one connection (client->server stream `cs`, server->client `sc`), paired."""
    notes: list[str] = []
    reqs, left_req = _parse(cs.data, True)
    methods = [r.first_line.split(" ", 1)[0] for r in reqs]
    resps, left_resp = _parse(sc.data, False, methods, closed)
    if left_req:
        notes.append(f"{left_req} bytes from the client do not form a complete HTTP request")
    if left_resp:
        notes.append(f"{left_resp} bytes from the server do not form a complete HTTP response")
    requests = [_request(conn, cs, r) for r in reqs]
    responses = [_response(conn, sc, r) for r in resps]
    pending = list(requests)
    for resp in responses:
        status = resp.fields["status"]
        if 100 <= status < 200 and status != 101:
            if pending:
                resp.pair(pending[0], f"HTTP {status} (interim)")
            continue
        if pending:
            req = pending.pop(0)
            resp.pair(req, _pair_label(req))
            if req.protocol == "SOAP" and resp.protocol == "SOAP" and not resp.fields["soap"].get("operation"):
                resp.fields["soap"]["operation"] = req.fields["soap"].get("operation")
    return requests + responses, notes


def _request(conn: int, stream: Stream, raw: _Raw) -> Message:
    parts = raw.first_line.split(" ")
    method = parts[0]
    target = parts[1] if len(parts) > 1 else ""
    version = parts[2] if len(parts) > 2 else ""
    t, frame, first_frame = stream.span(raw.start, raw.end)
    body = _body_text(raw) if raw.body else ""
    fields = {"method": method, "uri": target, "version": version, "headers": raw.headers,
              "body": body if len(body) <= BODY_PREVIEW_CHARS else preview(body), "body_bytes": len(raw.body)}
    summary = f"{method} {target}"
    protocol = "HTTP"
    if raw.body and _is_soap(raw):
        soap = soap_fields(raw.body)
        if soap:
            protocol = "SOAP"
            fields["soap"] = soap
            summary = f"{method} {target} {soap_summary(soap)}"  # protocol SOAP: "SOAP POST / add(a=1, b=2)"
    elif target[-5:].lower() in ("?wsdl", "&wsdl"):
        fields["wsdl"] = True
        summary += " (asks for the WSDL)"
    if body and protocol == "HTTP":
        summary += " " + short(body, 60)
    return Message(t, frame, conn, True, protocol, "request", summary, raw.end - raw.start, fields,
                   first_frame, raw.start)


def _response(conn: int, stream: Stream, raw: _Raw) -> Message:
    parts = raw.first_line.split(" ", 2)
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    t, frame, first_frame = stream.span(raw.start, raw.end)
    body = _body_text(raw) if raw.body else ""
    fields = {"status": status, "reason": reason, "version": parts[0], "headers": raw.headers,
              "body": body if len(body) <= BODY_PREVIEW_CHARS else preview(body), "body_bytes": len(raw.body)}
    protocol = "HTTP"
    summary = f"{status} {reason}".rstrip()
    if raw.body and _is_soap(raw):
        soap = soap_fields(raw.body)
        if soap:
            protocol = "SOAP"
            fields["soap"] = soap
            summary = f"{summary} {soap_summary(soap)}"
    elif raw.body and _is_wsdl(raw):
        wsdl = soap_fields(raw.body)
        if wsdl:
            fields["wsdl"] = wsdl
            summary += f" WSDL ({', '.join(wsdl.get('operations', [])) or 'no operations'})"
    if body and protocol == "HTTP" and "wsdl" not in fields:
        summary += " " + short(body, 60)
    return Message(t, frame, conn, False, protocol, "response", summary, raw.end - raw.start, fields,
                   first_frame, raw.start)


def _pair_label(req: Message) -> str:
    if req.protocol == "SOAP":
        return f"SOAP {req.fields['soap'].get('operation')} -> response"
    uri = req.fields["uri"]
    return f"HTTP {req.fields['method']} {uri if req.fields.get('wsdl') else uri.split('?')[0]} -> response"


# --- SOAP -----------------------------------------------------------------------------------------

_parser = None


def _xml_parser():
    global _parser
    if _parser is None:
        from lxml import etree

        # never fetch, never expand: a capture may carry hostile XML
        _parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                                  remove_comments=True, remove_pis=True)
    return _parser


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(el):
    return [c for c in el if isinstance(c.tag, str)]


def soap_fields(body: bytes) -> dict | None:
    """Operation, arguments, result or fault of a SOAP envelope (or the operations of a WSDL)."""
    from lxml import etree

    try:
        root = etree.fromstring(body, _xml_parser())
    except (etree.XMLSyntaxError, ValueError):
        return {"error": "malformed XML"} if b"Envelope" in body[:2048] else None
    if root is None:
        return None
    name = _local(root.tag)
    if name == "definitions":  # a WSDL document
        ops = []
        for el in root.iter():
            if _local(el.tag) == "portType":
                ops += [c.get("name") for c in _children(el) if _local(c.tag) == "operation"]
        service = next((el.get("name") for el in root.iter() if _local(el.tag) == "service"), None)
        return {"wsdl": True, "service": service, "operations": ops}
    if name != "Envelope":
        return None
    body_el = next((c for c in _children(root) if _local(c.tag) == "Body"), None)
    if body_el is None:
        return {"error": "envelope without a Body"}
    parts = _children(body_el)
    if not parts:
        return {"operation": None}
    first = parts[0]
    if _local(first.tag) == "Fault":
        fault = {_local(c.tag): " ".join(c.itertext()).strip() for c in _children(first)}
        code = fault.get("faultcode") or fault.get("Code", "")
        text = fault.get("faultstring") or fault.get("Reason", "")
        return {"fault": {"code": code.split(":")[-1] if code else "", "string": text,
                          "detail": fault.get("detail") or fault.get("Detail") or None}}
    op = _local(first.tag)
    values = [(_local(c.tag), (c.text or "").strip()) for c in _children(first)]
    if op.endswith("Response"):
        result = values[0][1] if len(values) == 1 else {k: v for k, v in values}
        return {"operation": op[: -len("Response")], "response": op, "result": result}
    return {"operation": op, "arguments": {k: v for k, v in values}}


def soap_summary(soap: dict) -> str:
    if "fault" in soap:
        f = soap["fault"]
        return f"Fault {f['code']}: {f['string']}".rstrip(": ")
    if "error" in soap:
        return f"({soap['error']})"
    if "result" in soap:
        return f"{soap['operation']} -> {soap['result']}"
    if "arguments" in soap:
        args = ", ".join(f"{k}={v}" for k, v in soap["arguments"].items())
        return f"{soap['operation']}({args})"
    return "(empty Body)"
