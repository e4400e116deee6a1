"""MQTT demo: pub.py and sub.py through a real Mosquitto, and against mosquitto_pub/mosquitto_sub."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port
from helpers import MQTT_HOST as HOST
from helpers import (
    PUBLISHED,
    RECEIVED,
    SHIPPED_MOSQUITTO_CONF,
    copy_folder_alone,
    index_of,
    matches,
    mosquitto_with_conf,
    script_constant,
    standalone_env,
    start_pub,
    start_sub,
)

from labkit.procs import REPO, Proc

READING = re.compile(r"^(?P<value>\d+\.\d) (?P<unit>°C|%)$")
TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} Received message: .* \(Topic: [^ ]+\)$")
SEED_002_MESSAGE = "Ada kanal Youtube baru nih: @Ivanzenatmaja"
NOT_LOGGING = "; not logging (choose another file with --log PATH)"


def mosquitto_pub(port: int, *args: str, stdin: bytes | None = None) -> None:
    subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(port), *args], input=stdin, check=True, timeout=10)


def mosquitto_sub(spawn, port: int, *args: str) -> Proc:
    """mosquitto_sub in debug mode (-d), line-buffered, ready once it has its SUBACK."""
    proc = spawn(["mosquitto_sub", "-h", HOST, "-p", str(port), "-d", *args], label="mosquitto_sub",
                 prefix=["stdbuf", "-oL"])
    proc.wait_for(r"received SUBACK", timeout=10)
    return proc


def assert_reading(payload: str, topic: str) -> None:
    m = READING.match(payload)
    assert m, f"not a reading: {payload!r}"
    value = float(m["value"])
    if topic == "sister/temp":
        assert m["unit"] == "°C" and 20 <= value <= 35, payload
    else:
        assert topic == "sister/humidity" and m["unit"] == "%" and 30 <= value <= 50, payload


def test_pub_to_sub_prints_seed_lines_with_readings_in_range(spawn, broker, tmp_path):
    sub = start_sub(spawn, broker.port, tmp_path, "--count", "4")
    pub = start_pub(spawn, broker.port, "--count", "2", "--interval", "0.2")
    assert pub.wait(15) == 0, pub.output
    assert sub.wait(15) == 0, sub.output

    assert pub.lines[:2] == [f"Connecting to {HOST}:{broker.port}...", f"Connected to MQTT broker {HOST}:{broker.port}"]
    assert sub.lines[:4] == [pub.lines[0], "Waiting for messages... (press Ctrl+C to quit)", pub.lines[1],
                             "Subscribed to: sister/temp, sister/humidity"]  # the seed's order
    assert "Subscribed to: sister/temp, sister/humidity" in sub.lines
    published = [(m["payload"], m["topic"]) for m in matches(pub, PUBLISHED)]
    received = [(m["payload"], m["topic"]) for m in matches(sub, RECEIVED)]
    assert [topic for _, topic in published] == ["sister/temp", "sister/humidity"] * 2
    for payload, topic in published:
        assert_reading(payload, topic)
    assert received == published
    # Every line whole: paho's thread and the main thread print, never into each other's lines.
    assert all(re.match(r"Connecting to |Connected to MQTT broker |Publishing every |Published: ", line)
               for line in pub.lines), pub.output
    assert all(re.match(r"Connecting to |Connected to MQTT broker |Waiting for messages\.\.\. |Subscribed to: "
                        r"|Received message: ", line) for line in sub.lines), sub.output


def test_sub_appends_each_message_with_a_timestamp_to_its_log(spawn, broker, tmp_path):
    log = tmp_path / "messages.log"
    log.write_text("an earlier line\n", encoding="utf-8")
    sub = start_sub(spawn, broker.port, tmp_path, "--count", "2", log=str(log))
    mosquitto_pub(broker.port, "-t", "sister/temp", "-m", "21.5 °C")
    mosquitto_pub(broker.port, "-t", "sister/humidity", "-m", "40.0 %")
    assert sub.wait(15) == 0, sub.output

    lines = log.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "an earlier line"
    assert len(lines) == 3 and all(TIMESTAMPED.match(line) for line in lines[1:]), lines
    assert lines[1].endswith(" Received message: 21.5 °C (Topic: sister/temp)")
    assert lines[2].endswith(" Received message: 40.0 % (Topic: sister/humidity)")


@pytest.mark.parametrize(("log", "reason"), [("no-such-dir/x.log", "No such file or directory"),
                                             ("/dev/full", "No space left on device")], ids=["open", "write"])
def test_unwritable_log_is_one_warning_and_sub_keeps_receiving(spawn, broker, tmp_path, log, reason):
    """Contract with upcall's client_log.txt: one warning line on stderr, the same wording, and it keeps running."""
    path = str(tmp_path / log)
    sub = start_sub(spawn, broker.port, tmp_path, "--count", "2", log=path)
    mosquitto_pub(broker.port, "-t", "sister/temp", "-m", "22.0 °C")
    mosquitto_pub(broker.port, "-t", "sister/temp", "-m", "23.0 °C")
    assert sub.wait(15) == 0, sub.output
    assert sub.count(r"^warning: ") == 1, sub.output
    assert f"warning: cannot write {path}: {reason}{NOT_LOGGING}" in sub.lines
    assert len(matches(sub, RECEIVED)) == 2
    assert "Traceback" not in sub.output


