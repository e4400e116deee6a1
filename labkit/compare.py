"""The five protocols side by side: one workload of N operations through each, captured and measured.

`python -m labkit.compare [--n 100] [--runtime local|netns]` (what `make compare` runs) runs the same
N operations through REST, SOAP, MQTT, request/response and upcall with the demo clients, records each
under tcpdump (labkit.capture), reads every capture with the analyzer (labkit.analyze) and puts what
each protocol cost on the wire side by side: captures/compare/<proto>.pcapng, compare.md, .json, .png.
MQTT and REST run once more over TLS (rows mqtt-tls, rest-tls; --no-tls leaves them out): a throwaway lab CA,
the clients' key log embedded in each capture, the decrypted messages read by tshark.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from labkit import capture, cli, demo
from labkit.analyze import analyze
from labkit.analyze.analysis import Analysis, stats
from labkit.analyze.model import Message
from labkit.procs import REPO, Proc, free_port, python_env
from labkit.protocols import NAMES, PROTOCOLS, Protocol, Step
from labkit.record import embed_secrets

UTC = timezone.utc  # datetime.UTC is Python 3.11+; the lab runs on 3.10 too
OUT_DIR = capture.CAPTURES / "compare"
#: Operations per protocol unless --n says otherwise.
DEFAULT_OPERATIONS = 100
#: The most --n accepts: a workload is a lesson, not a load test (labkit.bench is that).
MAX_OPERATIONS = 10_000
#: What every operation carries: REST and SOAP compute add(2, 3); MQTT and the line protocols send this text.
MESSAGE = "add 2 3"
OPERANDS = ("2", "3")
#: The MQTT topic of the workload (publisher and subscriber).
MQTT_TOPIC = "lab/compare"
#: Seconds between two MQTT publishes: each message crosses the broker alone, as each call of the other
#: four protocols does (they wait for their answer), instead of a burst that measures queueing.
MQTT_INTERVAL_SECONDS = 0.01
#: Lines of a failed step's output shown with the error.
TAIL_LINES = 15
RUNTIMES = ("local", "netns")
#: The TLS rows: MQTT and REST again, the same workload over TLS (labkit.compare's TlsLab), and the plain row each
#: is set beside. Local runtime only: the broker and server get a throwaway lab CA made for the run.
TLS_ROWS = {"mqtt-tls": "mqtt", "rest-tls": "rest"}
ALL_ROWS = (*NAMES, *TLS_ROWS)
#: The account the TLS broker accepts (a classroom broker wants one); the password is made for each run.
TLS_USER = "compare"
#: Seconds tshark may take to read one TLS capture.
TSHARK_TIMEOUT = 120.0


@dataclass(frozen=True)
class Workload:
    """One protocol's N operations: the demo steps that run them, and how the capture shows each one."""

    name: str
    does: str  # what the workload is, for people; {n} is the number of operations
    steps: Callable[[int], tuple[Step, ...]]
    completes: Callable[[Message], bool]  # the message that completes one operation (reply or delivery)
    latency: str  # from which message to which the latency runs

    def protocol(self, n: int, port: int | None = None) -> Protocol:
        """The lab's protocol with this workload as its demo (and another port, if given)."""
        proto = dataclasses.replace(PROTOCOLS[self.name], demo=self.steps(n))
        return dataclasses.replace(proto, port=port) if port else proto


def origin(m: Message) -> Message | None:
    """The message an operation started with: the request answered, or the PUBLISH the broker forwarded."""
    return m.request if m.request is not None else m.source


def _rest_steps(n: int) -> tuple[Step, ...]:
    return (Step("rest-client", ("python", "client.py", "--op", "add", "-a", OPERANDS[0], "-b", OPERANDS[1],
                                 "--repeat", str(n))),)


def _soap_steps(n: int) -> tuple[Step, ...]:
    return (Step("soap-client", ("python", "client.py", "--op", "add", "-a", OPERANDS[0], "-b", OPERANDS[1],
                                 "--repeat", str(n))),)


