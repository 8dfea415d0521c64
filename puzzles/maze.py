"""Maze: walk from the start to the target through open cell sides of a perfect maze.

State: {"size": n, "start": [r, c], "target": [r, c], "open": n rows of n strings}, where
open[r][c] lists the open sides of cell (r, c) in U D L R order ("DR", "UDL", ...; "-" for none).
Levels are the side 3..6. Mazes come from randomised depth-first backtracking (so every pair of
cells is joined by exactly one path); start and target are random distinct cells.
"""

from __future__ import annotations

import random

from PIL import Image

from puzzles.base import RESTATE, GridTask
from puzzles.grid import MOVE_ORDER, as_cell, cell_text, in_grid, manhattan_plan, step
from puzzles.render import Canvas

OPPOSITE = {"U": "D", "D": "U", "L": "R", "R": "L"}

FLOOR, GRID, WALL, START, TARGET = (246, 244, 236), (200, 200, 200), (25, 25, 35), (35, 165, 60), (215, 35, 35)


def sides_text(sides) -> str:
    return "".join(a for a in MOVE_ORDER if a in sides) or "-"


def difficulty(length: int, n: int) -> str:
    """DESIGN §3 buckets by shortest-path length: easy <= n//2 < medium <= n < hard."""
    return "easy" if length <= n // 2 else "medium" if length <= n else "hard"


class Maze(GridTask):
    name = "maze"
    levels = range(3, 7)
    actions = MOVE_ORDER

    # --- state -----------------------------------------------------------------------------------
    def generate(self, level: int, rng: random.Random) -> dict:
        if level not in self.levels:
            raise ValueError(f"maze level must be in 3..6, got {level}")
        n = level
        sides = [[set() for _ in range(n)] for _ in range(n)]
        first = divmod(rng.randrange(n * n), n)
        visited, stack = {first}, [first]
        while stack:  # randomised depth-first backtracking: carve to a random unvisited neighbour
            cell = stack[-1]
            options = [(a, nxt) for a in MOVE_ORDER if in_grid(nxt := step(cell, a), n) and nxt not in visited]
            if not options:
                stack.pop()
                continue
            a, nxt = options[rng.randrange(len(options))]
            sides[cell[0]][cell[1]].add(a)
            sides[nxt[0]][nxt[1]].add(OPPOSITE[a])
            visited.add(nxt)
            stack.append(nxt)
        start, target = rng.sample(range(n * n), 2)
        return {"size": n, "start": list(divmod(start, n)), "target": list(divmod(target, n)),
                "open": [[sides_text(s) for s in row] for row in sides]}

    def validate(self, state: dict) -> None:
        n, grid = state["size"], state["open"]
        if not isinstance(n, int) or n < 2 or len(grid) != n or any(len(row) != n for row in grid):
            raise ValueError("maze 'open' must be size x size strings")
        start, target = as_cell(state["start"]), as_cell(state["target"])
        if not (in_grid(start, n) and in_grid(target, n)) or start == target:
            raise ValueError("start and target must be distinct cells inside the grid")
        for r in range(n):
            for c in range(n):
                s = grid[r][c]
                if s != sides_text(s) and s != "-":
                    raise ValueError(f"cell ({r}, {c}): open sides {s!r} are not in U D L R order")
                for a in s.replace("-", ""):
                    nxt = step((r, c), a)
                    if not in_grid(nxt, n) or OPPOSITE[a] not in grid[nxt[0]][nxt[1]]:
                        raise ValueError(f"cell ({r}, {c}): side {a} is open on one side of the edge only")

    def canonical(self, state: dict) -> str:
        return self.symbolic_text(state)

    # --- rules -----------------------------------------------------------------------------------
    def rules(self, state: dict):
        n, grid, target = state["size"], state["open"], tuple(state["target"])

        def move(cell, a):
            nxt = step(cell, a)
            if not in_grid(nxt, n):
                return None, "off_grid"
            if a not in grid[cell[0]][cell[1]]:
                return None, "wall"
            return nxt, None

        return tuple(state["start"]), move, target.__eq__

    def blind_plan(self, state: dict) -> list[str]:
        return manhattan_plan(tuple(state["start"]), tuple(state["target"]))

    # --- views -----------------------------------------------------------------------------------
    def symbolic_text(self, state: dict) -> str:
        rows = "\n".join(" ".join(row) for row in state["open"])
        return f"{rows}\nstart {cell_text(state['start'])} target {cell_text(state['target'])}"

    def perception(self, state: dict) -> list[tuple[str, str]]:
        n = state["size"]
        return [  # the restatement carries the open sides of every cell, row by row
            (RESTATE, self.symbolic_text(state)),
            ("what is the grid size ?", f"{n}x{n}"),
            ("where is the start ?", cell_text(state["start"])),
            ("where is the target ?", cell_text(state["target"])),
            ("which moves are legal from the start ?", self.legal_text(state)),
        ]

    def render(self, state: dict, size: int) -> Image.Image:
        n = state["size"]
        canvas = Canvas(n, size, FLOOR)
        canvas.grid_lines(GRID)
        for r in range(n):
            for c in range(n):
                for side in MOVE_ORDER:
                    if side not in state["open"][r][c]:
                        canvas.wall(r, c, side, WALL)
        canvas.disc(*state["start"], START)
        canvas.square(*state["target"], TARGET, half=0.25)
        return canvas.image


TASK = Maze()
