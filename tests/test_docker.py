"""The seeds' Docker workflow, word for word, on a real Docker engine (issue 10).

Each protocol runs on a fresh `git clone` of the repo (LAB_TEST_WORKTREE=1: a copy of the
working tree, uncommitted files included) with the commands the students ran:
`docker compose -f compose/<p>.yml up -d`, then `exec` for the servers and the clients, in a
terminal (a pseudo-terminal here, so Ctrl+C is a real Ctrl+C). Real engine, compose, tcpdump and
tshark; the repo's own Dockerfiles and compose files.

Base images: where no registry answers (the project's CI), `debian:12.11-slim`,
`python:3.11.14-slim-bookworm` and `eclipse-mosquitto:2.0.22` are local STAND-INS built by
scripts/docker-standins.sh (Debian bookworm with those tags), not the upstream images.
One compose project is up at a time; images built in a run are reused by later tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from labkit import compose
from labkit.procs import REPO, Proc
from labkit.protocols import PROTOCOLS, REST_HOST_PORT

#: Seconds one test may take: the first one also builds the base-image stand-ins on a fresh machine
#: (debootstrap, about 2.5 min) and its images and the capture sidecar cold (pip, apt).
DOCKER_TEST_TIMEOUT = 900
pytestmark = [pytest.mark.usefixtures("docker_engine"), pytest.mark.timeout(DOCKER_TEST_TIMEOUT)]

#: `docker compose down` must come back within this many seconds (issue 10).
DOWN_SECONDS = 15.0
#: Seconds a compose command may take (a cold `up --build` pip-installs the image's requirements).
COMPOSE_TIMEOUT = 600
#: Seconds to wait for an expected line in a terminal.
LINE_TIMEOUT = 30.0
#: uid:gid of the usual checkout (the first user on Linux and WSL2).
USUAL_OWNER = 1000
FOLLOWING = r"Following the .* server already running in this container \(port {port}\)"


# ---------------------------------------------------------------- checkouts and compose projects


def checkout(dest: Path, owner: int) -> Path:
    """A fresh clone of the repo at `dest`, every file owned by uid and gid `owner`."""
    if os.environ.get("LAB_TEST_WORKTREE"):
        files = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO, check=True,
                               capture_output=True).stdout.decode().split("\0")
        for name in (f for f in files if f and "node_modules" not in f):
            if (REPO / name).is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, dest / name)
    else:
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(dest)], check=True, timeout=120)
    if owner != os.geteuid():
        subprocess.run(["chown", "-R", f"{owner}:{owner}", str(dest)], check=True)
    return dest


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: tcpdump on the bridge and checkouts owned by other users")


class Project:
    """One protocol's compose file in one checkout: the seeds' commands, run from its root."""

    def __init__(self, root: Path, proto: str):
        self.root, self.proto = root, proto
        self.compose = f"docker compose -f compose/{proto}.yml"
        self.terminals: list[Proc] = []

    def run(self, command: str, timeout: float = COMPOSE_TIMEOUT, stdin: str | None = None) -> str:
        """`docker compose -f compose/<p>.yml <command>`; fails with its output unless it exits 0."""
        argv = [*shlex.split(self.compose), *shlex.split(command)]
        done = subprocess.run(argv, cwd=self.root, capture_output=True, text=True, timeout=timeout, input=stdin,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
        assert done.returncode == 0, f"`{shlex.join(argv)}` exited {done.returncode}:\n{done.stdout}{done.stderr}"
        return done.stdout + done.stderr

    def up(self, flags: str = "-d --wait") -> str:
        """`up <flags>`, after checking that the host ports the file publishes are free (a clear failure,
        not compose's "address already in use", when another program holds one)."""
        for port in (int(p["published"]) for svc in compose.load(self.root / "compose" / f"{self.proto}.yml")
                     .services.values() for p in svc.ports if p.get("published")):
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError as e:
                    pytest.fail(f"127.0.0.1:{port} is taken by another program ({e.strerror}): `ss -ltnp` names it")
        return self.run(f"up {flags}")

    def terminal(self, command: str) -> Proc:
        """`docker compose ... <command>` in a terminal of its own, as a student types it."""
        line = f"{self.compose} {command}"
        proc = Proc(["script", "-qefc", line, "/dev/null"], cwd=self.root, stdin=True, label=command.split()[1])
        self.terminals.append(proc)
        return proc

    def container_processes(self, service: str) -> list[str]:
        """Command lines of the processes in a service's container (the slim images have no ps)."""
        out = self.run(f"exec -T {service} sh -c 'for p in /proc/[0-9]*/cmdline; do tr \"\\0\" \" \" <$p; echo; done'")
        return [ln.strip() for ln in out.splitlines() if ln.strip()]

    def leftovers(self) -> tuple[str, str]:
        label = f"label=com.docker.compose.project=lab-{self.proto}"
        containers = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True)
        networks = subprocess.run(["docker", "network", "ls", "-q", "--filter", label], capture_output=True, text=True)
        return containers.stdout.strip(), networks.stdout.strip()

    def down(self) -> float:
        """`down`; returns its seconds, after checking that it leaves no container or network."""
        started = time.monotonic()
        self.run("down", timeout=120)
        seconds = time.monotonic() - started
        assert self.leftovers() == ("", ""), f"`down` left containers/networks: {self.leftovers()}"
        assert not Path(f"/sys/class/net/br-{self.proto}").exists(), f"bridge br-{self.proto} is still there"
        return seconds

    def close(self) -> None:
        for proc in self.terminals:
            proc.stop(timeout=3)
        if any(self.leftovers()):
            subprocess.run([*shlex.split(self.compose), "--profile", "capture", "down", "-t", "1"], cwd=self.root,
                           capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def usual_checkout(tmp_path_factory) -> Path:
    """The checkout the five protocol tests share, owned by uid 1000 like a student's."""
    needs_root()
    return checkout(tmp_path_factory.mktemp("checkout") / "lab", USUAL_OWNER)


@pytest.fixture
def project():
    """Project(root, proto) factory; every project is brought down after the test, whatever happened."""
    made: list[Project] = []

    def make(root: Path, proto: str) -> Project:
        made.append(Project(root, proto))
        return made[-1]

    yield make
    for p in made:
        p.close()


# ---------------------------------------------------------------- checks shared by the protocols


def show(command: str, output: str) -> None:
    """What a seed command printed, in the test log (pytest -s, or the report of a failing test)."""
    print(f"\n$ {command}\n{output.rstrip()}")


def cold_up(p: Project) -> None:
    """`up -d --build --wait`; reports its time and the image size (cold when the image was absent)."""
    image = f"lab-{p.proto}:latest"
    cold = subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0
    started = time.monotonic()
    out = p.up("-d --build --wait")
    seconds = time.monotonic() - started
    size = json.loads(subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True,
                                     check=True).stdout)[0]["Size"]
    print(f"\ndocker: {p.proto}: up -d --build --wait {seconds:.1f} s ({'cold' if cold else 'image cached'}), "
          f"{image} {size / 1e6:.0f} MB")
    assert "Traceback" not in out, out


