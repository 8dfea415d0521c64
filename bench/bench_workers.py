"""A training stage on one process with every core's thread against one process per core
(`--workers`), side by side.

    python bench/bench_workers.py [--stage grounding|base] [--steps 30] [--rounds 2] [--n-per-level 100]

Each round trains the stage's default recipe — grounding: the shipped base, replay on, `n-per-level`
train puzzles per task and level; base: stage 0 from scratch, past its image-only first steps — for
`steps` steps, once as one process with torch's threads and once
as `workers` one-thread processes (parallel.py), the two alternating so that a change of machine
speed hits both. Prints seconds per step after the first `warmup` steps (data building and
start-up excluded), the last step's loss of each (they must agree: the same gradient, summed in
another order) and the ratio.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
import typer
from rich.console import Console

from mgsd_mini import config, grounding, pretrain


def seconds_per_step(run_dir: Path, warmup: int) -> tuple[float, float]:
    """(seconds a step after step `warmup`, the last step's loss) from a run's metrics.jsonl."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    start, end = rows[warmup - 1], rows[-1]
    return (end["elapsed_s"] - start["elapsed_s"]) / (end["step"] - start["step"]), end["loss"]


def stage_config(stage: str, steps: int, n_per_level: int, workers: int, overrides: dict | None):
    common = {"steps": steps, "log_every": 1, "ckpt_every": 10 ** 6, "workers": workers}
    if stage == "base":  # (its first 300 steps are generic images only: time the mix it trains on after them)
        return config.resolve("base", "mini", {**common, "vision_steps": 0, **(overrides or {})})
    return config.resolve("grounding", "mini", {**common, "n_per_level": n_per_level, "eval_n": 0, **(overrides or {})})


def measure(steps: int, rounds: int, n_per_level: int, workers: int, warmup: int, overrides: dict | None = None,
            stage: str = "grounding") -> dict[int, dict]:
    """{workers: {"seconds": a step, mean over rounds, "loss": the last step's}} for 1 and `workers` processes."""
    results = {n: {"seconds": 0.0} for n in (1, workers)}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for n in results:
                out = Path(tmp) / f"round{r}-workers{n}"
                (pretrain if stage == "base" else grounding).run(stage_config(stage, steps, n_per_level, n, overrides), out)
                seconds, loss = seconds_per_step(out, warmup)
                results[n]["seconds"] += seconds / rounds
                results[n]["loss"] = loss
    return results


def main(stage: str = typer.Option("grounding", help="grounding or base"), steps: int = 30, rounds: int = 2,
         n_per_level: int = typer.Option(100, help="grounding: train puzzles per task and level"), workers: int = 2, warmup: int = 5):
    if stage not in ("grounding", "base"):
        raise typer.BadParameter(f"--stage must be grounding or base, got '{stage}'")
    threads = torch.get_num_threads()
    results = measure(steps, rounds, n_per_level, workers, warmup, stage=stage)
    console = Console(width=120)
    console.print(f"{stage} (the default recipe), {steps} steps, {rounds} rounds, seconds a step after step {warmup}")
    for n, r in results.items():
        how = f"1 process x {threads} threads" if n == 1 else f"{n} processes x 1 thread"
        console.print(f"  {how:26s} {r['seconds']:6.3f} s / step   last loss {r['loss']:.6f}")
    one, many = results[1]["seconds"], results[workers]["seconds"]
    console.print(f"{workers} processes / 1: {many / one:.2f} of the time ({one / many:.2f}x faster)")


if __name__ == "__main__":
    typer.run(main)
