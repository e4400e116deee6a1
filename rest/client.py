"""REST calculator client: each operation is one HTTP GET, each answer one JSON body.

The client knows only a URL scheme (/<op>?a=..&b=..) and a JSON shape, nothing of
the server's code; the calls share one keep-alive TCP connection (watch it in Wireshark).
"""

import argparse
import re
import signal
import sys

import requests

HOST = "rest-server"  # the compose service; without Docker use --host 127.0.0.1
PORT = 5151
#: Seconds to wait for the TCP connection, then for each answer (--timeout overrides the second).
CONNECT_TIMEOUT_SECONDS = 3
READ_TIMEOUT_SECONDS = 10

OPERATIONS = ("add", "sub", "mul", "div")
SELECTIONS = {**{op: (op,) for op in OPERATIONS}, "all": OPERATIONS, "both": ("add", "mul")}


def call(session: requests.Session, url: str, op: str, a: float, b: float, read_timeout: float) -> str:
    """GET /<op>?a=&b=; the line to print: `add(2.0,3.0) = 5.0`, or `... -> error: <the server's message>`."""
    response = session.get(f"{url}/{op}", params={"a": a, "b": b}, timeout=(CONNECT_TIMEOUT_SECONDS, read_timeout))
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    if response.status_code == 200 and "result" in body:
        return f"{op}({a},{b}) = {float(body['result'])}"
    return f"{op}({a},{b}) -> error: {body.get('error') or f'HTTP {response.status_code} {response.reason}'}"


def unreachable(error: requests.RequestException) -> str:
    """`Connection refused` rather than requests' three nested exception reprs."""
    if isinstance(error, requests.ConnectTimeout):
        return f"no answer within {CONNECT_TIMEOUT_SECONDS} s"
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(error))
    return found.group(1).strip() if found else type(error).__name__


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=HOST, help=f"server to connect to (default: {HOST})")
    parser.add_argument("--port", type=int, default=PORT, help=f"server port (default: {PORT})")
    parser.add_argument("--op", choices=tuple(SELECTIONS), default="all",
                        help="one of the four operations, all four, or both (add and mul); default: all")
    parser.add_argument("-a", type=float, required=True, help="first number")
    parser.add_argument("-b", type=float, required=True, help="second number")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="make the calls N times over the same connection (default: 1)")
    parser.add_argument("--timeout", type=float, default=READ_TIMEOUT_SECONDS, metavar="SECONDS",
                        help=f"wait this long for each answer (default: {READ_TIMEOUT_SECONDS})")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"argument --repeat: must be at least 1, not {args.repeat}")

    host = f"[{args.host}]" if ":" in args.host else args.host
    failures = 0
    with requests.Session() as session:
        for op in SELECTIONS[args.op] * args.repeat:
            try:
                line = call(session, f"http://{host}:{args.port}", op, args.a, args.b, args.timeout)
            except requests.ReadTimeout:
                line = f"{op}({args.a},{args.b}) -> error: no answer within {args.timeout:g} s"
            except requests.RequestException as e:
                hint = " (running without Docker? add --host 127.0.0.1)" if args.host == HOST else ""
                print(f"error: cannot reach the REST server at {args.host}:{args.port}: {unreachable(e)}{hint}",
                      file=sys.stderr)
                return 1
            print(line)
            failures += "-> error:" in line
    return 1 if failures else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
