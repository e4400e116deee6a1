"""REST calculator server: stateless request/response over HTTP, answers in JSON.

Each GET carries its whole input in the query string (/add?a=2&b=3) and gets one
self-contained JSON answer, so any of gunicorn's worker processes can serve it.
"""

import argparse
import errno
import math
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from flask import Flask, abort, request, send_file
from werkzeug.exceptions import HTTPException

PORT = 5151  # the limits (request line, headers, header timeout) are gunicorn's own, in gunicorn.conf.py
# A plain decimal or exponent number; float() alone would also take "nan", "inf", "1_0" and "١٢".
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
NOT_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)

app = Flask(__name__)
app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False  # OPTIONS gets 405 JSON like any other wrong method


def operand(name: str) -> float:
    """Query parameter `name` as a finite number; when it is repeated, the first value counts."""
    raw = request.args.get(name)
    if raw is None:
        abort(400, f"Missing parameter '{name}'")
    shown = repr(raw if len(raw) <= 40 else raw[:40] + "...")
    if NOT_FINITE.fullmatch(raw.strip()):
        abort(400, f"Parameter '{name}' must be a finite number, got {shown}")
    if not NUMBER.fullmatch(raw.strip()):
        abort(400, f"Parameter '{name}' must be a number, got {shown}")
    if not math.isfinite(value := float(raw)):
        abort(400, f"Parameter '{name}' must be a finite number, got {shown} (too large)")
    return value


def result(value: float) -> dict:
    if not math.isfinite(value):  # e.g. 1e308 * 1e308: JSON has no infinity
        abort(400, "Result out of range")
    return {"result": value}  # Flask sends a dict as JSON


@app.get("/add")
def add():
    return result(operand("a") + operand("b"))


@app.get("/sub")
def sub():
    return result(operand("a") - operand("b"))


@app.get("/mul")
def mul():
    return result(operand("a") * operand("b"))


@app.get("/div")
def div():
    a, b = operand("a"), operand("b")
    if b == 0:
        abort(400, "Division by zero")
    return result(a / b)


@app.get("/openapi.json")
def openapi():
    """The API's own description (OpenAPI 3), for tools such as schemathesis or Swagger UI."""
    return send_file(Path(app.root_path, "openapi.json"))


@app.errorhandler(HTTPException)
def http_error(e: HTTPException):
    """Every HTTP error as JSON: the message given to abort(), for 404 and 405 a hint; an exception in a view is
    Flask's 500 (it logs the traceback, the client gets none)."""
    message = {404: f"Not found: {request.path} (try /add, /sub, /mul, /div or /openapi.json)",
               405: f"Method {request.method} not allowed on {request.path} (use GET)",
               500: "Internal server error"}.get(e.code, e.description)
    return {"error": message}, e.code, [(k, v) for k, v in e.get_headers() if k == "Allow"]


# --- `python server.py`: what a plain `gunicorn` in this folder runs, on --host and --port. ------------------------
# Docker only: the image already runs the server, so `docker compose exec rest-server python server.py` finds the
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
                print(f"Following the REST server already running in this container (port {args.port}): "
                      "its output from now on. Ctrl+C to stop.", flush=True)
                subprocess.run(["tail", "-n", "0", "-F", os.environ["SERVER_LOG"]])
            problem = "is already in use: stop the other REST server" if taken else f"cannot be used: {e.strerror}"
            parser.exit(2, f"error: port {args.port} on {args.host} {problem} (or choose another with --port)\n")
        os.chdir(app.root_path)  # this folder: gunicorn reads ./gunicorn.conf.py
        from gunicorn.app.wsgiapp import run
        host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address goes in brackets
        # --preload: this script is the app, imported once here; each worker is ready as soon as it is forked
        sys.argv = ["gunicorn", "--preload", "--bind", f"{host}:{args.port}"]
        run()
    except KeyboardInterrupt:  # Ctrl+C before gunicorn has set its own handlers, or while following
        pass
