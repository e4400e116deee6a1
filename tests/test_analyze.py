"""The capture analyzer agrees with tshark on captures recorded here, and fails politely on bad input.

Each test records real traffic on loopback with tcpdump (curl against a small HTTP server,
Mosquitto with mosquitto_pub/mosquitto_sub, nc against a small line server), all on free
ports rather than the lab's, then compares what `python -m labkit.analyze` reports with
what tshark decodes from the same file (HTTP and MQTT forced with decode-as, the HTTP
heuristic off).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from labkit.analyze import analyze
from labkit.analyze.analysis import PORT_HINTS
from labkit.analyze.synth import (
    ACK,
    PSH,
    CaptureWriter,
    TcpFlow,
    ether_ipv4_tcp,
    http_request,
    http_response,
    write_lab_mix,
)
from labkit.procs import REPO, free_port, python_env

TSHARK_TIMEOUT = 60
ANALYZE_TIMEOUT = 60
#: How long tcpdump may take to write out the last packets after the traffic ends.
SETTLE_TIMEOUT = 10.0


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"{tool} is not installed: run `make setup-test` (as root it installs it)")
    return path


# --- recording and reading --------------------------------------------------------------------------------

class Recorder:
    """tcpdump on loopback for one test; stopped by PID once its file stops growing."""

    def __init__(self, spawn, path: Path):
        self.spawn, self.path, self.proc = spawn, path, None

    def start(self, ports: list[int], interface: str = "lo", extra: tuple[str, ...] = (), expr: str = ""):
        need("tcpdump")
        if os.geteuid() != 0:
            pytest.skip("tcpdump needs root to capture on loopback: run `sudo make test`")
        expr = expr or " or ".join(f"tcp port {p}" for p in ports)
        self.proc = self.spawn(["tcpdump", "-U", "--immediate-mode", "-n", "-i", interface, *extra,
                                "-w", str(self.path), expr], label="tcpdump")
        self.proc.wait_for(r"listening on", timeout=15)
        return self

    def stop(self) -> Path:
        """Wait until the file has stopped growing (tcpdump -U writes each packet), then SIGTERM tcpdump."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        last, stable_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            size = self.path.stat().st_size if self.path.exists() else 0
            if size != last:
                last, stable_since = size, time.monotonic()
            elif time.monotonic() - stable_since >= 0.5:
                break
            time.sleep(0.1)
        self.proc.stop()
        assert self.path.exists() and self.path.stat().st_size > 24, self.proc.output
        return self.path


@pytest.fixture
def recorder(spawn, tmp_path):
    return lambda name="capture.pcap": Recorder(spawn, tmp_path / name)


def run_analyzer(pcap: Path, *args: str, out_dir: Path | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "labkit.analyze", str(pcap), *args]
    if out_dir is not None:
        argv += ["--out-dir", str(out_dir)]
    return subprocess.run(argv, cwd=REPO, env=python_env(), capture_output=True, text=True, timeout=ANALYZE_TIMEOUT)


def analyzed(pcap: Path, tmp_path: Path) -> tuple[dict, str]:
    """(the JSON report, the printed report) of the command a student runs."""
    out = tmp_path / "report"
    done = run_analyzer(pcap, out_dir=out)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    stem = pcap.name.rsplit(".", 1)[0]
    return json.loads((out / f"{stem}.json").read_text()), done.stdout


def tshark_json(pcap: Path, *options: str, display_filter: str = "", layers: str = "frame tcp http mqtt") -> list:
    need("tshark")
    argv = ["tshark", "-n", "-r", str(pcap), "--disable-heuristic", "http_tcp", "--no-duplicate-keys",
            "-T", "json", "-J", layers, *options]
    if display_filter:
        argv += ["-Y", display_filter]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TSHARK_TIMEOUT)
    assert done.returncode == 0, done.stderr
    return [p["_source"]["layers"] for p in json.loads(done.stdout or "[]")]


def tshark_fields(pcap: Path, field: str, options: tuple = (), display_filter: str = "") -> list[list[str]]:
    """Every occurrence of one field, per packet, in document order."""
    need("tshark")
    argv = ["tshark", "-n", "-r", str(pcap), "--disable-heuristic", "http_tcp", *options, "-Y", display_filter,
            "-T", "fields", "-e", field, "-E", "occurrence=a", "-E", "aggregator=\x1f"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TSHARK_TIMEOUT)
    assert done.returncode == 0, done.stderr
    return [line.split("\x1f") for line in done.stdout.splitlines()]


def as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def tshark_http(pcap: Path, port: int) -> tuple[list, list]:
    """(requests, responses) as tshark decodes them with tcp.port==port decoded as HTTP."""
    requests, responses = [], []
    for layers in tshark_json(pcap, "-d", f"tcp.port=={port},http", display_filter="http"):
        frame = int(layers["frame"]["frame.number"])
        for http in as_list(layers.get("http")):
            body = http.get("http.file_data", "")
            for key, value in http.items():
                if not isinstance(value, dict):
                    continue
                if "http.request.method" in value:
                    requests.append({"frame": frame, "method": value["http.request.method"],
                                     "uri": value["http.request.uri"], "body": body})
                elif "http.response.code" in value:
                    responses.append({"frame": frame, "status": int(value["http.response.code"]), "body": body,
                                      "time": float(http["http.time"]) if "http.time" in http else None,
                                      "request_in": int(http.get("http.request_in", 0)), "line": key})
    return requests, responses


