"""bench/plan_from_restatement.py: the forced prefix is exactly the start of the image-mode training sequence."""

import importlib.util
from pathlib import Path

import pytest
import torch

import puzzles
from mgsd_mini import evaluate, model as M, prompts
from mgsd_mini.data import IGNORE, encode_chat, encode_sft
from mgsd_mini.pretrain import unlabel_restatement

spec = importlib.util.spec_from_file_location("plan_from_restatement", Path(__file__).resolve().parents[1] / "bench" / "plan_from_restatement.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.mark.parametrize("task", puzzles.TASKS)
def test_forced_prompt_is_the_gold_image_sequence_up_to_the_plan(task):
    _, processor = M.build_mini(seed=0)
    cases = evaluate.held_out_cases({task: list(evaluate.DEFAULT_LEVELS[task])}, 2, "test", seed=1)
    for item in evaluate.build_prompts(cases, "image", processor):
        case = cases[item["case"]]
        forced = bench.forced_prompt(processor, case, item)["input_ids"]
        plan = puzzles.get_task(task).solve(case["state"])
        gold = prompts.with_response(item["messages"], prompts.response(task, case["state"], plan))
        full = encode_chat(processor, gold, item["images"], add_generation_prompt=False)["input_ids"]
        assert torch.equal(full[:len(forced)], forced)  # same tokens as training saw, up to <answer>
        rest = processor.tokenizer.decode(full[len(forced):])
        assert rest.startswith(prompts.plan_text(plan) + "</answer>")


@pytest.mark.parametrize("task", puzzles.TASKS)
def test_task_prompt_forced_prefix_is_the_own_state_training_sequence_up_to_the_plan(task):
    """--prompt task: the same tokens as stage 0's own-state examples, whose loss starts at <answer>."""
    _, processor = M.build_mini(seed=0)
    cases = evaluate.held_out_cases({task: list(evaluate.DEFAULT_LEVELS[task])}, 2, "test", seed=1)
    for item in bench.task_items(cases):
        case = cases[item["case"]]
        assert item["images"] is None
        forced = bench.forced_prompt(processor, case, item)["input_ids"]
        plan = puzzles.get_task(task).solve(case["state"])
        example = unlabel_restatement(encode_sft(processor, prompts.task_prompt(task), prompts.response(task, case["state"], plan), None),
                                      processor.tokenizer)
        assert torch.equal(example["input_ids"][:len(forced)], forced)
        # the loss starts at <answer>, the forced prefix's last tokens
        start = len(forced) - len(processor.tokenizer(prompts.ANSWER_OPEN, add_special_tokens=False)["input_ids"])
        assert (example["labels"][:start] == IGNORE).all() and (example["labels"][start:len(forced)] != IGNORE).all()
