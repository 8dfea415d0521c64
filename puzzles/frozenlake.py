"""FrozenLake: walk from the start to the goal over frozen tiles without falling into a hole.

State: {"size": n, "start": [r, c], "goal": [r, c], "holes": [[r, c], ...] (sorted)}.
Levels are the grid side 3..8. Maps are sampled with frozen probability 0.9 and random distinct
start/goal; only solvable maps whose shortest safe path is >= 2 moves are kept.
"""

from __future__ import annotations

import random

from PIL import Image

from puzzles.base import RESTATE, GridTask
from puzzles.grid import MOVE_ORDER, as_cell, bfs_plan, cell_text, in_grid, look_around, manhattan_plan, scan_rows, step
from puzzles.render import Canvas

FROZEN_P = 0.9
MIN_PLAN = 2

ICE, GRID, HOLE, GOAL, PLAYER = (214, 236, 248), (140, 170, 195), (25, 55, 125), (240, 185, 30), (215, 35, 35)


class FrozenLake(GridTask):
    name = "frozenlake"
    levels = range(3, 9)
    actions = MOVE_ORDER

    # --- state -----------------------------------------------------------------------------------
    def generate(self, level: int, rng: random.Random) -> dict:
        if level not in self.levels:
            raise ValueError(f"frozenlake level must be in 3..8, got {level}")
        n = level
        while True:  # rejection sampling: about 1 draw in 1.3 is kept at level 6
            start, goal = rng.sample(range(n * n), 2)
            start, goal = divmod(start, n), divmod(goal, n)
            holes = [(r, c) for r in range(n) for c in range(n) if rng.random() >= FROZEN_P and (r, c) != start and (r, c) != goal]
            plan = bfs_plan(*self._rules(n, start, goal, set(holes)), actions=self.actions)
            if plan is not None and len(plan) >= MIN_PLAN:
                return {"size": n, "start": list(start), "goal": list(goal), "holes": [list(h) for h in holes]}

    def validate(self, state: dict) -> None:
        n = state["size"]
        if not isinstance(n, int) or n < 2:
            raise ValueError(f"bad grid size {n!r}")
        cells = [as_cell(state["start"]), as_cell(state["goal"])] + [as_cell(h) for h in state["holes"]]
        if not all(in_grid(c, n) for c in cells) or len(set(cells)) != len(cells):
            raise ValueError("start, goal and holes must be distinct cells inside the grid")

    def canonical(self, state: dict) -> str:
        return self.symbolic_text(state)

    def grid(self, state: dict) -> list[list[str]]:
        n = state["size"]
        rows = [["."] * n for _ in range(n)]
        for r, c in state["holes"]:
            rows[r][c] = "H"
        rows[state["start"][0]][state["start"][1]] = "S"
        rows[state["goal"][0]][state["goal"][1]] = "G"
        return rows

    # --- rules -----------------------------------------------------------------------------------
    @staticmethod
    def _rules(n: int, start, goal, holes):
        def move(cell, a):
            nxt = step(cell, a)
            if not in_grid(nxt, n):
                return None, "off_grid"
            if nxt in holes:
                return None, "hole"
            return nxt, None

        return start, move, goal.__eq__

    def rules(self, state: dict):
        return self._rules(state["size"], tuple(state["start"]), tuple(state["goal"]), {tuple(h) for h in state["holes"]})

    def blind_plan(self, state: dict) -> list[str]:
        return manhattan_plan(tuple(state["start"]), tuple(state["goal"]))

    # --- views -----------------------------------------------------------------------------------
    def symbolic_text(self, state: dict) -> str:
        rows = "\n".join(" ".join(row) for row in self.grid(state))
        return f"{rows}\nstart {cell_text(state['start'])} goal {cell_text(state['goal'])}"

    def perception(self, state: dict) -> list[tuple[str, str]]:
        n, grid = state["size"], self.grid(state)
        return [
            (RESTATE, self.symbolic_text(state)),
            ("what is the grid size ?", f"{n}x{n}"),
            ("where is the start ?", cell_text(state["start"])),
            ("where is the goal ?", cell_text(state["goal"])),
            ("which cells are holes ?", scan_rows(grid, "H")),
            ("which moves are legal from the start ?", f"{look_around(grid, state['start'])} : {self.legal_text(state)}"),
        ]

    def render(self, state: dict, size: int) -> Image.Image:
        canvas = Canvas(state["size"], size, ICE)
        for r, c in state["holes"]:
            canvas.fill_cell(r, c, HOLE)
        canvas.fill_cell(*state["goal"], GOAL)
        canvas.grid_lines(GRID)
        canvas.disc(*state["start"], PLAYER)
        return canvas.image


TASK = FrozenLake()
