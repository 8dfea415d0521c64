"""The task protocol every puzzle implements, and the one structured outcome of the verifier."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from puzzles.grid import bfs_plan

# Kinds of illegal action the verifier reports (None = no illegal action was attempted).
ILLEGAL_KINDS = ("hole", "wall", "table", "printer", "pick", "drop", "off_grid")


@dataclass(frozen=True)
class Outcome:
    """What happened when a plan was executed.

    parse_ok  the answer parsed into a non-empty list of valid action tokens
    success   the goal was reached (FrozenLake/Maze: stood on the goal; MiniBehaviour: legal DROP)
    optimal   success and n_actions == the optimal plan length (every action given counts,
              including ones after the goal, which are never executed)
    illegal   the kind of the illegal action that stopped execution, or None
    steps     actions executed (legally) before execution stopped
    n_actions actions in the parsed plan
    """

    parse_ok: bool
    success: bool
    optimal: bool
    illegal: str | None
    steps: int
    n_actions: int


PARSE_FAILURE = Outcome(parse_ok=False, success=False, optimal=False, illegal=None, steps=0, n_actions=0)


# The first perception question of every task: the whole symbolic state, exactly as the teacher reads
# it and as a planning response restates it (the one multi-line answer). Grounding on it teaches the
# student the very transcription it must write, from the image, before each plan.
RESTATE = "Restate the state ."


class Task(Protocol):
    name: str
    levels: range
    actions: tuple[str, ...]

    def generate(self, level: int, rng: random.Random) -> dict: ...
    def canonical(self, state: dict) -> str: ...
    def render(self, state: dict, size: int) -> Image.Image: ...
    def solve(self, state: dict) -> list[str]: ...
    def blind_plan(self, state: dict) -> list[str]: ...
    def symbolic_text(self, state: dict) -> str: ...
    def perception(self, state: dict) -> list[tuple[str, str]]: ...
    def verify(self, state: dict, actions: list[str]) -> Outcome: ...


class GridTask:
    """verify(), solve() and execution for every task, from one transition function per task.

    A task supplies `rules(state) -> (start, move, done)`: `move(node, action)` returns
    (next node, None) or (None, illegal kind), and `done(node)` says the goal is reached. The BFS
    solver and the verifier both run this one function, so they cannot disagree.
    """

    name: str
    actions: tuple[str, ...]

    def rules(self, state: dict):
        raise NotImplementedError

    def execute(self, state: dict, actions: list[str]) -> tuple[bool, str | None, int]:
        """Run `actions` from the start: (success, illegal kind or None, steps executed)."""
        node, move, done = self.rules(state)
        for i, a in enumerate(actions):
            node, illegal = move(node, a)
            if illegal is not None:
                return False, illegal, i
            if done(node):  # the episode ends here; later actions are never executed
                return True, None, i + 1
        return False, None, len(actions)

    def solve(self, state: dict) -> list[str]:
        start, move, done = self.rules(state)
        plan = bfs_plan(start, move, done, self.actions)
        if plan is None:
            raise ValueError(f"unsolvable {self.name} state")
        return plan

    def legal_from_start(self, state: dict) -> list[str]:
        start, move, _ = self.rules(state)
        return [a for a in self.actions if move(start, a)[1] is None]

    def legal_text(self, state: dict) -> str:
        """The legal actions from the start as a perception answer writes them: 'U D R', or 'none'."""
        return " ".join(self.legal_from_start(state)) or "none"

    def rare(self, state: dict) -> bool:
        """Whether `state` is a case the generator seldom draws but perception must read (grounding
        draws a share of its training puzzles from these); no state is, unless a task says so."""
        return False

    def verify(self, state: dict, actions: list[str] | None) -> Outcome:
        if not actions or not isinstance(actions, (list, tuple)) or any(a not in self.actions for a in actions):
            return PARSE_FAILURE
        success, illegal, steps = self.execute(state, list(actions))
        # Only successful plans need the BFS length, which keeps exhaustive checks cheap.
        optimal = success and len(actions) == len(self.solve(state))
        return Outcome(True, success, optimal, illegal, steps, len(actions))
