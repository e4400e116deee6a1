"""SOAP demo: soap/server.py (spyne under gunicorn) as a program, its zeep client, hand-written envelopes via curl."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from helpers import (
    NS_SOAP_ENV,
    SOAP_READY,
    SOAP_TNS,
    copy_folder_alone,
    curl_post,
    fault_of,
    parse_xml,
    result_of,
    script_constant,
    soap_call,
    soap_envelope,
    standalone_env,
    start_soap_server,
    wait_for_booted_workers,
)

from labkit.procs import REPO, Proc, free_port, python_env

SOAP = REPO / "soap"
GUNICORN_CONF = SOAP / "gunicorn.conf.py"


@pytest.fixture(scope="module")
def server():
    """One real server (gunicorn master and workers) for the tests that do not stop it."""
    port = free_port()
    proc = Proc([sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(port)], cwd=str(SOAP))
    try:
        proc.wait_for(SOAP_READY, timeout=30)
        yield proc, port
    finally:
        proc.stop(timeout=3)


def run_client(port: int, *args: str, host: str = "127.0.0.1", folder: Path = SOAP, python: str = sys.executable,
               env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([python, "client.py", "--host", host, "--port", str(port), *args], cwd=str(folder),
                          env=env or python_env(), capture_output=True, text=True, timeout=60)


# --- the contract and the four operations ---------------------------------------------------------


def test_server_prints_one_ready_line(server):
    proc, port = server
    assert proc.count(SOAP_READY) == 1
    assert f"127.0.0.1:{port}" in proc.lines[0]


def test_wsdl_is_served_with_the_four_operations(server):
    _, port = server
    response = requests.get(f"http://127.0.0.1:{port}/?wsdl", timeout=10)
    assert response.status_code == 200
    wsdl = parse_xml(response.content)
    ns = {"wsdl": "http://schemas.xmlsoap.org/wsdl/", "xs": "http://www.w3.org/2001/XMLSchema"}
    assert wsdl.get("name") == "CalculatorService"
    assert wsdl.get("targetNamespace") == SOAP_TNS
    operations = [op.get("name") for op in wsdl.iterfind("wsdl:portType/wsdl:operation", ns)]
    assert operations == ["add", "subtract", "multiply", "divide"]
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


def test_client_all_calls_every_operation_of_the_wsdl_in_order(server):
    proc, port = server
    done = run_client(port, "--op", "all", "-a", "10", "-b", "5")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["add(10,5) = 15", "subtract(10,5) = 5", "multiply(10,5) = 50",
                                        "divide(10,5) = 2.0"]
    proc.wait_for(r'"POST / HTTP/1.1" 200 divide\(10,5\) = 2.0$', timeout=5)


def test_client_calls_the_address_it_was_given_whatever_address_the_wsdl_names(spawn, port):
    """spyne writes into the WSDL the address of the first request each worker saw: in Docker `soap-server:8000` for a
    client container, `127.0.0.1:8000` for a browser on the host. The client posts to the address it was given."""
    start_soap_server(spawn, port)
    for _ in range(12):  # new connections, spread over both workers: each builds its WSDL for this Host
        wsdl = requests.get(f"http://127.0.0.1:{port}/?wsdl", headers={"Host": "127.0.0.1:1"}, timeout=10).content
    ns = {"soap": "http://schemas.xmlsoap.org/wsdl/soap/"}
    assert parse_xml(wsdl).find(".//soap:address", ns).get("location") == "http://127.0.0.1:1/"  # nobody listens
    done = run_client(port, "--op", "all", "-a", "10", "-b", "5")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["add(10,5) = 15", "subtract(10,5) = 5", "multiply(10,5) = 50",
                                        "divide(10,5) = 2.0"]


def test_client_repeat_makes_the_calls_again_over_one_connection(server):
    proc, port = server
    start = len(proc.lines)
    done = run_client(port, "--op", "add", "-a", "2", "-b", "3", "--repeat", "3")
    assert done.stdout.splitlines() == ["add(2,3) = 5"] * 3
    proc.wait_for_count(r"add\(2,3\) = 5$", 3, timeout=5, start=start)
    client_ports = {re.match(r"^127\.0\.0\.1:(\d+) ", line)[1] for line in proc.lines[start:] if "add(2,3)" in line}
    assert len(client_ports) == 1


def test_client_names_the_operations_when_asked_for_one_the_wsdl_lacks(server):
    _, port = server
    done = run_client(port, "--op", "power")
    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"error: the SOAP server at 127.0.0.1:{port} has no operation 'power'; "
                                        "it offers: add, subtract, multiply, divide"]


@pytest.mark.parametrize("op, a, b, expected", [
    ("add", 10, 5, "15"),
    ("subtract", 10, 5, "5"),
    ("multiply", -7, 6, "-42"),
    ("divide", 10, 4, "2.5"),
    ("add", 10**30, 1, str(10**30 + 1)),  # xs:integer has no size limit
])
def test_hand_written_envelope_posted_with_curl(server, op, a, b, expected):
    _, port = server
    status, ctype, body = curl_post(port, soap_call(op, a, b))
    assert ctype.startswith("text/xml")
    assert result_of(status, body, op) == expected


def test_server_logs_each_request_on_one_line_with_the_call(server):
    proc, port = server
    start = len(proc.lines)
    curl_post(port, soap_call("multiply", 6, 7))
    curl_post(port, soap_call("divide", 1, 0))
    proc.wait_for(r'^127\.0\.0\.1:\d+ "POST / HTTP/1\.1" 200 multiply\(6,7\) = 42$', timeout=5, start=start)
    proc.wait_for(r'"POST / HTTP/1\.1" 500 divide\(1,0\) fault Client\.DivisionByZero: Division by zero$',
                  timeout=5, start=start)


# --- faults: the sender's mistakes -------------------------------------------------------------------


def test_client_divide_by_zero_prints_the_fault_and_exits_nonzero(server):
    _, port = server
    done = run_client(port, "--op", "divide", "-a", "10", "-b", "0")
    assert done.returncode != 0
    assert done.stdout.splitlines() == ["divide(10,0) -> fault: Division by zero"]
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("payload, code, needle", [
    (soap_call("divide", 10, 0), "Client.DivisionByZero", "Division by zero"),
    (soap_envelope("add", "<c:a>10</c:a>"), "Client.ValidationError", "'b'"),
    (soap_envelope("add", "<c:b>10</c:b>"), "Client.ValidationError", "'a'"),
    (soap_call("add", "ten", 5), "Client.ValidationError", "ten"),
    (soap_call("add", "2.5", 5), "Client.ValidationError", "2.5"),
    (soap_call("power", 2, 5), "Client.ResourceNotFound", "power"),
    (b"<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'><soapenv:Body>",
     "Client.XMLSyntaxError", ""),
    (b"", "Client.EmptyRequest", "Empty request body"),
    (b"   \r\n ", "Client.XMLSyntaxError", ""),
    (f"<soapenv:Envelope xmlns:soapenv='{NS_SOAP_ENV}'><soapenv:Body/></soapenv:Envelope>".encode(),
     "Client.SoapError", "Body"),
    (b'<!DOCTYPE x><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
     b'<c:add xmlns:c="lab.soap.calculator"><c:a>1</c:a><c:b>2</c:b></c:add></soapenv:Body></soapenv:Envelope>',
     "Client.DTDForbidden", "DTD"),
], ids=["divide-by-zero", "missing-b", "missing-a", "non-integer", "decimal", "unknown-operation",
        "malformed-xml", "empty-body", "blank-body", "empty-soap-body", "doctype"])
def test_sender_mistakes_are_client_faults_with_http_500(server, payload, code, needle):
    _, port = server
    got_code, message = fault_of(*curl_post(port, payload))
    assert got_code == code, message
    assert needle in message


def test_plain_get_is_405_with_a_fault_envelope(server):
    _, port = server
    response = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
    assert response.status_code == 405
    faultcode = parse_xml(response.content).findtext(f"{{{NS_SOAP_ENV}}}Body/{{{NS_SOAP_ENV}}}Fault/faultcode")
    assert faultcode.split(":", 1)[-1] == "Client.RequestNotAllowed"


def raw_answer(port: int, request: bytes) -> bytes:
    """Send raw bytes, read the whole answer (gunicorn closes after an error page)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("request_head, status", [
    (b"GARBAGE\x01 / HTTP/1.1\r\n\r\n", b"400"),
    (b"GET /?" + b"x" * script_constant(GUNICORN_CONF, "limit_request_line") + b" HTTP/1.1\r\nHost: x\r\n\r\n",
     b"414"),
    (b"GET /?wsdl HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(
        script_constant(GUNICORN_CONF, "limit_request_fields") + 1)) + b"\r\n", b"431"),
    (b"GET /?wsdl HTTP/1.1\r\nX-Long: " + b"x" * script_constant(GUNICORN_CONF, "limit_request_field_size")
     + b"\r\n\r\n", b"431"),
], ids=["garbage-request-line", "request-line-too-long", "too-many-headers", "header-too-long"])
def test_http_gunicorn_cannot_parse_gets_gunicorns_own_error_page(server, request_head, status):
    """The request never became a SOAP call: gunicorn answers it itself, with its short HTML page."""
    _, port = server
    answer = raw_answer(port, request_head)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    assert b"text/html" in answer.split(b"\r\n\r\n", 1)[0]
    assert b"Traceback" not in answer
    status_code, _, body = curl_post(port, soap_call("add", 1, 1))
    assert result_of(status_code, body, "add") == "2"


