"""labkit.wsgi: what the REST and SOAP servers share by serving through it, proven on both real servers.

Stops (Ctrl+C to the whole process group, twice; SIGTERM to the master; either while workers still boot)
with keep-alive, silent and half-sent connections open; gunicorn's own errors in the app's format; no
control socket; one listening socket per worker (SO_REUSEPORT), yet a second copy on the same port still
fails with one clear line; the ready line once, when a worker really listens.
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


def start_patched(spawn, tmp_path, name: str, port: int, sitecustomize: str) -> Proc:
    """Start the server with `sitecustomize` run by its interpreter at start-up, before the script (no waiting)."""
    (tmp_path / "sitecustomize.py").write_text(sitecustomize)
    server = SERVERS[name]
    return spawn(script(server.folder, "server.py", "--host", "127.0.0.1", "--port", str(port)),
                 cwd=str(REPO / server.folder), env=python_env({"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}))


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

# Every socket gunicorn creates is bound BIND_DELAY_SECONDS late: with reuse_port, in each new worker, between
# its fork and the post_fork hook, while it still has the master's signal handlers.
SLOW_BIND = """
import time
from gunicorn import sock
create = sock.create_sockets
def slow_create(*args, **kwargs):
    time.sleep({seconds})
    return create(*args, **kwargs)
sock.create_sockets = slow_create
"""
BIND_DELAY_SECONDS = 0.5

STARTING_WORKERS = {
    "binding its socket": (SLOW_BIND.format(seconds=BIND_DELAY_SECONDS), 1),
    "loading the app": (SLOW_BOOT.format(seconds=BOOT_SECONDS), 2),
}


@pytest.mark.parametrize("how", ["Ctrl+C twice", "SIGTERM"])
@pytest.mark.parametrize("phase", list(STARTING_WORKERS))
@pytest.mark.parametrize("name", sorted(SERVERS))
def test_workers_still_starting_stop_at_once(spawn, tmp_path, name, phase, how):
    """Ctrl+C or SIGTERM before the ready line, while the workers start: a stop must end those too."""
    slow_start, forked = STARTING_WORKERS[phase]
    proc = start_patched(spawn, tmp_path, name, free_port(), slow_start)
    deadline = time.monotonic() + 10
    while len(children(proc.pid)) < forked and time.monotonic() < deadline:  # forked, now starting
        time.sleep(0.01)
    workers = children(proc.pid)
    assert len(workers) >= forked, proc.output
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


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process `pid` holds (as /proc/net/tcp and /proc/net/unix name them)."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes  # the process has just gone (a killed worker): it holds nothing
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def unix_socket_paths(pid: int) -> list[str]:
    """Paths of the Unix sockets process `pid` holds (a gunicorn control socket would be one)."""
    inodes = socket_inodes(pid)
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
    port_claim = f"@labkit-wsgi-port-{port}"  # labkit.wsgi's own (abstract, no file): see the port tests below
    while time.monotonic() < deadline:
        assert [path for path in unix_socket_paths(proc.pid) if path != port_claim] == []
        time.sleep(0.1)



# --- one listening socket per worker, and still one server per port --------------------------------------

LISTEN, ESTABLISHED = "0A", "01"  # TCP states as /proc/net/tcp writes them


def tcp_sockets(port: int) -> list[tuple[str, int, str]]:
    """(state, remote port, inode) of every IPv4 TCP socket on local port `port`."""
    rows = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                rows.append((fields[3], int(fields[2].rsplit(":", 1)[1], 16), fields[9]))
    return rows


def workers_listening_now(proc: Proc, port: int) -> list[int]:
    """The workers of `proc` that hold a listening socket on `port`."""
    listeners = {inode for state, _, inode in tcp_sockets(port) if state == LISTEN}
    return [pid for pid in children(proc.pid) if socket_inodes(pid) & listeners]


def listening_workers(proc: Proc, port: int, count: int = 2, timeout: float = 10) -> list[int]:
    """The workers of `proc` once at least `count` of them hold a listening socket on `port`."""
    deadline = time.monotonic() + timeout
    while len(workers := workers_listening_now(proc, port)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(workers) >= count, f"{len(workers)} workers listening on {port}:\n{proc.output}"
    return workers


def worker_holding(proc: Proc, port: int, client_port: int) -> int | None:
    """The worker holding the server side of the connection from `client_port`."""
    inodes = {inode for state, remote, inode in tcp_sockets(port) if state == ESTABLISHED and remote == client_port}
    return next((pid for pid in children(proc.pid) if socket_inodes(pid) & inodes), None)


def kept_alive_connection(name: str, port: int) -> http.client.HTTPConnection:
    """A connection after one answered request (so a worker has accepted it), kept open."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", SERVERS[name].keepalive_request)
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    return conn


