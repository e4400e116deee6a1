"""`make bench` in a tiny bounded mode: the harness runs end to end and its figures come from real traffic.

No figure is compared with a speed (the machine is shared and noisy): the checks are that each figure
exists, is consistent with its rounds and with the requests the servers logged, and is saved as
table, JSON and chart. Marked `bench`: `make bench` runs them, `make test` leaves them out.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from labkit.bench.core import percentile
from labkit.procs import REPO, python_env

PROTOCOLS = ("rest", "upcall", "mqtt")


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "labkit.bench", "--quick", "--protocols", *PROTOCOLS, "--levels", "1", "2",
         "--mqtt-messages", "300", "--out", str(out)],
        cwd=REPO, env=python_env(), capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done, json.loads((out / "bench.json").read_text())


@pytest.mark.bench
@pytest.mark.timeout(180)
def test_quick_bench_prints_and_saves_the_table(quick_bench):
    out, done, data = quick_bench
    table = (out / "bench.md").read_text()
    assert "| Protocol | Load | Baseline | Ours | Ours / baseline |" in done.stdout
    assert table.strip() in done.stdout.strip()
    for protocol in PROTOCOLS:
        assert f"| {protocol} |" in table
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.bench
@pytest.mark.timeout(180)
def test_quick_bench_shows_progress_on_stderr(quick_bench):
    _, done, data = quick_bench
    steps = [line for line in done.stderr.splitlines() if "round 1/1" in line]
    assert len(steps) == 2 * len(data["rows"])  # one line per round, baseline and ours
    assert "done in" in done.stderr


@pytest.mark.bench
@pytest.mark.timeout(180)
def test_quick_bench_figures_are_measured_not_made_up(quick_bench):
    out, _, data = quick_bench
    rows = data["rows"]
    assert {(r["protocol"], r["load"]) for r in rows} == {
        ("rest", "1 clients"), ("rest", "2 clients"), ("upcall", "1 clients"), ("upcall", "2 clients"),
        ("upcall", "2 clients, callbacks both"), ("mqtt", "QoS 0"), ("mqtt", "QoS 1")}
    for row in rows:
        for side in ("baseline", "ours"):
            figure = row[side]
            (sample,) = figure["rounds"]
            assert sample["count"] > 0 and math.isfinite(figure["rate"]) and figure["rate"] > 0, row
            assert figure["rate"] == sample["rate"]  # one round: the median is that round
            assert 0 < figure["p50_ms"] <= figure["p99_ms"], row
            assert figure["errors"] == 0, row
        assert row["ratio"] == pytest.approx(row["ours"]["rate"] / row["baseline"]["rate"])
    targets = {r["protocol"]: r["target"] for r in rows if r["target"] is not None}
    assert targets == {"rest": 3.0, "upcall": 0.8}  # MQTT: figures for information, no target

    # The requests counted reached our servers: each one is in the server's own log.
    rest_ours = sum(r["ours"]["rounds"][0]["count"] for r in rows if r["protocol"] == "rest")
    assert (out / "logs" / "rest-ours.log").read_text().count('"GET /add?a=2&b=3') >= rest_ours
    upcall = [r for r in rows if r["protocol"] == "upcall"]
    upcall_ours = sum(r["ours"]["rounds"][0]["count"] for r in upcall)
    assert (out / "logs" / "upcall-ours.log").read_text().count("Received from client: c") >= upcall_ours
    assert all(r["ours"]["rounds"][0]["extra"]["callbacks"] > 0 for r in upcall)  # Progress/Done kept
    for row in (r for r in rows if r["protocol"] == "mqtt"):
        assert row["ours"]["rounds"][0]["extra"]["flood_delivered"] == 300


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
