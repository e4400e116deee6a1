"""Baseline for SOAP: a spyne calculator on the standard library's wsgiref, as the original course repo served it.

The original SOAP server was spyne's hello-world on wsgiref's `make_server`: one connection at a time,
HTTP/1.0 (a new connection per request), a log line per request on stderr. This is that server, with the
same service, operations and validation as soap/server.py (none of its hardening), as a program of its own:
the benchmark never imports the demo script. spyne reads exactly Content-Length bytes, so wsgiref never
waits for more (the original's hang on a body without an end is not measured).
"""

from __future__ import annotations

import sys
from wsgiref.simple_server import make_server

from labkit import cli
from labkit.procs import REPO
from labkit.protocols import SOAP_PORT

sys.path.insert(0, str(REPO / "soap"))
import spyne_compat  # noqa: E402, F401 - the SOAP folder's step that lets spyne 2.14 import on Python 3.12+
from spyne import Application, Double, Integer, ServiceBase, rpc  # noqa: E402
from spyne.protocol.soap import Soap11  # noqa: E402
from spyne.server.wsgi import WsgiApplication  # noqa: E402


class CalculatorService(ServiceBase):
    @rpc(Integer, Integer, _returns=Integer)
    def add(ctx, a, b):
        return a + b

    @rpc(Integer, Integer, _returns=Integer)
    def subtract(ctx, a, b):
        return a - b

    @rpc(Integer, Integer, _returns=Integer)
    def multiply(ctx, a, b):
        return a * b

    @rpc(Integer, Integer, _returns=Double)
    def divide(ctx, a, b):
        return a / b


def main() -> int:
    args = cli.parser(__doc__.splitlines()[0], host="127.0.0.1", port=SOAP_PORT, server=True).parse_args()
    cli.ensure_port_free(args.host, args.port, "wsgiref SOAP server")
    application = Application([CalculatorService], tns="lab.soap.calculator", name="CalculatorService",
                              in_protocol=Soap11(validator="soft"), out_protocol=Soap11())
    server = make_server(args.host, args.port, WsgiApplication(application))
    print(f"wsgiref SOAP server listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    cli.run(main)
