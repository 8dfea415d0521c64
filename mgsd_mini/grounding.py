"""Stage 1 — grounding (cold start): LoRA SFT on perception questions about puzzle images.

The student learns to recover the symbolic state from pixels: grid size, where the start / goal /
agent / printer / table are, which cells are holes, which sides of each maze cell are open, which
moves are legal. Data: every perception question of `puzzles_per_level` train-split puzzles per task and
level (never a val/test puzzle), each answered exactly; with `pack_questions`, a puzzle's
questions (or each `pack_size` of them) are packed into one sequence that shows its image once. Only the LoRA adapter trains; the base
model stays frozen (the paper adapts the language model only; the mini preset adapts its vision
blocks too, see GroundingConfig). Every optimizer step also replays, in one more micro-batch,
`replay_examples` of the base's own stage-0 examples (mini only), so that the adapter learns to see
without unlearning to plan. With `workers` > 1 (the mini default: 2) each of that many one-thread
processes trains on its share of every micro-batch and they sum their gradients (parallel.py). At
the end the adapter is saved in peft's format and perception is evaluated on held-out test puzzles.
"""

from __future__ import annotations

import functools
import math
import random
from pathlib import Path

import torch

import puzzles
from puzzles.base import GridTask
from mgsd_mini import evaluate, lora, model as models, parallel, pretrain, prompts, report
from mgsd_mini.config import TASKS, BaseConfig, GroundingConfig, save as save_config
from mgsd_mini.data import collate, encode_sfts, pack_shared_prefix
from mgsd_mini.sft import named_trainables, train_sft


def task_levels(cfg) -> dict[str, list[int]]:
    return evaluate.choose_levels(cfg.tasks, cfg.levels)


def puzzles_per_level(task: str, cfg: GroundingConfig) -> int:
    """How many train puzzles each level of `task` gives: n_per_level if set, else the task's n_per_level_by_task."""
    return cfg.n_per_level if cfg.n_per_level is not None else cfg.n_per_level_by_task[TASKS.index(task)]


def train_records(task: str, level: int, cfg: GroundingConfig) -> list[dict]:
    """The train puzzles of (task, level) (`puzzles_per_level`): make_split's first ones, except that where
    the task has rare cases (GridTask.rare) `rare_frac` of them are rare, the first rare ones of a
    longer draw of the same split, and the rest the first others. A relation the generator seldom
    shows (MiniBehaviour's agent next to the printer) is then seen often enough to be learned; test
    puzzles stay as the generator draws them."""
    t, n = puzzles.get_task(task), puzzles_per_level(task, cfg)
    n_rare = round(cfg.rare_frac * n)
    if n_rare == 0 or type(t).rare is GridTask.rare:  # nothing to over-sample: the puzzles as drawn
        return puzzles.make_split(task, level, "train", n, cfg.seed)
    draw = n
    while True:  # make_split(n) is the first n of make_split(m > n): a longer draw only draws further
        try:
            pool = puzzles.make_split(task, level, "train", draw, cfg.seed)
        except ValueError as e:  # the level holds fewer puzzles than the draw
            raise ValueError(f"{task} level {level}: {n_rare} rare and {n - n_rare} other train puzzles are more than it holds "
                             f"({e}); lower --rare-frac or its count of puzzles") from e
        is_rare = [t.rare(record["state"]) for record in pool]
        rare = [record for record, r in zip(pool, is_rare) if r]
        common = [record for record, r in zip(pool, is_rare) if not r]
        if len(rare) >= n_rare and len(common) >= n - n_rare:
            return common[:n - n_rare] + rare[:n_rare]
        # draw further, by the shortfall's ratio (a task-level holds a few thousand puzzles, not 2^k n)
        short = max(n_rare / max(1, len(rare)), (n - n_rare) / max(1, len(common)))
        draw = math.ceil(draw * min(2.0, 1.1 * short))


def perception_pairs(processor, cfg: GroundingConfig):
    """Per train puzzle of every task and level: ([(perception prompt, answer) of each of its questions], its image)."""
    instructions = prompts.instructed(processor)
    for task, levels in task_levels(cfg).items():
        for level in levels:
            for record in train_records(task, level, cfg):
                pairs = [(prompts.perception_prompt(task, qa["question"], instructions), qa["answer"]) for qa in record["perception"]]
                yield pairs, models.puzzle_image(processor, task, level, record["state"])