def test_mosquitto_pub_message_reaches_sub_py(spawn, broker, tmp_path):
    sub = start_sub(spawn, broker.port, tmp_path, "--count", "1")
    mosquitto_pub(broker.port, "-t", "sister/humidity", "-m", "33.3 %")
    assert sub.wait(15) == 0, sub.output
    assert "Received message: 33.3 % (Topic: sister/humidity)" in sub.lines


def test_pub_py_messages_reach_mosquitto_sub(spawn, broker):
    outside = mosquitto_sub(spawn, broker.port, "-t", "sister/#", "-C", "2", "-F", "%t|%p")
    pub = start_pub(spawn, broker.port, "--count", "1")
    assert pub.wait(15) == 0, pub.output
    assert outside.wait(15) == 0, outside.output
    got = [line.split("|", 1) for line in outside.lines if "|" in line]
    assert [topic for topic, _ in got] == ["sister/temp", "sister/humidity"]
    for topic, payload in got:
        assert_reading(payload, topic)
        assert f"Published: {payload} (Topic: {topic})" in pub.lines


def test_subscriber_on_another_topic_receives_nothing(spawn, broker, tmp_path):
    """Seed 002: pub on sister/channel/gaming, sub on sister/channel/kesehatan: connected, yet nothing arrives."""
    other = start_sub(spawn, broker.port, tmp_path, "--topic", "sister/channel/kesehatan", "--timeout", "3",
                      log=str(tmp_path / "other.log"))
    same = start_sub(spawn, broker.port, tmp_path, "--topic", "sister/channel/gaming", "--count", "3",
                     log=str(tmp_path / "same.log"))
    pub = start_pub(spawn, broker.port, "--topic", "sister/channel/gaming", "--message", SEED_002_MESSAGE,
                    "--count", "3", "--interval", "0.2")
    assert pub.wait(15) == 0, pub.output
    assert same.wait(15) == 0, same.output
    assert other.wait(15) == 0, other.output

    line = f"{SEED_002_MESSAGE} (Topic: sister/channel/gaming)"
    assert pub.count(rf"^Published: {re.escape(line)}$") == 3
    assert same.count(rf"^Received message: {re.escape(line)}$") == 3
    assert "Subscribed to: sister/channel/kesehatan" in other.lines
    assert not matches(other, RECEIVED)
    assert other.lines[-1] == "No messages received on sister/channel/kesehatan in 3s"


def test_wildcards_receive_every_matching_topic(spawn, broker, tmp_path):
    everything = start_sub(spawn, broker.port, tmp_path, "--topic", "sister/#", "--count", "4",
                           log=str(tmp_path / "all.log"))
    gaming = start_sub(spawn, broker.port, tmp_path, "--topic", "sister/+/gaming", "--timeout", "3",
                       log=str(tmp_path / "gaming.log"))
    readings = start_pub(spawn, broker.port, "--count", "1")
    channels = start_pub(spawn, broker.port, "--topic", "sister/channel/gaming,sister/channel/kesehatan",
                         "--message", "hello", "--count", "1")
    assert readings.wait(15) == 0 and channels.wait(15) == 0, readings.output + channels.output
    assert everything.wait(15) == 0, everything.output
    assert gaming.wait(15) == 0, gaming.output

    assert sorted(m["topic"] for m in matches(everything, RECEIVED)) == [
        "sister/channel/gaming", "sister/channel/kesehatan", "sister/humidity", "sister/temp"]
    assert [(m["payload"], m["topic"]) for m in matches(gaming, RECEIVED)] == [("hello", "sister/channel/gaming")]
    assert gaming.lines[-1] == "Received 1 message on sister/+/gaming in 3s"


