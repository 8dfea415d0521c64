"""bench/bench_lora.py: the two forms it times are the same function (loss and gradient)."""

import importlib.util
from pathlib import Path

import pytest
import torch

from mgsd_mini import lora, model as M

spec = importlib.util.spec_from_file_location("bench_lora", Path(__file__).resolve().parents[1] / "bench" / "bench_lora.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_the_three_forms_agree_and_the_shipped_one_is_restored():
    model, processor = M.build_mini(seed=0)
    torch.manual_seed(0)
    lora.add_lora(model, "grounding", 48, 96.0, 0.0, lora.LM_TARGETS + lora.VISION_TARGETS, scope=None)
    for p in model.parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.05)
    shipped = lora.LoRALinear.forward, lora.LoRALinear._fold_pays
    n_questions, results = bench.measure(model, processor, n_per_level=1, rounds=1)
    assert n_questions == 36 and (lora.LoRALinear.forward, lora.LoRALinear._fold_pays) == shipped
    reference = results["written out"]
    for name in ("own path", "folded when it pays"):
        assert results[name]["loss"] == pytest.approx(reference["loss"], rel=1e-5)
        assert results[name]["grad_norm"] == pytest.approx(reference["grad_norm"], rel=1e-4) and reference["grad_norm"] > 0
    assert all(r["seconds"] > 0 for r in results.values())
