"""bench/bench_packing.py: the two layouts it times hold the same questions and give the same summed loss."""

import importlib.util
from pathlib import Path

import pytest

from mgsd_mini import model as M

spec = importlib.util.spec_from_file_location("bench_packing", Path(__file__).resolve().parents[1] / "bench" / "bench_packing.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_packed_and_unpacked_layouts_time_the_same_loss_with_fewer_tokens():
    model, processor = M.build_mini(seed=0)
    n_questions, results = bench.measure(model, processor, n_per_level=1, rounds=1)
    one, packed = results["one per question"], results["packed by puzzle"]
    assert n_questions == 36  # one puzzle per task and level: 3 x 6 + 2 x 5 + 1 x 8 questions
    assert packed["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert packed["micro_batches"] < one["micro_batches"] and packed["tokens"] < one["tokens"]
    assert one["seconds"] > 0 and packed["seconds"] > 0


def test_encoding_benchmark_counts_every_question():
    _, processor = M.build_mini(seed=0)
    n_questions, seconds = bench.measure_encoding(processor, n_per_level=1, rounds=1)
    assert n_questions == 36 and set(seconds) == {"one call a question", "one call a puzzle"} and min(seconds.values()) > 0