def test_retain_and_qos_flags_reach_the_broker(spawn, broker):
    retained = start_pub(spawn, broker.port, "--topic", "lab/retained", "--message", "kept for later",
                         "--qos", "1", "--retain", "--count", "1")
    assert retained.wait(15) == 0, retained.output
    assert "Published: kept for later (Topic: lab/retained)" in retained.lines
    # A subscriber that arrives afterwards still gets it, flagged retained (%r), at QoS 1 (%q).
    late = mosquitto_sub(spawn, broker.port, "-t", "lab/retained", "-q", "2", "-C", "1", "-F", "%r %q %t %p")
    assert late.wait(15) == 0, late.output
    assert "1 1 lab/retained kept for later" in late.lines

    live = mosquitto_sub(spawn, broker.port, "-t", "lab/exactly-once", "-q", "2", "-C", "3", "-F", "%r %q %t %p")
    qos2 = start_pub(spawn, broker.port, "--topic", "lab/exactly-once", "--message", "once", "--qos", "2",
                     "--count", "3", "--interval", "0")
    assert qos2.wait(15) == 0, qos2.output
    assert qos2.count(r"^Published: once \(Topic: lab/exactly-once\)$") == 3
    assert live.wait(15) == 0, live.output
    assert live.lines.count("0 2 lab/exactly-once once") == 3


def test_sub_subscribes_with_the_qos_it_is_given(spawn, broker, tmp_path):
    sub = start_sub(spawn, broker.port, tmp_path, "--topic", "lab/important", "--qos", "2", "--count", "1")
    broker.proc.wait_for(r"lab/important \(QoS 2\)", timeout=10)
    mosquitto_pub(broker.port, "-t", "lab/important", "-m", "sure", "-q", "2")
    assert sub.wait(15) == 0, sub.output
    assert "Received message: sure (Topic: lab/important)" in sub.lines
    broker.proc.wait_for(r"Sending PUBLISH to .* \(d0, q2, r0, m\d+, 'lab/important'", timeout=10)


def test_clients_that_cannot_reach_a_broker_exit_non_zero_with_one_line(spawn, tmp_path):
    dead_port = free_port()
    with socket.socket() as silent:  # accepts TCP connections but never speaks MQTT
        silent.bind((HOST, 0))
        silent.listen()
        silent_port = silent.getsockname()[1]
        started = time.monotonic()
        procs = {
            "pub": start_pub(spawn, dead_port, "--count", "1", "--wait", "2"),
            "sub": start_sub(spawn, dead_port, tmp_path, "--wait", "2", wait=False),
            "default": spawn.script("mqtt", "sub.py", "--log", str(tmp_path / "d.log"), "--wait", "2"),
            "silent": start_pub(spawn, silent_port, "--count", "1", "--wait", "2"),
        }
        codes = {name: proc.wait(30) for name, proc in procs.items()}
        elapsed = time.monotonic() - started

    for name, proc in procs.items():
        assert codes[name] != 0, proc.output
        assert "Traceback" not in proc.output
        errors = [line for line in proc.lines if line.startswith("error:")]
        assert len(errors) == 1, proc.output
    for name in ("pub", "sub"):
        assert procs[name].lines[-1] == f"error: cannot reach the MQTT broker at {HOST}:{dead_port} within 2 s"
    # TCP connected, but no CONNACK ever came: the same line
    assert procs["default"].lines[0] == "Connecting to mqtt-broker:1883..."
    assert procs["default"].lines[-1] == ("error: cannot reach the MQTT broker at mqtt-broker:1883 within 2 s "
                                          "(running without Docker? add --host 127.0.0.1)")
    assert procs["silent"].lines[-1] == f"error: cannot reach the MQTT broker at {HOST}:{silent_port} within 2 s"
    assert 1.5 <= elapsed < 10, elapsed  # it did retry for about --wait seconds, and gave up
    for script in ("pub.py", "sub.py"):  # without --wait: 10 s, as the spec says
        assert script_constant(REPO / "mqtt" / script, "WAIT") == 10.0


