"""REST calculator client: each operation is one HTTP GET, each answer one JSON body.

The client knows only a URL scheme (/<op>?a=..&b=..) and a JSON shape, nothing of
the server's code; the calls share one keep-alive TCP connection (watch it in Wireshark).
With --cafile it speaks HTTPS, with --username/--password it logs in (HTTP basic auth): the classroom server.
"""

import argparse
import os
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


def call(session: requests.Session, url: str, op: str, a: float, b: float, **options) -> str:
    """GET /<op>?a=&b=; the line to print: `add(2.0,3.0) = 5.0`, or `... -> error: <the server's message>`."""
    response = session.get(f"{url}/{op}", params={"a": a, "b": b}, **options)
    if response.status_code == 401:  # the server asks for a login, or refused this one: requests' HTTPError
        response.raise_for_status()
    try:
        body = dict(response.json())
    except (ValueError, TypeError):  # not a JSON object: gunicorn's own HTML page, for one
        body = {}
    if response.status_code == 200 and "result" in body:
        return f"{op}({a},{b}) = {float(body['result'])}"
    return f"{op}({a},{b}) -> error: {body.get('error') or f'HTTP {response.status_code} {response.reason}'}"


def unreachable(error: requests.RequestException) -> str:
    """`Connection refused`, or TLS's `certificate verify failed: ...`, rather than requests' nested exception reprs."""
    if isinstance(error, requests.ConnectTimeout):
        return f"no answer within {CONNECT_TIMEOUT_SECONDS} s"
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)|\[SSL: \w+\] ([^(']+)", str(error))
    return "".join(filter(None, found.groups())).strip() if found else type(error).__name__


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
    parser.add_argument("--cafile", metavar="PATH", help="use HTTPS, and trust the server only if this CA signed "
                        "its certificate (the classroom's ca.crt)")
    parser.add_argument("--username", help="log in with HTTP basic auth (the classroom account)")
    parser.add_argument("--password", default="", help="that account's password")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"argument --repeat: must be at least 1, not {args.repeat}")
    if args.cafile and not os.path.isfile(args.cafile):
        parser.error(f"argument --cafile: no such file: {args.cafile}")

    host = f"[{args.host}]" if ":" in args.host else args.host
    failures = 0
    url = f"{'https' if args.cafile else 'http'}://{host}:{args.port}"
    options = {"timeout": (CONNECT_TIMEOUT_SECONDS, args.timeout),
               "verify": args.cafile or True,  # with --cafile: the server's certificate must be signed by that CA
               "auth": (args.username, args.password) if args.username else None}  # HTTP basic auth, each request
    with requests.Session() as session:
        for op in SELECTIONS[args.op] * args.repeat:
            try:
                line = call(session, url, op, args.a, args.b, **options)
            except requests.HTTPError:
                who = f"wrong username or password ({args.username})" if args.username else "add --username, --password"
                sys.exit(f"error: the REST server at {args.host}:{args.port} refused the login (HTTP 401): {who}")
            except requests.ReadTimeout:
                line = f"{op}({args.a},{args.b}) -> error: no answer within {args.timeout:g} s"
            except requests.RequestException as e:
                hint = (f" (is {args.cafile} the CA of its certificate?)" if isinstance(e, requests.exceptions.SSLError)
                        else " (running without Docker? add --host 127.0.0.1)" if args.host == HOST else "")
                sys.exit(f"error: cannot reach the REST server at {args.host}:{args.port}: {unreachable(e)}{hint}")
            print(line)
            failures += "-> error:" in line
    return 1 if failures else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
