"""Evaluation: held-out puzzles (or imported benchmark records) -> greedy answers -> verifier -> summary.

Five modes share one loop:
- `image`:      the student prompt (instruction + rendered image) — the model's real use;
- `text`:       the teacher prompt without the reference plan (symbolic state as text) — the upper bound;
- `teacher`:    the teacher prompt with the reference plan, as stage 2 scores rollouts — how well the
                privileged teacher itself answers (a plan it cannot copy is a teacher off its training);
- `perception`: one prompt per perception question about the image, scored by exact match;
- `text-perception`: the same questions asked about the symbolic state in the prompt instead of the
                image — what a model can derive from a state it is given (stage 0's `question_frac`).

Planning answers go through `puzzles.check` (the same verifier as the training reward); a response
that does not parse is a failure, never dropped. Next to each success rate the summary reports the
obstacle-blind baseline (`blind_plan`, the shortest path on the empty grid, scored by the same
verifier) and success on the *detour* subset: the puzzles that baseline fails, where a model has to
plan around obstacles rather than just find start and goal.

Aggregation, as DESIGN §6 says: a rate per (task, level) over its cases; a task's rate is the
unweighted mean over its levels; `macro` is the unweighted mean over tasks. `detour_success` of a
level with no detour puzzles is None and is left out of those means (None if nothing is left).

Summary (planning modes):
    {"mode", "model", "adapters", "n" (prompts), "macro": {"success", "optimal", "detour_success"},
     "tasks": {task: {"success", "optimal", "parse_rate", "illegal_rate", "blind_success", "detour_success",
                      "restated", "levels": {"3": {"n", "parse_rate", "success", "optimal", "illegal_rate",
                                       "blind_success", "detour_success", "n_detour", "restated"}}}}}
"restated" is the share of responses whose restatement — everything before `<answer>` — is exactly
the state's symbolic text: in image mode, how often the student perceived the whole state.
Perception modes: "success" is the exact-match rate over questions and "all_correct" the fraction of
images with every question right; levels carry {"n" (images), "n_questions", "success",
"all_correct", "questions"}, tasks {"success", "all_correct", "questions": {question: rate}, "levels"},
and macro {"success", "all_correct", "questions"} (the last: mean over tasks of the mean per-question
rate). "optimal", "parse_rate" and the blind/detour fields belong to planning only.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import puzzles
from PIL import Image
from tqdm import tqdm

from mgsd_mini import prompts
from mgsd_mini.data import collate, encode_chat
from mgsd_mini.generate import generate
from mgsd_mini.model import image_size

# text: the symbolic upper bound; teacher: the stage-2 teacher's prompt, the state + the reference plan
# perception: questions about the image; text-perception: the same questions about the state text
MODES = ("image", "text", "teacher", "perception", "text-perception")
PERCEPTION_MODES = ("perception", "text-perception")


# Default levels per task for `eval.py` (what the mini preset can reach, DESIGN §4). Kept here because
# EvalConfig holds one level list for all tasks; `--levels` overrides these for every task.
DEFAULT_LEVELS = {"frozenlake": (3, 4, 5), "maze": (3, 4), "minibehaviour": (5,)}


class EvalInputError(ValueError):
    """Bad evaluation input (benchmark file, image, task/level choice); the message says what to do."""


# ----------------------------------------------------------------------------- cases


def choose_levels(tasks, levels=(), drop_empty: bool = False) -> dict[str, list[int]]:
    """{task: levels to evaluate}: the given `levels` that exist for each task, else DEFAULT_LEVELS.

    A task left with no level is an error, or is dropped when `drop_empty` (tasks not named by the
    user: `--levels 3` alone means "level 3 of every task that has one").
    """
    out = {}
    for task in tasks:
        valid = list(puzzles.get_task(task).levels)  # ValueError naming the valid tasks
        wanted = list(levels) or list(DEFAULT_LEVELS.get(task, valid))
        kept = [lv for lv in wanted if lv in valid]
        if kept:
            out[task] = kept
        elif not drop_empty:
            raise EvalInputError(f"no valid level for {task} among {wanted}: its levels are {valid[0]}..{valid[-1]}")
    if not out:
        raise EvalInputError(f"no task has level(s) {list(levels)}: see the levels of each task in the README")
    return out



def held_out_cases(task_levels: dict[str, list[int]], n: int, split: str = "test", seed: int = 0) -> list[dict]:
    """`n` puzzle records per (task, level) from `puzzles.make_split` (deterministic in `seed`)."""
    return [rec for task, levels in task_levels.items() for level in levels
            for rec in puzzles.make_split(task, level, split, n, seed)]


def benchmark_cases(path: str | Path, task_levels: dict[str, list[int]] | None = None, n: int | None = None) -> list[dict]:
    """Records of an imported benchmark (`python -m puzzles import`): a JSONL file or a folder of them.

    Each record's `image` (relative to its JSONL) is loaded now, so a missing or broken image stops
    evaluation before any generation; records without an image are rendered later. Optional filters:
    `task_levels` keeps those tasks/levels, `n` keeps the first n records per (task, level).
    """
    path = Path(path)
    files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise EvalInputError(f"benchmark {path}: no such JSONL file or folder of *.jsonl (write one with `python -m puzzles import`)")
    cases, per_key = [], defaultdict(int)
    for file in files:
        for lineno, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                task, level, state = rec["task"], int(rec["level"]), rec["state"]
                puzzles.get_task(task)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise EvalInputError(f"{file}:{lineno}: not a puzzle record ({type(err).__name__}: {err}); "
                                     "re-create it with `python -m puzzles import`") from None
            if task_levels is not None and level not in task_levels.get(task, ()):
                continue
            if n is not None and per_key[task, level] >= n:
                continue
            per_key[task, level] += 1
            rec.setdefault("id", f"{file.stem}-{lineno}")
            if not isinstance(state, dict):
                raise EvalInputError(f"{file}:{lineno}: `state` must be an object; re-create the file with `python -m puzzles import`")
            if rec.get("image"):
                rec["_image"] = _load_image(file.parent / rec["image"], f"{file}:{lineno}")
            cases.append(rec)
    if not cases:
        raise EvalInputError(f"benchmark {path}: no records left for the chosen tasks/levels")
    return cases


def _load_image(path: Path, where: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as err:
        raise EvalInputError(f"{where}: cannot load image {path} ({type(err).__name__}); fix or re-import the benchmark") from None


def case_image(case: dict, size: int) -> Image.Image:
    """The case's own image resized to size x size, or the puzzle rendered at that size."""
    image = case.get("_image")
    if image is None:
        return puzzles.get_task(case["task"]).render(case["state"], size)
    return image if image.size == (size, size) else image.resize((size, size), Image.Resampling.BILINEAR)


