"""`python -m labkit.analyze <capture>`: print the analysis of a pcap/pcapng and write it beside the capture.

Files written next to the capture (or into --out-dir): <name>.md (Markdown with a Mermaid
sequence diagram), <name>.png (ladder diagram) and <name>.json (everything, for other tools).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path

from labkit.cli import LabError, run

from . import report, tls
from .analysis import analyze
from .capture import CaptureError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m labkit.analyze",
        description="Analyse a pcap or pcapng capture of the lab's protocols (HTTP/REST, SOAP, MQTT and the "
                    "line protocol): hosts, conversations, handshakes, every message, latency and bytes.")
    p.add_argument("capture", help="the .pcap or .pcapng file")
    p.add_argument("--out-dir", type=Path, help="where to write <name>.md/.png/.json (default: beside the capture)")
    p.add_argument("--no-files", action="store_true", help="only print the report, write no files")
    p.add_argument("--no-png", action="store_true", help="write the Markdown and JSON but not the PNG")
    p.add_argument("--all", action="store_true",
                   help=f"list every message even past {report.MAX_LISTED_MESSAGES} (the JSON always has all)")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the text report")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show a progress bar on stderr (default: only when stderr is a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")
    return p


class Progress:
    """tqdm bars on stderr: the bytes of the capture read, then the connections decoded."""

    def __init__(self, total_bytes: int, enabled: bool):
        self.enabled = enabled
        self.bar = self._bar("reading", total_bytes, "B", True) if enabled else None

    @staticmethod
    def _bar(desc: str, total: int, unit: str, scale: bool):
        from tqdm import tqdm

        return tqdm(total=total, unit=unit, unit_scale=scale, desc=desc, file=sys.stderr, mininterval=0.2,
                    leave=False, dynamic_ncols=True)

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None:
            if self.bar.total != total:
                self.bar.total = total
            self.bar.update(done - self.bar.n)

    def stage(self, name: str, total: int) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = self._bar(name, total, " connections", False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A short-lived command that builds millions of small objects and no reference cycles worth
    # collecting: the cyclic garbage collector would only walk them again and again.
    gc.disable()
    path = Path(args.capture)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    try:
        size = path.stat().st_size if path.is_file() else 0
    except OSError:
        size = 0
    bar = Progress(size, bool(show))
    out_dir = args.out_dir or path.parent
    spill_dir = out_dir if not args.no_files and out_dir.is_dir() and os.access(out_dir, os.W_OK) else None
    try:
        # bounded memory: past a lab-sized capture the full lists go to temporary files (spill.py)
        # every message and connection, also those a big capture does not keep: passwords in clear, TLS handshakes
        credentials, handshakes = tls.Credentials(), tls.Handshakes()
        analysis = analyze(path, progress=bar if bar.enabled else None, stage=bar.stage if bar.enabled else None,
                           keep_messages=False, spill_dir=spill_dir, all_text=args.all, on_message=credentials.message,
                           on_conversation=handshakes.conversation)
        analysis.memo["credentials"], analysis.memo["handshakes"] = credentials.found, handshakes.found
    except CaptureError as e:
        raise LabError(str(e), code=2) from None
    finally:
        bar.close()
    for w in analysis.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        sys.stdout.flush()
        report.write_json(analysis, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        report.write_text(analysis, sys.stdout, max_messages=0 if args.all else report.MAX_LISTED_MESSAGES)
    if not args.no_files:
        written = ReportFiles(analysis, out_dir, path, png=not args.no_png).write()
        if written and not args.json:
            sys.stdout.write(f"\nWritten: {', '.join(written)}\n")
    return 0


class ReportFiles:
    """Writes <name>.json, <name>.md and <name>.png beside the capture (or into `out_dir`).

    A folder we cannot write to is a warning, not a crash.
    """

    def __init__(self, analysis, out_dir: Path, capture: Path, png: bool = True):
        self.analysis = analysis
        self.out_dir = out_dir
        stem = capture.name.rsplit(".", 1)[0] if "." in capture.name else capture.name
        self.paths = {kind: out_dir / f"{stem}.{kind}" for kind in ("json", "md", "png") if png or kind != "png"}

    def write(self) -> list[str]:
        """Write the files; returns those written."""
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.paths["json"], "wb") as f:
                report.write_json(self.analysis, f)
            png = self.paths.get("png")
            if png is not None:
                from .ladder import write_png

                write_png(self.analysis, png)
            self.paths["md"].write_text(report.markdown(self.analysis, png.name if png else None), encoding="utf-8")
        except OSError as e:
            print(f"warning: cannot write the report files into {self.out_dir}: {e.strerror or e}", file=sys.stderr)
            return []
        return [str(p) for p in self.paths.values()]


def run_and_leave() -> None:
    """Run like every lab script (labkit.cli.run), but skip freeing a big analysis object by object at exit."""

    def main_then_leave() -> int:
        code = main()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # everything is written and flushed: tearing down the heap would only cost time

    run(main_then_leave)


if __name__ == "__main__":
    run_and_leave()
