"""A generic supervised fine-tuning loop: stage 0 (base pretraining), stage 1 (grounding), SFT ablation.

Per optimizer step: `grad_accum` micro-batches from `batches_fn(i)` (i = the global micro-batch
index, so a resumed run draws exactly the same data), loss = token-summed cross-entropy over the
labelled (assistant) tokens divided by the labelled-token count of the whole step — every token
weighs the same however the step is split — then grad-norm clipping, AdamW, and the schedule.

    lr(s) = lr * min(1, s / warmup) * decay(s),  decay: cosine to 0 | linear to 0 | constant |
            wsd (constant, then linear to 0 over the last decay_frac of the steps)

Checkpoints (checkpoint.py) every `ckpt_every` steps and at the end; `resume=True` restores weights,
optimizer, schedule and RNG from the newest one, which on CPU reproduces an uninterrupted run bit for
bit. A non-finite loss stops the run with TrainingDiverged, leaving the last good checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from mgsd_mini import checkpoint, parallel


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the message names the step and the checkpoint to resume from."""


def diverged(step: int, what: str, ckpt_dir: Path) -> TrainingDiverged:
    """The error for a non-finite step: what was non-finite, at which step, where to resume from."""
    good = checkpoint.list_checkpoints(ckpt_dir)
    where = f"resume from {good[-1]} with a lower --lr" if good else "no checkpoint was written yet; lower --lr"
    return TrainingDiverged(f"step {step}: {what}; nothing was updated at this step; {where}")


def lr_factor(step: int, cfg) -> float:
    """Multiplier of cfg.lr at optimizer step `step` (0-based) of cfg.steps."""
    total = cfg.steps
    warmup = int(cfg.warmup_frac * total)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "wsd":
        decay_start = int((1 - cfg.decay_frac) * total)
        return 1.0 if step < decay_start else max(0.0, (total - step) / max(1, total - decay_start))
    progress = (step - warmup) / max(1, total - warmup)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "linear":
        return 1 - progress
    raise ValueError(f"unknown schedule '{cfg.schedule}': use cosine, linear, constant or wsd")


def named_trainables(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def make_optimizer(params: dict[str, torch.nn.Parameter], cfg) -> torch.optim.AdamW:
    """AdamW (fp32 state, deterministic single-tensor path) with weight decay on matrices only, not norms or biases."""
    decay = [p for p in params.values() if p.ndim >= 2]
    no_decay = [p for p in params.values() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), foreach=False)


def sft_loss_sum(model, batch: dict) -> tuple[torch.Tensor, int]:
    """(sum of next-token cross-entropy over labelled positions, number of labelled positions)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits[:, :-1].float()  # (no KV cache to fill in training)
    targets = batch["labels"][:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum")
    return loss, int((targets != -100).sum())


def train_sft(
    model: torch.nn.Module,
    batches_fn: Callable[[int], dict],
    params: dict[str, torch.nn.Parameter],
    cfg,
    run_dir: str | Path,
    resume: bool = False,
    micro_batches: int | None = None,
) -> dict:
    """Train `params` of `model` for cfg.steps optimizer steps of `micro_batches` micro-batches each
    (default cfg.grad_accum); returns {"step", "loss"} of the last step.

    Under `parallel.run`, `batches_fn` gives each rank its share of a micro-batch (None: nothing this
    time) and the token count, the loss and the gradients are summed over ranks before the step, so
    every rank steps alike; rank 0 alone shows progress and writes metrics and checkpoints."""
    run_dir = Path(run_dir)
    rank, world = parallel.rank_world()
    micro_batches = micro_batches or cfg.grad_accum
    ckpt_dir = run_dir / "checkpoints"
    metrics_path = run_dir / "metrics.jsonl"
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.steps <= 0:
        raise ValueError(f"steps must be positive, got {cfg.steps}")
    optimizer = make_optimizer(params, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    device = next(iter(params.values())).device

    start = 0
    state = checkpoint.load_latest(ckpt_dir) if resume else None
    if state is not None:
        start = checkpoint.restore(state, params, optimizer, scheduler, metrics_path if rank == 0 else None)
    else:
        torch.manual_seed(cfg.seed)
        if metrics_path.exists() and not resume and rank == 0:
            metrics_path.unlink()

    model.train()
    last = {"step": start, "loss": float("nan")}
    bar = tqdm(total=cfg.steps, initial=start, desc="sft", unit="step", dynamic_ncols=True, disable=rank > 0)
    t0 = time.time()
    with checkpoint.interruptible() as interrupt:
        try:
            for step in range(start, cfg.steps):
                batches = [_to(b, device) for micro in range(micro_batches) if (b := batches_fn(step * micro_batches + micro)) is not None]
                n_tokens = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
                if world > 1:  # every rank divides by the whole step's count
                    n_tokens = int(parallel.all_sum(torch.tensor([n_tokens]))[0])
                total = 0.0
                for batch in batches:
                    loss_sum, _ = sft_loss_sum(model, batch)
                    (loss_sum / max(1, n_tokens)).backward()
                    total += loss_sum.item()
                agreed_stop = None
                if world > 1:  # and a Ctrl-C on rank 0 reaches every rank at the same step (one that comes
                    # during the sum stays requested, for the next step: it must not be overwritten)
                    total, stop = parallel.sum_gradients(list(params.values()), total, float(interrupt.requested))
                    agreed_stop = stop > 0
                loss = total / max(1, n_tokens)
                grad_norm = torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.max_grad_norm)
                if not (math.isfinite(loss) and math.isfinite(grad_norm)):  # never step on a NaN: stop, weights untouched
                    what = f"loss is {loss}" if not math.isfinite(loss) else f"gradient norm is {float(grad_norm)} (loss {loss:.4g})"
                    raise diverged(step + 1, what, ckpt_dir)
                lr = scheduler.get_last_lr()[0]
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                done = step + 1
                last = {"step": done, "loss": loss}
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
                if rank == 0 and (done % cfg.log_every == 0 or done == cfg.steps):
                    record = {"step": done, "loss": loss, "lr": lr, "grad_norm": float(grad_norm), "tokens": n_tokens, "elapsed_s": round(time.time() - t0, 3)}
                    with metrics_path.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                checkpoint.end_of_step(ckpt_dir, done, cfg, params, optimizer, scheduler, interrupt, save=rank == 0, stop=agreed_stop)
        finally:
            bar.close()
            model.eval()
    return last


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}