def test_pub_and_sub_reconnect_after_broker_restart_and_sub_resubscribes(spawn, broker, tmp_path):
    sub = start_sub(spawn, broker.port, tmp_path, "--client-id", "lab-sub")
    pub = start_pub(spawn, broker.port, "--interval", "0.2")
    sub.wait_for(RECEIVED.pattern)

    broker.stop()
    lost = index_of(pub, r"^Not sent \(no connection to the broker\): ")  # pub.py's sign of a lost connection
    sub.wait_for(r"^Lost the connection to the MQTT broker")
    pub.wait_for_count(r"^Not sent \(no connection to the broker", 3, start=lost)
    # While the broker is down nothing is claimed as published (the original printed Published: anyway).
    assert not matches(pub, PUBLISHED, start=lost), pub.output

    broker.start()
    reconnected = index_of(pub, rf"^Reconnected to MQTT broker {HOST}:{broker.port}$", start=lost)
    resubscribed = index_of(sub, r"^Subscribed to: sister/temp, sister/humidity$",
                            start=index_of(sub, r"^Reconnected to MQTT broker"))
    pub.wait_for(PUBLISHED.pattern, start=reconnected)
    sub.wait_for(RECEIVED.pattern, start=resubscribed)
    assert sub.running() and pub.running()
    for proc, client_id in ((pub, r"auto-[0-9A-F-]+"), (sub, "lab-sub")):  # the new connection also ends cleanly
        assert proc.stop() == 0, proc.output
        broker.proc.wait_for(rf"Client {client_id} disconnected\.", timeout=5)


def test_pub_qos1_sends_nothing_while_broker_is_down_and_publishes_again_after_reconnect(spawn, broker):
    """Without a connection pub.py hands nothing to paho, whatever the QoS: paho would keep a QoS 1 message, but its
    MQTTMessageInfo would report it failed for good, even once sent. A message in flight is resent by paho."""
    pub = start_pub(spawn, broker.port, "--interval", "0.2", "--qos", "1")
    pub.wait_for(PUBLISHED.pattern)
    broker.stop()
    lost = not_sent = index_of(pub, r"^Not sent \(no connection to the broker\): ")
    pub.wait_for_count(r"^Not sent \(no connection to the broker\): ", 2, start=lost)

    broker.start()
    reconnected = index_of(pub, r"^Reconnected to MQTT broker", start=lost)
    assert not matches(pub, PUBLISHED, start=not_sent, end=reconnected), pub.output
    pub.wait_for(PUBLISHED.pattern, start=reconnected)
    assert "Traceback" not in pub.output


def test_non_utf8_payload_is_shown_escaped(spawn, broker, tmp_path):
    log = tmp_path / "messages.log"
    sub = start_sub(spawn, broker.port, tmp_path, "--count", "2", log=str(log))
    mosquitto_pub(broker.port, "-t", "sister/temp", "-s", stdin=b"\xff\xfe 25.0 \xc3\x28 \x1b[31mred\nnext")
    mosquitto_pub(broker.port, "-t", "sister/temp", "-m", "26.0 °C")
    assert sub.wait(15) == 0, sub.output
    shown = r"Received message: \xff\xfe 25.0 \xc3( \x1b[31mred\nnext (Topic: sister/temp)"
    assert shown in sub.lines, sub.output
    assert "Received message: 26.0 °C (Topic: sister/temp)" in sub.lines
    assert log.read_text(encoding="utf-8").splitlines()[0].endswith(shown)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_signal_stops_pub_and_sub_within_a_second_with_a_clean_disconnect(spawn, broker, tmp_path, sig, code):
    sub = start_sub(spawn, broker.port, tmp_path, "--client-id", "lab-sub")
    pub = start_pub(spawn, broker.port, "--interval", "0.2")
    sub.wait_for(RECEIVED.pattern)
    for proc in (pub, sub):
        proc.signal(sig)
        assert proc.wait(1.0) == code, proc.output
        assert "Traceback" not in proc.output
    broker.proc.wait_for(r"Client auto-[0-9A-F-]+ disconnected\.", timeout=5)  # sent DISCONNECT: a clean teardown
    broker.proc.wait_for(r"Client lab-sub disconnected\.", timeout=5)