def perception_examples(processor, cfg: GroundingConfig, then=None) -> list:
    """The encoded perception questions of each train puzzle: one list per puzzle (sharing one pixel
    tensor), or what `then` makes of it. Under `parallel.run` each rank encodes its share of the
    puzzles, runs `then` on them (training: `puzzle_units`, packing) and they swap the results:
    encoding (chat template, tokenizer, image processor) is most of a run's first minute."""
    def encode(item):
        questions = encode_sfts(processor, item[0], [item[1]])
        return then(questions) if then else questions

    per_puzzle = parallel.map_shared(encode, list(perception_pairs(processor, cfg)))
    if not per_puzzle:
        raise ValueError("no grounding data: check --tasks, --levels and --n-per-level")
    return per_puzzle


def puzzle_units(questions: list[dict], model, cfg: GroundingConfig) -> list[dict]:
    """What a micro-batch holds `batch_size` of, from one puzzle's encoded questions: the questions,
    or with `pack_questions` one packed sequence per `pack_size` of them (0 = all), in order."""
    if not cfg.pack_questions:
        return questions
    size = cfg.pack_size or len(questions)
    return [pack_shared_prefix(questions[i:i + size], model.model.get_rope_index) for i in range(0, len(questions), size)]


def training_units(puzzles_questions: list[list[dict]], model, cfg: GroundingConfig) -> list[dict]:
    """Every puzzle's `puzzle_units`, puzzle after puzzle."""
    return [unit for questions in puzzles_questions for unit in puzzle_units(questions, model, cfg)]


def make_batches(examples: list[dict], pad_id: int, cfg: GroundingConfig):
    """batches_fn(i): micro-batch i of a fresh seeded shuffle of `examples` (the training units)
    every epoch (pure in (seed, i)); in a data-parallel run, this rank's share of it (`shard`).

    An optimizer step's examples (`grad_accum` micro-batches) are split into micro-batches by
    length: the gradient is the same sum over the same examples, but one long example (the
    "Restate the state ." answer in every few questions, or the puzzle with the most questions)
    no longer pads a whole micro-batch to its length.
    """
    per_epoch = math.ceil(len(examples) / cfg.batch_size)
    per_step = cfg.batch_size * cfg.grad_accum

    @functools.lru_cache(maxsize=1)  # one shuffle per epoch, not per micro-batch (~8 ms each at 28,800)
    def epoch_order(epoch: int) -> list[int]:
        order = list(range(len(examples)))
        random.Random(f"grounding|{cfg.seed}|{epoch}").shuffle(order)
        return order

    def batches_fn(i: int) -> dict:
        epoch, j = divmod(i, per_epoch)
        group, k = divmod(j, cfg.grad_accum)
        step_examples = sorted(epoch_order(epoch)[group * per_step:(group + 1) * per_step], key=lambda e: len(examples[e]["input_ids"]))
        return collate_shard([examples[e] for e in step_examples[k * cfg.batch_size:(k + 1) * cfg.batch_size]], pad_id)

    return batches_fn


def collate_shard(examples: list[dict], pad_id: int) -> dict | None:
    """This rank's rows of a micro-batch (`parallel.shard`) collated; None when it gets none."""
    mine = parallel.shard(examples)
    return collate(mine, pad_id) if mine else None


def replay_batch(processor, cfg: GroundingConfig, i: int) -> dict:
    """Replay micro-batch i: `replay_examples` stage-0 own-state planning examples of one (task, level), train split.

    A generic grid of the puzzle's size, the task name, the gold state restated (unlabelled) and the
    optimal plan (labelled) — the shipped base's own-state form (pretrain.planning_draft,
    `own_state_image` "generic"). It shows no puzzle image and teaches no perception: what it keeps
    is planning from a state written in the response after an image. Without it, grounding cut the
    base's planning from a forced gold state after an image from 78.8 % to 56.8 % (MiniBehaviour
    86 -> 6 %; bench/plan_from_restatement.py, README "Status").
    """
    rng = random.Random(f"grounding-replay|{cfg.seed}|{i}")
    levels = task_levels(cfg)
    task = rng.choice(sorted(levels))
    level = rng.choice(levels[task])
    drafts = [pretrain.planning_draft(processor, task, level, rng, detour_frac=BaseConfig.detour_frac, own_state_frac=1.0,
                                      own_state_image="generic")
              for _ in range(cfg.replay_examples)]
    return pretrain.encode_shard(processor, drafts)


