"""The lab as an assignment: worksheets, `make check-<proto>` on real recordings, annotated copies, `make grade`.

A student's sessions are recorded with the lab's own recorder (labkit.record, RUNTIME=local on 127.0.0.1,
servers started from the protocol folders, a real Mosquitto) while the test drives the clients by hand with
the values of a generated worksheet; the SOAP session runs an edited copy of soap/ with the worksheet's new
operation. The check must find every task done, with frame numbers tshark agrees with, and the annotated copy
must carry the packet comments on those frames. The recordings are made once per module and shared.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import wire
from helpers import SOAP_READY, copy_folder_alone

from labkit import netns
from labkit.assignment.checks import TASK_KEYS
from labkit.assignment.values import Secret, values_for
from labkit.procs import REPO, Proc, free_port, python_env

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="recording on lo needs root and tcpdump (CI runs as root)")
SECRET = "kursus-sister-2026"
STUDENT, OTHER = "2546000082", "2546000075"
PROTOS = tuple(TASK_KEYS)
MAKE_TIMEOUT = 300
RECORD_READY_SECONDS = 60
CLIENT_TIMEOUT = 60


def env(**extra: str) -> dict[str, str]:
    return python_env({"COURSE_SECRET": SECRET, **extra})


def values(student: str = STUDENT):
    return values_for(student, Secret(SECRET.encode(), "COURSE_SECRET"))


def make(*args: str, **extra: str) -> subprocess.CompletedProcess:
    """`make <args>` as a user runs it; variables through the environment, as the command line would."""
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, env=env(**extra), capture_output=True,
                          text=True, timeout=MAKE_TIMEOUT)


def one_line_error(done: subprocess.CompletedProcess, needle: str) -> str:
    """A failure that is one `error:` line (make's own `***` line aside), never a traceback."""
    text = done.stdout + done.stderr
    assert done.returncode != 0, text
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith(("error:", "usage:"))]
    assert len(errors) == 1 and needle in errors[0], text
    return errors[0]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ recording sessions by hand


