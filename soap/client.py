"""SOAP client: zeep reads the server's WSDL and calls the operations it finds there.

The client knows no XML and no operation names: it fetches the published contract (`python -m zeep <wsdl-url>`
prints it), then each `service.add(10, 5)` is an HTTP POST of a SOAP envelope. A new @rpc method on the server
is callable here after a restart.
"""

import argparse
import re
import signal
import sys

import requests
import zeep
from zeep.transports import Transport

HOST = "soap-server"  # the compose service; without Docker use --host 127.0.0.1
PORT = 8000
#: Seconds to wait for the TCP connection, then for each answer (--timeout overrides the second).
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 10


def unreachable(error: requests.ConnectionError) -> str:
    """`Connection refused` rather than requests' three nested exception reprs."""
    if isinstance(error, requests.ConnectTimeout):
        return f"no answer within {CONNECT_TIMEOUT_SECONDS} s"
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(error))
    return found.group(1).strip() if found else " ".join(str(error).split())[:200]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=HOST, help=f"server to call (default: {HOST})")
    parser.add_argument("--port", type=int, default=PORT, help=f"its port (default: {PORT})")
    parser.add_argument("--op", default="all", help="an operation the WSDL offers, or all of them (default: all)")
    parser.add_argument("-a", type=int, default=10, help="first integer operand (default: 10)")
    parser.add_argument("-b", type=int, default=5, help="second integer operand (default: 5)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="make the calls N times over one connection (default: 1)")
    parser.add_argument("--timeout", type=float, default=READ_TIMEOUT_SECONDS, metavar="SECONDS",
                        help=f"seconds to wait for each answer (default: {READ_TIMEOUT_SECONDS})")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"argument --repeat: must be at least 1, not {args.repeat}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server, address = f"the SOAP server at {args.host}:{args.port}", f"http://{args.host}:{args.port}/"
    timeouts = (CONNECT_TIMEOUT_SECONDS, args.timeout)
    try:
        client = zeep.Client(f"{address}?wsdl", transport=Transport(timeout=timeouts, operation_timeout=timeouts))
        # The WSDL names the address the server saw first (inside Docker, or from the host): call the one given here.
        service = client.create_service(next(iter(client.wsdl.bindings)), address)  # zeep's proxy: service.add(10, 5)
        operations = [name for name, _ in service]  # in the WSDL's order
        if args.op not in [*operations, "all"]:
            sys.exit(f"error: {server} has no operation {args.op!r}; it offers: {', '.join(operations)}")
        failed = False
        for name in (operations if args.op == "all" else [args.op]) * args.repeat:
            try:
                print(f"{name}({args.a},{args.b}) = {getattr(service, name)(args.a, args.b)}", flush=True)
            except zeep.exceptions.Fault as fault:  # the server's answer was a SOAP Fault
                print(f"{name}({args.a},{args.b}) -> fault: {' '.join(fault.message.split())}", flush=True)
                failed = True
        return 1 if failed else 0
    except requests.ConnectionError as e:
        hint = " (running without Docker? add --host 127.0.0.1)" if args.host == HOST else ""
        sys.exit(f"error: cannot reach {server}: {unreachable(e)}{hint}")
    except requests.Timeout:
        sys.exit(f"error: no answer from {server} within {args.timeout:g} s")
    except (zeep.exceptions.Error, requests.RequestException, SyntaxError, TypeError) as e:
        sys.exit(f"error: {server} failed: {' '.join(str(e).split())[:300]}")  # lxml's errors are SyntaxErrors
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