# ----------------------------------------------------------------------------- prompts


def build_prompts(cases: list[dict], mode: str, processor) -> list[dict]:
    """One prompt per case (image/text) or per perception question: messages, images, bookkeeping."""
    if mode not in MODES:
        raise EvalInputError(f"unknown mode '{mode}': choose one of {', '.join(MODES)}")
    items, instructions = [], prompts.instructed(processor)
    for i, case in enumerate(cases):
        task, level = case["task"], int(case["level"])
        if mode in ("text", "teacher"):
            plan = (case.get("optimal_plan") or puzzles.get_task(task).solve(case["state"])) if mode == "teacher" else None
            items.append({"case": i, "messages": prompts.teacher_prompt(task, case["state"], plan, instructions), "images": None})
            continue
        images = None if mode == "text-perception" else [case_image(case, image_size(processor, task, level))]
        if mode == "image":
            items.append({"case": i, "messages": prompts.student_prompt(task, instructions), "images": images})
            continue
        for q in _perception(case):  # perception: about the image; text-perception: about the state text
            messages = (prompts.perception_prompt(task, q["question"], instructions) if images
                        else prompts.state_question(task, case["state"], q["question"], instructions))
            items.append({"case": i, "messages": messages, "images": images, "question": q["question"], "gold": q["answer"]})
    return items


def _perception(case: dict) -> list[dict]:
    if case.get("perception"):
        return case["perception"]
    return [{"question": q, "answer": a} for q, a in puzzles.get_task(case["task"]).perception(case["state"])]


# ----------------------------------------------------------------------------- scoring


def score(cases: list[dict], items: list[dict], responses: list[str], mode: str) -> list[dict]:
    """Per-prompt result rows (what the per-case JSONL holds) from the responses to `items`."""
    rows = []
    for item, response in zip(items, responses, strict=True):
        case = cases[item["case"]]
        row = {"id": case.get("id"), "task": case["task"], "level": int(case["level"]), "mode": mode}
        if case.get("source"):
            row["source"] = case["source"]
        if mode in PERCEPTION_MODES:
            row.update(question=item["question"], gold=item["gold"], response=response,
                       correct=bool(puzzles.score_perception(item["gold"], response)))
        else:
            task = puzzles.get_task(case["task"])
            out = puzzles.check(task, case["state"], response)
            blind = task.verify(case["state"], list(case.get("blind_plan") or task.blind_plan(case["state"])))
            restated = response.split(prompts.ANSWER_OPEN)[0].strip() == task.symbolic_text(case["state"])
            row.update(response=response, parse_ok=out.parse_ok, success=out.success, optimal=out.optimal,
                       illegal=out.illegal, steps=out.steps, n_actions=out.n_actions,
                       optimal_length=case.get("optimal_length"), blind_success=blind.success, restated=restated)
        rows.append(row)
    return rows