def _mqtt_steps(n: int) -> tuple[Step, ...]:
    return (
        Step("mqtt-sub", ("python", "sub.py", "--topic", MQTT_TOPIC, "--count", str(n)), ready=r"Subscribed",
             background=True),
        Step("mqtt-pub", ("python", "pub.py", "--topic", MQTT_TOPIC, "--message", MESSAGE, "--count", str(n),
                          "--interval", f"{MQTT_INTERVAL_SECONDS:g}")),
    )


def _reqresp_steps(n: int) -> tuple[Step, ...]:
    return (Step("reqresp-client", ("python", "client.py", *[MESSAGE] * n)),)


def _upcall_steps(n: int) -> tuple[Step, ...]:
    return (Step("upcall-client", ("python", "clientcall.py", "--messages", ",".join([MESSAGE] * n + ["bye"]))),)


def _line_reply(prefix: str) -> Callable[[Message], bool]:
    def completes(m: Message) -> bool:
        return (m.protocol == "LINE" and m.request is not None and m.fields.get("text", "").startswith(prefix)
                and m.request.fields.get("text") == MESSAGE)
    return completes


WORKLOADS: dict[str, Workload] = {
    "rest": Workload(
        "rest", "one client run, {n} × GET /add?a=2&b=3 (`client.py --op add --repeat {n}`), one requests.Session",
        _rest_steps,
        lambda m: (m.protocol == "HTTP" and m.kind == "response" and m.request is not None
                   and m.request.fields.get("uri", "").startswith("/add?")),
        "GET request -> HTTP response"),
    "soap": Workload(
        "soap", "one client run, {n} × add(2,3) (`client.py --op add --repeat {n}`), after zeep fetched the WSDL",
        _soap_steps,
        lambda m: m.protocol == "SOAP" and m.kind == "response" and m.request is not None
        and m.request.protocol == "SOAP",
        "SOAP request envelope -> response envelope"),
    "mqtt": Workload(
        "mqtt", f"{{n}} × PUBLISH `{MESSAGE}` to {MQTT_TOPIC} (QoS 0, every {MQTT_INTERVAL_SECONDS * 1000:g} ms), "
                "delivered to one subscriber",
        _mqtt_steps,
        lambda m: m.protocol == "MQTT" and m.kind == "PUBLISH" and not m.from_client and m.source is not None,
        "PUBLISH publisher -> broker, to PUBLISH broker -> subscriber"),
    "reqresp": Workload(
        "reqresp", f"one connection, {{n}} lines `{MESSAGE}`, each answered `Echo: {MESSAGE}`, then bye",
        _reqresp_steps, _line_reply("Echo: "), "line -> Echo line"),
    "upcall": Workload(
        "upcall", f"one connection, {{n}} lines `{MESSAGE}`, each answered `Processing`, then called back twice "
                  "(Progress, Done); then bye",
        _upcall_steps, _line_reply("Upcall event: Processing "), "line -> Processing reply"),
}


# ------------------------------------------------------------------ measuring one capture


def measure(proto: str, a: Analysis, n: int, pcap: Path) -> dict:
    """One row of the comparison, every figure read from the analysis of the capture."""
    work = WORKLOADS[proto]
    done = [m for m in a.messages if work.completes(m)]
    ops = len(done)
    totals = a.totals()
    latencies = [m.time - origin(m).time for m in done]
    op_bytes = sum(m.size + origin(m).size for m in done)

    def per_op(value: int) -> float | None:
        return value / ops if ops else None

    row = {
        "protocol": proto,
        "title": PROTOCOLS[proto].title,
        "workload": work.does.format(n=n),
        "operations_expected": n,
        "operations": ops,
        "packets": totals["recognised_packets"],
        "wire_bytes": totals["recognised_wire_bytes"],
        "application_bytes": totals["application_payload_bytes"],
        "operation_message_bytes": op_bytes,
        "application_messages": totals["messages"],
        "server_initiated_messages": sum(1 for m in a.messages if m.server_initiated),
        "connection_setups": sum(1 for c in a.conversations if c.conn.syn is not None),
        "connections": len(a.conversations),
        "left_out_packets": a.capture.packets - totals["recognised_packets"],
        "latency_measures": work.latency,
        "latency_ms": ({k: (v * 1000 if k != "count" else v) for k, v in stats(latencies).items()}
                       if latencies else None),
        "capture": str(pcap.relative_to(REPO) if pcap.is_relative_to(REPO) else pcap),
    }
    row["per_operation"] = {
        "packets": per_op(row["packets"]),
        "wire_bytes": per_op(row["wire_bytes"]),
        "application_bytes": per_op(row["application_bytes"]),
        "operation_message_bytes": per_op(op_bytes),
        "application_messages": per_op(row["application_messages"]),
    }
    return row