def with_replay(perception_fn, replay_fn, cfg: GroundingConfig):
    """batches_fn over steps of `grad_accum` perception micro-batches, then one replay micro-batch."""
    per_step = cfg.grad_accum + 1

    def batches_fn(i: int) -> dict:
        step, k = divmod(i, per_step)
        return perception_fn(step * cfg.grad_accum + k) if k < cfg.grad_accum else replay_fn(i)

    return batches_fn


def run(cfg: GroundingConfig, run_dir: Path, resume: bool = False) -> Path:
    """Train the grounding adapter (on `cfg.workers` processes), evaluate it; returns its directory (run_dir/adapter)."""
    if cfg.model == "mini" and not (models.MINI_BASE / "config.json").exists():
        raise models.ModelLoadError(f"no mini base at {models.MINI_BASE}: train one with `python train.py --stage base --ship`, or pass --model DIR")
    parallel.check_cpu(cfg.workers, models.pick_device(cfg.device))
    model, processor, rows = parallel.run(cfg.workers, train_and_evaluate, cfg, run_dir, resume)
    adapter = lora.save_adapter(model, "grounding", run_dir / "adapter")
    if rows is not None:  # perception on held-out test puzzles: did grounding teach the student to see?
        summary = evaluate.summarize(rows, "perception", cfg.model, [str(adapter)])
        report.print_tables([summary])
        report.write_json(run_dir / "perception.json", summary)
        report.write_jsonl(run_dir / "perception_cases.jsonl", rows)
    return adapter


def train_and_evaluate(cfg: GroundingConfig, run_dir: Path, resume: bool = False):
    """(model, processor, perception rows on `eval_n` test puzzles a task-level, or None): what every rank does."""
    model, processor = train(cfg, run_dir, resume)
    if cfg.eval_n <= 0:
        return model, processor, None
    cases = evaluate.held_out_cases(task_levels(cfg), cfg.eval_n, "test", seed=cfg.seed)
    return model, processor, perception_rows(model, processor, cases)


def perception_rows(model, processor, cases: list[dict]) -> list[dict]:
    """evaluate.evaluate's perception rows for `cases`, each rank answering every world-th case; every
    rank gets all the rows, in the cases' order."""
    rank, world = parallel.rank_world()
    _, mine = evaluate.evaluate(model, processor, cases[rank::world], "perception", batch_size=32, progress=rank == 0)
    order = {case["id"]: i for i, case in enumerate(cases)}
    return sorted((row for rows in parallel.all_gather(mine) for row in rows), key=lambda row: order[row["id"]])


def train(cfg: GroundingConfig, run_dir: Path, resume: bool = False):
    """(model with its trained "grounding" adapter, processor): what every rank of the run does."""
    rank, _ = parallel.rank_world()
    model, processor = models.load(cfg.model, device=cfg.device, grad_ckpt=cfg.grad_ckpt)
    torch.manual_seed(cfg.seed)  # the adapter's initial A: the same run twice (and every rank) gives the same adapter
    if cfg.lora_vision:
        lora.add_lora(model, "grounding", cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, lora.LM_TARGETS + lora.VISION_TARGETS, scope=None)
    else:
        lora.add_lora(model, "grounding", cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout)
    per_puzzle = perception_examples(processor, cfg, then=lambda questions: (len(questions), puzzle_units(questions, model, cfg)))
    n_questions, n_puzzles = sum(n for n, _ in per_puzzle), len(per_puzzle)
    units = [unit for _, puzzle in per_puzzle for unit in puzzle]
    if cfg.steps <= 0:  # derive the step count from the epochs
        cfg.steps = math.ceil(cfg.epochs * len(units) / (cfg.batch_size * cfg.grad_accum))
    if rank == 0:
        save_config(cfg, run_dir)
        print(f"grounding: {n_questions} perception questions about {n_puzzles} puzzles, "
              f"{cfg.steps} steps of {cfg.batch_size * cfg.grad_accum} {'packed sequences' if cfg.pack_questions else 'questions'}"
              f"{f' on {cfg.workers} processes' if cfg.workers > 1 else ''}")
    batches = make_batches(units, processor.tokenizer.pad_token_id, cfg)
    if cfg.replay_examples:
        batches = with_replay(batches, functools.partial(replay_batch, processor, cfg), cfg)
    train_sft(model, batches, named_trainables(model), cfg, run_dir, resume=resume, micro_batches=cfg.grad_accum + bool(cfg.replay_examples))
    return model, processor
