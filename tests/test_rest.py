"""REST demo: the app in-process (Flask test client), the real server under gunicorn, its client, curl,
the limits, stopping, SERVER_LOG, the gunicorn command line and the folder copied alone."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from helpers import REST_READY, accepted_client_ports, children, script_constant, wait_for_booted_workers

from labkit.procs import REPO, Proc, free_port, python_env

REST = REPO / "rest"
READY = REST_READY
CONF = REST / "gunicorn.conf.py"
HEADER_TIMEOUT_SECONDS = script_constant(CONF, "HEADER_TIMEOUT_SECONDS")
LIMIT_REQUEST_LINE = script_constant(CONF, "limit_request_line")
LIMIT_REQUEST_FIELDS = script_constant(CONF, "limit_request_fields")
LIMIT_REQUEST_FIELD_SIZE = script_constant(CONF, "limit_request_field_size")
WORKERS = script_constant(CONF, "workers")
WORKER_CONNECTIONS = script_constant(CONF, "worker_connections")
CONNECT_TIMEOUT_SECONDS = script_constant(REST / "client.py", "CONNECT_TIMEOUT_SECONDS")
READ_TIMEOUT_SECONDS = script_constant(REST / "client.py", "READ_TIMEOUT_SECONDS")


def server_argv(port: int) -> list[str]:
    return [sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(port)]


def start_server(spawn, port: int, **kw) -> Proc:
    proc = spawn(server_argv(port), cwd=str(REST), **kw)
    proc.wait_for(READY, timeout=20)
    return proc


@pytest.fixture(scope="module")
def server():
    """One real server for the read-only tests of this module."""
    port = free_port()
    proc = Proc(server_argv(port), cwd=str(REST))
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


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


# --- the app in-process (Flask test client, no server, no port) ---

@pytest.fixture(scope="module")
def client():
    spec = importlib.util.spec_from_file_location("rest_server", REST / "server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.app.testing = True
    return module.app.test_client()


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


def test_in_process_the_app_sets_no_query_length_limit_of_its_own(client):
    """The length limit is gunicorn's (limit_request_line, tested below); the app answers what it lets through."""
    long_number = client.get("/add?a=" + "1" * LIMIT_REQUEST_LINE + "&b=1")
    assert long_number.status_code == 400 and "'a'" in long_number.get_json()["error"]
    long_garbage = client.get("/add?a=" + "x" * LIMIT_REQUEST_LINE + "&b=1")
    assert long_garbage.status_code == 400 and len(long_garbage.get_json()["error"]) < 120  # the value shown cut


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


# --- limits (rest/README.md "Limits") ---

def test_a_query_as_long_as_gunicorn_lets_through_is_answered_by_the_app_in_json(base_url):
    """No query limit of the app's own: up to limit_request_line the app answers (here: 400, a number too large);
    beyond it gunicorn's 414 page (GUNICORN_REFUSES below)."""
    longest = "/add?a=" + "1" * (LIMIT_REQUEST_LINE - len("GET /add?a=&b=1 HTTP/1.1") - 2) + "&b=1"
    assert_json_error(get(base_url, longest), 400, "'a'", "too large")


# Requests gunicorn itself refuses, before the app sees them, get gunicorn's own small HTML page (rest/README.md).
GUNICORN_REFUSES = {
    "request line over limit_request_line": (
        f"GET /add?a=1&b=1&pad={'x' * LIMIT_REQUEST_LINE} HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    "more than limit_request_fields header fields": (
        "GET /add?a=1&b=1 HTTP/1.1\r\n" + "".join(f"X-F-{i}: {i}\r\n" for i in range(LIMIT_REQUEST_FIELDS + 1))
        + "\r\n", 431),
    "header field over limit_request_field_size": (
        f"GET /add?a=1&b=1 HTTP/1.1\r\nX-Big: {'y' * LIMIT_REQUEST_FIELD_SIZE}\r\n\r\n", 431),
    "garbage request line": ("NONSENSE\r\n\r\n", 400),
}


