"""The two line-protocol servers (reqresp, upcall) under torture, and what their folders share.

Torture (issue 6): garbage, huge lines, crowds, silence, vanishing clients. Throughout, each
server must keep answering a well-behaved client within a second, and never print a traceback.
Shared (issue 9): the folder runs copied alone, and SERVER_LOG lets a second copy follow the first.
"""

from __future__ import annotations

import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from helpers import LINE_MAX_BYTES, LineConnection, copy_folder_alone, standalone_env

from labkit.procs import REPO, python_env

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServerKind:
    folder: str
    script: str
    ready: str
    prefix: str  # what every server line starts with
    answers: tuple[str, ...]  # how each server line may start
    client: str
    demo: tuple[str, ...]  # the client's arguments for a demo run: sends halo, then bye
    demo_output: tuple[str, ...]  # what the client prints for it

    def reply(self, message: str) -> str:
        return f"Echo: {message}" if self.folder == "reqresp" else f"Upcall event: Processing {message}"

    def error(self, reason: str) -> str:
        return f"{self.prefix}Error: {reason}"


KINDS = [
    ServerKind("reqresp", "server.py", r"^Server listening on ", "", ("Echo: ", "Error: "), "client.py",
               ("halo", "bye"), ("Received from server: Echo: halo", "Received from server: Echo: bye")),
    ServerKind("upcall", "servercall.py", r"^Upcall server listening on ", "Upcall event: ",
               tuple(f"Upcall event: {kind}" for kind in ("Processing ", "Progress ", "Done ", "Error: ")),
               "clientcall.py", ("--messages", "halo,bye"),
               tuple(f"Received upcall from server: Upcall event: {event}"
                     for event in ("Processing halo", "Progress halo 50%", "Done halo"))),
]


@pytest.fixture(params=KINDS, ids=[k.folder for k in KINDS])
def kind(request) -> ServerKind:
    return request.param


class Target:
    """A running server under test and the well-behaved client that checks on it."""

    def __init__(self, spawn, port: int, kind: ServerKind, *extra: str, **kw):
        self.port, self.kind = port, kind
        self.proc = spawn.script(kind.folder, kind.script, "--host", "127.0.0.1", "--port", str(port), *extra, **kw)
        self.proc.wait_for(kind.ready)

    def connect(self, reply_timeout: float = 10) -> LineConnection:
        return LineConnection(self.port, timeout=reply_timeout)

    def assert_answers_within_a_second(self) -> None:
        conn = self.connect(reply_timeout=5)
        try:
            started = time.monotonic()
            conn.send_line("are you there")
            reply = conn.read_line()
            elapsed = time.monotonic() - started
        finally:
            conn.close()
        assert reply == self.kind.reply("are you there")
        assert elapsed < 1.0, f"answered after {elapsed:.2f} s"

    def assert_healthy(self) -> None:
        self.assert_answers_within_a_second()
        assert self.proc.running()
        assert "Traceback" not in self.proc.output, self.proc.output



