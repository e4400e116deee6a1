"""The classroom (issue 17): one broker and one REST server on the lecturer's machine, with TLS and accounts.

Students on the LAN publish to Mosquitto (8883 TLS, 1883 plaintext kept as the lesson) and call the REST
calculator over HTTPS (443), each with their own account from a roster; an ACL keeps each one in their own
topic subtree kelas/<id>/. Everything generated lands in classroom/generated/ (git-ignored):

    pki/           ca.key ca.crt server.key server.crt   scripts/lab-ca.sh (openssl, in the open)
    accounts.csv   id,name,password: the cards' source; stays on the lecturer's machine (mode 0600)
    broker/        what the two servers read (Docker mounts it): mosquitto.conf, acl, passwd (hashes only),
                   ca.crt, server.crt, server.key

    python -m labkit.classroom prepare --host 192.168.1.20 --roster roster.csv [--rotate ID,...|all] [--no-plaintext]
    python -m labkit.classroom cards [--student ID]
    python -m labkit.classroom netns     # without Docker: lecturer + two students in namespaces, until Ctrl+C
"""

from __future__ import annotations

import argparse
import csv
import io
import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from labkit import cli, compose
from labkit.netns import IFNAME_MAX, NS_PREFIX, Host, NetnsLab
from labkit.procs import REPO, Proc, python_env

TEMPLATES = REPO / "classroom"
GENERATED = TEMPLATES / "generated"
COMPOSE_FILE = compose.COMPOSE_DIR / "classroom.yml"
LAB_CA = REPO / "scripts" / "lab-ca.sh"

MQTT_PLAIN_PORT = 1883  # the lesson: password in clear
MQTT_TLS_PORT = 8883
REST_TLS_PORT = 443  # HTTPS's own port: Wireshark decodes the HTTP inside without a setting

#: The namespace runtime's (and compose/classroom.yml's) network: the lecturer and two students.
SUBNET = ipaddress.IPv4Network("10.151.17.0/24")
ADDRESSES = {"lecturer": "10.151.17.10", "student-a": "10.151.17.21", "student-b": "10.151.17.22"}
#: Names the server certificate carries besides the lecturer's HOST: the namespace host, and the compose services
#: with their addresses (compose/classroom.yml: the broker at the lecturer's address, rest-server beside it).
SERVER_NAMES = ("lecturer", "mqtt-broker", "rest-server", ADDRESSES["lecturer"], "10.151.17.11")

#: A student id (a NIM): it becomes an MQTT username and a topic level, so no '/', '+', '#', ':' or spaces.
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
LECTURER = "lecturer"  # the lecturer's own account; acl gives it kelas/# and $SYS/#
HEADER_IDS = {"id", "student id", "student_id", "nim"}
#: Generated passwords: 12 characters without look-alikes (0/o, 1/l/i), about 59 bits from `secrets`.
PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
PASSWORD_LENGTH = 12
#: Seconds the servers get to print their ready line.
READY_TIMEOUT = 30.0
MOSQUITTO_READY = r"mosquitto version .* running"
REST_READY = r"REST server listening on"


@dataclass
class Account:
    id: str
    name: str
    password: str


