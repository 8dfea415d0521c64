"""What the stage-2 teacher predicts where a student's response drops part of the state.

    python bench/teacher_next_token.py                                   # MiniBehaviour, cut before " table"
    python bench/teacher_next_token.py --task maze --level 4 --cut " target" --no-teacher-plan

For train-split puzzles: the teacher prompt (symbolic state, with the reference plan unless
--no-teacher-plan) followed by the gold response up to the first `--cut` — the prefix a student
writes when it is about to leave that part out. Prints the base model's (the teacher's) probability
of the cut's first token and its top next tokens. If the teacher wants the dropped token and the
student still never writes it, the stage-2 loss, not the teacher, is what fails to teach it.
"""

import argparse

import torch

import puzzles
from mgsd_mini import distill, model as models, prompts


def cut_sequences(processor, records: list[dict], cut: str, reference_plan: bool) -> list[tuple[torch.Tensor, int]]:
    """(teacher prompt + gold response before `cut`, id of the cut's first token) per record."""
    tokenizer = processor.tokenizer
    _, teachers = distill.encode_prompts(processor, records, reference_plan)
    out = []
    for rec, teacher in zip(records, teachers):
        gold = prompts.response(rec["task"], rec["state"], rec["optimal_plan"])
        if cut not in gold:
            raise SystemExit(f"{cut!r} does not occur in the {rec['task']} response {gold!r}")
        at = gold.index(cut)
        prefix = tokenizer(gold[:at], add_special_tokens=False)["input_ids"]
        target = tokenizer(gold[:at] + cut, add_special_tokens=False)["input_ids"][len(prefix)]
        out.append((torch.cat([teacher["input_ids"], torch.tensor(prefix)]), target))
    return out


@torch.no_grad()
def next_token_probs(model, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids[None], attention_mask=torch.ones(1, len(ids), dtype=torch.long)).logits[0, -1].float().softmax(-1)


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mini")
    ap.add_argument("--task", default="minibehaviour")
    ap.add_argument("--level", type=int, default=5)
    ap.add_argument("--cut", default=" table", help="text of the gold response the prefix stops before")
    ap.add_argument("--teacher-plan", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--top", type=int, default=3)
    args = ap.parse_args(argv)
    model, processor = models.load(args.model)
    model.eval()
    decode = processor.tokenizer.decode
    records = puzzles.make_split(args.task, args.level, "train", args.n, seed=0)
    probs = []
    for rec, (ids, target) in zip(records, cut_sequences(processor, records, args.cut, args.teacher_plan)):
        p = next_token_probs(model, ids)
        top = p.topk(args.top)
        probs.append(p[target].item())
        print(f"{rec['id']}: p({decode([target])!r}) = {probs[-1]:.4f}; top "
              + ", ".join(f"{decode([int(i)])!r} {v:.4f}" for v, i in zip(top.values, top.indices)))
    mean = sum(probs) / len(probs)
    print(f"mean p({args.cut!r}) after the cut prefix, {args.task} {args.level}, teacher "
          f"{'with' if args.teacher_plan else 'without'} the plan, {len(probs)} puzzles: {mean:.4f}")
    return mean


if __name__ == "__main__":
    main()