def raw_connection(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_all(sock: socket.socket, limit: int = 16 * MIB) -> bytes:
    chunks, total = [], 0
    while total < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def test_random_bytes_get_only_well_formed_answers(spawn, port, kind):
    target = Target(spawn, port, kind)
    rng = random.Random(20240601)
    blobs = [rng.randbytes(rng.randrange(1, 20000)) + b"\n" for _ in range(24)]

    def throw(blob: bytes) -> bytes:
        with raw_connection(port) as sock:
            sock.sendall(blob)
            sock.shutdown(socket.SHUT_WR)
            return read_all(sock)

    with ThreadPoolExecutor(8) as pool:
        answers = pool.map(throw, blobs)
        target.assert_answers_within_a_second()
        answers = list(answers)
    for blob, answer in zip(blobs, answers, strict=True):
        lines = answer.decode("utf-8").split("\n")  # every answer is valid UTF-8
        assert lines.pop() == ""  # and ends with a newline
        replies = [line for line in lines if line.startswith(("Echo: ", "Error: ", "Upcall event: Processing ",
                                                              "Upcall event: Error: "))]
        assert len(replies) == blob.count(b"\n")  # one reply per line sent
        assert all(line.startswith(kind.answers) for line in lines), lines
    target.assert_healthy()


INVALID_UTF8 = [
    b"\xff",  # never valid
    b"\x80",  # lone continuation byte
    b"\xc0\xaf",  # overlong '/'
    b"\xe2\x82",  # truncated euro sign
    b"\xed\xa0\x80",  # UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"ok\xfeok",  # a bad byte mid-text
]


def test_every_kind_of_invalid_utf8_is_refused_and_the_connection_survives(spawn, port, kind):
    target = Target(spawn, port, kind)
    conn = target.connect()
    conn.sock.sendall(b"".join(bad + b"\n" for bad in INVALID_UTF8) + "grüße 🙂\n".encode())
    answers = [conn.read_line() for _ in INVALID_UTF8]
    assert answers == [kind.error("invalid UTF-8")] * len(INVALID_UTF8)
    assert conn.read_line() == kind.reply("grüße 🙂")
    conn.close()
    target.assert_healthy()


def test_one_mib_line_is_refused_while_others_are_served(spawn, port, kind):
    target = Target(spawn, port, kind)
    conn = target.connect()
    with ThreadPoolExecutor(1) as pool:
        sending = pool.submit(conn.sock.sendall, b"z" * MIB + b"\n")
        target.assert_answers_within_a_second()
        sending.result(timeout=30)
    assert conn.read_line() == kind.error("line too long")
    conn.send_line("after the flood")
    assert conn.read_line() == kind.reply("after the flood")
    conn.close()
    target.assert_healthy()


def test_two_hundred_connections_at_once(spawn, port, kind):
    target = Target(spawn, port, kind)
    conns = [target.connect(reply_timeout=20) for _ in range(200)]
    try:
        target.proc.wait_for_count(r"^Connection from: ", 200)
        target.assert_answers_within_a_second()

        def converse(index: int) -> str | None:
            conns[index].send_line(f"crowd {index}")
            return conns[index].read_line()

        with ThreadPoolExecutor(50) as pool:
            replies = list(pool.map(converse, range(200)))
        assert replies == [kind.reply(f"crowd {index}") for index in range(200)]
        target.assert_answers_within_a_second()
    finally:
        for conn in conns:
            conn.close()
    target.assert_healthy()


def test_sigterm_with_two_hundred_clients_connected_stops_within_3_seconds(spawn, port, kind):
    target = Target(spawn, port, kind)
    conns = [target.connect() for _ in range(200)]
    try:
        for index, conn in enumerate(conns):
            conn.send_line(f"busy {index}")
        target.proc.wait_for_count(r"^Received from client: busy ", 200)
        started = time.monotonic()
        target.proc.signal(signal.SIGTERM)
        assert target.proc.popen.wait(5) == 0
        assert time.monotonic() - started < 3.0  # spec.md: within 3 s
        target.proc.wait(5)  # and its output has been read to the end
        assert "Traceback" not in target.proc.output and "Fatal" not in target.proc.output, target.proc.output
    finally:
        for conn in conns:
            conn.close()


def test_a_client_pouring_lines_holds_up_nobody(spawn, port, kind):
    target = Target(spawn, port, kind)
    flood = raw_connection(port)
    blob = b"answer me\n" * 300_000  # 3 MB of short lines, again and again, its answers read as they come
    pouring = threading.Event()
    pouring.set()

    def pour() -> None:
        try:
            while pouring.is_set():
                flood.sendall(blob)
        except OSError:
            pass

    def drain() -> None:
        try:
            while flood.recv(1 << 20):
                pass
        except OSError:
            pass

    with ThreadPoolExecutor(2) as pool:
        pool.submit(pour)
        pool.submit(drain)
        try:
            target.proc.wait_for_count(r"^Received from client: answer me$", 60)  # it is being served
            for _ in range(5):
                target.assert_answers_within_a_second()
        finally:
            pouring.clear()
            flood.shutdown(socket.SHUT_RDWR)
            flood.close()
    target.assert_healthy()


def test_silent_and_half_finished_clients_hold_up_nobody(spawn, port, kind):
    target = Target(spawn, port, kind)
    silent = [raw_connection(port) for _ in range(60)]
    unfinished = [raw_connection(port) for _ in range(60)]
    try:
        for sock in unfinished:
            sock.sendall(b"a message that never ends")
        target.proc.wait_for_count(r"^Connection from: ", 120)
        target.assert_answers_within_a_second()
    finally:
        for sock in silent + unfinished:
            sock.close()
    target.proc.wait_for_count(r"^Connection closed: ", 120)  # the unfinished lines dropped, never answered
    target.assert_healthy()


def test_clients_that_vanish_mid_message(spawn, port, kind):
    target = Target(spawn, port, kind)
    for index in range(40):
        sock = raw_connection(port)
        sock.sendall(b"half a mess" if index % 2 else "half a multibyte \u20ac".encode()[:-1])
        if index % 4 == 3:  # vanish with a reset instead of a goodbye
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if index % 5 == 0:  # or with a whole message whose answer nobody reads
            sock.sendall(b"\nanswer me\nand a half")
        sock.close()
        if index % 10 == 0:
            target.assert_answers_within_a_second()
    target.proc.wait_for_count(r"^Connection closed: ", 40)
    target.assert_healthy()


def test_connection_limit_answers_server_busy(spawn, port, kind):
    target = Target(spawn, port, kind, "--max-connections", "5")
    conns = [target.connect() for _ in range(5)]
    for index, conn in enumerate(conns):
        conn.send_line(f"member {index}")
        assert conn.read_line() == kind.reply(f"member {index}")

    extra = target.connect()
    assert extra.read_line() == kind.error("server busy")
    assert extra.read_line() is None
    extra.close()
    target.proc.wait_for(r"^Refused \('127\.0\.0\.1', \d+\): server busy \(5 connections\)$")

    conns.pop().close()  # a place frees up
    for _ in range(50):
        newcomer = target.connect()
        newcomer.send_line("my turn")
        reply = newcomer.read_line()
        newcomer.close()
        if reply == kind.reply("my turn"):
            break
        time.sleep(0.1)
    assert reply == kind.reply("my turn")
    for conn in conns:
        conn.close()
    assert "Traceback" not in target.proc.output
    assert "Error" not in target.proc.output, target.proc.output  # refusing is no trouble for the server


def test_the_tests_line_limit_is_the_servers(kind):
    source = (REPO / kind.folder / kind.script).read_text(encoding="utf-8")
    assert re.search(r"^MAX_LINE_BYTES = 64 \* 1024(  #.*)?$", source, re.M) and LINE_MAX_BYTES == 64 * 1024


def test_both_servers_frame_lines_with_one_identical_block():
    """Issue 19: diffing reqresp/server.py and upcall/servercall.py shows the upcall, not two ways to frame lines."""
    start, end = "# ---- Line framing: ", "# ---- end of the line framing block ----"
    blocks = []
    for kind in KINDS:
        source = (REPO / kind.folder / kind.script).read_text(encoding="utf-8")
        assert source.count(start) == 1 and source.count(end) == 1, kind.script
        blocks.append(source[source.index(start):source.index(end)])
    assert blocks[0] == blocks[1]
    assert "readuntil" in blocks[0] and "IDLE_TIMEOUT_SECONDS" in blocks[0] and "MAX_LINE_BYTES" in blocks[0]


def expected_answers(data: bytes, kind: ServerKind) -> list[str]:
    """The protocol's promise for a stream of whole lines: one answer per line, whatever the line."""
    answers = []
    for line in data.split(b"\n")[:-1]:
        body = line.removesuffix(b"\r")
        try:
            answers.append(kind.error("line too long") if len(body) > LINE_MAX_BYTES else kind.reply(body.decode()))
        except UnicodeDecodeError:
            answers.append(kind.error("invalid UTF-8"))
    return answers


def test_lines_are_cut_the_same_however_the_bytes_arrive(spawn, port, kind):
    quick = ("--progress-delay", "0", "--done-delay", "0") if kind.folder == "upcall" else ()
    target = Target(spawn, port, kind, *quick)
    rng = random.Random(20261129)
    limit = LINE_MAX_BYTES  # lines at, just over and far over the limit are frequent
    pieces = [b"ok", b"\n", b"\r\n", b"\r", b"\xff", "é".encode(), "€".encode()[:2], b"x" * limit,
              b"y" * (limit - 1), b"z" * (limit + 1), b"w" * (3 * limit)]
    for _ in range(12):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 30))) + b"\n"
        with raw_connection(port) as sock:
            for start in range(0, len(data), step := rng.randint(1, 2 * limit)):  # in pieces, each on its own
                sock.sendall(data[start:start + step])
                time.sleep(0.001)
            sock.shutdown(socket.SHUT_WR)
            lines = read_all(sock).decode("utf-8").splitlines()
        answers = [line for line in lines if not line.startswith(("Upcall event: Progress ", "Upcall event: Done "))]
        assert answers == expected_answers(data, kind), data[:200]
    target.assert_healthy()


