"""Run configuration: one dataclass per stage, named presets, `--key value` overrides.

    cfg = resolve("grounding", "qwen3-vl-4b", {"lr": "2e-4"})   # strings from the CLI are converted
    save(cfg, run_dir)                                          # run_dir/config.json, atomically

The dataclass defaults are the `mini` preset (CPU, minutes); PRESETS holds what differs for the
paper's backbones (values from DESIGN §4: LoRA r 8 / alpha 16, lr 1e-4 cosine with 10% warm-up,
3 epochs, effective batch 64 for grounding; AdamW lr 1e-6 constant, weight decay 0.01, clip 1.0,
batch 32, 5 epochs for distillation).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from pathlib import Path

from puzzles.export import write_text

TASKS = ("frozenlake", "maze", "minibehaviour")


class ConfigError(ValueError):
    """Unknown stage, preset or option, or a value of the wrong type; the message says what to do."""


@dataclass
class Optim:
    """Fields every training stage shares (the SFT loop and the distillation loop read these)."""

    preset: str = "mini"
    model: str = "mini"  # "mini", a preset backbone, a local directory or a hub id
    out: str | None = None  # run directory; default runs/<stage>-<timestamp>
    seed: int = 0
    device: str | None = None  # default: cuda if available, else cpu
    grad_ckpt: bool = False
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, ...] = (0.9, 0.95)
    schedule: str = "cosine"  # cosine | linear | constant | wsd (warm-up, constant, linear decay at the end)
    warmup_frac: float = 0.1
    decay_frac: float = 0.25  # wsd only: the final fraction of steps that decays linearly to 0
    steps: int = 0  # optimizer steps; 0 = derive from epochs and the data size
    epochs: float = 1.0
    batch_size: int = 8  # examples per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    max_grad_norm: float = 1.0
    log_every: int = 10
    ckpt_every: int = 200
    tasks: tuple[str, ...] = TASKS


def check_per_task(flag: str, values: tuple, what: str, valid) -> None:
    """Refuse a per-task option (one value per task, in TASKS order) without a valid value for each task."""
    if len(values) != len(TASKS) or not all(valid(v) for v in values):
        raise ConfigError(f"{flag} needs {what} for each of {','.join(TASKS)}, got {values}")


@dataclass
class BaseConfig(Optim):
    """Stage 0 (mini only): pretrain the mini model from scratch into a text planner with weak vision."""

    lr: float = 1e-3
    weight_decay: float = 0.1
    schedule: str = "wsd"
    # The shipped base is one run of these defaults: 300 image-only steps, then mixed batches of 8
    # planning or generic-image examples x 4 accumulated, 40 min 17 s on 2 cores (README, "Training").
    # A batch of 8 x 4 learned faster a step than 32 x 1 (a 1,200-step pilot planned from text at
    # 56.9 against 44.1 %) for ~0.45 s a step either way. The warm-up fraction is a previous base's
    # (78 of 3,300 steps).
    warmup_frac: float = 78 / 3300
    steps: int = 4700
    batch_size: int = 8
    grad_accum: int = 4
    ship: bool = False  # also install the result as the shipped mini base (mgsd_mini/assets/mini-base)
    # The text decoder's shape, 128 wide with 4 heads. 8 layers x 256 planned no better than 6 x 512
    # at the same wall time (README, "Status": the pilot table).
    layers: int = 6
    mlp: int = 512
    # Generic images: `vision_steps` image-only steps first, then `image_frac` of the later batches. A
    # vision pathway trained only by a trickle of image batches among text ones learned nothing
    # (raster transcription 0 %); 300 image-only steps first and 15 % later: 38.5 % after 3,300 steps,
    # 100 % after 9,000 (bench/probe_vision.py).
    vision_steps: int = 300
    detour_frac: float = 0.4  # share of planning puzzles drawn among those the blind plan fails
    # Share of FrozenLake / MiniBehaviour prompts without the coordinates line (the response still
    # restates it). Off: at 0.5 a FrozenLake-only pilot planned far worse (README, "Status").
    grid_only_frac: float = 0.0
    image_frac: float = 0.15
    # Share of planning prompts with a "Reference plan : ..." line, so that the base is also a
    # teacher on the prompt stage 2 gives it by default (`DistillConfig.reference_plan`).
    plan_frac: float = 0.4
    # Share of planning prompts that give the task name only, the restated state unlabelled in the
    # response (pretrain.planning_draft): the base learns to plan from a state it wrote.
    own_state_frac: float = 0.3
    # What the own-state prompts show before the task name: nothing ("none"), a generic grid of the
    # puzzle's size ("generic"), or the puzzle's own image ("puzzle") — the student's prompt. The base
    # planned from a gold state forced after the task name alone at 85.2 %, after the image-mode
    # prompt at 49.9 % (bench/plan_from_restatement.py --prompt task / image); 400 steps with
    # "generic" brought the latter to 78.8 % (a previous base's third run).
    own_state_image: str = "generic"
    # Share of the text batches that ask one of a puzzle's perception questions (not the restatement)
    # with its symbolic state in the prompt (pretrain.question_draft), so that the base might learn
    # in text the relations grounding must answer from the image. Off: 3,000 steps at 0.5 answered
    # them from text no better than the grounded student from pixels, and grounding on that base
    # read fewer puzzles all right (63.3 against 69.1 %; README, "Training").
    question_frac: float = 0.0
    # A saved model to train further instead of a fresh one ("mini" = the shipped base, or a run's
    # model/ directory): a base can learn a new prompt form without its 70 minutes from scratch.
    continue_from: str = ""
    ckpt_every: int = 500
    # Training processes, each on one core with its share of every micro-batch (parallel.py), as in
    # grounding; every rank draws the whole batch and encodes its share (pretrain.Draft), so the data
    # are the same at any count.
    workers: int = 2
    # Each task's share of the planning batches, in TASKS order, split evenly over its levels. Maze
    # plans worst: at even shares 5,200 steps planned it from text at 66.0 % (macro 82.9 %), at 1.5
    # 4,700 steps at 91.0 % (macro 94.1 %; README, "Training").
    task_shares: tuple[float, ...] = (1.0, 1.5, 1.0)

    def __post_init__(self):
        check_per_task("--task-shares", self.task_shares, "a positive share", lambda share: share > 0)


@dataclass
class GroundingConfig(Optim):
    """Stage 1: LoRA SFT on perception questions about puzzle images.

    The mini defaults differ from the paper's (the qwen presets below restore them): a tiny model
    trained from scratch needs a larger LoRA learning rate and rank to move in a few hundred steps,
    and its vision tower — which saw only generic colour grids, not billions of images — is adapted
    too (`lora_vision`), since thin maze walls are a visual feature it was never trained on.
    """

    lr: float = 2e-3
    schedule: str = "cosine"
    warmup_frac: float = 0.1
    # Puzzles per task and level, and passes over them. Content -> position ("where is the start",
    # every coordinate) is learned late and suddenly: 200 puzzles x 3 epochs (338 steps) left "where"
    # at chance (question accuracy 24.5 %), 800 x 1.8 (810 steps) reached 53.7 %, 800 x 2 (900 steps)
    # 68.0 %, 2.4 (1,080 steps of 64 questions) 86.0 % (README, "Status"). With the working in the
    # answers it is learned sooner: 2 passes over the packed sequences below, 867 steps of 24
    # sequences (~66 questions), read 94.7 / 97.9 % (two seeds) in 13 min 19 s; 2.5 passes (1,084
    # steps) 96.8 / 98.9 % in 14 min 23 s to 16 min 41 s, past 15 on a slow day (README, "Status").
    epochs: float = 2.0
    batch_size: int = 12  # packed sequences (with pack_questions; else questions) a micro-batch
    grad_accum: int = 2
    # Rank 64: what is left to learn is relational — which cells are holes, which moves are legal —
    # and rank 16 under-fitted it even on train puzzles; rank 64 read 64.7-66.7 % of test puzzles
    # all right against 51.3 % (README, "Status").
    lora_r: int = 64
    lora_alpha: float = 128.0
    lora_dropout: float = 0.0
    lora_vision: bool = True  # also adapt the vision blocks and merger (mini only; the paper freezes them)
    # Training puzzles a level: FrozenLake, Maze, MiniBehaviour (TASKS' order), or with n_per_level
    # that many for every task. 800 each read MiniBehaviour at 80 % (~1 room in 6 has the agent next
    # to the printer, and those it got wrong); 1,400 rooms, 30 % of them rare (below), read it at
    # 94 %, and FrozenLake 500 a level (its 3x3 and 4x4 grids are read without error) keeps the
    # number of steps (README, "Status").
    n_per_level_by_task: tuple[int, ...] = (500, 800, 1400)
    n_per_level: int | None = None
    levels: tuple[int, ...] = ()  # empty = every level of each task
    # Share of a task-level's training puzzles drawn from its rare cases (GridTask.rare; 0 = as drawn):
    # MiniBehaviour's rooms with the agent next to the printer, the only ones whose look arounds show
    # P or A. Of 800 rooms, 0.5 got those right and the others wrong (70 %); 0.3 read 82 and 74 %
    # (two seeds); of 1,400 (above), 0.3 keeps 980 others and reads 94 % (README, "Status").
    rare_frac: float = 0.3
    eval_n: int = 50  # held-out test puzzles per task and level for the closing perception eval; 0 = skip
    # The base's own stage-0 planning examples added to every step, in one more micro-batch (mini
    # only; grounding.replay_batch): perception SFT alone erased much of the base's planning. 8 are
    # ~10 % of a step's labelled tokens and ~17 % of its time (1.50 against 1.28 s a step; README).
    replay_examples: int = 8
    # Packed sequences (data.pack_shared_prefix): `pack_size` questions of a puzzle after its image
    # and prompt, shown once, each question seeing only that prefix and itself — the same loss and
    # gradient as the questions one by one, for fewer tokens and vision passes (all of a puzzle's
    # questions in one: 1.92x faster, bench/bench_packing.py). Three a sequence keep ~22 puzzles in a
    # step where all would keep ~11: larger packs with fewer puzzles a step read worse (README).
    pack_questions: bool = True
    pack_size: int = 3  # questions per packed sequence; 0 = all of a puzzle's
    # Training processes, each on one core with its share of every micro-batch, gradients summed
    # each step (parallel.py): the same steps as one process, and on this 2-core CPU faster than one
    # process with two threads (bench/bench_workers.py). 1 = one process with torch's threads (GPU).
    workers: int = 2

    def __post_init__(self):
        check_per_task("--n-per-level-by-task", self.n_per_level_by_task, "a count of at least 1", lambda n: n >= 1)
        if not 0 <= self.rare_frac <= 1:
            raise ConfigError(f"--rare-frac must be in 0..1, got {self.rare_frac}")


@dataclass
class DistillConfig(Optim):
    """Stage 2: on-policy distillation from the privileged (symbolic-input) base-model teacher.

    `batch_size` is the number of prompts (one rollout each) per optimizer step; they are processed
    in micro-batches of `micro_batch_size` (0 = all at once) whose losses are summed, so
    `grad_accum` is not used by this stage.
    """

    lr: float = 1e-3  # mini: a LoRA on a 2 M-parameter model; the paper's 1e-6 is in the qwen presets
    weight_decay: float = 0.01
    schedule: str = "constant"
    warmup_frac: float = 0.0
    epochs: float = 5.0
    batch_size: int = 32
    micro_batch_size: int = 0  # prompts per forward/backward pass; 0 = the whole batch
    max_grad_norm: float = 1.0
    loss: str = "full"  # full (exact per-token divergence) | sampled (the reference's estimator) | gold (off-policy SFT baseline)
    divergence: str = "reverse"  # reverse | forward | jsd (loss=full only)
    jsd_beta: float = 0.5
    temperature: float = 1.0  # sampling temperature of the student rollouts
    # mini: gold responses are 38-73 tokens (train split). Decoding a small model costs the same per
    # token whatever the batch, so the longest row sets a step's time; one rambling row in 32 is the
    # usual case, and past 96 tokens it is wrong anyway.
    max_new_tokens: int = 96
    logit_chunk: int = 1024  # response tokens per lm_head chunk: [chunk, vocab] logits exist at a time
    reference_plan: bool = True  # teacher prompt includes "Reference plan : ..."
    init: str = "grounding"  # grounding (student = base + stage-1 adapter) | base (no-grounding ablation)
    grounding: str | None = None  # stage-1 adapter directory; default: the newest runs/grounding-*/adapter
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    # Training puzzles per task, split evenly over its levels (one epoch = all of them): every task gets
    # the same share of the prompts, as macro success weighs tasks equally. Per task and level (480
    # each, MiniBehaviour 1/6 of the prompts) MiniBehaviour's answers collapsed on two of three runs
    # (README, "Status"). 960 x 3 tasks / 32 = 90 steps an epoch, 450 for 5 epochs.
    n_per_task: int = 960
    levels: tuple[int, ...] = ()  # empty = evaluate.DEFAULT_LEVELS
    val_every: int = 20  # steps between validations (greedy, val split); 0 = never
    val_n: int = 10  # val puzzles per task and level
    ckpt_every: int = 20


@dataclass
class EvalConfig:
    """`eval.py`: greedy decoding on held-out puzzles, scored by the puzzles verifier."""

    preset: str = "mini"
    model: str = "mini"
    adapters: tuple[str, ...] = ()  # stacked in order (grounding, then distill)
    mode: str = "image"  # image | text | perception
    tasks: tuple[str, ...] = TASKS
    levels: tuple[int, ...] = ()
    n: int = 50  # puzzles per task and level
    split: str = "test"
    benchmark: str | None = None
    batch_size: int = 16
    max_new_tokens: int = 256  # the longest gold answer, a FrozenLake 8x8 holes scan, is ~210 tokens
    seed: int = 0
    device: str | None = None
    json: str | None = None
    compare: tuple[str, ...] = ()


STAGES: dict[str, type] = {"base": BaseConfig, "grounding": GroundingConfig, "distill": DistillConfig, "eval": EvalConfig}

_QWEN = {
    "grounding": dict(grad_ckpt=True, lr=1e-4, batch_size=4, grad_accum=16, lora_r=8, lora_alpha=16.0, lora_vision=False, epochs=3.0, replay_examples=0,
                      n_per_level=200, pack_questions=False, pack_size=0, workers=1),
    "distill": dict(grad_ckpt=True, lr=1e-6, schedule="constant", weight_decay=0.01, max_grad_norm=1.0, batch_size=32,
                    micro_batch_size=4, epochs=5.0, max_new_tokens=2048, lora_r=8, lora_alpha=16.0, n_per_task=600),
    "eval": dict(batch_size=8, max_new_tokens=512),
}
PRESETS: dict[str, dict[str, dict]] = {
    "mini": {},  # the dataclass defaults
    "qwen3-vl-4b": {stage: dict(v, model="Qwen/Qwen3-VL-4B-Instruct") for stage, v in _QWEN.items()},
    "qwen3-vl-8b": {stage: dict(v, model="Qwen/Qwen3-VL-8B-Instruct") for stage, v in _QWEN.items()},
}


# The least value of counts and sizes given on the command line: zero of the first is an empty
# dataset or an endless loop; zero replay examples turns replay off, fewer is meaningless.
MINIMUM = {**dict.fromkeys(("layers", "mlp", "batch_size", "grad_accum", "n_per_level", "n_per_task", "n", "lora_r", "max_new_tokens", "logit_chunk",
                            "val_n", "log_every", "ckpt_every", "workers"), 1),
           "replay_examples": 0, "pack_size": 0}


def resolve(stage: str, preset: str = "mini", overrides: dict | None = None):
    """The config of `stage` for `preset`, with `overrides` (CLI strings or typed values) applied."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage '{stage}': choose one of {', '.join(STAGES)}")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}': choose one of {', '.join(PRESETS)}")
    if stage == "base" and preset != "mini":
        raise ConfigError(f"stage 'base' (pretraining from scratch) exists only for the mini preset, not '{preset}'")
    cls = STAGES[stage]
    hints = typing.get_type_hints(cls)
    values = dict(PRESETS[preset].get(stage, {}), preset=preset)
    for key, value in (overrides or {}).items():
        key = key.replace("-", "_")
        if key not in hints:
            raise ConfigError(f"unknown option --{key.replace('_', '-')} for stage '{stage}'; options: {', '.join(sorted(hints))}")
        values[key] = _convert(key, value, hints[key])
    cfg = cls(**values)
    check_minimum(cfg)
    return cfg


