"""Helpers shared by several test modules (test modules never import each other)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import socket
import time
from pathlib import Path

from labkit.procs import REPO, Proc, free_port

#: The first line each HTTP server prints once it listens (its gunicorn.conf.py `when_ready` hook).
REST_READY = r"^REST server listening on"
SOAP_READY = r"^SOAP server listening on"


def script_constant(path: Path, name: str):
    """The value of the top-level `NAME = <literal>` in a demo script, read from its text (not imported)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"{path} has no top-level constant {name}")


def children(pid: int) -> list[int]:
    """The child processes of `pid` (a gunicorn master's workers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def wait_for_booted_workers(pid: int, count: int, timeout: float = 20.0) -> list[int]:
    """The `count` workers of gunicorn master `pid`, once each has booted: it then ignores SIGINT (the post_worker_init
    hook of rest/ and soap/ gunicorn.conf.py). The ready line comes before that, as soon as the socket listens."""
    deadline = time.monotonic() + timeout
    while True:
        booted = []
        for worker in children(pid):
            try:
                with open(f"/proc/{worker}/status") as f:
                    ignored = int(re.search(r"^SigIgn:\s*([0-9a-f]+)", f.read(), re.M).group(1), 16)
            except (OSError, AttributeError):
                continue
            if ignored & (1 << (signal.SIGINT - 1)):
                booted.append(worker)
        if len(booted) >= count:
            return booted
        assert time.monotonic() < deadline, f"{len(booted)} of {count} workers booted after {timeout} s"
        time.sleep(0.05)


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process `pid` holds (as /proc/net/tcp names them)."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes  # the process has just gone: it holds nothing
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def accepted_client_ports(server_pids: list[int], port: int) -> set[int]:
    """Client ports of the IPv4 connections to local `port` that one of `server_pids` has accepted.

    A set: /proc/net/tcp is read in pages while connections come and go, so one socket can be listed twice
    (or not at all) in one read; a list of rows would count a connection twice.
    """
    inodes = set().union(*(socket_inodes(pid) for pid in server_pids))
    ports = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            established = fields[3] == "01"
            if established and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


# MQTT (tests/test_mqtt*.py): mqtt/pub.py and mqtt/sub.py as programs, against a real Mosquitto.
MQTT_HOST = "127.0.0.1"
SHIPPED_MOSQUITTO_CONF = REPO / "mqtt" / "mosquitto.conf"
PUBLISHED = re.compile(r"^Published: (?P<payload>.*) \(Topic: (?P<topic>[^ ]+)\)$")
RECEIVED = re.compile(r"^Received message: (?P<payload>.*) \(Topic: (?P<topic>[^ ]+)\)$")


def start_sub(spawn, port: int, tmp_path: Path, *args: str, log: str | None = None, wait: bool = True) -> Proc:
    """sub.py on the broker at 127.0.0.1:port, logging into tmp_path; waits for its SUBACK line unless told not to."""
    proc = spawn.script("mqtt", "sub.py", "--host", MQTT_HOST, "--port", str(port),
                        "--log", log or str(tmp_path / "mqtt_messages.log"), *args)
    if wait:
        proc.wait_for(r"^Subscribed to: ", timeout=15)
    return proc


def start_pub(spawn, port: int, *args: str) -> Proc:
    return spawn.script("mqtt", "pub.py", "--host", MQTT_HOST, "--port", str(port), *args)


def matches(proc: Proc, rx: re.Pattern, start: int = 0, end: int | None = None) -> list[re.Match]:
    """The matches of rx among proc's output lines [start:end]."""
    return [m for line in proc.lines[start:end] if (m := rx.match(line))]


def index_of(proc: Proc, pattern: str, start: int = 0) -> int:
    """Index of the first line (from `start`) matching pattern; waits for it."""
    proc.wait_for(pattern, timeout=15, start=start)
    rx = re.compile(pattern)
    return next(i for i, line in enumerate(proc.lines) if i >= start and rx.search(line))


def mosquitto_with_conf(spawn, source: Path, dest: Path) -> tuple[Proc, int]:
    """Mosquitto run with the config file `source` (mqtt/mosquitto.conf), written to `dest` with one change:
    its `listener 1883` becomes a free port on 127.0.0.1 (1883 may be taken). Returns the broker and the port."""
    port = free_port()
    text = source.read_text(encoding="utf-8")
    assert re.search(r"^listener 1883$", text, re.M), f"{source} has no `listener 1883`"
    dest.write_text(re.sub(r"^listener 1883$", f"listener {port} {MQTT_HOST}", text, flags=re.M), encoding="utf-8")
    broker = spawn(["mosquitto", "-c", str(dest)], label="mosquitto", prefix=["stdbuf", "-oL"])
    broker.wait_for(r"mosquitto version .* running", timeout=10)
    return broker, port



