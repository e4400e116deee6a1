"""Render a report's Mermaid diagram with the real mermaid library, to prove it draws (and to draw it).

`python -m labkit.analyze.mermaid_render <report.md> [--png out.png] [--svg out.svg]` takes the first
```mermaid block of a Markdown report and renders it with npm's `mermaid` inside Debian's chromium,
driven headless by playwright-core (labkit/analyze/mermaid/render.mjs; versions pinned in its
package-lock.json). The npm packages are installed on first use with `npm ci` into
labkit/analyze/mermaid/node_modules (git-ignored); no browser is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from labkit import cli

TOOL_DIR = Path(__file__).with_name("mermaid")
RENDER_SCRIPT = TOOL_DIR / "render.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
#: Seconds for `npm ci` (a first install downloads about 100 packages) and for one rendering.
NPM_TIMEOUT = 600
RENDER_TIMEOUT = 120
BLOCK = re.compile(r"^```mermaid\n(.*?)^```", re.MULTILINE | re.DOTALL)


def ensure_tools() -> None:
    """node, chromium and the pinned npm packages; installs the packages once (`npm ci`)."""
    for tool, package in (("node", "nodejs"), ("npm", "npm")):
        if not shutil.which(tool):
            raise cli.LabError(f"{tool} is not installed (the Mermaid check needs it): `sudo apt-get install "
                               f"{package}`, or `make setup-test`")
    if not Path(CHROMIUM).exists():
        raise cli.LabError(f"chromium is not installed at {CHROMIUM}: `sudo apt-get install chromium`, "
                           "or `make setup-test`")
    stamp = TOOL_DIR / "node_modules" / ".package-lock.json"
    lock = TOOL_DIR / "package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    done = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=TOOL_DIR,
                          capture_output=True, text=True, timeout=NPM_TIMEOUT)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise cli.LabError(f"`npm ci` in {TOOL_DIR} failed: {last[-1] if last else done.returncode}")


def mermaid_block(markdown: str) -> str:
    """The first ```mermaid block of a Markdown text."""
    m = BLOCK.search(markdown)
    if not m:
        raise cli.LabError("no ```mermaid block in this Markdown")
    return m.group(1)


def render(diagram: str, png: Path | None = None, svg: Path | None = None) -> dict:
    """{"ok": True, "messages": [arrow texts], "participants": [...]} or {"ok": False, "error": "..."}."""
    ensure_tools()
    with tempfile.TemporaryDirectory(prefix="lab-mermaid-") as tmp:
        source = Path(tmp) / "diagram.mmd"
        source.write_text(diagram, encoding="utf-8")
        argv = ["node", str(RENDER_SCRIPT), str(source)]
        if png:
            argv += ["--png", str(png)]
        if svg:
            argv += ["--svg", str(svg)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=RENDER_TIMEOUT,
                              env={**os.environ, "CHROMIUM": CHROMIUM})
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise cli.LabError(f"the Mermaid renderer failed: {done.stderr.strip()[-500:] or done.returncode}")
    return json.loads(lines[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, help="a Markdown report written by `make analyze` (or a .mmd file)")
    ap.add_argument("--png", type=Path, help="write the picture here")
    ap.add_argument("--svg", type=Path, help="write the SVG here")
    args = ap.parse_args()
    text = args.report.read_text(encoding="utf-8")
    diagram = text if args.report.suffix == ".mmd" else mermaid_block(text)
    result = render(diagram, args.png, args.svg)
    if not result["ok"]:
        raise cli.LabError(f"Mermaid cannot draw it: {result['error']}")
    print(f"rendered: {len(result['participants'])} participants, {len(result['messages'])} arrows"
          + (f" -> {args.png}" if args.png else ""))
    return 0


if __name__ == "__main__":
    cli.run(main)