# ------------------------------------------------------------------ the table, the JSON, the chart


def _num(value, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


COLUMNS = ("Protocol", "Ops", "Packets/op", "Wire B/op", "App B/op", "Op msgs B/op", "App msgs/op",
           "TCP set-ups", "Median ms", "p99 ms")


def table(rows: list[dict]) -> str:
    """The comparison as a Markdown table, padded so that it reads in a terminal too."""
    body = []
    for r in rows:
        per, lat = r["per_operation"], r["latency_ms"] or {}
        ops = f"{r['operations']}" + ("" if r["operations"] == r["operations_expected"]
                                      else f" (of {r['operations_expected']}!)")
        body.append((r["protocol"], ops, _num(per["packets"], 1), _num(per["wire_bytes"]),
                     _num(per["application_bytes"]), _num(per["operation_message_bytes"]),
                     _num(per["application_messages"], 2), str(r["connection_setups"]),
                     _num(lat.get("median"), 3), _num(lat.get("p99"), 3)))
    return _markdown_table(COLUMNS, body)


def _markdown_table(columns: tuple[str, ...], body: list[tuple[str, ...]]) -> str:
    """A Markdown table padded so that it reads in a terminal too: text left, figures right."""
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    def line(cells):
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"
    rule = "|" + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(columns), rule, *(line(b) for b in body)])


LEGEND = """\
- Ops: operations the analyzer found completed in the capture (a reply paired with its request, or a
  PUBLISH the broker delivered, linked to the one it received).
- Packets/op, Wire B/op: every packet and every byte on the wire (link, IP and TCP headers, handshakes,
  ACKs, teardown) of the protocol's TCP connections, divided by Ops.
- App B/op: every byte the applications wrote into TCP (set-up such as the WSDL or MQTT CONNECT/SUBSCRIBE,
  server-initiated lines, bye), divided by Ops. Op msgs B/op: only the two messages of each operation
  (request + reply, or PUBLISH in + PUBLISH out). App msgs/op: application messages per operation.
- TCP set-ups: SYNs, i.e. TCP connections opened for the whole workload.
- Median / p99 ms: per operation, from the last byte of the message that starts it to the last byte of
  the one that completes it, as the capture saw them; what that is per protocol is listed below."""


def markdown(result: dict) -> str:
    rows = result["rows"]
    lines = [f"# The five protocols side by side: {result['n']} operations each", "",
             f"{result['date']}, runtime `{result['runtime']}` ({result['where']}), "
             f"`python -m labkit.compare --n {result['n']} --runtime {result['runtime']}`.", "",
             table(rows), "", LEGEND, "", "Workloads and what the latency measures:", ""]
    for r in rows:
        lines.append(f"- {r['protocol']}: {r['workload']}; latency: {r['latency_measures']} "
                     f"({r['connection_setups']} TCP set-up(s), {r['server_initiated_messages']} "
                     f"server-initiated message(s), capture `{r['capture']}`)")
    for name, error in result["failed"].items():
        lines.append(f"- {name}: FAILED: {error}")
    if result.get("tls_rows"):
        lines += ["", "## With and without TLS", "", tls_table(rows, result["tls_rows"]), "", TLS_LEGEND, ""]
        lines += [f"- {t['protocol']}: capture `{t['capture']}`, port {t['port']}; the file carries its TLS secrets: "
                  f"`{tshark_command(t)}` shows the decrypted messages" for t in result["tls_rows"]]
    return "\n".join(lines) + "\n"