def tshark_tcp_stats(pcap: Path) -> dict:
    """{(client ip, client port): packets, bytes each way, first/last time} from tshark's frame fields."""
    stats: dict = {}
    for layers in tshark_json(pcap, display_filter="tcp", layers="frame ip ipv6 tcp"):
        ip = layers.get("ip") or layers.get("ipv6")
        src = ip.get("ip.src") or ip.get("ipv6.src")
        dst = ip.get("ip.dst") or ip.get("ipv6.dst")
        tcp = layers["tcp"]
        sport, dport = int(tcp["tcp.srcport"]), int(tcp["tcp.dstport"])
        stream = int(tcp["tcp.stream"])
        s = stats.setdefault(stream, {"ends": {}, "first": None, "last": None})
        side = s["ends"].setdefault((src, sport), {"packets": 0, "bytes": 0, "to": (dst, dport)})
        side["packets"] += 1
        side["bytes"] += int(layers["frame"]["frame.len"])
        t = float(layers["frame"]["frame.time_relative"])
        s["first"] = t if s["first"] is None else s["first"]
        s["last"] = t
    return stats


def assert_conversations_match_tshark(report: dict, pcap: Path) -> None:
    stats = tshark_tcp_stats(pcap)
    convs = report["conversations"] + report["left_out_conversations"]
    assert len(convs) == len(stats)
    for conv in report["conversations"]:
        client = (conv["client"]["ip"], conv["client"]["port"])
        server = (conv["server"]["ip"], conv["server"]["port"])
        match = [s for s in stats.values() if client in s["ends"] and s["ends"][client]["to"] == server]
        assert len(match) == 1, (client, server, stats)
        s = match[0]
        assert conv["packets"]["client_to_server"] == s["ends"][client]["packets"]
        assert conv["wire_bytes"]["client_to_server"] == s["ends"][client]["bytes"]
        back = s["ends"].get(server, {"packets": 0, "bytes": 0})
        assert conv["packets"]["server_to_client"] == back["packets"]
        assert conv["wire_bytes"]["server_to_client"] == back["bytes"]
        assert conv["duration"] == pytest.approx(s["last"] - s["first"], abs=2e-6)


def messages(report: dict, protocol: str | tuple, **where) -> list[dict]:
    protocols = (protocol,) if isinstance(protocol, str) else protocol
    return [m for m in report["messages"] if m["protocol"] in protocols
            and all(m.get(k) == v for k, v in where.items())]


# --- small servers the tests talk to --------------------------------------------------------------------

HTTP_SERVER = textwrap.dedent('''
    """A tiny REST + SOAP-like calculator over HTTP/1.1 keep-alive (standard library only)."""
    import json, re, socket, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    SOAP_RESULT = ('<?xml version="1.0" encoding="UTF-8"?><soap11env:Envelope xmlns:soap11env='
                   '"http://schemas.xmlsoap.org/soap/envelope/" xmlns:tns="lab.test"><soap11env:Body>'
                   '<tns:{op}Response><tns:{op}Result>{value}</tns:{op}Result></tns:{op}Response>'
                   '</soap11env:Body></soap11env:Envelope>')
    SOAP_FAULT = ('<?xml version="1.0" encoding="UTF-8"?><soap11env:Envelope xmlns:soap11env='
                  '"http://schemas.xmlsoap.org/soap/envelope/"><soap11env:Body><soap11env:Fault>'
                  '<faultcode>soap11env:Client</faultcode><faultstring>{text}</faultstring>'
                  '</soap11env:Fault></soap11env:Body></soap11env:Envelope>')
    OPS = {"add": lambda a, b: a + b, "subtract": lambda a, b: a - b, "divide": lambda a, b: a / b}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, body, ctype):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urlparse(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            op = {"/add": "add", "/sub": "subtract", "/div": "divide"}.get(url.path)
            if op is None:
                return self.reply(404, json.dumps({"error": "Not found"}), "application/json")
            try:
                self.reply(200, json.dumps({"result": OPS[op](float(q["a"]), float(q["b"]))}), "application/json")
            except ZeroDivisionError:
                self.reply(400, json.dumps({"error": "Division by zero"}), "application/json")

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            m = re.search(r":Body><[\\w-]+:(\\w+)[^>]*><[\\w-]+:a>(-?\\d+)</[\\w-]+:a><[\\w-]+:b>(-?\\d+)</", body)
            if not m:
                return self.reply(500, SOAP_FAULT.format(text="Malformed request"), "text/xml; charset=utf-8")
            op, a, b = m.group(1), int(m.group(2)), int(m.group(3))
            try:
                self.reply(200, SOAP_RESULT.format(op=op, value=OPS[op](a, b)), "text/xml; charset=utf-8")
            except ZeroDivisionError:
                self.reply(500, SOAP_FAULT.format(text="Division by zero"), "text/xml; charset=utf-8")

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
        daemon_threads = True

    server = Server((sys.argv[1], int(sys.argv[2])), Handler)
    print("ready", flush=True)
    server.serve_forever()
''')

LINE_SERVER = textwrap.dedent('''
    """A line server: `echo` answers `Echo: <line>`; `upcall` answers `Upcall event: Processing <line>`
    and later, on its own, `Upcall event: Done <line>`. `bye` ends the connection."""
    import socketserver, sys, threading

    MODE = sys.argv[3]

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            lock = threading.Lock()
            timers = []

            def send(text):
                with lock:
                    self.wfile.write((text + "\\n").encode())
                    self.wfile.flush()

            for raw in self.rfile:
                line = raw.decode("utf-8", "replace").rstrip("\\r\\n")
                if MODE == "echo":
                    send("Echo: " + line)
                else:
                    send("Upcall event: Processing " + line)
                    if line != "bye":
                        timer = threading.Timer(0.2, send, ["Upcall event: Done " + line])
                        timer.start()
                        timers.append(timer)
                if line == "bye":
                    break
            for timer in timers:
                timer.join()

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    server = Server((sys.argv[1], int(sys.argv[2])), Handler)
    print("ready", flush=True)
    server.serve_forever()
''')

NOISE_SERVER = textwrap.dedent('''
    """Accepts TCP connections, answers whatever arrives with fixed random bytes, and closes."""
    import random, socket, sys
    listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(random.Random(7).randbytes(700))
''')


def start_script(spawn, tmp_path: Path, source: str, *args: str):
    path = tmp_path / f"server_{abs(hash(source)) % 10000}.py"
    path.write_text(source)
    proc = spawn([sys.executable, str(path), *args], label=path.name)
    proc.wait_for(r"^ready$", timeout=15)
    return proc