@pytest.mark.parametrize("case", list(GUNICORN_REFUSES))
def test_requests_gunicorn_refuses_get_its_html_page_and_the_server_keeps_serving(server, base_url, case):
    request_text, expected = GUNICORN_REFUSES[case]
    status, headers, body = raw_exchange(server[1], request_text.encode())
    assert status == expected, body
    assert headers["content-type"] == "text/html" and headers["connection"] == "close"
    assert b"Traceback" not in body
    assert get(base_url, "/add?a=1&b=1").json() == {"result": 2.0}


def test_idle_keepalive_connection_is_closed_after_the_header_timeout(server):
    conn = http.client.HTTPConnection("127.0.0.1", server[1], timeout=HEADER_TIMEOUT_SECONDS + 10)
    try:
        conn.request("GET", "/add?a=1&b=1")
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read()) == {"result": 2.0}
        assert not response.will_close
        started = time.monotonic()
        after = conn.sock.recv(1)  # blocks until the server closes the idle connection
        waited = time.monotonic() - started
    finally:
        conn.close()
    assert after == b""
    assert HEADER_TIMEOUT_SECONDS / 2 <= waited <= HEADER_TIMEOUT_SECONDS + 8, waited


def silent_connections(port: int, count: int) -> list[socket.socket]:
    """`count` clients that connect and never send a byte."""
    return [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]


def timed_add(port: int, timeout: float) -> tuple[float, float]:
    started = time.monotonic()
    response = requests.get(f"http://127.0.0.1:{port}/add?a=1&b=2", timeout=timeout)
    return response.json()["result"], time.monotonic() - started


def test_beyond_max_connections_a_client_waits_until_silent_ones_are_dropped(spawn, port):
    """Both workers accept from one listening socket; a worker holding WORKER_CONNECTIONS stops
    accepting. With 100 more silent clients than both can hold, a newcomer waits in the listen queue until
    the header timeout drops silent ones."""
    proc = start_server(spawn, port)
    limit = WORKERS * WORKER_CONNECTIONS
    silent = silent_connections(port, limit + 100)
    try:
        deadline = time.monotonic() + 10
        while len(held := accepted_client_ports(children(proc.pid), port)) < limit and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(held) == limit, "each worker holds worker_connections, no more"
        result, took = timed_add(port, timeout=HEADER_TIMEOUT_SECONDS + 15)
        held_sockets = [s for s in silent if s.getsockname()[1] in held]
        closed_by_server = sum(1 for s in held_sockets if s.recv(1) == b"")  # each was closed, none answered
    finally:
        for s in silent:
            s.close()
    assert result == 3.0
    assert took >= HEADER_TIMEOUT_SECONDS / 2, f"answered after {took:.2f} s: the limit was not reached"
    assert closed_by_server == limit


# --- the client ---

