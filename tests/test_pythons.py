"""The lab on every Python it supports, 3.10 to 3.13: the five demos, the SOAP faults, the analyzer.

For each interpreter found (pyenv's `~/.pyenv/versions/3.X.*`, or `python3.X` on PATH), the real
`scripts/setup.sh demo` and then `scripts/setup.sh analyze` build a venv with `PYTHON=<it>`, in a
scratch copy of the setup script and requirement files under `.cache/pythons/` (git-ignored, one
per interpreter and kept: setup.sh's stamps make a rerun reuse the venv and reinstall only changed
pins). That venv's Python then runs the five scripted demos (`python -m labkit.demo`; as root in a
network namespace of their own, so their fixed ports are free), a SOAP server answering a division
by zero, a DTD with an entity and a malformed envelope with Faults, and the analyzer on a synthetic
capture. The whole test suite runs on one Python (`make test`'s .venv); this
module is what covers the others.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import curl_post, fault_of, result_of, soap_call, start_soap_server

from labkit.analyze.synth import write_lab_mix
from labkit.procs import REPO, python_env
from labkit.protocols import NAMES

VERSIONS = ("3.10", "3.11", "3.12", "3.13")
CACHE = REPO / ".cache" / "pythons"
SETUP_FILES = ("scripts/setup.sh", "requirements-lab.txt", *(f"{name}/requirements.txt" for name in NAMES))
SETUP_TIMEOUT = 400  # a venv built from nothing: the folders' and the lab's requirements
DEMO_TIMEOUT = 150
# A test may first wait for its venv: up to SETUP_TIMEOUT for each of the two profiles.
pytestmark = pytest.mark.timeout(2 * SETUP_TIMEOUT + DEMO_TIMEOUT)


def identity(python: str) -> str | None:
    """`3.12.1 /root/.pyenv/versions/3.12.1` (version, installation) if `python` runs, else None."""
    try:
        done = subprocess.run([python, "-c", "import platform, sys; print(platform.python_version(), sys.base_prefix)"],
                              capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def find_python(version: str) -> tuple[str, str] | None:
    """(interpreter, identity) of an installed Python `version` (the newest patch release pyenv has first)."""
    pyenv = sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"),
                   key=lambda p: [int(x) if x.isdigit() else -1 for x in p.parts[-3].split(".")], reverse=True)
    for candidate in [*map(str, pyenv), shutil.which(f"python{version}")]:
        found = identity(candidate) if candidate else None
        if found and found.startswith(f"{version}."):
            return candidate, found
    return None


def build_venv(version: str, interpreter: str, interpreter_id: str) -> Path:
    """The venv `scripts/setup.sh demo` then `analyze` make with PYTHON=interpreter; its python.

    One scratch folder per interpreter, kept between runs: setup.sh's own stamps (a hash of each
    requirement set) make a rerun a no-op and reinstall only a set whose pins changed.
    """
    scratch = CACHE / f"py{version}-{hashlib.sha256(interpreter_id.encode()).hexdigest()[:12]}"
    for name in SETUP_FILES:
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, scratch / name)
    env = {**os.environ, "PYTHON": interpreter}
    for profile in ("demo", "analyze"):
        done = subprocess.run(["bash", "scripts/setup.sh", profile], cwd=scratch, env=env, capture_output=True,
                              text=True, timeout=SETUP_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError(f"scripts/setup.sh {profile} with PYTHON={interpreter} failed:\n"
                               f"{done.stdout}{done.stderr}")
    return scratch / ".venv" / "bin" / "python"


@pytest.fixture(scope="module")
def builds():
    """Every version's venv, built in parallel; each test waits only for its own."""
    found = {version: find_python(version) for version in VERSIONS}
    CACHE.mkdir(parents=True, exist_ok=True)
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        yield {version: pool.submit(build_venv, version, *hit) if hit else None for version, hit in found.items()}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module", params=VERSIONS)
def python(request, builds) -> str:
    future = builds[request.param]
    if future is None:
        pytest.skip(f"Python {request.param} is not installed (neither ~/.pyenv/versions/{request.param}.* "
                    f"nor python{request.param} on PATH)")
    return str(future.result())


def test_setup_built_the_venv_on_the_python_asked_for(python, request):
    version = request.node.callspec.params["python"]
    assert identity(python).startswith(f"{version}.")
    venv = Path(python).parents[1]
    assert {p.name for p in venv.glob(".setup-*")} == {".setup-folders", ".setup-lab"}


def own_loopback() -> list[str]:
    """As root: a network namespace of the demo's own, so servers elsewhere on this machine holding the
    demos' fixed ports (a system Mosquitto on 1883, another checkout's demo) cannot collide with it."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return []
    return ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


def test_the_five_demos_run(python):
    done = subprocess.run([*own_loopback(), python, "-m", "labkit.demo", *NAMES], cwd=REPO, env=python_env(),
                          capture_output=True, text=True, timeout=DEMO_TIMEOUT)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    for name in NAMES:
        assert f"=== demo-{name}: ok" in done.stdout, output[-4000:]
    assert "Traceback" not in output


SOAP_MISTAKES = {  # request, faultcode, a word of the faultstring
    "division-by-zero": (soap_call("divide", 10, 0), "Client.DivisionByZero", "Division by zero"),
    "dtd-with-entity": (soap_call("add", "&big;", 1).replace(b"?>", b'?><!DOCTYPE x [<!ENTITY big "123456789">]>', 1),
                        "Client.DTDForbidden", "DTD"),
    "malformed-envelope": (soap_call("add", 1, 2)[:-30], "Client.XMLSyntaxError", ""),
}


def test_soap_answers_mistakes_with_faults(python, spawn, port):
    start_soap_server(spawn, port, python=python)
    for name, (payload, code, needle) in SOAP_MISTAKES.items():
        status, ctype, body = curl_post(port, payload)
        faultcode, faultstring = fault_of(status, ctype, body)
        assert faultcode == code and needle in faultstring, (name, body)
        assert b"123456789" not in body, (name, body)  # the entity was never expanded
    # ... and it keeps serving: a good call after the three mistakes.
    status, _, body = curl_post(port, soap_call("add", 10, 5))
    assert result_of(status, body, "add") == "15"


@pytest.fixture(scope="module")
def lab_capture(tmp_path_factory) -> tuple[Path, dict]:
    """A synthetic capture of the five protocols and the analysis this suite's own Python makes of it."""
    folder = tmp_path_factory.mktemp("pythons-capture")
    pcap = folder / "mix.pcapng"
    write_lab_mix(pcap, 3000)
    done = subprocess.run([sys.executable, "-m", "labkit.analyze", str(pcap), "--json", "--no-files"], cwd=REPO,
                          env=python_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return pcap, json.loads(done.stdout)


def test_the_analyzer_reads_the_same_capture_the_same_way(python, lab_capture, tmp_path):
    pcap, expected = lab_capture
    done = subprocess.run([python, "-m", "labkit.analyze", str(pcap), "--out-dir", str(tmp_path), "--json"],
                          cwd=REPO, env=python_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == expected
    assert json.loads((tmp_path / "mix.json").read_text()) == expected
    assert (tmp_path / "mix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sequenceDiagram" in (tmp_path / "mix.md").read_text()
