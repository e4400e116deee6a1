"""The Markdown report's Mermaid diagram draws in the real Mermaid, not only by the look of its text.

labkit.analyze.mermaid_render runs npm's `mermaid` (pinned in labkit/analyze/mermaid/package-lock.json,
installed by `npm ci` on first use) inside Debian's chromium, headless through playwright-core.
The tests compare what Mermaid drew (arrow texts, participant boxes) with the report's block.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from labkit import cli
from labkit.analyze import analyze
from labkit.analyze import mermaid_render as mr
from labkit.analyze.report import markdown, mermaid
from labkit.analyze.synth import CaptureWriter, TcpFlow, write_lab_mix

ARROW = re.compile(r"^\s+P\d+(-->>|->>|-\))P\d+: (.*)$")
PARTICIPANT = re.compile(r"^\s+participant P\d+ as (.*)$")
ENTITIES = {"#35;": "#", "#59;": ";", "#lt;": "<", "#gt;": ">", "#quot;": '"'}


@pytest.fixture(scope="session")
def renderer():
    try:
        mr.ensure_tools()
    except cli.LabError as e:
        if os.geteuid() != 0:
            pytest.skip(f"Mermaid check skipped: {e}")
        pytest.fail(f"{e} (`make setup-test` installs nodejs, npm and chromium)")
    return mr.render


def unescape(text: str) -> str:
    for code, ch in ENTITIES.items():
        text = text.replace(code, ch)
    return text


def drawn_like_written(diagram: str, result: dict) -> None:
    assert result["ok"], result.get("error")
    lines = diagram.splitlines()
    arrows = [unescape(m.group(2)) for line in lines if (m := ARROW.match(line))]
    assert arrows and result["messages"] == arrows
    names = {unescape(m.group(1)) for line in lines if (m := PARTICIPANT.match(line))}
    assert set(result["participants"]) == names


def test_report_diagram_of_every_protocol_renders_each_arrow_and_participant(renderer, tmp_path):
    pcap = tmp_path / "mix.pcapng"
    write_lab_mix(pcap, 400)
    report = markdown(analyze(pcap))
    diagram = mr.mermaid_block(report)
    png = tmp_path / "mix.png"
    result = renderer(diagram, png=png)
    drawn_like_written(diagram, result)
    assert {"SYN", "SYN-ACK", "ACK"} <= set(result["messages"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_text_that_is_mermaid_syntax_is_drawn_as_text(renderer, tmp_path):
    awkward = ['a;b #1 <tag> "quoted"', "%% not a comment", "end", "x->>y: z", "naïve ✓ 温度", "note over A: hi"]
    pcap = tmp_path / "awkward.pcap"
    with CaptureWriter(pcap) as out:
        flow = TcpFlow(out, ("10.0.0.1", 40000), ("10.0.0.2", 2222))
        t = flow.handshake(0.0)
        for text in awkward:
            t = flow.data(t + 0.001, True, text.encode() + b"\n")
            t = flow.data(t + 0.001, False, b"Echo: " + text.encode() + b"\n")
        flow.close(t + 0.001)
    diagram = mermaid(analyze(pcap))
    result = renderer(diagram)
    drawn_like_written(diagram, result)
    drawn = " | ".join(result["messages"])
    for text in awkward:
        assert text in drawn


def test_a_broken_diagram_is_reported_with_mermaids_error(renderer):
    result = renderer("sequenceDiagram\n    A->>: no receiver\n")
    assert not result["ok"] and "Parse error" in result["error"]


def test_the_picture_in_docs_is_a_rendered_png():
    doc = (Path(mr.TOOL_DIR).parents[2] / "docs" / "analyze.md").read_text()
    m = re.search(r"!\[[^\]]*Mermaid[^\]]*\]\((analyze-[a-z]+\.png)\)", doc)
    assert m, "docs/analyze.md shows a rendered Mermaid picture"
    assert (Path(mr.TOOL_DIR).parents[2] / "docs" / m.group(1)).read_bytes()[:4] == b"\x89PNG"