class Session:
    """`python -m labkit.record <proto> --runtime local --port P`, then the test's own client runs, then Ctrl+C."""

    def __init__(self, proto: str, out: Path, port: int):
        self.port = port
        self.procs: list[Proc] = []
        self.rec = self.start([sys.executable, "-m", "labkit.record", proto, "--runtime", "local", "--out", str(out),
                               "--port", str(port)], "record")
        self.rec.wait_for(rf"=== record-{proto}: recording", timeout=RECORD_READY_SECONDS)

    def start(self, argv: list[str], label: str, cwd: Path = REPO) -> Proc:
        proc = Proc(argv, cwd=cwd, env=env(), label=label)
        self.procs.append(proc)
        return proc

    def client(self, folder: str, script: str, *args: str, ok: bool = True, cwd: Path | None = None) -> str:
        where = cwd or REPO / folder
        done = subprocess.run([sys.executable, script, "--host", "127.0.0.1", "--port", str(self.port), *args],
                              cwd=where, env=env(), capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
        assert (done.returncode == 0) == ok, done.stdout + done.stderr
        return done.stdout

    def stop(self) -> Path:
        """Ctrl+C, as the student stops it; the file it wrote."""
        self.rec.signal(signal.SIGINT)
        assert self.rec.wait(60) == 0, self.rec.output
        m = re.search(r"-> (\S+\.pcapng)", self.rec.output)
        assert m, self.rec.output
        return Path(m.group(1))

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(3)


def record_session(proto: str, out: Path, tmp: Path, demo_values: bool = False) -> Path:
    """One hand-driven session following the worksheet of STUDENT (or keeping the demo's values)."""
    v = values()
    port = free_port()
    soap_copy = None
    if proto == "soap":  # the student edits soap/server.py: here a copy, with the worksheet's method added
        soap_copy = add_worksheet_operation(copy_folder_alone("soap", tmp))
        server = Proc([sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(port)], cwd=soap_copy,
                      env=env(), label="soap-server")
        server.wait_for(SOAP_READY, timeout=30)
    s = Session(proto, out, port)
    try:
        if proto == "soap":
            s.procs.insert(0, server)
            printed = s.client("soap", "client.py", "--op", "all", "-a", str(v.soap_a), "-b", str(v.soap_b),
                               cwd=soap_copy)
            assert f"{v.soap_op}({v.soap_a},{v.soap_b}) = {v.soap_expected()}" in printed, printed
        elif proto == "rest":
            s.client("rest", "client.py", "--op", "all", "-a", str(v.rest_a), "-b", str(v.rest_b))
            s.client("rest", "client.py", "--op", "div", "-a", str(v.rest_a), "-b", "0", ok=False)
        elif proto == "mqtt":
            topic = "sister/temp" if demo_values else v.mqtt_topic
            sub = s.start([sys.executable, "sub.py", "--host", "127.0.0.1", "--port", str(s.port), "--topic", topic,
                           "--count", "3", "--log", str(tmp / "mqtt_messages.log")], "sub", cwd=REPO / "mqtt")
            sub.wait_for(r"Subscribed", timeout=20)
            message = [] if demo_values else ["--message", v.mqtt_message]
            s.client("mqtt", "pub.py", "--topic", topic, *message, "--count", "2", "--interval", "0.2")
            s.client("mqtt", "pub.py", "--topic", topic, *message, "--count", "1", "--qos", "1")
            assert sub.wait(20) == 0, sub.output
        elif proto == "reqresp":
            printed = s.client("reqresp", "client.py", *v.reqresp_messages, "bye")
            assert f"Echo: {v.reqresp_messages[-1]}" in printed
        else:
            printed = s.client("upcall", "clientcall.py", "--messages", ",".join((*v.upcall_messages, "bye")),
                               "--log", str(tmp / "client_log.txt"))
            assert f"Done {v.upcall_messages[-1]}" in printed, printed
        s.rec.wait_for(r"Got [1-9]\d* packets so far", timeout=10)
        return s.stop()
    finally:
        s.close()


def add_worksheet_operation(folder: Path) -> Path:
    """soap/server.py with the method the worksheet prints, added at the end of CalculatorService."""
    worksheet = make("assignment-soap", STUDENT=STUDENT)
    assert worksheet.returncode == 0, worksheet.stderr
    method = re.search(r"\n(    @rpc\(.*?\n        return [^\n]+)\n", worksheet.stdout, re.S).group(1)
    server = folder / "server.py"
    text = server.read_text(encoding="utf-8")
    cls = next(n for n in ast.parse(text).body if isinstance(n, ast.ClassDef) and n.name == "CalculatorService")
    lines = text.splitlines()
    lines[cls.end_lineno:cls.end_lineno] = ["", method]
    server.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> dict[str, Path]:
    """STUDENT's five sessions, recorded once for the module: proto -> its pcapng."""
    if not IS_ROOT or not shutil.which("tcpdump"):
        pytest.skip("recording on lo needs root and tcpdump (CI runs as root)")
    base = tmp_path_factory.mktemp("sessions")
    recorded = {}
    for proto in PROTOS:
        work = base / f"{proto}-work"
        work.mkdir()
        recorded[proto] = record_session(proto, base / proto, work)
    return recorded


@pytest.fixture(scope="module")
def scripted_demo(tmp_path_factory) -> Path:
    """`make capture-reqresp`'s scripted demo, in a namespace lab of its own (no port of this machine used)."""
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(f"the scripted demo runs in network namespaces here: {reason}")
    out = tmp_path_factory.mktemp("scripted")
    done = subprocess.run([sys.executable, "-m", "labkit.capture", "reqresp", "--runtime", "netns", "--out", str(out)],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=MAKE_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    return out / "reqresp.pcapng"


@pytest.fixture(scope="module")
def wireshark_env(tmp_path_factory) -> dict:
    return wire.wireshark_home(tmp_path_factory.mktemp("home"))


# ------------------------------------------------------------------ worksheets


def test_values_are_the_students_own_deterministic_and_keyed_by_the_course_secret():
    a, again, b = values(STUDENT), values(STUDENT), values(OTHER)
    assert a == again and a != b
    public = values_for(STUDENT, Secret(b"another course", "test"))
    assert (public.rest_a, public.rest_b, public.mqtt_message) != (a.rest_a, a.rest_b, a.mqtt_message)
    ids = [f"25460000{n:02d}" for n in range(60)]
    every = [values(s) for s in ids]
    assert len({(v.rest_a, v.rest_b) for v in every}) == 60 and len({v.mqtt_message for v in every}) == 60
    for v in every:
        assert v.soap_op.isidentifier() and v.mqtt_topic.startswith(f"kelas/{v.student}/")
        assert (v.rest_a, v.rest_b) != (2, 3) and (v.soap_a, v.soap_b) != (10, 5)
        assert "," not in "".join(v.upcall_messages) and len(set(v.reqresp_messages)) == 3


def test_worksheet_says_what_to_run_and_explain_in_english_and_bahasa_indonesia():
    v = values()
    done = make("assignment-mqtt", STUDENT=STUDENT)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert f"Worksheet MQTT (mqtt) for student {STUDENT}" in text and "Lembar kerja" in text
    assert f"--topic {v.mqtt_topic} --message \"{v.mqtt_message}\" --count 1 --qos 1" in text
    assert "docker compose -f compose/mqtt.yml exec mqtt-sub python sub.py" in text
    assert "sudo make record-mqtt RUNTIME=local" in text and "Tanpa Docker" in text
    assert "forwarding it to the subscriber" in text and "meneruskannya" in text
    soap = make("assignment-soap", STUDENT=STUDENT).stdout
    assert f"def {v.soap_op}(ctx, a, b):" in soap and f"must answer {v.soap_expected()}" in soap
    assert make("assignment-soap", STUDENT=STUDENT, COURSE_SECRET="x").stdout != soap


@pytest.mark.parametrize("student", ["../../etc/passwd", "a b", "x;rm -rf ~", "-rf", "1" * 33, "$(id)", "nim.1"])
def test_a_malformed_student_id_is_one_line(student):
    one_line_error(make("assignment-rest", STUDENT=student), "is not valid")
    one_line_error(make("check-rest", STUDENT=student), "is not valid")


def test_missing_student_is_a_usage_line():
    one_line_error(make("assignment-rest"), "STUDENT=")


# ------------------------------------------------------------------ the self-check on real sessions


@pytest.fixture(scope="module")
def checked(sessions, tmp_path_factory) -> dict:
    """`make check-<proto> STUDENT=... PCAP=<session>` for the five sessions: proto -> (result, out folder)."""
    out = {}
    for proto, pcap in sessions.items():
        before = sha(pcap)
        folder = tmp_path_factory.mktemp(f"check-{proto}")
        done = make(f"check-{proto}", STUDENT=STUDENT, PCAP=str(pcap), OUT=str(folder))
        assert sha(pcap) == before, "the student's capture is only read"
        out[proto] = (done, folder)
    return out


def frames_of(output: str) -> dict[int, list[int]]:
    """Task number -> its evidence frames, from the check's output."""
    return {int(n): [int(f) for f in frames.split(", ")]
            for n, frames in re.findall(r"\[done\]\s+(\d+)\..*?\s(?:frames?) ([\d, ]+)$", output, re.M)}


@needs_root
@pytest.mark.parametrize("proto", PROTOS)
def test_check_finds_every_task_done_in_a_session_that_follows_the_worksheet(checked, proto):
    done, _folder = checked[proto]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[not yet]" not in done.stdout and "your own recording" in done.stdout
    assert len(frames_of(done.stdout)) == len(TASK_KEYS[proto]), done.stdout
    assert f"{len(TASK_KEYS[proto])} of {len(TASK_KEYS[proto])} tasks done: complete (selesai)" in done.stdout


@needs_root
@pytest.mark.parametrize("proto", PROTOS)
def test_evidence_frames_are_wiresharks_and_carry_comments_in_the_annotated_copy(checked, sessions, proto,
                                                                               wireshark_env):
    done, folder = checked[proto]
    frames = frames_of(done.stdout)
    copy = folder / f"{sessions[proto].stem}.annotated.pcapng"
    md = folder / f"{sessions[proto].stem}.check-{STUDENT}.md"
    assert copy.exists() and md.exists(), done.stdout
    assert "| done (selesai) |" in md.read_text() and "not yet" not in md.read_text()
    comments = {int(f): c for f, c in wire.tshark(wireshark_env, copy, "frame.comment", "frame.number",
                                                  "frame.comment")}
    assert set(comments) == {f for fs in frames.values() for f in fs}
    # The handshake (task 1): tshark's own flags on those frames, and the comment that explains them.
    syn, syn_ack, ack = frames[1]
    handshake = f"frame.number == {syn} || frame.number == {syn_ack} || frame.number == {ack}"
    flags = dict(wire.tshark(wireshark_env, copy, handshake, "frame.number", "tcp.flags"))
    assert (int(flags[str(syn)], 16), int(flags[str(syn_ack)], 16), int(flags[str(ack)], 16)) == (0x02, 0x12, 0x10)
    assert comments[syn].startswith("SYN: the client opens a TCP connection")
    # One application task per protocol: the frame tshark finds for the message is the one the check cites.
    v = values()
    decode = f"tcp.port=={checked_port(copy, wireshark_env)},{'mqtt' if proto == 'mqtt' else 'http'}"
    if proto == "rest":
        request, response = frames[2]
        uri = wire.tshark(wireshark_env, copy, f"frame.number == {request}", "http.request.uri", decode_as=decode)
        assert uri[0][0] == f"/add?a={float(v.rest_a)}&b={float(v.rest_b)}"
        assert "HTTP response 200" in comments[response]
    elif proto == "soap":
        request, response = frames[7]
        tags = wire.tshark(wireshark_env, copy, f"frame.number == {request}", "xml.tag", decode_as=decode)
        assert re.search(rf"<\w+:{v.soap_op}[ >]", tags[0][0]), tags
        assert f"SOAP response {v.soap_op}Response: {v.soap_expected()}" in comments[response]
    elif proto == "mqtt":
        publish, forward = frames[4]
        both = f"frame.number == {publish} || frame.number == {forward}"
        rows = dict(wire.tshark(wireshark_env, copy, both, "frame.number", "mqtt.topic", decode_as=decode))
        assert rows == {str(publish): v.mqtt_topic, str(forward): v.mqtt_topic}
        assert f"the broker forwards the message of frame {publish}" in comments[forward]
        qos_publish, puback = frames[5]
        assert wire.tshark(wireshark_env, copy, f"frame.number == {puback}", "mqtt.msgtype",
                           decode_as=decode) == [["4"]]
    else:
        line, reply = frames[2]
        sent = wire.payload_bytes(wireshark_env, copy)
        first = wire.tshark(wireshark_env, copy, f"frame.number == {line}", "tcp.payload")[0][0]
        messages = v.reqresp_messages if proto == "reqresp" else v.upcall_messages
        assert bytes.fromhex(first.replace(":", "")).endswith(f"{messages[0]}\n".encode())
        assert f"{messages[0]}\n".encode() in sent
        if proto == "upcall":
            upcalls = frames[5]
            texts = [comments[f] for f in upcalls]
            assert len(upcalls) == 6 and all("on its own initiative" in t for t in texts)


def checked_port(pcap: Path, environment: dict) -> int:
    """The server port of the session (the recorder ran it on a free port)."""
    syn = wire.tshark(environment, pcap, "tcp.flags == 0x002", "tcp.dstport")
    return int(syn[0][0])


# ------------------------------------------------------------------ what is not (yet) the student's work


@needs_root
def test_a_session_keeping_the_demo_values_fails_with_the_hint(tmp_path):
    pcap = record_session("mqtt", tmp_path / "rec", tmp_path, demo_values=True)
    done = make("check-mqtt", STUDENT=STUDENT, PCAP=str(pcap), OUT=str(tmp_path / "out"))
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    topic = values().mqtt_topic
    assert (f"no PUBLISH to {topic}; this capture has sister/temp: did you change TOPICS in pub.py "
            f"(or pass --topic {topic})?") in done.stdout
    assert "uses the demo's default values" in done.stdout
    assert re.search(r"\[done\]\s+1\. TCP handshake", done.stdout), "what the session does show still counts"


def test_a_scripted_demo_capture_is_not_the_students_work(scripted_demo, tmp_path):
    done = make("check-reqresp", STUDENT=STUDENT, PCAP=str(scripted_demo), OUT=str(tmp_path))
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stdout
    assert "NOTE: this is the SCRIPTED demo of reqresp" in done.stdout
    assert "this capture sends the demo's messages (one, two, three), not yours" in done.stdout


# ------------------------------------------------------------------ bad input: one line each


def test_a_missing_recording_points_at_make_record(tmp_path):
    one_line_error(make("check-mqtt", STUDENT=STUDENT, CAPTURES=str(tmp_path)), "`make record-mqtt`")
    one_line_error(make("check-mqtt", STUDENT=STUDENT, PCAP=str(tmp_path / "nope.pcapng")), "make record-mqtt")
    one_line_error(make("check-mqtt", STUDENT=STUDENT, PCAP=str(tmp_path)), "is not a file")


def unrelated_pcap(path: Path) -> Path:
    """A real pcap of one DNS query over UDP: traffic of none of the lab's protocols."""
    dns = bytes.fromhex("abcd01000001000000000000076578616d706c6503636f6d0000010001")
    udp = struct.pack("!HHHH", 53000, 53, 8 + len(dns), 0) + dns
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, bytes([127, 0, 0, 1]),
                     bytes([127, 0, 0, 53])) + udp
    frame = b"\x00" * 12 + b"\x08\x00" + ip
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
                     + struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame)
    return path


