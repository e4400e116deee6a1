"""The classroom (issue 17) in network namespaces: the lecturer's broker and REST server, two students' hosts.

Real Mosquitto (accounts, ACL, TLS, limits from classroom/mosquitto.conf), real gunicorn serving rest/ over
HTTPS, real openssl certificates, mosquitto_pub/mosquitto_sub and curl as the students' clients, and
tests/classroom_probe.py for what no ordinary client does on purpose (hold sessions, never acknowledge).
Every limit is shown with the value the lecturer gets, bounded in count and time. The roster, accounts
and certificate checks need no root.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import script_constant

from labkit import classroom, cli, netns
from labkit.procs import REPO, Proc, python_env

IS_ROOT = os.geteuid() == 0
needs_netns = pytest.mark.usefixtures("namespaces")

STUDENT_A, STUDENT_B = "2301001", "2301002"
ROSTER = f"student id,name\n{STUDENT_A},Ani Lestari\n{STUDENT_B},Budi Santoso\n2301003,Citra Dewi\n"
LECTURER = classroom.ADDRESSES["lecturer"]
TLS, PLAIN, HTTPS = classroom.MQTT_TLS_PORT, classroom.MQTT_PLAIN_PORT, classroom.REST_TLS_PORT
PROBE = REPO / "tests" / "classroom_probe.py"
#: Seconds one client command may take.
CLIENT_TIMEOUT = 30


def conf_value(option: str) -> int:
    """A limit as the lecturer gets it: its value in classroom/mosquitto.conf."""
    match = re.search(rf"^{option} (\d+)$", (classroom.TEMPLATES / "mosquitto.conf").read_text(), re.M)
    assert match, f"classroom/mosquitto.conf sets no {option}"
    return int(match.group(1))


def gunicorn_value(name: str) -> int:
    """A gunicorn limit as rest/gunicorn.conf.py sets it (the classroom serves rest/ with that file)."""
    conf = REPO / "rest" / "gunicorn.conf.py"
    named = re.search(rf"^{name} = ([A-Z_]+)\b", conf.read_text(), re.M)  # keepalive = HEADER_TIMEOUT_SECONDS
    return script_constant(conf, named.group(1) if named else name)


def write_roster(folder: Path, text: str = ROSTER) -> Path:
    path = folder / "roster.csv"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- roster, accounts, certificates (no root)


@pytest.mark.parametrize(("text", "line", "says"), [
    ("student id,name\n2301001,Ani\n2301002,Budi\n2301001,Ani again\n", 4, "duplicate student id '2301001' "
                                                                          "(first on line 2)"),
    ("2301001,Ani\nkelas/2301002,Budi\n", 2, "malformed student id 'kelas/2301002'"),
    ("2301001,Ani\n23 01,Budi\n", 2, "malformed student id '23 01'"),
    ("2301001,Ani\n2301002#,Budi\n", 2, "malformed student id"),
    ("2301001,Ani\n2301002\n", 2, "expected 'student id,name'"),
    ("2301001,Ani\nlecturer,Me\n", 2, "is the lecturer's account"),
])
def test_bad_roster_is_refused_naming_the_line(tmp_path, text, line, says):
    roster = write_roster(tmp_path, text)
    done = subprocess.run([sys.executable, "-m", "labkit.classroom", "--dir", str(tmp_path / "room"), "accounts",
                           "--roster", str(roster)], capture_output=True, text=True, env=python_env(), timeout=60)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"{roster}, line {line}: " in done.stderr and says in done.stderr, done.stderr
    assert not (tmp_path / "room" / "accounts.csv").exists()


def test_roster_not_in_utf8_and_damaged_accounts_are_one_line(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_bytes("2301001,Ani\n2301002,J\u00fcrgen\n".encode("cp1252"))
    with pytest.raises(cli.LabError, match=rf"cannot read roster {re.escape(str(roster))}: 'utf-8' codec"):
        classroom.read_roster(roster)
    accounts = tmp_path / "accounts.csv"
    accounts.write_text("who,what\nx,y\n", encoding="utf-8")
    with pytest.raises(cli.LabError, match="accounts.csv is damaged"):
        classroom.update_accounts([("2301001", "Ani")], accounts)
    assert accounts.read_text(encoding="utf-8") == "who,what\nx,y\n"  # left as it was


def test_regenerating_keeps_handed_out_passwords_unless_rotated(tmp_path):
    accounts = tmp_path / "accounts.csv"
    students = classroom.read_roster(write_roster(tmp_path))
    first = classroom.update_accounts(students, accounts)
    assert first == [f"new account {s}" for s, _ in students] + ["new account lecturer"]
    assert accounts.stat().st_mode & 0o777 == 0o600
    before = classroom.read_accounts(accounts)
    assert len({a.password for a in before.values()}) == len(before)  # generated, all different
    assert all(re.fullmatch(r"[a-z2-9]{12}", a.password) for a in before.values())

    assert classroom.update_accounts(students, accounts) == []
    assert classroom.read_accounts(accounts) == before

    # A late enrolment gets an account; nobody else's password moves.
    more = classroom.read_roster(write_roster(tmp_path, ROSTER + "2301004,Dewi\n"))
    assert classroom.update_accounts(more, accounts) == ["new account 2301004"]
    after = classroom.read_accounts(accounts)
    assert all(after[sid] == before[sid] for sid in before)

    assert classroom.update_accounts(more, accounts, rotate=STUDENT_B) == \
        [f"new password for {STUDENT_B} (rotated: hand out a new card)"]
    rotated = classroom.read_accounts(accounts)
    assert rotated[STUDENT_B].password != after[STUDENT_B].password
    assert all(rotated[sid] == after[sid] for sid in after if sid != STUDENT_B)

    with pytest.raises(cli.LabError, match="ROTATE names 9999: not in the roster"):
        classroom.update_accounts(more, accounts, rotate="9999")
    assert classroom.read_accounts(accounts) == rotated
    classroom.update_accounts(more, accounts, rotate="all")
    assert all(classroom.read_accounts(accounts)[sid].password != rotated[sid].password for sid in rotated)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A classroom folder made as `make classroom` makes it: certificates, accounts, broker/ (no server yet)."""
    folder = tmp_path_factory.mktemp("classroom") / "generated"
    classroom.prepare(folder, LECTURER, write_roster(folder.parent))
    return folder