def send_until_stuck(sock: socket.socket, data: bytes) -> int:
    """Send `data` until the peer stops taking it (timeout) or drops us; the bytes it took."""
    sent = 0
    try:
        while sent < len(data):
            sent += sock.send(data[sent:sent + 65536])
    except OSError:  # TimeoutError: it stopped reading; or reset: it closed the connection
        pass
    return sent


def test_a_client_that_never_reads_its_answers_holds_up_nobody(spawn, port, kind):
    target = Target(spawn, port, kind)
    flood = socket.socket()
    flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the answers pile up at the server
    flood.connect(("127.0.0.1", port))
    flood.settimeout(2)
    blob = b"answer me\n" * (6 * MIB)  # 60 MiB: far more than the socket buffers on both sides hold
    try:
        with ThreadPoolExecutor(1) as pool:
            sending = pool.submit(send_until_stuck, flood, blob)
            target.assert_answers_within_a_second()
            taken = sending.result(timeout=60)
        assert taken < len(blob)  # the server stopped reading from it: TCP flow control held it back
        target.assert_answers_within_a_second()
    finally:
        flood.close()
    target.assert_healthy()


def test_folder_copied_alone_runs_without_the_repo(spawn, port, tmp_path, kind):
    folder = copy_folder_alone(kind.folder, tmp_path)
    # -S: the venv's .pth that puts the repo on sys.path is not read; these folders need only the standard library.
    python, env = [sys.executable, "-S"], standalone_env()
    assert subprocess.run([*python, "-c", "import labkit"], cwd=folder, env=env, capture_output=True).returncode
    server = spawn([*python, kind.script, "--host", "127.0.0.1", "--port", str(port)], cwd=folder, env=env)
    server.wait_for(kind.ready)
    c = spawn([*python, kind.client, "--host", "127.0.0.1", "--port", str(port), *kind.demo], cwd=folder, env=env)
    assert c.wait(15) == 0, c.output
    assert c.lines == list(kind.demo_output)
    server.wait_for(r"^Received from client: bye$")
    if kind.folder == "upcall":  # its log file is written next to the script
        assert "INFO Received: Upcall event: Done halo" in (folder / "client_log.txt").read_text(encoding="utf-8")


