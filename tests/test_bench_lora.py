"""bench/bench_lora.py: the two forms it times are the same function (loss and gradient)."""

import importlib.util
from pathlib import Path

import pytest
import torch

from mgsd_mini import lora, model as M

spec = importlib.util.spec_from_file_location("bench_lora", Path(__file__).resolve().parents[1] / "bench" / "bench_lora.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_fused_and_written_out_forms_agree_and_the_fused_one_is_restored():
    model, processor = M.build_mini(seed=0)
    torch.manual_seed(0)
    lora.add_lora(model, "grounding", 4, 8.0, 0.0, lora.LM_TARGETS + lora.VISION_TARGETS, scope=None)
    for p in model.parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.05)
    fused = lora.LoRALinear.forward
    n_questions, results = bench.measure(model, processor, n_per_level=1, rounds=1)
    assert n_questions == 36 and lora.LoRALinear.forward is fused
    slow, fast = results["written out"], results["fused (LoRALinear)"]
    assert fast["loss"] == pytest.approx(slow["loss"], rel=1e-5)
    assert fast["grad_norm"] == pytest.approx(slow["grad_norm"], rel=1e-4) and fast["grad_norm"] > 0
    assert fast["seconds"] > 0 and slow["seconds"] > 0
