"""Issue 17's lesson in the capture: a TLS recording carries its own secrets, and a login in clear is flagged.

A real classroom in network namespaces (labkit.classroom: Mosquitto with TLS listener and accounts, gunicorn
over HTTPS on the "lecturer" host), the lab's own clients on the two "student" hosts with SSLKEYLOGFILE,
tcpdump on the classroom's bridge, and the recorder's step that embeds the secrets (labkit.record). Then
tshark, given nothing but the file, shows the MQTT PUBLISH and the HTTP requests inside TLS; the recorder's
command line does the same on the loopback; `make compare`'s TLS rows agree with tshark.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REST_READY

from labkit import capture, classroom, compare, record
from labkit.procs import REPO, Proc, free_port, python_env, script

IS_ROOT = os.geteuid() == 0
STUDENT_A, STUDENT_B = "2301001", "2301002"
#: What student A publishes over TLS, and student B in clear on the lesson's listener.
TLS_MESSAGE = "27.5 C over TLS"
PLAIN_MESSAGE = "hello in clear"
#: Seconds one client of the recording may take.
CLIENT_TIMEOUT = 30
TSHARK_TIMEOUT = 60


def need(*tools: str) -> None:
    if not IS_ROOT:
        pytest.skip("namespaces and tcpdump need root (CI runs as root)")
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (make setup-test)")


def no_settings_env(tmp: Path) -> dict[str, str]:
    """An environment with an empty home: tshark and Wireshark read no personal preferences or key log."""
    home = tmp / "empty-home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    return env


def tshark(pcap: Path, display_filter: str, *fields: str, env: dict[str, str] | None = None,
           options: tuple[str, ...] = ()) -> list[list[str]]:
    """tshark's fields of the frames matching `display_filter`, one list per frame."""
    argv = ["tshark", "-n", "-r", str(pcap), *options, "-Y", display_filter, "-T", "fields", "-E", "separator=/t",
            *(a for f in fields for a in ("-e", f))]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TSHARK_TIMEOUT, env=env)
    assert done.returncode == 0, done.stderr
    return [line.split("\t") for line in done.stdout.splitlines()]


def run_client(prefix: list[str], folder: str, name: str, *args: str, keylog: Path) -> Proc:
    """A lab client on a classroom host, its TLS secrets logged to `keylog`."""
    return Proc(script(folder, name, *args), cwd=REPO / folder, prefix=prefix, label=name,
                env=python_env({"SSLKEYLOGFILE": str(keylog)}))