def run_client(port: int, *args: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    proc = Proc([sys.executable, "client.py", "--host", "127.0.0.1", "--port", str(port), *args], cwd=str(REST),
                env=env)
    try:
        code = proc.wait(timeout=30)
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


def test_client_single_operation_repeated_over_one_connection(server):
    proc, port = server
    assert run_client(port, "--op", "sub", "-a", "10", "-b", "4.5", "--repeat", "3") == (0, ["sub(10.0,4.5) = 5.5"] * 3)
    proc.wait_for_count(r'"GET /sub\?a=10\.0&b=4\.5 ', 3, timeout=5)
    client_ports = {line.split('"')[0].rsplit(":", 1)[1] for line in proc.lines if "GET /sub?a=10.0&b=4.5 " in line}
    assert len(client_ports) == 1, "the three calls should share one keep-alive connection"


def test_client_div_by_zero_prints_the_server_error_and_exits_nonzero(server):
    code, lines = run_client(server[1], "--op", "div", "-a", "2", "-b", "0")
    assert (code, lines) == (1, ["div(2.0,0.0) -> error: Division by zero"])


def test_client_against_a_down_server_prints_one_line_and_exits_nonzero(port):
    code, lines = run_client(port, "--op", "add", "-a", "1", "-b", "2")
    assert code != 0
    assert lines == [f"error: cannot reach the REST server at 127.0.0.1:{port}: Connection refused"]


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
    assert f"no answer within {CONNECT_TIMEOUT_SECONDS} s" in lines[0], lines
    assert took >= CONNECT_TIMEOUT_SECONDS


def test_client_gives_up_waiting_for_an_answer_after_its_timeout(port):
    with socket.socket() as mute:  # accepts (the kernel does), never answers
        mute.bind(("127.0.0.1", port))
        mute.listen()
        code, lines = run_client(port, "--op", "mul", "-a", "1", "-b", "2", "--timeout", "0.5")
    assert code != 0
    assert lines == ["mul(1.0,2.0) -> error: no answer within 0.5 s"]
    assert f"default: {READ_TIMEOUT_SECONDS}" in subprocess.run(
        [sys.executable, "client.py", "--help"], cwd=REST, capture_output=True, text=True, timeout=30).stdout


# --- the client's TLS and login flags, against the classroom's server: rest/ under gunicorn's TLS settings behind
# classroom/rest_login.py (HTTP basic auth against a Mosquitto password file), certificates made here with openssl ---

ACCOUNT = ("student-7", "correct horse")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    """(port, the CA that signed the server's certificate, another CA); one account, ACCOUNT."""
    d = tmp_path_factory.mktemp("tls")
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=lab test {ca}",
                "-keyout", f"{ca}.key", "-out", f"{ca}.crt", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out",
            "server.csr", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "san.ext", "-out", "server.crt", cwd=d)
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(d / "passwd"), *ACCOUNT], check=True, timeout=30)
    port = free_port()
    proc = Proc([sys.executable, "-m", "gunicorn", "--certfile", str(d / "server.crt"), "--keyfile",
                 str(d / "server.key"), "--bind", f"127.0.0.1:{port}", "--pythonpath", str(REPO / "classroom"),
                 "rest_login:app"], cwd=str(REST), env=python_env({"CLASSROOM_PASSWORD_FILE": str(d / "passwd")}))
    try:
        proc.wait_for(READY, timeout=20)
        yield port, d / "ca.crt", d / "other-ca.crt"
    finally:
        proc.stop(timeout=3)  # its output is not checked: the server side is the classroom's (a refused handshake
        # makes gevent print a traceback there)


def test_client_over_https_with_its_ca_and_a_login_prints_the_results_and_honours_sslkeylogfile(https_server,
                                                                                                  tmp_path):
    port, ca, _ = https_server
    keylog = tmp_path / "keys.log"
    code, lines = run_client(port, "--cafile", str(ca), "--username", ACCOUNT[0], "--password", ACCOUNT[1],
                             "--op", "both", "-a", "2", "-b", "3", env=python_env({"SSLKEYLOGFILE": str(keylog)}))
    assert (code, lines) == (0, ["add(2.0,3.0) = 5.0", "mul(2.0,3.0) = 6.0"])
    secrets = keylog.read_text().splitlines()  # urllib3 hands SSLKEYLOGFILE to Python's ssl: Wireshark reads this
    assert sum(line.startswith("CLIENT_TRAFFIC_SECRET_0 ") for line in secrets) == 1, secrets  # one TLS session


@pytest.mark.parametrize("login", [("--username", ACCOUNT[0], "--password", "wrong"), ()], ids=["wrong", "none"])
def test_client_refused_a_login_says_so_in_one_line(https_server, login):
    port, ca, _ = https_server
    code, lines = run_client(port, "--cafile", str(ca), *login, "--op", "all", "-a", "2", "-b", "3")
    problem = f"wrong username or password ({ACCOUNT[0]})" if login else "add --username, --password"
    assert code != 0
    assert lines == [f"error: the REST server at 127.0.0.1:{port} refused the login (HTTP 401): {problem}"]


