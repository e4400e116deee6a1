"""MQTT publish -> deliver through one Mosquitto: our paho scripts against the C clients, for information.

There is no target ratio: pub.py and sub.py are teaching pages (one print and one log line per message,
no batching), so their figures are reported, not held to a goal.

Two measurements per QoS level, each round alternating the C clients (baseline) and ours:
- rate: a fixed count of messages published as fast as the publisher can (`mosquitto_pub -l` from a
  file; `pub.py --interval 0 --count N --message ...`) to one subscriber (`mosquitto_sub -C N`;
  `sub.py --count N`); messages/s = deliveries / time from the first to the last delivery, as the
  subscriber timestamps them (mosquitto_sub's %U; sub.py's message log).
- latency: messages paced at a fixed, modest rate, each carrying its send time; latency = receive
  time - send time (mosquitto_pub -l fed line by line, with mosquitto_sub -F '%U %p'; for ours
  labkit.bench.mqttload, paho clients set up like pub.py and sub.py, as pub.py cannot stamp payloads).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from labkit.bench.core import (
    TOOL_GRACE,
    Figure,
    Progress,
    Row,
    Sample,
    Server,
    Settings,
    describe,
    percentile,
    run_tool,
    wait_for_line,
)
from labkit.procs import REPO, free_port, python_env

BASELINE_NAME = "mosquitto_pub/mosquitto_sub (C)"
OURS_NAME = "pub.py/sub.py (paho)"
#: The subscriber must have subscribed within this many seconds of starting.
SUBSCRIBE_TIMEOUT = 15.0
#: After the publisher is done, a subscriber that receives nothing more for this long has all it will get.
STALL_SECONDS = 3.0
#: Messages the bench broker queues per client. Mosquitto's default (1000) drops QoS 1 messages beyond it
#: when a publisher outruns its subscriber; a throughput run must lose nothing, so the queue is large.
BROKER_QUEUE = 1_000_000
FLOOD_PAYLOAD = "bench message"


def steps(settings: Settings) -> int:
    return len(settings.mqtt_qos) * settings.rounds * 2


def broker_conf(path: Path, port: int) -> None:
    path.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"max_queued_messages {BROKER_QUEUE}\n"
        "log_dest stdout\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
        "log_type subscribe\n", encoding="utf-8")


class Bench:
    """One broker, and the client runs against it."""

    def __init__(self, settings: Settings, logdir: Path):
        self.settings = settings
        self.logdir = logdir
        self.port = free_port()
        conf = logdir / "mosquitto-bench.conf"
        broker_conf(conf, self.port)
        # stdbuf: Mosquitto block-buffers stdout; its ready line and subscribe lines must come at once.
        self.broker = Server("mqtt-broker", ["stdbuf", "-oL", "mosquitto", "-c", str(conf)],
                             r"Opening ipv4 listen socket|mosquitto version .* running", logdir)
        self.runs = 0

    def stop(self) -> None:
        self.broker.stop()

    def names(self, side: str, kind: str, qos: int) -> tuple[str, str]:
        """A fresh topic and subscriber client id for one run."""
        self.runs += 1
        return f"bench/{side}/{kind}/{self.runs}", f"bench-{side}-{kind}-q{qos}-{self.runs}"

    def wait_subscribed(self, client_id: str, qos: int, topic: str, sub: Server) -> None:
        wait_for_line(self.broker.log, rf"\s{re.escape(client_id)} {qos} {re.escape(topic)}$", SUBSCRIBE_TIMEOUT,
                      alive=sub.proc.running, what=f"subscription of {client_id}")

    def start_sub(self, name: str, argv: list[str], client_id: str, qos: int, topic: str, **kw) -> Server:
        sub = Server(name, argv, None, self.logdir, **kw)
        try:
            self.wait_subscribed(client_id, qos, topic, sub)
        except BaseException:
            sub.stop()
            raise
        return sub

    # ---------------------------------------------------------------- rate: publish as fast as possible

    def flood_baseline(self, qos: int) -> tuple[float, int]:
        m = self.settings.mqtt_messages
        topic, cid = self.names("c", "rate", qos)
        lines = self.logdir / "mqtt-flood-lines.txt"
        lines.write_text("".join(f"{FLOOD_PAYLOAD} {i}\n" for i in range(m)), encoding="utf-8")
        sub = self.start_sub("mqtt-c-sub", ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port), "-t", topic,
                                            "-q", str(qos), "-C", str(m), "-F", "%U", "-i", cid], cid, qos, topic)
        try:
            with lines.open("rb") as stdin:
                run_tool(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.port), "-t", topic, "-q", str(qos),
                          "-l"], 60 + TOOL_GRACE, stdin=stdin)
            wait_delivered(sub, lambda: count_lines(sub.log), m)
        finally:
            sub.stop()
        stamps = [float(line) for line in sub.log.read_text().split()]
        return rate_of(stamps), len(stamps)

    def flood_ours(self, qos: int) -> tuple[float, int]:
        m = self.settings.mqtt_messages
        topic, cid = self.names("py", "rate", qos)
        message_log = self.logdir / "mqtt-sub.py-messages.log"
        message_log.unlink(missing_ok=True)
        common = ["--host", "127.0.0.1", "--port", str(self.port), "--topic", topic, "--qos", str(qos)]
        mqtt_dir = str(REPO / "mqtt")
        sub = self.start_sub("mqtt-py-sub", [sys.executable, "sub.py", *common, "--count", str(m), "--client-id", cid,
                                             "--log", str(message_log), "--timeout", "120"],
                             cid, qos, topic, cwd=mqtt_dir)
        try:
            run_tool([sys.executable, "pub.py", *common, "--interval", "0", "--count", str(m), "--message",
                      FLOOD_PAYLOAD], 120 + TOOL_GRACE, env=python_env(), cwd=mqtt_dir)
            wait_delivered(sub, lambda: count_lines(message_log), m)
        finally:
            sub.stop()
        stamps = [datetime.fromisoformat(line[:23]).timestamp()
                  for line in message_log.read_text(encoding="utf-8").splitlines() if line.strip()]
        return rate_of(stamps), len(stamps)

    # ---------------------------------------------------------------- latency: paced, timestamped payloads

    def paced_count(self) -> int:
        return max(20, int(self.settings.mqtt_rate * self.settings.duration))

    def paced_baseline(self, qos: int) -> tuple[list[float], int]:
        n = self.paced_count()
        topic, cid = self.names("c", "latency", qos)
        sub = self.start_sub("mqtt-c-latency-sub", ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port), "-t",
                                                    topic, "-q", str(qos), "-C", str(n + 1), "-F", "%U %p", "-i", cid],
                             cid, qos, topic)
        try:
            pub = subprocess.Popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.port), "-t", topic, "-q",
                                    str(qos), "-l"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            try:
                assert pub.stdin is not None
                # mosquitto_pub reads stdin only once it has its CONNACK (lines written before wait, tens of ms):
                # one first message, not counted, must arrive before the clock starts. Ours waits in connect().
                pub.stdin.write(b"0 warm-up\n")
                pub.stdin.flush()
                wait_for_line(sub.log, r"warm-up", SUBSCRIBE_TIMEOUT, alive=lambda: pub.poll() is None,
                              what="mosquitto_pub's first message")
                began = time.monotonic()
                for sequence in range(n):
                    delay = began + sequence / self.settings.mqtt_rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    pub.stdin.write(f"{time.time_ns()} {sequence}\n".encode())
                    pub.stdin.flush()
                pub.stdin.close()
                pub.wait(30)
            finally:
                if pub.poll() is None:
                    pub.kill()
                    pub.wait(5)
            wait_delivered(sub, lambda: count_lines(sub.log), n + 1)
        finally:
            sub.stop()
        latencies = []
        for line in sub.log.read_text().splitlines():
            received, sent, sequence = line.split(" ", 2)
            if sequence == "warm-up":
                continue
            seconds, _, fraction = received.partition(".")
            latencies.append((int(seconds) * 10**9 + int(fraction.ljust(9, "0")[:9]) - int(sent)) / 1e6)
        return latencies, n

    def paced_ours(self, qos: int) -> tuple[list[float], int]:
        n = self.paced_count()
        topic, cid = self.names("py", "latency", qos)
        out = self.logdir / "mqtt-py-latencies.json"
        out.unlink(missing_ok=True)
        common = ["--port", str(self.port), "--topic", topic, "--qos", str(qos), "--count", str(n)]
        sub = self.start_sub("mqtt-py-latency-sub", [sys.executable, "-m", "labkit.bench.mqttload", "sub", *common,
                                                     "--client-id", cid, "--out", str(out), "--timeout", "120"],
                             cid, qos, topic, cwd=str(REPO))
        try:
            run_tool([sys.executable, "-m", "labkit.bench.mqttload", "pub", *common, "--rate",
                      str(self.settings.mqtt_rate)], n / self.settings.mqtt_rate + 30 + TOOL_GRACE,
                     env=python_env(), cwd=str(REPO))
            wait_delivered(sub, lambda: len_received(sub.log), n)
        finally:
            sub.stop()
        latencies = json.loads(out.read_text())["latencies_ms"] if out.exists() else []
        return latencies, n

    def sample(self, side: str, qos: int) -> Sample:
        flood, paced = (self.flood_baseline, self.paced_baseline) if side == "baseline" else \
            (self.flood_ours, self.paced_ours)
        rate, delivered = flood(qos)
        latencies, sent = paced(qos)
        lost = (self.settings.mqtt_messages - delivered) + (sent - len(latencies))
        return Sample(rate=rate, p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99),
                      count=delivered, errors=max(0, lost),
                      extra={"flood_messages": self.settings.mqtt_messages, "flood_delivered": delivered,
                             "paced_sent": sent, "paced_delivered": len(latencies),
                             "paced_rate": self.settings.mqtt_rate})


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for _ in f)


def len_received(path: Path) -> int:
    """Messages the mqttload subscriber has printed so far (one `Received message:` line each, as sub.py)."""
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for line in f if line.startswith(b"Received message:"))


def wait_delivered(sub: Server, delivered, expected: int, cap: float = 120.0) -> None:
    """Until the subscriber exits (it got everything), or nothing has arrived for STALL_SECONDS."""
    last, last_change = -1, time.monotonic()
    deadline = time.monotonic() + cap
    while sub.proc.running() and time.monotonic() < deadline:
        now = delivered()
        if now >= expected:
            break
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > STALL_SECONDS:
            break
        time.sleep(0.1)


def rate_of(stamps: list[float]) -> float:
    """Deliveries per second between the first and the last delivery."""
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return float("nan")
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def run(settings: Settings, progress: Progress, logdir: Path) -> list[Row]:
    bench = Bench(settings, logdir)
    try:
        rows = []
        for qos in settings.mqtt_qos:
            samples: dict[str, list[Sample]] = {"baseline": [], "ours": []}
            for n in range(1, settings.rounds + 1):
                for side in ("baseline", "ours"):
                    sample = bench.sample(side, qos)
                    samples[side].append(sample)
                    who = BASELINE_NAME if side == "baseline" else OURS_NAME
                    progress.step(f"mqtt QoS {qos} round {n}/{settings.rounds} {who}: {describe(sample, 'msg/s')} "
                                  f"({sample.extra['flood_delivered']}/{settings.mqtt_messages} delivered)")
            rows.append(Row(protocol="mqtt", load=f"QoS {qos}", level=qos, unit="msg/s", baseline_name=BASELINE_NAME,
                            ours_name=OURS_NAME, baseline=Figure.of(samples["baseline"]),
                            ours=Figure.of(samples["ours"]),
                            note=f"rate: {settings.mqtt_messages} messages as fast as possible; latency: "
                                 f"paced at {settings.mqtt_rate} msg/s"))
        return rows
    finally:
        bench.stop()
