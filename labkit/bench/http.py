"""REST and SOAP under load: wrk (keep-alive connections, C, its own latency histogram) against two servers.

Each protocol's application is the same on both sides (rest/server.py's Flask app; for SOAP a spyne
service like soap/server.py's, without its hardening); only the server differs: the original course
repo's (Flask's development server, wsgiref) or ours (gunicorn, as the folder's gunicorn.conf.py
configures it). Both run as programs.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from labkit.bench.core import (
    TOOL_GRACE,
    Figure,
    Progress,
    Row,
    Sample,
    Server,
    Settings,
    alternate,
    describe,
    json_line,
    run_tool,
)
from labkit.procs import REPO, free_port

WRK_SCRIPT = Path(__file__).resolve().with_name("wrk_report.lua")
#: wrk's own timeout per request: an answer later than this counts as an error.
WRK_TIMEOUT = "5s"

SOAP_ADD_ENVELOPE = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:tns="lab.soap.calculator">'
    "<soapenv:Body><tns:add><tns:a>2</tns:a><tns:b>3</tns:b></tns:add></soapenv:Body></soapenv:Envelope>"
)


@dataclass(frozen=True)
class HttpCase:
    protocol: str
    path: str  # what wrk requests
    expect: str  # a piece of the right answer, checked once before the load
    baseline_name: str
    baseline_argv: tuple[str, ...]  # after `python`
    baseline_cwd: str  # a folder of the repo, "" for the repo itself
    baseline_ready: str
    ours_name: str
    ours_script: tuple[str, str]
    ours_ready: str
    body: str | None = None  # POST body (SOAP), else GET
    content_type: str = ""
    target: float = 3.0


CASES = {
    "rest": HttpCase(
        protocol="rest", path="/add?a=2&b=3", expect='"result":5.0',
        # Flask's own command line serves rest/server.py's app on its development server (Werkzeug, a thread
        # per connection, one process), as the original course repo's app.run() did; debugger off.
        baseline_name="Flask dev server", baseline_cwd="rest",
        baseline_argv=("-m", "flask", "--app", "server:app", "run", "--with-threads", "--no-reload", "--no-debugger"),
        baseline_ready=r"Running on http", ours_name="gunicorn (rest/server.py)", ours_script=("rest", "server.py"),
        ours_ready=r"REST server listening on"),
    "soap": HttpCase(
        protocol="soap", path="/", expect="<tns:addResult>5</tns:addResult>",
        baseline_name="wsgiref", baseline_argv=("-m", "labkit.bench.baselines.wsgiref_soap"), baseline_cwd="",
        baseline_ready=r"listening on", ours_name="gunicorn (soap/server.py)", ours_script=("soap", "server.py"),
        ours_ready=r"SOAP server listening on", body=SOAP_ADD_ENVELOPE, content_type="text/xml; charset=utf-8",
        target=1.5),
}


def steps(settings: Settings) -> int:
    return len(settings.levels) * settings.rounds * 2


def check_answer(case: HttpCase, url: str, what: str) -> None:
    """One request before the load: the server must answer it right, or the figures mean nothing."""
    data = case.body.encode() if case.body else None
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read().decode("utf-8", errors="replace")
    if case.expect not in body:
        raise RuntimeError(f"{what} gave a wrong answer to {case.path}: {body[:300]!r}")


def wrk(url: str, connections: int, seconds: float, env: dict[str, str]) -> Sample:
    """One wrk run: `connections` keep-alive connections for `seconds` (whole seconds, at least 1)."""
    whole = max(1, round(seconds))
    argv = ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{whole}s",
            "--timeout", WRK_TIMEOUT, "-s", str(WRK_SCRIPT), url]
    data = json_line(run_tool(argv, whole + TOOL_GRACE, env=env))
    errors = data["errors"]
    failed = errors["connect"] + errors["read"] + errors["write"] + errors["status"] + errors["timeout"]
    return Sample(rate=data["requests"] / (data["duration_us"] / 1e6), p50_ms=data["p50_us"] / 1000,
                  p99_ms=data["p99_us"] / 1000, count=data["requests"], errors=failed,
                  extra={"wrk_errors": errors, "mean_ms": data["mean_us"] / 1000, "max_ms": data["max_us"] / 1000})


def run(protocol: str, settings: Settings, progress: Progress, logdir: Path) -> list[Row]:
    case = CASES[protocol]
    env = dict(os.environ)
    if case.body:
        body_file = logdir / f"{protocol}-request-body"
        body_file.write_text(case.body, encoding="utf-8")
        env.update(WRK_BODY_FILE=str(body_file), WRK_METHOD="POST", WRK_CONTENT_TYPE=case.content_type)

    base_port, ours_port = free_port(), free_port()
    servers: list[Server] = []
    try:
        servers.append(Server(f"{protocol}-baseline", [sys.executable, *case.baseline_argv, "--host", "127.0.0.1",
                                                       "--port", str(base_port)],
                              case.baseline_ready, logdir, cwd=str(REPO / case.baseline_cwd)))
        folder, name = case.ours_script
        servers.append(Server(f"{protocol}-ours", [sys.executable, name, "--host", "127.0.0.1", "--port",
                                                   str(ours_port)], case.ours_ready, logdir, cwd=str(REPO / folder)))
        base_url, ours_url = (f"http://127.0.0.1:{p}{case.path}" for p in (base_port, ours_port))
        check_answer(case, base_url, case.baseline_name)
        check_answer(case, ours_url, case.ours_name)

        if settings.warmup > 0:
            busiest = max(settings.levels)
            progress.say(f"{protocol}: warm-up, {settings.warmup:g} s at {busiest} connections per server")
            wrk(base_url, busiest, settings.warmup, env)
            wrk(ours_url, busiest, settings.warmup, env)
        rows = []
        for level in settings.levels:

            def report(which: str, n: int, sample: Sample, level: int = level) -> None:
                who = case.baseline_name if which == "baseline" else case.ours_name
                progress.step(f"{protocol} c={level} round {n}/{settings.rounds} {who}: {describe(sample, 'req/s')}")

            base, ours = alternate(lambda level=level: wrk(base_url, level, settings.duration, env),
                                   lambda level=level: wrk(ours_url, level, settings.duration, env),
                                   settings.rounds, report)
            rows.append(Row(protocol=protocol, load=f"{level} clients", level=level, unit="req/s",
                            baseline_name=case.baseline_name, ours_name=case.ours_name,
                            baseline=Figure.of(base), ours=Figure.of(ours),
                            target=case.target if level == settings.target_level else None))
        return rows
    finally:
        for server in reversed(servers):
            server.stop()