def read_roster(path: Path) -> list[tuple[str, str]]:
    """(student id, name) rows of a CSV roster; a malformed or duplicate id fails naming its line."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's byte-order mark
    except FileNotFoundError:
        raise cli.LabError(f"roster {path} not found (CSV: student id,name; see classroom/roster-example.csv)") \
            from None
    except (OSError, UnicodeDecodeError) as e:
        raise cli.LabError(f"cannot read roster {path}: {e}") from None
    students: list[tuple[str, str]] = []
    first_line: dict[str, int] = {}
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if not students and not first_line and cells[0].lower() in HEADER_IDS:
            continue  # a header row
        where = f"{path}, line {number}"
        if len(cells) < 2 or not cells[1]:
            raise cli.LabError(f"{where}: expected 'student id,name', got {','.join(row)!r}")
        sid, name = cells[0], cells[1]
        if not STUDENT_ID.fullmatch(sid):
            raise cli.LabError(f"{where}: malformed student id {sid!r} (letters, digits, '-' or '_', "
                               "at most 32, no spaces)")
        if sid == LECTURER:
            raise cli.LabError(f"{where}: {LECTURER!r} is the lecturer's account, not a student id")
        if sid in first_line:
            raise cli.LabError(f"{where}: duplicate student id {sid!r} (first on line {first_line[sid]})")
        first_line[sid] = number
        students.append((sid, name))
    if not students:
        raise cli.LabError(f"roster {path} lists no student")
    return students


def read_accounts(path: Path) -> dict[str, Account]:
    """accounts.csv as written by update_accounts(); {} when there is none yet."""
    if not path.is_file():
        return {}
    try:
        with path.open(encoding="utf-8", newline="") as f:
            return {row["id"]: Account(row["id"], row["name"], row["password"]) for row in csv.DictReader(f)}
    except (KeyError, TypeError, csv.Error, UnicodeDecodeError) as e:
        raise cli.LabError(f"{path} is damaged ({type(e).__name__}: {e}): restore it, or remove it to make "
                           "new accounts (every password changes)") from None


def new_password() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def update_accounts(roster: list[tuple[str, str]], path: Path, rotate: str | None = None) -> list[str]:
    """Write accounts.csv for the roster: a password for each new student, the one already handed out kept
    for the others unless `rotate` names them ("id,id" or "all"). Returns what changed, one line each."""
    old = read_accounts(path)
    ids = {sid for sid, _ in roster} | {LECTURER}
    to_rotate = set(ids) if rotate == "all" else {r.strip() for r in (rotate or "").split(",") if r.strip()}
    unknown = sorted(to_rotate - ids)
    if unknown:
        raise cli.LabError(f"ROTATE names {', '.join(unknown)}: not in the roster (nor {LECTURER!r})")
    changes: list[str] = []
    accounts: list[Account] = []
    for sid, name in [*roster, (LECTURER, "Lecturer")]:
        if sid not in old:
            accounts.append(Account(sid, name, new_password()))
            changes.append(f"new account {sid}")
        elif sid in to_rotate:
            accounts.append(Account(sid, name, new_password()))
            changes.append(f"new password for {sid} (rotated: hand out a new card)")
        else:
            accounts.append(Account(sid, name, old[sid].password))
    changes += [f"account {sid} removed (not in the roster)" for sid in sorted(set(old) - ids)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "name", "password"])
    writer.writerows([a.id, a.name, a.password] for a in accounts)
    _write_private(path, out.getvalue())
    return changes


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, replacing any older one at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def make_certs(folder: Path, host: str) -> None:
    """scripts/lab-ca.sh: the lab CA (kept once made) and a server certificate for HOST and SERVER_NAMES."""
    names = list(dict.fromkeys([host, *SERVER_NAMES]))
    done = subprocess.run([str(LAB_CA), str(folder / "pki"), *names], capture_output=True, text=True, timeout=120)
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        raise cli.LabError((done.stderr.strip().splitlines() or ["scripts/lab-ca.sh failed"])[-1])
    (folder / "host").write_text(host + "\n", encoding="utf-8")


def hash_passwords(accounts: list[Account], scratch: Path) -> str:
    """The Mosquitto password file for these accounts, made by `mosquitto_passwd -U` (PBKDF2-SHA512 hashes).

    Without a local mosquitto_passwd (a lecturer with Docker only), the one in the broker image does it;
    the plaintext passes through a pipe and a file inside that throw-away container. Locally, through a file in
    `scratch` (the private generated/ folder), removed at once.
    """
    plain = "".join(f"{a.id}:{a.password}\n" for a in accounts)
    script = "umask 077; cat >/tmp/passwd && mosquitto_passwd -U /tmp/passwd && cat /tmp/passwd"
    if shutil.which("mosquitto_passwd"):
        argv = ["sh", "-c", script.replace("/tmp/passwd", '"$0"'), str(scratch / "passwd.plain")]
    elif shutil.which("docker"):
        argv = ["docker", "run", "--rm", "-i", "--network", "none", "--entrypoint", "sh", broker_image(), "-c", script]
    else:
        raise cli.LabError("mosquitto_passwd is missing: `make setup` (apt's mosquitto), or Docker (the broker image)")
    try:
        done = subprocess.run(argv, input=plain, capture_output=True, text=True, timeout=120)
    finally:
        if argv[0] == "sh":
            Path(argv[-1]).unlink(missing_ok=True)
    hashed = done.stdout
    if done.returncode != 0 or hashed.count("\n") != len(accounts) or ":$7$" not in hashed:
        raise cli.LabError(f"mosquitto_passwd -U failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return hashed


def broker_image() -> str:
    """The Mosquitto image compose/mqtt.yml runs (the classroom runs the same)."""
    match = re.search(r"^\s*image:\s*(eclipse-mosquitto:\S+)", (compose.COMPOSE_DIR / "mqtt.yml").read_text(), re.M)
    if not match:
        raise cli.LabError("compose/mqtt.yml names no eclipse-mosquitto image")
    return match.group(1)


def broker_conf(plaintext: bool, settings: dict[str, int] | None = None) -> str:
    """classroom/mosquitto.conf (+ plaintext-lesson.conf), with `settings` replacing the values of those options
    (e.g. {"max_connections": 3} for a test): each must already be in the file."""
    text = (TEMPLATES / "mosquitto.conf").read_text(encoding="utf-8")
    if plaintext:
        text += (TEMPLATES / "plaintext-lesson.conf").read_text(encoding="utf-8")
    for option, value in (settings or {}).items():
        text, count = re.subn(rf"^{re.escape(option)} \S+$", f"{option} {int(value)}", text, flags=re.M)
        if not count:
            raise cli.LabError(f"classroom/mosquitto.conf has no option {option}")
    return text


def write_broker_folder(folder: Path, plaintext: bool = True, settings: dict[str, int] | None = None) -> Path:
    """classroom/generated/broker: the config, ACL, password hashes and TLS files both servers read.

    The files are world-readable (0644) so that the servers' unprivileged users read them (Mosquitto drops
    to user mosquitto before it reads; gunicorn runs as lab in Docker); generated/ itself is the owner's
    alone (0700), and the servers open them relative to their working folder, inside it.
    """
    pki = folder / "pki"
    if not (pki / "server.crt").is_file():
        raise cli.LabError(f"no certificates in {pki}: make classroom-certs HOST=<lecturer address> first")
    accounts = list(read_accounts(folder / "accounts.csv").values())
    if not accounts:
        raise cli.LabError(f"no accounts in {folder / 'accounts.csv'}: make classroom-accounts ROSTER=<file> first")
    broker = folder / "broker"
    broker.mkdir(parents=True, exist_ok=True)
    files = {
        "mosquitto.conf": broker_conf(plaintext, settings),
        "acl": (TEMPLATES / "acl").read_text(encoding="utf-8"),
        "passwd": hash_passwords(accounts, folder),
        **{name: (pki / name).read_text(encoding="utf-8") for name in ("ca.crt", "server.crt", "server.key")},
    }
    for name, text in files.items():
        (broker / name).write_text(text, encoding="utf-8")
        (broker / name).chmod(0o644)
    broker.chmod(0o755)
    folder.chmod(0o700)
    (folder / "plaintext").write_text("1\n" if plaintext else "0\n", encoding="utf-8")
    return broker


def prepare(folder: Path, host: str, roster: Path, rotate: str | None = None, plaintext: bool = True,
            settings: dict[str, int] | None = None) -> list[str]:
    """Certificates, accounts and the broker folder: everything `make classroom` needs before the servers start."""
    students = read_roster(roster)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    make_certs(folder, host)
    changes = update_accounts(students, folder / "accounts.csv", rotate)
    write_broker_folder(folder, plaintext, settings)
    return changes


# ---------------------------------------------------------------- connection cards


def card(account: Account, host: str, ca_file: Path, plaintext: bool) -> str:
    """What one student needs to connect, to print or send to that student alone."""
    sid = account.id
    lines = [
        f"=== Messaging lab classroom: {account.name} ({sid}) ===",
        f"  host            {host}",
        f"  MQTT over TLS   port {MQTT_TLS_PORT}   <- use this one",
        (f"  MQTT plaintext  port {MQTT_PLAIN_PORT}   <- the lesson: your password crosses the LAN in clear"
         if plaintext else "  MQTT plaintext  off"),
        f"  REST over HTTPS https://{host}/add?a=2&b=3   (port {REST_TLS_PORT})",
        f"  username        {sid}",
        f"  password        {account.password}",
        f"  CA file         ca.crt (from the lecturer; here: {ca_file})",
        f"  your topics     write kelas/{sid}/#, read kelas/#",
        f"  try             mosquitto_pub -h {host} -p {MQTT_TLS_PORT} --cafile ca.crt -u {sid} -P '<password>' "
        f"-t kelas/{sid}/hello -m hi",
        f"                  curl --cacert ca.crt -u {sid}:'<password>' 'https://{host}/add?a=2&b=3'",
    ]
    return "\n".join(lines)


def cards(folder: Path, student: str | None = None) -> str:
    accounts = read_accounts(folder / "accounts.csv")
    host_file = folder / "host"
    if not accounts or not host_file.is_file():
        raise cli.LabError(f"no classroom in {folder}: run `make classroom HOST=... ROSTER=...` first")
    if student is not None and student not in accounts:
        raise cli.LabError(f"no account {student!r} in {folder / 'accounts.csv'}")
    host = host_file.read_text(encoding="utf-8").strip()
    plaintext = _plaintext(folder)
    chosen = [accounts[student]] if student else [a for a in accounts.values() if a.id != LECTURER]
    ca = folder / "pki" / "ca.crt"
    return "\n\n".join(card(a, host, ca.relative_to(REPO) if ca.is_relative_to(REPO) else ca, plaintext)
                       for a in chosen)


def _plaintext(folder: Path) -> bool:
    """Whether the broker folder was made with the plaintext lesson listener (prepare's `plaintext`)."""
    marker = folder / "plaintext"
    return not marker.is_file() or marker.read_text(encoding="utf-8").strip() != "0"


# ---------------------------------------------------------------- the namespace runtime


class ClassroomNet(NetnsLab):
    """The classroom's network as namespaces: a "lecturer" host and two "student" hosts on one bridge
    (in a namespace of its own), at ADDRESSES; /etc/netns/<ns>/hosts makes the names resolve."""

    def __init__(self) -> None:  # noqa: D107 - no compose file to read: the hosts are fixed
        self.compose_path = COMPOSE_FILE
        self.subnet = SUBNET
        self.bridge = "br-classroom"[:IFNAME_MAX]
        self.tag = f"{NS_PREFIX}-classroom-{os.getpid()}"
        self.bridge_netns = f"{self.tag}-bridge"
        self.hosts = {
            name: Host(compose.Service(name=name, command=[], working_dir=None, environment={}, mounts=[]),
                       f"{self.tag}-{name}", ipaddress.IPv4Interface(f"{address}/{SUBNET.prefixlen}"))
            for name, address in ADDRESSES.items()
        }
        self._created: list[str] = []


class NetnsClassroom:
    """Mosquitto (broker/ folder) and gunicorn serving rest/ over HTTPS in the "lecturer" namespace.

    >>> with NetnsClassroom(folder) as room:
    ...     subprocess.run([*room.exec_prefix("student-a"), "mosquitto_pub", "-h", "lecturer", ...])
    """

    def __init__(self, folder: Path = GENERATED, echo=None, rest_args: tuple[str, ...] = ()):
        self.folder = Path(folder)
        self.broker_dir = self.folder / "broker"
        if not (self.broker_dir / "mosquitto.conf").is_file():
            raise cli.LabError(f"no broker configuration in {self.broker_dir}: run the prepare step first "
                               "(make classroom RUNTIME=netns HOST=... ROSTER=...)")
        self.net = ClassroomNet()
        self.echo = echo
        self.rest_args = tuple(rest_args)
        self.broker: Proc | None = None
        self.rest: Proc | None = None

    @property
    def address(self) -> str:
        return ADDRESSES["lecturer"]

    @property
    def ca_file(self) -> Path:
        return self.broker_dir / "ca.crt"

    def exec_prefix(self, host: str) -> list[str]:
        """argv prefix running a command on `host` ("lecturer", "student-a", "student-b")."""
        return self.net.exec_prefix(host)

    def exec_prefix_bridge(self) -> list[str]:
        """argv prefix running a command in the bridge's namespace (tcpdump -i br-classroom sees everyone)."""
        return self.net.exec_prefix_bridge()

    def accounts(self) -> dict[str, Account]:
        return read_accounts(self.folder / "accounts.csv")

    def __enter__(self) -> NetnsClassroom:
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def up(self) -> None:
        self.net.up()
        try:
            self.start_broker()
            self.start_rest()
        except BaseException:
            self.down()
            raise

    def start_broker(self) -> None:
        """Mosquitto, started in broker/ where its config names its files (relative paths); stdbuf: its log
        must not wait in a pipe buffer. A running one is stopped first (a restart: every session is gone)."""
        if self.broker is not None:
            self.broker.stop(timeout=5)
        self.broker = Proc(["stdbuf", "-oL", "mosquitto", "-c", "mosquitto.conf"], cwd=self.broker_dir,
                           label="mqtt-broker", echo=self.echo, prefix=self.net.exec_prefix("lecturer"))
        _wait_ready(self.broker, MOSQUITTO_READY)

    def start_rest(self, rest_args: tuple[str, ...] | None = None) -> None:
        """gunicorn serving rest/ over HTTPS (rest_args: more gunicorn flags, e.g. ("--workers", "1")); a running
        one is stopped first."""
        if rest_args is not None:
            self.rest_args = tuple(rest_args)
        if self.rest is not None:
            self.rest.stop(timeout=5)
        self.rest = Proc(self.rest_argv(), cwd=REPO / "rest", label="rest-server", echo=self.echo,
                         env=python_env({"CLASSROOM_PASSWORD_FILE": str(self.broker_dir / "passwd")}),
                         prefix=self.net.exec_prefix("lecturer"))
        _wait_ready(self.rest, REST_READY)

    def rest_argv(self) -> list[str]:
        """gunicorn with rest/gunicorn.conf.py, its documented TLS settings and the login in front of rest/."""
        return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                "--certfile", str(self.broker_dir / "server.crt"), "--keyfile", str(self.broker_dir / "server.key"),
                "--bind", f"0.0.0.0:{REST_TLS_PORT}", "--pythonpath", str(TEMPLATES), *self.rest_args,
                "rest_login:app"]

    def down(self) -> None:
        for proc in (self.rest, self.broker):
            if proc is not None:
                proc.stop(timeout=5)
        self.net.down()


