"""Grid helpers shared by the three tasks: moves, BFS, Manhattan plans and the token format of cells.

Coordinates are 0-based (row, col), row 0 at the top. Internally cells are tuples; the JSON state
dicts store them as [row, col] lists.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Iterable

Cell = tuple[int, int]

MOVES: dict[str, Cell] = {"U": (-1, 0), "D": (1, 0), "L": (0, -1), "R": (0, 1)}
MOVE_ORDER = ("U", "D", "L", "R")


def step(cell: Cell, action: str) -> Cell:
    dr, dc = MOVES[action]
    return cell[0] + dr, cell[1] + dc


def in_grid(cell: Cell, n: int) -> bool:
    return 0 <= cell[0] < n and 0 <= cell[1] < n


def neighbours(cell: Cell, n: int) -> list[Cell]:
    """In-grid 4-neighbours in U D L R order."""
    return [c for a in MOVE_ORDER if in_grid(c := step(cell, a), n)]


def look_around(grid: list[list[str]], cell: Cell) -> str:
    """What lies one step each way from `cell`, in U D L R order: 'U ( 0 , 2 ) . D none L …'
    (the cell and its symbol in `grid`, or none off the grid). A neighbour question's answer
    writes this first, so each step of it is one lookup: a coordinate ± 1, then a symbol."""
    seen = []
    for a in MOVE_ORDER:
        nxt = step(cell, a)
        seen.append(f"{a} {cell_text(nxt)} {grid[nxt[0]][nxt[1]]}" if in_grid(nxt, len(grid)) else f"{a} none")
    return " ".join(seen)


def scan_rows(grid: list[list[str]], symbol: str) -> str:
    """Every row, each cell's symbol after its column, and after each `symbol` its coordinates:
    'row 0 0 . 1 H ( 0 , 1 ) 2 . row 1 0 S …'. It answers "where are all the `symbol` cells": each
    one's coordinates are copies of the nearest row label and column number, where a bare list asked
    the model to count its way to them."""
    return " ".join(f"row {r} " + " ".join(f"{c} {s}" + (f" {cell_text((r, c))}" if s == symbol else "") for c, s in enumerate(row))
                    for r, row in enumerate(grid))


def bfs_plan(start, move: Callable, done: Callable, actions: Iterable[str] = MOVE_ORDER) -> list[str] | None:
    """Shortest action sequence from `start` to a node where `done(node)`, or None if none exists.

    `move(node, action)` returns (next node, None) or (None, illegal kind): the same transition the
    verifier executes, so the plan is optimal under exactly the rules that score it. Actions are
    tried in the given order, which makes the returned plan deterministic.
    """
    if done(start):
        return []
    parent = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for a in actions:
            nxt, _ = move(node, a)
            if nxt is not None and nxt not in parent:
                parent[nxt] = (node, a)
                if done(nxt):
                    plan = []
                    while parent[nxt] is not None:
                        nxt, a = parent[nxt]
                        plan.append(a)
                    return plan[::-1]
                queue.append(nxt)
    return None


def manhattan_plan(src: Cell, dst: Cell) -> list[str]:
    """The obstacle-blind shortest path: all vertical moves first, then all horizontal ones."""
    dr, dc = dst[0] - src[0], dst[1] - src[1]
    return ["D" if dr > 0 else "U"] * abs(dr) + ["R" if dc > 0 else "L"] * abs(dc)


def cell_text(cell: Iterable[int]) -> str:
    """One cell as space-separated word tokens: '( 1 , 2 )'."""
    r, c = cell
    return f"( {r} , {c} )"


def cells_text(cells: Iterable[Iterable[int]]) -> str:
    """Sorted cells, '( 0 , 3 ) ( 1 , 1 )', or 'none'."""
    cells = sorted(tuple(c) for c in cells)
    return " ".join(cell_text(c) for c in cells) if cells else "none"


def as_cell(value) -> Cell:
    """A JSON [row, col] pair as a tuple of ints (ValueError on anything else)."""
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"expected a [row, col] pair of ints, got {value!r}")
    return int(value[0]), int(value[1])
