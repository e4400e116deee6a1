"""The Docker classroom (compose/classroom.yml) on a real engine: the checks of tests/test_classroom.py.

A fresh clone of the repo (LAB_TEST_WORKTREE=1: a copy of the working tree) runs
`make classroom HOST=127.0.0.1 ROSTER=...` with the ports published on 127.0.0.1 only (free ports of the
test's choosing: nothing reaches the LAN). The two students are the compose file's student containers
(profile students) speaking paho-mqtt over TLS; the test's host tools (mosquitto_pub, curl, its probe)
reach the published ports. Base images: local stand-ins where no registry answers (scripts/docker-standins.sh,
the docker_engine fixture); Mosquitto in the stand-in is Debian's 2.0.11.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit import classroom
from labkit.procs import REPO, Proc, free_port

#: Seconds for the whole module's setup: a cold `up --build` pip-installs the images' requirements.
DOCKER_TEST_TIMEOUT = 900
pytestmark = [pytest.mark.usefixtures("docker_engine"), pytest.mark.timeout(DOCKER_TEST_TIMEOUT)]

COMPOSE_TIMEOUT = 600
CLIENT_TIMEOUT = 30
STUDENT_A, STUDENT_B = "2301001", "2301002"
ROSTER = f"student id,name\n{STUDENT_A},Ani Lestari\n{STUDENT_B},Budi Santoso\n"
PROBE = REPO / "tests" / "classroom_probe.py"
PROJECT_LABEL = "label=com.docker.compose.project=lab-classroom"

#: What a student container runs (python - < this): paho-mqtt over TLS with an account, MQTT 5.
#:   sub USER PASSWORD TOPIC          prints "subscribed", then "<topic> <payload>" of the first message, and ends
#:   pub USER PASSWORD TOPIC MESSAGE  prints "puback <reason code>" (135: not authorized)
STUDENT_CLIENT = r'''
import sys
import time
import paho.mqtt.client as mqtt

action, user, password, topic = sys.argv[1:5]
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
client.tls_set("/classroom/ca.crt")
client.username_pw_set(user, password)
client.on_connect = lambda c, u, f, rc, p: action == "sub" and c.subscribe(topic, qos=1)
client.on_subscribe = lambda c, u, mid, rcs, p: print("subscribed", flush=True)
client.on_message = lambda c, u, m: print(m.topic, m.payload.decode(), flush=True) or c.disconnect()
client.on_publish = lambda c, u, mid, rc, p: print("puback", rc.value, flush=True)
client.connect("lecturer", 8883)
if action == "sub":
    client.loop_forever()  # until on_message disconnects
    sys.exit(0)
client.loop_start()
client.publish(topic, sys.argv[5], qos=1).wait_for_publish(10)
client.disconnect()
client.loop_stop()
'''


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: a Docker engine and checkouts of the repo")


def clone(dest: Path) -> Path:
    """A fresh clone of the repo (committed files), or a copy of the working tree with LAB_TEST_WORKTREE=1."""
    if os.environ.get("LAB_TEST_WORKTREE"):
        files = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO, check=True,
                               capture_output=True).stdout.decode().split("\0")
        for name in (f for f in files if f and "node_modules" not in f and (REPO / f).is_file()):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    else:
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(dest)], check=True, timeout=120)
    return dest


class DockerClassroom:
    """compose/classroom.yml in one checkout, ports published on 127.0.0.1 at free ports."""

    def __init__(self, root: Path):
        self.root = root
        self.folder = root / "classroom" / "generated"
        self.ports = {"CLASSROOM_TLS_PORT": free_port(), "CLASSROOM_PLAIN_PORT": free_port(),
                      "CLASSROOM_HTTPS_PORT": free_port()}
        self.env = {**os.environ, "CLASSROOM_BIND": "127.0.0.1", **{k: str(v) for k, v in self.ports.items()}}
        self.compose = ["docker", "compose", "-f", "compose/classroom.yml", "--profile", "students"]
        self.procs: list[Proc] = []

    @property
    def tls_port(self) -> int:
        return self.ports["CLASSROOM_TLS_PORT"]

    @property
    def https_port(self) -> int:
        return self.ports["CLASSROOM_HTTPS_PORT"]

    @property
    def ca_file(self) -> Path:
        return self.folder / "pki" / "ca.crt"

    def make(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["make", *args, f"CLASSROOM_PY={sys.executable}"], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=COMPOSE_TIMEOUT)

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*self.compose, *args], cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=COMPOSE_TIMEOUT, input=stdin,
                              stdin=None if stdin is not None else subprocess.DEVNULL)

    def student(self, service: str, *args: str) -> Proc:
        """The paho client above, running in a student's container until it ends or the test stops it."""
        proc = Proc([*self.compose, "exec", "-T", service, "python", "-u", "-", *args], cwd=self.root, env=self.env,
                    stdin=True, label=service)
        proc.send(STUDENT_CLIENT)
        proc.close_stdin()
        self.procs.append(proc)
        return proc

    def logs(self, service: str) -> str:
        return self.run("logs", "--no-log-prefix", service).stdout

    def accounts(self) -> dict[str, classroom.Account]:
        return classroom.read_accounts(self.folder / "accounts.csv")

    def close(self) -> None:
        for proc in self.procs:
            proc.stop(timeout=3)
        self.make("classroom-down")
        leftovers = subprocess.run(["docker", "ps", "-aq", "--filter", PROJECT_LABEL], capture_output=True,
                                   text=True).stdout.strip()
        if leftovers:
            self.run("down", "-t", "1")


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    needs_root()
    root = clone(tmp_path_factory.mktemp("classroom-docker") / "lab")
    (root / "classroom" / "roster.csv").write_text(ROSTER, encoding="utf-8")
    docker_room = DockerClassroom(root)
    try:
        started = docker_room.make("classroom", "HOST=127.0.0.1", "ROSTER=classroom/roster.csv")
        assert started.returncode == 0, started.stdout + started.stderr
        assert "Traceback" not in started.stdout + started.stderr
        students = docker_room.run("up", "-d", "--wait", "student-a", "student-b")
        assert students.returncode == 0, students.stdout + students.stderr
        yield docker_room
    finally:
        docker_room.close()
    gone = subprocess.run(["docker", "network", "ls", "-q", "--filter", PROJECT_LABEL], capture_output=True,
                          text=True).stdout.strip()
    assert not gone, "classroom-down left the network"


