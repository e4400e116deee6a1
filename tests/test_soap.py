"""SOAP demo: the spyne service under gunicorn, its zeep client, and hand-written envelopes posted with curl."""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import requests
from conftest import free_port
from lxml import etree

from labkit.procs import REPO, Proc, python_env, script

READY = r"SOAP server listening on"
NS_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "lab.soap.calculator"


def start_server(port: int, spawn=None) -> Proc:
    argv = script("soap", "server.py", "--host", "127.0.0.1", "--port", str(port))
    proc = spawn(argv, cwd=str(REPO / "soap")) if spawn else Proc(argv, cwd=str(REPO / "soap"))
    proc.wait_for(READY, timeout=30)
    return proc


@pytest.fixture(scope="module")
def server():
    """One real server (gunicorn master + workers) for the tests that do not stop it."""
    port = free_port()
    proc = start_server(port)
    try:
        yield proc, port
    finally:
        proc.stop(timeout=3)


def run_client(port: int, *args: str, host: str = "127.0.0.1") -> subprocess.CompletedProcess:
    return subprocess.run(script("soap", "client.py", "--host", host, "--port", str(port), *args),
                          cwd=str(REPO / "soap"), env=python_env(), capture_output=True, text=True, timeout=60)


def envelope(operation: str, body: str) -> bytes:
    """A SOAP 1.1 request written by hand, as any client outside this project would."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<soapenv:Envelope xmlns:soapenv="{NS_SOAP_ENV}" xmlns:c="{TNS}">'
            f"<soapenv:Body><c:{operation}>{body}</c:{operation}></soapenv:Body></soapenv:Envelope>").encode()


def call(operation: str, a, b) -> bytes:
    return envelope(operation, f"<c:a>{a}</c:a><c:b>{b}</c:b>")


def curl_post(port: int, payload: bytes, content_type: str = "text/xml; charset=utf-8") -> tuple[int, str, bytes]:
    """POST with curl, an HTTP client outside this project: (status, content type, body)."""
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-H", f"Content-Type: {content_type}", "-H", 'SOAPAction: ""',
         "-H", "Expect:", "--data-binary", "@-", "-o", "-", "-w", "\n%{http_code} %{content_type}",
         f"http://127.0.0.1:{port}/"],
        input=payload, capture_output=True, timeout=20)
    assert done.returncode == 0, done.stderr
    body, _, trailer = done.stdout.rpartition(b"\n")
    status, _, ctype = trailer.decode().partition(" ")
    return int(status), ctype, body


def parse(body: bytes) -> etree._Element:
    return etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))


def fault_of(status: int, ctype: str, body: bytes) -> tuple[str, str]:
    """(faultcode without prefix, faultstring) of a proper SOAP 1.1 Fault answer; fails on anything else."""
    assert status == 500, body
    assert ctype.startswith("text/xml"), ctype
    assert b"Traceback" not in body
    root = parse(body)
    assert root.tag == f"{{{NS_SOAP_ENV}}}Envelope"
    fault = root.find(f"{{{NS_SOAP_ENV}}}Body/{{{NS_SOAP_ENV}}}Fault")
    assert fault is not None, body
    return fault.findtext("faultcode").split(":", 1)[-1], fault.findtext("faultstring")


def result_of(status: int, body: bytes, operation: str) -> str:
    assert status == 200, body
    return parse(body).findtext(f".//{{{TNS}}}{operation}Response/{{{TNS}}}{operation}Result")


# --- the contract and the four operations ---------------------------------------------------------


def test_server_prints_one_ready_line(server):
    proc, port = server
    assert proc.count(READY) == 1
    assert f"127.0.0.1:{port}" in proc.output


def test_wsdl_is_served_with_the_four_operations(server):
    _, port = server
    response = requests.get(f"http://127.0.0.1:{port}/?wsdl", timeout=10)
    assert response.status_code == 200
    wsdl = parse(response.content)
    ns = {"wsdl": "http://schemas.xmlsoap.org/wsdl/", "xs": "http://www.w3.org/2001/XMLSchema"}
    assert wsdl.get("name") == "CalculatorService"
    assert wsdl.get("targetNamespace") == TNS
    operations = {op.get("name") for op in wsdl.iterfind("wsdl:portType/wsdl:operation", ns)}
    assert operations == {"add", "subtract", "multiply", "divide"}
    operand_types = {e.get("type") for e in wsdl.iterfind(".//xs:complexType[@name='add']//xs:element", ns)}
    assert operand_types == {"xs:integer"}
    assert wsdl.find(".//xs:complexType[@name='divideResponse']//xs:element", ns).get("type") == "xs:double"


@pytest.mark.parametrize("op, a, b, line", [
    ("add", 10, 5, "add(10,5) = 15"),
    ("subtract", 10, 5, "subtract(10,5) = 5"),
    ("multiply", 10, 5, "multiply(10,5) = 50"),
    ("divide", 10, 4, "divide(10,4) = 2.5"),
])
def test_client_prints_each_operation(server, op, a, b, line):
    _, port = server
    done = run_client(port, "--op", op, "-a", str(a), "-b", str(b))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [line]


def test_client_all_calls_the_four_in_order(server):
    proc, port = server
    done = run_client(port, "--op", "all", "-a", "10", "-b", "5")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["add(10,5) = 15", "subtract(10,5) = 5", "multiply(10,5) = 50",
                                        "divide(10,5) = 2.0"]
    proc.wait_for(r"POST / -> 200 divide\(10,5\) = 2.0", timeout=5)


@pytest.mark.parametrize("op, a, b, expected", [
    ("add", 10, 5, "15"),
    ("subtract", 10, 5, "5"),
    ("multiply", -7, 6, "-42"),
    ("divide", 10, 4, "2.5"),
    ("add", 10**30, 1, str(10**30 + 1)),  # xs:integer has no size limit
])
def test_hand_written_envelope_posted_with_curl(server, op, a, b, expected):
    _, port = server
    status, ctype, body = curl_post(port, call(op, a, b))
    assert ctype.startswith("text/xml")
    assert result_of(status, body, op) == expected


def test_server_logs_each_request_on_one_line(server):
    proc, port = server
    start = len(proc.lines)
    curl_post(port, call("multiply", 6, 7))
    curl_post(port, call("divide", 1, 0))
    proc.wait_for(r"^127\.0\.0\.1:\d+ POST / -> 200 multiply\(6,7\) = 42$", timeout=5, start=start)
    proc.wait_for(r"-> 500 divide\(1,0\) fault Client\.DivisionByZero: Division by zero$", timeout=5, start=start)


# --- faults: the sender's mistakes -------------------------------------------------------------------


def test_client_divide_by_zero_prints_the_fault_and_exits_nonzero(server):
    _, port = server
    done = run_client(port, "--op", "divide", "-a", "10", "-b", "0")
    assert done.returncode != 0
    assert done.stdout.splitlines() == ["divide(10,0) -> fault: Division by zero"]
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("payload, code, needle", [
    (call("divide", 10, 0), "Client.DivisionByZero", "Division by zero"),
    (envelope("add", "<c:a>10</c:a>"), "Client.ValidationError", "'b'"),
    (envelope("add", "<c:b>10</c:b>"), "Client.ValidationError", "'a'"),
    (call("add", "ten", 5), "Client.ValidationError", "ten"),
    (call("add", "2.5", 5), "Client.ValidationError", "2.5"),
    (call("power", 2, 5), "Client.ResourceNotFound", "power"),
    (b"<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'><soapenv:Body>",
     "Client.XMLSyntaxError", ""),
    (b"", "Client.EmptyRequest", "Empty request body"),
    (b"   \r\n ", "Client.EmptyRequest", "Empty request body"),
    (f"<soapenv:Envelope xmlns:soapenv='{NS_SOAP_ENV}'><soapenv:Body/></soapenv:Envelope>".encode(),
     "Client.SoapError", "Body"),
    (b'<!DOCTYPE x><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"/>',
     "Client.DTDForbidden", "DTD"),
], ids=["divide-by-zero", "missing-b", "missing-a", "non-integer", "decimal", "unknown-operation",
        "malformed-xml", "empty-body", "blank-body", "empty-soap-body", "doctype"])
def test_sender_mistakes_are_client_faults_with_http_500(server, payload, code, needle):
    _, port = server
    got_code, message = fault_of(*curl_post(port, payload))
    assert got_code == code
    assert needle in message


def test_plain_get_is_405_with_a_fault_envelope(server):
    _, port = server
    response = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
    assert response.status_code == 405
    faultcode = parse(response.content).findtext(f"{{{NS_SOAP_ENV}}}Body/{{{NS_SOAP_ENV}}}Fault/faultcode")
    assert faultcode.split(":", 1)[-1] == "Client.RequestNotAllowed"


# --- concurrency -----------------------------------------------------------------------------------


def test_idle_connections_do_not_block_other_clients(server):
    """The original wsgiref server served one connection at a time: one silent client froze everyone."""
    _, port = server
    # More silent connections than the server has threads: none may hold a thread while it says nothing.
    silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(12)]
    half = socket.create_connection(("127.0.0.1", port), timeout=5)
    half.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n<soapenv:Env")
    try:
        started = time.monotonic()
        status, _, body = curl_post(port, call("add", 2, 3))
        assert result_of(status, body, "add") == "5"
        assert time.monotonic() - started < 3, "a silent client delayed another one"
    finally:
        for s in [*silent, half]:
            s.close()


def test_twenty_clients_at_once_all_get_their_own_answer(server):
    _, port = server

    def add(i: int) -> str:
        r = requests.post(f"http://127.0.0.1:{port}/", data=call("add", i, 1000),
                          headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=20)
        return result_of(r.status_code, r.content, "add")

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(add, range(20)))
    assert results == [str(i + 1000) for i in range(20)]


# --- the same app under another WSGI server ----------------------------------------------------------


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):  # the app logs each request itself
        pass


@pytest.fixture(scope="module")
def wsgiref_port():
    """soap/server.py's create_app() served by the standard library's wsgiref (as the original course repo did),
    in a thread of this process. wsgiref hands the connection itself over as wsgi.input."""
    spec = importlib.util.spec_from_file_location("soap_server_under_wsgiref", REPO / "soap" / "server.py")
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # spyne 2.14 imports `cgi`
        spec.loader.exec_module(module)
    logging.getLogger("spyne").setLevel(logging.CRITICAL)
    httpd = make_server("127.0.0.1", 0, module.create_app(), handler_class=QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def exchange_keeping_the_connection_open(port: int, request: bytes) -> tuple[int, bytes]:
    """Send `request` and read the answer without ever closing this side (as a keep-alive client does):
    an app waiting for more of the body than was announced never answers (socket timeout, 5 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):  # wsgiref closes after each answer
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_the_app_reads_no_further_than_content_length_under_wsgiref(wsgiref_port):
    payload = call("add", 2, 3)
    head = (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n")
    status, body = exchange_keeping_the_connection_open(wsgiref_port, head.encode() + payload)
    assert result_of(status, body, "add") == "5"


@pytest.mark.parametrize(("length_header", "code"), [
    ("", "Client.EmptyRequest"),  # no Content-Length, and wsgiref's input does not end: no body
    ("Content-Length: 12abc\r\n", "Client.BadContentLength"),
], ids=["no-content-length", "invalid-content-length"])
def test_a_missing_or_invalid_content_length_is_a_fault_at_once_under_wsgiref(wsgiref_port, length_header, code):
    request = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n{length_header}\r\n".encode()
    status, body = exchange_keeping_the_connection_open(wsgiref_port, request)
    assert fault_of(status, "text/xml", body)[0] == code


# --- the edges of a process's life --------------------------------------------------------------------


def test_client_with_server_down_says_so_in_one_line():
    port = free_port()
    done = run_client(port, "--op", "add")
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert f"cannot reach the SOAP server at 127.0.0.1:{port}" in lines[0]
    assert "refused" in lines[0].lower()


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl+C"])
def test_stops_within_a_second_without_traceback(spawn, port, how):
    proc = start_server(port, spawn)
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)  # an idle client must not hold the stop
    kept_alive = socket.create_connection(("127.0.0.1", port), timeout=5)
    kept_alive.sendall(b"GET /?wsdl HTTP/1.1\r\nHost: x\r\n\r\n")
    assert kept_alive.recv(64).startswith(b"HTTP/1.1 200")  # so a worker is up and holds this connection
    workers = _children(proc.pid)
    assert workers, "gunicorn workers expected"
    try:
        started = time.monotonic()
        if how == "SIGTERM":
            proc.signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl+C: the whole group
        code = proc.popen.wait(timeout=5)
        took = time.monotonic() - started
    finally:
        idle.close()
        kept_alive.close()
    assert took < 1.0, f"took {took:.2f}s:\n{proc.output}"
    assert code == 0
    assert "Traceback" not in proc.output
    assert "SIGKILL" not in proc.output
    deadline = time.monotonic() + 2
    while not all(_gone(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(w) for w in workers), "a worker outlived its master"


def test_port_taken_gives_one_line(spawn):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = spawn(script("soap", "server.py", "--host", "127.0.0.1", "--port", str(port)),
                     cwd=str(REPO / "soap"))
        code = proc.wait(timeout=30)
    assert code == 2
    assert proc.lines == [f"error: port {port} on 127.0.0.1 is already in use: "
                          f"stop the other SOAP server (or choose another with --port)"]
