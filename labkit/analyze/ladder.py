"""A ladder (sequence) diagram of a capture as a PNG: one vertical line per participant, one arrow per event.

Drawn with Pillow (fast enough to keep the whole analysis quicker than tshark).
TCP handshake and teardown segments are grey and dashed, requests blue,
replies green, and calls the server makes on its own orange.
"""

from __future__ import annotations

from pathlib import Path

from .analysis import Analysis
from .decode_lines import SERVER_INITIATED
from .report import MAX_DIAGRAM_MESSAGES, diagram_events, participants

# Web-safe colours: the picture is saved with the 216-colour web palette (quick, and small files).
COLOURS = {"tcp": (153, 153, 153), "request": (0, 102, 204), "reply": (0, 153, 51), "upcall": (204, 102, 0),
           "text": (51, 51, 51), "muted": (102, 102, 102), "lifeline": (204, 204, 204), "box": (255, 255, 255),
           "outline": (102, 102, 153)}
LEGEND = (("TCP", "tcp"), ("request", "request"), ("reply", "reply"), ("server-initiated", "upcall"))
ROW = 24  # pixels between two arrows
COLUMN = 300  # pixels between two participants
LEFT = 120  # the time column
TOP = 86  # title and participant boxes
FONT_SIZE = 13


def _fonts():
    from PIL import ImageFont

    return ImageFont.load_default(FONT_SIZE), ImageFont.load_default(FONT_SIZE + 3)


def _fit(text: str, font, width: float) -> str:
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _arrow(draw, x1: float, x2: float, y: float, colour, dashed: bool) -> None:
    direction = 1 if x2 > x1 else -1
    tip = x2
    base = x2 - direction * 10
    if dashed:
        x = x1
        while (x - base) * direction < 0:
            end = x + direction * 6
            if (end - base) * direction > 0:
                end = base
            draw.line([(x, y), (end, y)], fill=colour, width=1)
            x += direction * 10
    else:
        draw.line([(x1, y), (base, y)], fill=colour, width=2)
    draw.polygon([(tip, y), (base, y - 5), (base, y + 5)], fill=colour)


def write_png(a: Analysis, path: str | Path, limit: int = MAX_DIAGRAM_MESSAGES) -> Path:
    from PIL import Image, ImageDraw

    events, cut = diagram_events(a, limit)
    ids, order = participants(a, events)
    column = {pid: i for i, (pid, _label) in enumerate(order)}
    ncols = max(len(order), 1)
    nrows = len(events) + (1 if cut else 0)
    font, big = _fonts()
    n = a.conversation_count
    title = f"{a.capture.path.name}: {a.message_count} messages in {n} conversation{'' if n == 1 else 's'}"
    legend_width = sum(font.getlength(t) + 24 for t, _ in LEGEND)
    width = int(max(LEFT + COLUMN * ncols, big.getlength(title) + legend_width + 50))
    height = TOP + ROW * (nrows + 1) + 20
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 10), title, fill=COLOURS["text"], font=big)
    x = width - 10 - legend_width
    for label, colour in LEGEND:  # what the colours mean
        draw.line([(x, 20), (x + 14, 20)], fill=COLOURS[colour], width=3)
        draw.text((x + 18, 20), label, fill=COLOURS[colour], font=font, anchor="lm")
        x += font.getlength(label) + 24

    def x_of(col: int) -> float:
        return LEFT + COLUMN * col + COLUMN / 2

    for pid, label in order:
        x = x_of(column[pid])
        label = _fit(label, font, COLUMN - 30)
        w = font.getlength(label)
        draw.rounded_rectangle([x - w / 2 - 8, 44, x + w / 2 + 8, 70], radius=6, fill=COLOURS["box"],
                               outline=COLOURS["outline"])
        draw.text((x, 57), label, fill=COLOURS["text"], font=font, anchor="mm")
        draw.line([(x, 70), (x, height - 10)], fill=COLOURS["lifeline"], width=1)
    if not order:
        draw.text((LEFT, TOP + ROW), "no messages of the lab's protocols in this capture", fill=COLOURS["text"],
                  font=font)
    draw.text((10, TOP - 8), "time (s)", fill=COLOURS["muted"], font=font)
    for row, e in enumerate(events):
        y = TOP + ROW * (row + 1)
        src = x_of(column[ids[(e["conv"], e["from_client"])]])
        dst = x_of(column[ids[(e["conv"], not e["from_client"])]])
        if e["tcp"]:
            colour, text = COLOURS["tcp"], e["text"]
        else:
            colour = COLOURS["upcall"] if e.get("server_initiated") else \
                COLOURS["request"] if e["from_client"] else COLOURS["reply"]
            text = f"#{e['number']} {e['text'].replace(SERVER_INITIATED, '')}"
        draw.text((10, y), f"{e['time']:.6f}", fill=COLOURS["muted"], font=font, anchor="lm")
        _arrow(draw, src, dst, y, colour, e["tcp"])
        text = _fit(text, font, max(abs(dst - src) - 10, COLUMN - 20))
        draw.text(((src + dst) / 2, y - 3), text, fill=colour, font=font, anchor="md")
    if cut:
        draw.text((10, TOP + ROW * (len(events) + 1)), f"... and {cut} more messages: see the report",
                  fill=COLOURS["muted"], font=font, anchor="lm")
    path = Path(path)
    img.convert("P", palette=Image.Palette.WEB, dither=Image.Dither.NONE).save(path, compress_level=1)
    return path
