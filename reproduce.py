"""python reproduce.py — the mini results table: every row trained (if missing) and evaluated on the same puzzles.

    python reproduce.py                      # runs/reproduce/: trains what is missing, evaluates, writes results.md
    python reproduce.py --out DIR --n 50     # another folder / puzzles per task-level
    python reproduce.py --smoke              # a few steps and puzzles per stage: the pipeline end to end

Rows (image mode unless said; the base is the shipped mini base, `python train.py --stage base --ship`):
base (text: the symbolic upper bound), base, grounding only, grounding + distill (full reverse KL,
teacher with the reference plan: the main row), + distill with the sampled-token loss, + distill with
a teacher without the plan, distill without grounding, and grounding + SFT on the gold responses for
the same number of steps (the off-policy baseline). Every stage is a `train.py` run under --out: a
finished run is reused and an interrupted one resumed, so the script can be stopped and re-run.
Outputs in --out: results.md (the table and the wall time of each stage — of the call that finished
it, when a run was resumed), results.json, plot.png
(success per task-level of every row, the text upper bound first; the blind baseline as a grey tick)
and one eval folder per mode.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import typer

from mgsd_mini import report

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

# run name -> train.py arguments; every distill-stage run but the ablation stacks on the grounding adapter
RUNS = {
    "grounding": ["--stage", "grounding"],
    "distill-full": ["--stage", "distill"],
    "distill-sampled": ["--stage", "distill", "--loss", "sampled"],
    "distill-no-plan": ["--stage", "distill", "--no-teacher-plan"],
    "distill-no-grounding": ["--stage", "distill", "--from", "base"],
    "sft-gold": ["--stage", "distill", "--loss", "gold"],
}
# (row label, adapters as run names); every row is evaluated from the image, the first also from text
ROWS = [
    ("base", []),
    ("grounding only", ["grounding"]),
    ("grounding + distill (main)", ["grounding", "distill-full"]),
    ("grounding + distill, sampled-token loss", ["grounding", "distill-sampled"]),
    ("grounding + distill, teacher without plan", ["grounding", "distill-no-plan"]),
    ("distill without grounding", ["distill-no-grounding"]),
    ("grounding + SFT on gold responses", ["grounding", "sft-gold"]),
]
SMOKE = ["--steps", "2", "--n-per-level", "2", "--levels", "3", "--tasks", "frozenlake"]
SMOKE_STAGE = {"grounding": ["--eval-n", "1"], "distill": ["--val-n", "1", "--batch-size", "2"]}
SMOKE_EVAL = ["--n", "2", "--levels", "3", "--tasks", "frozenlake", "--no-progress"]


def call(args: list[str]) -> None:
    print("+ python " + " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], check=True)


def train(name: str, out: Path, smoke: bool) -> None:
    """Train run `name` into out/name unless it finished; resume it if it was interrupted."""
    run_dir = out / name
    if (run_dir / "adapter").is_dir():
        return
    args = ["train.py", *RUNS[name], "--out", str(run_dir)]
    if RUNS[name][1] == "distill" and "base" not in RUNS[name]:
        args += ["--grounding", str(out / "grounding" / "adapter")]
    if smoke:
        args += SMOKE + SMOKE_STAGE[RUNS[name][1]]
    if (run_dir / "checkpoints").is_dir():
        args.append("--resume")
    t0 = time.time()
    call(args)
    (out / "times.json").write_text(json.dumps({**read_times(out), name: round(time.time() - t0, 1)}, indent=1))


def read_times(out: Path) -> dict[str, float]:
    """{run name: wall seconds} of the runs trained so far."""
    return json.loads((out / "times.json").read_text()) if (out / "times.json").exists() else {}


def evaluate(out: Path, mode: str, compare: list[str], n: int, smoke: bool) -> list[dict]:
    """eval.py on the same held-out puzzles for the base, then each `compare` spec (MODEL+ADAPTER...);
    returns one summary per model, the base's first."""
    folder = out / f"eval-{mode}"
    if not (folder / "summary.json").exists():
        call(["eval.py", "--mode", mode, "--model", "mini", *[a for spec in compare for a in ("--compare", spec)],
              "--out", str(folder), *(SMOKE_EVAL if smoke else ["--n", str(n)])])
    summary = json.loads((folder / "summary.json").read_text())
    return [summary, *summary.get("compare", [])]


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


@app.command()
def main(out: Path = typer.Option(Path("runs/reproduce"), help="folder of every run, eval and the table"),
         n: int = typer.Option(50, help="held-out test puzzles per task and level"),
         smoke: bool = typer.Option(False, help="2 steps and 2 puzzles per stage (a pipeline check, not results)")) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in RUNS:
        train(name, out, smoke)
    adapted = ["+".join(["mini", *(str(out / r / "adapter") for r in runs)]) for _, runs in ROWS[1:]]  # ROWS[0]: the base
    text = evaluate(out, "text", [], n, smoke)[0]
    image = evaluate(out, "image", adapted, n, smoke)
    perception = evaluate(out, "perception", adapted, n, smoke)

    times = read_times(out)
    tasks = list(text["tasks"])
    head = ("| row | macro success | macro optimal | detour success | "
            + " | ".join(f"{t} success" for t in tasks) + " | perception all-correct |")
    lines = [head, "|" + "---|" * (5 + len(tasks))]
    rows = [("base, text (upper bound)", text, None)] + [(label, s, p) for (label, _), s, p in zip(ROWS, image, perception)]
    results = []
    for label, s, p in rows:
        m = s["macro"]
        lines.append(f"| {label} | {pct(m['success'])} | {pct(m['optimal'])} | {pct(m['detour_success'])} | "
                     + " | ".join(pct(s["tasks"][t]["success"]) for t in tasks)
                     + f" | {pct(p['macro']['all_correct']) if p else '–'} |")
        results.append({"row": label, "mode": s["mode"], "macro": m, "tasks": {t: s["tasks"][t]["success"] for t in tasks},
                        "perception_all_correct": p["macro"]["all_correct"] if p else None})
    lines += ["", "Wall time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items())]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"rows": results, "times_s": times}, indent=1))
    report.plot([text, *image], [label for label, _, _ in rows], out / "plot.png")
    print("\n".join(lines))


if __name__ == "__main__":
    app()