def finish(proc: Proc) -> None:
    code = proc.wait(CLIENT_TIMEOUT)
    assert code == 0, "\n".join(proc.lines)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """The classroom recorded from its bridge: MQTT over TLS (A publishes, A's subscriber receives), HTTPS
    (B calls /add with its login) and the lesson (B logs in on the plaintext listener); secrets embedded."""
    need("mosquitto", "mosquitto_passwd", "openssl", "tcpdump", "tshark", "editcap")
    tmp = tmp_path_factory.mktemp("tls-classroom")
    roster = tmp / "roster.csv"
    roster.write_text(f"student id,name\n{STUDENT_A},Ani\n{STUDENT_B},Budi\n", encoding="utf-8")
    folder = tmp / "room"
    classroom.prepare(folder, host=classroom.ADDRESSES["lecturer"], roster=roster)
    keylog = tmp / "keys.log"
    raw = tmp / "classroom.pcap"
    with classroom.NetnsClassroom(folder) as room:
        accounts = room.accounts()
        a, b = accounts[STUDENT_A], accounts[STUDENT_B]
        ca = str(room.ca_file)
        dump = capture.Tcpdump(room.net.bridge, raw, prefix=room.exec_prefix_bridge())
        try:
            dump.wait_listening()
            on_a, on_b = room.exec_prefix("student-a"), room.exec_prefix("student-b")
            login_a = ("--host", "lecturer", "--port", str(classroom.MQTT_TLS_PORT), "--cafile", ca,
                       "--username", a.id, "--password", a.password)
            sub = run_client(on_a, "mqtt", "sub.py", *login_a, "--topic", f"kelas/{a.id}/#", "--count", "2",
                             "--log", str(tmp / "sub.log"), keylog=keylog)
            sub.wait_for(r"Subscribed", timeout=CLIENT_TIMEOUT)
            finish(run_client(on_a, "mqtt", "pub.py", *login_a, "--topic", f"kelas/{a.id}/temp",
                              "--message", TLS_MESSAGE, "--count", "2", "--interval", "0.2", keylog=keylog))
            finish(sub)
            finish(run_client(on_b, "rest", "client.py", "--host", "lecturer", "--port", str(classroom.REST_TLS_PORT),
                              "--cafile", ca, "--username", b.id, "--password", b.password,
                              "--op", "add", "-a", "2", "-b", "3", keylog=keylog))
            finish(run_client(on_b, "mqtt", "pub.py", "--host", "lecturer", "--port",
                              str(classroom.MQTT_PLAIN_PORT), "--username", b.id, "--password", b.password,
                              "--topic", f"kelas/{b.id}/x", "--message", PLAIN_MESSAGE, "--count", "1",
                              keylog=keylog))
            time.sleep(capture.SETTLE_SECONDS)
        finally:
            dump.stop()
    # A line of someone else's session in the key log (a browser's, say): it must not go into the file.
    foreign = "ab" * 32
    with open(keylog, "a", encoding="utf-8") as f:
        f.write(f"CLIENT_RANDOM {foreign} {'cd' * 48}\n")
    out = tmp / "out" / "classroom.pcapng"
    out.parent.mkdir()
    capture.write_pcapng(raw, out, ["test_tls_capture: the classroom, recorded from its bridge"])
    plain_copy = tmp / "without-secrets.pcapng"
    shutil.copyfile(out, plain_copy)
    assert record.embed_secrets(out, keylog, "test")
    alone = tmp / "alone"  # the file on its own: no key log beside it, nothing in the environment
    alone.mkdir()
    shutil.copyfile(out, alone / "classroom.pcapng")
    return {"pcap": alone / "classroom.pcapng", "without": plain_copy, "tmp": tmp, "a": a, "b": b,
            "foreign": foreign, "keylog": keylog}


def test_tls_recording_decrypts_in_tshark_given_only_the_file(recording):
    env = no_settings_env(recording["tmp"])
    a = recording["a"]
    publishes = tshark(recording["pcap"], "tcp.port == 8883 && mqtt.msgtype == 3", "mqtt.topic", "mqtt.msg",
                       env=env)
    topics = [topic for row in publishes for topic in row[0].split(",")]
    # Two PUBLISH publisher -> broker and the same two broker -> subscriber, read inside TLS.
    assert topics.count(f"kelas/{a.id}/temp") == 4, publishes
    assert TLS_MESSAGE.encode().hex() in "".join(row[1].replace(":", "") for row in publishes)
    requests = tshark(recording["pcap"], "tcp.port == 443 && http.request", "http.request.method",
                      "http.request.uri", "http.authorization", env=env)
    assert [(r[0], r[1].split("?")[0]) for r in requests] == [("GET", "/add")], requests
    assert requests[0][2].startswith("Basic ")  # the login travels, encrypted, in the request
    responses = tshark(recording["pcap"], "tcp.port == 443 && http.response", "http.response.code", env=env)
    assert [r[0] for r in responses] == ["200"]


def test_the_labs_wireshark_profile_decodes_it_too(recording, tmp_path):
    """`make wireshark-<proto>` opens captures with the lab's profile: its Decode As entries (1883 as MQTT, ...)
    leave 8883 and 443 to TLS, so the decrypted MQTT and HTTP show there as well."""
    env = no_settings_env(tmp_path)
    profile = Path(env["XDG_CONFIG_HOME"]) / "wireshark" / "profiles" / capture.PROFILE_NAME
    shutil.copytree(capture.PROFILE_DIR, profile)
    options = ("-C", capture.PROFILE_NAME)
    publishes = tshark(recording["pcap"], "tcp.port == 8883 && mqtt.msgtype == 3", "mqtt.topic", env=env,
                       options=options)
    assert len(publishes) == 4
    assert len(tshark(recording["pcap"], "tcp.port == 443 && http.request", "http.request.uri", env=env,
                      options=options)) == 1
    assert tshark(recording["pcap"], "tcp.port == 1883 && mqtt.msgtype == 3", "mqtt.topic", env=env,
                  options=options) == [[f"kelas/{recording['b'].id}/x"]]