def test_certificate_names_the_lecturer_and_chains_to_the_lab_ca(prepared):
    pki = prepared / "pki"
    text = subprocess.run(["openssl", "x509", "-in", str(pki / "server.crt"), "-noout", "-ext", "subjectAltName",
                           "-issuer"], capture_output=True, text=True, check=True).stdout
    assert f"IP Address:{LECTURER}" in text and "DNS:lecturer" in text
    assert "Messaging Lab classroom CA" in text
    subprocess.run(["openssl", "verify", "-CAfile", str(pki / "ca.crt"), str(pki / "server.crt")], check=True,
                   capture_output=True)
    assert (pki / "ca.key").stat().st_mode & 0o077 == 0, "the CA key is readable by others"
    assert prepared.stat().st_mode & 0o077 == 0, "generated/ is readable by others"


def test_generated_files_are_git_ignored():
    names = ["classroom/generated/pki/ca.key", "classroom/generated/broker/server.key",
             "classroom/generated/accounts.csv", "classroom/roster.csv"]
    git = ["git", "-c", f"safe.directory={REPO}"]  # a checkout owned by someone else (CI) is still read
    done = subprocess.run([*git, "check-ignore", *names], cwd=REPO, capture_output=True, text=True)
    assert done.stdout.split() == names, done.stderr
    tracked = subprocess.run([*git, "ls-files", "classroom"], cwd=REPO, capture_output=True, text=True).stdout
    assert not re.search(r"\.key$|accounts|passwd", tracked, re.M), tracked


def test_what_the_servers_read_holds_no_password(prepared):
    """broker/ (mounted into both servers) has hashes only, and no CA key: no password can leak from there."""
    broker = prepared / "broker"
    assert sorted(p.name for p in broker.iterdir()) == ["acl", "ca.crt", "mosquitto.conf", "passwd", "server.crt",
                                                        "server.key"]
    everything = "".join(p.read_text() for p in broker.iterdir())
    for account in classroom.read_accounts(prepared / "accounts.csv").values():
        assert account.password not in everything
        assert re.search(rf"^{account.id}:\$7\$", (broker / "passwd").read_text(), re.M)