def curl(*args: str) -> str:
    need("curl")
    done = subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def soap_envelope(op: str, a: int, b: int) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?><soap-env:Envelope xmlns:soap-env='
            '"http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body>'
            f'<ns0:{op} xmlns:ns0="lab.test"><ns0:a>{a}</ns0:a><ns0:b>{b}</ns0:b></ns0:{op}>'
            '</soap-env:Body></soap-env:Envelope>')


# --- HTTP: REST with JSON, and SOAP ----------------------------------------------------------------------

def test_rest_json_calls_match_tshark_method_uri_status_body_and_latency(spawn, tmp_path, recorder, port):
    start_script(spawn, tmp_path, HTTP_SERVER, "127.0.0.1", str(port))
    rec = recorder().start([port])
    base = f"http://127.0.0.1:{port}"
    # one keep-alive connection with three calls, then a second connection
    curl(f"{base}/add?a=2&b=3", f"{base}/div?a=1&b=0", f"{base}/nope")
    curl(f"{base}/sub?a=10&b=4")
    pcap = rec.stop()

    report, text = analyzed(pcap, tmp_path)
    requests, responses = tshark_http(pcap, port)
    ours_req = messages(report, "HTTP", kind="request")
    ours_resp = messages(report, "HTTP", kind="response")
    assert [(r["frame"], r["method"], r["uri"]) for r in requests] == \
        [(m["frame"], m["fields"]["method"], m["fields"]["uri"]) for m in ours_req]
    assert [r["uri"] for r in requests] == ["/add?a=2&b=3", "/div?a=1&b=0", "/nope", "/sub?a=10&b=4"]
    assert [(r["frame"], r["status"], r["body"]) for r in responses] == \
        [(m["frame"], m["fields"]["status"], m["fields"]["body"]) for m in ours_resp]
    assert [r["status"] for r in responses] == [200, 400, 404, 200]
    for theirs, ours in zip(responses, ours_resp, strict=True):  # Wireshark's http.time is our latency
        assert ours["latency"] == pytest.approx(theirs["time"], abs=2e-6)
        assert ours["reply_to"] == next(m["number"] for m in ours_req if m["frame"] == theirs["request_in"])
    assert json.loads(ours_resp[0]["fields"]["body"]) == {"result": 5.0}
    assert_conversations_match_tshark(report, pcap)
    assert [c["recognised_by"] for c in report["conversations"]] == ["content", "content"]
    assert port not in PORT_HINTS  # a non-lab port: recognised by what it carries
    for conv in report["conversations"]:
        assert conv["handshake"]["complete"] and conv["teardown"]["kind"] == "fin"
    assert "GET /div?a=1&b=0" in text and "400 Bad Request" in text and "handshake: SYN at" in text


def test_soap_operations_results_and_faults_match_tshark(spawn, tmp_path, recorder, port):
    start_script(spawn, tmp_path, HTTP_SERVER, "127.0.0.1", str(port))
    rec = recorder().start([port])
    calls = [("add", 10, 5), ("subtract", 10, 5), ("divide", 10, 4), ("divide", 1, 0)]
    for op, a, b in calls:
        curl("-H", "Content-Type: text/xml; charset=utf-8", "-H", f'SOAPAction: "{op}"',
             "--data-binary", soap_envelope(op, a, b), f"http://127.0.0.1:{port}/")
    curl("-H", "Content-Type: text/xml", "--data-binary", "<not-xml", f"http://127.0.0.1:{port}/")
    pcap = rec.stop()

    report, text = analyzed(pcap, tmp_path)
    requests, responses = tshark_http(pcap, port)
    ours_req = messages(report, "SOAP", kind="request")
    ours_resp = messages(report, ("SOAP", "HTTP"), kind="response")
    assert len(ours_req) == 4 and len(requests) == 5  # the last POST is not SOAP: plain HTTP
    assert [(r["frame"], r["method"], r["body"]) for r in requests[:4]] == \
        [(m["frame"], m["fields"]["method"], m["fields"]["body"]) for m in ours_req]
    assert [(r["frame"], r["status"], r["body"]) for r in responses] == \
        [(m["frame"], m["fields"]["status"], m["fields"]["body"]) for m in ours_resp]
    # the operation is the element inside soap:Body, as tshark's XML dissector shows it
    operations = []
    for tags in tshark_fields(pcap, "xml.tag", options=("-d", f"tcp.port=={port},http"), display_filter="xml"):
        body = next((i for i, tag in enumerate(tags) if tag.strip("<>").split(" ")[0].endswith(":Body")), None)
        if body is not None:  # (the malformed request has none)
            operations.append(tags[body + 1].strip("<>").split()[0].split(":")[-1])
    assert operations == ["add", "addResponse", "subtract", "subtractResponse", "divide", "divideResponse",
                          "divide", "Fault", "Fault"]
    assert [m["fields"]["soap"]["operation"] for m in ours_req] == [c[0] for c in calls]
    assert [m["fields"]["soap"]["arguments"] for m in ours_req] == [{"a": str(a), "b": str(b)} for _, a, b in calls]
    results = [m["fields"]["soap"].get("result") for m in ours_resp[:3]]
    assert results == ["15", "5", "2.5"]
    fault = ours_resp[3]["fields"]["soap"]["fault"]
    assert (ours_resp[3]["fields"]["status"], fault["code"], fault["string"]) == (500, "Client", "Division by zero")
    assert "SOAP POST / divide(a=1, b=0)" in text and "Fault Client: Division by zero" in text


