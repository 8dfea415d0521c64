"""bench/plan_from_restatement.py: the forced prefix is exactly the start of the image-mode training sequence."""

import importlib.util
from pathlib import Path

import pytest
import torch

import puzzles
from mgsd_mini import evaluate, model as M, prompts
from mgsd_mini.data import encode_chat

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
