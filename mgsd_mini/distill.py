"""Stage 2 — on-policy distillation from the privileged symbolic teacher (DESIGN §4).

Per optimizer step, for B train-split puzzles (a pure function of (seed, step), so resume is exact):

1. rollout   the student (base + frozen grounding adapter + trainable "distill" adapter) sees the
             image x_S and samples one response y at `temperature` (vision pad tokens suppressed);
2. score     the teacher — the *same module* with every adapter disabled, under no_grad — reads
             [x_T ; y] (symbolic state as text, + the reference plan); the student reads [x_S ; y].
             Only response positions are scored (logits at t-1 score token t), through the lm_head
             in chunks of `logit_chunk` tokens straight into the loss kernel, each chunk
             back-propagated at once into the hidden states, so [tokens, vocab] logits never exist;
3. update    grad-norm clip, AdamW, schedule.

Losses, with p = π_θ(·|x_S, y_<t), q = π_T(·|x_T, y_<t), m_t = 1 on response tokens up to and
including <|im_end|>, N = Σ m_t over the whole batch (all micro-batches: sums, not means of means):

    full:     L = Σ_t m_t D(p_t, q_t) / N,   D = KL(p‖q) (reverse, default) | KL(q‖p) | JSD_β
    sampled:  A_t = stopgrad(log q(y_t) − log p(y_t)),   L = −Σ_t m_t A_t log p(y_t) / N
              (∇L = −Σ m_t (log q − log p) ∇log p(y_t) / N: the reference's estimator)
    gold:     the off-policy baseline — no rollout and no teacher: y is the gold response (restated
              state + optimal plan) and L = −Σ_t m_t log p(y_t) / N, plain SFT from the image on
              the same puzzles, steps and adapter.

Image/video pad tokens are masked out of both distributions (as `generate` does when sampling), so
log p(y_t) here is exactly the log-prob the rollout was drawn with at temperature 1.

Outputs in run_dir: config.json, metrics.jsonl (one line per step), checkpoints/, `adapter` (the
best by validation macro success, or the last when validation is off), `adapter-last`, curves.png.
"""

from __future__ import annotations

import functools
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from tqdm import tqdm

import kernels
import puzzles
from mgsd_mini import checkpoint, evaluate, lora, model as models, prompts, report
from mgsd_mini.config import ConfigError, DistillConfig, check_minimum, save as save_config
from mgsd_mini.data import collate, encode_chat
from mgsd_mini.generate import generate, prompt_positions, suppressed_token_ids
from mgsd_mini.sft import diverged, lr_factor, make_optimizer, named_trainables

BANNED_LOGIT = -1e4  # finite "-inf": exp() underflows to exactly 0 without NaN in 0 * (-inf - -inf)


# ----------------------------------------------------------------------------- data


def task_levels(cfg: DistillConfig) -> dict[str, list[int]]:
    try:
        return evaluate.choose_levels(cfg.tasks, cfg.levels)
    except ValueError as err:  # unknown task or level: a CLI input error
        raise ConfigError(str(err)) from None


def train_pool(cfg: DistillConfig) -> list[dict]:
    """`n_per_task` train-split puzzle records per task, split evenly over its levels: one epoch of prompts."""
    pool = []
    for task, levels in task_levels(cfg).items():
        for i, level in enumerate(levels):
            n = cfg.n_per_task // len(levels) + (i < cfg.n_per_task % len(levels))
            pool += puzzles.make_split(task, level, "train", n, cfg.seed) if n else []
    return pool