def test_client_with_another_ca_refuses_the_server_in_one_line(https_server):
    port, _, other = https_server
    code, lines = run_client(port, "--cafile", str(other), "--username", ACCOUNT[0], "--password", ACCOUNT[1],
                             "--op", "add", "-a", "1", "-b", "2")
    assert code != 0
    assert lines == [f"error: cannot reach the REST server at 127.0.0.1:{port}: certificate verify failed: unable to "
                     f"get local issuer certificate (is {other} the CA of its certificate?)"]


def test_client_with_a_cafile_that_is_not_there_is_refused_before_connecting(port):
    code, lines = run_client(port, "--cafile", "/nonexistent/ca.crt", "--op", "add", "-a", "1", "-b", "2")
    assert code == 2 and lines[-1] == "client.py: error: argument --cafile: no such file: /nonexistent/ca.crt", lines


# --- lifecycle: ready line, stop, port taken, SERVER_LOG ---

def test_ready_line_names_the_address(spawn, port):
    proc = start_server(spawn, port)
    assert proc.count(rf"^REST server listening on 127\.0\.0\.1:{port}\b") == 1


def open_clients(port: int) -> list[socket.socket]:
    """A kept-alive connection after one answered request, a silent one and a half-sent request."""
    kept_alive = socket.create_connection(("127.0.0.1", port), timeout=5)
    kept_alive.sendall(b"GET /add?a=1&b=2 HTTP/1.1\r\nHost: lab\r\n\r\n")
    assert kept_alive.recv(65536).startswith(b"HTTP/1.1 200 OK")
    half = socket.create_connection(("127.0.0.1", port), timeout=5)
    half.sendall(b"GET /add?a=1&b=2 HTTP/1.1\r\nHost: lab\r\n")  # the blank line that ends the head never comes
    return [kept_alive, socket.create_connection(("127.0.0.1", port), timeout=5), half]


