"""Grounding's training pass with the questions about a puzzle packed into one sequence, against one
sequence per question: the same examples, the same summed loss, timed side by side.

    python bench/bench_packing.py [--n-per-level 10] [--rounds 3]

Forward + backward of the LoRA'd shipped base (grounding's adapter targets) over every perception
question of `n-per-level` train puzzles per task and level, in micro-batches of 16 questions or of
4 puzzles (~24 questions), each sorted by length, the two alternating `rounds` times so that a change of machine speed
hits both. Prints seconds per 1,000 questions, tokens, and the ratio; then the same for encoding
the questions (`data.encode_sft` one by one against `data.encode_sfts`, one processor call a puzzle).
"""

from __future__ import annotations

import time

import torch
import typer
from rich.console import Console
from rich.table import Table

from mgsd_mini import config, grounding, lora, model as models
from mgsd_mini.data import collate, encode_sft, encode_sfts
from mgsd_mini.sft import sft_loss_sum


def measure(model, processor, n_per_level: int, rounds: int) -> tuple[int, dict[str, dict]]:
    """(questions, {layout: micro_batches, tokens, seconds per round, summed loss}), the layouts alternating."""
    model.train()
    pad = processor.tokenizer.pad_token_id
    cfg = config.resolve("grounding", "mini", {"n_per_level": n_per_level, "pack_size": 0})  # packed: all of a puzzle's questions
    puzzles_questions = grounding.perception_examples(processor, cfg)
    ways = {}
    for pack, size in ((False, 16), (True, 4)):
        cfg.pack_questions = pack
        # sorted by length, as grounding sorts each step's units into its micro-batches: little padding either way
        units = sorted(grounding.training_units(puzzles_questions, model, cfg), key=lambda u: len(u["input_ids"]))
        ways["packed by puzzle" if pack else "one per question"] = [collate(units[i:i + size], pad) for i in range(0, len(units), size)]
    results = {name: {"micro_batches": len(batches), "tokens": sum(b["input_ids"].numel() for b in batches), "seconds": 0.0}
               for name, batches in ways.items()}
    for _ in range(rounds):
        for name, batches in ways.items():
            model.zero_grad(set_to_none=True)
            t0, total = time.perf_counter(), 0.0
            for batch in batches:
                loss, _ = sft_loss_sum(model, batch)
                loss.backward()
                total += loss.item()
            results[name]["seconds"] += (time.perf_counter() - t0) / rounds
            results[name]["loss"] = total
    return sum(map(len, puzzles_questions)), results


def measure_encoding(processor, n_per_level: int, rounds: int) -> tuple[int, dict[str, float]]:
    """(questions, {way: seconds a round}) of encoding every question of the puzzles, one call each or one a puzzle."""
    cfg = config.resolve("grounding", "mini", {"n_per_level": n_per_level})
    work = [(pairs, [image]) for pairs, image in grounding.perception_pairs(processor, cfg)]
    ways = {"one call a question": lambda pairs, images: [encode_sft(processor, *pair, images) for pair in pairs],
            "one call a puzzle": lambda pairs, images: encode_sfts(processor, pairs, images)}
    seconds = dict.fromkeys(ways, 0.0)
    for _ in range(rounds):
        for name, encode in ways.items():
            t0 = time.perf_counter()
            for pairs, images in work:
                encode(pairs, images)
            seconds[name] += (time.perf_counter() - t0) / rounds
    return sum(len(pairs) for pairs, _ in work), seconds


def main(n_per_level: int = typer.Option(10, help="train puzzles per task and level"), rounds: int = 3, seed: int = 0):
    model, processor = models.load("mini")
    torch.manual_seed(seed)
    lora.add_lora(model, "grounding", 16, 32.0, 0.0, lora.LM_TARGETS + lora.VISION_TARGETS, scope=None)
    for p in model.parameters():  # a trained-looking adapter (B = 0 at init would make the LoRA path trivial)
        if p.requires_grad:
            p.data.normal_(0, 0.02)
    n_questions, results = measure(model, processor, n_per_level, rounds)

    table = Table(title=f"grounding forward + backward, {n_questions} questions, {rounds} rounds, {torch.get_num_threads()} threads")
    for col in ("layout", "micro-batches", "tokens (padded)", "s / 1,000 questions", "summed loss"):
        table.add_column(col, justify="right")
    for name, r in results.items():
        table.add_row(name, str(r["micro_batches"]), f"{r['tokens']:,}", f"{1000 * r['seconds'] / n_questions:.3f}", f"{r['loss']:.4f}")
    console = Console(width=120)
    console.print(table)
    slow, fast = results["one per question"]["seconds"], results["packed by puzzle"]["seconds"]
    console.print(f"packed / one per question: {fast / slow:.2f} of the time ({slow / fast:.2f}x faster)")
    n_questions, seconds = measure_encoding(processor, n_per_level, rounds)
    slow, fast = seconds["one call a question"], seconds["one call a puzzle"]
    console.print(f"encoding {n_questions} questions: {1000 * slow / n_questions:.2f} ms a question one call each, "
                  f"{1000 * fast / n_questions:.2f} ms with one call a puzzle ({slow / fast:.2f}x faster)")


if __name__ == "__main__":
    typer.run(main)
