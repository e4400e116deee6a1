"""REST demo: the calculator under gunicorn, its client, curl, and the app in-process."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import free_port
from test_wsgi import ESTABLISHED, children, socket_inodes, tcp_sockets

from labkit.procs import REPO, Proc, script


def load_rest_module(name: str):
    """rest/<name>.py as a module (rest/ is not a package; soap/ has a server.py too)."""
    spec = importlib.util.spec_from_file_location(f"rest_{name}", REPO / "rest" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rest_server = load_rest_module("server")
rest_client = load_rest_module("client")

READY = r"REST server listening on"


def server_argv(port: int) -> list[str]:
    return script("rest", "server.py", "--host", "127.0.0.1", "--port", str(port))


def start_server(port: int, spawn) -> Proc:
    proc = spawn(server_argv(port), cwd=str(REPO / "rest"))
    proc.wait_for(READY, timeout=20)
    return proc


@pytest.fixture(scope="module")
def server():
    """One real gunicorn server for the read-only tests of this module."""
    port = free_port()
    proc = Proc(server_argv(port), cwd=str(REPO / "rest"))
    try:
        proc.wait_for(READY, timeout=20)
        yield proc, port
    finally:
        proc.stop(timeout=3)
    assert "Traceback" not in proc.output


@pytest.fixture(scope="module")
def base_url(server) -> str:
    return f"http://127.0.0.1:{server[1]}"


def get(base_url: str, path: str, **kw) -> requests.Response:
    return requests.get(f"{base_url}{path}", timeout=5, **kw)


def assert_json_error(response: requests.Response, status: int, *needles: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    for needle in needles:
        assert needle in body["error"], body
    return body["error"]


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def split_http(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, headers, body


# --- the app in-process (Flask test client, no server, no port) ---

@pytest.fixture
def client():
    return rest_server.create_app({"TESTING": True}).test_client()


def test_in_process_add_answers_result_json(client):
    response = client.get("/add?a=2&b=3")
    assert response.status_code == 200
    assert response.is_json and response.get_json() == {"result": 5.0}


@pytest.mark.parametrize(("query", "status", "needle"), [
    ("/div?a=1&b=0", 400, "Division by zero"),
    ("/add?a=1", 400, "'b'"),
    ("/add?a=one&b=1", 400, "'a'"),
    ("/mul?a=1e308&b=1e308", 400, "Result out of range"),
    ("/nowhere", 404, "/nowhere"),
])
def test_in_process_errors_are_json(client, query, status, needle):
    response = client.get(query)
    assert response.status_code == status
    assert response.is_json and needle in response.get_json()["error"]


def test_in_process_query_over_max_query_bytes_is_414_json(client):
    limit = rest_server.MAX_QUERY_BYTES
    assert client.get("/add?a=" + "1" * (limit - 10) + "&b=1").status_code == 400  # fits: too large a number
    response = client.get("/add?a=" + "1" * limit + "&b=1")
    assert response.status_code == 414 and "too long" in response.get_json()["error"]


# --- the real server: every operation ---

@pytest.mark.parametrize(("op", "expected"), [("add", 5.0), ("sub", -1.0), ("mul", 6.0), ("div", 2 / 3)])
def test_each_operation_answers_200_result_json(base_url, op, expected):
    response = get(base_url, f"/{op}?a=2&b=3")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"result": expected}


def test_floats_and_exponents_are_accepted(base_url):
    assert get(base_url, "/mul?a=2.5&b=-0.5").json() == {"result": -1.25}
    assert get(base_url, "/add?a=1e3&b=.5").json() == {"result": 1000.5}


def test_div_by_zero_is_400_json(base_url):
    assert assert_json_error(get(base_url, "/div?a=2&b=0"), 400) == "Division by zero"
    assert assert_json_error(get(base_url, "/div?a=2&b=-0.0"), 400) == "Division by zero"


@pytest.mark.parametrize("missing", ["a", "b"])
def test_missing_parameter_is_400_naming_it(base_url, missing):
    present = "b" if missing == "a" else "a"
    assert_json_error(get(base_url, f"/add?{present}=1"), 400, "Missing", f"'{missing}'")


@pytest.mark.parametrize("value", ["abc", "", "1_000", "0x10", "1,5", "\u0661\u0662"])
def test_non_numeric_parameter_is_400_naming_it(base_url, value):
    assert_json_error(get(base_url, "/sub", params={"a": "1", "b": value}), 400, "'b'", "number")


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Infinity", "1e999"])
def test_nan_and_infinity_are_400_naming_the_parameter(base_url, value):
    assert_json_error(get(base_url, "/add", params={"a": value, "b": "1"}), 400, "'a'", "finite")


@pytest.mark.parametrize("query", ["/mul?a=1e308&b=1e308", "/add?a=1.7e308&b=1.7e308", "/div?a=1e308&b=1e-308"])
def test_overflow_is_400_result_out_of_range(base_url, query):
    assert assert_json_error(get(base_url, query), 400) == "Result out of range"


def test_repeated_parameter_first_value_counts(base_url):
    assert get(base_url, "/add?a=1&a=100&b=2&b=200").json() == {"result": 3.0}


def test_unknown_path_is_404_json(base_url):
    assert_json_error(get(base_url, "/pow?a=2&b=3"), 404, "/pow")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_wrong_method_is_405_json(base_url, method):
    response = requests.request(method, f"{base_url}/add?a=1&b=2", timeout=5)
    assert_json_error(response, 405, method)
    assert "GET" in response.headers["Allow"]


def test_openapi_description_is_served(base_url):
    response = get(base_url, "/openapi.json")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert {"/add", "/sub", "/mul", "/div"} <= set(document["paths"])


def test_served_by_gunicorn_not_the_flask_debug_server(base_url):
    response = get(base_url, "/console", headers={"Host": "localhost"})
    assert_json_error(response, 404)
    assert response.headers["Server"] == "gunicorn"
    assert "Werkzeug" not in response.text


def test_curl_gets_the_result_and_the_error_as_json(base_url):
    ok = subprocess.run(["curl", "-sS", f"{base_url}/add?a=2&b=3"], capture_output=True, text=True, timeout=10)
    assert json.loads(ok.stdout) == {"result": 5.0}
    failed = subprocess.run(["curl", "-sS", "-w", "\n%{http_code} %{content_type}", f"{base_url}/div?a=2&b=0"],
                            capture_output=True, text=True, timeout=10)
    body, status_line = failed.stdout.rsplit("\n", 1)
    assert json.loads(body) == {"error": "Division by zero"}
    assert status_line == "400 application/json"


# --- limits (rest/README.md "Limits") ---

def test_query_over_max_query_bytes_is_414_json(base_url):
    limit = rest_server.MAX_QUERY_BYTES
    assert_json_error(get(base_url, "/add?a=" + "1" * limit + "&b=1"), 414, str(limit))


def test_request_line_over_max_request_line_bytes_is_414_json(server):
    _, port = server
    target = "/add?a=1&b=1&pad=" + "x" * rest_server.MAX_REQUEST_LINE_BYTES
    status, headers, body = split_http(raw_exchange(port, f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode()))
    assert status == 414 and headers["content-type"] == "application/json"
    assert "too large" in json.loads(body)["error"]


def test_too_many_header_fields_is_431_json(server):
    _, port = server
    fields = "".join(f"X-Field-{i}: {i}\r\n" for i in range(rest_server.MAX_HEADER_FIELDS + 1))
    status, headers, body = split_http(raw_exchange(port, f"GET /add?a=1&b=1 HTTP/1.1\r\n{fields}\r\n".encode()))
    assert status == 431 and headers["content-type"] == "application/json"
    assert "error" in json.loads(body)


def test_header_field_over_max_header_field_bytes_is_431_json(server):
    _, port = server
    big = "X-Big: " + "y" * rest_server.MAX_HEADER_FIELD_BYTES
    status, headers, body = split_http(raw_exchange(port, f"GET /add?a=1&b=1 HTTP/1.1\r\n{big}\r\n\r\n".encode()))
    assert status == 431 and headers["content-type"] == "application/json"
    assert "error" in json.loads(body)


def test_malformed_request_is_400_json_and_server_keeps_serving(server, base_url):
    _, port = server
    status, headers, body = split_http(raw_exchange(port, b"NONSENSE\r\n\r\n"))
    assert status == 400 and headers["content-type"] == "application/json"
    assert "error" in json.loads(body)
    assert get(base_url, "/add?a=1&b=1").json() == {"result": 2.0}


def test_idle_keepalive_connection_is_closed_after_idle_timeout(server):
    _, port = server
    idle = rest_server.IDLE_TIMEOUT_SECONDS
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=idle + 10)
    try:
        conn.request("GET", "/add?a=1&b=1")
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b'{"result": 2.0}\n'
        assert response.getheader("Connection", "keep-alive").lower() == "keep-alive"
        started = time.monotonic()
        after = conn.sock.recv(1)  # blocks until the server closes the idle connection
        waited = time.monotonic() - started
    finally:
        conn.close()
    assert after == b""
    assert idle / 2 <= waited <= idle + 8, waited


def silent_connections(port: int, count: int) -> list[socket.socket]:
    """`count` clients that connect and never send a byte."""
    return [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]


def timed_add(port: int, timeout: float) -> tuple[float, float]:
    started = time.monotonic()
    response = requests.get(f"http://127.0.0.1:{port}/add?a=1&b=2", timeout=timeout)
    return response.json()["result"], time.monotonic() - started


def test_200_silent_clients_do_not_stall_a_well_behaved_one(spawn, port):
    start_server(port, spawn)
    assert rest_server.WORKERS * rest_server.MAX_CONNECTIONS_PER_WORKER > 200  # below the connection limit
    silent = silent_connections(port, 200)
    try:
        result, took = timed_add(port, timeout=10)
    finally:
        for s in silent:
            s.close()
    assert result == 3.0
    assert took < 1.0, f"answered after {took:.2f} s"


def held_by_workers(proc: Proc, port: int, clients: list[socket.socket]) -> list[socket.socket]:
    """The clients whose connection a worker has accepted (the others wait in a listen backlog)."""
    by_port = {s.getsockname()[1]: s for s in clients}
    inodes = set().union(*(socket_inodes(pid) for pid in children(proc.pid)))
    return [by_port[remote] for state, remote, inode in tcp_sockets(port)
            if state == ESTABLISHED and remote in by_port and inode in inodes]


def test_beyond_max_connections_a_client_waits_until_idle_ones_are_closed(spawn, port):
    """Each worker listens on its own socket and the kernel assigns every new connection to one of them by a
    hash of its addresses: a newcomer waits in its worker's backlog once that worker holds its limit. Sent
    100 more than WORKERS x the limit, every worker is full (one gets fewer than its 200 of 500 once in
    100,000 runs), whichever the newcomer is assigned to."""
    proc = start_server(port, spawn)
    limit = rest_server.WORKERS * rest_server.MAX_CONNECTIONS_PER_WORKER
    silent = silent_connections(port, limit + 100)
    try:
        deadline = time.monotonic() + 10
        while len(held := held_by_workers(proc, port, silent)) < limit and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(held) == limit, "each worker holds MAX_CONNECTIONS_PER_WORKER, no more"
        result, took = timed_add(port, timeout=rest_server.IDLE_TIMEOUT_SECONDS + 15)
        closed_by_server = sum(1 for s in held if s.recv(1) == b"")  # each was closed, none answered
    finally:
        for s in silent:
            s.close()
    assert result == 3.0
    assert took >= rest_server.IDLE_TIMEOUT_SECONDS / 2, f"answered after {took:.2f} s: the limit was not reached"
    assert closed_by_server == limit


def test_20_concurrent_requests_all_answered(base_url):
    def add(i: int) -> float:
        return get(base_url, f"/add?a={i}&b=1000").json()["result"]

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(add, range(20)))
    assert results == [i + 1000.0 for i in range(20)]


def test_each_request_is_logged_on_one_line(server, base_url):
    proc, _ = server
    marker = "a=4242.5"
    get(base_url, f"/sub?{marker}&b=1")
    proc.wait_for(rf'"GET /sub\?{marker}&b=1 HTTP/1.1" 200', timeout=5)
    assert proc.count(rf"GET /sub\?{marker}") == 1


# --- the client ---

def run_client(port: int, *args: str) -> tuple[int, list[str]]:
    proc = Proc(script("rest", "client.py", "--host", "127.0.0.1", "--port", str(port), *args),
                cwd=str(REPO / "rest"))
    try:
        code = proc.wait(timeout=20)
    finally:
        proc.stop()
    return code, proc.lines


def test_client_both_prints_add_and_mul_lines(server):
    assert run_client(server[1], "--op", "both", "-a", "2", "-b", "3") == (0, ["add(2.0,3.0) = 5.0",
                                                                             "mul(2.0,3.0) = 6.0"])


def test_client_all_prints_the_four_operations(server):
    code, lines = run_client(server[1], "--op", "all", "-a", "2", "-b", "3")
    assert code == 0
    assert lines == ["add(2.0,3.0) = 5.0", "sub(2.0,3.0) = -1.0", "mul(2.0,3.0) = 6.0",
                     "div(2.0,3.0) = 0.6666666666666666"]


def test_client_single_operation_prints_one_line(server):
    assert run_client(server[1], "--op", "sub", "-a", "10", "-b", "4.5") == (0, ["sub(10.0,4.5) = 5.5"])


def test_client_div_by_zero_prints_the_server_error_and_exits_nonzero(server):
    code, lines = run_client(server[1], "--op", "div", "-a", "2", "-b", "0")
    assert code != 0
    assert lines == ["div(2.0,0.0) -> error: Division by zero"]


def test_client_against_a_down_server_prints_one_line_and_exits_nonzero(port):
    code, lines = run_client(port, "--op", "add", "-a", "1", "-b", "2")
    assert code != 0
    assert len(lines) == 1, lines
    assert "cannot reach the REST server" in lines[0] and f"127.0.0.1:{port}" in lines[0]
    assert "Traceback" not in lines[0]


def test_client_gives_up_connecting_after_its_connect_timeout(port):
    # A listener whose accept queue is full: the kernel drops further SYNs, as an unreachable host would.
    with socket.socket() as full:
        full.bind(("127.0.0.1", port))
        full.listen(0)
        queued = []
        for _ in range(8):  # fill the queue until a connect is no longer answered
            try:
                queued.append(socket.create_connection(("127.0.0.1", port), timeout=0.5))
            except TimeoutError:
                break
        else:
            pytest.fail("the accept queue never filled")
        try:
            started = time.monotonic()
            code, lines = run_client(port, "--op", "add", "-a", "1", "-b", "2")
            took = time.monotonic() - started
        finally:
            for s in queued:
                s.close()
    assert code != 0 and len(lines) == 1, lines
    assert f"no answer within {rest_client.CONNECT_TIMEOUT_SECONDS} s" in lines[0], lines
    assert took >= rest_client.CONNECT_TIMEOUT_SECONDS


def test_client_gives_up_waiting_for_an_answer_after_its_read_timeout(port):
    with socket.socket() as mute:  # accepts (the kernel does), never answers
        mute.bind(("127.0.0.1", port))
        mute.listen()
        code, lines = run_client(port, "--op", "mul", "-a", "1", "-b", "2")
    assert code != 0
    assert lines == [f"mul(1.0,2.0) -> error: no answer within {rest_client.READ_TIMEOUT_SECONDS} s"]


# --- lifecycle: ready line, stop, port taken ---

def test_ready_line_names_the_address(spawn, port):
    proc = start_server(port, spawn)
    assert proc.count(rf"^REST server listening on 127\.0\.0\.1:{port}\b") == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl+C"])
def test_stops_within_a_second_without_traceback_even_with_open_connections(spawn, port, sig):
    proc = start_server(port, spawn)
    session = requests.Session()  # keeps its connection alive, as a browser would
    assert session.get(f"http://127.0.0.1:{port}/add?a=1&b=2", timeout=5).status_code == 200
    started = time.monotonic()
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl+C in a terminal reaches the whole process group: master and workers
    else:
        proc.signal(sig)  # docker stop / kill: the master only
    proc.popen.wait(timeout=10)
    assert time.monotonic() - started < 1.0
    session.close()
    assert "Traceback" not in proc.output
    assert "[ERROR]" not in proc.output and "[CRITICAL]" not in proc.output
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/add?a=1&b=2", timeout=2)


def test_port_already_taken_gives_one_clear_line(spawn, port):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        proc = spawn.script("rest", "server.py", "--host", "127.0.0.1", "--port", str(port))
        code = proc.wait(timeout=15)
    assert code != 0
    assert len(proc.lines) == 1, proc.lines
    assert f"port {port}" in proc.lines[0] and "already in use" in proc.lines[0]
