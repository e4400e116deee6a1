"""SOAP 1.1 calculator service: remote procedure calls described by a published contract (the WSDL).

A client that has never seen this code reads http://<host>:8000/?wsdl and can call add, subtract,
multiply and divide; every mistake of the sender comes back as a SOAP Fault, and the server keeps serving.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from io import BytesIO

from lxml import etree
from spyne import Application, Double, Fault, Integer, ServiceBase, rpc
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

from labkit import cli, wsgi
from labkit.protocols import SOAP_PORT

SERVICE_NAME = "CalculatorService"
TNS = "lab.soap.calculator"

#: Largest request body accepted (bytes); bigger bodies get a Client Fault and are never parsed.
MAX_REQUEST_BYTES = 64 * 1024
#: Gunicorn worker processes (one GIL each: one per core, 2 to 4) and threads per worker.
WORKERS = min(4, max(2, os.cpu_count() or 1))
THREADS_PER_WORKER = 4
#: Open connections a worker holds at most (idle keep-alive ones included); more wait in the listen backlog.
MAX_CONNECTIONS_PER_WORKER = 256
#: A kept-alive connection with no new request is closed after this many seconds.
KEEPALIVE_SECONDS = 5
#: A worker whose main loop stops reporting for this long is restarted by the gunicorn master.
WORKER_TIMEOUT_SECONDS = 30

NS_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"

DTD_FORBIDDEN = "DTDs and entity declarations are not allowed"

# An integer operand: required, exactly once, never nil (spyne's soft validation enforces it).
Operand = Integer(min_occurs=1, max_occurs=1, nillable=False)

# Python refuses to print integers of more digits than sys.get_int_max_str_digits(): results must stay below.
_INT_DIGITS = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
_RESULT_LIMIT = 10 ** _INT_DIGITS if _INT_DIGITS else None


def _shown(number) -> str:
    """A number as the log shows it: huge ones abbreviated."""
    text = str(number)
    return text if len(text) <= 30 else f"{text[:12]}...({len(text)} digits)"


def _call(ctx, operation: str, a: int, b: int) -> str:
    """Tell the request logger which call this request made (it prints one line per request)."""
    text = f"{operation}({_shown(a)},{_shown(b)})"
    ctx.transport.req_env["lab.call"] = text
    return text


def _answer(ctx, call: str, result):
    if isinstance(result, int) and _RESULT_LIMIT is not None and abs(result) >= _RESULT_LIMIT:
        raise Fault("Client.ResultOutOfRange", "Result out of range")
    ctx.transport.req_env["lab.call"] = f"{call} = {_shown(result)}"
    return result


class CalculatorService(ServiceBase):
    """The four operations; add and subtract are the seeds' originals. Methods get spyne's context first."""

    @rpc(Operand, Operand, _returns=Integer)
    def add(ctx, a, b):
        return _answer(ctx, _call(ctx, "add", a, b), a + b)

    @rpc(Operand, Operand, _returns=Integer)
    def subtract(ctx, a, b):
        return _answer(ctx, _call(ctx, "subtract", a, b), a - b)

    @rpc(Operand, Operand, _returns=Integer)
    def multiply(ctx, a, b):
        return _answer(ctx, _call(ctx, "multiply", a, b), a * b)

    @rpc(Operand, Operand, _returns=Double)
    def divide(ctx, a, b):
        call = _call(ctx, "divide", a, b)
        if b == 0:
            raise Fault("Client.DivisionByZero", "Division by zero")
        try:
            quotient = a / b  # int / int is correctly rounded, even for huge operands
        except OverflowError:
            raise Fault("Client.ResultOutOfRange", "Result out of range") from None
        return _answer(ctx, call, quotient)


class LockedDownSoap11(Soap11):
    """Spyne's SOAP 1.1 reader, answering Client Faults where spyne would crash or let things through.

    Refused: a DTD in any encoding (the parser never loads or expands it, but it is refused all the same),
    a body that is not in its declared charset, and an envelope whose Body holds no operation.
    """

    def create_in_document(self, ctx, charset=None):
        try:
            super().create_in_document(ctx, charset)  # decodes with the Content-Type charset first, if given
        except UnicodeError:
            raise Fault("Client.EncodingError", f"The body is not valid {charset}") from None
        except LookupError:
            raise Fault("Client.EncodingError", f"Unknown charset {charset!r}") from None
        info = ctx.in_document[0].getroottree().docinfo
        if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
            raise Fault("Client.DTDForbidden", DTD_FORBIDDEN)

    def decompose_incoming_envelope(self, ctx, message=Soap11.REQUEST):
        envelope = ctx.in_document[0]
        if envelope.tag == f"{{{NS_SOAP_ENV}}}Envelope":
            body = envelope.find(f"{{{NS_SOAP_ENV}}}Body")
            if body is None or len(body) == 0:
                raise Fault("Client.SoapError", "The SOAP Body is missing or empty: expected one operation element")
        super().decompose_incoming_envelope(ctx, message)


def soap_application() -> WsgiApplication:
    """The spyne application. Its XML parser never loads a DTD, never expands an entity, never uses the network."""
    app = Application(
        [CalculatorService],
        tns=TNS,
        name=SERVICE_NAME,
        in_protocol=LockedDownSoap11(validator="soft", load_dtd=False, resolve_entities=False, no_network=True,
                                     huge_tree=False),
        out_protocol=Soap11(),
    )
    return WsgiApplication(app, max_content_length=MAX_REQUEST_BYTES)


# ---------------------------------------------------------------------------------------------------
# The guard in front of spyne (size limit, empty body, DTD) and one log line per request.


def fault_envelope(code: str, message: str) -> bytes:
    """A SOAP 1.1 Fault envelope, shaped like the ones spyne writes."""
    env = etree.Element(f"{{{NS_SOAP_ENV}}}Envelope", nsmap={"soap11env": NS_SOAP_ENV})
    body = etree.SubElement(env, f"{{{NS_SOAP_ENV}}}Body")
    fault = etree.SubElement(body, f"{{{NS_SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"soap11env:{code}"
    etree.SubElement(fault, "faultstring").text = message
    etree.SubElement(fault, "faultactor").text = ""
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


# Characters XML 1.0 cannot carry (a Fault quoting a garbage request line must still be well-formed XML).
NOT_XML_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def gunicorn_error_fault(status: int, reason: str, message: str) -> tuple[str, bytes]:
    """gunicorn's answer to a request it cannot parse (malformed HTTP, headers too large), as a SOAP Fault.

    The HTTP status stays gunicorn's (400, 414, 431): the request never became a SOAP call, as with the
    405 spyne answers a plain GET.
    """
    text = NOT_XML_CHARS.sub("?", f"{reason}: {message}" if message else reason)
    return "text/xml; charset=utf-8", fault_envelope("Client.BadHTTPRequest" if status < 500 else "Server", text)


def check_request_body(body: bytes) -> tuple[str, str] | None:
    """Why a request body must not even reach spyne's parser, as (faultcode, message); None when it may go on.

    A DOCTYPE spelled in ASCII is refused here without parsing; one hidden by another encoding (UTF-16,
    a charset=utf-7 header) is caught after spyne's locked-down parse by LockedDownSoap11.
    """
    if not body.strip():
        return "Client.EmptyRequest", "Empty request body: expected a SOAP envelope"
    if b"<!DOCTYPE" in body:
        return "Client.DTDForbidden", DTD_FORBIDDEN
    return None


DECIMAL_LENGTH = re.compile(r"[0-9]+", re.ASCII)


def _read_body(environ) -> tuple[bytes, tuple[str, str] | None]:
    """The request body, or (b"", (faultcode, message)) when it is refused unread.

    Never reads past Content-Length (PEP 3333: a server such as wsgiref hands over the connection itself,
    where reading further waits for bytes the client never sends). Without one, the body is read only from
    a server that ends the stream with it (wsgi.input_terminated: gunicorn, also for a chunked body), else
    there is none.
    """
    stream = environ["wsgi.input"]
    length_text = (environ.get("CONTENT_LENGTH") or "").strip()
    if length_text:
        if not DECIMAL_LENGTH.fullmatch(length_text):
            return b"", ("Client.BadContentLength", f"Invalid Content-Length: {_short(length_text, 40)!r}")
        length = int(length_text)
        if length > MAX_REQUEST_BYTES:
            return b"", ("Client.RequestTooLarge",
                         f"Request body of {length} bytes exceeds the limit of {MAX_REQUEST_BYTES} bytes")
        return stream.read(length), None
    if not environ.get("wsgi.input_terminated"):
        return b"", None
    body = stream.read(MAX_REQUEST_BYTES + 1)
    if len(body) > MAX_REQUEST_BYTES:
        return b"", ("Client.RequestTooLarge", f"Request body exceeds the limit of {MAX_REQUEST_BYTES} bytes")
    return body, None


def _fault_in(body: bytes) -> str:
    """'Client.X: message' from a Fault envelope this server wrote (for the log line)."""
    try:
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
        code = root.findtext(f".//{{{NS_SOAP_ENV}}}Fault/faultcode") or "?"
        text = root.findtext(f".//{{{NS_SOAP_ENV}}}Fault/faultstring") or ""
    except etree.XMLSyntaxError:
        return "(unreadable fault)"
    return f"{code.split(':', 1)[-1]}: {text}"


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


_log_lock = threading.Lock()


def log_line(text: str) -> None:
    """One whole line on stdout, even with many threads and processes writing (cheaper than logging)."""
    with _log_lock:
        sys.stdout.write(text + "\n")


class GuardedSoapApp:
    """WSGI middleware in front of spyne.

    Refuses oversize, empty or DTD-carrying bodies with a Client Fault (HTTP 500, as SOAP 1.1 over HTTP
    requires) before spyne parses them, turns any unexpected error into a Server Fault (never a bare 500 or
    a traceback), and logs every request on one line.
    """

    def __init__(self, soap_app):
        self.soap_app = soap_app

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "")
        query = environ.get("QUERY_STRING", "")
        target = environ.get("PATH_INFO", "/") + (f"?{query}" if query else "")
        peer = f"{environ.get('REMOTE_ADDR', '?')}:{environ.get('REMOTE_PORT', '?')}"
        request = f"{peer} {method} {_short(target, 80)}"
        if method == "POST":
            body, refused = _read_body(environ)
            problem = refused or check_request_body(body)
            if problem:
                log_line(f"{request} -> 500 fault {problem[0]}: {_short(problem[1])}")
                return self._fault(start_response, *problem)
            environ["wsgi.input"] = BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))

        answer: dict = {}

        def capture_start_response(status, headers, exc_info=None):  # noqa: ARG001 - WSGI signature
            answer["status"], answer["headers"] = status, headers
            return lambda _data: None  # spyne never uses write()

        try:
            result = self.soap_app(environ, capture_start_response)
            try:
                payload = b"".join(result)  # small: the request was bounded by MAX_REQUEST_BYTES
            finally:
                if hasattr(result, "close"):
                    result.close()
            status, headers = answer["status"], answer["headers"]
        except Exception as e:  # a bug or a corner spyne does not handle: still a Fault, never a traceback
            log_line(f"{request} -> 500 fault Server: internal error ({type(e).__name__}: {_short(str(e))})")
            return self._fault(start_response, "Server", "Internal error")

        call = environ.get("lab.call", "")
        if status.startswith("200"):
            what = call or ("WSDL" if method == "GET" and query.lower().startswith("wsdl") else "")
        else:
            what = f"{call} fault {_fault_in(payload)}" if call else f"fault {_fault_in(payload)}"
        log_line(f"{request} -> {status.split(' ', 1)[0]} {_short(what)}")
        start_response(status, headers)
        return [payload]

    @staticmethod
    def _fault(start_response, code: str, message: str):
        payload = fault_envelope(code, message)
        start_response("500 Internal Server Error",
                       [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(payload)))])
        return [payload]


def create_app():
    """The WSGI application gunicorn serves (the bench serves the same object under wsgiref)."""
    return GuardedSoapApp(soap_application())


def main() -> int:
    args = cli.parser(__doc__.splitlines()[0], host="0.0.0.0", port=SOAP_PORT, server=True).parse_args()
    logging.getLogger("spyne").setLevel(logging.CRITICAL)  # faults go to the client and our log line, not here
    wsgi.serve(
        create_app(), host=args.host, port=args.port, name="SOAP server", workers=WORKERS,
        threads=THREADS_PER_WORKER, max_connections_per_worker=MAX_CONNECTIONS_PER_WORKER,
        idle_timeout=KEEPALIVE_SECONDS, error_body=gunicorn_error_fault,  # requests: logged by GuardedSoapApp
        ready_line=f"SOAP server listening on {args.host}:{args.port} (WSDL: http://{args.host}:{args.port}/?wsdl)",
        settings={"timeout": WORKER_TIMEOUT_SECONDS},
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