def test_without_the_secrets_tshark_sees_only_tls(recording):
    env = no_settings_env(recording["tmp"])
    assert tshark(recording["without"], "tcp.port == 8883 && mqtt", "frame.number", env=env) == []
    assert tshark(recording["without"], "tcp.port == 443 && http", "frame.number", env=env) == []
    assert tshark(recording["without"], "tls.handshake.type == 1", "frame.number", env=env)  # TLS it is


def test_only_this_recordings_secrets_are_embedded(recording):
    data = recording["pcap"].read_bytes()
    assert recording["foreign"].encode() not in data
    randoms = {r[0].replace(":", "") for r in tshark(recording["pcap"], "tls.handshake.type == 1",
                                                      "tls.handshake.random", env=no_settings_env(recording["tmp"]))}
    assert len(randoms) == 3  # the subscriber, the publisher and the REST client
    for random in randoms:
        assert random.encode() in data


def test_the_plaintext_login_is_in_the_capture_for_anyone(recording):
    b = recording["b"]
    connects = tshark(recording["pcap"], "tcp.port == 1883 && mqtt.msgtype == 1", "mqtt.username", "mqtt.passwd",
                      env=no_settings_env(recording["tmp"]))
    assert connects == [[b.id, b.password]]


@pytest.mark.timeout(300)  # the recording fixture, then up to 120 s for a loaded machine to draw the window
def test_wireshark_shows_the_decrypted_mqtt_under_xvfb(recording, tmp_path):
    """The GUI itself, with no settings (an empty home), on a virtual screen: its packet list, read back from a
    screenshot by OCR (tesseract), shows the PUBLISH of student A's topic, which travelled inside TLS."""
    need("wireshark", "Xvfb", "import", "tesseract")
    env = no_settings_env(tmp_path)
    # Only the window's size (a screenshot that reads well): nothing about TLS, keys or protocols.
    prefs = Path(env["XDG_CONFIG_HOME"]) / "wireshark"
    prefs.mkdir(parents=True)
    (prefs / "recent_common").write_text("gui.geometry_main_x: 0\ngui.geometry_main_y: 0\n"
                                         "gui.geometry_main_width: 1280\ngui.geometry_main_height: 900\n")
    read_end, write_end = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x900x24", "-nolisten", "tcp"],
                            pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    wireshark = None
    try:
        with os.fdopen(read_end) as displayfd:
            env["DISPLAY"] = ":" + displayfd.readline().strip()
        wireshark = subprocess.Popen(["wireshark", "-r", str(recording["pcap"]), "-Y", "mqtt"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shot, text = tmp_path / "wireshark.png", ""
        # The PUBLISH rows of student A's topic: only readable decrypted (B's plaintext one is kelas/<B>/x). The id's
        # digits are not matched: OCR may read a 0 as an O, and no other topic of the recording ends in /temp.
        decrypted = re.compile(r"Publish Message \[kelas/\S+/temp\]")
        deadline = time.monotonic() + 120  # a loaded machine takes a while to draw the first window
        while time.monotonic() < deadline and not decrypted.search(text):
            time.sleep(2)
            subprocess.run(["import", "-window", "root", "-resize", "200%", str(shot)], env=env, capture_output=True,
                           timeout=30)
            text = subprocess.run(["tesseract", str(shot), "-"], capture_output=True, text=True, timeout=60).stdout
        assert decrypted.search(text), f"not in the screenshot {shot}:\n{text}"
    finally:
        for proc in (wireshark, xvfb):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


# ------------------------------------------------------------------ make analyze: the handshake and the lesson


def analyze_cli(pcap: Path, out: Path) -> tuple[str, dict, str]:
    """`python -m labkit.analyze` as `make analyze` runs it: its text, its JSON and its Markdown."""
    done = subprocess.run([sys.executable, "-m", "labkit.analyze", str(pcap), "--out-dir", str(out), "--no-png"],
                          cwd=REPO, env=python_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    stem = pcap.name.rsplit(".", 1)[0]
    return (done.stdout, json.loads((out / f"{stem}.json").read_text(encoding="utf-8")),
            (out / f"{stem}.md").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def analysed(recording, tmp_path_factory):
    return analyze_cli(recording["pcap"], tmp_path_factory.mktemp("analysed"))


def test_the_analyzer_flags_the_plaintext_login_and_never_shows_the_password(recording, analysed):
    text, report, md = analysed
    b = recording["b"]
    frames = tshark(recording["pcap"], "tcp.port == 1883 && mqtt.passwd", "frame.number",
                    env=no_settings_env(recording["tmp"]))
    assert len(frames) == 1
    flag = f"MQTT CONNECT in frame {frames[0][0]} carries user {b.id}'s password in clear"
    assert flag in text and flag in md
    found = report["capture"]["tls"]["credentials_in_clear"]
    assert [(c["frame"], c["user"], c["protocol"]) for c in found] == [(int(frames[0][0]), b.id, "MQTT")]
    for output in (text, md, json.dumps(report)):
        assert b.password not in output and recording["a"].password not in output


def test_the_analyzers_tls_handshakes_match_tshark(recording, analysed):
    text, report, md = analysed
    tls = report["capture"]["tls"]
    env = no_settings_env(recording["tmp"])
    hellos = {(r[0], r[1]): r[2] for r in tshark(recording["pcap"], "tls.handshake.type == 1", "ip.src",
                                                   "tcp.srcport", "tls.handshake.extensions_server_name", env=env)}
    servers = {(r[0], r[1]): (r[2], r[3]) for r in tshark(recording["pcap"], "tls.handshake.type == 2", "ip.dst",
                                                          "tcp.dstport", "tls.handshake.ciphersuite",
                                                          "tls.handshake.extensions.supported_version", env=env)}
    seen = {(c["client"]["ip"], str(c["client"]["port"])): c for c in tls["connections"]}
    assert seen.keys() == hellos.keys() == servers.keys() and len(seen) == 3
    for key, c in seen.items():
        assert c["server_name"] == hellos[key] == "lecturer"
        cipher, version = servers[key]
        assert c["cipher_suite"] == cipher and c["version"] == {"0x0304": "TLS 1.3", "0x0303": "TLS 1.2"}[version]
        assert c["certificate_subject"] and c["certificate_issuer"] == "CN=Messaging Lab classroom CA, O=Messaging Lab"
        assert c["server"]["port"] in (classroom.MQTT_TLS_PORT, classroom.REST_TLS_PORT)
    assert tls["secrets_embedded"]["sessions"] == 3
    assert "secrets: embedded in this file" in text and "## TLS" in md
    line = next(x for x in text.splitlines() if f":{classroom.REST_TLS_PORT}  TLS" in x)
    assert "TLS 1.3" in line and "server name lecturer" in line


def test_without_its_secrets_the_analyzer_says_so_and_the_certificate_stays_encrypted(recording, tmp_path):
    text, report, _md = analyze_cli(recording["without"], tmp_path)
    tls = report["capture"]["tls"]
    assert tls["secrets_embedded"] == {"key_log_lines": 0, "sessions": 0}
    assert "secrets: none in this file" in text
    for c in tls["connections"]:
        assert c["certificate_subject"] is None and "encrypted (TLS 1.3)" in c["certificate_note"]
        assert c["server_name"] == "lecturer"  # the SNI is in clear even so


def test_an_http_basic_login_in_clear_is_flagged_and_masked(tmp_path, spawn):
    """The REST client's login sent to a plain-HTTP server: base64 is no encryption, and the report says so."""
    need("tcpdump", "editcap")
    port = free_port()
    server = spawn.script("rest", "server.py", "--host", "127.0.0.1", "--port", str(port))
    server.wait_for(REST_READY, timeout=30)
    raw, pcap = tmp_path / "rest.pcap", tmp_path / "rest-login.pcapng"
    dump = capture.Tcpdump("lo", raw, ["tcp", "port", str(port)])
    try:
        dump.wait_listening()
        client = spawn.script("rest", "client.py", "--host", "127.0.0.1", "--port", str(port), "--username", "ani",
                              "--password", "s3cret-in-clear", "--op", "add", "-a", "2", "-b", "3")
        assert client.wait(CLIENT_TIMEOUT) == 0, "\n".join(client.lines)
        time.sleep(capture.SETTLE_SECONDS)
    finally:
        dump.stop()
    capture.write_pcapng(raw, pcap, ["test_tls_capture: a Basic login in clear"])
    text, report, md = analyze_cli(pcap, tmp_path / "report")
    frame = tshark(pcap, "http.authorization", "frame.number")[0][0]
    flag = f"HTTP GET in frame {frame} carries user ani's password in clear"
    assert flag in text and flag in md
    for output in (text, md, json.dumps(report)):
        assert "s3cret-in-clear" not in output
        assert "YW5pOnMzY3JldC1pbi1jbGVhcg==" not in output  # nor its base64
    request = next(m for m in report["messages"] if m["protocol"] == "HTTP" and m["kind"] == "request")
    assert request["fields"]["headers"]["authorization"] == "Basic ********"


# ------------------------------------------------------------------ the recorder's command line


def record_cli(tmp: Path, proto: str, port: int, seconds: float, keylog: str | None, env_keylog: str | None = None):
    """`python -m labkit.record <proto> --runtime local --port <port>`, as `make record-<proto>` runs it."""
    env = python_env({"SSLKEYLOGFILE": env_keylog} if env_keylog else None)
    if not env_keylog:
        env.pop("SSLKEYLOGFILE", None)
    argv = [sys.executable, "-m", "labkit.record", proto, "--runtime", "local", "--port", str(port),
            "--duration", str(seconds), "--out", str(tmp / "captures")]
    return Proc([*argv, *(["--keylog", keylog] if keylog else [])], cwd=REPO, env=env, label="record")


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_a_missing_or_empty_key_log_is_one_line_and_the_recording_is_kept(tmp_path, case):
    need("tcpdump", "editcap")
    keylog = tmp_path / "keys.log"
    if case == "empty":
        keylog.write_text("", encoding="utf-8")
    port = free_port()
    proc = record_cli(tmp_path, "reqresp", port, 3, str(keylog))
    proc.wait_for(r"recording for", timeout=30)
    client = Proc(script("reqresp", "client.py", "--host", "127.0.0.1", "--port", str(port), "hello", "bye"),
                  cwd=REPO / "reqresp")
    assert client.wait(CLIENT_TIMEOUT) == 0, "\n".join(client.lines)
    assert proc.wait(60) == 0, "\n".join(proc.lines)
    said = [line for line in proc.lines if "no TLS secrets embedded" in line]
    assert len(said) == 1, proc.lines
    assert str(keylog) in said[0] and ("is empty" if case == "empty" else "No such file") in said[0]
    assert "recording is kept" in said[0]
    assert "Traceback" not in "\n".join(proc.lines)
    assert list((tmp_path / "captures").glob("reqresp-*.pcapng"))


def test_make_record_with_sslkeylogfile_embeds_the_secrets(tmp_path, spawn):
    """The recorder started with SSLKEYLOGFILE in its environment, a TLS broker of yours on the port it records,
    the lab's publisher with the same SSLKEYLOGFILE: the recording decrypts by itself."""
    need("mosquitto", "mosquitto_passwd", "openssl", "tcpdump", "tshark", "editcap")
    lab = compare.TlsLab()
    try:
        proto = compare.WORKLOADS["mqtt"].protocol(1, free_port())
        broker = spawn(lab.argv(proto, proto.servers[0]), cwd=str(REPO / "mqtt"), label="broker")
        broker.wait_for(r"running", timeout=15)
        keylog = str(tmp_path / "keys.log")
        rec = record_cli(tmp_path, "mqtt", proto.port, 8, None, env_keylog=keylog)
        spawn.procs.append(rec)
        rec.wait_for(r"recording for", timeout=30)
        pub = spawn(script("mqtt", "pub.py", "--host", "localhost", "--port", str(proto.port), "--cafile",
                           str(lab.ca), "--username", compare.TLS_USER, "--password", lab.password,
                           "--topic", "lab/record", "--message", "recorded", "--count", "1"),
                    cwd=str(REPO / "mqtt"), env=python_env({"SSLKEYLOGFILE": keylog}))
        assert pub.wait(CLIENT_TIMEOUT) == 0, "\n".join(pub.lines)
        assert rec.wait(60) == 0, "\n".join(rec.lines)
    finally:
        lab.close()
    out = tmp_path / "captures" / "mqtt.pcapng"
    assert any("TLS secrets of 1 session(s) embedded" in line for line in rec.lines), rec.lines
    # A port of yours is not 8883: tell tshark which port is MQTT over TLS (the file still carries the keys).
    rows = tshark(out, "mqtt.msgtype == 3", "mqtt.topic", env=no_settings_env(tmp_path),
                  options=("-d", f"tcp.port=={proto.port},tls", "-d", f"tls.port=={proto.port},mqtt"))
    assert rows == [["lab/record"]]
    comments = subprocess.run(["capinfos", "-k", str(out)], capture_output=True, text=True, timeout=30).stdout
    assert "Messaging-protocols lab recording of mqtt" in comments  # the recorder's comments are kept


# ------------------------------------------------------------------ make compare: the TLS rows

COMPARE_N = 5


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    need("mosquitto", "mosquitto_passwd", "openssl", "tcpdump", "tshark", "editcap")
    out = tmp_path_factory.mktemp("compare-tls")
    done = subprocess.run([sys.executable, "-m", "labkit.compare", "--n", str(COMPARE_N), "--protocols", "mqtt",
                           "rest", "--free-ports", "--out", str(out)], cwd=REPO, env=python_env(),
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    return out, done, result


def test_compare_has_a_tls_row_under_mqtt_and_rest(compared):
    out, done, result = compared
    assert [t["protocol"] for t in result["tls_rows"]] == ["mqtt-tls", "rest-tls"]
    md = (out / "compare.md").read_text(encoding="utf-8")
    for text in (md, done.stdout):
        table = text[text.index("| Protocol | Ops | Packets/op | Wire B/op | App B/op | TCP set-ups"):]
        names = [line.split("|")[1].strip() for line in table.splitlines()[2:6]]
        assert names == ["mqtt", "mqtt-tls", "rest", "rest-tls"]
    for t in result["tls_rows"]:
        assert t["operations"] == COMPARE_N and t["latency_ms"]["count"] == COMPARE_N
        plain = next(r for r in result["rows"] if r["protocol"] == t["plain"])
        # The same operations cost more over TLS: the handshake (certificate and all) and each record's overhead.
        assert t["per_operation"]["wire_bytes"] > plain["per_operation"]["wire_bytes"]
        assert t["per_operation"]["application_bytes"] > plain["per_operation"]["application_bytes"]
        assert t["tls_handshakes"] == t["connection_setups"] == plain["connection_setups"]


def test_compare_tls_rows_agree_with_tshark(compared):
    out, _, result = compared
    rows = {t["protocol"]: t for t in result["tls_rows"]}
    for name, t in rows.items():
        pcap = out / f"{name}.pcapng"
        frames = tshark(pcap, "frame", "frame.len", "tcp.len")
        assert len(frames) == t["packets"]
        assert sum(int(f[0]) for f in frames) == t["wire_bytes"]
        assert sum(int(f[1] or 0) for f in frames) == t["application_bytes"]
        app = "mqtt" if t["plain"] == "mqtt" else "http"
        decode = ("-d", f"tcp.port=={t['port']},tls", "-d", f"tls.port=={t['port']},{app}")
        if t["plain"] == "mqtt":
            publishes = tshark(pcap, "mqtt.msgtype == 3", "mqtt.msgtype", options=decode)
            assert sum(row[0].split(",").count("3") for row in publishes) == 2 * COMPARE_N
        else:
            responses = tshark(pcap, "http.response", "http.response_for.uri", options=decode)
            assert len(responses) == COMPARE_N and all("/add?" in r[0] for r in responses)

