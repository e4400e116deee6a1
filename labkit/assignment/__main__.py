"""Command line of the assignment: worksheet, check and grade (what mk/assignment.mk runs).

  python -m labkit.assignment worksheet <proto> --student <id>
  python -m labkit.assignment check <proto> --student <id> [--pcap FILE] [--out DIR]
  python -m labkit.assignment grade <folder> [--out DIR] [--annotate]
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from labkit import cli
from labkit.procs import REPO

from .check import check, read, render_text, write_outputs
from .checks import TASK_KEYS
from .grade import grade
from .values import check_id, course_secret, values_for
from .worksheet import render

PROTOS = tuple(TASK_KEYS)
CAPTURES = REPO / "captures"
GRADES = REPO / "grades"


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m labkit.assignment", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worksheet", help="print a student's worksheet for one protocol")
    w.add_argument("protocol", choices=PROTOS, metavar="PROTO", help=", ".join(PROTOS))
    w.add_argument("--student", required=True, help="the student's id (NIM)")
    c = sub.add_parser("check", help="check a capture against the student's worksheet")
    c.add_argument("protocol", choices=PROTOS, metavar="PROTO", help=", ".join(PROTOS))
    c.add_argument("--student", required=True, help="the student's id (NIM)")
    c.add_argument("--pcap", type=Path, help="the capture (default: the latest, <captures>/<proto>.pcapng)")
    c.add_argument("--captures", type=Path, default=CAPTURES, help="where make record-<proto> writes (captures/)")
    c.add_argument("--out", type=Path,
                   help="where the Markdown and the annotated copy go (default: beside the capture)")
    g = sub.add_parser("grade", help="grade a folder of students' captures")
    g.add_argument("folder", type=Path, help="<id>.pcapng files or <id>/ folders of captures")
    g.add_argument("--out", type=Path, help="folder for grades.md and grades.csv (default: grades/<folder>-<time>/)")
    g.add_argument("--annotate", action="store_true", help="also write an annotated copy of every capture")
    args = ap.parse_args()

    secret = course_secret()
    if args.command == "worksheet":
        print(render(args.protocol, values_for(args.student, secret), secret), end="")
        return 0
    if args.command == "check":
        student = check_id(args.student)
        path = args.pcap or args.captures / f"{args.protocol}.pcapng"
        if args.pcap is None and not path.exists():
            raise cli.LabError(f"no recording yet ({path} does not exist): record your session with "
                               f"`make record-{args.protocol}`, then `make check-{args.protocol} STUDENT={student}`")
        analysis = read(path, args.protocol)
        result = check(path, args.protocol, values_for(student, secret), analysis)
        written = write_outputs(result, secret, args.out or path.parent)
        print(render_text(result, secret, written))
        return 0 if result.ok else 1
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = args.out or GRADES / f"{args.folder.resolve().name or 'submissions'}-{stamp}"
    grade(args.folder, out, secret, annotate=args.annotate)
    return 0


if __name__ == "__main__":
    cli.run(main)
