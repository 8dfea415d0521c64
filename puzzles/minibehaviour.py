"""MiniBehaviour: walk next to the printer, PICK it up, walk next to the table, DROP it there.

State: {"size": n, "agent": [r, c], "printer": [r, c], "table": the 6 cells of a 2x3 block, sorted}.
Levels are the room side 5..6 (the N x N walkable interior; no wall ring is drawn). Table cells are
never enterable; the printer cell is blocked until the printer is picked up. PICK is legal only when
adjacent to the printer and not carrying; DROP only when carrying and adjacent to the table, and a
legal DROP ends the episode with success. The BFS over (cell, carrying) finds
min over (printer-adjacent p, table-adjacent t) of d(start, p) + d(p, t), plus the PICK and DROP.
"""

from __future__ import annotations

import random

from PIL import Image

from puzzles.base import RESTATE, GridTask
from puzzles.grid import as_cell, bfs_plan, cell_text, cells_text, in_grid, look_around, manhattan_plan, neighbours, step
from puzzles.render import Canvas

TABLE_SHAPE = (2, 3)  # rows x cols, as in the VisualPlanning benchmark
DONE = 2  # the carrying flag of the node after a legal DROP

FLOOR, GRID, TABLE, PRINTER, AGENT = (232, 232, 226), (170, 170, 165), (150, 95, 45), (70, 70, 190), (215, 35, 35)


def table_cells(top: int, left: int) -> list[list[int]]:
    return [[top + i, left + j] for i in range(TABLE_SHAPE[0]) for j in range(TABLE_SHAPE[1])]


