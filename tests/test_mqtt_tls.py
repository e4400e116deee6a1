"""pub.py and sub.py with TLS and a login (the classroom broker), against a real Mosquitto.

The broker is configured as a lecturer's would be: `password_file` (mosquitto_passwd), an `acl_file` that keeps
each student under class/<user>/, and a TLS listener whose certificate a lab CA made by openssl signed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from helpers import MQTT_HOST as HOST
from helpers import PUBLISHED, RECEIVED, matches, start_pub, start_sub

from labkit.procs import free_port, python_env

ACCOUNTS = {"ani": "ani-secret", "budi": "budi-secret"}
ACL = "pattern write class/%u/#\npattern read class/#\n"  # publish under your own subtree, read the whole class


def openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(cwd: Path, name: str) -> None:
    openssl(cwd, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-addext", "keyUsage=critical,keyCertSign,cRLSign")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A lab CA, a server certificate it signed for 127.0.0.1, and an unrelated CA (the wrong one)."""
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "lab-ca")
    make_ca(d, "other-ca")
    openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr")
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nauthorityKeyIdentifier=keyid\n"
                                  "subjectKeyIdentifier=hash\nextendedKeyUsage=serverAuth\n")
    openssl(d, "x509", "-req", "-in", "server.csr", "-CA", "lab-ca.crt", "-CAkey", "lab-ca.key", "-CAcreateserial",
            "-days", "1", "-extfile", "server.ext", "-out", "server.crt")
    return d


@pytest.fixture
def classroom(spawn, tmp_path, pki):
    """Mosquitto with logins, the ACL and a TLS listener on a free port: (port, CA file)."""
    passwords = tmp_path / "passwd"
    for user, password in ACCOUNTS.items():
        subprocess.run(["mosquitto_passwd", *([] if passwords.exists() else ["-c"]), "-b", str(passwords), user,
                        password], check=True, timeout=10)
    (tmp_path / "acl").write_text(ACL)
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"user root\nallow_anonymous false\npassword_file {passwords}\nacl_file {tmp_path / 'acl'}\n"
                    f"listener {port} {HOST}\ncafile {pki / 'lab-ca.crt'}\ncertfile {pki / 'server.crt'}\n"
                    f"keyfile {pki / 'server.key'}\nlog_dest stdout\nlog_type all\n")
    broker = spawn(["mosquitto", "-c", str(conf)], label="mosquitto", prefix=["stdbuf", "-oL"])
    broker.wait_for(r"mosquitto version .* running", timeout=10)
    return port, pki / "lab-ca.crt"


def login(user: str, password: str | None = None) -> list[str]:
    return ["--username", user, "--password", password or ACCOUNTS[user]]


def client(spawn, script: str, port: int, tmp_path: Path, *args: str, env: dict | None = None):
    """pub.py or sub.py on the broker at 127.0.0.1:port (sub.py logging into tmp_path)."""
    log = ["--log", str(tmp_path / f"{script}.log")] if script == "sub.py" else []
    return spawn.script("mqtt", script, "--host", HOST, "--port", str(port), *log, *args, env=python_env(env))


def test_tls_with_login_carries_the_messages_and_writes_the_key_log(spawn, classroom, tmp_path):
    port, ca = classroom
    keylog = tmp_path / "keys.log"
    env = {"SSLKEYLOGFILE": str(keylog)}
    sub = client(spawn, "sub.py", port, tmp_path, "--cafile", str(ca), *login("budi"), "--topic", "class/#",
                 "--count", "2", env=env)
    sub.wait_for(r"^Subscribed to: class/#$", timeout=15)
    pub = client(spawn, "pub.py", port, tmp_path, "--cafile", str(ca), *login("ani"), "--topic", "class/ani/temp",
                 "--message", "27.0 °C", "--qos", "1", "--count", "2", "--interval", "0.2", env=env)
    assert pub.wait(15) == 0, pub.output
    assert sub.wait(15) == 0, sub.output
    assert [m["payload"] for m in matches(sub, RECEIVED)] == ["27.0 °C"] * 2
    assert len(matches(pub, PUBLISHED)) == 2
    # Python's default TLS context honours SSLKEYLOGFILE: the secrets Wireshark needs to decrypt the capture.
    assert re.search(r"^CLIENT_TRAFFIC_SECRET_0 [0-9a-f]+ [0-9a-f]+$", keylog.read_text(), re.M)


