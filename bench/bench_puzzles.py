"""Throughput of puzzle generation + BFS solve, and of rendering at 256 px, on one CPU core.

Everything runs in one Python thread (Pillow draws single-threaded), so the figures are per core.

    python bench/bench_puzzles.py [--seconds 1.0]

Targets (issue 2): >= 2,000 puzzles/s generated and solved at level <= 6; >= 300 images/s at 256 px.
"""

from __future__ import annotations

import random
import time

import typer
from rich.console import Console
from rich.table import Table

from puzzles import TASKS


def rate(fn, seconds: float) -> float:
    """Calls per second of fn(), timed over at least `seconds`."""
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds or n < 10:
        for _ in range(10):
            fn()
        n += 10
    return n / elapsed


def main(seconds: float = typer.Option(1.0, help="time per measurement"), size: int = 256):
    table = Table(title=f"puzzles throughput (one core, render at {size} px)")
    for col in ("task", "level", "generate+solve /s", "render /s"):
        table.add_column(col, justify="right")
    for name, task in TASKS.items():
        for level in (lv for lv in task.levels if lv <= 6):
            rng = random.Random(0)
            gen = rate(lambda: task.solve(task.generate(level, rng)), seconds)
            states = [task.generate(level, rng) for _ in range(50)]
            it = iter(range(10**9))
            ren = rate(lambda: task.render(states[next(it) % 50], size), seconds)
            table.add_row(name, str(level), f"{gen:,.0f}", f"{ren:,.0f}")
    Console(width=100).print(table)


if __name__ == "__main__":
    typer.run(main)