def host_pub(room, account, *extra: str, cafile: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(room.tls_port), "--cafile",
                           str(cafile or room.ca_file), "-u", account.id, "-P", account.password, *extra],
                          capture_output=True, text=True, timeout=CLIENT_TIMEOUT)


def host_curl(room, path: str, *extra: str) -> tuple[str, str, subprocess.CompletedProcess]:
    done = subprocess.run(["curl", "-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}", *extra,
                           f"https://127.0.0.1:{room.https_port}{path}"], capture_output=True, text=True,
                          timeout=CLIENT_TIMEOUT)
    body, _, status = done.stdout.rpartition("\n")
    return status, body.strip(), done


def conf_value(option: str) -> int:
    return int(re.search(rf"^{option} (\d+)$", (classroom.TEMPLATES / "mosquitto.conf").read_text(), re.M).group(1))


def test_student_containers_talk_over_tls_and_the_acl_holds(room):
    accounts = room.accounts()
    a, b = accounts[STUDENT_A], accounts[STUDENT_B]
    sub = room.student("student-b", "sub", b.id, b.password, "kelas/#")
    sub.wait_for(r"^subscribed$", timeout=60)
    into_b = room.student("student-a", "pub", a.id, a.password, f"kelas/{b.id}/suhu", "forged")
    assert into_b.wait(60) == 0 and into_b.lines == ["puback 135"], into_b.output  # not authorized
    own = room.student("student-a", "pub", a.id, a.password, f"kelas/{a.id}/suhu", "27.4")
    assert own.wait(60) == 0 and own.lines == ["puback 0"], own.output
    assert sub.wait(30) == 0, sub.output
    assert [line for line in sub.lines if line] == ["subscribed", f"kelas/{a.id}/suhu 27.4"], sub.output
    log = room.logs("mqtt-broker")
    assert re.search(r"New connection from 10\.151\.17\.21:\d+ on port 8883", log), log[-2000:]