def test_bad_captures_are_one_line_each(tmp_path, wireshark_env):
    other = unrelated_pcap(tmp_path / "dns.pcap")
    assert wire.tshark(wireshark_env, other, "dns", "dns.qry.name") == [["example.com"]]  # a real capture
    one_line_error(make("check-rest", STUDENT=STUDENT, PCAP=str(other)), "no REST traffic in this capture")
    empty = tmp_path / "empty.pcapng"
    empty.touch()
    one_line_error(make("check-rest", STUDENT=STUDENT, PCAP=str(empty)), "is empty")
    text = tmp_path / "report.pcapng"
    text.write_text("not a capture at all\n")
    one_line_error(make("check-rest", STUDENT=STUDENT, PCAP=str(text)), "report.pcapng")
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(other.read_bytes()[:30])
    one_line_error(make("check-rest", STUDENT=STUDENT, PCAP=str(cut)), "cut.pcapng")


def test_another_protocols_capture_is_one_line(scripted_demo):
    one_line_error(make("check-mqtt", STUDENT=STUDENT, PCAP=str(scripted_demo)),
                   "this capture holds request/response traffic, not MQTT: check it with `make check-reqresp")


def test_nothing_written_by_someone_else_is_replaced(scripted_demo, tmp_path):
    pcap = tmp_path / "mine.pcapng"
    shutil.copyfile(scripted_demo, pcap)
    theirs = tmp_path / "mine.annotated.pcapng"
    theirs.write_bytes(b"the student's own file")
    report = tmp_path / f"mine.check-{STUDENT}.md"
    report.write_text("my notes\n")
    for _ in range(2):
        make("check-reqresp", STUDENT=STUDENT, PCAP=str(pcap))
    assert theirs.read_bytes() == b"the student's own file" and report.read_text() == "my notes\n"
    assert sha(pcap) == sha(scripted_demo)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(["mine.pcapng", "mine.annotated.pcapng", "mine.annotated-2.pcapng",
                              f"mine.check-{STUDENT}.md", f"mine.check-{STUDENT}-2.md"]), written


