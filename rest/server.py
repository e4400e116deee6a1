"""REST calculator server: stateless request/response over HTTP, answers in JSON.

Every GET carries its whole input in the query string and gets one self-contained
JSON answer, so any worker process can serve any request: gunicorn runs several.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable
from pathlib import Path

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from labkit import cli, wsgi
from labkit.protocols import REST_PORT

OPENAPI_FILE = Path(__file__).resolve().with_name("openapi.json")

OPERATIONS: dict[str, Callable[[float, float], float]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
}

# --- Limits (documented in README.md "Limits", each hit by tests/test_rest.py) ---
#: Longest query string the app accepts (bytes); longer gets 414 JSON from the app.
MAX_QUERY_BYTES = 1024
#: Longest HTTP request line (method + path + query + version) gunicorn reads; longer gets 414 JSON.
MAX_REQUEST_LINE_BYTES = 2048
#: Most header fields in one request; more gets 431 JSON.
MAX_HEADER_FIELDS = 50
#: Longest single header field (name + value, bytes); longer gets 431 JSON.
MAX_HEADER_FIELD_BYTES = 4096
#: Seconds an idle keep-alive connection stays open before the server closes it.
IDLE_TIMEOUT_SECONDS = 5
#: Simultaneous connections each worker process holds (WORKERS of them); more wait in the listen
#: backlog until one closes.
MAX_CONNECTIONS_PER_WORKER = 200

# --- Throughput on 2 cores: one process per core (the GIL lets one thread of a process run
# Python at a time), each with enough threads that 16 busy keep-alive clients never queue. ---
WORKERS = 2
THREADS_PER_WORKER = 8

# A plain decimal or exponent number; float() alone would also take "nan", "inf", "1_0" and "١٢".
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
NOT_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
ACCESS_LOG_FORMAT = '%(t)s %(h)s:%({remote_port}e)s "%(r)s" %(s)s %(b)s bytes %(M)s ms'


class ApiError(Exception):
    """A request the server refuses: answered as `status {"error": message}`."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def shown(value: str, limit: int = 40) -> str:
    """A user-supplied value quoted for an error message, cut to `limit` characters."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def operand(name: str) -> float:
    """Query parameter `name` as a finite float; the first value counts when it is repeated."""
    raw = request.args.get(name)
    if raw is None:
        raise ApiError(f"Missing parameter '{name}'")
    text = raw.strip()
    if NOT_FINITE.fullmatch(text):
        raise ApiError(f"Parameter '{name}' must be a finite number, got {shown(raw)}")
    if not NUMBER.fullmatch(text):
        raise ApiError(f"Parameter '{name}' must be a number, got {shown(raw)}")
    value = float(text)
    if not math.isfinite(value):
        raise ApiError(f"Parameter '{name}' must be a finite number, got {shown(raw)} (too large)")
    return value


def json_response(payload: dict, status: int = 200, headers: dict | None = None) -> Response:
    body = json.dumps(payload, allow_nan=False) + "\n"
    return Response(body, status=status, headers=headers, mimetype="application/json")


def create_app(config: dict | None = None) -> Flask:
    """The calculator as a WSGI app: what gunicorn serves and what tests call in-process."""
    app = Flask(__name__)
    app.config.update(MAX_QUERY_BYTES=MAX_QUERY_BYTES)
    if config:
        app.config.update(config)
    openapi_document = OPENAPI_FILE.read_bytes()

    @app.before_request
    def refuse_long_queries():
        limit = app.config["MAX_QUERY_BYTES"]
        if len(request.query_string) > limit:
            raise ApiError(f"Query string too long (over {limit} bytes)", status=414)

    def calculate(name: str, op: Callable[[float, float], float]):
        def view():
            a, b = operand("a"), operand("b")
            if name == "div" and b == 0:
                raise ApiError("Division by zero")
            result = op(a, b)
            if not math.isfinite(result):
                raise ApiError("Result out of range")
            return json_response({"result": result})

        view.__name__ = name
        return view

    for name, op in OPERATIONS.items():
        app.add_url_rule(f"/{name}", view_func=calculate(name, op), methods=["GET"], provide_automatic_options=False)

    def openapi():
        return Response(openapi_document, mimetype="application/json")

    # No automatic OPTIONS (an empty text/html answer): OPTIONS gets 405 JSON like any other wrong method.
    app.add_url_rule("/openapi.json", view_func=openapi, methods=["GET"], provide_automatic_options=False)

    @app.errorhandler(ApiError)
    def api_error(e: ApiError):
        return json_response({"error": e.message}, e.status)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        if e.code == 404:
            message = f"Not found: {request.path} (try /add, /sub, /mul, /div or /openapi.json)"
        elif e.code == 405:
            message = f"Method {request.method} not allowed on {request.path} (use GET)"
        else:
            message = e.name
        headers = {k: v for k, v in e.get_headers() if k.lower() == "allow"}
        return json_response({"error": message}, e.code or 500, headers)

    @app.errorhandler(Exception)
    def unexpected_error(_error: Exception):
        app.logger.exception("unexpected error on %s", request.full_path)
        return json_response({"error": "Internal server error"}, 500)

    return app


def json_error_body(_status: int, reason: str, message: str) -> tuple[str, bytes]:
    """gunicorn's answer to a request it cannot parse (too long, malformed), in JSON instead of HTML."""
    body = json.dumps({"error": f"{reason}: {message}" if message else reason}) + "\n"
    return "application/json", body.encode()


def main() -> int:
    args = cli.parser(__doc__.splitlines()[0], host="0.0.0.0", port=REST_PORT, server=True).parse_args()
    wsgi.serve(
        create_app(), host=args.host, port=args.port, name="REST server", workers=WORKERS,
        threads=THREADS_PER_WORKER, max_connections_per_worker=MAX_CONNECTIONS_PER_WORKER,
        idle_timeout=IDLE_TIMEOUT_SECONDS, access_log_format=ACCESS_LOG_FORMAT, error_body=json_error_body,
        ready_line=(f"REST server listening on {args.host}:{args.port} "
                    f"(gunicorn, {WORKERS} workers x {THREADS_PER_WORKER} threads)"),
        settings={"limit_request_line": MAX_REQUEST_LINE_BYTES, "limit_request_fields": MAX_HEADER_FIELDS,
                  "limit_request_field_size": MAX_HEADER_FIELD_BYTES},
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