@pytest.mark.parametrize("script", ["pub.py", "sub.py"])
def test_wrong_password_is_one_line_and_exit_non_zero(spawn, classroom, tmp_path, script):
    port, ca = classroom
    proc = client(spawn, script, port, tmp_path, "--cafile", str(ca), *login("ani", "guessed"), "--count", "1")
    assert proc.wait(15) == 1, proc.output
    errors = [line for line in proc.lines if line.startswith("error:")]
    assert errors == [f"error: the MQTT broker at {HOST}:{port} refused the login: Not authorized "
                      "(check --username and --password)"], proc.output
    assert "Traceback" not in proc.output


@pytest.mark.parametrize("script", ["pub.py", "sub.py"])
def test_wrong_ca_is_one_line_saying_certificate_verify_failed(spawn, classroom, pki, tmp_path, script):
    port, _ = classroom
    proc = client(spawn, script, port, tmp_path, "--cafile", str(pki / "other-ca.crt"), *login("ani"), "--count", "1")
    assert proc.wait(15) == 1, proc.output
    assert re.fullmatch(rf"error: TLS: certificate verify failed for the MQTT broker at {HOST}:{port}: "
                        r"(self-signed certificate in certificate chain|unable to get local issuer certificate)",
                        proc.lines[-1]), proc.output
    assert sum(line.startswith("error:") for line in proc.lines) == 1 and "Traceback" not in proc.output


def test_publish_outside_the_acl_is_refused_in_one_line_with_mqtt_5(spawn, classroom, tmp_path):
    port, ca = classroom
    budi = start_sub(spawn, port, tmp_path, "--cafile", str(ca), *login("budi"), "--topic", "class/budi/#",
                     "--timeout", "3")
    pub = start_pub(spawn, port, "--cafile", str(ca), *login("ani"), "--mqtt-version", "5", "--qos", "1",
                    "--topic", "class/budi/temp", "--message", "not yours", "--count", "1")
    assert pub.wait(15) == 1, pub.output
    assert pub.lines[-1] == ("error: the MQTT broker refused to publish not yours (Topic: class/budi/temp): "
                             "Not authorized (outside your ACL?)"), pub.output
    assert not matches(pub, PUBLISHED) and "Traceback" not in pub.output
    assert budi.wait(15) == 0, budi.output
    assert not matches(budi, RECEIVED)  # B's subscriber gets nothing


def test_mqtt_5_publisher_reaches_a_3_1_1_subscriber_with_tls_and_login(spawn, classroom, tmp_path):
    """sub.py speaks 3.1.1 only: Mosquitto 2.0 grants a SUBSCRIBE outside the read ACL anyway (SUBACK success) and
    then delivers nothing from there, so MQTT 5's refusing SUBACK would show nothing more here."""
    port, ca = classroom
    sub = start_sub(spawn, port, tmp_path, "--cafile", str(ca), *login("budi"), "--topic", "class/#", "--count", "1")
    pub = start_pub(spawn, port, "--cafile", str(ca), *login("ani"), "--mqtt-version", "5", "--qos", "1",
                    "--topic", "class/ani/temp", "--message", "hello class", "--count", "1")
    assert pub.wait(15) == 0, pub.output
    assert sub.wait(15) == 0, sub.output
    assert [m["payload"] for m in matches(sub, RECEIVED)] == ["hello class"]


def test_debug_shows_the_mqtt_packets(spawn, classroom):
    port, ca = classroom
    pub = start_pub(spawn, port, "--cafile", str(ca), *login("ani"), "--topic", "class/ani/x", "--message", "hi",
                    "--qos", "1", "--count", "1", "--debug")
    assert pub.wait(15) == 0, pub.output
    sending = pub.wait_for(r"^Sending PUBLISH \(d0, q1, r0, m1\), 'b'class/ani/x''")
    acked = pub.wait_for(r"^Received PUBACK \(Mid: 1\)$")
    published = pub.wait_for(r"^Published: hi \(Topic: class/ani/x\)$")
    order = [pub.lines.index(m.string) for m in (sending, acked, published)]
    assert order == sorted(order), pub.output


def test_without_the_flags_a_tls_broker_is_not_reached(spawn, classroom):
    """Plain MQTT to a TLS port: no CONNACK ever comes (the broker waits for a TLS hello), so: cannot reach."""
    port, _ = classroom
    pub = start_pub(spawn, port, "--count", "1", "--wait", "2")
    assert pub.wait(15) == 1, pub.output
    assert pub.lines[-1] == f"error: cannot reach the MQTT broker at {HOST}:{port} within 2 s"


def test_missing_cafile_is_a_one_line_usage_error(spawn, tmp_path):
    pub = start_pub(spawn, free_port(), "--cafile", str(tmp_path / "nope.crt"))
    assert pub.wait(10) == 2
    assert pub.lines[-1] == f"pub.py: error: cannot read --cafile {tmp_path / 'nope.crt'}: No such file or directory"