def test_wrong_password_and_wrong_ca_are_refused(room, tmp_path):
    a = room.accounts()[STUDENT_A]
    wrong = classroom.Account(a.id, a.name, a.password + "x")
    refused = host_pub(room, wrong, "-t", f"kelas/{a.id}/x", "-m", "hi")
    assert refused.returncode != 0 and "not authorised" in refused.stderr, refused.stderr
    other = tmp_path / "other-ca"
    subprocess.run([str(classroom.LAB_CA), str(other), "127.0.0.1"], check=True, capture_output=True)
    tls = host_pub(room, a, "-t", f"kelas/{a.id}/x", "-m", "hi", cafile=other / "ca.crt")
    assert tls.returncode != 0 and "TLS error" in tls.stderr, tls.stderr
    *_, web = host_curl(room, "/add?a=2&b=3", "--cacert", str(other / "ca.crt"), "-u", f"{a.id}:{a.password}")
    assert web.returncode == 60, web.stderr


def test_rest_over_https_needs_a_login(room):
    a = room.accounts()[STUDENT_A]
    assert host_curl(room, "/add?a=2&b=3", "--cacert", str(room.ca_file), "-u", f"{a.id}:{a.password}")[:2] == \
        ("200", '{"result":5.0}')
    status, body, _ = host_curl(room, "/add?a=2&b=3", "--cacert", str(room.ca_file))
    assert status == "401" and "Login required" in body
    status, body, _ = host_curl(room, "/" + "a" * 3000, "--cacert", str(room.ca_file))
    assert status == "414" and "too large" in body  # gunicorn's limit_request_line, before the app


def test_broker_limits_hold_in_docker(room):
    a, b = room.accounts()[STUDENT_A], room.accounts()[STUDENT_B]
    # max_packet_size: the oversized PUBLISH costs its sender the connection.
    big = host_pub(room, a, "-t", f"kelas/{a.id}/big", "-m", "x" * (conf_value("max_packet_size") + 1), "-q", "1")
    assert big.returncode != 0
    # max_inflight_messages: a subscriber that never acknowledges gets that many QoS 1 messages, no more.
    limit = conf_value("max_inflight_messages")
    greedy = Proc([sys.executable, str(PROBE), "noack", "--host", "127.0.0.1", "--port", str(room.tls_port),
                   "--cafile", str(room.ca_file), "--user", b.id, "--password", b.password,
                   "--topic", f"kelas/{a.id}/inflight"], label="noack")
    room.procs.append(greedy)
    greedy.wait_for(r"^subscribed$", timeout=30)
    sent = subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(room.tls_port), "--cafile", str(room.ca_file), "-u", a.id,
         "-P", a.password, "-t", f"kelas/{a.id}/inflight", "-q", "1", "-l"],
        input="".join(f"m{i}\n" for i in range(limit * 3)), capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
    assert sent.returncode == 0, sent.stderr
    assert greedy.wait(30) == 0
    assert greedy.lines[-1] == f"received {limit}", greedy.output


def test_the_plaintext_lesson_shows_the_password_on_the_bridge(room, tmp_path):
    """tcpdump on the classroom's fixed bridge br-classroom: the plain CONNECT carries the password, TLS does not."""
    a = room.accounts()[STUDENT_A]
    pcap = tmp_path / "classroom.pcap"
    tcpdump = Proc(["tcpdump", "-i", "br-classroom", "-n", "-U", "--immediate-mode", "-w", str(pcap),
                    "tcp port 1883 or tcp port 8883"], label="tcpdump")
    try:
        tcpdump.wait_for("listening on", timeout=30)
        assert host_pub(room, a, "-t", f"kelas/{a.id}/x", "-m", "over TLS").returncode == 0
        plain = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(room.ports["CLASSROOM_PLAIN_PORT"]),
                                "-u", a.id, "-P", a.password, "-t", f"kelas/{a.id}/x", "-m", "in clear"],
                               capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
        assert plain.returncode == 0, plain.stderr
    finally:
        tcpdump.stop(timeout=5, sig=2)
    assert pcap.read_bytes().count(a.password.encode()) == 1
    rows = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", "mqtt.passwd", "-T", "fields", "-e", "mqtt.username",
                           "-e", "mqtt.passwd"], capture_output=True, text=True, timeout=60)
    assert rows.stdout.splitlines() == [f"{a.id}\t{a.password}"], rows.stdout + rows.stderr