@functools.lru_cache(maxsize=2)  # a step's prompts span at most two epochs
def epoch_order(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    order = list(range(n))
    random.Random(f"distill|{seed}|{epoch}").shuffle(order)
    return tuple(order)


def step_records(pool: list[dict], cfg: DistillConfig, step: int) -> list[dict]:
    """The B puzzles of optimizer step `step`: prompt i = step*B + j of a fresh shuffle per epoch."""
    out = []
    for i in range(step * cfg.batch_size, (step + 1) * cfg.batch_size):
        epoch, k = divmod(i, len(pool))
        out.append(pool[epoch_order(len(pool), cfg.seed, epoch)[k]])
    return out


def encode_prompts(processor, records: list[dict], reference_plan: bool) -> tuple[list[dict], list[dict]]:
    """(student examples [image], teacher examples [symbolic text]) for `records`, unpadded."""
    students, teachers = [], []
    instructions = prompts.instructed(processor)
    for rec in records:
        task, level, state = rec["task"], int(rec["level"]), rec["state"]
        image = models.puzzle_image(processor, task, level, state)
        students.append(encode_chat(processor, prompts.student_prompt(task, instructions), [image], add_generation_prompt=True))
        plan = rec["optimal_plan"] if reference_plan else None
        teachers.append(encode_chat(processor, prompts.teacher_prompt(task, state, plan, instructions), None, add_generation_prompt=True))
    return students, teachers


def gold_responses(tokenizer, records: list[dict]) -> list[torch.Tensor]:
    """The target response of each record (restated state + optimal plan) as tokens, end-of-turn included."""
    return [torch.tensor(tokenizer(prompts.response(r["task"], r["state"], r["optimal_plan"]))["input_ids"]
                         + [tokenizer.eos_token_id]) for r in records]


def responses_of(tokens: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Each row's response tokens where mask is 1 (up to and including end-of-turn); post-EOS padding dropped."""
    return [row[m.bool()].cpu() for row, m in zip(tokens, mask)]


# ----------------------------------------------------------------------------- scoring


def join(examples: list[dict], responses: list[torch.Tensor], pad_id: int) -> dict:
    """Right-padded batch of [prompt ; response] per row (response tokens are text: mm type 0)."""
    rows = []
    for ex, y in zip(examples, responses, strict=True):
        y = y.to(ex["input_ids"].dtype)
        row = dict(ex)
        row["input_ids"] = torch.cat([ex["input_ids"], y])
        row["attention_mask"] = torch.cat([ex["attention_mask"], torch.ones_like(y)])
        row["mm_token_type_ids"] = torch.cat([ex["mm_token_type_ids"], torch.zeros(len(y), dtype=ex["mm_token_type_ids"].dtype)])
        rows.append(row)
    return collate(rows, pad_id)


def response_hidden(model, examples: list[dict], responses: list[torch.Tensor], pad_id: int) -> torch.Tensor:
    """Final hidden states [N, H] at the positions that predict each response token (N = Σ len(y_i)).

    Positions are passed explicitly (3-D M-RoPE from `get_rope_index` over the whole sequence), so
    stale `rope_deltas` from an earlier generate() are never used (DESIGN §7). Row i's token t sits
    at column P_i + t; the hidden state that scores it is the one at column P_i + t - 1.
    """
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in join(examples, responses, pad_id).items()}
    limit = getattr(getattr(model.config, "text_config", model.config), "max_position_embeddings", None)
    positions = prompt_positions(model, batch)
    if limit is not None and int(positions.max()) + 1 > limit:
        raise ConfigError(f"a prompt + response needs {int(positions.max()) + 1} positions, more than the model's "
                          f"context of {limit}: lower --max-new-tokens")
    hidden = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=positions,
                         mm_token_type_ids=batch["mm_token_type_ids"], pixel_values=batch.get("pixel_values"),
                         image_grid_thw=batch.get("image_grid_thw"), use_cache=False).last_hidden_state
    rows = torch.cat([torch.full((len(y),), i) for i, y in enumerate(responses)]).long()
    cols = torch.cat([torch.arange(len(y)) + len(ex["input_ids"]) - 1 for ex, y in zip(examples, responses)]).long()
    return hidden[rows.to(device), cols.to(device)]


def chunk_logits(hidden: torch.Tensor, lm_head: torch.nn.Module, banned: list[int]) -> torch.Tensor:
    """lm_head(hidden) for one chunk of response tokens, vision pad tokens pushed to BANNED_LOGIT."""
    logits = F.linear(hidden, lm_head.weight, lm_head.bias)
    if banned:
        logits = logits.index_fill(-1, torch.tensor(banned, device=logits.device), BANNED_LOGIT)
    return logits


