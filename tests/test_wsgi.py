"""labkit.wsgi: what the REST and SOAP servers share by serving through it, proven on both real servers.

Stops (Ctrl+C to the whole process group, twice; SIGTERM to the master; either while workers still boot)
with keep-alive, silent and half-sent connections open; gunicorn's own errors in the app's format; no
control socket.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
from dataclasses import dataclass

import pytest
from conftest import free_port
from lxml import etree

from labkit.procs import REPO, Proc, python_env, script

NS_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


@dataclass(frozen=True)
class Server:
    folder: str
    ready: str
    keepalive_request: str  # a GET the server answers 200 and keeps the connection for


SERVERS = {
    "rest": Server("rest", r"^REST server listening on", "/add?a=1&b=2"),
    "soap": Server("soap", r"^SOAP server listening on", "/?wsdl"),
}


def start(spawn, name: str, port: int) -> Proc:
    server = SERVERS[name]
    proc = spawn(script(server.folder, "server.py", "--host", "127.0.0.1", "--port", str(port)),
                 cwd=str(REPO / server.folder))
    proc.wait_for(server.ready, timeout=30)
    return proc


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def open_clients(name: str, port: int) -> tuple[http.client.HTTPConnection, list[socket.socket]]:
    """A kept-alive connection after one answered request, plus a silent one and a half-sent request."""
    silent = socket.create_connection(("127.0.0.1", port), timeout=5)
    half = socket.create_connection(("127.0.0.1", port), timeout=5)
    half.sendall(b"GET / HTTP/1.1\r\nHost: lab\r\n")  # the blank line that ends the headers never comes
    kept_alive = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    kept_alive.request("GET", SERVERS[name].keepalive_request)
    response = kept_alive.getresponse()
    response.read()
    assert response.status == 200 and not response.will_close, "the server should keep this connection"
    return kept_alive, [silent, half]


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(3)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def ctrl_c_twice(pid: int) -> None:
    """What a terminal does on Ctrl+C, pressed twice: SIGINT to the whole process group (master and workers)."""
    os.killpg(pid, signal.SIGINT)
    time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGINT)
    except ProcessLookupError:
        pass  # already gone


def stop_and_time(proc: Proc, how: str) -> float:
    started = time.monotonic()
    if how == "Ctrl+C twice":
        ctrl_c_twice(proc.pid)
    else:
        proc.signal(signal.SIGTERM)  # docker stop / kill: the master only
    proc.popen.wait(timeout=10)
    return time.monotonic() - started


def assert_clean_exit(proc: Proc, workers: list[int]) -> None:
    assert proc.popen.returncode == 0, proc.output
    for bad in ("Traceback", "[ERROR]", "[CRITICAL]", "SIGKILL"):
        assert bad not in proc.output, proc.output
    deadline = time.monotonic() + 2
    while not all(gone(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(gone(w) for w in workers), "a worker outlived its master"


# --- stopping -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["Ctrl+C twice", "SIGTERM"])
@pytest.mark.parametrize("name", sorted(SERVERS))
def test_stop_within_a_second_with_keepalive_silent_and_half_sent_connections_open(spawn, name, how):
    port = free_port()
    proc = start(spawn, name, port)
    kept_alive, others = open_clients(name, port)
    workers = children(proc.pid)
    assert workers, "gunicorn workers expected"
    try:
        took = stop_and_time(proc, how)
        assert closed_by_server(kept_alive.sock), "the idle keep-alive connection was left open"
    finally:
        kept_alive.close()
        for s in others:
            s.close()
    assert took < 1.0, f"took {took:.2f} s:\n{proc.output}"
    assert_clean_exit(proc, workers)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# Loaded by the server's interpreter at start-up (sitecustomize): every gunicorn worker takes BOOT_SECONDS to
# boot before it installs its signal handlers, as with a big app to import or a loaded machine.
SLOW_BOOT = """
import time
from gunicorn.workers import gthread
boot = gthread.ThreadWorker.init_process
def slow_boot(self):
    time.sleep({seconds})
    boot(self)
gthread.ThreadWorker.init_process = slow_boot
"""
BOOT_SECONDS = 3


@pytest.mark.parametrize("how", ["Ctrl+C twice", "SIGTERM"])
@pytest.mark.parametrize("name", sorted(SERVERS))
def test_workers_still_booting_stop_at_once(spawn, tmp_path, name, how):
    """The ready line comes when gunicorn listens, before its workers run: a stop must end those too."""
    (tmp_path / "sitecustomize.py").write_text(SLOW_BOOT.format(seconds=BOOT_SECONDS))
    server = SERVERS[name]
    proc = spawn(script(server.folder, "server.py", "--host", "127.0.0.1", "--port", str(free_port())),
                 cwd=str(REPO / server.folder), env=python_env({"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}))
    proc.wait_for(server.ready, timeout=30)
    deadline = time.monotonic() + 5
    while not children(proc.pid) and time.monotonic() < deadline:  # a worker forked, now booting
        time.sleep(0.01)
    workers = children(proc.pid)
    assert workers, proc.output
    took = stop_and_time(proc, how)
    assert took < 1.0, f"took {took:.2f} s:\n{proc.output}"
    assert_clean_exit(proc, workers)


# --- one server per protocol for the rest ---------------------------------------------------------------


@pytest.fixture(scope="module", params=sorted(SERVERS))
def served(request):
    name, port = request.param, free_port()
    server = SERVERS[name]
    proc = Proc(script(server.folder, "server.py", "--host", "127.0.0.1", "--port", str(port)),
                cwd=str(REPO / server.folder))
    try:
        proc.wait_for(server.ready, timeout=30)
        yield name, proc, port
    finally:
        proc.stop(timeout=3)
    assert "Traceback" not in proc.output


def raw_exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"NONSENSE\r\n\r\n", 400),
    (b"GET /?wsdl HTTP/1.1\r\nX-Big: " + b"y" * 10_000 + b"\r\n\r\n", 431),
], ids=["garbage-request-line", "header-too-large"])
def test_requests_gunicorn_refuses_are_answered_in_the_apps_format(served, request_bytes, status):
    name, _, port = served
    got, headers, body = raw_exchange(port, request_bytes)
    assert got == status, body
    assert headers["connection"] == "close" and int(headers["content-length"]) == len(body)
    if name == "rest":
        assert headers["content-type"] == "application/json"
        assert set(json.loads(body)) == {"error"}
    else:
        assert headers["content-type"].startswith("text/xml")
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
        fault = root.find(f"{{{NS_SOAP_ENV}}}Body/{{{NS_SOAP_ENV}}}Fault")
        assert fault is not None, body
        assert fault.findtext("faultcode").split(":", 1)[-1] == "Client.BadHTTPRequest"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", SERVERS[name].keepalive_request)
        assert conn.getresponse().status == 200, "the server stopped serving"
    finally:
        conn.close()


def unix_socket_paths(pid: int) -> list[str]:
    """Paths of the Unix sockets process `pid` holds (a gunicorn control socket would be one)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    with open("/proc/net/unix") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return [row[7] for row in rows if len(row) > 7 and row[6] in inodes]


def test_no_control_socket_is_opened(served):
    name, proc, port = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", SERVERS[name].keepalive_request)  # the master is past its start-up by now
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    # gunicorn would open it once every worker is spawned, in a thread of the master: watch for a while.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        assert unix_socket_paths(proc.pid) == []
        time.sleep(0.1)

