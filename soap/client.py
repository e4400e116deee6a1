"""SOAP client: calls the calculator through a proxy that zeep builds at run time from the server's WSDL.

The client knows no XML: it reads the published contract, then each call is an HTTP POST of a SOAP envelope
and a SOAP Fault from the server comes back as an error, printed on one line.
"""

from __future__ import annotations

import re

import requests
import zeep
from zeep.transports import Transport

from labkit import cli
from labkit.protocols import SOAP_PORT

OPERATIONS = ("add", "subtract", "multiply", "divide")
#: Seconds to wait for the TCP connection, then for each answer.
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 10


def connection_reason(error: Exception) -> str:
    """A short reason from requests' long connection error ('Connection refused', 'timed out', ...)."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return f"no answer within {CONNECT_TIMEOUT_SECONDS} s"
    text = str(error)
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if match:
        return match.group(1).strip()
    return "connection failed" if not text else text.splitlines()[0][:200]


def calculator(host: str, port: int):
    """The service proxy, bound to host:port whatever address the WSDL names."""
    wsdl = f"http://{host}:{port}/?wsdl"
    transport = Transport(timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
                          operation_timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS))
    try:
        client = zeep.Client(wsdl, transport=transport)
    except requests.exceptions.ConnectionError as e:
        raise cli.unreachable("SOAP server", host, port, connection_reason(e)) from None
    except requests.exceptions.RequestException as e:
        raise cli.LabError(f"could not fetch the WSDL from {wsdl}: {e}") from None
    except (zeep.exceptions.Error, ValueError, SyntaxError) as e:  # lxml's XMLSyntaxError is a SyntaxError
        raise cli.LabError(f"{wsdl} did not return a usable WSDL: {e}") from None
    binding = next(iter(client.wsdl.bindings))
    # The WSDL names the address the server saw first; this client talks to the one it was given.
    return client.create_service(binding, f"http://{host}:{port}/")


def main() -> int:
    p = cli.parser(__doc__.splitlines()[0], host="soap-server", port=SOAP_PORT, server=False)
    p.add_argument("--op", choices=(*OPERATIONS, "all"), default="all", help="operation to call (default: all)")
    p.add_argument("-a", type=int, default=10, help="first integer operand (default: 10)")
    p.add_argument("-b", type=int, default=5, help="second integer operand (default: 5)")
    cli.add_repeat(p)
    args = p.parse_args()

    service = calculator(args.host, args.port)
    failed = False
    for name in (OPERATIONS if args.op == "all" else (args.op,)) * args.repeat:
        call = f"{name}({args.a},{args.b})"
        try:
            result = getattr(service, name)(args.a, args.b)
        except zeep.exceptions.Fault as fault:
            print(f"{call} -> fault: {fault.message}")
            failed = True
            continue
        except requests.exceptions.ConnectionError as e:
            raise cli.unreachable("SOAP server", args.host, args.port, connection_reason(e)) from None
        except requests.exceptions.Timeout:
            raise cli.LabError(f"{call}: no answer from the SOAP server within {READ_TIMEOUT_SECONDS} s") from None
        except (zeep.exceptions.Error, requests.exceptions.RequestException) as e:
            raise cli.LabError(f"{call} failed: {e}") from None
        print(f"{call} = {result}")
    return 1 if failed else 0


if __name__ == "__main__":
    cli.run(main)