def gone(pid: int) -> bool:
    """The process has exited: no longer there, or a zombie (a worker its master killed as it left is reaped by
    whoever adopts it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


#: gunicorn's line for a worker it killed after graceful_timeout (its wording, "Perhaps out of memory?" included).
KILLED = r"Worker \(pid:\d+\) was sent SIGKILL! Perhaps out of memory\?"
#: The spec's bound on a stop (SIGTERM, Ctrl+C or `docker compose stop`), reached by gunicorn's settings
#: (graceful_timeout in gunicorn.conf.py; compose's stop_signal: SIGINT).
STOP_SECONDS = 3.0


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl+C", "Ctrl+C twice", "docker compose stop"])
def test_stops_within_3_seconds_without_traceback_even_with_open_connections(spawn, port, how):
    proc = start_server(spawn, port)
    workers = wait_for_booted_workers(proc.pid, WORKERS)  # booted: a stop signal reaches their handlers
    clients = open_clients(port)
    started = time.monotonic()
    if how == "SIGTERM":
        proc.signal(signal.SIGTERM)  # kill: the master only
    elif how == "docker compose stop":
        proc.signal(signal.SIGINT)  # compose's stop_signal, passed by the container's init to the master only
    else:  # Ctrl+C in a terminal reaches the whole process group: master and workers
        os.killpg(proc.pid, signal.SIGINT)
        if how == "Ctrl+C twice":
            time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGINT)
    proc.popen.wait(timeout=10)
    took = time.monotonic() - started
    for s in clients:
        s.close()
    assert took < STOP_SECONDS, f"took {took:.2f} s:\n{proc.output}"
    assert proc.popen.returncode == 0, proc.output
    assert "Traceback" not in proc.output, proc.output
    # Nothing but the ready line and access lines, and at most gunicorn's own line for a worker still exiting after
    # graceful_timeout, which it then kills (seen on a loaded machine: a worker's exit can take over a second).
    assert all(line.startswith("REST server listening") or '" 200 ' in line or re.fullmatch(KILLED, line)
               for line in proc.lines), proc.output
    assert all(gone(w) for w in workers), "a worker outlived its master"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/add?a=1&b=2", timeout=2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl+C"])
def test_stops_within_3_seconds_right_after_the_ready_line_while_workers_still_start(spawn, port, sig):
    """The ready line comes once the socket listens (gunicorn's when_ready), before the workers have booted. A worker
    that gets its stop signal before it has set its handlers misses it, and gunicorn kills it after graceful_timeout
    (its `was sent SIGKILL!` line): still within the bound."""
    proc = start_server(spawn, port)
    started = time.monotonic()
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl+C reaches the whole process group
    else:
        proc.signal(sig)
    proc.popen.wait(timeout=10)
    assert time.monotonic() - started < STOP_SECONDS, proc.output
    assert proc.popen.returncode == 0 and "Traceback" not in proc.output, proc.output


def test_port_already_taken_gives_one_clear_line_and_exit_code_2(spawn, port):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        proc = spawn(server_argv(port), cwd=str(REST))
        code = proc.wait(timeout=15)
    assert code == 2
    assert proc.lines == [f"error: port {port} on 127.0.0.1 is already in use: stop the other REST server "
                          "(or choose another with --port)"]


def test_with_server_log_every_line_is_appended_there_and_a_second_copy_follows_it(spawn, port, tmp_path):
    log = tmp_path / "server.log"
    env = python_env({"SERVER_LOG": str(log)})
    server = start_server(spawn, port, env=env)
    assert stat.S_IMODE(log.stat().st_mode) & 0o444 == 0o444, "readable by all"
    follower = spawn(server_argv(port), cwd=str(REST), env=env)
    follower.wait_for("^Following", timeout=20)
    assert follower.lines[0] == (f"Following the REST server already running in this container (port {port}): "
                                 "its output from now on. Ctrl+C to stop.")
    get(f"http://127.0.0.1:{port}", "/mul?a=6&b=7")
    follower.wait_for(r'"GET /mul\?a=6&b=7 HTTP/1.1" 200', timeout=5)
    server.wait_for(r'"GET /mul\?a=6&b=7 HTTP/1.1" 200', timeout=5)
    assert not any("listening on" in line for line in follower.lines), "only what comes after it started"
    assert log.read_text().splitlines()[0].startswith(f"REST server listening on 127.0.0.1:{port}")
    started = time.monotonic()
    follower.signal(signal.SIGTERM)
    assert follower.popen.wait(timeout=5) == 0 and time.monotonic() - started < STOP_SECONDS
    assert "Traceback" not in follower.output


def test_a_plain_gunicorn_in_the_folder_serves_the_same_app(spawn, port):
    """What the Docker image runs: `gunicorn`, from the folder, no PYTHONPATH; it reads ./gunicorn.conf.py, whose
    wsgi_app names server:app (-b, gunicorn's own flag, only moves it to a free port)."""
    env = {k: v for k, v in python_env().items() if k != "PYTHONPATH"}
    proc = spawn([sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}"], cwd=str(REST), env=env)
    proc.wait_for(rf"^REST server listening on 127\.0\.0\.1:{port}", timeout=20)
    assert get(f"http://127.0.0.1:{port}", "/div?a=1&b=4").json() == {"result": 0.25}
    proc.wait_for(r'"GET /div\?a=1&b=4 HTTP/1.1" 200', timeout=5)


def test_the_folder_copied_alone_runs_server_and_client(spawn, tmp_path):
    """rest/ copied to an empty directory, run there with the venv's Python, without PYTHONPATH."""
    copy = tmp_path / "rest"
    shutil.copytree(REST, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pcap*"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"
    port = free_port()
    spawn([sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(port)], cwd=str(copy), env=env
          ).wait_for(READY, timeout=20)
    client = subprocess.run([sys.executable, "client.py", "--host", "127.0.0.1", "--port", str(port), "--op", "all",
                             "-a", "2", "-b", "3"], cwd=copy, env=env, capture_output=True, text=True, timeout=30)
    assert client.returncode == 0, client.stderr
    assert client.stdout.splitlines() == ["add(2.0,3.0) = 5.0", "sub(2.0,3.0) = -1.0", "mul(2.0,3.0) = 6.0",
                                          "div(2.0,3.0) = 0.6666666666666666"]
