"""Baseline for SOAP: the lab's own spyne application served by wsgiref, as the original course repo did.

wsgiref's server handles one connection at a time and speaks HTTP/1.0 (a new connection per request).
It serves soap/server.py's create_app(), so the difference measured is the server, not the application.
"""

from __future__ import annotations

import logging
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from labkit import cli
from labkit.bench.baselines import load_script
from labkit.protocols import SOAP_PORT


def main() -> int:
    args = cli.parser(__doc__.splitlines()[0], host="127.0.0.1", port=SOAP_PORT, server=True).parse_args()
    cli.ensure_port_free(args.host, args.port, "wsgiref SOAP server")
    logging.getLogger("spyne").setLevel(logging.CRITICAL)
    app = load_script("soap", "server.py").create_app()  # reads no further than Content-Length (PEP 3333)
    server = make_server(args.host, args.port, app, server_class=WSGIServer, handler_class=WSGIRequestHandler)
    print(f"wsgiref SOAP server listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    cli.run(main)
