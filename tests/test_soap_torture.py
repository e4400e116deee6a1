"""SOAP torture: malformed XML, wrong types, entity tricks and oversize bodies always get a SOAP Fault.

No entity is ever expanded, no local file ever comes back, and the server keeps serving well-behaved
clients throughout (issue 6). The server is soap/server.py run as a program.
"""

from __future__ import annotations

import random
import socket
import sys
import uuid

import pytest
import requests
from helpers import (
    NS_SOAP_ENV,
    SOAP_READY,
    SOAP_TNS,
    curl_post,
    fault_of,
    result_of,
    script_constant,
    soap_call,
    soap_envelope,
)

from labkit.procs import REPO, Proc, free_port

MAX_REQUEST_BYTES = script_constant(REPO / "soap" / "server.py", "MAX_REQUEST_BYTES")
call, envelope, TNS = soap_call, soap_envelope, SOAP_TNS

OPEN = f'<soapenv:Envelope xmlns:soapenv="{NS_SOAP_ENV}" xmlns:c="{TNS}"><soapenv:Body>'
CLOSE = "</soapenv:Body></soapenv:Envelope>"


@pytest.fixture(scope="module")
def server():
    port = free_port()
    proc = Proc([sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(port)], cwd=str(REPO / "soap"))
    try:
        proc.wait_for(SOAP_READY, timeout=30)
        yield proc, port
    finally:
        proc.stop(timeout=3)


def assert_still_serving(port: int) -> None:
    status, _, body = curl_post(port, call("add", 20, 22))
    assert result_of(status, body, "add") == "42"


def client_fault(port: int, payload: bytes, content_type: str = "text/xml; charset=utf-8") -> tuple[str, str]:
    code, message = fault_of(*curl_post(port, payload, content_type))
    assert code.startswith("Client"), (code, message)
    return code, message


# --- malformed XML --------------------------------------------------------------------------------

MALFORMED = {
    "unclosed-tag": f"{OPEN}<c:add><c:a>1</c:a><c:b>2</c:b>{CLOSE}".encode(),
    "truncated": call("add", 1, 2)[:-30],
    "mismatched-tags": f"{OPEN}<c:add><c:a>1</c:b><c:b>2</c:a></c:add>{CLOSE}".encode(),
    "two-roots": call("add", 1, 2) + call("add", 3, 4),
    "undefined-prefix": b"<soapenv:Envelope><soapenv:Body/></soapenv:Envelope>",
    "bare-ampersand": f"{OPEN}<c:add><c:a>1 & 2</c:a><c:b>2</c:b></c:add>{CLOSE}".encode(),
    "undeclared-entity": f"{OPEN}<c:add><c:a>&boom;</c:a><c:b>2</c:b></c:add>{CLOSE}".encode(),
    "nul-byte": call("add", "1\x002", 2),
    "invalid-utf8": call("add", 1, 2).replace(b"<c:b>2", b"<c:b>\xff\xfe2"),
    "not-xml-at-all": b"add 1 2",
    "json": b'{"op": "add", "a": 1, "b": 2}',
    "random-bytes": random.Random(6).randbytes(2000),
    "lone-angle": b"<",
    "deep-nesting": (f"{OPEN}<c:add>" + "<x>" * 5000 + "</x>" * 5000 + f"<c:a>1</c:a><c:b>2</c:b></c:add>{CLOSE}"
                     ).encode(),
    "soap-1.2-envelope": (b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body>'
                          b'<c:add xmlns:c="lab.soap.calculator"><c:a>1</c:a><c:b>2</c:b></c:add>'
                          b"</e:Body></e:Envelope>"),
    "no-body-element": f'<soapenv:Envelope xmlns:soapenv="{NS_SOAP_ENV}"/>'.encode(),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_xml_is_a_client_fault(server, name):
    _, port = server
    client_fault(port, MALFORMED[name])


def test_body_not_in_its_declared_charset_is_a_client_fault(server):
    _, port = server
    assert client_fault(port, MALFORMED["invalid-utf8"], "text/xml; charset=utf-8")[0] == "Client.EncodingError"
    assert client_fault(port, call("add", 1, 2), "text/xml; charset=no-such-charset")[0] == "Client.EncodingError"


# --- wrong types ------------------------------------------------------------------------------------

WRONG = {
    "word": call("add", "ten", 2),
    "decimal": call("add", "1.5", 2),
    "exponent": call("add", "1e3", 2),
    "hex": call("add", "0x10", 2),
    "nan": call("add", "NaN", 2),
    "infinity": call("add", "INF", 2),
    "empty": call("add", "", 2),
    "nil": envelope("add", '<c:a xsi:nil="true" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/><c:b>2</c:b>'),
    "element-inside": envelope("add", "<c:a><c:x>1</c:x></c:a><c:b>2</c:b>"),
    "repeated": envelope("add", "<c:a>1</c:a><c:a>2</c:a><c:b>2</c:b>"),
    "too-many-digits": call("add", "9" * 5000, 2),  # beyond what Python will parse as an int
    "missing-both": envelope("add", ""),
    "href-to-nowhere": envelope("add", '<c:a href="#nowhere"/><c:b>2</c:b>'),
    "href-cycle": envelope("add", '<c:a id="r" href="#r"/><c:b>2</c:b>'),
}


@pytest.mark.parametrize("name", list(WRONG))
def test_wrong_types_are_client_faults(server, name):
    _, port = server
    code, _ = client_fault(port, WRONG[name])
    assert code == "Client.ValidationError"


@pytest.mark.parametrize("op, a, b", [("multiply", "9" * 3000, "9" * 3000), ("divide", "9" * 400, 1)])
def test_results_too_large_to_answer_are_client_faults(server, op, a, b):
    _, port = server
    assert client_fault(port, call(op, a, b)) == ("Client.ResultOutOfRange", "Result out of range")


# --- DTDs and entities: never resolved, never expanded ----------------------------------------------


def billion_laughs(levels: int = 6) -> str:
    """The classic entity bomb, kept small: fully expanded it would be 3 * 10**levels characters."""
    decls = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels + 1)]
    return (f'<?xml version="1.0"?><!DOCTYPE lolz [{"".join(decls)}]>'
            f"{OPEN}<c:add><c:a>&lol{levels};</c:a><c:b>1</c:b></c:add>{CLOSE}")