class MiniBehaviour(GridTask):
    name = "minibehaviour"
    levels = range(5, 7)
    actions = ("U", "D", "L", "R", "PICK", "DROP")

    # --- state -----------------------------------------------------------------------------------
    def generate(self, level: int, rng: random.Random) -> dict:
        if level not in self.levels:
            raise ValueError(f"minibehaviour level must be in 5..6, got {level}")
        n = level
        while True:  # rejection sampling: a walled-in printer or agent is rare
            table = table_cells(rng.randrange(n - TABLE_SHAPE[0] + 1), rng.randrange(n - TABLE_SHAPE[1] + 1))
            free = [divmod(i, n) for i in range(n * n) if list(divmod(i, n)) not in table]
            printer, agent = rng.sample(free, 2)
            state = {"size": n, "agent": list(agent), "printer": list(printer), "table": table}
            start, move, done = self.rules(state)
            if bfs_plan(start, move, done, self.actions) is not None:
                return state

    def validate(self, state: dict) -> None:
        n = state["size"]
        if not isinstance(n, int) or n < TABLE_SHAPE[1]:
            raise ValueError(f"bad room size {n!r}")
        table = sorted(as_cell(c) for c in state["table"])
        if not table or sorted(map(tuple, table_cells(*table[0]))) != table or not all(in_grid(c, n) for c in table):
            raise ValueError(f"table must be a {TABLE_SHAPE[0]}x{TABLE_SHAPE[1]} block inside the room, got {state['table']}")
        agent, printer = as_cell(state["agent"]), as_cell(state["printer"])
        if not (in_grid(agent, n) and in_grid(printer, n)) or agent == printer or {agent, printer} & set(table):
            raise ValueError("agent and printer must be distinct free cells inside the room")

    def canonical(self, state: dict) -> str:
        return self.symbolic_text(state)

    # --- rules -----------------------------------------------------------------------------------
    def rules(self, state: dict):
        """Nodes are (row, col, carrying) with carrying 0/1, or DONE after the drop."""
        n, printer = state["size"], tuple(state["printer"])
        table = {tuple(c) for c in state["table"]}
        near_printer, near_table = map(set, self.adjacent(state))

        def move(node, a):
            r, c, carrying = node
            if a == "PICK":
                if carrying or (r, c) not in near_printer:
                    return None, "pick"
                return (r, c, 1), None
            if a == "DROP":
                if not carrying or (r, c) not in near_table:
                    return None, "drop"
                return (r, c, DONE), None
            nxt = step((r, c), a)
            if not in_grid(nxt, n):
                return None, "off_grid"
            if nxt in table:
                return None, "table"
            if nxt == printer and not carrying:
                return None, "printer"
            return (*nxt, carrying), None

        return (*state["agent"], 0), move, lambda node: node[2] == DONE

    def adjacent(self, state: dict) -> tuple[list, list]:
        """Free in-grid 4-neighbours of the printer and of the table (where PICK / DROP are legal)."""
        n, table = state["size"], {tuple(c) for c in state["table"]}
        near_printer = set(neighbours(tuple(state["printer"]), n)) - table
        near_table = {c for t in table for c in neighbours(t, n)} - table
        return sorted(near_printer), sorted(near_table)

    def rare(self, state: dict) -> bool:
        """The agent next to the printer (~1 room in 5): the only rooms where a look around shows
        the other one (P next to the agent, A next to the printer) and PICK is legal at the start."""
        return tuple(state["agent"]) in neighbours(tuple(state["printer"]), state["size"])

    def blind_plan(self, state: dict) -> list[str]:
        """Ignore the table and the printer: the nearest (p, t) pair in Manhattan distance."""
        agent = tuple(state["agent"])
        near_printer, near_table = self.adjacent(state)
        dist = lambda a, b: abs(a[0] - b[0]) + abs(a[1] - b[1])  # noqa: E731
        p, t = min(((p, t) for p in near_printer for t in near_table), key=lambda pt: (dist(agent, pt[0]) + dist(*pt), pt))
        return manhattan_plan(agent, p) + ["PICK"] + manhattan_plan(p, t) + ["DROP"]

    # --- views -----------------------------------------------------------------------------------
    def grid(self, state: dict) -> list[list[str]]:
        n = state["size"]
        rows = [["."] * n for _ in range(n)]
        for r, c in state["table"]:
            rows[r][c] = "T"
        rows[state["printer"][0]][state["printer"][1]] = "P"
        rows[state["agent"][0]][state["agent"][1]] = "A"
        return rows

    def symbolic_text(self, state: dict) -> str:
        table = sorted(map(tuple, state["table"]))
        return ("\n".join(" ".join(row) for row in self.grid(state))
                + f"\nagent {cell_text(state['agent'])} printer {cell_text(state['printer'])}"
                f" table {cell_text(table[0])} to {cell_text(table[-1])}")

    def perception(self, state: dict) -> list[tuple[str, str]]:
        n = state["size"]
        table = sorted(map(tuple, state["table"]))
        near_printer, near_table = self.adjacent(state)
        grid = self.grid(state)  # the look arounds read it
        return [
            (RESTATE, self.symbolic_text(state)),
            ("what is the room size ?", f"{n}x{n}"),
            ("where is the agent ?", cell_text(state["agent"])),
            ("where is the printer ?", cell_text(state["printer"])),
            ("where is the table ?", f"{cell_text(table[0])} to {cell_text(table[-1])}"),
            ("which cells are adjacent to the printer ?", f"{look_around(grid, state['printer'])} : {cells_text(near_printer)}"),
            ("which cells are adjacent to the table ?", cells_text(near_table)),
            ("which actions are legal for the agent ?", f"{look_around(grid, state['agent'])} : {self.legal_text(state)}"),
        ]

    def render(self, state: dict, size: int) -> Image.Image:
        canvas = Canvas(state["size"], size, FLOOR)
        for r, c in state["table"]:
            canvas.fill_cell(r, c, TABLE)
        canvas.grid_lines(GRID)
        canvas.square(*state["printer"], PRINTER, half=0.3)
        canvas.disc(*state["agent"], AGENT)
        return canvas.image


TASK = MiniBehaviour()
