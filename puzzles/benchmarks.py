"""Importers for the public benchmark formats (see shared/benchmarks/README.md) into our states.

- VSP FrozenLake maps: `levelN/table/i.txt` (Markdown-like table, 1-based labels, @ start, * goal,
  # hole, _ frozen) with the rendered map at `levelN/img/i.png`.
- VisualPlanning records: `<task>/<split>_*.jsonl` lines whose `meta` defines the puzzle
  (frozenlake: gym letter layout + flat start/target indices; minibehaviour: [r, c] positions and
  the 6 table cells; maze, inferred from the evaluator: layout of {north, south, west, east} wall
  flags + flat indices). These ship no images.

Each importer yields `Imported` items; the records get our solver's plan and the source file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from puzzles import get_task


@dataclass
class Imported:
    task: str
    level: int
    split: str
    id: str
    state: dict
    source: str                 # file (and line) the puzzle came from, relative to the import root
    image: Path | None = None   # the benchmark's own image, if it ships one


# --------------------------------------------------------------------------------------- VSP

_VSP_SYMBOLS = {"@": "start", "*": "goal", "#": "hole", "_": "frozen"}


def vsp_state(text: str) -> dict:
    """State of one VSP table: '| | Col 1 | ...' then '| Row r | _ | * | ... |' lines."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    rows = [[cell.strip() for cell in ln.strip("|").split("|")][1:] for ln in lines[1:]]
    n = len(rows)
    if n < 2 or any(len(row) != n for row in rows):
        raise ValueError(f"expected an N x N table, got {n} rows of widths {[len(r) for r in rows]}")
    found = {"start": [], "goal": [], "hole": []}
    for r, row in enumerate(rows):
        for c, sym in enumerate(row):
            if sym not in _VSP_SYMBOLS:
                raise ValueError(f"unknown symbol {sym!r} at row {r + 1}, column {c + 1}")
            if sym != "_":
                found[_VSP_SYMBOLS[sym]].append([r, c])
    if len(found["start"]) != 1 or len(found["goal"]) != 1:
        raise ValueError("expected exactly one @ (start) and one * (goal)")
    state = {"size": n, "start": found["start"][0], "goal": found["goal"][0], "holes": found["hole"]}
    get_task("frozenlake").validate(state)
    return state


def import_vsp(root: Path) -> list[Imported]:
    root = Path(root)
    tables = sorted(root.glob("level*/table/*.txt"),
                    key=lambda p: (int(re.sub(r"\D", "", p.parent.parent.name) or 0), int(p.stem) if p.stem.isdigit() else p.stem))
    if not tables:
        raise ValueError(f"no VSP tables (level*/table/*.txt) under {root}")
    items = []
    for path in tables:
        rel = path.relative_to(root).as_posix()
        try:
            state = vsp_state(path.read_text())
            get_task("frozenlake").solve(state)  # unsolvable maps are malformed input
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{rel}: {e}") from None
        n = state["size"]
        image = path.parent.parent / "img" / f"{path.stem}.png"
        items.append(Imported("frozenlake", n, "test", f"vsp-frozenlake-L{n}-{path.stem}", state, rel,
                              image if image.is_file() else None))
    return items


# ------------------------------------------------------------------------------- VisualPlanning

def _flat(index, n: int) -> list[int]:
    if not isinstance(index, int) or not 0 <= index < n * n:
        raise ValueError(f"bad flat cell index {index!r} for a {n}x{n} grid")
    return list(divmod(index, n))


def vp_frozenlake_state(meta: dict) -> dict:
    layout = meta["layout"]
    n = len(layout)
    start, goal = _flat(meta["start_pos"], n), _flat(meta["target_pos"], n)
    if layout[start[0]][start[1]] != "S" or layout[goal[0]][goal[1]] != "G":
        raise ValueError("layout S/G letters disagree with start_pos/target_pos")
    holes = [[r, c] for r in range(n) for c in range(n) if layout[r][c] == "H"]
    if any(len(row) != n or not set(row) <= set("SFHG") for row in layout):
        raise ValueError("layout must be N x N gym letters S F H G")
    state = {"size": n, "start": start, "goal": goal, "holes": holes}
    get_task("frozenlake").validate(state)
    return state


_WALL_FLAGS = (("U", "north"), ("D", "south"), ("L", "west"), ("R", "east"))


def vp_maze_state(meta: dict) -> dict:
    """Inferred format: layout[r][c] = {north, south, west, east: wall present?}."""
    layout = meta["layout"]
    n = len(layout)
    grid = [["".join(a for a, flag in _WALL_FLAGS if not cell[flag]) or "-" for cell in row] for row in layout]
    state = {"size": n, "start": _flat(meta["start_pos"], n), "target": _flat(meta["target_pos"], n), "open": grid}
    get_task("maze").validate(state)
    return state


def vp_minibehaviour_state(meta: dict) -> dict:
    state = {"size": meta["level"], "agent": list(meta["start_pos"]), "printer": list(meta["printer_pos"]),
             "table": sorted(list(c) for c in meta["table_pos"])}
    get_task("minibehaviour").validate(state)
    return state


VP_STATE = {"frozenlake": vp_frozenlake_state, "maze": vp_maze_state, "minibehaviour": vp_minibehaviour_state}


def _split_name(path: Path) -> str:
    stem = path.stem.lower()
    return "train" if stem.startswith("train") else "val" if stem.startswith("val") else "test"


def import_visualplanning(root: Path) -> list[Imported]:
    root = Path(root)
    files = sorted(p for task in VP_STATE for p in (root / task).glob("*.jsonl"))
    if not files:
        raise ValueError(f"no VisualPlanning files (<task>/*.jsonl for {', '.join(VP_STATE)}) under {root}")
    items = []
    for path in files:
        task, split, rel = path.parent.name, _split_name(path), path.relative_to(root).as_posix()
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    meta = json.loads(line)["meta"]
                    state = VP_STATE[task](meta)
                    get_task(task).solve(state)  # unsolvable puzzles are malformed input
                except (ValueError, KeyError, TypeError, IndexError) as e:
                    raise ValueError(f"{rel} line {lineno}: {type(e).__name__}: {e}") from None
                n = state["size"]
                items.append(Imported(task, n, split, f"vp-{task}-{split}-L{n}-{lineno}", state, f"{rel}:{lineno}"))
    return items


IMPORTERS = {"vsp": import_vsp, "visualplanning": import_visualplanning}