def follow_server(p: Project, script: str) -> Proc:
    """The seeds' `exec <server> python <script>` while the container's own server runs."""
    proto = PROTOCOLS[p.proto]
    follower = p.terminal(f"exec {proto.server_service} python {script}")
    follower.wait_for(FOLLOWING.format(port=proto.port), timeout=LINE_TIMEOUT)
    assert re.search(FOLLOWING.format(port=proto.port), follower.lines[0]), follower.output
    return follower


def stop_following(p: Project, follower: Proc, script: str) -> None:
    """Ctrl+C ends the follower with exit 0 (130 from reqresp's and upcall's, which become `tail -F` itself), and it
    leaves nothing running in the container."""
    follower.send("\x03")
    assert follower.wait(10) in ((0, 130) if p.proto in ("reqresp", "upcall") else (0,)), follower.output
    assert "Traceback" not in follower.output, follower.output
    show(f"{p.compose} exec {PROTOCOLS[p.proto].server_service} python {script}   (then Ctrl+C)", follower.output)
    server = PROTOCOLS[p.proto].server_service
    running = [c for c in p.container_processes(server) if c.startswith(f"python {script}")]
    assert len(running) <= 1, f"the follower is still running after Ctrl+C: {running}"


class Bridge:
    """tcpdump on the compose network's fixed bridge (br-<proto>), as the seeds ran it. --immediate-mode: without
    it libpcap hands packets over in blocks, and those still in the kernel's ring when the test stops tcpdump are
    lost (seen once: `19 packets received by filter`, `0 packets captured`)."""

    def __init__(self, proto: str, out: Path):
        self.out = out
        self.proc = Proc(["tcpdump", "-i", f"br-{proto}", "-n", "-U", "--immediate-mode", "-w", str(out)],
                         label="tcpdump")
        self.proc.wait_for("listening on", timeout=LINE_TIMEOUT)

    def packets(self, port: int) -> int:
        """Stop tcpdump; the TCP packets to or from `port` in what it wrote (read back by tshark)."""
        self.proc.stop(timeout=5, sig=2)
        done = subprocess.run(["tshark", "-r", str(self.out), "-Y", f"tcp.port == {port}"], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip(), f"no packet to or from port {port} on the bridge; tcpdump:\n{self.proc.output}"
        return len(done.stdout.splitlines())


def make_capture(p: Project) -> None:
    """`make capture-<p> RUNTIME=docker` in the checkout writes a pcapng tshark decodes as the protocol."""
    proto = PROTOCOLS[p.proto]
    before = set((p.root / "captures").glob("*.pcapng"))
    done = subprocess.run(["make", "-o", "setup-capture", f"capture-{p.proto}", "RUNTIME=docker",
                           f"PY={REPO / '.venv' / 'bin' / 'python'}"], cwd=p.root, capture_output=True, text=True,
                          timeout=COMPOSE_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    written = sorted(set((p.root / "captures").rglob("*.pcapng")) - before, key=lambda f: f.stat().st_mtime)
    assert written, f"make capture-{p.proto} wrote no pcapng:\n{done.stdout}"
    decoded = subprocess.run(["tshark", "-r", str(written[-1]), "-Y", f"tcp.port == {proto.port}"],
                             capture_output=True, text=True, timeout=120)
    assert decoded.returncode == 0 and decoded.stdout.strip(), decoded.stderr


def owner_of(path: Path) -> int:
    return path.stat().st_uid


def edit_before_main(script: Path, line: str) -> None:
    """Insert `line` just before the script's `if __name__ == "__main__":`, at module level."""
    text = script.read_text()
    marker = 'if __name__ == "__main__":'
    assert marker in text, f"{script.name} has no {marker}"
    stat = script.stat()
    script.write_text(text.replace(marker, f"{line}\n\n\n{marker}", 1))
    os.chown(script, stat.st_uid, stat.st_gid)


def restart_applies_an_edit(p: Project, script: str) -> None:
    """The seeds' loop: edit the mounted server script on the host, `restart <server>`, see the change."""
    server = PROTOCOLS[p.proto].server_service
    marker = f"edited on the host at {time.time():.0f}"
    edit_before_main(p.root / p.proto / script, f"print({marker!r}, flush=True)")
    p.run(f"restart {server}", timeout=120)
    deadline = time.monotonic() + LINE_TIMEOUT
    while marker not in p.run(f"logs {server}"):
        assert time.monotonic() < deadline, f"{server} did not run the edited {script} after restart"
        time.sleep(0.5)
    p.run("up -d --wait")  # healthy again before the next step


def finish(p: Project) -> None:
    seconds = p.down()
    print(f"\ndocker: {p.proto}: down {seconds:.1f} s")
    assert seconds < DOWN_SECONDS


@contextlib.contextmanager
def server_session(p: Project, script: str, tmp_path: Path):
    """The seeds' session around a server: `up`, tcpdump on the bridge, `exec <server> python <script>`
    following in terminal 1 (yielded); the test runs its clients in the `with` body; then Ctrl+C,
    the packets on the bridge, `make capture-<p>`, an edit applied by `restart`, and `down`."""
    cold_up(p)
    bridge = Bridge(p.proto, tmp_path / f"{p.proto}.pcap")
    follower = follow_server(p, script)
    yield follower
    stop_following(p, follower, script)
    bridge.packets(PROTOCOLS[p.proto].port)
    make_capture(p)
    restart_applies_an_edit(p, script)
    finish(p)


def interactive_client(p: Project, command: str, lines: list[str], reply: str, follower: Proc) -> Proc:
    """A seed's interactive client in terminal 2: types each line once the client runs, waits for the reply
    to each comma-separated message (`reply` with {} for it) and for the server's line, then types bye."""
    client = p.terminal(command)
    service, script = command.split()[1], command.split()[3]
    deadline = time.monotonic() + LINE_TIMEOUT
    while not any(c.startswith(f"python {script}") for c in p.container_processes(service)):
        assert time.monotonic() < deadline and client.running(), client.output
        time.sleep(0.2)
    for line in lines:
        client.send(line + "\n")
        for message in line.split(","):
            client.wait_for(re.escape(reply.format(message)) + "$", timeout=LINE_TIMEOUT)
            follower.wait_for(rf"Received from client: {re.escape(message)}$", timeout=LINE_TIMEOUT)
    client.send("bye\n")
    assert client.wait(LINE_TIMEOUT) == 0, client.output
    show(f"{p.compose} {command}", client.output)
    return client


# ---------------------------------------------------------------- the five protocols, as the seeds ran them


def test_rest_seed_session(usual_checkout, project, tmp_path):
    p = project(usual_checkout, "rest")
    with server_session(p, "server.py", tmp_path) as follower:
        for a, b, expected in (("2", "3", "add(2.0,3.0) = 5.0\nmul(2.0,3.0) = 6.0"),
                               ("3", "4", "add(3.0,4.0) = 7.0\nmul(3.0,4.0) = 12.0")):
            command = f"exec rest-client python client.py --op both -a {a} -b {b}"
            out = p.run(command)
            show(f"{p.compose} {command}", out)
            assert out.strip() == expected
        follower.wait_for_count(r"GET /(add|mul)", 4, timeout=LINE_TIMEOUT)
        with urllib.request.urlopen(f"http://127.0.0.1:{REST_HOST_PORT}/add?a=2&b=3", timeout=10) as answer:
            assert json.load(answer) == {"result": 5.0}


def test_soap_seed_session(usual_checkout, project, tmp_path):
    p = project(usual_checkout, "soap")
    with server_session(p, "server.py", tmp_path) as follower:
        out = p.run("exec soap-client python client.py")
        show(f"{p.compose} exec soap-client python client.py", out)
        assert re.search(r"^\w+\(-?\d+,-?\d+\) = -?[\d.]+$", out, re.MULTILINE) and "Traceback" not in out, out
        follower.wait_for(r"POST", timeout=LINE_TIMEOUT)


def test_mqtt_seed_session(usual_checkout, project, tmp_path):
    p = project(usual_checkout, "mqtt")
    log = usual_checkout / "mqtt" / "mqtt_messages.log"
    cold_up(p)
    pub_image, sub_image = (p.run(f"images -q {s}").split()[0] for s in ("mqtt-pub", "mqtt-sub"))
    assert pub_image == sub_image, "mqtt-pub and mqtt-sub must share one image"
    bridge = Bridge("mqtt", tmp_path / "mqtt.pcap")
    sub = p.terminal("exec mqtt-sub python sub.py")
    sub.wait_for(r"Subscribed", timeout=LINE_TIMEOUT)
    pub = p.terminal("exec mqtt-pub python pub.py")
    pub.wait_for_count(r"^Published: .* \(Topic: sister/humidity\)", 2, timeout=LINE_TIMEOUT)
    sub.wait_for(r"^Received message: .* \(Topic: sister/humidity\)", timeout=LINE_TIMEOUT)
    for proc, command in ((pub, "exec mqtt-pub python pub.py"), (sub, "exec mqtt-sub python sub.py")):
        proc.send("\x03")
        assert proc.wait(10) in (0, 130), proc.output  # 130: the shell's code for "ended by Ctrl+C"
        assert "Traceback" not in proc.output, proc.output
        show(f"{p.compose} {command}   (then Ctrl+C)", proc.output)
    assert "Received message:" in log.read_text(encoding="utf-8")
    assert owner_of(log) == USUAL_OWNER, "the log must belong to the checkout's owner"
    bridge.packets(PROTOCOLS["mqtt"].port)

    # Fan-out: two subscribers, one publisher.
    p.run("up -d --wait --scale mqtt-sub=2")
    subs = [p.terminal(f"exec --index {i} mqtt-sub python sub.py --count 2") for i in (1, 2)]
    for s in subs:
        s.wait_for(r"Subscribed", timeout=LINE_TIMEOUT)
    p.run("exec mqtt-pub python pub.py --count 1")
    for s in subs:
        assert s.wait(LINE_TIMEOUT) == 0, s.output
        assert s.count(r"^Received message: ") == 2, s.output

    make_capture(p)
    # The broker's mounted config: an edit and `restart mqtt-broker` add a second listener.
    conf = usual_checkout / "mqtt" / "mosquitto.conf"
    conf.write_text(conf.read_text() + "\nlistener 1884\n")
    p.run("restart mqtt-broker", timeout=120)
    probe = ("import socket, time\n"
             "for _ in range(60):\n"
             "    try: socket.create_connection(('mqtt-broker', 1884), 2).close(); break\n"
             "    except OSError: time.sleep(0.5)\n"
             "else: raise SystemExit('no listener on 1884')\n")
    p.run("exec -T mqtt-pub python -", stdin=probe)
    finish(p)


def test_reqresp_seed_session(usual_checkout, project, tmp_path):
    p = project(usual_checkout, "reqresp")
    with server_session(p, "server.py", tmp_path) as follower:
        interactive_client(p, "exec reqresp-client python client.py", ["halo wayan", "bagaimana kabarmu", "baik"],
                           "Received from server: Echo: {}", follower)


def test_upcall_seed_session(usual_checkout, project, tmp_path):
    p = project(usual_checkout, "upcall")
    log = usual_checkout / "upcall" / "client_log.txt"
    with server_session(p, "servercall.py", tmp_path) as follower:
        interactive_client(p, "exec upcall-client python clientcall.py", ["halo putri,kamu di mana"],
                           "Received upcall from server: Upcall event: Processing {}", follower)
        assert "halo putri" in log.read_text(encoding="utf-8")
        assert owner_of(log) == USUAL_OWNER


# ---------------------------------------------------------------- logs in any checkout


def mqtt_subscriber_session(root: Path, project) -> Proc:
    """In the checkout at `root`: `up`, a subscriber for 2 messages, a publisher of one round, `down`."""
    mqtt = project(root, "mqtt")
    mqtt.up()
    sub = mqtt.terminal("exec mqtt-sub python sub.py --count 2")
    sub.wait_for(r"Subscribed", timeout=LINE_TIMEOUT)
    mqtt.run("exec mqtt-pub python pub.py --count 1")
    assert sub.wait(LINE_TIMEOUT) == 0, sub.output
    mqtt.down()
    return sub


@pytest.mark.parametrize("owner", [0, 1001], ids=["root-owned", "uid-1001"])
def test_client_logs_land_in_the_folder_owned_by_the_checkouts_owner(tmp_path, project, owner):
    needs_root()
    root = checkout(tmp_path / "lab", owner)
    upcall = project(root, "upcall")
    upcall.up()
    out = upcall.run("exec -T upcall-client python clientcall.py", stdin="wanda,riri\nbye\n")
    assert "Upcall event: Processing riri" in out, out
    log = root / "upcall" / "client_log.txt"
    assert "riri" in log.read_text(encoding="utf-8") and owner_of(log) == owner
    upcall.down()

    mqtt_subscriber_session(root, project)
    log = root / "mqtt" / "mqtt_messages.log"
    assert "Received message:" in log.read_text(encoding="utf-8") and owner_of(log) == owner


WARNING = r"^warning: cannot write .*; not logging \(choose another file with --log PATH\)$"


def test_without_a_writable_folder_both_clients_warn_once_and_keep_running(tmp_path, project):
    needs_root()
    root = checkout(tmp_path / "lab", 1001)
    for folder in ("upcall", "mqtt"):
        (root / folder).chmod(0o555)  # nobody but root may write: lab becomes uid 1001
    upcall = project(root, "upcall")
    upcall.up()
    client = upcall.terminal("exec upcall-client python clientcall.py")
    client.send("wanda,bye\n")
    assert client.wait(LINE_TIMEOUT) == 0, client.output
    assert client.count(WARNING) == 1 and "Processing wanda" in client.output, client.output
    upcall.down()

    sub = mqtt_subscriber_session(root, project)
    assert sub.count(WARNING) == 1 and sub.count("^Received message:") == 2, sub.output
    assert not (root / "upcall" / "client_log.txt").exists() and not (root / "mqtt" / "mqtt_messages.log").exists()


# ---------------------------------------------------------------- building behind a TLS-intercepting proxy

CA_TEST_BASE = "lab-test/python-without-host-ca:latest"


def test_a_ca_certificate_in_the_folder_lets_pip_build_behind_a_tls_intercepting_proxy(tmp_path):
    """On a network that intercepts TLS, pip in the build fails until the network's CA is a .crt in the folder.

    The official Python image does not trust a campus proxy's CA. Here a Python image made from the
    Debian stand-in, with Debian's CA bundle only, plays that part; this machine's own network is
    the intercepting one (the host trusts its CA by configuration).
    """
    dockerfile = (REPO / "mqtt" / "Dockerfile").read_text()
    python_tag = re.search(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE).group(1)
    debian_tag = re.search(r"^FROM\s+(\S+)", (REPO / "captures" / "Dockerfile").read_text(), re.MULTILINE).group(1)
    base = tmp_path / "base"
    base.mkdir()
    (base / "Dockerfile").write_text(f"FROM {debian_tag}\nRUN ln -s /usr/bin/python3 /usr/local/bin/python "
                                     "&& ln -s /usr/bin/pip3 /usr/local/bin/pip\nENV PIP_BREAK_SYSTEM_PACKAGES=1\n")
    built = subprocess.run(["docker", "build", "-q", "-t", CA_TEST_BASE, str(base)], capture_output=True, text=True,
                           timeout=COMPOSE_TIMEOUT)
    if built.returncode != 0:
        pytest.skip(f"{debian_tag} is not the stand-in with python3 (scripts/docker-standins.sh): "
                    f"{built.stderr[-200:]}")
    folder = tmp_path / "mqtt"
    shutil.copytree(REPO / "mqtt", folder, ignore=shutil.ignore_patterns("__pycache__", "*.log"))
    (folder / "Dockerfile").write_text(dockerfile.replace(f"FROM {python_tag}", f"FROM {CA_TEST_BASE}", 1))

    def build() -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "build", "--no-cache", "-t", "lab-test/mqtt-ca:latest", str(folder)],
                              capture_output=True, text=True, timeout=COMPOSE_TIMEOUT)

    try:
        without = build()
        if without.returncode == 0:
            pytest.skip("this network does not intercept TLS: nothing to prove here")
        assert re.search(r"CERTIFICATE_VERIFY_FAILED|SSLError", without.stdout + without.stderr), without.stdout[-2000:]
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", folder / "campus-ca.crt")  # holds this network's CA
        with_ca = build()
        assert with_ca.returncode == 0, with_ca.stdout[-2000:] + with_ca.stderr
    finally:
        subprocess.run(["docker", "rmi", "-f", "lab-test/mqtt-ca:latest", CA_TEST_BASE], capture_output=True)