def test_clients_started_before_the_broker_connect_once_it_is_up(spawn, tmp_path):
    port = free_port()
    sub = start_sub(spawn, port, tmp_path, "--count", "2", wait=False)
    pub = start_pub(spawn, port, "--count", "3", "--interval", "0.5")
    time.sleep(2.5)  # paho has tried (and failed) a few times by now
    assert sub.running() and pub.running(), sub.output + pub.output
    conf = tmp_path / "late.conf"
    conf.write_text(f"listener {port} {HOST}\nallow_anonymous true\n", encoding="utf-8")
    spawn(["mosquitto", "-c", str(conf)], label="mosquitto")
    sub.wait_for(r"^Subscribed to: ", timeout=10)
    assert pub.wait(15) == 0, pub.output
    assert sub.wait(15) == 0, sub.output
    assert len(matches(pub, PUBLISHED)) == 6 and len(matches(sub, RECEIVED)) == 2


def test_sigterm_while_retrying_the_first_connection_stops_within_a_second(spawn):
    pub = start_pub(spawn, free_port())
    pub.wait_for(r"^Connecting to ")
    time.sleep(1.5)  # in paho's wait between two attempts
    pub.signal(signal.SIGTERM)
    assert pub.wait(1.0) == 0, pub.output
    assert "Traceback" not in pub.output


@pytest.mark.parametrize(("script", "args", "message"), [
    ("pub.py", ["--topic", "sister/#"],
     "pub.py: error: invalid topic 'sister/#': wildcards (+, #) are for subscribing only"),
    # paho's own check (subscribe() raises ValueError), with a hint
    ("sub.py", ["--topic", "sister/#/temp"], "sub.py: error: invalid topic 'sister/#/temp': Invalid subscription"),
    ("sub.py", ["--topic", "sister/te+"], "sub.py: error: invalid topic 'sister/te+': Invalid subscription filter. "
                                          "(+ and # stand for whole levels, # only for the last)"),
    ("pub.py", ["--topic", "sister/channel/gaming"], "pub.py: error: no reading to publish on sister/channel/gaming"),
    ("sub.py", ["--persistent"], "sub.py: error: --persistent needs --client-id"),
])
def test_bad_flags_fail_with_one_line_before_connecting(spawn, tmp_path, script, args, message):
    proc = spawn.script("mqtt", script, "--host", HOST, "--port", str(free_port()), *args,
                        cwd=str(tmp_path))
    assert proc.wait(10) == 2, proc.output
    assert proc.lines[-1].startswith(message), proc.output
    assert "Connecting" not in proc.output and "Traceback" not in proc.output


def test_pub_count_exits_non_zero_when_messages_do_not_reach_the_broker(spawn, broker):
    pub = start_pub(spawn, broker.port, "--qos", "1", "--count", "2", "--interval", "1", "--wait", "2")
    pub.wait_for(r"^Published: .* \(Topic: sister/humidity\)$")  # round 1 (temp, humidity) fully confirmed
    broker.stop()  # round 2 finds no connection
    pub.wait_for(r"^Not sent \(no connection to the broker\): ")
    assert pub.wait(10) == 1, pub.output
    assert pub.lines[-1] == f"error: 2 of 4 messages did not reach the broker at {HOST}:{broker.port}"
    assert "Traceback" not in pub.output


def test_shipped_mosquitto_conf_serves_pub_and_sub(spawn, tmp_path):
    shipped = SHIPPED_MOSQUITTO_CONF.read_text(encoding="utf-8")
    assert re.search(r"^listener 1883$", shipped, re.M) and re.search(r"^allow_anonymous true$", shipped, re.M)
    assert re.search(r"^persistence false$", shipped, re.M)
    broker, port = mosquitto_with_conf(spawn, SHIPPED_MOSQUITTO_CONF, tmp_path / "mosquitto.conf")

    sub = start_sub(spawn, port, tmp_path, "--count", "2")
    pub = start_pub(spawn, port, "--count", "1")
    assert pub.wait(15) == 0 and sub.wait(15) == 0, pub.output + sub.output
    assert [m["payload"] for m in matches(sub, RECEIVED)] == [m["payload"] for m in matches(pub, PUBLISHED)]
    broker.wait_for(r"New client connected from 127\.0\.0\.1")  # connection_messages: joins show in its log