# --- concurrency -----------------------------------------------------------------------------------


def test_idle_connections_do_not_block_other_clients(server):
    """The original wsgiref server served one connection at a time: one silent client froze everyone."""
    _, port = server
    silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(50)]
    half = socket.create_connection(("127.0.0.1", port), timeout=5)
    half.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n<soapenv:Env")
    try:
        started = time.monotonic()
        status, _, body = curl_post(port, soap_call("add", 2, 3))
        assert result_of(status, body, "add") == "5"
        assert time.monotonic() - started < 3, "a silent client delayed another one"
    finally:
        for s in [*silent, half]:
            s.close()


def test_twenty_clients_at_once_all_get_their_own_answer(server):
    _, port = server

    def add(i: int) -> str:
        r = requests.post(f"http://127.0.0.1:{port}/", data=soap_call("add", i, 1000),
                          headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=20)
        return result_of(r.status_code, r.content, "add")

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(add, range(20)))
    assert results == [str(i + 1000) for i in range(20)]


# --- the client's edges -------------------------------------------------------------------------------


def test_client_with_server_down_says_so_in_one_line():
    port = free_port()
    done = run_client(port, "--op", "add")
    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"error: cannot reach the SOAP server at 127.0.0.1:{port}: Connection refused"]


def test_client_gives_up_on_a_server_that_never_answers_after_its_timeout():
    """A local listening socket that accepts and never answers; --timeout shortens the 10 s wait."""
    with socket.create_server(("127.0.0.1", 0)) as mute:
        port = mute.getsockname()[1]
        started = time.monotonic()
        done = run_client(port, "--op", "add", "--timeout", "1")
        took = time.monotonic() - started
    assert done.returncode != 0
    assert done.stderr.splitlines() == [f"error: no answer from the SOAP server at 127.0.0.1:{port} within 1 s"]
    assert took < 8