def save_chart(path: Path, result: dict) -> None:
    """Bytes per operation (wire, application, the operation's own messages), packets, set-ups, latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    # The TLS rows beside the others (inside TLS the operation's own messages are not on the wire: no bar).
    rows = [r for r in result["rows"] + result.get("tls_rows", []) if r["operations"]]
    names = [r["protocol"] for r in rows]
    xs = list(range(len(rows)))
    fig, ((bytes_ax, packets_ax), (setups_ax, latency_ax)) = plt.subplots(2, 2, figsize=(11, 7.5))
    width = 0.27
    for shift, key, label, colour in ((-width, "wire_bytes", "on the wire", "#9e9e9e"),
                                      (0, "application_bytes", "application (all)", "#1f77b4"),
                                      (width, "operation_message_bytes", "the operation's messages", "#ff7f0e")):
        values = [r["per_operation"].get(key) for r in rows]
        bars = bytes_ax.bar([x + shift for x in xs], [v or 0 for v in values], width, label=label, color=colour)
        bytes_ax.bar_label(bars, labels=["" if v is None else f"{v:,.0f}" for v in values], fontsize=7, rotation=90,
                           padding=2)
    bytes_ax.set_yscale("log")
    bytes_ax.set_ylabel("bytes per operation (log)")
    bytes_ax.set_title("What one operation costs in bytes")
    bytes_ax.legend(fontsize=8, loc="upper right")
    bytes_ax.margins(y=0.3)
    bars = packets_ax.bar(xs, [r["per_operation"]["packets"] for r in rows], color="#1f77b4")
    packets_ax.bar_label(bars, fmt="%.1f", fontsize=8)
    packets_ax.set_ylabel("packets per operation")
    packets_ax.set_title("Packets per operation")
    bars = setups_ax.bar(xs, [r["connection_setups"] for r in rows], color="#2ca02c")
    setups_ax.bar_label(bars, fontsize=8)
    setups_ax.set_ylabel("TCP connections opened (SYN)")
    setups_ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    setups_ax.set_title(f"Connection set-ups for {result['n']} operations")
    for shift, key, colour in ((-0.2, "median", "#1f77b4"), (0.2, "p99", "#d62728")):
        values = [(r["latency_ms"] or {}).get(key) or 0 for r in rows]
        bars = latency_ax.bar([x + shift for x in xs], values, 0.4, label=key, color=colour)
        latency_ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=7, padding=2)
    latency_ax.set_yscale("log")
    latency_ax.set_ylabel("ms (log)")
    latency_ax.set_title("Latency per operation (MQTT: publish -> delivery)")
    latency_ax.legend(fontsize=8)
    latency_ax.margins(y=0.2)
    for ax in (bytes_ax, packets_ax, setups_ax, latency_ax):
        ax.set_xticks(xs, names)
    fig.suptitle(f"{result['n']} operations per protocol, runtime {result['runtime']}, {result['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ with and without TLS


class TlsLab(demo.LocalRuntime):
    """Processes on 127.0.0.1 as for the local rows, but over TLS: Mosquitto with a TLS listener and a password
    file, gunicorn with its documented --certfile/--keyfile, the demo clients with --cafile (and the broker's
    account), each client writing its TLS secrets to a key log (SSLKEYLOGFILE) that then goes into the capture.

    A throwaway lab CA and a server certificate for localhost are made for the run by scripts/lab-ca.sh (openssl,
    the classroom's own commands) in a temporary folder, removed afterwards with the password file and the key log.
    """

    host = "localhost"  # the name in the server certificate, and the server name (SNI) the clients send

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(self._tmp.name)
        certs = self.dir / "certs"
        capture.need_tool("openssl", "it makes the throwaway lab CA of the TLS rows")
        capture.need_tool("mosquitto_passwd", "it makes the TLS broker's password file; it comes with mosquitto")
        done = subprocess.run(["sh", str(REPO / "scripts" / "lab-ca.sh"), str(certs), self.host, "127.0.0.1"],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise cli.LabError(f"cannot make the throwaway lab CA: {(done.stderr or done.stdout).strip()}")
        self.ca, self.cert, self.key = (certs / name for name in ("ca.crt", "server.crt", "server.key"))
        self.password = secrets.token_urlsafe(12)
        self.passwd = self.dir / "passwd"
        subprocess.run(["mosquitto_passwd", "-c", "-b", str(self.passwd), TLS_USER, self.password], check=True,
                       capture_output=True, timeout=30)
        if os.geteuid() == 0:  # Mosquitto started as root reads its key and passwords as the user mosquitto
            for folder in (self.dir, certs):
                folder.chmod(0o711)  # it may pass through, not list
            for private in (self.key, self.passwd):
                try:
                    shutil.chown(private, "mosquitto")
                except (LookupError, OSError):
                    pass
        self.keylog = self.dir / "keylog.txt"

    def argv(self, proto: Protocol, step: Step) -> list[str]:
        if step.argv[0] == "mosquitto":
            conf = self.dir / "mosquitto.conf"
            conf.write_text(f"listener {proto.port} 127.0.0.1\ncafile {self.ca}\ncertfile {self.cert}\n"
                            f"keyfile {self.key}\nallow_anonymous false\npassword_file {self.passwd}\n"
                            "persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n"
                            "log_type notice\nlog_type information\n")
            return ["mosquitto", "-c", str(conf)]
        if step in proto.servers:  # the REST server: gunicorn reads rest/gunicorn.conf.py, these flags on top
            return [sys.executable, "-m", "gunicorn", "--certfile", str(self.cert), "--keyfile", str(self.key),
                    "--bind", f"127.0.0.1:{proto.port}", "server:app"]
        # `--password=...`: a generated password may start with "-", which argparse would take for a flag
        login = ["--username", TLS_USER, f"--password={self.password}"] if proto.name == "mqtt" else []
        return [sys.executable, *step.argv[1:], "--host", self.host, "--port", str(proto.port),
                "--cafile", str(self.ca), *login]

    def start(self, proto: Protocol, step: Step, echo_line=demo.echo) -> Proc:
        if step.argv[0] == "mosquitto" and not shutil.which("mosquitto"):
            raise cli.LabError("mosquitto is not installed: run `make setup` as root, "
                               "or `sudo apt-get install mosquitto`")
        keylog = None if step in proto.servers else {"SSLKEYLOGFILE": str(self.keylog)}
        return Proc(self.argv(proto, step), cwd=REPO / proto.folder, env=python_env(keylog), label=step.service,
                    echo=echo_line)


def run_tls(name: str, n: int, out_dir: Path) -> dict:
    """Capture one TLS row's workload (local, a free port), embed its secrets, and measure it with tshark."""
    plain = TLS_ROWS[name]
    proto = WORKLOADS[plain].protocol(n, free_port())
    label = f"compare-{name}"
    output = QuietOutput()
    lab = TlsLab()
    pcap = out_dir / f"{name}.pcapng"
    try:
        with tempfile.TemporaryDirectory(prefix="lab-compare-") as tmp:
            raw = Path(tmp) / f"{name}.pcap"
            dump = capture.Tcpdump("lo", raw, ["tcp", "port", str(proto.port)])
            try:
                dump.wait_listening()
                code = demo.run_demo(proto, lab, output)
                time.sleep(capture.SETTLE_SECONDS)
            finally:
                dump.stop()
            where = f"processes on 127.0.0.1 over TLS (throwaway lab CA), tcpdump on lo, filter tcp port {proto.port}"
            steps = [f"{step.service}: {' '.join(step.argv)} over TLS" for step in (*proto.servers, *proto.demo)]
            comments = capture.comments_for(proto, "local", where, steps,
                                            f"python -m labkit.compare --n {n} --protocols {plain}")
            capture.write_pcapng(raw, pcap, comments)
        if code:
            tail = "\n".join(f"    {line}" for line in output.tail)
            raise cli.LabError(f"the {name} workload failed (exit {code})" + (f"\n  its last output:\n{tail}"
                                                                               if tail else ""))
        embed_secrets(pcap, lab.keylog, label)
    finally:
        lab.close()
    row = measure_tls(name, n, pcap, proto.port)
    row["port"] = proto.port
    lat = row["latency_ms"] or {}
    print(f"=== {label}: {row['operations']} of {n} operations, {row['packets']} packets, "
          f"{row['tls_handshakes']} TLS handshake(s), median {_num(lat.get('median'), 3)} ms", flush=True)
    return row


#: What tshark reads of every frame of a TLS row's capture, decrypting with the secrets the file carries.
TSHARK_FIELDS = ("frame.time_relative", "frame.len", "tcp.len", "tcp.flags.syn", "tcp.flags.ack", "tcp.srcport",
                 "tls.handshake.type", "mqtt.msgtype", "http.request", "http.response", "http.time",
                 "http.response_for.uri")


def tshark_frames(pcap: Path, port: int, app: str) -> list[dict]:
    """Every frame as tshark decodes it: TCP port `port` as TLS, and what TLS carries there as `app`."""
    exe = capture.need_tool("tshark", "it decrypts the TLS rows' captures with the secrets they carry")
    argv = [exe, "-n", "-r", str(pcap), "-d", f"tcp.port=={port},tls", "-d", f"tls.port=={port},{app}",
            "-T", "fields", "-E", "separator=/t", *(a for f in TSHARK_FIELDS for a in ("-e", f))]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TSHARK_TIMEOUT)
    if done.returncode != 0:
        raise cli.LabError(f"tshark could not read {pcap}: {done.stderr.strip().splitlines()[-1:]}")
    return [dict(zip(TSHARK_FIELDS, line.split("\t"), strict=False)) for line in done.stdout.splitlines()]


