"""bench/bench_workers.py: both ways it times take the same steps (the same last loss)."""

import importlib.util
from pathlib import Path

import pytest

from mgsd_mini import model as M

spec = importlib.util.spec_from_file_location("bench_workers", Path(__file__).resolve().parents[1] / "bench" / "bench_workers.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_one_process_and_two_take_the_same_steps_and_both_are_timed(tmp_path):
    # The loss after one update: it already depends on the summed gradient, and it is compared before
    # Adam's normalisation amplifies the summation order's rounding (two processes against one, this
    # setup: 1e-7 relative at step 2, ~3e-6 at step 3, 5e-5 at step 4 of a 4-step schedule).
    mini_model_dir = M.save(*M.build_mini(seed=0), tmp_path / "model")
    results = bench.measure(steps=2, rounds=1, n_per_level=2, workers=2, warmup=1,
                            overrides={"model": str(mini_model_dir), "tasks": "frozenlake", "levels": "3", "lora_r": 4, "batch_size": 4,
                                       "grad_accum": 1, "replay_examples": 2})
    assert set(results) == {1, 2}
    assert results[2]["loss"] == pytest.approx(results[1]["loss"], rel=1e-5)
    assert results[1]["seconds"] > 0 and results[2]["seconds"] > 0
