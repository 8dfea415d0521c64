"""Stage 0 (mini preset only): pretrain the tiny model from scratch into a base with a modality gap.

The real Qwen3-VL-4B already plans from text and reads puzzle images badly. The mini model must be
made into such a base first (DESIGN §4), from two streams of examples, drawn afresh every step:

- text planning (most batches): the teacher prompt without a reference plan or instructions — the
  task name + the symbolic state — answered by the restated state and `<answer>optimal plan</answer>`,
  the very response format the student will later produce from the image. Train-split puzzles
  only; `detour_frac` of them need a detour. Optional shares of the prompts add the reference plan
  (`plan_frac`: stage 2's teacher prompt) or give the task name only (`own_state_frac`: planning
  from a state written in the response, as the image student must).
- text perception questions (`question_frac` of the text batches): one of a puzzle's perception
  questions asked about its symbolic state in the prompt (never about its image).
- generic images (the first `vision_steps` steps, then `image_frac` of the batches): colour grids
  and shapes with captions (`generic_images.py`), so the vision pathway is trained without ever
  seeing a puzzle image.

Each micro-batch holds one kind and one (task, level), so its sequences have similar lengths and
little padding. The batch for micro-batch index i is a pure function of (seed, i): a resumed run
draws exactly the data it would have drawn. With `workers` > 1 (default 2) each one-thread process
draws the whole micro-batch and encodes and trains on its share of it (`Draft`, parallel.py).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import NamedTuple

import torch

import puzzles
from mgsd_mini import generic_images, model as models, parallel, prompts
from mgsd_mini.config import TASKS, BaseConfig, ConfigError, save as save_config
from mgsd_mini.data import IGNORE, collate, encode_sft, encode_sfts
from mgsd_mini.evaluate import DEFAULT_LEVELS
from mgsd_mini.sft import named_trainables, train_sft


def train_puzzle(task: str, level: int, rng: random.Random, detour: bool = False) -> dict:
    """A random puzzle of the train split (the base never sees a val/test puzzle, even as text);
    with `detour`, one that the obstacle-blind plan fails."""
    t = puzzles.get_task(task)
    while True:
        state = t.generate(level, rng)
        if puzzles.split_of(t.canonical(state)) != "train":
            continue
        if not detour or not t.verify(state, t.blind_plan(state)).success:
            return state


class Draft(NamedTuple):
    """An example drawn but not encoded yet. Every rank of a run draws a micro-batch's examples —
    the same random stream at any --workers — and encodes only its share (`encode`): encoding is
    most of the cost of drawing one."""

    prompt: list[dict]
    response: str
    images: list | None = None
    plan_only: bool = False  # an own-state prompt: its restated state unlabelled (`unlabel_restatement`)


def encode(processor, drafts: list[Draft]) -> list[dict]:
    """The drafts encoded (`encode_sft`), the text-only ones in one processor call (the same tensors)."""
    text_only = [i for i, d in enumerate(drafts) if not d.images]
    examples = {i: encode_sft(processor, d.prompt, d.response, d.images) for i, d in enumerate(drafts) if d.images}  # (each its own image)
    if text_only:
        examples.update(zip(text_only, encode_sfts(processor, [(drafts[i].prompt, drafts[i].response) for i in text_only], None)))
    return [unlabel_restatement(examples[i], processor.tokenizer) if d.plan_only else examples[i] for i, d in enumerate(drafts)]


def encode_shard(processor, drafts: list[Draft]) -> dict | None:
    """This rank's share of a micro-batch's drafts (`parallel.shard`), encoded and collated; None when it gets none."""
    mine = encode(processor, parallel.shard(drafts))
    return collate(mine, processor.tokenizer.pad_token_id) if mine else None


def planning_draft(processor, task: str, level: int, rng: random.Random, detour_frac: float = 0.0, grid_only_frac: float = 0.0,
                   plan_frac: float = 0.0, own_state_frac: float = 0.0, own_state_image: str = "none") -> Draft:
    """Text-mode planning: symbolic state in the prompt -> restated state + optimal plan.

    `detour_frac` of the puzzles are drawn among those the blind plan fails (the rest as generated):
    at frozen probability 0.9 only ~20 % of FrozenLake maps need a detour, so a model sees little
    that tells the blind shortest path from a real plan, and learns the former first.
    `grid_only_frac` of the prompts (FrozenLake, MiniBehaviour) give the grid without its coordinates
    line, which the response still restates: the base learns to locate the grid's symbols itself —
    what an image student must do once it has restated the grid from pixels.
    `plan_frac` of the prompts carry the reference plan, as stage 2's default teacher prompt does:
    a base that never saw one there is a poor teacher with it (42.8 % against 91.6 % without, on the
    base shipped before the option — README, "Status").
    `own_state_frac` of the prompts name the task only; the response is the same, but its restated
    state is unlabelled (nothing in the prompt says what it is) and only the plan is trained: the
    base learns to plan from a state in its own response, which is all an image student has. A base
    trained on state prompts alone planned from a gold restatement forced into its response at 31.6 %.
    `own_state_image` puts an image before the task name there, as in the student's prompt (see
    own_state_images).
    """
    state = train_puzzle(task, level, rng, detour=rng.random() < detour_frac)
    plan = puzzles.get_task(task).solve(state)
    if own_state_frac > 0 and rng.random() < own_state_frac:  # (no draw at 0, as below)
        images = own_state_images(processor, task, level, state, rng, own_state_image)
        messages = prompts.student_prompt(task, instructions=False) if images else prompts.task_prompt(task)
        return Draft(messages, prompts.response(task, state, plan), images, plan_only=True)
    # (no draw at grid_only_frac 0: the data of runs from before the option stays the same)
    grid_only = task in prompts.GRID_MARKS_ALL and grid_only_frac > 0 and rng.random() < grid_only_frac
    with_plan = plan_frac > 0 and rng.random() < plan_frac  # (no draw at 0, as above)
    prompt = prompts.teacher_prompt(task, state, plan if with_plan else None, instructions=False, coordinates=not grid_only)
    return Draft(prompt, prompts.response(task, state, plan))


OWN_STATE_IMAGES = ("none", "generic", "puzzle")


def own_state_images(processor, task: str, level: int, state: dict, rng: random.Random, kind: str) -> list | None:
    """The image of an own-state prompt: none, a generic grid of the puzzle's side, or the puzzle.

    The puzzle's own image is not meant to teach the base to read puzzles: the restated state after
    it is unlabelled (in context, never a target), so what it trains is planning from that state
    with a puzzle image in view — the student's situation. The shipped base uses "generic" all the
    same, so that it never sees a puzzle image (README, "Training")."""
    if kind not in OWN_STATE_IMAGES:
        raise ValueError(f"own_state_image '{kind}': choose one of {', '.join(OWN_STATE_IMAGES)}")
    if kind == "none":
        return None
    if kind == "generic":  # (every task's level is its grid side)
        return [generic_images.sample(rng, sizes=range(level, level + 1))[0]]
    return [models.puzzle_image(processor, task, level, state)]


def unlabel_restatement(example: dict, tokenizer) -> dict:
    """`example` with the labels of its restated state removed: the loss starts at `<answer>`."""
    labels, ids = example["labels"].clone(), example["input_ids"].tolist()
    opening = tokenizer(prompts.ANSWER_OPEN, add_special_tokens=False)["input_ids"]
    start = int((labels != IGNORE).nonzero()[0])
    answer = next(i for i in range(start, len(ids)) if ids[i:i + len(opening)] == opening)
    labels[start:answer] = IGNORE
    return {**example, "labels": labels}


def question_draft(task: str, level: int, rng: random.Random) -> Draft:
    """One perception question about a train puzzle, its symbolic state in the prompt, the exact
    answer the response. The restatement question is left out (planning responses restate already):
    what is asked is derived from the state — the coordinates of a grid's symbols, their neighbours,
    the legal moves — so that grounding would only have to map the image onto a state whose
    relations the base can already compute (it did not work out: see BaseConfig.question_frac)."""
    state = train_puzzle(task, level, rng)
    question, answer = rng.choice([qa for qa in puzzles.get_task(task).perception(state) if qa[0] != puzzles.RESTATE])
    return Draft(prompts.state_question(task, state, question), answer)


def generic_image_draft(rng: random.Random, side: int) -> Draft:
    image, question, answer = generic_images.sample(rng, sizes=range(side, side + 1))
    return Draft(prompts.image_question(question), answer, [image])


def task_levels(cfg: BaseConfig) -> list[tuple[str, int]]:
    """(task, level) pairs to train on (make_batches splits each task's share evenly over its levels)."""
    return [(task, level) for task in cfg.tasks for level in DEFAULT_LEVELS[task]]


def make_batches(processor, cfg: BaseConfig):
    """batches_fn(i) for the SFT loop: micro-batch i, a pure function of (cfg.seed, i)."""
    pairs = task_levels(cfg)
    weights = [cfg.task_shares[TASKS.index(task)] / len(DEFAULT_LEVELS[task]) for task, _ in pairs]

    def batches_fn(i: int) -> dict:
        rng = random.Random(f"base|{cfg.seed}|{i}")
        if i // cfg.grad_accum < cfg.vision_steps or rng.random() < cfg.image_frac:
            side = rng.choice(generic_images.SIZES)  # one grid size per batch: similar lengths, little padding
            drafts = [generic_image_draft(rng, side) for _ in range(cfg.batch_size)]
        else:
            questions = cfg.question_frac > 0 and rng.random() < cfg.question_frac  # (no draw at 0: older runs' data unchanged)
            task, level = rng.choices(pairs, weights)[0]
            drafts = [question_draft(task, level, rng) if questions else
                      planning_draft(processor, task, level, rng, cfg.detour_frac, cfg.grid_only_frac, cfg.plan_frac,
                                     cfg.own_state_frac, cfg.own_state_image) for _ in range(cfg.batch_size)]
        return encode_shard(processor, drafts)

    return batches_fn


def run(cfg: BaseConfig, run_dir: Path, resume: bool = False) -> Path:
    """Train a mini base (on `cfg.workers` processes), from scratch or further from `cfg.continue_from`;
    returns the saved model's directory."""
    if cfg.own_state_image not in OWN_STATE_IMAGES:  # (own_state_images refuses it too, but only once drawn)
        raise ConfigError(f"--own-state-image must be one of {', '.join(OWN_STATE_IMAGES)}, got '{cfg.own_state_image}'")
    parallel.check_cpu(cfg.workers, torch.device(cfg.device or "cpu"))
    save_config(cfg, run_dir)
    model, processor = parallel.run(cfg.workers, train, cfg, run_dir, resume)
    saved = models.save(model, processor, run_dir / "model")
    if cfg.ship:  # install it as the mini base every later stage and `--model mini` start from
        models.save(model, processor, models.MINI_BASE)
    return saved


def train(cfg: BaseConfig, run_dir: Path, resume: bool = False):
    """(trained model, processor): what every rank of the run does — the same initial weights, its
    share of every micro-batch, the summed gradients."""
    if cfg.continue_from:  # a saved model trained further (its own shape; `layers` / `mlp` unused)
        model, processor = models.load(cfg.continue_from, device=cfg.device or "cpu")
    else:
        model, processor = models.build_mini(seed=cfg.seed, layers=cfg.layers, mlp=cfg.mlp)
        model.to(cfg.device or "cpu")
    train_sft(model, make_batches(processor, cfg), named_trainables(model), cfg, run_dir, resume=resume)
    return model, processor
