"""Where does a restatement go wrong? Grid rows vs the coordinates line, per task and level.

    python bench/restate_breakdown.py runs/grounding-X/perception_cases.jsonl

Reads the per-question rows a perception eval writes (`train.py --stage grounding` or
`eval.py --mode perception`) and scores the answers to "Restate the state ." in parts: the whole grid
exact, the share of grid rows exact, and the coordinates line (the state text's last line) exact;
then the accuracy of every question, per task.
"""

import argparse
import collections
import json

import puzzles


def parts(text: str) -> tuple[list[str], str]:
    """(grid rows, coordinates line) of a state text."""
    lines = text.replace("<|im_end|>", "").strip().split("\n")
    return lines[:-1], lines[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", help="perception_cases.jsonl (or cases.jsonl of eval.py --mode perception)")
    args = ap.parse_args()
    scores, by_question = collections.defaultdict(list), collections.defaultdict(list)
    with open(args.cases) as f:
        for row in map(json.loads, f):
            by_question[(row["task"], row["question"])].append(bool(row["correct"]))
            if row.get("question") != puzzles.RESTATE:
                continue
            (got_rows, got_coords), (gold_rows, gold_coords) = parts(row["response"]), parts(row["gold"])
            rows_right = sum(a == b for a, b in zip(got_rows, gold_rows)) / len(gold_rows)
            scores[(row["task"], int(row["level"]))].append((got_rows == gold_rows, rows_right, got_coords == gold_coords))
    print(f"{'task':15s} {'level':>5s} {'n':>4s} {'grid exact':>11s} {'rows exact':>11s} {'coords exact':>13s}")
    for (task, level), s in sorted(scores.items()):
        mean = [100 * sum(x[k] for x in s) / len(s) for k in range(3)]
        print(f"{task:15s} {level:5d} {len(s):4d} {mean[0]:10.1f}% {mean[1]:10.1f}% {mean[2]:12.1f}%")
    print(f"\n{'task':15s} {'question':45s} {'n':>4s} {'accuracy':>9s}")
    for (task, question), ok in sorted(by_question.items()):
        print(f"{task:15s} {question:45s} {len(ok):4d} {100 * sum(ok) / len(ok):8.1f}%")


if __name__ == "__main__":
    main()