def response_loss(student_h: torch.Tensor, teacher_h: torch.Tensor, targets: torch.Tensor, lm_head, banned: list[int],
                  cfg: DistillConfig, denom: int, backward: bool = True) -> tuple[float, float]:
    """Σ over these tokens of the per-token loss / denom, chunked; returns (loss, Σ per-token KL).

    With `backward`, each chunk's loss is back-propagated at once into a detached copy of
    student_h (so only one chunk of logits and its gradient exist at a time), and the accumulated
    gradient is then pushed through the model in one `student_h.backward`. The KL sum is the exact
    divergence for `full`, the sampled estimate Σ (log p − log q)(y_t) for `sampled`.
    """
    h = student_h.detach().requires_grad_(backward)
    loss_total, kl_total = 0.0, 0.0
    for start in range(0, len(targets), cfg.logit_chunk):
        part = slice(start, start + cfg.logit_chunk)
        with torch.no_grad():
            t_logits = None if teacher_h is None else chunk_logits(teacher_h[part], lm_head, banned)
        with torch.enable_grad() if backward else torch.no_grad():
            s_logits = chunk_logits(h[part], lm_head, banned)
            if cfg.loss == "full":
                per_token = kernels.per_token_kl(s_logits, t_logits, cfg.divergence, cfg.jsd_beta, inplace=backward)
                kl = per_token.detach()
            elif cfg.loss == "gold":
                per_token = -kernels.token_logprobs(s_logits, targets[part], inplace=backward)
                kl = torch.zeros(())  # there is no teacher distribution to compare with
            else:
                logp = kernels.token_logprobs(s_logits, targets[part], inplace=backward)
                logq = kernels.token_logprobs(t_logits, targets[part])
                advantage = (logq - logp).detach()
                per_token = -advantage * logp
                kl = -advantage
            loss = per_token.sum() / denom
        if backward:
            loss.backward()
        loss_total += loss.item()
        kl_total += kl.sum().item()
    if backward and len(targets):
        student_h.backward(h.grad)
    return loss_total, kl_total


def score(model, pad_id: int, banned: list[int], students: list[dict], teachers: list[dict],
          responses: list[torch.Tensor], cfg: DistillConfig, denom: int, backward: bool = True) -> tuple[float, float]:
    """Teacher (adapters off, no_grad) and student scoring of the same responses; loss (and grads)."""
    targets = torch.cat(responses).long().to(next(model.parameters()).device)
    if len(targets) == 0:  # nothing to score in this micro-batch
        return 0.0, 0.0
    teacher_h = None
    if cfg.loss != "gold":
        with torch.no_grad(), lora.adapters_disabled(model):
            teacher_h = response_hidden(model, teachers, responses, pad_id)
    # The frozen grounding adapter folded into W for the forward and the backward (lora.merged).
    with lora.merged(model, frozen_only=True):
        with torch.enable_grad() if backward else torch.no_grad():
            student_h = response_hidden(model, students, responses, pad_id)
        return response_loss(student_h, teacher_h, targets, model.get_output_embeddings(), banned, cfg, denom, backward)


# ----------------------------------------------------------------------------- one step


def micro_batches(n: int, cfg: DistillConfig) -> list[slice]:
    size = cfg.micro_batch_size or n
    return [slice(i, i + size) for i in range(0, n, size)]


def distill_step(model, processor, records: list[dict], cfg: DistillConfig, seed: int) -> dict:
    """Rollouts + scoring + backward for one optimizer step (gradients accumulate in .grad)."""
    pad_id = processor.tokenizer.pad_token_id
    banned = suppressed_token_ids(processor.tokenizer)
    students, teachers = encode_prompts(processor, records, cfg.reference_plan)

    t0 = time.perf_counter()
    model.eval()  # rollouts with the KV cache (gradient checkpointing would switch it off in train mode)
    responses, texts = [], []
    if cfg.loss == "gold":  # off-policy: the gold responses instead of rollouts
        responses = gold_responses(processor.tokenizer, records)
    else:
        for k, part in enumerate(micro_batches(len(records), cfg)):
            batch = collate(students[part], pad_id, left_pad=True)
            out = generate(model, processor, batch, cfg.max_new_tokens, temperature=cfg.temperature, seed=seed * 1000 + k)
            responses += responses_of(out.tokens, out.mask)
            texts += out.texts
    t1 = time.perf_counter()

    n_tokens = sum(len(y) for y in responses)
    loss, kl = 0.0, 0.0
    if n_tokens:
        model.train()
        for part in micro_batches(len(records), cfg):
            l, k = score(model, pad_id, banned, students[part], teachers[part], responses[part], cfg, n_tokens)
            loss, kl = loss + l, kl + k
        model.eval()
    t2 = time.perf_counter()
    success = [puzzles.check(r["task"], r["state"], text).success for r, text in zip(records, texts)]
    return {"loss": loss, "kl": kl / max(1, n_tokens), "tokens": n_tokens,
            "success": sum(success) / len(success) if success else None,  # gold: no rollouts
            "response_len": n_tokens / len(records), "t_generate": t1 - t0, "t_score": t2 - t1}


# ----------------------------------------------------------------------------- the stage


