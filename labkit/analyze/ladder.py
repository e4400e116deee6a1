"""A ladder (sequence) diagram of a capture as a PNG: one vertical line per participant, one arrow per event.

Drawn with matplotlib's object API (no pyplot, no display needed). TCP
handshake and teardown segments are grey and dashed, requests blue, replies
green, and calls the server makes on its own orange.
"""

from __future__ import annotations

from pathlib import Path

from .analysis import Analysis
from .report import MAX_DIAGRAM_MESSAGES, diagram_events, participants

COLOURS = {"tcp": "#888888", "request": "#1f5fbf", "reply": "#2e8b57", "upcall": "#d2691e"}
ROW_INCHES = 0.34
COLUMN_INCHES = 3.2


def write_png(a: Analysis, path: str | Path, limit: int = MAX_DIAGRAM_MESSAGES) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    events, cut = diagram_events(a, limit)
    ids, order = participants(a, events)
    column = {pid: i for i, (pid, _label) in enumerate(order)}
    ncols = max(len(order), 1)
    nrows = len(events) + (1 if cut else 0)
    width = max(7.0, COLUMN_INCHES * ncols + 1.6)
    height = max(2.5, ROW_INCHES * (nrows + 3))
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(-1.1, ncols - 0.4)
    ax.set_ylim(nrows + 0.8, -2.2)
    ax.axis("off")
    title = f"{a.capture.path.name}: {len(a.messages)} messages in {len(a.conversations)} conversations"
    ax.text(-1.05, -1.7, title, fontsize=11, fontweight="bold", va="center", ha="left")
    for pid, label in order:
        x = column[pid]
        ax.text(x, -0.9, label, ha="center", va="center", fontsize=9, fontweight="bold",
                bbox={"boxstyle": "round,pad=0.3", "fc": "#eef2f8", "ec": "#667788"})
        ax.plot([x, x], [-0.5, nrows + 0.5], color="#99a", linewidth=1, zorder=0)
    if not order:
        ax.text(0, 0.5, "no messages of the lab's protocols in this capture", ha="left", fontsize=10)
    ax.text(-1.05, -0.3, "time (s)", fontsize=8, color="#555", ha="left")
    for row, e in enumerate(events):
        src = column[ids[(e["conv"], e["from_client"])]]
        dst = column[ids[(e["conv"], not e["from_client"])]]
        if e["tcp"]:
            colour, style, text = COLOURS["tcp"], "--", e["text"]
        else:
            colour = COLOURS["upcall"] if e.get("server_initiated") else \
                COLOURS["request"] if e["from_client"] else COLOURS["reply"]
            style, text = "-", f"#{e['number']} {e['text']}"
        ax.text(-1.05, row, f"{e['time']:.6f}", fontsize=7, color="#555", va="center", ha="left")
        if src == dst:  # client and server drawn on one line (should not happen; keep it visible)
            ax.plot([src, src + 0.3, src + 0.3, src], [row - 0.2, row - 0.2, row + 0.2, row + 0.2], color=colour)
        else:
            ax.annotate("", xy=(dst, row), xytext=(src, row),
                        arrowprops={"arrowstyle": "-|>", "color": colour, "linestyle": style, "linewidth": 1.1,
                                    "shrinkA": 0, "shrinkB": 0})
        mid = (src + dst) / 2
        ax.text(mid, row - 0.12, text, ha="center", va="bottom", fontsize=7.5, color=colour,
                clip_on=False)
    if cut:
        ax.text(-1.05, len(events) + 0.2, f"... {cut} more events: see the report", fontsize=8, color="#555")
    path = Path(path)
    fig.savefig(path, dpi=100, facecolor="white")
    return path