def test_ipv6_http_is_read_like_tshark(spawn, tmp_path, recorder, port):
    start_script(spawn, tmp_path, HTTP_SERVER, "::1", str(port))
    rec = recorder().start([port])
    curl("-g", f"http://[::1]:{port}/add?a=1&b=1", f"http://[::1]:{port}/add?a=2&b=2")
    pcap = rec.stop()
    report, _ = analyzed(pcap, tmp_path)
    requests, responses = tshark_http(pcap, port)
    assert [r["frame"] for r in requests] == [m["frame"] for m in messages(report, "HTTP", kind="request")]
    assert [r["frame"] for r in responses] == [m["frame"] for m in messages(report, "HTTP", kind="response")]
    assert report["conversations"][0]["server"]["ip"] == "::1"
    assert_conversations_match_tshark(report, pcap)


# --- MQTT -------------------------------------------------------------------------------------------------

def tshark_mqtt(pcap: Path, port: int) -> list[dict]:
    out = []
    for layers in tshark_json(pcap, "-d", f"tcp.port=={port},mqtt", display_filter="mqtt"):
        frame = int(layers["frame"]["frame.number"])
        for mqtt in as_list(layers.get("mqtt")):
            flags = mqtt["mqtt.hdrflags_tree"]
            payload = mqtt.get("mqtt.msg")
            out.append({"frame": frame, "type": int(flags["mqtt.msgtype"]), "qos": flags.get("mqtt.qos"),
                        "topic": mqtt.get("mqtt.topic"), "msgid": mqtt.get("mqtt.msgid"),
                        "payload": bytes.fromhex(payload.replace(":", "")).decode() if payload else None})
    return out


def test_mqtt_packets_topics_qos_and_payloads_match_tshark(broker, spawn, tmp_path, recorder):
    need("mosquitto_pub")
    rec = recorder().start([broker.port])
    sub = spawn(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-i", "sub-test", "-t", "lab/#",
                 "-q", "2", "-C", "3"], label="mosquitto_sub")
    broker.proc.wait_for(r"Sending SUBACK to sub-test", timeout=15)
    published = [("lab/temp", "27.4 °C", "0"), ("lab/humidity", "41.2 %", "1"), ("lab/channel", "Ada kanal", "2")]
    for topic, payload, qos in published:
        done = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-i", f"pub-q{qos}",
                               "-t", topic, "-m", payload, "-q", qos], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
    assert sub.wait(timeout=15) == 0, sub.output
    pcap = rec.stop()

    report, text = analyzed(pcap, tmp_path)
    theirs = tshark_mqtt(pcap, broker.port)
    ours = messages(report, "MQTT")
    names = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP",
             8: "SUBSCRIBE", 9: "SUBACK", 12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT"}
    assert sorted((t["frame"], names[t["type"]]) for t in theirs) == sorted((m["frame"], m["kind"]) for m in ours)
    their_pubs = sorted((t["frame"], t["topic"], int(t["qos"]), t["payload"], t["msgid"] and int(t["msgid"]))
                        for t in theirs if t["type"] == 3)
    our_pubs = sorted((m["frame"], m["fields"]["topic"], m["fields"]["qos"], m["fields"]["payload"],
                       m["fields"].get("packet_id")) for m in ours if m["kind"] == "PUBLISH")
    assert their_pubs == our_pubs and len(our_pubs) == 6  # each message in and out of the broker
    assert {m["fields"]["payload"] for m in ours if m["kind"] == "PUBLISH"} == {p for _, p, _ in published}
    # acknowledgements pair with what they acknowledge; the broker's deliveries point at what it received
    by_number = {m["number"]: m for m in report["messages"]}
    for kind, answers in (("CONNACK", "CONNECT"), ("SUBACK", "SUBSCRIBE"), ("PUBACK", "PUBLISH"),
                          ("PUBREC", "PUBLISH"), ("PUBCOMP", "PUBREL")):
        for m in messages(report, "MQTT", kind=kind):
            assert by_number[m["reply_to"]]["kind"] == answers
    delivered = [m for m in ours if m["kind"] == "PUBLISH" and not m["from_client"]]
    assert all(by_number[m["forwarded_from"]]["fields"]["topic"] == m["fields"]["topic"] for m in delivered)
    assert_conversations_match_tshark(report, pcap)
    roles = {r for h in report["hosts"] for r in h["roles"]}
    assert f"MQTT broker on port {broker.port}" in roles
    assert {"MQTT client (subscriber)", "MQTT client (publisher)"} <= roles
    assert {c["client_id"] for c in report["conversations"]} == {"sub-test", "pub-q0", "pub-q1", "pub-q2"}
    assert "PUBLISH lab/temp qos=0: 27.4 °C" in text and "MQTT CONNECT client_id=sub-test" in text


# --- the line protocol --------------------------------------------------------------------------------------

def tshark_lines(pcap: Path, server_port: int) -> list[tuple[int, bool, str]]:
    """(frame, from_client, text) of each line, rebuilt from tshark's per-segment TCP payloads."""
    pending = {True: b"", False: b""}
    lines = []
    for layers in tshark_json(pcap, "-o", "tcp.analyze_sequence_numbers:TRUE", display_filter="tcp.len > 0",
                              layers="frame tcp"):
        tcp = layers["tcp"]
        from_client = int(tcp["tcp.dstport"]) == server_port
        data = pending[from_client] + bytes.fromhex(tcp["tcp.payload"].replace(":", ""))
        *whole, pending[from_client] = data.split(b"\n")
        lines += [(int(layers["frame"]["frame.number"]), from_client, w.decode()) for w in whole]
    return lines


def talk_with_nc(spawn, port: int, lines: list[str], expect_per_line: int, done_pattern: str):
    need("nc")
    client = spawn(["nc", "127.0.0.1", str(port)], stdin=True, label="nc")
    seen = 0
    for line in lines:
        client.send(line + "\n")
        seen += expect_per_line
        deadline = time.monotonic() + 10
        while len(client.lines) < seen and time.monotonic() < deadline:
            time.sleep(0.02)
    client.wait_for(done_pattern, timeout=10)
    client.close_stdin()
    client.wait(timeout=10)
    return client


