"""Procedurally generated grid puzzles: FrozenLake, Maze and MiniBehaviour.

Each task generates seeded states, renders them, solves them by BFS, describes them as text and as
perception Q&A, and verifies plans with the one set of rules used by training and evaluation.
"""

from __future__ import annotations

from puzzles.base import ILLEGAL_KINDS, RESTATE, Outcome, Task
from puzzles.frozenlake import TASK as _FROZENLAKE
from puzzles.maze import TASK as _MAZE
from puzzles.minibehaviour import TASK as _MINIBEHAVIOUR
from puzzles.parse import parse_answer, score_perception
from puzzles.splits import SPLITS, make_record, make_split, split_of

TASKS: dict[str, Task] = {t.name: t for t in (_FROZENLAKE, _MAZE, _MINIBEHAVIOUR)}


def get_task(name: str) -> Task:
    if not isinstance(name, str) or name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[name]


def check(task: str | Task, state: dict, response: str) -> Outcome:
    """Parse a model response and verify its plan: the one reward/score used everywhere."""
    task = get_task(task) if isinstance(task, str) else task
    return task.verify(state, parse_answer(response, task))


__all__ = ["TASKS", "SPLITS", "ILLEGAL_KINDS", "RESTATE", "Task", "Outcome", "get_task", "check", "parse_answer",
           "score_perception", "make_split", "make_record", "split_of"]
