"""The upcall demo, run as real processes: servercall.py calls clientcall.py back on its own initiative."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import LINE_MAX_BYTES as MAX_LINE_BYTES
from helpers import LineConnection, script_constant

from labkit.procs import REPO

CONNECTION_LINE = r"^Connection from: \('127\.0\.0\.1', \d+\)$"
FIRST_PROMPT = "Enter message(s), comma-separated (bye to quit): "
NEXT_PROMPT = "Enter another message(s), comma-separated (bye to quit): "


def start_server(spawn, port: int, *extra: str, **kw):
    server = spawn.script("upcall", "servercall.py", "--host", "127.0.0.1", "--port", str(port), *extra, **kw)
    server.wait_for(rf"^Upcall server listening on 127\.0\.0\.1:{port} \(DNS: upcall-server:{port}\)$")
    return server


def connect(port: int) -> LineConnection:
    return LineConnection(port, timeout=5)


def client(spawn, port: int, log_path, *args: str, **kw):
    return spawn.script("upcall", "clientcall.py", "--host", "127.0.0.1", "--port", str(port),
                        "--log", str(log_path), *args, **kw)


def events_of(message: str) -> list[str]:
    return [f"Upcall event: Processing {message}", f"Upcall event: Progress {message} 50%",
            f"Upcall event: Done {message}"]


def read_until_closed(conn: LineConnection, limit: int = 1000) -> list[str]:
    lines = []
    for _ in range(limit):
        line = conn.read_line()
        if line is None:
            return lines
        lines.append(line)
    raise AssertionError(f"connection still open after {limit} lines")


def test_demo_run_prints_replies_then_the_servers_own_callbacks(spawn, port, tmp_path):
    server = start_server(spawn, port)
    c = client(spawn, port, tmp_path / "client_log.txt", "--messages", "wanda,riri,bye")
    assert c.wait(15) == 0, c.output
    printed = [line.removeprefix("Received upcall from server: ") for line in c.lines]
    assert all(line.startswith("Received upcall from server: Upcall event: ") for line in c.lines), c.output
    assert sorted(printed) == sorted(events_of("wanda") + events_of("riri"))
    for message in ("wanda", "riri"):  # each message: reply first, then progress, then done
        positions = [printed.index(event) for event in events_of(message)]
        assert positions == sorted(positions), c.output
    server.wait_for(r"^Received from client: bye$")
    assert re.match(CONNECTION_LINE, server.lines[1]), server.output
    assert server.lines[2:4] == ["Received from client: wanda", "Received from client: riri"]


def test_client_log_records_what_was_sent_and_received(spawn, port, tmp_path):
    start_server(spawn, port)
    log = tmp_path / "client_log.txt"
    c = client(spawn, port, log, "--messages", "wanda,bye")
    assert c.wait(15) == 0, c.output
    text = log.read_text(encoding="utf-8")
    for entry in (f"INFO Connected to 127.0.0.1:{port}", "INFO Sent: wanda",
                  "INFO Received: Upcall event: Processing wanda", "INFO Received: Upcall event: Progress wanda 50%",
                  "INFO Received: Upcall event: Done wanda", "INFO Sent: bye", "INFO Connection closed"):
        assert entry in text, text


def test_client_log_records_errors_and_server_down_is_one_line(spawn, port, tmp_path):
    log = tmp_path / "client_log.txt"
    c = client(spawn, port, log, "--messages", "wanda")  # nothing listens: refused at once
    assert c.wait(15) != 0
    assert len(c.lines) == 1, c.output
    assert c.lines[0].startswith(f"error: cannot reach the upcall server at 127.0.0.1:{port}: ")
    assert f"ERROR cannot reach the upcall server at 127.0.0.1:{port}" in log.read_text(encoding="utf-8")


def test_server_calls_back_without_being_asked(spawn, port):
    server = start_server(spawn, port)
    conn = connect(port)
    conn.send_line("wanda")
    assert conn.read_line() == "Upcall event: Processing wanda"
    # The client says nothing more; the server speaks on its own.
    assert conn.read_line() == "Upcall event: Progress wanda 50%"
    assert conn.read_line() == "Upcall event: Done wanda"
    conn.send_line("again")  # and the conversation goes on
    assert conn.read_line() == "Upcall event: Processing again"
    conn.close()
    server.wait_for(r"^Upcall to \('127\.0\.0\.1', \d+\): Done wanda$")


def test_bye_lets_the_events_in_flight_arrive_then_the_server_closes(spawn, port):
    server = start_server(spawn, port)
    conn = connect(port)
    conn.sock.sendall(b"a\nbye\n")
    assert read_until_closed(conn) == events_of("a")
    conn.close()
    server.wait_for(r"^Received from client: bye$")


def test_nc_works_as_a_client(spawn, port):
    start_server(spawn, port)
    done = subprocess.run(["timeout", "10", "nc", "-N", "127.0.0.1", str(port)], input=b"wanda\n",
                          capture_output=True, timeout=20)
    assert done.returncode == 0, done
    assert done.stdout.decode().splitlines() == events_of("wanda")


def test_three_messages_in_one_segment_get_three_replies(spawn, port):
    start_server(spawn, port)
    conn = connect(port)
    conn.sock.sendall(b"one\ntwo\nthree\nbye\n")
    lines = read_until_closed(conn)
    assert [line for line in lines if "Processing" in line] == [
        "Upcall event: Processing one", "Upcall event: Processing two", "Upcall event: Processing three"]
    assert sorted(lines) == sorted(events_of("one") + events_of("two") + events_of("three"))
    conn.close()


def test_a_connection_has_at_most_max_in_flight_messages_in_processing(spawn, port):
    limit = script_constant(REPO / "upcall" / "servercall.py", "MAX_IN_FLIGHT")
    start_server(spawn, port, "--progress-delay", "1.5", "--done-delay", "2")
    conn = connect(port)
    count = limit + 6
    conn.sock.sendall("".join(f"m{i}\n" for i in range(count)).encode() + b"bye\n")  # all at once
    lines = read_until_closed(conn)
    # The first `limit` are taken at once; the next one waits until a message is done.
    assert lines[:limit + 1] == [f"Upcall event: Processing m{i}" for i in range(limit)] + [
        "Upcall event: Progress m0 50%"]
    for extra in range(limit, count):
        assert lines.index(f"Upcall event: Processing m{extra}") > lines.index(f"Upcall event: Done m{extra - limit}")
    assert sorted(lines) == sorted(event for i in range(count) for event in events_of(f"m{i}"))  # none lost
    conn.close()


def test_line_over_64k_and_invalid_utf8_are_refused_as_upcall_events(spawn, port):
    start_server(spawn, port)
    conn = connect(port)
    conn.sock.sendall(b"x" * (MAX_LINE_BYTES + 1) + b"\n")
    assert conn.read_line() == "Upcall event: Error: line too long"
    conn.sock.sendall(b"\xff\xfe\n")
    assert conn.read_line() == "Upcall event: Error: invalid UTF-8"
    conn.send_line("fine")
    assert conn.read_line() == "Upcall event: Processing fine"
    conn.close()


def test_idle_connection_is_closed_after_the_idle_timeout(spawn, port):
    server = start_server(spawn, port, "--idle-timeout", "1")
    conn = connect(port)
    assert conn.read_line() == "Upcall event: Error: idle timeout"
    assert conn.read_line() is None
    conn.close()
    server.wait_for(r"^Closing idle connection: ")


def test_twenty_clients_each_get_only_their_own_callbacks(spawn, port):
    server = start_server(spawn, port)
    conns = [connect(port) for _ in range(20)]
    server.wait_for_count(CONNECTION_LINE, 20, timeout=5)
    assert server.count(CONNECTION_LINE) == 20, server.output

    def converse(index: int) -> list[str]:
        conns[index].send_line(f"job {index}")
        conns[index].send_line("bye")
        return read_until_closed(conns[index])

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(converse, range(20)))
    for index, lines in enumerate(results):
        assert lines == events_of(f"job {index}")
    for conn in conns:
        conn.close()
    assert server.running()


def test_upcalls_reach_the_user_while_idle_at_the_prompt(spawn, port, tmp_path):
    start_server(spawn, port)
    c = client(spawn, port, tmp_path / "client_log.txt", stdin=True)
    c.send("wanda\n")
    done = c.wait_for(r"Received upcall from server: Upcall event: Done wanda$")
    assert c.running()  # nothing more typed: the client sits at its prompt
    lines = c.lines
    assert lines[0] == FIRST_PROMPT + "Received upcall from server: Upcall event: Processing wanda"
    progress = lines.index("Received upcall from server: Upcall event: Progress wanda 50%")
    assert lines[progress - 1] == NEXT_PROMPT  # it arrived while the prompt was waiting for input
    assert done.string == lines[progress + 2]
    c.send("bye\n")
    assert c.wait(10) == 0, c.output


def test_end_of_input_acts_like_bye_without_traceback(spawn, port, tmp_path):
    server = start_server(spawn, port)
    c = client(spawn, port, tmp_path / "client_log.txt", stdin=True)
    c.send("wanda, riri\n")
    c.close_stdin()
    assert c.wait(15) == 0, c.output
    assert "Traceback" not in c.output
    assert "Received upcall from server: Upcall event: Done riri" in c.lines  # in-flight events arrived first
    server.wait_for(r"^Received from client: bye$")


def test_server_stops_on_sigterm_within_3_seconds_without_traceback(spawn, port):
    server = start_server(spawn, port)
    conn = connect(port)
    conn.send_line("wanda")
    assert conn.read_line() == "Upcall event: Processing wanda"  # events in flight
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.popen.wait(5) == 0
    assert time.monotonic() - started < 3.0  # spec.md: within 3 s
    server.wait(5)  # its output read to the end
    assert "Traceback" not in server.output
    conn.close()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_interactive_client_stops_at_its_prompt_within_3_seconds(spawn, port, tmp_path, stop):
    start_server(spawn, port)
    c = client(spawn, port, tmp_path / "client_log.txt", stdin=True)
    c.send("wanda\n")
    c.wait_for(r"Processing wanda$")
    started = time.monotonic()
    c.signal(stop)
    rc = c.popen.wait(5)
    assert time.monotonic() - started < 3.0
    c.wait(5)  # its output read to the end
    assert rc == (0 if stop == signal.SIGTERM else 130)
    assert "Traceback" not in c.output


def test_client_gives_up_on_a_silent_server_after_its_reply_timeout(spawn, tmp_path):
    log = tmp_path / "client_log.txt"
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connections complete, nobody ever answers
        c = client(spawn, silent.getsockname()[1], log, "--reply-timeout", "1", "--messages", "wanda")
        assert c.wait(10) == 1
    assert c.lines == ["error: no reply from the upcall server within 1 s"]
    assert "ERROR no reply from the upcall server within 1 s" in log.read_text(encoding="utf-8")


def test_unwritable_log_is_one_warning_and_the_client_carries_on(spawn, port, tmp_path):
    start_server(spawn, port)
    c = client(spawn, port, tmp_path, "--messages", "wanda,bye")  # a directory: cannot be opened for appending
    assert c.wait(15) == 0, c.output
    assert c.lines[0] == (f"warning: cannot write {tmp_path}: Is a directory; not logging "
                          "(choose another file with --log PATH)")
    assert "Received upcall from server: Upcall event: Done wanda" in c.lines
