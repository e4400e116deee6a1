"""What a capture file says about itself, and the annotated copy: packet comments on the evidence frames.

The lab writes a pcapng section comment on every capture (labkit.capture.comments_for): a scripted demo says
`Demo: ...` and `make capture-<proto>`, a student's own recording says `driven by hand`. The annotated copy
is made by editcap (`-a <frame>:<comment>`, Wireshark 4.0), which Wireshark shows in the packet list and
the packet details (and tshark as `frame.comment`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from labkit import cli

PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
OPT_COMMENT = 1
#: The first section comment of an annotated copy: how a later run knows the file is its own to replace.
ANNOTATED_MARK = "Annotated by labkit.assignment"
#: Seconds editcap may take (a student's capture is small; a lecturer's may not be).
EDITCAP_TIMEOUT = 120
#: Longest packet comment written (Wireshark shows long ones, but a line of the packet list should stay readable).
COMMENT_MAX_CHARS = 400


def section_comments(path: Path) -> list[str]:
    """The comments of a pcapng file's first section header block ([] for pcap, or a file without any)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != PCAPNG_SHB:
                return []
            order = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
            (length,) = struct.unpack(order + "I", head[4:8])
            if not 28 <= length <= 1 << 20:
                return []
            block = head + f.read(length - 12)
    except OSError:
        return []
    out, off = [], 24
    while off + 4 <= len(block) - 4:
        code, size = struct.unpack_from(order + "HH", block, off)
        if code == 0:
            break
        value = block[off + 4:off + 4 + size]
        if code == OPT_COMMENT:
            out.append(value.decode("utf-8", "replace"))
        off += 4 + size + (-size % 4)
    return out


@dataclass(frozen=True)
class Origin:
    """How the lab says the file was made, from its section comments."""

    kind: str  # "scripted demo", "recording", "annotated copy" or "unknown" (no lab comment: any capture tool)
    proto: str | None  # the lab protocol the comment names
    line: str  # one line for people

    @property
    def scripted(self) -> bool:
        return self.kind == "scripted demo"


def origin(path: Path) -> Origin:
    comments = section_comments(path)
    text = "\n".join(comments)
    m = re.search(r"Messaging-protocols lab (capture|recording) of (\w+)", text)
    proto = m.group(2) if m else None
    when = re.search(r"(?:Recorded|Captured): ([^`]+?) with `([^`]+)`", text)
    made = f" ({when.group(2)}, {when.group(1).strip()})" if when else ""
    if ANNOTATED_MARK in text:
        return Origin("annotated copy", proto, f"an annotated copy written by make check{made}")
    if m and m.group(1) == "capture" and "Demo: " in text:
        return Origin("scripted demo", proto, f"the SCRIPTED demo of {proto}{made}, not your own session")
    if m and "driven by hand" in text:
        return Origin("recording", proto, f"your own recording of {proto}{made}")
    return Origin("unknown", proto, "a capture without the lab's comment (another capture tool)")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def free_output(path: Path, ours) -> Path:
    """`path`, or `<stem>-2<suffix>`, ... : never a file someone else wrote (ours(p) says whether p is ours)."""
    candidate, n = path, 1
    while candidate.exists() and not ours(candidate):
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def annotated_path(src: Path, out_dir: Path) -> Path:
    """`<out_dir>/<stem>.annotated.pcapng`, never the source itself and never a file the lab did not write."""
    stem = src.name.removesuffix(".pcapng").removesuffix(".pcap")
    target = out_dir / f"{stem}.annotated.pcapng"
    return free_output(target, lambda p: p.resolve() != src.resolve() and origin(p).kind == "annotated copy")


def annotate(src: Path, dest: Path, notes: dict[int, list[str]], title: str) -> Path:
    """Copy `src` to `dest` with a packet comment on each frame of `notes` (its lines joined) and a section
    comment saying what the comments are. The source is only read."""
    exe = shutil.which("editcap")
    if not exe:
        raise cli.LabError("editcap is not installed (it writes the annotated copy; it comes with tshark): "
                           "sudo apt-get install tshark")
    argv = [exe, "-F", "pcapng", "--capture-comment", f"{ANNOTATED_MARK}: {title}"]
    for frame in sorted(notes):
        text = " | ".join(dict.fromkeys(notes[frame]))
        text = " ".join(text.split())[:COMMENT_MAX_CHARS]
        argv += ["-a", f"{frame}:{text}"]
    partial = dest.with_name(f".partial-{dest.name}")
    done = subprocess.run([*argv, str(src), str(partial)], capture_output=True, text=True, timeout=EDITCAP_TIMEOUT)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        said = " ".join((done.stderr or done.stdout).split())
        raise cli.LabError(f"editcap could not write the annotated copy: {said[:300]}")
    os.replace(partial, dest)
    return dest
