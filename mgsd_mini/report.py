"""Evaluation outputs: the rich table, atomic JSON / JSONL writers and a PNG bar chart.

The plot is drawn with Pillow (already a dependency through the image processor), so evaluation
needs no plotting library: grouped bars, one group per (task, level), one bar per model, a grey
tick for the obstacle-blind baseline where there is one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.table import Table

from puzzles.export import umask, write_text

from mgsd_mini.evaluate import PERCEPTION_MODES


# ----------------------------------------------------------------------------- files


def write_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically (one implementation for the project: puzzles.export.write_text)."""
    write_text(Path(path), text)


def write_json(path: str | Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2) + "\n")


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


# ----------------------------------------------------------------------------- table


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def table(summary: dict) -> Table:
    """One rich table per summary: a row per task (its macro over levels), then a row per level."""
    macro = summary["macro"]
    perception = summary["mode"] in PERCEPTION_MODES
    name = summary["model"] + "".join(f" + {a}" for a in summary.get("adapters", []))
    if perception:
        title = (f"{name} · perception · macro: question accuracy {_pct(macro['success'])} %, "
                 f"all correct {_pct(macro['all_correct'])} %")
        cols = ["images", "questions", "accuracy %", "all correct %"]
    else:
        title = (f"{name} · {summary['mode']} · macro: success {_pct(macro['success'])} %, "
                 f"optimal {_pct(macro['optimal'])} %, detour success {_pct(macro['detour_success'])} %")
        cols = ["cases", "parse %", "success %", "optimal %", "illegal %", "blind %", "detour %", "detour n", "restated %"]
    t = Table(title=title, title_justify="left")
    t.add_column("task")
    t.add_column("level", justify="right")
    for c in cols:
        t.add_column(c, justify="right")

    def cells(s: dict, level: bool) -> list[str]:
        if perception:
            return [str(s["n"]) if level else "", str(s["n_questions"]) if level else "",
                    _pct(s["success"]), _pct(s["all_correct"])]
        return [str(s["n"]) if level else "", _pct(s["parse_rate"]), _pct(s["success"]), _pct(s["optimal"]),
                _pct(s["illegal_rate"]), _pct(s["blind_success"]), _pct(s["detour_success"]),
                str(s["n_detour"]) if level else "", _pct(s.get("restated"))]

    for task, ts in summary["tasks"].items():
        t.add_row(f"[bold]{task}[/bold]", "all", *cells(ts, level=False), style="bold")
        for level, ls in ts["levels"].items():
            t.add_row("", level, *cells(ls, level=True))
    return t


def print_tables(summaries: list[dict], console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped or logged: do not squash the columns to 80 characters
            console = Console(width=max(console.width, 120))
    for s in summaries:
        console.print(table(s))


# ----------------------------------------------------------------------------- plot

SHORT = {"frozenlake": "FL", "maze": "Maze", "minibehaviour": "MB"}  # x-axis labels: task level
# tab10: distinct colours for up to ten models (reproduce.py plots eight rows)
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (188, 189, 34), (23, 190, 207), (127, 127, 127)]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # FreeType build of Pillow >= 10.1
    except TypeError:  # pragma: no cover - older Pillow without sizes
        return ImageFont.load_default()


def _panel(draw, box, title, groups, series, refs, font, small):
    """Grouped bars in `box` = (x0, y0, x1, y1): values in [0, 1] (None = no bar), refs = grey ticks."""
    x0, y0, x1, y1 = box
    left, top, bottom = x0 + 44, y0 + 26, y1 - 34
    draw.text((x0 + 4, y0 + 4), title, fill="black", font=font)
    for k in range(0, 11, 2):  # y axis: 0..100 %
        y = bottom - (bottom - top) * k / 10
        draw.line((left, y, x1 - 8, y), fill=(225, 225, 225))
        draw.text((x0 + 4, y - 7), f"{10 * k:>3}", fill="black", font=small)
    draw.line((left, top, left, bottom), fill="black")
    draw.line((left, bottom, x1 - 8, bottom), fill="black")
    gw = (x1 - 8 - left) / max(1, len(groups))
    bw = 0.8 * gw / max(1, len(series))
    for g, label in enumerate(groups):
        gx = left + g * gw + 0.1 * gw
        for m, values in enumerate(series):
            v = values[g]
            if v is None:
                continue
            bx = gx + m * bw
            y = min(bottom - (bottom - top) * v, bottom - 2)  # a 0 % bar still shows as a stub
            draw.rectangle((bx, y, bx + bw - 2, bottom), fill=PALETTE[m % len(PALETTE)])
        if refs is not None and refs[g] is not None:
            y = bottom - (bottom - top) * refs[g]
            draw.line((gx - 2, y, gx + 0.8 * gw + 2, y), fill=(90, 90, 90), width=3)
        draw.text((left + g * gw + gw / 2, bottom + 6), label, fill="black", font=small, anchor="ma")


def plot(summaries: list[dict], labels: list[str], path: str | Path) -> None:
    """Bar chart of success per (task, level) for one or several models (side by side), PNG at `path`.

    Planning modes draw two panels, success and detour success (the puzzles the obstacle-blind plan
    fails), with the blind baseline as a grey tick; perception draws question accuracy and all-correct.
    """
    first = summaries[0]
    keys = [(t, lv) for t, ts in first["tasks"].items() for lv in ts["levels"]]
    groups = [f"{SHORT.get(t, t[:6])} {lv}" for t, lv in keys]
    if first["mode"] in PERCEPTION_MODES:
        panels = [("question accuracy %", "success", None), ("all questions right %", "all_correct", None)]
    else:
        panels = [("success %  (grey: obstacle-blind plan)", "success", "blind_success"),
                  ("detour success %  (puzzles the blind plan fails)", "detour_success", None)]

    def value(s, t, lv, key):
        return s["tasks"].get(t, {}).get("levels", {}).get(lv, {}).get(key)

    width = max(480, 60 + len(keys) * (30 + 22 * len(summaries)))
    panel_h, legend_h = 260, 24 * len(summaries) + 12
    img = Image.new("RGB", (width, panel_h * len(panels) + legend_h), "white")
    draw = ImageDraw.Draw(img)
    font, small = _font(15), _font(12)
    for p, (title, key, ref_key) in enumerate(panels):
        series = [[value(s, t, lv, key) for t, lv in keys] for s in summaries]
        refs = [value(first, t, lv, ref_key) for t, lv in keys] if ref_key else None
        _panel(draw, (0, p * panel_h, width, (p + 1) * panel_h), title, groups, series, refs, font, small)
    y = panel_h * len(panels) + 6
    for m, label in enumerate(labels):
        draw.rectangle((12, y + 24 * m, 28, y + 24 * m + 14), fill=PALETTE[m % len(PALETTE)])
        draw.text((36, y + 24 * m), label, fill="black", font=small)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format="PNG")
    os.replace(tmp, path)