def _wait_ready(proc: Proc, ready: str) -> None:
    try:
        proc.wait_for(ready, timeout=READY_TIMEOUT)
    except (RuntimeError, TimeoutError) as e:
        raise cli.LabError(f"{proc.label} did not start: {str(e).splitlines()[-1]}") from None


# ---------------------------------------------------------------- command line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=GENERATED, help="generated files (default: classroom/generated)")
    sub = ap.add_subparsers(dest="action", required=True)
    prep = sub.add_parser("prepare", help="certificates, accounts and the broker folder")
    prep.add_argument("--host", required=True, help="the lecturer's address or DNS name, as students type it")
    prep.add_argument("--roster", type=Path, required=True, help="CSV: student id,name")
    prep.add_argument("--rotate", help="new passwords for these ids (comma-separated) or 'all'")
    prep.add_argument("--no-plaintext", action="store_true", help="no plaintext lesson listener on 1883")
    certs = sub.add_parser("certs", help="the lab CA and the server certificate only")
    certs.add_argument("--host", required=True)
    acc = sub.add_parser("accounts", help="accounts from the roster (kept passwords), then the broker folder")
    acc.add_argument("--roster", type=Path, required=True)
    acc.add_argument("--rotate")
    acc.add_argument("--no-plaintext", action="store_true")
    crd = sub.add_parser("cards", help="print connection cards")
    crd.add_argument("--student", help="one student's card only")
    sub.add_parser("netns", help="run the classroom in namespaces (root) until Ctrl+C")
    args = ap.parse_args()
    folder = args.dir.resolve()
    if args.action in ("prepare", "certs") and not args.host.strip():
        raise cli.LabError("HOST is empty: give the lecturer's address or name, e.g. HOST=192.168.1.20")
    if args.action == "prepare":
        for line in prepare(folder, args.host.strip(), args.roster, args.rotate, not args.no_plaintext):
            print(f"classroom: {line}")
        print(f"classroom: ready in {folder.relative_to(REPO) if folder.is_relative_to(REPO) else folder}; "
              "cards: make classroom-cards")
    elif args.action == "certs":
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        make_certs(folder, args.host.strip())
    elif args.action == "accounts":
        for line in update_accounts(read_roster(args.roster), folder / "accounts.csv", args.rotate) or ["no change"]:
            print(f"classroom: {line}")
        write_broker_folder(folder, not args.no_plaintext)
    elif args.action == "cards":
        print(cards(folder, args.student))
    else:
        from labkit.demo import echo

        with NetnsClassroom(folder, echo=echo) as room:
            lesson = f", {MQTT_PLAIN_PORT} plaintext lesson" if _plaintext(folder) else ""
            # Through echo, which holds the lock the servers' lines are printed under: one line, never two mixed.
            echo("classroom", f"lecturer {room.address} (MQTT {MQTT_TLS_PORT} TLS{lesson}, HTTPS {REST_TLS_PORT}); "
                              f"students: ip netns exec {room.net.host('student-a').netns} bash; Ctrl+C stops")
            room.broker.popen.wait()
    return 0


if __name__ == "__main__":
    cli.run(main)