def measure_tls(name: str, n: int, pcap: Path, port: int) -> dict:
    """One TLS row, every figure read from the capture by tshark (Wireshark's dissectors), decrypted.

    The operations and their latency are the same as the plain row's: MQTT from the PUBLISH publisher -> broker
    to the PUBLISH broker -> subscriber (in order, QoS 0), REST from the GET /add to its response (tshark's
    http.time). Inside TLS the messages' own sizes are not on the wire: App B/op counts the TLS records.
    """
    plain = TLS_ROWS[name]
    frames = tshark_frames(pcap, port, "mqtt" if plain == "mqtt" else "http")
    latencies: list[float] = []
    messages = 0
    if plain == "mqtt":
        published, delivered = [], []
        for f in frames:
            types = f.get("mqtt.msgtype", "").split(",") if f.get("mqtt.msgtype") else []
            messages += len(types)
            to_broker = f.get("tcp.srcport") != str(port)
            (published if to_broker else delivered).extend([float(f["frame.time_relative"])] * types.count("3"))
        latencies = [out - into for into, out in zip(published, delivered, strict=False)]
    else:
        for f in frames:
            messages += f.get("http.request", "").count("1") + f.get("http.response", "").count("1")
            if f.get("http.response") and f.get("http.response_for.uri", "").split("?")[0].endswith("/add"):
                latencies.append(float(f["http.time"]))
    ops = len(latencies)
    packets = len(frames)
    wire = sum(int(f.get("frame.len") or 0) for f in frames)
    app_bytes = sum(int(f.get("tcp.len") or 0) for f in frames)

    def per_op(value: int) -> float | None:
        return value / ops if ops else None

    return {
        "protocol": name,
        "plain": plain,
        "title": f"{PROTOCOLS[plain].title} over TLS",
        "workload": WORKLOADS[plain].does.format(n=n) + ", over TLS",
        "operations_expected": n,
        "operations": ops,
        "packets": packets,
        "wire_bytes": wire,
        "application_bytes": app_bytes,
        "application_messages": messages,
        "connection_setups": sum(1 for f in frames if f.get("tcp.flags.syn") in ("1", "True")
                                 and f.get("tcp.flags.ack") in ("0", "False")),
        "tls_handshakes": sum(f.get("tls.handshake.type", "").split(",").count("1") for f in frames),
        "latency_measures": WORKLOADS[plain].latency,
        "latency_ms": ({k: (v * 1000 if k != "count" else v) for k, v in stats(latencies).items()}
                       if latencies else None),
        "capture": str(pcap.relative_to(REPO) if pcap.is_relative_to(REPO) else pcap),
        "per_operation": {"packets": per_op(packets), "wire_bytes": per_op(wire),
                          "application_bytes": per_op(app_bytes), "application_messages": per_op(messages)},
    }