def test_each_worker_listens_on_its_own_socket_and_connections_reach_every_worker(served):
    """The benchmark's 16 keep-alive clients: with one shared socket one worker could take them all."""
    name, proc, port = served
    workers = listening_workers(proc, port)
    listeners = {inode for state, _, inode in tcp_sockets(port) if state == LISTEN}
    assert len(listeners) == len(workers), "one listening socket per worker (SO_REUSEPORT)"
    assert not socket_inodes(proc.pid) & listeners, "the master listens on nothing"
    connections = [kept_alive_connection(name, port) for _ in range(16)]
    try:
        holders = [worker_holding(proc, port, conn.sock.getsockname()[1]) for conn in connections]
    finally:
        for conn in connections:
            conn.close()
    # The kernel spreads connections by a hash of their addresses: all 16 on one of 2 workers is 1 in 32,768.
    assert set(holders) == set(workers), holders


PLAIN_TAKEN = "error: port {port} on 127.0.0.1 is already in use: stop the other {what} (or choose another with --port)"
COMPOSE_TAKEN = ("error: the {what} is already running in this container (port {port} is taken); "
                 "follow its output with: docker compose -f compose/{name}.yml logs -f {name}-server")


@pytest.mark.parametrize("in_compose", [False, True], ids=["plain", "in-compose"])
def test_a_second_copy_on_the_same_port_fails_with_one_line(served, in_compose):
    """SO_REUSEPORT would let a second copy share the port silently: it must fail with the usual line instead."""
    name, proc, port = served
    listening_workers(proc, port)
    server = SERVERS[name]
    env = {"LAB_COMPOSE_FILE": f"compose/{name}.yml", "LAB_SERVICE": f"{name}-server"} if in_compose else {}
    second = Proc(script(server.folder, "server.py", "--host", "127.0.0.1", "--port", str(port)),
                  cwd=str(REPO / server.folder), env=python_env(env))
    try:
        code = second.wait(timeout=30)
    finally:
        second.stop(timeout=3)
    what = f"{name.upper()} server"
    assert code == 2
    assert second.lines == [(COMPOSE_TAKEN if in_compose else PLAIN_TAKEN).format(port=port, what=what, name=name)]
    kept_alive_connection(name, port).close()  # the first one still serves


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_a_port_another_program_holds_with_so_reuseport_gives_one_line(spawn, name):
    """The probe before gunicorn starts binds without SO_REUSEPORT: a listener that has it still blocks it."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        server = SERVERS[name]
        proc = spawn(script(server.folder, "server.py", "--host", "127.0.0.1", "--port", str(port)),
                     cwd=str(REPO / server.folder))
        code = proc.wait(timeout=30)
    assert code == 2
    assert proc.lines == [PLAIN_TAKEN.format(port=port, what=f"{name.upper()} server")]


# Loaded by the first server's interpreter: after its probe found the port free it waits, so a second copy
# starts in between, as when two are started at the same moment.
SLOW_AFTER_PROBE = """
import time
from labkit import cli
probe = cli.ensure_port_free
def probe_then_wait(*args, **kwargs):
    probe(*args, **kwargs)
    print("probe passed", flush=True)
    time.sleep({seconds})
cli.ensure_port_free = probe_then_wait
"""


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_two_copies_started_at_once_do_not_share_the_port(spawn, tmp_path, name):
    server, port = SERVERS[name], free_port()
    first = start_patched(spawn, tmp_path, name, port, SLOW_AFTER_PROBE.format(seconds=2))
    first.wait_for(r"^probe passed", timeout=30)
    second = spawn(script(server.folder, "server.py", "--host", "127.0.0.1", "--port", str(port)),
                   cwd=str(REPO / server.folder))
    assert second.wait(timeout=30) == 2, second.output  # while the first has not bound anything yet
    assert second.lines == [PLAIN_TAKEN.format(port=port, what=f"{name.upper()} server")]
    first.wait_for(server.ready, timeout=30)
    kept_alive_connection(name, port).close()


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_the_ready_line_comes_once_the_workers_listen(spawn, tmp_path, name):
    port = free_port()
    proc = start_patched(spawn, tmp_path, name, port, SLOW_BIND.format(seconds=BIND_DELAY_SECONDS))
    proc.wait_for(SERVERS[name].ready, timeout=30)
    kept_alive_connection(name, port).close()  # at once: not refused
    assert len(workers_listening_now(proc, port)) == len(children(proc.pid)) >= 2, "a worker was still binding"


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_the_ready_line_is_printed_once_even_when_a_worker_is_replaced(spawn, name):
    port = free_port()
    proc = start(spawn, name, port)
    first_workers = listening_workers(proc, port)
    os.kill(first_workers[0], signal.SIGKILL)  # the master starts a replacement
    deadline = time.monotonic() + 5
    while not gone(first_workers[0]) and time.monotonic() < deadline:
        time.sleep(0.01)  # until then its listening socket takes connections (and resets them as it dies)
    replacement = None
    for _ in range(200):  # new connections until the replacement has served one: it is past its start-up
        conn = kept_alive_connection(name, port)
        holder = worker_holding(proc, port, conn.sock.getsockname()[1])
        conn.close()
        if holder not in first_workers and holder is not None:
            replacement = holder
            break
    assert replacement, proc.output
    proc.signal(signal.SIGTERM)
    proc.popen.wait(timeout=10)  # every worker has exited: whatever they printed is in the output
    assert proc.count(SERVERS[name].ready) == 1, proc.output
