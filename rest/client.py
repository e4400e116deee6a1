"""REST calculator client: each operation is one HTTP GET, each answer one JSON body.

The client knows only a URL scheme (/<op>?a=..&b=..) and a JSON shape, nothing of
the server's code; the calls share one keep-alive TCP connection (watch it in Wireshark).
"""

from __future__ import annotations

import re

import requests

from labkit import cli
from labkit.protocols import PROTOCOLS, REST_PORT

#: Seconds to wait for the TCP connection to the server.
CONNECT_TIMEOUT_SECONDS = 3
#: Seconds to wait for an answer once connected.
READ_TIMEOUT_SECONDS = 10

OPERATIONS = ("add", "sub", "mul", "div")
SELECTIONS = {**{op: (op,) for op in OPERATIONS}, "all": OPERATIONS, "both": ("add", "mul")}


class CallFailed(Exception):
    """The server answered, but with an error (its message is in the exception)."""


def short_reason(error: requests.RequestException) -> str:
    """`Connection refused` rather than requests' three nested exception reprs."""
    if isinstance(error, requests.ConnectTimeout):
        return f"no answer within {CONNECT_TIMEOUT_SECONDS} s"
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(error))
    return found.group(1).strip() if found else type(error).__name__


def call(session: requests.Session, base_url: str, op: str, a: float, b: float) -> float:
    """GET /<op>?a=&b= and return the result; CallFailed with the server's message otherwise."""
    response = session.get(f"{base_url}/{op}", params={"a": a, "b": b},
                           timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS))
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 200 and isinstance(body, dict) and "result" in body:
        return float(body["result"])
    if isinstance(body, dict) and "error" in body:
        raise CallFailed(str(body["error"]))
    raise CallFailed(f"HTTP {response.status_code} {response.reason}")


def main() -> int:
    rest = PROTOCOLS["rest"]
    p = cli.parser(__doc__.splitlines()[0], host=rest.server_service, port=REST_PORT, server=False)
    p.add_argument("--op", choices=tuple(SELECTIONS), default="all",
                   help="operation to call: one of the four, all four, or both (add and mul); default: all")
    p.add_argument("-a", type=float, required=True, help="first number")
    p.add_argument("-b", type=float, required=True, help="second number")
    cli.add_repeat(p)
    args = p.parse_args()

    host = f"[{args.host}]" if ":" in args.host else args.host
    base_url = f"http://{host}:{args.port}"
    failures = 0
    with requests.Session() as session:
        for op in SELECTIONS[args.op] * args.repeat:
            try:
                result = call(session, base_url, op, args.a, args.b)
            except CallFailed as e:
                print(f"{op}({args.a},{args.b}) -> error: {e}")
                failures += 1
                continue
            except requests.ReadTimeout:
                print(f"{op}({args.a},{args.b}) -> error: no answer within {READ_TIMEOUT_SECONDS} s")
                failures += 1
                continue
            except requests.RequestException as e:
                raise cli.unreachable("REST server", args.host, args.port, short_reason(e)) from None
            print(f"{op}({args.a},{args.b}) = {result}")
    return 1 if failures else 0


if __name__ == "__main__":
    cli.run(main)
