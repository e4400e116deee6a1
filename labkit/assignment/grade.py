"""`make grade SUBMISSIONS=<folder>`: every student's captures against their worksheet, in one table.

The folder holds one capture per student (`<id>.pcapng`, `<id>.rest.pcapng`, ...) or a folder per student
(`<id>/*.pcapng`). Each capture's protocol is read from its lab comment, else from its traffic. The table
(Markdown and CSV, new files in OUT) has a row per student and a column per task: done with its evidence
frames, or not yet. Flags, one line each: identical files, values from another student's worksheet, a scripted
demo, the demo's default values, an unreadable or truncated file; then the run goes on to the next student.
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from labkit import cli

from . import capfile
from .check import Checked, check, evidence_notes, packets, read
from .checks import LABELS, TASK_KEYS, observed, protocols_in, signature
from .values import STUDENT_ID, Secret, values_for

PROTOS = tuple(TASK_KEYS)
CAPTURE_SUFFIXES = (".pcapng", ".pcap", ".cap")


@dataclass
class Submission:
    student: str
    files: list[Path] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    results: dict[str, list[Checked]] = field(default_factory=dict)  # proto -> its checked captures


def _is_capture_name(name: str) -> bool:
    return name.lower().endswith(CAPTURE_SUFFIXES) and not name.startswith(".")


def collect(folder: Path) -> tuple[dict[str, Submission], list[str]]:
    """Students and their capture files, and one line for each entry that is not one."""
    subs: dict[str, Submission] = {}
    stray: list[str] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        raise cli.LabError(f"cannot read the folder {folder}: {e.strerror}") from None
    for entry in entries:
        name = entry.name
        if entry.is_symlink():
            stray.append(f"skipped {name}: a symbolic link (put the file itself in the folder)")
            continue
        if entry.is_dir():
            if not STUDENT_ID.fullmatch(name):
                stray.append(f"skipped folder {name}/: not a student id (letters, digits, - and _)")
                continue
            sub = subs.setdefault(name, Submission(name))
            for inner in sorted(os.scandir(entry.path), key=lambda e: e.name):
                if inner.is_file(follow_symlinks=False) and _is_capture_name(inner.name):
                    sub.files.append(Path(inner.path))
                else:
                    stray.append(f"skipped {name}/{inner.name}: not a capture file (.pcapng, .pcap or .cap)")
            continue
        student = name.split(".", 1)[0]
        if not entry.is_file() or not _is_capture_name(name):
            stray.append(f"skipped {name}: not a capture file (.pcapng, .pcap or .cap)")
        elif not STUDENT_ID.fullmatch(student):
            stray.append(f"skipped {name}: its name does not start with a student id (e.g. 2546000082.pcapng)")
        else:
            subs.setdefault(student, Submission(student)).files.append(Path(entry.path))
    return subs, stray


def grade(folder: Path, out_dir: Path, secret: Secret, annotate: bool = False, say=print) -> dict:
    if not folder.is_dir():
        raise cli.LabError(f"SUBMISSIONS={folder} is not a folder: give the folder of the students' captures")
    subs, stray = collect(folder)
    if not subs:
        raise cli.LabError(f"{folder} holds no capture named by a student id (<id>.pcapng or <id>/*.pcapng)")
    started = time.monotonic()
    values = {s: values_for(s, secret) for s in subs}
    owners: dict[str, set[str]] = {}  # a value seen on the wire -> whose worksheets hold it
    for s, v in values.items():
        for proto in PROTOS:
            for token in signature(v, proto):
                owners.setdefault(token, set()).add(s)
    digest: dict[Path, str] = {}
    same: dict[str, list[tuple[str, Path]]] = {}  # SHA-256 -> the files with it
    for sub in subs.values():
        for path in sub.files:
            try:
                digest[path] = capfile.sha256(path)
            except OSError:
                continue  # reported when it is read
            same.setdefault(digest[path], []).append((sub.student, path))
    say(f"=== grade: {sum(len(s.files) for s in subs.values())} captures of {len(subs)} students in {folder} "
        f"(values key {secret.fingerprint})")
    for line in stray:
        say(f"    {line}")
    if annotate:
        (out_dir / "annotated").mkdir(parents=True, exist_ok=True)
    for student in sorted(subs):
        sub = subs[student]
        for path in sub.files:
            twins = [(s, p) for s, p in same.get(digest.get(path, ""), []) if p != path]
            _grade_file(sub, path, folder, values[student], owners, twins, out_dir if annotate else None)
        done = {p: _merged(rs) for p, rs in sub.results.items()}
        summary = ", ".join(f"{p} {sum(d for d, _f in done[p].values())}/{len(TASK_KEYS[p])}" for p in PROTOS
                            if p in done) or "nothing gradable"
        say(f"--- {student}: {summary}")
        for flag in sub.flags:
            say(f"    FLAG {flag}")
    md, csv_path = write_table(subs, out_dir, folder, secret, stray)
    took = time.monotonic() - started
    say(f"=== grade: table {md} and {csv_path} ({took:.1f} s)")
    return {"students": len(subs), "seconds": took, "markdown": md, "csv": csv_path}


def _grade_file(sub: Submission, path: Path, folder: Path, v, owners, twins, annotate_dir: Path | None) -> None:
    name = path.relative_to(folder)
    if twins:
        shown = ", ".join(str(p.relative_to(folder)) for _s, p in twins)
        sub.flags.append(f"{name}: identical to {shown} (same SHA-256)")
    try:
        analysis = read(path, "the protocol")
    except cli.LabError as e:
        sub.flags.append(f"{name}: unreadable: {e}")
        return
    org = capfile.origin(path)
    seen = protocols_in(analysis)
    proto = org.proto if org.proto in seen else (max(seen, key=seen.get) if seen else None)
    if proto is None:
        sub.flags.append(f"{name}: no traffic of the lab's protocols ({packets(analysis)} packets)")
        return
    try:
        result = check(path, proto, v, analysis)
    except cli.LabError as e:
        sub.flags.append(f"{name}: {e}")
        return
    sub.results.setdefault(proto, []).append(result)
    if org.scripted:
        sub.flags.append(f"{name}: a scripted demo capture (make capture-{proto}), not the student's own session")
    elif result.demo_values:
        sub.flags.append(f"{name}: uses the demo's default values, not the worksheet's")
    for note in result.notes:
        if note.startswith("capture truncated"):
            sub.flags.append(f"{name}: truncated: {note.removeprefix('capture truncated: ')}")
    mine = signature(v, proto)
    foreign = sorted({s for token in observed(analysis, proto) - mine for s in owners.get(token, ())
                      if s != sub.student and sub.student not in owners[token]})
    if foreign:
        whose = ", ".join(foreign)
        own = " and none of the student's own" if not (observed(analysis, proto) & mine) else ""
        sub.flags.append(f"{name}: holds {LABELS[proto]} values of {whose}'s worksheet{own}")
    if annotate_dir is not None and any(t.done for t in result.tasks):
        dest_dir = annotate_dir / "annotated" / sub.student
        dest_dir.mkdir(parents=True, exist_ok=True)
        try:
            capfile.annotate(path, capfile.annotated_path(path, dest_dir), evidence_notes(result.tasks),
                             f"make grade, student {sub.student}, {proto}")
        except cli.LabError as e:
            sub.flags.append(f"{name}: no annotated copy: {e}")


def _merged(results: list[Checked]) -> dict[str, tuple[bool, str]]:
    """task key -> (done, frames) over all of one protocol's captures of a student: done in any counts."""
    out: dict[str, tuple[bool, str]] = {}
    for r in results:
        counts = not r.origin.scripted
        for t in r.tasks:
            if t.done and counts and not out.get(t.key, (False, ""))[0]:
                prefix = f"{r.path.name}: " if len(results) > 1 else ""
                out[t.key] = (True, prefix + " ".join(str(f) for f in t.frames))
            out.setdefault(t.key, (False, ""))
    return out


