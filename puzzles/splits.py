"""Deterministic train/val/test splits and the JSON record every tool reads.

A puzzle's split is a function of its canonical state alone (sha1 -> 80/10/10), so two splits can
never share a puzzle, whatever seeds or sizes were used to draw them.
"""

from __future__ import annotations

import hashlib
import random

SPLITS = ("train", "val", "test")


def puzzle_hash(canonical: str) -> str:
    return hashlib.sha1(canonical.encode()).hexdigest()


def split_of(canonical: str) -> str:
    bucket = int(puzzle_hash(canonical)[:8], 16) % 10
    return "train" if bucket < 8 else "val" if bucket == 8 else "test"


def make_record(task, level: int, split: str, seed, state: dict, index: int) -> dict:
    """One puzzle as a JSON-able record (no image yet: export adds the PNG path)."""
    from puzzles import get_task

    task = get_task(task) if isinstance(task, str) else task
    plan = task.solve(state)
    return {
        "id": f"{task.name}-L{level}-{puzzle_hash(task.canonical(state))[:10]}",
        "task": task.name,
        "level": level,
        "split": split,
        "seed": seed,
        "index": index,
        "state": state,
        "optimal_plan": plan,
        "optimal_length": len(plan),
        "blind_plan": task.blind_plan(state),
        "symbolic_text": task.symbolic_text(state),
        "perception": [{"question": q, "answer": a} for q, a in task.perception(state)],
    }


def check_request(task: str, level: int, split: str, n: int):
    """The task of a request for n puzzles of (task, level, split); ValueError naming what is wrong."""
    from puzzles import get_task

    t = get_task(task)
    if level not in t.levels:
        raise ValueError(f"{t.name} level must be in {t.levels.start}..{t.levels.stop - 1}, got {level}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    return t


def make_split(task: str, level: int, split: str, n: int, seed: int, patience: int = 5_000) -> list[dict]:
    """The first n distinct puzzles of `split` drawn from Random(f"{task}|{level}|{seed}").

    Raises ValueError if `patience` draws in a row bring nothing new (the level is too small to
    supply n distinct puzzles of this split).
    """
    t = check_request(task, level, split, n)
    rng = random.Random(f"{t.name}|{level}|{seed}")
    seen: set[str] = set()
    records, misses = [], 0
    while len(records) < n:
        state = t.generate(level, rng)
        key = t.canonical(state)
        if key in seen or split_of(key) != split:
            misses += 1
            if misses > patience:
                raise ValueError(f"{t.name} level {level} cannot supply {n} distinct {split} puzzles "
                                 f"(found {len(records)}; ask for fewer)")
            continue
        seen.add(key)
        misses = 0
        records.append(make_record(t, level, split, seed, state, len(records)))
    return records