def check_minimum(cfg) -> None:
    """Refuse a count or size below its MINIMUM (a config from the CLI or built in code alike)."""
    for key, least in MINIMUM.items():
        value = getattr(cfg, key, None)
        if value is not None and value < least:
            raise ConfigError(f"--{key.replace('_', '-')} must be at least {least}, got {value}")


def _convert(key: str, value, hint):
    """Turn a CLI string into the field's type (int, float, bool, str, optional, tuple of those)."""
    if not isinstance(value, str):
        return tuple(value) if typing.get_origin(hint) is tuple else value
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if type(None) in typing.get_args(hint) and value.lower() in ("none", "null", ""):
        return None
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return tuple(_scalar(key, part.strip(), item) for part in value.split(",") if part.strip())
    return _scalar(key, value, args[0] if args else hint)


def _scalar(key: str, text: str, typ):
    try:
        if typ is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return typ(text)
    except ValueError:
        raise ConfigError(f"--{key.replace('_', '-')} expects {typ.__name__}, got '{text}'") from None


def to_json(cfg) -> dict:
    return {"stage": next(s for s, c in STAGES.items() if c is type(cfg)), **dataclasses.asdict(cfg)}


def from_json(data: dict):
    """The config saved by `save` (e.g. from a checkpoint), as its dataclass."""
    data = dict(data)
    stage = data.pop("stage", None)
    if stage not in STAGES:
        raise ConfigError(f"saved config has unknown stage '{stage}'")
    names = {f.name for f in dataclasses.fields(STAGES[stage])}
    return resolve(stage, data.get("preset", "mini"), {k: v for k, v in data.items() if k in names and k != "preset"})


def save(cfg, run_dir: str | Path) -> Path:
    """Write the resolved config to run_dir/config.json atomically."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(run_dir / "config.json", to_json(cfg))


def write_json_atomic(path: Path, data) -> Path:
    write_text(path, json.dumps(data, indent=2))
    return path
