"""The TCP request/response demo, run as real processes: server.py, client.py and nc."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import LINE_MAX_BYTES as MAX_LINE_BYTES
from helpers import LineConnection

CONNECTION_LINE = r"^Connection from: \('127\.0\.0\.1', \d+\)$"


def start_server(spawn, port: int, *extra: str, **kw):
    server = spawn.script("reqresp", "server.py", "--host", "127.0.0.1", "--port", str(port), *extra, **kw)
    server.wait_for(rf"^Server listening on 127\.0\.0\.1:{port}$")
    return server


def connect(port: int) -> LineConnection:
    return LineConnection(port, timeout=5)


def client(spawn, port: int, *args: str, **kw):
    return spawn.script("reqresp", "client.py", "--host", "127.0.0.1", "--port", str(port), *args, **kw)


def test_scripted_client_gets_one_echo_per_message(spawn, port):
    server = start_server(spawn, port)
    c = client(spawn, port, "one", "two", "three", "bye")
    assert c.wait(15) == 0, c.output
    assert c.lines == ["Received from server: Echo: one", "Received from server: Echo: two",
                       "Received from server: Echo: three", "Received from server: Echo: bye"]
    server.wait_for(r"^Received from client: bye$")
    assert re.match(CONNECTION_LINE, server.lines[1]), server.output
    assert server.lines[2:6] == [f"Received from client: {m}" for m in ("one", "two", "three", "bye")]


def test_scripted_client_without_bye_says_bye_at_the_end(spawn, port):
    server = start_server(spawn, port)
    c = client(spawn, port, "only")
    assert c.wait(15) == 0, c.output
    assert c.lines == ["Received from server: Echo: only", "Received from server: Echo: bye"]
    server.wait_for(r"^Received from client: bye$")


def test_three_messages_in_one_segment_come_back_as_three_echoes(spawn, port):
    start_server(spawn, port)
    conn = connect(port)
    conn.sock.sendall(b"one\ntwo\nthree\n")
    assert [conn.read_line() for _ in range(3)] == ["Echo: one", "Echo: two", "Echo: three"]
    conn.close()


def test_crlf_and_lf_both_end_a_line(spawn, port):
    start_server(spawn, port)
    conn = connect(port)
    conn.sock.sendall("dos\r\nunix\ngrüße 🙂\n".encode())
    assert [conn.read_line() for _ in range(3)] == ["Echo: dos", "Echo: unix", "Echo: grüße 🙂"]
    conn.close()


def test_nc_works_as_a_client(spawn, port):
    server = start_server(spawn, port)
    done = subprocess.run(["timeout", "10", "nc", "-N", "127.0.0.1", str(port)], input=b"hello\nworld\n",
                          capture_output=True, timeout=20)
    assert done.returncode == 0, done
    assert done.stdout == b"Echo: hello\nEcho: world\n"
    server.wait_for(r"^Received from client: world$")


def test_line_of_exactly_the_limit_is_echoed(spawn, port):
    start_server(spawn, port)
    conn = connect(port)
    conn.sock.sendall(b"y" * MAX_LINE_BYTES + b"\n")
    assert conn.read_line() == "Echo: " + "y" * MAX_LINE_BYTES
    conn.close()


def test_line_over_64k_is_refused_and_the_connection_still_works(spawn, port):
    server = start_server(spawn, port)
    conn = connect(port)
    conn.sock.sendall(b"x" * (MAX_LINE_BYTES + 1) + b"\n")
    assert conn.read_line() == "Error: line too long"
    conn.send_line("still here")
    assert conn.read_line() == "Echo: still here"
    conn.close()
    server.wait_for(r"line too long")


def test_invalid_utf8_is_refused_and_the_connection_still_works(spawn, port):
    start_server(spawn, port)
    conn = connect(port)
    conn.sock.sendall(b"caf\xe9\n")
    assert conn.read_line() == "Error: invalid UTF-8"
    conn.send_line("café")
    assert conn.read_line() == "Echo: café"
    conn.close()


def test_idle_connection_is_closed_after_the_idle_timeout(spawn, port):
    server = start_server(spawn, port, "--idle-timeout", "1")
    conn = connect(port)
    conn.send_line("hi")
    assert conn.read_line() == "Echo: hi"
    assert conn.read_line() == "Error: idle timeout"  # within the 5 s read timeout
    assert conn.read_line() is None
    conn.close()
    server.wait_for(r"^Closing idle connection: \('127\.0\.0\.1', \d+\) \(nothing received for 1 s\)$")


def test_client_that_reads_no_answers_is_dropped_after_the_idle_timeout(spawn, port):
    server = start_server(spawn, port, "--idle-timeout", "1")
    with socket.socket() as flood:
        flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the echoes pile up at the server
        flood.connect(("127.0.0.1", port))
        flood.settimeout(10)  # a server that kept the stuck connection would end this with TimeoutError
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            flood.sendall((b"x" * 1000 + b"\n") * 130_000)  # 130 MB, its echoes never read back
    server.wait_for(r"^Connection closed: ")
    assert server.running()


def test_bye_is_echoed_then_the_server_closes(spawn, port):
    start_server(spawn, port)
    conn = connect(port)
    conn.send_line("bye")
    assert conn.read_line() == "Echo: bye"
    assert conn.read_line() is None
    conn.close()


def test_twenty_clients_are_served_at_once(spawn, port):
    server = start_server(spawn, port)
    conns = [connect(port) for _ in range(20)]
    # All twenty are connected at the same time before anyone speaks.
    server.wait_for_count(CONNECTION_LINE, 20, timeout=5)
    assert server.count(CONNECTION_LINE) == 20, server.output

    def converse(index: int) -> list[str]:
        replies = []
        for n in range(5):
            conns[index].send_line(f"client {index} message {n}")
            replies.append(conns[index].read_line())
        return replies

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(converse, range(20)))
    for index, replies in enumerate(results):
        assert replies == [f"Echo: client {index} message {n}" for n in range(5)]
    for conn in conns:
        conn.close()


def test_server_keeps_running_after_clients_leave(spawn, port):
    server = start_server(spawn, port)
    abrupt = connect(port)
    abrupt.send_line("first")
    assert abrupt.read_line() == "Echo: first"
    abrupt.close()  # leaves without bye
    for n in range(3):
        c = client(spawn, port, f"visit {n}", "bye")
        assert c.wait(15) == 0, c.output
        assert c.lines[0] == f"Received from server: Echo: visit {n}"
    assert server.running()
    assert server.count(CONNECTION_LINE) == 4


def test_interactive_client_prompts_and_ends_at_bye(spawn, port):
    server = start_server(spawn, port)
    c = client(spawn, port, stdin=True)
    c.send("hello\n")
    c.wait_for(r"Received from server: Echo: hello$")
    c.send("bye\n")
    assert c.wait(10) == 0, c.output
    assert c.lines == ["Enter message: Received from server: Echo: hello",
                       "Enter another message: Received from server: Echo: bye"]
    server.wait_for(r"^Received from client: bye$")


def test_interactive_end_of_input_acts_like_bye(spawn, port):
    server = start_server(spawn, port)
    c = client(spawn, port, stdin=True)
    c.send("hello\n")
    c.close_stdin()
    assert c.wait(10) == 0, c.output
    assert "Received from server: Echo: bye" in c.lines
    assert "Traceback" not in c.output
    server.wait_for(r"^Received from client: bye$")


def test_client_with_server_down_says_so_in_one_line(spawn, port):
    started = time.monotonic()
    c = client(spawn, port, "hello")  # nothing listens: refused at once
    assert c.wait(15) != 0
    assert time.monotonic() - started < 10
    assert len(c.lines) == 1, c.output
    assert c.lines[0].startswith(f"error: cannot reach the reqresp server at 127.0.0.1:{port}: ")


def test_server_stops_on_sigterm_within_3_seconds_without_traceback(spawn, port):
    server = start_server(spawn, port)
    conn = connect(port)
    conn.send_line("hi")
    assert conn.read_line() == "Echo: hi"
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.popen.wait(5) == 0
    assert time.monotonic() - started < 3.0  # spec.md: within 3 s
    server.wait(5)  # its output read to the end
    assert "Traceback" not in server.output
    assert conn.read_line() is None  # the server closed our connection on its way out
    conn.close()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_interactive_client_stops_at_its_prompt_within_3_seconds(spawn, port, stop):
    start_server(spawn, port)
    c = client(spawn, port, stdin=True)
    c.send("hello\n")
    c.wait_for(r"Received from server: Echo: hello$")  # now waiting at "Enter another message: "
    started = time.monotonic()
    c.signal(stop)
    rc = c.popen.wait(5)
    assert time.monotonic() - started < 3.0
    c.wait(5)  # its output read to the end
    assert rc == (0 if stop == signal.SIGTERM else 130)
    assert "Traceback" not in c.output


def test_client_gives_up_on_a_silent_server_after_its_reply_timeout(spawn):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connections complete, nobody ever answers
        c = client(spawn, silent.getsockname()[1], "--reply-timeout", "1", "hello")
        assert c.wait(10) == 1
    assert c.lines == ["error: no reply from the reqresp server within 1 s"]