# ------------------------------------------------------------------ grading a class


@needs_root
def test_grading_flags_copies_other_students_captures_demos_and_damaged_files(sessions, scripted_demo, tmp_path,
                                                                            wireshark_env):
    subs = tmp_path / "kelas-A"
    (subs / STUDENT).mkdir(parents=True)
    for proto, pcap in sessions.items():
        shutil.copyfile(pcap, subs / STUDENT / f"{proto}.pcapng")
    copied, borrowed, demo, cut, junk = "2546000011", "2546000022", "2546000033", "2546000044", "2546000055"
    shutil.copyfile(sessions["reqresp"], subs / f"{copied}.pcapng")  # byte for byte
    subprocess.run(["editcap", "-F", "pcap", str(sessions["upcall"]), str(subs / f"{borrowed}.pcap")], check=True,
                   capture_output=True)  # the same session, rewritten: other bytes, STUDENT's values
    shutil.copyfile(scripted_demo, subs / f"{demo}.pcapng")
    data = sessions["mqtt"].read_bytes()
    (subs / f"{cut}.pcapng").write_bytes(data[: len(data) * 2 // 3])
    (subs / f"{junk}.pcapng").write_bytes(os.urandom(2000))
    (subs / "notes.txt").write_text("stray\n")
    (subs / "bad id!").mkdir()
    before = {p: sha(p) for p in subs.rglob("*") if p.is_file()}

    done = make("grade", SUBMISSIONS=str(subs), OUT=str(tmp_path / "out"), ANNOTATE="1")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    out = done.stdout
    assert {p: sha(p) for p in subs.rglob("*") if p.is_file()} == before, "nothing submitted is changed"
    flags = {s: re.findall(rf"^--- {s}:.*\n((?:    FLAG .*\n)*)", out, re.M)[0] for s in
             (STUDENT, copied, borrowed, demo, cut, junk)}
    assert f"{copied}.pcapng: identical to {STUDENT}/reqresp.pcapng" in flags[copied]
    assert f"{STUDENT}/reqresp.pcapng: identical to {copied}.pcapng" in flags[STUDENT]
    assert f"holds request/response values of {STUDENT}'s worksheet and none of the student's own" in flags[copied]
    assert f"{borrowed}.pcap: holds upcall values of {STUDENT}'s worksheet and none" in flags[borrowed]
    assert "identical" not in flags[borrowed]
    assert f"{demo}.pcapng: a scripted demo capture (make capture-reqresp)" in flags[demo]
    assert f"{cut}.pcapng: truncated:" in flags[cut]
    assert f"{junk}.pcapng: unreadable:" in flags[junk]
    assert len(flags[STUDENT].splitlines()) == 1, flags[STUDENT]
    assert "skipped notes.txt: not a capture file" in out and "skipped folder bad id!/: not a student id" in out
    assert f"--- {STUDENT}: rest 7/7, soap 8/8, mqtt 6/6, reqresp 6/6, upcall 7/7" in out

    rows = {r["student"]: r for r in csv.DictReader((tmp_path / "out" / "grades.csv").open())}
    assert set(rows) == {STUDENT, copied, borrowed, demo, cut, junk}
    mine = rows[STUDENT]
    assert all(mine[f"{p}:{k}"].startswith("done ") for p in PROTOS for k in TASK_KEYS[p])
    assert mine["done"] == mine["tasks"] == str(sum(len(k) for k in TASK_KEYS.values()))
    assert rows[borrowed]["upcall:msg1"] == "not yet" and rows[junk]["rest:add"] == "-"
    md = (tmp_path / "out" / "grades.md").read_text()
    assert f"| {STUDENT} | done " in md and f"- {demo}: {demo}.pcapng: a scripted demo capture" in md
    annotated = tmp_path / "out" / "annotated" / STUDENT / "upcall.annotated.pcapng"
    frames = [int(f) for f in mine["upcall:upcalls"].removeprefix("done ").split()]
    commented = wire.tshark(wireshark_env, annotated, "frame.comment", "frame.number")
    assert set(frames) <= {int(f) for f, in commented}


def test_grading_a_folder_that_is_not_one_is_one_line(tmp_path):
    one_line_error(make("grade", SUBMISSIONS=str(tmp_path / "none")), "is not a folder")
    (tmp_path / "only-notes.txt").write_text("x")
    one_line_error(make("grade", SUBMISSIONS=str(tmp_path)), "holds no capture named by a student id")
    one_line_error(make("grade"), "SUBMISSIONS=")