def find_grounding(cfg: DistillConfig) -> Path:
    """cfg.grounding, or the newest runs/grounding-*/adapter; AdapterError if there is none."""
    if cfg.grounding:
        path = Path(cfg.grounding)
        if (path / lora.CONFIG_FILE).is_file() or not (path / "adapter").is_dir():
            return path
        return path / "adapter"  # a grounding run directory was given
    found = sorted(Path("runs").glob("grounding-*/adapter"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise lora.AdapterError("no grounding adapter: train one with `python train.py --stage grounding`, "
                                "pass --grounding DIR, or use --init base for the no-grounding ablation")
    return found[-1]


def check_config(cfg: DistillConfig) -> None:
    choices = {"loss": ("full", "sampled", "gold"), "divergence": ("reverse", "forward", "jsd"), "init": ("grounding", "base")}
    for key, allowed in choices.items():
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"--{key} must be one of {', '.join(allowed)}, got '{getattr(cfg, key)}'")
    check_minimum(cfg)
    if cfg.temperature <= 0:
        raise ConfigError(f"--temperature must be > 0 (on-policy sampling), got {cfg.temperature}")


def build_student(cfg: DistillConfig):
    """Base model (frozen) + grounding adapter (frozen, kept separate) + new trainable fp32 "distill" adapter."""
    if cfg.model == "mini" and not (models.MINI_BASE / "config.json").exists():
        raise models.ModelLoadError(f"no mini base at {models.MINI_BASE}: train one with `python train.py --stage base --ship`, or pass --model DIR")
    grounding = find_grounding(cfg) if cfg.init == "grounding" else None
    model, processor = models.load(cfg.model, device=cfg.device, grad_ckpt=cfg.grad_ckpt)
    adapters = []
    if grounding is not None:
        adapters.append(lora.load_adapter(model, grounding, name="grounding", trainable=False))
    with torch.random.fork_rng(devices=[]):  # the adapter's init is a function of the seed alone
        torch.manual_seed(cfg.seed)
        lora.add_lora(model, "distill", cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout)
    lora.set_active(model, adapters + ["distill"])
    return model, processor, [str(grounding)] if grounding else []


def validate(model, processor, cfg: DistillConfig) -> float:
    """Greedy image-mode macro success on `val_n` val-split puzzles per task and level."""
    cases = evaluate.held_out_cases(task_levels(cfg), cfg.val_n, "val", seed=cfg.seed)
    summary, _ = evaluate.evaluate(model, processor, cases, "image", batch_size=cfg.micro_batch_size or cfg.batch_size,
                                   max_new_tokens=cfg.max_new_tokens, progress=False)
    return summary["macro"]["success"]


def run(cfg: DistillConfig, run_dir: Path, resume: bool = False) -> Path:
    """Distil the teacher into the student's "distill" adapter; returns run_dir/adapter."""
    check_config(cfg)
    run_dir = Path(run_dir)
    ckpt_dir, metrics_path, best_path = run_dir / "checkpoints", run_dir / "metrics.jsonl", run_dir / "best.json"
    model, processor, stacked = build_student(cfg)
    pool = train_pool(cfg)
    if cfg.steps <= 0:
        cfg.steps = math.ceil(cfg.epochs * len(pool) / cfg.batch_size)
    save_config(cfg, run_dir)
    params = named_trainables(model)
    assert all(".distill." in n for n in params), "only the distill adapter may train"
    optimizer = make_optimizer(params, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))

    start, best = 0, {"step": None, "val_macro": -1.0}
    state = checkpoint.load_latest(ckpt_dir) if resume else None
    if state is not None:
        start = checkpoint.restore(state, params, optimizer, scheduler, metrics_path)
        if best_path.exists() and json.loads(best_path.read_text())["step"] <= start:
            best = json.loads(best_path.read_text())
    else:
        torch.manual_seed(cfg.seed)
        for stale in (metrics_path, best_path):
            stale.unlink(missing_ok=True)
    print(f"distill: {len(pool)} train prompts, {cfg.steps} steps of {cfg.batch_size}, loss {cfg.loss}"
          f"{'/' + cfg.divergence if cfg.loss == 'full' else ''}, student = base + {' + '.join(['grounding'] * bool(stacked) + ['distill'])}")

    def log(record: dict) -> None:
        with metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def maybe_validate(done: int, record: dict) -> None:
        if not cfg.val_every or (done % cfg.val_every and done != cfg.steps):
            return
        record["val_macro"] = validate(model, processor, cfg)
        if record["val_macro"] > best["val_macro"]:
            best.update(step=done, val_macro=record["val_macro"])
            lora.save_adapter(model, "distill", run_dir / "adapter")
            report.write_json(best_path, best)

    if start == 0 and cfg.val_every:  # the starting point (grounding alone) is the first candidate
        record = {"step": 0}
        maybe_validate(0, record)
        log(record)

    bar = tqdm(total=cfg.steps, initial=start, desc="distill", unit="step", dynamic_ncols=True)
    with checkpoint.interruptible() as interrupt:
        try:
            for step in range(start, cfg.steps):
                stats = distill_step(model, processor, step_records(pool, cfg, step), cfg, seed=cfg.seed * 1_000_003 + step)
                t0 = time.perf_counter()
                done = step + 1
                if stats["tokens"] == 0:  # an all-masked batch: nothing to learn from, skip the update
                    grad_norm = 0.0
                else:
                    if not math.isfinite(stats["loss"]):
                        raise diverged(done, f"loss is {stats['loss']}", ckpt_dir)
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.max_grad_norm))
                    if not math.isfinite(grad_norm):
                        raise diverged(done, f"gradient norm is {grad_norm} (loss {stats['loss']:.4g})", ckpt_dir)
                    optimizer.step()
                lr = scheduler.get_last_lr()[0]
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                t_update = time.perf_counter() - t0
                total = stats["t_generate"] + stats["t_score"] + t_update
                record = {"step": done, **{k: v if v is None else round(v, 6) for k, v in stats.items()}, "t_update": round(t_update, 4),
                          "tok_s": round(stats["tokens"] / total, 1), "lr": lr, "grad_norm": grad_norm}
                maybe_validate(done, record)
                log(record)
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.4f}", kl=f"{stats['kl']:.4f}", succ="-" if stats["success"] is None else f"{stats['success']:.2f}", len=f"{stats['response_len']:.0f}",
                                tok_s=f"{record['tok_s']:.0f}", **({"val": f"{record['val_macro']:.3f}"} if "val_macro" in record else {}))
                checkpoint.end_of_step(ckpt_dir, done, cfg, params, optimizer, scheduler, interrupt)
        finally:
            bar.close()
            optimizer.zero_grad(set_to_none=True)

    last = lora.save_adapter(model, "distill", run_dir / "adapter-last")
    if best["step"] is None:  # no validation: the final adapter is the result
        lora.save_adapter(model, "distill", run_dir / "adapter")
    else:
        print(f"distill: best validation macro success {best['val_macro']:.3f} at step {best['step']} -> {run_dir / 'adapter'} (last: {last})")
    plot_curves(metrics_path, run_dir / "curves.png")
    return run_dir / "adapter"