def test_echo_lines_match_tshark_stream_and_pair_with_their_requests(spawn, tmp_path, recorder, port):
    start_script(spawn, tmp_path, LINE_SERVER, "127.0.0.1", str(port), "echo")
    rec = recorder().start([port])
    talk_with_nc(spawn, port, ["one", "two", "three", "bye"], 1, r"^Echo: bye$")
    pcap = rec.stop()

    report, text = analyzed(pcap, tmp_path)
    ours = messages(report, "LINE")
    theirs = tshark_lines(pcap, port)
    assert [(m["frame"], m["from_client"], m["fields"]["text"]) for m in ours] == theirs
    assert [t for _, _, t in theirs] == ["one", "Echo: one", "two", "Echo: two", "three", "Echo: three", "bye",
                                         "Echo: bye"]
    by_number = {m["number"]: m for m in ours}
    for m in ours[1::2]:
        assert by_number[m["reply_to"]]["fields"]["text"] == m["fields"]["text"].removeprefix("Echo: ")
        assert m["latency"] > 0 and not m["server_initiated"]
    assert report["conversations"][0]["recognised_by"] == "content" and port not in PORT_HINTS
    assert_conversations_match_tshark(report, pcap)
    assert 'line "Echo: two"' in text


def test_upcalls_the_server_sends_on_its_own_are_marked_server_initiated(spawn, tmp_path, recorder, port):
    start_script(spawn, tmp_path, LINE_SERVER, "127.0.0.1", str(port), "upcall")
    rec = recorder("upcall.pcapng").start([port], interface="any", extra=("-y", "LINUX_SLL2"))
    talk_with_nc(spawn, port, ["wanda", "riri", "bye"], 1, r"^Upcall event: Done riri$")
    pcap = rec.stop()

    report, text = analyzed(pcap, tmp_path)
    ours = messages(report, "LINE")
    assert [(m["frame"], m["from_client"], m["fields"]["text"]) for m in ours] == \
        tshark_lines(pcap, port)
    events = [m["fields"]["text"] for m in ours if m["server_initiated"]]
    assert events == ["Upcall event: Done wanda", "Upcall event: Done riri"]
    replies = [m for m in ours if m["reply_to"] is not None]
    assert [m["fields"]["text"] for m in replies] == ["Upcall event: Processing wanda",
                                                      "Upcall event: Processing riri", "Upcall event: Processing bye"]
    assert report["capture"]["link_types"] == ["Linux cooked v2 (any)"]
    assert '"Upcall event: Done wanda" (server-initiated)' in text
    assert_conversations_match_tshark(report, pcap)


# --- outputs ------------------------------------------------------------------------------------------------

