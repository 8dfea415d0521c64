"""Perception or planning? Image-mode success when the gold restatement is forced as the response.

    python bench/plan_from_restatement.py --adapter runs/grounding-X/adapter --adapter runs/distill-Y/adapter
    python bench/plan_from_restatement.py --prompt task     # the task name alone, no image

The student prompt (image + task) is followed by the exact symbolic state and `<answer>`, so the
model only has to plan, from a state written in its own response. Next to the image-mode success of
`eval.py` this splits the modality gap in two: what a perfect restatement would give (this figure),
and what perception loses on top. The text-mode upper bound reads the state in its prompt instead.
With `--prompt task` the prompt names the task only, without the image (stage 0's own-state
prompts): what the image tokens in the prompt cost the base's planning from its own restatement.
Held-out test puzzles, greedy, `--n` per task-level.
"""

import argparse
import collections

import torch

import puzzles
from mgsd_mini import evaluate, lora, model as models, prompts
from mgsd_mini.data import collate, encode_chat
from mgsd_mini.generate import generate


def forced_prompt(processor, case: dict, item: dict) -> dict:
    """The image-mode prompt of `item`, its assistant turn begun with the gold state and <answer>."""
    enc = encode_chat(processor, item["messages"], item["images"], add_generation_prompt=True)
    prefix = f"{prompts.state_text(case['task'], case['state'])}\n{prompts.ANSWER_OPEN}"
    extra = torch.tensor(processor.tokenizer(prefix, add_special_tokens=False)["input_ids"])
    enc["input_ids"] = torch.cat([enc["input_ids"], extra])
    enc["attention_mask"] = torch.cat([enc["attention_mask"], torch.ones_like(extra)])
    enc["mm_token_type_ids"] = torch.cat([enc["mm_token_type_ids"], torch.zeros_like(extra, dtype=enc["mm_token_type_ids"].dtype)])
    return enc


def task_items(cases: list[dict]) -> list[dict]:
    """Prompts naming each case's task and nothing else (no image), shaped as evaluate.build_prompts'."""
    return [{"case": i, "messages": prompts.task_prompt(case["task"]), "images": None} for i, case in enumerate(cases)]


def success_by_task(net, processor, cases: list[dict], batch_size: int = 16, prompt: str = "image") -> dict[str, float]:
    """{task: % of cases whose forced-restatement plan succeeds}, after the image-mode or task-only prompt."""
    items = evaluate.build_prompts(cases, "image", processor) if prompt == "image" else task_items(cases)
    hits = collections.defaultdict(list)
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        batch = collate([forced_prompt(processor, cases[it["case"]], it) for it in chunk],
                        processor.tokenizer.pad_token_id, left_pad=True)
        for it, text in zip(chunk, generate(net, processor, batch, max_new_tokens=80).texts):
            case = cases[it["case"]]
            outcome = puzzles.check(puzzles.get_task(case["task"]), case["state"], prompts.ANSWER_OPEN + text)
            hits[case["task"]].append(outcome.success)
    return {task: 100 * sum(ok) / len(ok) for task, ok in hits.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mini")
    ap.add_argument("--adapter", action="append", default=[], help="LoRA adapter directory; repeat to stack")
    ap.add_argument("--n", type=int, default=50, help="test puzzles per task and level")
    ap.add_argument("--prompt", choices=["image", "task"], default="image",
                    help="before the forced state: the image-mode prompt, or the task name alone (no image)")
    args = ap.parse_args()
    net, processor = models.load(args.model)
    lora.load_adapters(net, args.adapter)
    cases = evaluate.held_out_cases(evaluate.choose_levels(puzzles.TASKS), args.n, "test")
    success = success_by_task(net, processor, cases, prompt=args.prompt)
    for task, pct in success.items():
        print(f"{task:15s} forced-restatement success {pct:5.1f} %")
    print(f"{'macro':15s} forced-restatement success {sum(success.values()) / len(success):5.1f} %")


if __name__ == "__main__":
    main()