def tshark_command(row: dict) -> str:
    """The tshark command that shows a TLS row's decrypted messages (its port is not TLS's usual one)."""
    app = "mqtt" if row["plain"] == "mqtt" else "http"
    return (f"tshark -r {row['capture']} -d tcp.port=={row['port']},tls -d tls.port=={row['port']},{app} "
            f"-Y {app}")


TLS_COLUMNS = ("Protocol", "Ops", "Packets/op", "Wire B/op", "App B/op", "TCP set-ups", "TLS handshakes",
               "Median ms", "p99 ms")


def tls_table(rows: list[dict], tls_rows: list[dict]) -> str:
    """Each TLS row under its plain row: what TLS costs per operation."""
    plain = {r["protocol"]: r for r in rows}
    body = []
    for t in tls_rows:
        for r in ([plain[t["plain"]]] if t["plain"] in plain else []) + [t]:
            per, lat = r["per_operation"], r["latency_ms"] or {}
            ops = f"{r['operations']}" + ("" if r["operations"] == r["operations_expected"]
                                          else f" (of {r['operations_expected']}!)")
            body.append((r["protocol"], ops, _num(per["packets"], 1), _num(per["wire_bytes"]),
                         _num(per["application_bytes"]), str(r["connection_setups"]), str(r.get("tls_handshakes", 0)),
                         _num(lat.get("median"), 3), _num(lat.get("p99"), 3)))
    return _markdown_table(TLS_COLUMNS, body)