def test_a_card_shows_one_students_password_only(prepared):
    accounts = classroom.read_accounts(prepared / "accounts.csv")
    card = classroom.cards(prepared, STUDENT_A)
    assert accounts[STUDENT_A].password in card
    assert all(a.password not in card for sid, a in accounts.items() if sid != STUDENT_A)
    for line in (f"host            {LECTURER}", f"port {TLS}", f"port {PLAIN}", f"username        {STUDENT_A}",
                 f"https://{LECTURER}/add", "CA file", f"kelas/{STUDENT_A}/#"):
        assert line in card, card
    every = classroom.cards(prepared)
    assert every.count("=== Messaging lab classroom") == 3 and accounts["lecturer"].password not in every


def test_plaintext_listener_is_labelled_and_can_be_turned_off():
    with_lesson = classroom.broker_conf(plaintext=True)
    assert re.search(r"^# --- THE LESSON: plain MQTT on 1883.*\n(#.*\n)*listener 1883$", with_lesson, re.M)
    without = classroom.broker_conf(plaintext=False)
    assert "listener 1883" not in without and re.search(r"^listener 8883$", without, re.M)


def test_make_classroom_without_host_is_a_usage_line(tmp_path):
    done = subprocess.run(["make", "-s", "classroom", f"CLASSROOM_DIR={tmp_path}", "HOST="], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: make classroom HOST=<the lecturer's LAN address or name>"), done.stderr
    assert not any(tmp_path.iterdir())
    cards = subprocess.run(["make", "-s", "classroom-cards", f"CLASSROOM_DIR={tmp_path}",
                            f"CLASSROOM_PY={sys.executable}"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert cards.returncode != 0 and f"error: no classroom in {tmp_path}" in cards.stderr, cards.stderr
    assert "Traceback" not in cards.stderr


@needs_netns
def test_make_classroom_netns_without_the_lesson_runs_until_ctrl_c_and_leaves_nothing(tmp_path):
    folder = tmp_path / "generated"
    make = Proc(["make", "-s", "classroom", "RUNTIME=netns", "PLAINTEXT=0", f"CLASSROOM_DIR={folder}",
                 f"ROSTER={write_roster(tmp_path)}", f"CLASSROOM_PY={sys.executable}"], cwd=REPO, label="make")
    try:
        ready = make.wait_for(r"^\[ *classroom\] lecturer \S+ \(MQTT 8883 TLS, HTTPS 443\); "
                              r"students: ip netns exec (\S+) bash", timeout=90)
        student_a = ready.group(1)
        a = classroom.read_accounts(folder / "accounts.csv")[STUDENT_A]
        done = subprocess.run(["ip", "netns", "exec", student_a, "mosquitto_pub", "-h", "lecturer", "-p", str(TLS),
                               "--cafile", str(folder / "pki" / "ca.crt"), "-u", a.id, "-P", a.password,
                               "-t", f"kelas/{a.id}/x", "-m", "hi"], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        lesson = subprocess.run(["ip", "netns", "exec", student_a, "mosquitto_pub", "-h", "lecturer", "-p", str(PLAIN),
                                 "-u", a.id, "-P", a.password, "-t", f"kelas/{a.id}/x", "-m", "hi"],
                                capture_output=True, text=True, timeout=30)
        assert lesson.returncode != 0 and "Connection refused" in lesson.stderr, lesson.stderr  # PLAINTEXT=0
        assert "MQTT plaintext  off" in classroom.cards(folder, STUDENT_A)
    finally:
        os.killpg(make.pid, 2)  # Ctrl+C in make's terminal: make and labkit.classroom get it
        code = make.wait(30)
    assert code == -2, make.output  # make ends itself with the SIGINT it got, as in a terminal
    assert "Traceback" not in make.output
    tag = student_a.removesuffix("-student-a")
    assert not [ns for ns in netns.list_namespaces() if ns.startswith(tag)], "namespaces left behind"


# ---------------------------------------------------------------- the classroom running in namespaces


@pytest.fixture(scope="module")
def namespaces():
    """Skips, with one line saying why, where network namespaces cannot be made (no root, no `ip netns`)."""
    reason = netns.unavailable_reason() if IS_ROOT else "network namespaces need root"
    if reason is not None:
        pytest.skip(f"classroom in namespaces skipped: {reason}")


@pytest.fixture(scope="module")
def room(namespaces, prepared):  # noqa: ARG001 - namespaces: the skip
    with classroom.NetnsClassroom(prepared) as running:
        yield running
    assert not running.net.leftovers(), "namespaces left behind"


@pytest.fixture
def accounts(room):
    return room.accounts()


def run_on(room, host: str, *argv: str, timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([*room.exec_prefix(host), *argv], capture_output=True, text=True, timeout=timeout)


def on(room, host: str, *argv: str, **kw) -> Proc:
    """A long-running client on a student's host (stopped by the test)."""
    return Proc([*room.exec_prefix(host), "stdbuf", "-oL", *argv], label=f"{host} {argv[0]}", **kw)


def mqtt_args(room, account, port: int = TLS, cafile: Path | None = None) -> list[str]:
    tls = ["--cafile", str(cafile or room.ca_file)] if port == TLS else []
    return ["-h", "lecturer", "-p", str(port), *tls, "-u", account.id, "-P", account.password]


def subscribe(room, host: str, account, topic: str, *extra: str) -> Proc:
    mark = len(room.broker.lines)
    proc = on(room, host, "mosquitto_sub", *mqtt_args(room, account), "-t", topic, "-v", "-q", "1", *extra)
    room.broker.wait_for(rf"u'{re.escape(account.id)}'\)", timeout=15, start=mark)  # its CONNECT reached the broker
    time.sleep(0.3)  # SUBSCRIBE follows CONNACK at once; mosquitto_sub prints nothing until a message
    return proc


def publish(room, host: str, account, topic: str, message: str, *extra: str, port: int = TLS, **kw):
    return run_on(room, host, "mosquitto_pub", *mqtt_args(room, account, port, **kw), "-t", topic, "-m", message,
                  *extra)


def curl(room, host: str, path: str, *extra: str) -> tuple[str, str, subprocess.CompletedProcess]:
    """(status, body, the finished curl) of one HTTPS request to the lecturer."""
    done = run_on(room, host, "curl", "-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}", *extra,
                  f"https://lecturer{path}")
    body, _, status = done.stdout.rpartition("\n")
    return status, body.strip(), done


@needs_netns
def test_tls_session_carries_a_publish_from_student_a_to_student_b(room, accounts):
    a, b = accounts[STUDENT_A], accounts[STUDENT_B]
    sub = subscribe(room, "student-b", b, "kelas/#", "-C", "1", "-W", "20")
    done = publish(room, "student-a", a, f"kelas/{a.id}/suhu", "27.4 °C", "-q", "1")
    assert done.returncode == 0, done.stderr
    assert sub.wait(25) == 0
    assert sub.lines == [f"kelas/{a.id}/suhu 27.4 °C"]
    # The broker saw both students, each from their own host, over TLS.
    assert room.broker.count(rf"New connection from {classroom.ADDRESSES['student-a']}:\d+ on port {TLS}") >= 1
    assert room.broker.count(rf"New connection from {classroom.ADDRESSES['student-b']}:\d+ on port {TLS}") >= 1


def lab_client(room, host: str, script: str, account, *args: str) -> Proc:
    """mqtt/pub.py or sub.py (the folder's own clients) on a student's host, logged in over TLS."""
    return on(room, host, sys.executable, str(REPO / "mqtt" / script), "--host", "lecturer", "--port", str(TLS),
              "--cafile", str(room.ca_file), "--username", account.id, "--password", account.password, *args,
              cwd=REPO / "mqtt", env=python_env())


@needs_netns
def test_the_labs_own_clients_log_in_over_tls_and_stay_in_their_subtree(room, accounts, tmp_path):
    a, b = accounts[STUDENT_A], accounts[STUDENT_B]
    sub = lab_client(room, "student-b", "sub.py", b, "--topic", "kelas/#", "--count", "1",
                     "--log", str(tmp_path / "mqtt_messages.log"))
    sub.wait_for(r"^Subscribed to: kelas/#$", timeout=30)
    forged = lab_client(room, "student-a", "pub.py", a, "--mqtt-version", "5", "--qos", "1", "--topic",
                        f"kelas/{b.id}/suhu", "--message", "forged", "--count", "1")
    assert forged.wait(30) == 1, forged.output
    assert forged.lines[-1].startswith("error: the MQTT broker refused to publish forged"), forged.output
    own = lab_client(room, "student-a", "pub.py", a, "--qos", "1", "--topic", f"kelas/{a.id}/suhu",
                     "--message", "27.4 °C", "--count", "1")
    assert own.wait(30) == 0, own.output
    assert sub.wait(30) == 0, sub.output
    assert [line for line in sub.lines if line.startswith("Received")] == \
        [f"Received message: 27.4 °C (Topic: kelas/{a.id}/suhu)"]
    wrong = lab_client(room, "student-a", "pub.py", classroom.Account(a.id, a.name, "wrong-password"),
                       "--topic", f"kelas/{a.id}/x", "--message", "hi", "--count", "1")
    assert wrong.wait(30) != 0
    assert [line for line in wrong.lines if line.startswith("error:")] == [wrong.lines[-1]]
    assert "refused the login" in wrong.lines[-1] and "Traceback" not in wrong.output


@needs_netns
def test_wrong_password_is_refused(room, accounts):
    a = accounts[STUDENT_A]
    wrong = classroom.Account(a.id, a.name, a.password + "x")
    for port in (TLS, PLAIN):
        done = publish(room, "student-a", wrong, f"kelas/{a.id}/x", "hi", port=port)
        assert done.returncode != 0
        assert "not authorised" in done.stderr, done.stderr
    stranger = classroom.Account("9999999", "", "whatever12")
    assert "not authorised" in publish(room, "student-a", stranger, "kelas/9999999/x", "hi").stderr


@needs_netns
def test_wrong_ca_is_refused(room, accounts, tmp_path):
    """A server certificate from another CA (what an impostor broker would have) is refused by the client."""
    other = tmp_path / "other-ca"
    subprocess.run([str(classroom.LAB_CA), str(other), LECTURER, "lecturer"], check=True, capture_output=True)
    a = accounts[STUDENT_A]
    mark = len(room.broker.lines)
    done = publish(room, "student-a", a, f"kelas/{a.id}/x", "hi", cafile=other / "ca.crt")
    assert done.returncode != 0 and "TLS error" in done.stderr, done.stderr
    room.broker.wait_for(r"alert unknown ca", timeout=10, start=mark)  # the client said why it hung up
    *_, web = curl(room, "student-a", "/add?a=2&b=3", "--cacert", str(other / "ca.crt"), "-u", f"{a.id}:{a.password}")
    assert web.returncode == 60 and "certificate" in web.stderr, web.stderr  # curl: peer certificate not trusted
    plain = run_on(room, "student-a", "curl", "-sS", "--max-time", "10", f"http://lecturer:{HTTPS}/add?a=2&b=3")
    assert plain.returncode != 0  # plain HTTP to the HTTPS port: no answer
    time.sleep(0.5)
    assert "Traceback" not in room.rest.output, room.rest.output[-2000:]  # the server does not print one per refusal


@needs_netns
def test_student_a_cannot_publish_into_student_bs_subtree(room, accounts):
    a, b = accounts[STUDENT_A], accounts[STUDENT_B]
    sub = subscribe(room, "student-b", b, f"kelas/{b.id}/#")
    try:
        # MQTT 5 and QoS 1: the broker answers the forbidden PUBLISH with "Not authorized" (reason 135).
        done = publish(room, "student-a", a, f"kelas/{b.id}/suhu", "forged", "-q", "1", "-V", "5")
        assert "Not authorized" in done.stderr, done.stderr
        # MQTT 3.1.1 has no way to say so: the message is dropped all the same.
        publish(room, "student-a", a, f"kelas/{b.id}/suhu", "forged again", "-q", "1")
        # B's own message arrives, so the subscriber was listening all along; the forged ones never did.
        assert publish(room, "student-b", b, f"kelas/{b.id}/suhu", "mine", "-q", "1").returncode == 0
        sub.wait_for(rf"^kelas/{b.id}/suhu mine$", timeout=15)
    finally:
        sub.stop()
    assert sub.lines == [f"kelas/{b.id}/suhu mine"]


@needs_netns
def test_plaintext_lesson_listener_takes_the_same_accounts(room, accounts):
    a = accounts[STUDENT_A]
    assert publish(room, "student-a", a, f"kelas/{a.id}/x", "in clear", port=PLAIN).returncode == 0
    assert room.broker.count(rf"New connection from {classroom.ADDRESSES['student-a']}:\d+ on port {PLAIN}") >= 1


@needs_netns
def test_a_capture_shows_the_password_on_1883_and_not_on_8883(room, accounts, tmp_path):
    """The lesson, on the bridge every host uses: the plain CONNECT carries the password, the TLS one does not."""
    a = accounts[STUDENT_A]
    pcap = tmp_path / "classroom.pcap"
    tcpdump = Proc([*room.exec_prefix_bridge(), "tcpdump", "-i", room.net.bridge, "-n", "-U", "--immediate-mode",
                    "-w", str(pcap), "tcp port 1883 or tcp port 8883"], label="tcpdump")
    try:
        tcpdump.wait_for("listening on", timeout=15)
        assert publish(room, "student-a", a, f"kelas/{a.id}/x", "over TLS").returncode == 0
        assert publish(room, "student-a", a, f"kelas/{a.id}/x", "in clear", port=PLAIN).returncode == 0
    finally:
        tcpdump.stop(timeout=5, sig=2)
    assert pcap.read_bytes().count(a.password.encode()) == 1  # once: the plaintext CONNECT
    rows = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", "mqtt.passwd", "-T", "fields", "-e", "tcp.dstport",
                           "-e", "mqtt.username", "-e", "mqtt.passwd"], capture_output=True, text=True, timeout=60)
    assert rows.stdout.splitlines() == [f"{PLAIN}\t{a.id}\t{a.password}"], rows.stdout + rows.stderr
    tls = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", f"tcp.port == {TLS} && tls.handshake.type == 1"],
                         capture_output=True, text=True, timeout=60)
    assert len(tls.stdout.splitlines()) == 1, tls.stdout  # one TLS Client Hello on 8883, and no MQTT readable there


@needs_netns
def test_rest_over_https_needs_a_login(room, accounts):
    a = accounts[STUDENT_A]
    login = ["--cacert", str(room.ca_file), "-u", f"{a.id}:{a.password}"]
    assert curl(room, "student-a", "/add?a=2&b=3", *login)[:2] == ("200", '{"result":5.0}')
    for creds in ([], ["-u", f"{a.id}:{a.password}x"], ["-u", f"lecturerx:{a.password}"]):
        status, body, _ = curl(room, "student-a", "/add?a=2&b=3", "--cacert", str(room.ca_file), *creds)
        assert status == "401" and "Login required" in body
    # The server serves the calculator and nothing else: no file of the classroom is reachable.
    for path in ("/accounts.csv", "/passwd", "/../classroom/generated/accounts.csv", "/ca.key"):
        assert curl(room, "student-a", path, *login, "--path-as-is")[0] == "404"


@needs_netns
def test_the_labs_rest_client_logs_in_over_https(room, accounts, tmp_path):
    a = accounts[STUDENT_A]
    other = tmp_path / "other-ca"
    subprocess.run([str(classroom.LAB_CA), str(other), LECTURER, "lecturer"], check=True, capture_output=True)

    def client(password: str, ca: Path) -> subprocess.CompletedProcess:
        return run_on(room, "student-a", sys.executable, str(REPO / "rest" / "client.py"), "--host", "lecturer",
                      "--port", str(HTTPS), "--cafile", str(ca), "--username", a.id, "--password", password,
                      "--op", "both", "-a", "2", "-b", "3")

    ok = client(a.password, room.ca_file)
    assert ok.returncode == 0 and ok.stdout.splitlines() == ["add(2.0,3.0) = 5.0", "mul(2.0,3.0) = 6.0"], ok.stderr
    for done, says in ((client(a.password + "x", room.ca_file), "refused the login (HTTP 401)"),
                       (client(a.password, other / "ca.crt"), "certificate verify failed")):
        assert done.returncode == 1
        lines = (done.stdout + done.stderr).strip().splitlines()
        assert len(lines) == 1 and says in lines[0] and "Traceback" not in lines[0], lines


# ---------------------------------------------------------------- limits: one student's flood does not starve the class


@needs_netns
def test_max_connections_refuses_one_more_and_keeps_the_others(room, accounts):
    limit = conf_value("max_connections")
    a, b = accounts[STUDENT_A], accounts[STUDENT_B]
    # A fresh broker: Mosquitto 2.0.11 (Debian 12) miscounts clients it refused earlier (a wrong password),
    # which lets a few more in; 2.0.12 fixed that count ("max_connections not being correctly counted").
    room.start_broker()
    flood = on(room, "student-a", sys.executable, str(PROBE), "hold", "--count", str(limit + 1), "--host", "lecturer",
               "--port", str(TLS), "--cafile", str(room.ca_file), "--user", a.id, "--password", a.password,
               stdin=True)
    try:
        flood.wait_for(r"^holding$", timeout=120)
        assert flood.count(r"^ok \d+$") == limit
        assert flood.count(r"^refused \d+: ") == 1 and flood.lines[limit].startswith(f"refused {limit + 1}: ")
        # While the flood holds every place on 8883, the lesson listener has places of its own.
        assert publish(room, "student-b", b, f"kelas/{b.id}/x", "hi", port=PLAIN).returncode == 0
        flood.close_stdin()
        flood.wait_for(r"^alive \d+$", timeout=60)
        assert flood.lines[-1] == f"alive {limit}"  # everyone connected was served to the end
    finally:
        flood.stop()


@needs_netns
def test_oversized_packet_disconnects_its_sender_only(room, accounts):
    limit = conf_value("max_packet_size")
    a, b = accounts[STUDENT_A], accounts[STUDENT_B]
    sub = subscribe(room, "student-b", b, "kelas/#")
    mark = len(room.broker.lines)
    try:
        big = publish(room, "student-a", a, f"kelas/{a.id}/big", "x" * (limit + 1), "-q", "1")
        assert big.returncode != 0, "an oversized PUBLISH was accepted"
        room.broker.wait_for(r"Client \S+ disconnected", timeout=10, start=mark)
        fits = publish(room, "student-a", a, f"kelas/{a.id}/small", "y" * 1000, "-q", "1")
        assert fits.returncode == 0, fits.stderr
        sub.wait_for(rf"^kelas/{a.id}/small y+$", timeout=15)
    finally:
        sub.stop()
    assert not any(line.startswith(f"kelas/{a.id}/big") for line in sub.lines)


@needs_netns
def test_max_inflight_messages_caps_what_an_unacknowledging_client_gets(room, accounts):
    limit = conf_value("max_inflight_messages")
    a, b = accounts[STUDENT_A], accounts[STUDENT_B]
    greedy = on(room, "student-b", sys.executable, str(PROBE), "noack", "--host", "lecturer", "--port", str(TLS),
                "--cafile", str(room.ca_file), "--user", b.id, "--password", b.password,
                "--topic", f"kelas/{a.id}/inflight")
    try:
        greedy.wait_for(r"^subscribed$", timeout=30)
        lines = "".join(f"m{i}\n" for i in range(limit * 3))
        sent = subprocess.run([*room.exec_prefix("student-a"), "mosquitto_pub", *mqtt_args(room, a),
                               "-t", f"kelas/{a.id}/inflight", "-q", "1", "-l"], input=lines, capture_output=True,
                              text=True, timeout=CLIENT_TIMEOUT)
        assert sent.returncode == 0, sent.stderr
        assert greedy.wait(30) == 0
    finally:
        greedy.stop()
    assert greedy.lines[-1] == f"received {limit}", greedy.output


@needs_netns
def test_max_queued_messages_drops_for_the_slow_subscriber_only(room, accounts):
    limit = conf_value("max_queued_messages")
    a, b = accounts[STUDENT_A], accounts[STUDENT_B]
    topic = f"kelas/{a.id}/queued"
    session = ["-i", f"{b.id}-away", "-c"]  # a persistent session: the broker queues for it while it is away
    away = subscribe(room, "student-b", b, topic, *session)
    mark = len(room.broker.lines)
    away.stop()
    room.broker.wait_for(rf"Client {b.id}-away (closed its connection|disconnected)", timeout=10, start=mark)
    lines = "".join(f"q{i}\n" for i in range(limit * 2))
    sent = subprocess.run([*room.exec_prefix("student-a"), "mosquitto_pub", *mqtt_args(room, a), "-t", topic,
                           "-q", "1", "-l"], input=lines, capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
    assert sent.returncode == 0, sent.stderr
    room.broker.wait_for(rf"Outgoing messages are being dropped for client {b.id}-away", timeout=10, start=mark)
    back = run_on(room, "student-b", "mosquitto_sub", *mqtt_args(room, b), "-t", topic, "-q", "1", *session,
                  "-W", "5")
    got = back.stdout.split()
    assert got and got == [f"q{i}" for i in range(len(got))], got[:5]
    assert len(got) == limit, f"{len(got)} of {limit * 2} delivered"


@needs_netns
@pytest.mark.parametrize(("what", "headers", "path", "expected"), [
    ("limit_request_line", [], "/" + "a" * 3000, "414"),
    ("limit_request_fields", [f"X-Flood-{i}: 1" for i in range(60)], "/add?a=1&b=2", "431"),
    ("limit_request_field_size", ["X-Big: " + "b" * 5000], "/add?a=1&b=2", "431"),
])
def test_gunicorn_request_limits_refuse_over_https(room, accounts, what, headers, path, expected):
    limit = gunicorn_value(what)
    assert {"limit_request_line": 3000 > limit, "limit_request_fields": 60 > limit,
            "limit_request_field_size": 5000 > limit}[what]
    a = accounts[STUDENT_A]
    extra = [arg for h in headers for arg in ("-H", h)]
    status, body, _ = curl(room, "student-a", path, "--cacert", str(room.ca_file), "-u", f"{a.id}:{a.password}",
                           *extra)
    assert status == expected and "too large" in body.lower(), body[-300:]  # gunicorn's own page, before the app
    b = accounts[STUDENT_B]
    assert curl(room, "student-b", "/mul?a=2&b=3", "--cacert", str(room.ca_file), "-u", f"{b.id}:{b.password}")[:2] \
        == ("200", '{"result":6.0}')


@needs_netns
def test_gunicorn_keepalive_closes_an_idle_https_connection(room):
    keepalive = gunicorn_value("keepalive")
    idle = run_on(room, "student-a", sys.executable, str(PROBE), "idle", "--tls", "--host", "lecturer",
                  "--port", str(HTTPS), "--cafile", str(room.ca_file), "--timeout", str(keepalive + 15),
                  timeout=keepalive + 30)
    assert idle.returncode == 0, idle.stderr
    assert re.fullmatch(r"closed after [\d.]+ s", idle.stdout.splitlines()[-1]), idle.stdout


@needs_netns
def test_gunicorn_worker_connections_bound_what_silent_connections_take(room, accounts):
    """workers x worker_connections is all gunicorn serves at once; the rest wait in the listen queue. Shown with
    1 x 2 (the classroom's 2 x 500 is the same setting): two connections that never start TLS take both places,
    and another student's request waits until they go. (Such silent connections are not timed out: see
    docs/classroom-lecturer.md, "Not covered".)"""
    b = accounts[STUDENT_B]
    room.start_rest(("--workers", "1", "--worker-connections", "2"))
    silent = [on(room, "student-a", sys.executable, str(PROBE), "idle", "--host", "lecturer", "--port", str(HTTPS),
                 "--timeout", "60") for _ in range(2)]
    try:
        for proc in silent:
            proc.wait_for(r"^connected$", timeout=15)
        login = ["--cacert", str(room.ca_file), "-u", f"{b.id}:{b.password}"]
        *_, waiting = curl(room, "student-b", "/add?a=1&b=1", *login, "--max-time", "3")
        assert waiting.returncode == 28, waiting.stderr  # curl: timed out, no answer
        for proc in silent:
            proc.stop()
        assert curl(room, "student-b", "/add?a=1&b=1", *login)[:2] == ("200", '{"result":2.0}')
    finally:
        for proc in silent:
            proc.stop()
        room.start_rest(())


@needs_netns
def test_mqtt_keeps_serving_during_a_publish_loop(room, accounts):
    """A bounded publish loop of student A (QoS 0, 20,000 messages, as fast as it goes) does not keep B's
    message from B's subscriber."""
    a, b = accounts[STUDENT_A], accounts[STUDENT_B]
    sub = subscribe(room, "student-b", b, f"kelas/{b.id}/#")
    loop = Proc([*room.exec_prefix("student-a"), "mosquitto_pub", *mqtt_args(room, a), "-t", f"kelas/{a.id}/loop",
                 "-l"], stdin=True, label="flood")
    try:
        loop.send("flood\n" * 20000)
        assert publish(room, "student-b", b, f"kelas/{b.id}/ok", "still here", "-q", "1").returncode == 0
        sub.wait_for(rf"^kelas/{b.id}/ok still here$", timeout=20)
        loop.close_stdin()
        assert loop.wait(CLIENT_TIMEOUT) == 0
    finally:
        loop.stop()
        sub.stop()