def run_copy(spawn, copy: Path, script: str, *args: str, cwd: Path | None = None) -> Proc:
    """A script of the copy, run with the venv's interpreter and no PYTHONPATH (nothing but its folder and paho)."""
    return spawn([sys.executable, script, *args], cwd=str(cwd or copy), env=standalone_env(), label=script)


def test_the_folder_copied_alone_runs_with_its_own_mosquitto_conf(spawn, tmp_path):
    copy = copy_folder_alone("mqtt", tmp_path)  # as an instructor copies it into a course
    for path in copy.glob("*.py"):
        assert "labkit" not in path.read_text(encoding="utf-8"), path.name
    broker, port = mosquitto_with_conf(spawn, copy / "mosquitto.conf", copy / "mosquitto.conf")
    sub = run_copy(spawn, copy, "sub.py", "--host", HOST, "--port", str(port), "--count", "4")
    sub.wait_for(r"^Subscribed to: sister/temp, sister/humidity$", timeout=15)
    pub = run_copy(spawn, copy, "pub.py", "--host", HOST, "--port", str(port), "--count", "2", "--interval", "0.2")
    assert pub.wait(15) == 0, pub.output
    assert sub.wait(15) == 0, sub.output

    published = [(m["payload"], m["topic"]) for m in matches(pub, PUBLISHED)]
    assert [(m["payload"], m["topic"]) for m in matches(sub, RECEIVED)] == published and len(published) == 4
    logged = (copy / "mqtt_messages.log").read_text(encoding="utf-8").splitlines()  # next to sub.py, by default
    assert len(logged) == 4 and all(TIMESTAMPED.match(line) for line in logged), logged
    broker.wait_for(r"New client connected from 127\.0\.0\.1")


def test_edited_topic_constants_reach_the_subscriber_on_that_topic_and_no_other(spawn, broker, tmp_path):
    """Seed 002's edit, made where pub.py and sub.py keep their topics: TOPICS (and MESSAGE) at the top."""
    copy = copy_folder_alone("mqtt", tmp_path)  # as an instructor copies it into a course
    edits = {"pub.py": {"TOPICS": '["sister/channel/gaming"]', "MESSAGE": repr(SEED_002_MESSAGE)},
             "sub.py": {"TOPICS": '["sister/channel/gaming"]'}}
    for script, constants in edits.items():
        path = copy / script
        text = path.read_text(encoding="utf-8")
        for name, value in constants.items():
            text, n = re.subn(rf"^{name} = .*$", f"{name} = {value}", text, count=1, flags=re.M)
            assert n == 1, f"{script} has no line `{name} = ...` to edit"
        path.write_text(text, encoding="utf-8")

    default = start_sub(spawn, broker.port, tmp_path, "--timeout", "3", log=str(tmp_path / "default.log"))
    elsewhere = tmp_path / "elsewhere"  # run from another folder: the log still goes next to sub.py
    elsewhere.mkdir()
    gaming = run_copy(spawn, copy, str(copy / "sub.py"), "--host", HOST, "--port", str(broker.port), "--count", "2",
                      cwd=elsewhere)
    gaming.wait_for(r"^Subscribed to: sister/channel/gaming$", timeout=15)
    pub = run_copy(spawn, copy, "pub.py", "--host", HOST, "--port", str(broker.port), "--count", "2",
                   "--interval", "0.2")
    assert pub.wait(15) == 0, pub.output
    assert gaming.wait(15) == 0, gaming.output
    assert default.wait(15) == 0, default.output

    line = f"{SEED_002_MESSAGE} (Topic: sister/channel/gaming)"
    assert pub.count(rf"^Published: {re.escape(line)}$") == 2, pub.output
    assert gaming.count(rf"^Received message: {re.escape(line)}$") == 2, gaming.output
    assert not matches(default, RECEIVED), default.output  # subscribed to sister/temp and sister/humidity
    assert default.lines[-1] == "No messages received on sister/temp, sister/humidity in 3s"
    logged = (copy / "mqtt_messages.log").read_text(encoding="utf-8").splitlines()
    assert [entry.split(" ", 2)[2] for entry in logged] == [f"Received message: {line}"] * 2
    assert not list(elsewhere.iterdir())