def test_report_is_written_beside_the_capture_as_markdown_mermaid_png_and_json(spawn, tmp_path, recorder, port):
    start_script(spawn, tmp_path, LINE_SERVER, "127.0.0.1", str(port), "echo")
    rec = recorder("demo.pcap").start([port])
    talk_with_nc(spawn, port, ["hello; #1 <b>", "bye"], 1, r"^Echo: bye$")
    pcap = rec.stop()
    done = run_analyzer(pcap)
    assert done.returncode == 0, done.stderr
    md = (tmp_path / "demo.md").read_text()
    assert "```mermaid\nsequenceDiagram\n" in md and "![Ladder diagram](demo.png)" in md
    diagram = md.split("```mermaid\n", 1)[1].split("```", 1)[0].splitlines()
    participants = [line.split()[1] for line in diagram if line.strip().startswith("participant ")]
    assert len(participants) == 2
    arrows = [line.strip() for line in diagram[1:] if not line.strip().startswith(("participant", "Note"))]
    # 3 handshake segments, 4 messages, 3 teardown segments (FIN, FIN, ACK): TCP dashed, messages solid
    assert sorted(a.split(":", 1)[0] for a in arrows) == sorted(["P1-->>P2", "P2-->>P1"] * 3 + [
        "P1->>P2", "P2->>P1"] * 2)
    assert any("hello#59; #35;1 #lt;b#gt;" in a for a in arrows)  # Mermaid syntax characters are escaped
    png = (tmp_path / "demo.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    from PIL import Image

    with Image.open(tmp_path / "demo.png") as img:
        assert img.size[0] >= 600 and img.size[1] >= 300
    report = json.loads((tmp_path / "demo.json").read_text())
    assert [m["fields"]["text"] for m in report["messages"]] == ["hello; #1 <b>", "Echo: hello; #1 <b>", "bye",
                                                               "Echo: bye"]
    assert report["totals"]["application_payload_bytes"] == sum(m["size"] for m in report["messages"])
    assert f"Written: {tmp_path / 'demo.json'}" in done.stdout


def test_pcap_and_pcapng_of_the_same_traffic_give_the_same_analysis(spawn, tmp_path, recorder, port):
    need("editcap")
    start_script(spawn, tmp_path, HTTP_SERVER, "127.0.0.1", str(port))
    rec = recorder().start([port])
    curl(f"http://127.0.0.1:{port}/add?a=2&b=3")
    pcap = rec.stop()
    pcapng = tmp_path / "same.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(pcap), str(pcapng)], check=True, timeout=30)
    a, b = analyze(pcap), analyze(pcapng)
    assert a.capture.file_format == "pcap" and b.capture.file_format == "pcapng"
    assert [(m.frame, m.time, m.summary) for m in a.messages] == [(m.frame, m.time, m.summary) for m in b.messages]
    assert len(a.messages) == 2


# --- reassembly corner cases, on captures written here ------------------------------------------------------

def test_out_of_order_and_retransmitted_segments_reassemble_like_tshark(tmp_path):
    pcap = tmp_path / "reorder.pcap"
    request = http_request("GET", "/add?a=1&b=2", "10.0.0.2:5000")
    response = http_response(200, "OK", b'{"result": 3.0}', "application/json")
    with CaptureWriter(pcap) as out:
        flow = TcpFlow(out, ("10.0.0.1", 40000), ("10.0.0.2", 5000))
        t = flow.handshake(0.0)
        a, b, c = request[:20], request[20:50], request[50:]
        flow.segment(t + 0.001, True, c, 50)  # the last piece first
        flow.segment(t + 0.002, True, a, 0)
        flow.segment(t + 0.003, True, a, 0)  # a retransmission
        flow.segment(t + 0.004, True, b, 20)  # completes the request
        flow.advance(True, len(request))
        t = flow.data(t + 0.010, False, response)
        flow.close(t + 0.001)
    report, _ = analyzed(pcap, tmp_path)
    requests, responses = [], []
    for layers in tshark_json(pcap, "-d", "tcp.port==5000,http", "-o", "tcp.reassemble_out_of_order:TRUE",
                              display_filter="http"):
        http = layers["http"]
        if "http.request.method" in json.dumps(http):
            requests.append(int(layers["frame"]["frame.number"]))
        else:
            responses.append(int(layers["frame"]["frame.number"]))
    ours = messages(report, "HTTP")
    assert [m["frame"] for m in ours if m["kind"] == "request"] == requests == [7]
    assert [m["frame"] for m in ours if m["kind"] == "response"] == responses
    assert ours[0]["fields"]["uri"] == "/add?a=1&b=2" and ours[0]["first_frame"] == 5


def test_capture_started_mid_connection_is_still_understood(tmp_path):
    pcap = tmp_path / "midway.pcap"
    with CaptureWriter(pcap) as out:
        flow = TcpFlow(out, ("10.0.0.1", 40000), ("10.0.0.2", 6001))  # no handshake recorded
        t = flow.data(0.0, False, b"Echo: earlier\n")
        t = flow.data(t + 0.001, True, b"hello\n")
        t = flow.data(t + 0.001, False, b"Echo: hello\n")
        out.write(t + 0.001, ether_ipv4_tcp("10.0.0.2", 6001, "10.0.0.1", 40000, 0, 0, PSH | ACK, b""))
    report, text = analyzed(pcap, tmp_path)
    conv = report["conversations"][0]
    assert conv["server"]["port"] == 6001 and conv["handshake"] is None and conv["teardown"]["kind"] == "open"
    assert [m["fields"]["text"] for m in report["messages"]] == ["Echo: earlier", "hello", "Echo: hello"]
    assert "not in the capture" in text and "still open" in text


def test_long_and_invalid_lines_answered_with_errors_are_still_the_line_protocol(tmp_path):
    pcap = tmp_path / "errors.pcap"
    long_line = b"x" * 70_000 + b"\n"
    with CaptureWriter(pcap) as out:
        flow = TcpFlow(out, ("10.0.0.1", 40000), ("10.0.0.2", 6004))
        t = flow.handshake(0.0)
        t = flow.data(t + 0.001, True, long_line)
        t = flow.data(t + 0.001, False, b"Error: line too long\n")
        t = flow.data(t + 0.001, True, b"caf\xe9\n")
        t = flow.data(t + 0.001, False, b"Error: invalid UTF-8\n")
        flow.close(t + 0.001)
    report, text = analyzed(pcap, tmp_path)
    ours = report["messages"]
    assert [m["kind"] for m in ours] == ["line", "reply", "line", "reply"]
    assert ours[0]["size"] == len(long_line) and ours[0]["fields"]["text"].startswith("x" * 100)
    assert ours[2]["fields"]["text"] == "caf\\xe9" and ours[3]["reply_to"] == ours[2]["number"]
    assert 'line "Error: invalid UTF-8"  [answers #3' in text


def test_data_missing_from_the_capture_stops_decoding_there_and_says_so(tmp_path):
    pcap = tmp_path / "gap.pcap"
    with CaptureWriter(pcap) as out:
        flow = TcpFlow(out, ("10.0.0.1", 40000), ("10.0.0.2", 6002))
        t = flow.handshake(0.0)
        t = flow.data(t + 0.001, True, b"one\n")
        t = flow.data(t + 0.001, False, b"Echo: one\n")
        flow.advance(True, len(b"two\n"))  # this segment never made it into the capture
        t = flow.data(t + 0.001, True, b"three\n")
        t = flow.data(t + 0.001, False, b"Echo: two\nEcho: three\n")
        flow.close(t + 0.001)
    report, text = analyzed(pcap, tmp_path)
    client_lines = [m["fields"]["text"] for m in report["messages"] if m["from_client"]]
    assert client_lines == ["one"]
    assert "the capture misses data the client sent after byte 4" in text
    assert len([m for m in report["messages"] if not m["from_client"]]) == 3


def test_packets_cut_by_the_snap_length_are_reported(tmp_path):
    pcap = tmp_path / "snapped.pcap"
    with CaptureWriter(pcap, snaplen=80) as out:
        flow = TcpFlow(out, ("10.0.0.1", 40000), ("10.0.0.2", 6003))
        t = flow.handshake(0.0)
        t = flow.data(t + 0.001, True, b"a short line\n")
        t = flow.data(t + 0.001, False, b"Echo: a short line that is longer than the snap length allows\n")
        flow.close(t + 0.001)
    done = run_analyzer(pcap, out_dir=tmp_path / "out")
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert "1 packets were cut short by the capture's snap length" in done.stderr
    assert "the capture misses data the server sent" in done.stdout


# --- bad input ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"this is a text file, not a capture\n", b"", b"\x0a\x0d\x0d\x0a\x00"])
def test_a_file_that_is_not_a_capture_gives_one_clear_line(tmp_path, content):
    path = tmp_path / "notes.pcap"
    path.write_bytes(content)
    done = run_analyzer(path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "capture" in lines[0], done.stderr


def test_a_missing_file_or_a_folder_is_one_clear_line(tmp_path):
    for target, words in ((tmp_path / "nothing.pcap", "no such file"), (tmp_path, "is a directory")):
        done = run_analyzer(target)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert done.stderr.startswith("error: ") and words in done.stderr


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_a_truncated_capture_reports_what_was_readable_and_says_so(tmp_path, fmt):
    whole = tmp_path / f"whole.{fmt}"
    write_lab_mix(whole, 400, pcapng=fmt == "pcapng")
    complete = analyze(whole)
    data = whole.read_bytes()
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(data[: len(data) * 2 // 3 + 7])  # the end falls inside a packet
    done = run_analyzer(cut, out_dir=tmp_path / "out")
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert "warning: capture truncated: the capture ends inside" in done.stderr
    assert "warning: capture truncated" in done.stdout
    report = json.loads((tmp_path / "out" / "cut.json").read_text())
    assert 0 < report["capture"]["packets"] < complete.capture.packets
    assert 0 < len(report["messages"]) < len(complete.messages)
    first = [(m.frame, m.summary) for m in complete.messages[:5]]
    assert [(m["frame"], m["summary"]) for m in report["messages"][:5]] == first
    header_only = tmp_path / f"header.{fmt}"
    header_only.write_bytes(data[:12])
    done = run_analyzer(header_only)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "truncated" in done.stderr


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_damaged_captures_give_a_report_or_a_clear_error_never_an_exception(tmp_path, fmt):
    from labkit.analyze import CaptureError, ladder, report

    source = tmp_path / f"lab.{fmt}"
    write_lab_mix(source, 300, pcapng=fmt == "pcapng")
    data = source.read_bytes()
    rng = random.Random(11)
    damaged = tmp_path / f"damaged.{fmt}"
    outcomes = {"report": 0, "error": 0}
    for i in range(120):  # bounded: random bytes overwritten, sometimes cut short too
        b = bytearray(data)
        for _ in range(rng.randint(1, 40)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        damaged.write_bytes(bytes(b[: rng.randrange(len(b))] if rng.random() < 0.3 else b))
        try:
            a = analyze(damaged)
        except CaptureError as e:
            assert str(e) and "\n" not in str(e)
            outcomes["error"] += 1
            continue
        report.text(a), report.to_json(a), report.markdown(a)
        if i % 30 == 0:
            ladder.write_png(a, tmp_path / "damaged.png")
        outcomes["report"] += 1
    assert outcomes["report"] > 60  # most damage stays inside packets: still a report


def test_unrelated_traffic_is_left_out_without_a_traceback(spawn, tmp_path, recorder):
    need("nc")
    tcp_port, udp_port = free_port(), free_port()
    start_script(spawn, tmp_path, NOISE_SERVER, str(tcp_port))
    rec = recorder().start([], expr=f"tcp port {tcp_port} or udp port {udp_port}")
    noise = random.Random(3).randbytes(500)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for _ in range(5):
            udp.sendto(noise[:200], ("127.0.0.1", udp_port))
    done = subprocess.run(["nc", "-N", "127.0.0.1", str(tcp_port)], input=noise, capture_output=True, timeout=30)
    assert len(done.stdout) == 700
    pcap = rec.stop()
    report, text = analyzed(pcap, tmp_path)
    assert report["messages"] == [] and report["conversations"] == [] and report["hosts"] == []
    left = report["totals"]["left_out"]
    assert left["tcp_conversations"] == 1 and left["other_packets"] == {"UDP": 5}
    assert "left out:     1 TCP conversation(s) with content it does not recognise" in text and "5 UDP packets" in text
    assert "no traffic of the lab's protocols" in text


# --- streaming: a big capture in bounded memory gives the same report ----------------------------------------

def reports(a) -> tuple[bytes, str, str, str]:
    """(JSON, text, text with every message, Markdown) of an analysis, as the command writes them."""
    import io

    from labkit.analyze import report

    out = io.BytesIO()
    report.write_json(a, out)
    listed, every = io.StringIO(), io.StringIO()
    report.write_text(a, listed, max_messages=report.MAX_LISTED_MESSAGES)
    report.write_text(a, every, max_messages=0)
    return out.getvalue(), listed.getvalue(), every.getvalue(), report.markdown(a, "x.png", report.MAX_LISTED_MESSAGES)


@pytest.fixture
def small_limits(monkeypatch):
    """Limits small enough that a capture of a few thousand packets is decoded while it is still being read
    and writes its lists out, as 2,000,000 packets do with the real limits. The reports list fewer messages
    and conversations (for both analyses compared); `use` then sets the streaming limits."""
    from labkit.analyze import analysis, report, spill

    for module, name, value in ((report, "MAX_LISTED_MESSAGES", 120), (spill, "KEPT_MESSAGES", 120),
                                (report, "MAX_LISTED_CONVERSATIONS", 7), (spill, "KEPT_CONVERSATIONS", 7)):
        monkeypatch.setattr(module, name, value)

    def use(messages: int, conversations: int) -> None:
        monkeypatch.setattr(analysis, "ENDED_KEPT", 6)
        monkeypatch.setattr(analysis, "DECODE_BATCH", 3)
        monkeypatch.setattr(spill, "SPILL_AFTER_MESSAGES", messages)
        monkeypatch.setattr(spill, "SPILL_AFTER_CONVERSATIONS", conversations)
        monkeypatch.setattr(spill, "BUFFERED", 5)

    return use


@pytest.mark.parametrize("packets, fmt", [(30_000, "pcapng"), (3_000, "pcap")])
def test_streamed_and_spilled_analysis_writes_the_same_reports_as_the_complete_one(tmp_path, small_limits,
                                                                                  packets, fmt):
    pcap = tmp_path / f"mix.{fmt}"
    write_lab_mix(pcap, packets, pcapng=fmt == "pcapng")
    complete = analyze(pcap)  # every connection decoded at the end of the file, everything kept
    assert complete.complete and len(complete.messages) == complete.message_count > 1000
    expected = reports(complete)
    # 30,000 packets: more than 5,000 messages, compact JSON; 3,000: fewer, indented (spilled all the same)
    assert expected[0].startswith(b'{\n  "capture"') == (complete.message_count <= 5000)

    small_limits(messages=200, conversations=40)
    seen, conversations = [], {}
    spilled = analyze(pcap, keep_messages=False, spill_dir=tmp_path, all_text=True, on_message=seen.append,
                      on_conversation=lambda c: conversations.setdefault(c.index, (c.protocol, c.payload_bytes)))
    assert not spilled.complete
    # what the text lists (and the pictures draw), no more
    assert len(spilled.messages) == 120 and 7 <= len(spilled.conversations) < 20
    assert [c.index for c in spilled.conversations[:7]] == [c.index for c in complete.conversations[:7]]
    assert spilled.message_count == complete.message_count and [m.number for m in seen] == \
        list(range(1, complete.message_count + 1))
    assert reports(spilled) == expected
    # every conversation went past on_conversation once, with its streams, before they were let go
    assert conversations == {c.index: (c.protocol, c.payload_bytes) for c in (*complete.conversations,
                                                                             *complete.unrecognised)}
    assert list(tmp_path.iterdir()) == [pcap]  # the spill files are anonymous: nothing left behind

    small_limits(messages=10**9, conversations=10**9)  # decoded while reading, nothing spilled
    kept = analyze(pcap, keep_messages=False)
    assert kept.complete and reports(kept) == expected
    assert [(m.number, m.frame, m.reply_to, m.forwarded_from) for m in kept.messages] == \
        [(m.number, m.frame, m.reply_to, m.forwarded_from) for m in complete.messages]


def test_a_short_connection_capture_keeps_the_api_complete_and_the_command_spills(tmp_path):
    from labkit.analyze.synth import write_short_http

    pcap = tmp_path / "short.pcapng"
    write_short_http(pcap, 70_000)  # 6,364 connections of 11 packets: past the spill limits
    a = analyze(pcap)
    assert a.complete and a.conversation_count == len(a.conversations) == 6364
    assert len(a.messages) == 2 * 6364  # the last connection is cut off after its answer (7 of 11 packets)
    assert a.conversations[-1].teardown() == {"kind": "open"}
    conv = a.conversations[0]
    assert [s["flags"] for s in conv.segments()] == ["SYN", "SYN-ACK", "ACK", "PSH-ACK", "ACK", "PSH-ACK", "ACK",
                                                     "FIN-ACK", "ACK", "FIN-ACK", "ACK"]
    assert conv.handshake()["ack_frame"] == 3 and conv.teardown()["first_fin_frame"] == 8
    assert conv.closed_first() == "client" and a.messages[1].reply_to == 1
    report, text = analyzed(pcap, tmp_path)
    assert len(report["messages"]) == len(a.messages) and len(report["conversations"]) == 6364
    assert report["messages"][-1]["number"] == len(a.messages)
    assert "... and 6164 more conversations (see the JSON)" in text
    assert f"... {len(a.messages) - 1000} more messages: see the JSON file, or use --all" in text


def test_a_password_in_clear_is_masked_also_in_the_json_of_a_capture_too_big_to_keep(tmp_path):
    """on_message sees each message before it is written out: what it masks, the spilled JSON does not show."""
    import base64

    secret = base64.b64encode(b"student:hunter2").decode()
    pcap = tmp_path / "basic.pcap"
    with CaptureWriter(pcap) as out:
        t = 0.0
        for i in range(2600):  # 5,200 messages: past the limit, the JSON's messages go through a file
            flow = TcpFlow(out, ("10.0.0.1", 20000 + i), ("10.0.0.2", 5151))
            t = flow.handshake(t)
            t = flow.data(t, True, http_request("GET", f"/add?a={i}&b=1", "10.0.0.2:5151",
                                                extra=f"Authorization: Basic {secret}\r\n"))
            t = flow.data(t, False, http_response(200, "OK", b'{"result": 1.0}', "application/json"))
            t = flow.close(t + 0.001)
    report, text = analyzed(pcap, tmp_path)
    assert len(report["messages"]) == 5200
    written = (tmp_path / "report" / "basic.json").read_text() + text + (tmp_path / "report" / "basic.md").read_text()
    assert secret not in written and "hunter2" not in written
    assert report["messages"][-2]["fields"]["headers"]["authorization"] == "Basic ********"


# --- progress and the benchmark -----------------------------------------------------------------------------

def test_progress_bar_only_with_the_flag_or_a_terminal(tmp_path):
    big = tmp_path / "big.pcapng"
    write_lab_mix(big, 30_000)
    quiet = run_analyzer(big, "--no-files")
    assert quiet.returncode == 0 and quiet.stderr == ""
    shown = run_analyzer(big, "--no-files", "--progress")
    assert shown.returncode == 0 and "reading" in shown.stderr and "%" in shown.stderr
    assert shown.stdout == quiet.stdout


@pytest.mark.bench
def test_benchmark_prints_both_times_and_their_ratio(tmp_path):
    need("tshark")
    done = subprocess.run([sys.executable, "-m", "labkit.analyze.bench", "--packets", "5000", "--runs", "1",
                           "--capture", str(tmp_path / "bench.pcapng")], cwd=REPO, env=python_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "tshark -r <capture> -q -z conv,tcp" in done.stdout and "python -m labkit.analyze" in done.stdout
    assert "ratio analyzer/tshark" in done.stdout and "ours: time, peak memory" in done.stdout
    assert "     5,000 " in done.stdout and " GB |" in done.stdout
    assert analyze(tmp_path / "bench.pcapng").capture.packets == 5000


def test_make_analyze_prints_the_report_of_any_capture(tmp_path):
    pcap = tmp_path / "lab.pcap"
    write_lab_mix(pcap, 300, pcapng=False)
    done = subprocess.run(["make", "--no-print-directory", "analyze", f"PCAP={pcap}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "CI": "true"})
    assert done.returncode == 0, done.stderr
    assert "Hosts and roles" in done.stdout and "MQTT broker on port 1883" in done.stdout
    assert (tmp_path / "lab.md").exists()
    missing = subprocess.run(["make", "--no-print-directory", "analyze"], cwd=REPO, capture_output=True, text=True,
                             timeout=300)
    assert missing.returncode != 0 and "PCAP=" in missing.stderr + missing.stdout
