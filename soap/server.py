"""SOAP 1.1 calculator service: remote procedure calls described by a published contract (the WSDL).

spyne turns each @rpc method of CalculatorService into an operation of the WSDL at
http://<host>:8000/?wsdl; every mistake of the sender comes back as a SOAP Fault (HTTP 500).
"""

import argparse
import errno
import io
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import spyne_compat  # noqa: F401  (first: lets spyne 2.14 import on Python 3.12 and 3.13)
from spyne import Application, Double, Fault, Integer, ServiceBase, rpc
from spyne.error import RequestTooLongError
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication, WsgiMethodContext

PORT = 8000
SERVICE_NAME = "CalculatorService"
TNS = "lab.soap.calculator"  # the XML namespace of the operations
#: Largest request body read (bytes); a bigger one gets a Client.RequestTooLong Fault, unparsed.
MAX_REQUEST_BYTES = 65_536
#: Most digits of an integer result (Python prints no longer ones); more is Client.ResultOutOfRange.
MAX_RESULT_DIGITS = 4300

Operand = Integer(min_occurs=1, nillable=False)  # required, exactly one, never nil


class CalculatorService(ServiceBase):
    """Each @rpc method is one operation: its arguments and _returns are its part of the WSDL."""

    @rpc(Operand, Operand, _returns=Integer)
    def add(ctx, a, b):
        return a + b

    @rpc(Operand, Operand, _returns=Integer)
    def subtract(ctx, a, b):
        return a - b

    @rpc(Operand, Operand, _returns=Integer)
    def multiply(ctx, a, b):
        return a * b

    @rpc(Operand, Operand, _returns=Double)
    def divide(ctx, a, b):
        if b == 0:
            raise Fault("Client.DivisionByZero", "Division by zero")
        try:
            return a / b
        except OverflowError:  # a quotient beyond the largest float
            raise Fault("Client.ResultOutOfRange", "Result out of range") from None


# --- Hardening: the sender's mistakes, each refused with a Client Fault (README.md "Limits") ---


def refuse_dtd(ctx):
    """spyne's parser options keep a DTD unused, but let the document in: refused here, before any value is read."""
    if ctx.in_document.getroottree().docinfo.doctype:
        raise Fault("Client.DTDForbidden", "DTDs and entity declarations are not allowed")


def refuse_huge_result(ctx):
    """Python writes no int over MAX_RESULT_DIGITS digits: spyne would answer that with a Server fault."""
    if isinstance(ctx.out_object[0], int) and abs(ctx.out_object[0]) >= 10**MAX_RESULT_DIGITS:
        raise Fault("Client.ResultOutOfRange", "Result out of range")


def note_call(ctx):
    """Puts `add(10,5) = 15`, or the fault, in the WSGI environ: gunicorn's access log line shows it."""
    call = f"{ctx.descriptor.name}({','.join(map(str, ctx.in_object))})" if ctx.in_object else ""
    error = ctx.out_error
    outcome = f"= {ctx.out_object[0]}" if error is None else f"fault {error.faultcode}: {error.faultstring}"
    short = [text if len(text) < 120 else f"{text[:100]}...({len(text)} chars)" for text in (call, outcome)]
    ctx.transport.req_env["soap.call"] = " ".join(text for text in short if text)


application = Application([CalculatorService], tns=TNS, name=SERVICE_NAME, out_protocol=Soap11(),
                          # spyne's XML parser options: never load a DTD, expand an entity or use the network
                          in_protocol=Soap11(validator="soft", load_dtd=False, resolve_entities=False,
                                             no_network=True, huge_tree=False))
application.in_protocol.event_manager.add_listener("before_deserialize", refuse_dtd)
application.event_manager.add_listener("method_return_object", refuse_huge_result)
for event in ("method_return_object", "method_exception_object"):
    application.event_manager.add_listener(event, note_call)
spyne_app = WsgiApplication(application, max_content_length=MAX_REQUEST_BYTES)

#: What spyne lets escape as an exception (a bare 500 from gunicorn), each as the sender's Fault it should be.
ESCAPES = {StopIteration: ("Client.EmptyRequest", "Empty request body"),  # spyne's next() on a body of no chunks
           UnicodeError: ("Client.EncodingError", "The body is not in its declared charset"),  # decoded unchecked
           LookupError: ("Client.EncodingError", "Unknown charset"),  # the Content-Type's charset, looked up unchecked
           AttributeError: ("Client.SoapError", "No operation in the SOAP Body"),  # an empty Body: spyne reads None.tag
           RequestTooLongError: ("Client.RequestTooLong", f"Request body over {MAX_REQUEST_BYTES} bytes")}  # app()


def app(environ, start_response):
    """What gunicorn serves: spyne's WSGI app, and for whatever escapes it still spyne's Fault, never a bare 500."""
    try:
        if not environ.get("CONTENT_LENGTH"):  # chunked: spyne would parse the first MAX_REQUEST_BYTES, cut short
            body = environ["wsgi.input"].read(MAX_REQUEST_BYTES + 1)
            if len(body) > MAX_REQUEST_BYTES:
                raise RequestTooLongError
            environ.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))})
        return spyne_app(environ, start_response)
    except Exception as e:
        code, text = next((f for kind, f in ESCAPES.items() if isinstance(e, kind)), ("Server", "Internal error"))
        environ["soap.call"] = f"fault {code}: {text}"
        ctx = WsgiMethodContext(spyne_app, environ, application.out_protocol.mime_type)
        ctx.out_error = Fault(code, text)  # spyne's own envelope and HTTP 500, as for every other Fault
        return spyne_app.handle_error(ctx, [], ctx.out_error, start_response)


# --- `python server.py`: what a plain `gunicorn` in this folder runs, on --host and --port. ------------------------
# Docker only: the image already runs the server, so `docker compose exec soap-server python server.py` finds the
# port taken and follows that server's output (the lines it also writes to SERVER_LOG) instead.
if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default: 0.0.0.0)")
    parser.add_argument("--port", type=int, default=PORT, help=f"port to listen on (default: {PORT})")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM acts as Ctrl+C until gunicorn runs
    try:
        try:  # bind once as gunicorn will: a taken port is one line (gunicorn would retry five times)
            socket.create_server((args.host, args.port), family=socket.getaddrinfo(args.host, None)[0][0]).close()
        except OSError as e:
            taken = e.errno == errno.EADDRINUSE
            if taken and os.path.isfile(os.environ.get("SERVER_LOG", "")):
                print(f"Following the SOAP server already running in this container (port {args.port}): "
                      "its output from now on. Ctrl+C to stop.", flush=True)
                subprocess.run(["tail", "-n", "0", "-F", os.environ["SERVER_LOG"]])
            problem = "is already in use: stop the other SOAP server" if taken else f"cannot be used: {e.strerror}"
            parser.exit(2, f"error: port {args.port} on {args.host} {problem} (or choose another with --port)\n")
        os.chdir(Path(__file__).resolve().parent)  # gunicorn reads ./gunicorn.conf.py from here
        from gunicorn.app.wsgiapp import run
        host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address goes in brackets
        # --preload: this script is the app, imported once here; each worker is ready as soon as it is forked
        sys.argv = ["gunicorn", "--preload", "--bind", f"{host}:{args.port}"]
        run()
    except KeyboardInterrupt:  # Ctrl+C before gunicorn has set its own handlers, or while following
        pass
