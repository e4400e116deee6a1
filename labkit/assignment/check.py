"""`make check-<proto> STUDENT=<id>`: the student's own capture against their worksheet.

Prints each task as done (with the Wireshark frame numbers that prove it) or not yet (with what is missing
and why), writes the same as Markdown for the report and an annotated copy of the capture beside it. Exit 0
only when every task is done. The checked file is only read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from labkit import cli
from labkit.analyze import CaptureError, analyze

from . import capfile
from .checks import LABELS, Task, protocols_in, run_checks, uses_demo_values
from .values import DEMO, Secret, Values

MD_MARK = "<!-- written by labkit.assignment (make check): safe to replace -->"


@dataclass
class Checked:
    path: Path
    proto: str
    values: Values
    origin: capfile.Origin
    tasks: list[Task]
    problems: list[str] = field(default_factory=list)  # lines that make the capture not count, whatever the tasks
    notes: list[str] = field(default_factory=list)  # lines worth knowing (a truncated end)
    demo_values: bool = False
    analysis: object = None

    @property
    def done(self) -> int:
        return sum(t.done for t in self.tasks)

    @property
    def ok(self) -> bool:
        return not self.problems and all(t.done for t in self.tasks)


def read(path: Path, proto: str):
    """The analysis, or one LabError line: missing file, not a capture, damaged."""
    if not path.exists():
        raise cli.LabError(f"{path} does not exist yet: record your session with `make record-{proto}` first "
                           f"(or name a capture with PCAP=<file>)")
    if not path.is_file():
        raise cli.LabError(f"{path} is not a file: name a capture with PCAP=<file.pcapng>")
    try:
        return analyze(path)
    except CaptureError as e:
        raise cli.LabError(str(e)) from None
    except (OSError, ValueError, IndexError, KeyError, UnicodeError, OverflowError) as e:  # damage the reader missed
        raise cli.LabError(f"{path} cannot be read as a capture ({type(e).__name__}: {e})") from None


def packets(analysis) -> str:
    """How many packets the capture holds ("?" if this analyzer does not say)."""
    return str(getattr(getattr(analysis, "capture", None), "packets", "?"))


def wrong_protocol(analysis, proto: str, student: str, path: Path) -> str | None:
    """One line if the capture holds none of `proto`'s traffic: which protocol it does hold, or none."""
    seen = protocols_in(analysis)
    if proto in seen:
        return None
    cut = next((w for w in analysis.warnings if w.startswith("capture truncated")), None)
    if cut and packets(analysis) == "0":
        return f"{path} holds no whole packet: {cut}"
    if seen:
        other = max(seen, key=seen.get)
        return (f"this capture holds {LABELS[other]} traffic, not {LABELS[proto]}: check it with "
                f"`make check-{other} STUDENT={student} PCAP=...`, or record {proto} with `make record-{proto}`")
    return (f"no {LABELS[proto]} traffic in this capture ({packets(analysis)} packets, none of them the lab's "
            f"protocols): record your session with `make record-{proto}`")


def check(path: Path, proto: str, v: Values, analysis=None) -> Checked:
    analysis = analysis if analysis is not None else read(path, proto)
    wrong = wrong_protocol(analysis, proto, v.student, path)
    if wrong:
        raise cli.LabError(wrong)
    result = Checked(path, proto, v, capfile.origin(path), run_checks(analysis, proto, v), analysis=analysis)
    if result.origin.scripted:
        result.problems.append(f"this is {result.origin.line}: record your own with `make record-{proto}`")
    if uses_demo_values(analysis, proto):
        result.demo_values = True
        shown = ", ".join(str(x) for x in next(iter(DEMO[proto].values())))
        result.notes.append(f"this capture uses the demo's default values ({shown}): your worksheet's values differ "
                            f"(`make assignment-{proto} STUDENT={v.student}`)")
    result.notes += [w for w in analysis.warnings if w.startswith("capture truncated")]
    return result