def _mean(values):
    values = [float(v) for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _by_task_level(rows):
    groups = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[r["task"]][int(r["level"])].append(r)
    return {t: dict(sorted(lv.items())) for t, lv in groups.items()}


def summarize(rows: list[dict], mode: str, model: str, adapters: list[str] | tuple = ()) -> dict:
    """The JSON summary (schema in the module docstring) from the rows of `score`."""
    if mode in PERCEPTION_MODES:
        tasks = {t: _perception_task(lv) for t, lv in _by_task_level(rows).items()}
        macro = {k: _mean(ts[k] for ts in tasks.values()) for k in ("success", "all_correct")}
        macro["questions"] = _mean(_mean(ts["questions"].values()) for ts in tasks.values())
    else:
        tasks = {t: _planning_task(lv) for t, lv in _by_task_level(rows).items()}
        macro = {k: _mean(ts[k] for ts in tasks.values()) for k in ("success", "optimal", "detour_success")}
    return {"mode": mode, "model": model, "adapters": list(adapters), "n": len(rows), "macro": macro, "tasks": tasks}


def _planning_task(levels: dict[int, list[dict]]) -> dict:
    out = {}
    for level, rs in levels.items():
        detour = [r for r in rs if not r["blind_success"]]
        out[str(level)] = {
            "n": len(rs),
            "parse_rate": _mean(r["parse_ok"] for r in rs),
            "success": _mean(r["success"] for r in rs),
            "optimal": _mean(r["optimal"] for r in rs),
            "illegal_rate": _mean(r["illegal"] is not None for r in rs),
            "blind_success": _mean(r["blind_success"] for r in rs),
            "detour_success": _mean(r["success"] for r in detour),
            "n_detour": len(detour),
            "restated": _mean(r.get("restated") for r in rs),
        }
    keys = ("success", "optimal", "parse_rate", "illegal_rate", "blind_success", "detour_success", "restated")
    return {**{k: _mean(ls[k] for ls in out.values()) for k in keys}, "levels": out}


def _perception_task(levels: dict[int, list[dict]]) -> dict:
    out, per_question = {}, defaultdict(list)
    for level, rs in levels.items():
        images = defaultdict(list)
        questions = defaultdict(list)
        for r in rs:
            images[r["id"]].append(r["correct"])
            questions[r["question"]].append(r["correct"])
            per_question[r["question"]].append(r["correct"])
        out[str(level)] = {
            "n": len(images),
            "n_questions": len(rs),
            "success": _mean(r["correct"] for r in rs),
            "all_correct": _mean(all(v) for v in images.values()),
            "questions": {q: _mean(v) for q, v in questions.items()},
        }
    return {
        "success": _mean(ls["success"] for ls in out.values()),
        "all_correct": _mean(ls["all_correct"] for ls in out.values()),
        "questions": {q: _mean(v) for q, v in per_question.items()},
        "levels": out,
    }


# ----------------------------------------------------------------------------- the loop


def evaluate(model, processor, cases: list[dict], mode: str, batch_size: int = 16, max_new_tokens: int = 256,
             model_name: str = "model", adapters=(), progress: bool = True) -> tuple[dict, list[dict]]:
    """Greedy answers for every prompt of `cases` in `mode`, scored: returns (summary, per-prompt rows)."""
    items = build_prompts(cases, mode, processor)
    pad_id = processor.tokenizer.pad_token_id
    responses = []
    with tqdm(total=len(items), desc=f"eval {mode}", unit="prompt", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            batch = collate([encode_chat(processor, it["messages"], it["images"], add_generation_prompt=True)
                             for it in chunk], pad_id, left_pad=True)
            responses += generate(model, processor, batch, max_new_tokens=max_new_tokens, temperature=0.0).texts
            bar.update(len(chunk))
    rows = score(cases, items, responses, mode)
    return summarize(rows, mode, model_name, adapters), rows