# ----------------------------------------------------------------------------- plot


CURVES = (("kl", "mean per-token KL"), ("success", "rollout success"), ("response_len", "mean response length"),
          ("val_macro", "validation macro success"))


def plot_curves(metrics_path: Path, path: Path) -> None:
    """Four line panels (KL, rollout success, response length, validation macro) over steps, PNG."""
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()] if metrics_path.exists() else []
    w, h = 420, 220
    img = Image.new("RGB", (2 * w, 2 * h), "white")
    draw = ImageDraw.Draw(img)
    font = report._font(13)
    for n, (key, title) in enumerate(CURVES):
        x0, y0 = (n % 2) * w, (n // 2) * h
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        left, top, right, bottom = x0 + 50, y0 + 24, x0 + w - 12, y0 + h - 24
        draw.text((x0 + 6, y0 + 4), title, fill="black", font=font)
        draw.rectangle((left, top, right, bottom), outline="black")
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        lo, hi = min(ys), max(ys)
        lo, hi = (lo - 0.5, hi + 0.5) if hi == lo else (lo, hi)
        sx = lambda x: left + (right - left) * (x - min(xs)) / max(1, max(xs) - min(xs))
        sy = lambda y: bottom - (bottom - top) * (y - lo) / (hi - lo)
        draw.text((x0 + 4, top - 6), f"{hi:.3g}", fill="black", font=font)
        draw.text((x0 + 4, bottom - 8), f"{lo:.3g}", fill="black", font=font)
        draw.text((right - 60, bottom + 4), f"step {max(xs)}", fill="black", font=font)
        line = [(sx(x), sy(y)) for x, y in pts]
        if len(line) > 1:
            draw.line(line, fill=report.PALETTE[n], width=2)
        for x, y in line:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=report.PALETTE[n])
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format="PNG")
    tmp.replace(path)