# --- the edges of a process's life --------------------------------------------------------------------


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


#: The spec's bound on a stop (SIGTERM or Ctrl+C), reached by gunicorn's settings (graceful_timeout).
STOP_SECONDS = 3.0


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl+C", "docker compose stop"])
def test_stops_within_3_seconds_without_traceback(spawn, port, how):
    proc = start_soap_server(spawn, port)
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)  # an idle client must not hold the stop
    kept_alive = socket.create_connection(("127.0.0.1", port), timeout=5)
    kept_alive.sendall(b"GET /?wsdl HTTP/1.1\r\nHost: x\r\n\r\n")
    assert kept_alive.recv(64).startswith(b"HTTP/1.1 200")  # so a worker is up and holds this connection
    workers = wait_for_booted_workers(proc.pid, script_constant(GUNICORN_CONF, "workers"))
    try:
        started = time.monotonic()
        if how == "SIGTERM":
            proc.signal(signal.SIGTERM)
        elif how == "docker compose stop":
            proc.signal(signal.SIGINT)  # compose's stop_signal, passed by the container's init to the master only
        else:
            os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl+C: the whole group
        code = proc.popen.wait(timeout=5)
        took = time.monotonic() - started
    finally:
        idle.close()
        kept_alive.close()
    assert took < STOP_SECONDS, f"took {took:.2f}s:\n{proc.output}"
    assert code == 0
    assert "Traceback" not in proc.output  # gunicorn may log `was sent SIGKILL!` for a worker slow to exit
    deadline = time.monotonic() + 2
    while not all(_gone(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(w) for w in workers), "a worker outlived its master"


def test_port_taken_gives_one_line(spawn):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = spawn([sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(port)], cwd=str(SOAP))
        code = proc.wait(timeout=30)
    assert code == 2
    assert proc.lines == [f"error: port {port} on 127.0.0.1 is already in use: "
                          f"stop the other SOAP server (or choose another with --port)"]


def test_server_log_gets_every_line_and_a_second_server_follows_it(spawn, port, tmp_path):
    """Contract 2: with SERVER_LOG set, every line also goes to that file (readable by all); a second
    `python server.py` on the taken port follows that file instead of failing."""
    log = tmp_path / "server.log"
    env = python_env({"SERVER_LOG": str(log)})
    start_soap_server(spawn, port, env=env)
    follower = spawn([sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(port)], cwd=str(SOAP), env=env)
    follower.wait_for(rf"^Following the SOAP server already running in this container \(port {port}\): "
                      r"its output from now on\. Ctrl\+C to stop\.$", timeout=30)
    time.sleep(0.5)  # the follower is at the end of the file
    assert run_client(port, "--op", "add", "-a", "4", "-b", "4").returncode == 0
    follower.wait_for(r'"POST / HTTP/1\.1" 200 add\(4,4\) = 8$', timeout=10)
    assert re.search(SOAP_READY, log.read_text(), re.M)
    assert log.stat().st_mode & 0o444 == 0o444
    follower.signal(signal.SIGTERM)
    assert follower.wait(timeout=5) == 0
    assert "Traceback" not in follower.output


def test_a_plain_gunicorn_in_the_folder_serves_the_same_server(spawn, port):
    """The Docker image's CMD: `gunicorn`, which reads ./gunicorn.conf.py (its wsgi_app names server:app); here on
    another address through gunicorn's documented environment variable."""
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc = spawn([gunicorn], cwd=str(SOAP), env=python_env({"GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port}"}))
    proc.wait_for(SOAP_READY, timeout=30)
    done = run_client(port, "--op", "all", "-a", "10", "-b", "5")
    assert done.stdout.splitlines()[0] == "add(10,5) = 15"
    proc.wait_for(r'"POST / HTTP/1\.1" 200 divide\(10,5\) = 2\.0$', timeout=5)
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    assert "Traceback" not in proc.output


# --- the folder alone, as a student copies it: this venv's interpreter, no PYTHONPATH, cwd in the copy ----

POWER = '''
    @rpc(Operand, Operand, _returns=Integer)
    def power(ctx, a, b):
        return a**b
'''


def test_the_folder_copied_alone_runs_its_demo(spawn, port, tmp_path):
    folder = copy_folder_alone("soap", tmp_path)
    assert not [p.name for p in folder.glob("*.py") if "labkit" in p.read_text(encoding="utf-8")]
    env = standalone_env()
    server = start_soap_server(spawn, port, folder=folder, env=env)
    ran = run_client(port, "--op", "all", folder=folder, env=env)
    assert ran.stdout.splitlines() == ["add(10,5) = 15", "subtract(10,5) = 5", "multiply(10,5) = 50",
                                       "divide(10,5) = 2.0"], ran.stderr
    fault = run_client(port, "--op", "divide", "-b", "0", folder=folder, env=env)
    assert fault.stdout.splitlines() == ["divide(10,0) -> fault: Division by zero"]
    with_dtd = soap_call("add", "&e;", 1).replace(b"?>", b"?><!DOCTYPE x [<!ENTITY e '7'>]>", 1)
    assert fault_of(*curl_post(port, with_dtd))[0] == "Client.DTDForbidden"
    assert "Traceback" not in server.output


def test_a_new_rpc_method_is_callable_from_the_client_without_editing_it(spawn, port, tmp_path):
    folder = copy_folder_alone("soap", tmp_path)
    server_py = folder / "server.py"
    text = server_py.read_text(encoding="utf-8")
    anchor = "    @rpc(Operand, Operand, _returns=Double)\n    def divide"
    assert anchor in text
    server_py.write_text(text.replace(anchor, POWER.lstrip("\n") + "\n" + anchor), encoding="utf-8")
    client_before = (SOAP / "client.py").read_bytes()
    env = standalone_env()
    start_soap_server(spawn, port, folder=folder, env=env)
    done = run_client(port, "--op", "power", "-a", "2", "-b", "10", folder=folder, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["power(2,10) = 1024"]
    assert (folder / "client.py").read_bytes() == client_before
    every = run_client(port, "--op", "all", "-a", "2", "-b", "3", folder=folder, env=env)
    assert "power(2,3) = 8" in every.stdout.splitlines()