TLS_LEGEND = """\
- mqtt-tls, rest-tls: the same workload as the mqtt and rest rows, over TLS with a throwaway lab CA made for the
  run (scripts/lab-ca.sh), Mosquitto with a TLS listener and a password, gunicorn with --certfile/--keyfile, the
  demo clients with --cafile; always processes on 127.0.0.1. The clients' key log is embedded in the capture
  (editcap --inject-secrets), and tshark reads the decrypted MQTT and HTTP from it.
- Packets/op, Wire B/op: as above. App B/op: here the TLS records (handshake, certificate, encryption overhead)
  the two sides wrote into TCP, per operation. TLS handshakes: ClientHellos, one per TCP connection.
- Median / p99 ms: the same operations as the plain rows, timed on the decrypted messages; the encryption's cost
  on the loopback is within the noise, the handshake's is paid once per connection."""

# ------------------------------------------------------------------ running the workloads


class QuietOutput:
    """The demo processes' lines, kept (the last few) instead of printed: N operations make N lines each."""

    def __init__(self) -> None:
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def __call__(self, label: str, line: str) -> None:
        self.tail.append(f"[{label}] {line}")


def run_one(name: str, n: int, kind: str, out_dir: Path, free_ports: bool) -> dict:
    """Capture one protocol's workload and measure it."""
    work = WORKLOADS[name]
    proto = work.protocol(n, free_port() if free_ports and kind == "local" else None)
    output = QuietOutput()
    made_with = f"python -m labkit.compare --n {n} --runtime {kind}"
    try:
        pcap = capture.capture_here(proto, kind, out_dir, output, made_with=made_with, history=False)
    except cli.LabError as e:
        text = str(e)
        if kind == "local" and "already in use" in text:
            text += "; or compare on free ports: `make compare COMPARE_ARGS=--free-ports`"
        if output.tail:
            text += "\n  its last output:\n" + "\n".join(f"    {line}" for line in output.tail)
        raise cli.LabError(text) from None
    row = measure(name, analyze(pcap), n, pcap)
    lat = row["latency_ms"] or {}
    print(f"=== compare-{name}: {row['operations']} of {n} operations, {row['packets']} packets, "
          f"{row['connection_setups']} TCP set-up(s), median {_num(lat.get('median'), 3)} ms", flush=True)
    return row