def test_server_log_gets_every_line_and_a_second_server_follows_it(spawn, port, tmp_path, kind):
    log = tmp_path / "server.log"
    env = python_env({"SERVER_LOG": str(log)})
    first = Target(spawn, port, kind, env=env).proc
    assert log.stat().st_mode & 0o444 == 0o444  # readable by all: `docker compose exec` may be another user
    follower = spawn.script(kind.folder, kind.script, "--host", "127.0.0.1", "--port", str(port), env=env)
    follower.wait_for(r"^Following ")
    assert follower.lines[0] == (f"Following the {kind.folder} server already running in this container "
                                 f"(port {port}): its output from now on. Ctrl+C to stop.")
    logging = ("--log", str(tmp_path / "client_log.txt")) if kind.folder == "upcall" else ()
    c = spawn.script(kind.folder, kind.client, "--host", "127.0.0.1", "--port", str(port), *logging, *kind.demo)
    assert c.wait(15) == 0, c.output
    follower.wait_for(r"^Connection closed: ")
    assert follower.lines[1:] == first.lines[1:]  # the first server's lines since then, not its ready line
    assert log.read_text(encoding="utf-8").splitlines() == first.lines
    started = time.monotonic()
    follower.signal(signal.SIGTERM)
    assert follower.wait(5) in (0, -signal.SIGTERM)  # the follower has become tail -F: SIGTERM ends it
    assert time.monotonic() - started < 3.0
    assert "Traceback" not in follower.output
    assert first.running()


def test_taken_port_without_server_log_is_one_line_and_exit_2(spawn, port, kind):
    Target(spawn, port, kind)
    second = spawn.script(kind.folder, kind.script, "--host", "127.0.0.1", "--port", str(port))
    assert second.wait(10) == 2
    assert second.lines == [f"error: port {port} on 127.0.0.1 is already in use: "
                            f"stop the other {kind.folder} server (or choose another with --port)"]