def _cells(sub: Submission) -> list[str]:
    cells = []
    for proto in PROTOS:
        merged = _merged(sub.results[proto]) if proto in sub.results else None
        for key in TASK_KEYS[proto]:
            if merged is None:
                cells.append("-")
            else:
                done, frames = merged.get(key, (False, ""))
                cells.append(f"done {frames}" if done else "not yet")
    return cells


def write_table(subs: dict[str, Submission], out_dir: Path, folder: Path, secret: Secret, stray: list[str]):
    columns = [f"{p}:{k}" for p in PROTOS for k in TASK_KEYS[p]]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise cli.LabError(f"cannot write the table into {out_dir}: {e.strerror}: choose OUT=<folder>") from None
    md_path = capfile.free_output(out_dir / "grades.md", lambda _p: False)
    csv_path = capfile.free_output(out_dir / "grades.csv", lambda _p: False)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["student", *columns, "done", "tasks", "flags"])
    rows = []
    for student in sorted(subs):
        sub = subs[student]
        cells = _cells(sub)
        done = sum(c.startswith("done") for c in cells)
        total = sum(c != "-" for c in cells)
        writer.writerow([student, *cells, done, total, " | ".join(sub.flags)])
        rows.append((student, cells, done, total, sub.flags))
    csv_path.write_text(buf.getvalue(), encoding="utf-8")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = [f"# Grades: {folder.name}", "",
          f"{len(subs)} students, graded {when}, values key `{secret.fingerprint}`. A cell is `done <frames>` "
          "(Wireshark frame numbers of the evidence), `not yet`, or `-` (no capture of that protocol).", "",
          "## Summary", "", "| student | " + " | ".join(PROTOS) + " | done | flags |",
          "| --- | " + " | ".join("--:" for _ in PROTOS) + " | --: | --: |"]
    for student, cells, done, total, flags in rows:
        per, i = [], 0
        for proto in PROTOS:
            mine = cells[i:i + len(TASK_KEYS[proto])]
            i += len(mine)
            per.append("-" if mine[0] == "-" else f"{sum(c.startswith('done') for c in mine)}/{len(mine)}")
        md.append(f"| {student} | " + " | ".join(per) + f" | {done}/{total} | {len(flags) or ''} |")
    md += ["", "## Task by task", "",
          "| student | " + " | ".join(columns) + " | done | flags |",
          "| --- | " + " | ".join("---" for _ in columns) + " | --: | --- |"]
    for student, cells, done, total, flags in rows:
        md.append(f"| {student} | " + " | ".join(cells) + f" | {done}/{total} | {len(flags) or ''} |")
    md += ["", "## Flags", ""]
    for student, _c, _d, _t, flags in rows:
        md += [f"- {student}: {f}" for f in flags]
    md += [f"- (folder) {line}" for line in stray]
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return md_path, csv_path
