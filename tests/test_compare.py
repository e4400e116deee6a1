"""`make compare`: one workload of N operations through the five protocols, captured and measured.

One real run (N small, local runtime, free ports) is shared by the tests: its table, JSON and chart
exist, every protocol shows N operations, and the relations the comparison teaches hold, read again
from the captures themselves.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import compare
from labkit.analyze import analyze
from labkit.procs import REPO, python_env, script
from labkit.protocols import NAMES, REST_PORT

N = 10
#: The whole run takes about ten seconds; past this it is stopped with SIGTERM (it cleans up) and fails.
COMPARE_TIMEOUT = 90
IS_ROOT = os.geteuid() == 0


def run_compare(out: Path, *args: str, timeout: float = COMPARE_TIMEOUT) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "labkit.compare", "--out", str(out), *args]
    popen = subprocess.Popen(argv, cwd=REPO, env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        stdout, stderr = popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        popen.terminate()
        stdout, stderr = popen.communicate(timeout=30)
        pytest.fail(f"compare still running after {timeout}s:\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(argv, popen.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not IS_ROOT:
        pytest.skip("tcpdump needs root (CI runs as root)")
    out = tmp_path_factory.mktemp("compare")
    done = run_compare(out, "--n", str(N), "--runtime", "local", "--free-ports")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    return out, done, result, {r["protocol"]: r for r in result["rows"]}


def per_op(rows: dict, proto: str, what: str) -> float:
    return rows[proto]["per_operation"][what]


def test_compare_prints_and_saves_the_table_json_and_chart(run):
    out, done, result, rows = run
    md = (out / "compare.md").read_text(encoding="utf-8")
    for text in (done.stdout, md):
        header = next(line for line in text.splitlines() if line.startswith("| Protocol"))
        assert [c.strip() for c in header.strip("|").split("|")] == list(compare.COLUMNS)
    for proto in NAMES:
        assert f"| {proto} " in md and f"| {proto} " in done.stdout
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["n"] == N and result["runtime"] == "local" and result["failed"] == {}
    assert sorted(rows) == sorted(NAMES)
    for proto in NAMES:
        assert (out / f"{proto}.pcapng").stat().st_size > 0


def test_every_protocol_completes_n_operations(run):
    _, _, _, rows = run
    assert {p: r["operations"] for p, r in rows.items()} == dict.fromkeys(NAMES, N)
    for r in rows.values():
        assert r["latency_ms"]["count"] == N


def test_application_bytes_per_operation_soap_over_rest_over_mqtt(run):
    _, _, _, rows = run
    for what in ("application_bytes", "operation_message_bytes"):
        assert per_op(rows, "soap", what) > per_op(rows, "rest", what) > per_op(rows, "mqtt", what), what
    # MQTT's 2-byte fixed header against HTTP's header lines: a whole order of magnitude per message.
    assert per_op(rows, "rest", "operation_message_bytes") > 5 * per_op(rows, "mqtt", "operation_message_bytes")


def test_wire_bytes_are_at_least_the_application_bytes(run):
    _, _, _, rows = run
    for proto, r in rows.items():
        assert r["wire_bytes"] >= r["application_bytes"] >= r["operation_message_bytes"] > 0, proto
        assert r["packets"] >= 2 * N, proto  # at least a request and an answer (or PUBLISH in and out) each


def test_connection_setups_keep_alive_one_mqtt_two(run):
    _, _, _, rows = run
    setups = {p: r["connection_setups"] for p, r in rows.items()}
    # REST and SOAP reuse one keep-alive connection for all N calls; MQTT: publisher and subscriber.
    assert setups == {"rest": 1, "soap": 1, "mqtt": 2, "reqresp": 1, "upcall": 1}


def test_upcall_shows_the_server_initiated_traffic_reqresp_lacks(run):
    _, _, _, rows = run
    assert rows["upcall"]["server_initiated_messages"] == 2 * N  # Progress and Done for each message
    assert rows["reqresp"]["server_initiated_messages"] == 0
    assert per_op(rows, "upcall", "application_messages") >= per_op(rows, "reqresp", "application_messages") + 1.5
    assert per_op(rows, "upcall", "packets") > per_op(rows, "reqresp", "packets")


def test_latency_figures_are_ordered_and_positive(run):
    _, _, _, rows = run
    for proto, r in rows.items():
        lat = r["latency_ms"]
        assert 0 <= lat["min"] <= lat["median"] <= lat["p99"] <= lat["max"], proto
        assert lat["max"] < 5000, proto  # generous: each operation answers well within seconds


def test_figures_are_read_from_the_captures(run):
    """Re-analysing each saved capture gives the same row, and tshark counts the same packets."""
    out, _, result, rows = run
    for proto in NAMES:
        pcap = out / f"{proto}.pcapng"
        again = compare.measure(proto, analyze(pcap), N, pcap)
        assert {k: again[k] for k in ("operations", "packets", "wire_bytes", "application_bytes")} == \
               {k: rows[proto][k] for k in ("operations", "packets", "wire_bytes", "application_bytes")}
        frames = subprocess.run(["tshark", "-n", "-r", str(pcap), "-T", "fields", "-e", "frame.len"],
                                capture_output=True, text=True, timeout=60)
        assert frames.returncode == 0, frames.stderr
        lengths = [int(x) for x in frames.stdout.split()]
        assert (len(lengths), sum(lengths)) == (rows[proto]["packets"], rows[proto]["wire_bytes"]), proto
    assert result["message"] in (out / "compare.md").read_text(encoding="utf-8")


def test_a_busy_port_fails_in_one_line_and_exits_non_zero(tmp_path):
    holder = socket.socket()
    try:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            holder.bind(("127.0.0.1", REST_PORT))
            holder.listen()
        except OSError:
            pass  # someone else holds it already: the same situation
        done = run_compare(tmp_path, "--n", "2", "--protocols", "rest", timeout=60)
    finally:
        holder.close()
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    assert "compare-rest: FAILED" in done.stdout
    assert done.stderr.strip().splitlines()[-1].startswith("error: compare incomplete: rest failed")


@pytest.mark.parametrize("bad", ["0", "-3", str(compare.MAX_OPERATIONS + 1)])
def test_n_out_of_range_is_refused(tmp_path, bad):
    done = run_compare(tmp_path, "--n", bad, timeout=30)
    assert done.returncode == 2
    assert "--n must be between 1 and" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("folder", ["rest", "soap"])
def test_client_repeat_below_one_is_refused(folder):
    done = subprocess.run(script(folder, "client.py", "--host", "127.0.0.1", "--op", "add", "-a", "1", "-b", "2",
                                 "--repeat", "0"),
                          cwd=REPO / folder, env=python_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "argument --repeat: must be at least 1" in done.stderr and "Traceback" not in done.stderr