# Line protocols (tests/test_reqresp.py, test_upcall.py, test_lineproto_torture.py): the servers as programs,
# a test's own raw client, and a demo folder copied alone (no repo, no PYTHONPATH).
LINE_MAX_BYTES = 64 * 1024  # MAX_LINE_BYTES in reqresp/server.py and upcall/servercall.py (checked by a test)


class LineConnection:
    """A plain TCP client of the line protocols: send a line, read a line (None once the server has closed)."""

    def __init__(self, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._rfile = self.sock.makefile("rb")

    def send_line(self, text: str) -> None:
        self.sock.sendall(f"{text}\n".encode())

    def read_line(self) -> str | None:
        raw = self._rfile.readline()
        if not raw.endswith(b"\n"):  # the server closed (a line cut short counts as closed)
            return None
        return raw.decode("utf-8").removesuffix("\n")

    def close(self) -> None:
        self._rfile.close()
        self.sock.close()


def copy_folder_alone(folder: str, dest: Path) -> Path:
    """A copy of the demo folder `folder` at dest/<folder>, nothing else of the repo beside it."""
    copy = dest / folder
    shutil.copytree(REPO / folder, copy, ignore=shutil.ignore_patterns("__pycache__", "*.log", "client_log.txt"))
    return copy


def standalone_env(**extra: str) -> dict[str, str]:
    """The environment of a student's shell: no PYTHONPATH (the repo is not importable), unbuffered output."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SERVER_LOG")}
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", **extra)
    return env


# SOAP (tests/test_soap.py, test_soap_torture.py): soap/server.py as a program, envelopes written by hand and
# posted with curl (an HTTP client outside this project), answers read with a locked-down lxml parser.
import subprocess  # noqa: E402 - the SOAP helpers' own imports, kept with them
import sys  # noqa: E402

from lxml import etree  # noqa: E402

NS_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_TNS = "lab.soap.calculator"


def start_soap_server(spawn, port: int, folder: Path = REPO / "soap", python: str | None = None, **kw) -> Proc:
    """`python server.py --host 127.0.0.1 --port PORT` in `folder` (the repo's soap/ or a copy), once ready."""
    proc = spawn([python or sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(port)],
                 cwd=str(folder), **kw)
    proc.wait_for(SOAP_READY, timeout=30)
    return proc


def soap_envelope(operation: str, body: str) -> bytes:
    """A SOAP 1.1 request written by hand, as any client outside this project would."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<soapenv:Envelope xmlns:soapenv="{NS_SOAP_ENV}" xmlns:c="{SOAP_TNS}">'
            f"<soapenv:Body><c:{operation}>{body}</c:{operation}></soapenv:Body></soapenv:Envelope>").encode()


def soap_call(operation: str, a, b) -> bytes:
    return soap_envelope(operation, f"<c:a>{a}</c:a><c:b>{b}</c:b>")


def curl_post(port: int, payload: bytes, content_type: str = "text/xml; charset=utf-8") -> tuple[int, str, bytes]:
    """POST with curl: (status, content type, body)."""
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-H", f"Content-Type: {content_type}", "-H", 'SOAPAction: ""',
         "-H", "Expect:", "--data-binary", "@-", "-o", "-", "-w", "\n%{http_code} %{content_type}",
         f"http://127.0.0.1:{port}/"],
        input=payload, capture_output=True, timeout=20)
    assert done.returncode == 0, done.stderr
    body, _, trailer = done.stdout.rpartition(b"\n")
    status, _, ctype = trailer.decode().partition(" ")
    return int(status), ctype, body


def parse_xml(body: bytes):
    """An answer parsed the safe way (no DTD, no entities, no network)."""
    return etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))


def fault_of(status: int, ctype: str, body: bytes) -> tuple[str, str]:
    """(faultcode without prefix, faultstring) of a proper SOAP 1.1 Fault answer; fails on anything else."""
    assert status == 500, body
    assert ctype.startswith("text/xml"), ctype
    assert b"Traceback" not in body
    root = parse_xml(body)
    assert root.tag == f"{{{NS_SOAP_ENV}}}Envelope"
    fault = root.find(f"{{{NS_SOAP_ENV}}}Body/{{{NS_SOAP_ENV}}}Fault")
    assert fault is not None, body
    return fault.findtext("faultcode").split(":", 1)[-1], fault.findtext("faultstring")


def result_of(status: int, body: bytes, operation: str) -> str:
    assert status == 200, body
    return parse_xml(body).findtext(f".//{{{SOAP_TNS}}}{operation}Response/{{{SOAP_TNS}}}{operation}Result")