def frames_text(t: Task) -> str:
    return ("frame " if len(t.frames) == 1 else "frames ") + ", ".join(str(f) for f in t.frames)


def render_text(r: Checked, secret: Secret, written: list[str]) -> str:
    out = [f"=== check-{r.proto} for student {r.values.student} (values key {secret.fingerprint}): {r.path}"]
    if not r.origin.scripted:
        out.append(f"    {r.origin.line}")
    out += [f"    NOTE: {p}" for p in r.problems + r.notes]
    width = max(len(t.en) for t in r.tasks)
    for i, t in enumerate(r.tasks, 1):
        if t.done:
            out.append(f"  [done]    {i}. {t.en:<{width}}  {frames_text(t)}")
        else:
            out.append(f"  [not yet] {i}. {t.en}")
            out.append(f"            {t.hint}")
    verdict = ("complete (selesai)" if r.ok else
               "not yet complete (belum selesai)" + (": the capture does not count, see NOTE" if r.problems else ""))
    out.append(f"=== {r.done} of {len(r.tasks)} tasks done: {verdict}")
    out += [f"    {w}" for w in written]
    return "\n".join(out)


def render_markdown(r: Checked, secret: Secret) -> str:
    out = [MD_MARK, f"# Check of {r.path.name}: {LABELS[r.proto]}, student {r.values.student}", "",
           f"Capture: `{r.path.name}`, {r.origin.line}. Values key `{secret.fingerprint}`. Frame numbers are "
           "Wireshark's.", ""]
    out += [f"> **Note:** {p}\n" for p in r.problems + r.notes]
    out += ["", "| # | Task | Tugas | Result | Frames | What they show |", "| --: | --- | --- | --- | --- | --- |"]
    for i, t in enumerate(r.tasks, 1):
        status = "done (selesai)" if t.done else "not yet (belum)"
        shown = t.evidence if t.done else t.hint
        out.append(f"| {i} | {_md(t.en)} | {_md(t.id)} | {status} | {_frames(t)} | {_md(shown)} |")
    out += ["", f"**{r.done} of {len(r.tasks)} tasks done.**", "", "## Evidence frames / Frame bukti", ""]
    for frame, notes in sorted(evidence_notes(r.tasks).items()):
        out += [f"- frame {frame}: {_md(text)}" for text in dict.fromkeys(notes)]
    return "\n".join(out) + "\n"


def _frames(t: Task) -> str:
    return ", ".join(str(f) for f in t.frames)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def evidence_notes(tasks: list[Task]) -> dict[int, list[str]]:
    notes: dict[int, list[str]] = {}
    for t in tasks:
        for frame, text in t.notes.items():
            notes.setdefault(frame, []).append(text)
    return notes


def write_outputs(r: Checked, secret: Secret, out_dir: Path) -> list[str]:
    """The Markdown and the annotated copy, new files beside the capture (or in out_dir); lines saying where."""
    lines = []
    stem = r.path.name.removesuffix(".pcapng").removesuffix(".pcap")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        md = capfile.free_output(out_dir / f"{stem}.check-{r.values.student}.md",
                                 lambda p: p.read_text(encoding="utf-8", errors="replace").startswith(MD_MARK))
        md.write_text(render_markdown(r, secret), encoding="utf-8")
        lines.append(f"for your report (Markdown): {md}")
    except OSError as e:
        raise cli.LabError(f"cannot write into {out_dir}: {e.strerror}: choose a folder with OUT=<folder>") from None
    notes = evidence_notes(r.tasks)
    if notes:
        dest = capfile.annotated_path(r.path, out_dir)
        try:
            capfile.annotate(r.path, dest, notes, f"make check-{r.proto} STUDENT={r.values.student}: the packet "
                             "comments explain the evidence frames")
            lines.append(f"annotated copy: {dest} (open it in Wireshark: the evidence frames carry packet comments; "
                         f"filter frame.comment)")
        except cli.LabError as e:
            lines.append(f"no annotated copy: {e}")
    return lines
