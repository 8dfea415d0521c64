"""LoRALinear's fp32 forward in its two forms — each adapter on its own path (its product
accumulated into the base output by its last matmul), and folded into W when that costs fewer
multiply-adds (LoRALinear._fold_pays) — against the formula written out op by op, side by side on
grounding's training pass.

    python bench/bench_lora.py [--n-per-level 4] [--rounds 5] [--rank 64]

Forward + backward of the shipped base with grounding's adapter (language model and vision targets,
the grounding default's rank) over every perception question of `n-per-level` train puzzles per
task and level, in micro-batches of 16 sorted by length, the forms alternating `rounds` times so
that a change of machine speed hits each. Prints seconds per 1,000 questions, the summed loss and
gradient norm of each (they must agree), and the ratios.
"""

from __future__ import annotations

import contextlib
import time

import torch
import typer
from rich.console import Console

from mgsd_mini import config, grounding, lora, model as models
from mgsd_mini.config import GroundingConfig
from mgsd_mini.data import collate
from mgsd_mini.sft import sft_loss_sum


def written_out(self: lora.LoRALinear, x: torch.Tensor) -> torch.Tensor:
    """The module docstring's formula, op by op: base, then each adapter scaled, summed and added."""
    x32 = x.to(torch.float32)
    delta = sum(self.lora_B[n](self.lora_A[n](self.dropout[n](x32))) * self.scaling[n] for n in self.active)
    return self.base(x) + delta.to(x.dtype)


def never_fold(self: lora.LoRALinear, rows: int, paths: list[str]) -> bool:
    return False


@contextlib.contextmanager
def patched(name: str, function):
    """LoRALinear.<name> replaced by `function` for the block (None: as shipped)."""
    shipped = getattr(lora.LoRALinear, name)
    setattr(lora.LoRALinear, name, function or shipped)
    try:
        yield
    finally:
        setattr(lora.LoRALinear, name, shipped)


FORMS = {"written out": ("forward", written_out), "own path": ("_fold_pays", never_fold), "folded when it pays": ("_fold_pays", None)}


def measure(model, processor, n_per_level: int, rounds: int) -> tuple[int, dict[str, dict]]:
    """(questions, {form: seconds a round, summed loss, gradient norm}), the two forms alternating."""
    model.train()
    cfg = config.resolve("grounding", "mini", {"n_per_level": n_per_level})
    examples = sorted((e for q in grounding.perception_examples(processor, cfg) for e in q), key=lambda e: len(e["input_ids"]))
    batches = [collate(examples[i:i + 16], processor.tokenizer.pad_token_id) for i in range(0, len(examples), 16)]
    results = {name: {"seconds": 0.0} for name in FORMS}
    for _ in range(rounds):
        for name, form in FORMS.items():
            model.zero_grad(set_to_none=True)
            with patched(*form):
                t0, total = time.perf_counter(), 0.0
                for batch in batches:
                    loss, _ = sft_loss_sum(model, batch)
                    loss.backward()
                    total += loss.item()
                results[name]["seconds"] += (time.perf_counter() - t0) / rounds
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            results[name].update(loss=total, grad_norm=float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
    return len(examples), results


def main(n_per_level: int = typer.Option(4, help="train puzzles per task and level"), rounds: int = 5,
         rank: int = typer.Option(GroundingConfig.lora_r, help="adapter rank (alpha = 2 x rank)"), seed: int = 0):
    model, processor = models.load("mini")
    torch.manual_seed(seed)
    lora.add_lora(model, "grounding", rank, 2.0 * rank, 0.0, lora.LM_TARGETS + lora.VISION_TARGETS, scope=None)
    for p in model.parameters():  # a trained-looking adapter (B = 0 at init would make the LoRA path trivial)
        if p.requires_grad:
            p.data.normal_(0, 0.02)
    n_questions, results = measure(model, processor, n_per_level, rounds)
    console = Console(width=120)
    console.print(f"grounding forward + backward, rank {rank}, {n_questions} questions, {rounds} rounds, {torch.get_num_threads()} threads")
    for name, r in results.items():
        console.print(f"  {name:20s} {1000 * r['seconds'] / n_questions:7.3f} s / 1,000 questions   "
                      f"summed loss {r['loss']:.4f}   gradient norm {r['grad_norm']:.6f}")
    written, own, folded = (results[name]["seconds"] for name in FORMS)
    console.print(f"own path against written out: {written / own:.2f}x faster; folded when it pays against own path: {own / folded:.2f}x faster")


if __name__ == "__main__":
    typer.run(main)