def test_billion_laughs_is_refused_and_nothing_expands(server):
    proc, port = server
    start = len(proc.lines)
    status, ctype, body = curl_post(port, billion_laughs().encode())
    # libxml2 stops a bomb this size at its entity amplification limit, or the parse ends and the DTD is refused
    assert fault_of(status, ctype, body)[0] in ("Client.XMLSyntaxError", "Client.DTDForbidden")
    assert b"lollol" not in body
    assert len(body) < 2000
    proc.wait_for(r'" 500 fault Client\.(XMLSyntaxError|DTDForbidden)', timeout=5, start=start)
    assert "lollol" not in proc.output


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])
@pytest.mark.parametrize("levels", [3, 6])
def test_a_dtd_in_utf16_is_refused_after_the_safe_parse(server, encoding, levels):
    """In UTF-16 too: after spyne's locked-down parse the DTD is refused, unused.

    A big bomb does not even get that far: libxml2 stops at its entity amplification limit (a syntax error).
    """
    _, port = server
    xml = billion_laughs(levels).replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>')
    payload = xml.encode(encoding)
    assert b"<!DOCTYPE" not in payload
    status, ctype, body = curl_post(port, payload, "text/xml")
    code, _ = fault_of(status, ctype, body)
    assert code == ("Client.DTDForbidden" if levels == 3 else "Client.XMLSyntaxError")
    assert b"lollol" not in body


def test_internal_entity_is_not_expanded(server):
    _, port = server
    marker = f"EXPANDED-{uuid.uuid4().hex}"
    payload = (f'<!DOCTYPE e [<!ENTITY x "{marker}">]>{OPEN}<c:add><c:a>&x;</c:a><c:b>1</c:b></c:add>{CLOSE}')
    status, ctype, body = curl_post(port, payload.encode())
    assert marker.encode() not in body
    assert fault_of(status, ctype, body)[0] == "Client.DTDForbidden"


@pytest.fixture
def secret_file(tmp_path):
    """A local file a malicious request tries to read through the server."""
    marker = f"SECRET-{uuid.uuid4().hex}"
    path = tmp_path / "secret.txt"
    path.write_text(marker + "\n")
    return path, marker