def compare(n: int, kind: str, out_dir: Path = OUT_DIR, names: tuple[str, ...] = NAMES,
            free_ports: bool = False, tls: bool = True) -> dict:
    """Run, capture and measure every protocol (with `tls`, MQTT and REST over TLS too); write compare.md, .json
    and .png; return the result."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise cli.LabError(f"cannot write to {out_dir}: {e.strerror}") from None
    where = ("network namespaces built from compose/<proto>.yml, tcpdump on their bridge" if kind == "netns"
             else "processes on 127.0.0.1, tcpdump on lo")
    started = time.monotonic()
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows, failed = [], {}
    for name in names:
        try:
            rows.append(run_one(name, n, kind, out_dir, free_ports))
        except cli.LabError as e:
            print(f"=== compare-{name}: FAILED: {e}", flush=True)
            failed[name] = str(e).splitlines()[0]
    tls_rows = []
    for name in [t for t, plain in TLS_ROWS.items() if tls and plain in names]:
        try:
            tls_rows.append(run_tls(name, n, out_dir))
        except cli.LabError as e:
            print(f"=== compare-{name}: FAILED: {e}", flush=True)
            failed[name] = str(e).splitlines()[0]
    result = {"date": date, "runtime": kind, "where": where, "n": n, "seconds": round(time.monotonic() - started, 1),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "message": MESSAGE, "rows": rows, "tls_rows": tls_rows, "failed": failed}
    (out_dir / "compare.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out_dir / "compare.md").write_text(markdown(result), encoding="utf-8")
    if rows:
        save_chart(out_dir / "compare.png", result)
    else:
        (out_dir / "compare.png").unlink(missing_ok=True)  # no chart rather than an old one
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=DEFAULT_OPERATIONS, metavar="N",
                    help=f"operations per protocol (default: {DEFAULT_OPERATIONS})")
    ap.add_argument("--runtime", choices=RUNTIMES, default="local",
                    help="local: processes on 127.0.0.1, tcpdump on lo (default, fastest); "
                         "netns: one network namespace per compose service (root), closer to Docker")
    ap.add_argument("--out", type=Path, default=OUT_DIR, metavar="DIR",
                    help="folder for the captures and compare.md/.json/.png (default: captures/compare/)")
    ap.add_argument("--protocols", nargs="+", choices=NAMES, default=list(NAMES), metavar="PROTO",
                    help=f"compare only these (default: all of {', '.join(NAMES)})")
    ap.add_argument("--no-tls", dest="tls", action="store_false",
                    help="leave out the TLS rows (MQTT and REST again over TLS, on 127.0.0.1 with a throwaway CA)")
    ap.add_argument("--free-ports", action="store_true",
                    help="local runtime: serve on free ports instead of the lab's (when a demo holds them); "
                         "the analyzer recognises the protocols by content either way")
    args = ap.parse_args()
    if not 1 <= args.n <= MAX_OPERATIONS:
        ap.error(f"--n must be between 1 and {MAX_OPERATIONS}")
    signal.signal(signal.SIGHUP, signal.getsignal(signal.SIGTERM))  # a closed terminal cleans up like Ctrl+C
    kind, _why = capture.choose_runtime(args.runtime)
    print(f"=== compare: {args.n} operations through {', '.join(args.protocols)}; runtime {kind}", flush=True)
    result = compare(args.n, kind, args.out, tuple(dict.fromkeys(args.protocols)), args.free_ports, args.tls)
    out = args.out.resolve()
    shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    if result["rows"]:
        print(f"\n{table(result['rows'])}\n")
    if result["tls_rows"]:
        print(f"With and without TLS:\n\n{tls_table(result['rows'], result['tls_rows'])}\n")
    if result["rows"]:
        print(f"=== compare: {result['seconds']:g} s; table and legend in {shown}/compare.md, chart in "
              f"compare.png, figures in compare.json; captures in {shown}/<proto>.pcapng "
              f"(`make analyze PCAP={shown}/{result['rows'][0]['protocol']}.pcapng` explains one)")
    short = [r["protocol"] for r in result["rows"] + result["tls_rows"] if r["operations"] != args.n]
    if result["failed"] or short:
        raise cli.LabError("compare incomplete: " + "; ".join(
            [f"{name} failed" for name in result["failed"]] + [f"{p}: fewer than {args.n} operations" for p in short]))
    return 0


if __name__ == "__main__":
    cli.run(main)