def test_max_connections_in_docker(room):
    """As in the namespaces, on a fresh broker (Mosquitto 2.0.11 miscounts clients it refused before)."""
    limit = conf_value("max_connections")
    restarted = room.run("restart", "mqtt-broker")
    assert restarted.returncode == 0, restarted.stderr
    assert room.run("up", "-d", "--wait", "mqtt-broker").returncode == 0
    a = room.accounts()[STUDENT_A]
    flood = Proc([sys.executable, str(PROBE), "hold", "--count", str(limit + 1), "--host", "127.0.0.1",
                  "--port", str(room.tls_port), "--cafile", str(room.ca_file), "--user", a.id, "--password",
                  a.password], label="hold", stdin=True)
    room.procs.append(flood)
    flood.wait_for(r"^holding$", timeout=180)
    assert flood.count(r"^ok \d+$") == limit and flood.count(r"^refused \d+: ") == 1, flood.output[-500:]
    flood.close_stdin()
    flood.wait_for(r"^alive \d+$", timeout=60)
    assert flood.lines[-1] == f"alive {limit}"
    assert "denied: max_connections exceeded" in room.logs("mqtt-broker")


def test_a_late_student_joins_after_accounts_and_reload(room):
    """A new line in the roster: `make classroom-accounts` gives that student an account and keeps every password
    handed out; `make classroom-reload` (SIGHUP) lets the running broker and REST server take it."""
    before = room.accounts()
    roster = room.root / "classroom" / "roster.csv"
    roster.write_text(ROSTER + "2301009,Dewi Late\n", encoding="utf-8")
    done = room.make("classroom-accounts", "ROSTER=classroom/roster.csv")
    assert done.returncode == 0 and "classroom: new account 2301009" in done.stdout, done.stdout + done.stderr
    after = room.accounts()
    assert all(after[sid] == before[sid] for sid in before)
    late = after["2301009"]
    reload = room.make("classroom-reload")
    assert reload.returncode == 0, reload.stdout + reload.stderr
    for _ in range(20):  # up to 10 s: the broker re-reads passwd at once, gunicorn starts new workers
        ok = host_pub(room, late, "-t", "kelas/2301009/hello", "-m", "hi").returncode == 0
        web = host_curl(room, "/add?a=1&b=2", "--cacert", str(room.ca_file), "-u", f"{late.id}:{late.password}")
        if ok and web[:2] == ("200", '{"result":3.0}'):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the late student is still refused after reload: mqtt ok={ok}, rest {web[:2]}")
    a = after[STUDENT_A]
    assert host_pub(room, a, "-t", f"kelas/{a.id}/x", "-m", "still in").returncode == 0


def test_the_labs_own_clients_in_the_student_containers(room):
    """mqtt/sub.py and pub.py (mounted from the checkout) with --cafile, --username and --password."""
    a, b = room.accounts()[STUDENT_A], room.accounts()[STUDENT_B]
    tls = ["--host", "lecturer", "--port", "8883", "--cafile", "/classroom/ca.crt"]
    sub = Proc([*room.compose, "exec", "-T", "student-b", "python", "sub.py", *tls, "--username", b.id, "--password",
                b.password, "--topic", "kelas/#", "--count", "1", "--log", "/tmp/mqtt_messages.log"],
               cwd=room.root, env=room.env, label="sub.py")
    room.procs.append(sub)
    sub.wait_for(r"^Subscribed to: kelas/#$", timeout=60)
    pub = room.run("exec", "-T", "student-a", "python", "pub.py", *tls, "--username", a.id, "--password", a.password,
                   "--topic", f"kelas/{a.id}/suhu", "--message", "27.4 °C", "--qos", "1", "--count", "1")
    assert pub.returncode == 0, pub.stdout + pub.stderr
    assert sub.wait(30) == 0, sub.output
    assert f"Received message: 27.4 °C (Topic: kelas/{a.id}/suhu)" in sub.lines