def external_entity_attacks(path) -> dict[str, bytes]:
    uri = path.as_uri()
    in_operand = f"{OPEN}<c:add><c:a>&xxe;</c:a><c:b>1</c:b></c:add>{CLOSE}"
    in_operation = f"{OPEN}<c:&xxe;><c:a>1</c:a><c:b>1</c:b></c:&xxe;>{CLOSE}"
    return {
        "system-entity": f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY xxe SYSTEM "{uri}">]>{in_operand}'.encode(),
        "system-entity-in-a-tag": f'<!DOCTYPE e [<!ENTITY xxe SYSTEM "{uri}">]>{in_operation}'.encode(),
        "parameter-entity": (f'<!DOCTYPE e [<!ENTITY % p SYSTEM "{uri}"> %p;]>'
                             f"{OPEN}<c:add><c:a>1</c:a><c:b>1</c:b></c:add>{CLOSE}").encode(),
        "external-dtd": f'<!DOCTYPE e SYSTEM "{uri}">{in_operand}'.encode(),
        "utf-16-system-entity": (f'<?xml version="1.0" encoding="UTF-16"?>'
                                 f'<!DOCTYPE e [<!ENTITY xxe SYSTEM "{uri}">]>{in_operand}').encode("utf-16"),
        "xinclude": (f'{OPEN}<c:add><c:a><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{uri}" '
                     f'parse="text"/></c:a><c:b>1</c:b></c:add>{CLOSE}').encode(),
    }


@pytest.mark.parametrize("attack", ["system-entity", "system-entity-in-a-tag", "parameter-entity", "external-dtd",
                                    "utf-16-system-entity", "xinclude"])
def test_external_entities_never_read_a_local_file(server, secret_file, attack):
    proc, port = server
    path, marker = secret_file
    start = len(proc.lines)
    status, ctype, body = curl_post(port, external_entity_attacks(path)[attack], "text/xml")
    assert marker.encode() not in body
    code, message = fault_of(status, ctype, body)
    assert code.startswith("Client"), (code, message)
    if attack != "xinclude":  # the only one without a DTD: spyne just sees no integer in <a>
        assert code in ("Client.DTDForbidden", "Client.XMLSyntaxError"), message
    proc.wait_for(r'" 500 ', timeout=5, start=start)
    assert marker not in proc.output


# --- size limit and raw abuse -------------------------------------------------------------------------


def padded_add(total_bytes: int) -> bytes:
    """A valid add(1,2) request padded with whitespace to exactly `total_bytes`."""
    base = call("add", 1, 2)
    return base.replace(b"<soapenv:Body>", b"<soapenv:Body>" + b" " * (total_bytes - len(base)))


def test_a_body_of_exactly_the_limit_is_served(server):
    _, port = server
    payload = padded_add(MAX_REQUEST_BYTES)
    assert len(payload) == MAX_REQUEST_BYTES
    status, _, body = curl_post(port, payload)
    assert result_of(status, body, "add") == "3"


def test_oversize_body_is_refused_with_a_fault(server):
    _, port = server
    code, message = client_fault(port, padded_add(MAX_REQUEST_BYTES + 1))
    assert code == "Client.RequestTooLong", message


def test_oversize_chunked_body_without_length_is_refused_with_a_fault(server):
    _, port = server

    def chunks():
        for _ in range(MAX_REQUEST_BYTES // 4096 + 2):
            yield b" " * 4096

    r = requests.post(f"http://127.0.0.1:{port}/", data=chunks(), headers={"Content-Type": "text/xml"}, timeout=20)
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    code, message = fault_of(r.status_code, r.headers["Content-Type"], r.content)
    assert (code, message) == ("Client.RequestTooLong", f"Request body over {MAX_REQUEST_BYTES} bytes")


def test_huge_announced_length_is_refused_before_reading(server):
    _, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 1000000000\r\n\r\n<a>")
        answer = b""
        while b"</soap11env:Envelope>" not in answer:
            data = s.recv(4096)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 500")
    assert b"Client.RequestTooLong" in answer


def test_garbage_instead_of_http_does_not_hurt_the_server(server):
    _, port = server
    rng = random.Random(61)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(rng.randbytes(3000) + b"\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass
    assert_still_serving(port)


def test_clients_vanishing_mid_request_do_not_hurt_the_server(server):
    _, port = server
    for cut in (10, 60, 200):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            payload = call("add", 1, 2)
            head = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {len(payload)}\r\n\r\n"
            s.sendall((head.encode() + payload)[:cut])
    assert_still_serving(port)


# --- after all of it ------------------------------------------------------------------------------------


def test_server_is_still_serving_and_never_leaked_a_traceback(server):
    """Runs last in this module: the same server took every request above."""
    proc, port = server
    assert_still_serving(port)
    assert proc.running()
    assert proc.count(r'" 500 .*fault Client\.') >= len(MALFORMED) + len(WRONG)
    assert "Traceback" not in proc.output
    assert "fault Server" not in proc.output, "a sender's mistake was answered as the server's fault"
