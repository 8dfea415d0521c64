"""python reproduce.py — the mini results table: every row trained (if missing) and evaluated on the same puzzles.

    python reproduce.py                      # runs/reproduce/: trains what is missing, evaluates, writes results.md
    python reproduce.py --out DIR --n 50     # another folder / puzzles per task-level
    python reproduce.py --smoke              # a few steps and puzzles per stage: the pipeline end to end
    python reproduce.py --jobs 1             # one run at a time, all cores each, progress bars on screen
    python reproduce.py --skip distill-sampled   # leave a run out, with the rows that need it

Rows (image mode unless said; the base is the shipped mini base, README "Training" says how it was made):
base (text: the symbolic upper bound), base, grounding only, grounding + distill (full reverse KL,
teacher with the reference plan: the main row), + distill with the sampled-token loss, + distill with
a teacher without the plan, distill without grounding, and grounding + SFT on the gold responses for
the same number of steps (the off-policy baseline). Every stage is a `train.py` run under --out: a
finished run is reused and an interrupted one resumed, so the script can be stopped and re-run.
Outputs in --out: results.md (the table and the wall time of each stage — of the call that finished
it, when a run was resumed), results.json, plot.png
(success per task-level of every row, the text upper bound first; the blind baseline as a grey tick)
and one eval folder per mode. With --jobs N > 1 (default 2), N runs go at once with cores/N threads
each — on a 2-core CPU two one-thread distillation runs do ~1.8x the work of one two-thread run
(grounding, whose step is mostly matrix multiplies, gains less) — and each run's output goes to
<name>.log in --out instead of the screen.
"""

from __future__ import annotations

import json
import os
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
# the runs that do not stack on the grounding adapter, trained first (side by side)
FIRST = ("grounding", "distill-no-grounding")
# what a finished run of each stage has written last (distill saves `adapter` at every new best on
# validation, so an interrupted distill run has one too: it must be resumed, not reused)
FINAL = {"grounding": "adapter", "distill": "adapter-last"}
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
SMOKE = ["--steps", "2", "--levels", "3", "--tasks", "frozenlake"]
SMOKE_STAGE = {"grounding": ["--n-per-level", "2", "--eval-n", "1"], "distill": ["--n-per-task", "2", "--val-n", "1", "--batch-size", "2"]}
SMOKE_EVAL = ["--n", "2", "--levels", "3", "--tasks", "frozenlake", "--no-progress"]


def call_all(commands: dict[str, list[str]], jobs: int, out: Path) -> dict[str, float]:
    """Run `python args` for every named command, at most `jobs` at once (in dict order: longest first);
    returns {name: wall seconds}. With jobs > 1 each run gets cores/jobs threads and logs to
    out/<name>.log; with one job a run keeps every core and the screen (its progress bars)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs))} if jobs > 1 else None
    waiting, running, seconds = list(commands), {}, {}
    while waiting or running:
        while waiting and len(running) < jobs:
            name = waiting.pop(0)
            log = open(out / f"{name}.log", "w") if jobs > 1 else None
            print(f"+ python {' '.join(commands[name])}" + (f"   (log: {log.name})" if log else ""), flush=True)
            running[name] = (subprocess.Popen([sys.executable, *commands[name]], stdout=log,
                                              stderr=subprocess.STDOUT if log else None, env=env), time.time())
            if log:
                log.close()  # the child holds its own copy of the file
        time.sleep(1)
        for name, (proc, t0) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            if proc.returncode != 0:
                for other, _ in running.values():
                    other.terminate()  # their checkpoints stay: a re-run resumes them
                sys.exit(f"{name} failed (exit {proc.returncode})" + (f"; see {out / name}.log" if jobs > 1 else ""))
            seconds[name] = round(time.time() - t0, 1)
            print(f"  {name} done in {seconds[name]:.0f} s", flush=True)
    return seconds


def train_args(name: str, out: Path, smoke: bool) -> list[str] | None:
    """train.py arguments of run `name` into out/name; None if it finished; --resume if it was interrupted."""
    run_dir = out / name
    if (run_dir / FINAL[RUNS[name][1]]).is_dir():
        return None
    args = ["train.py", *RUNS[name], "--out", str(run_dir)]
    if RUNS[name][1] == "distill" and "base" not in RUNS[name]:
        args += ["--grounding", str(out / "grounding" / "adapter")]
    if smoke:
        args += SMOKE + SMOKE_STAGE[RUNS[name][1]]
    if (run_dir / "checkpoints").is_dir():
        args.append("--resume")
    return args


def train(names: list[str], out: Path, smoke: bool, jobs: int) -> None:
    """Train the runs among `names` that have not finished, recording each one's wall time in times.json."""
    commands = {name: args for name in names if (args := train_args(name, out, smoke))}
    seconds = call_all(commands, jobs, out)
    (out / "times.json").write_text(json.dumps({**read_times(out), **seconds}, indent=1))


def read_times(out: Path) -> dict[str, float]:
    """{run name: wall seconds} of the runs trained so far."""
    return json.loads((out / "times.json").read_text()) if (out / "times.json").exists() else {}


def eval_args(out: Path, mode: str, compare: list[str], n: int, smoke: bool) -> list[str]:
    """eval.py on the same held-out puzzles for the base, then each `compare` spec (MODEL+ADAPTER...)."""
    return ["eval.py", "--mode", mode, "--model", "mini", *[a for spec in compare for a in ("--compare", spec)],
            "--out", str(out / f"eval-{mode}"), *(SMOKE_EVAL if smoke else ["--n", str(n)])]


def summaries(out: Path, mode: str) -> list[dict]:
    """One eval summary per model of out/eval-<mode>, the base's first."""
    summary = json.loads((out / f"eval-{mode}" / "summary.json").read_text())
    return [summary, *summary.get("compare", [])]


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


@app.command()
def main(out: Path = typer.Option(Path("runs/reproduce"), help="folder of every run, eval and the table"),
         n: int = typer.Option(50, help="held-out test puzzles per task and level"),
         smoke: bool = typer.Option(False, help="2 steps and 2 puzzles per stage (a pipeline check, not results)"),
         jobs: int = typer.Option(2, min=1, help="runs at once, cores/jobs threads each (1: one at a time, on screen)"),
         skip: list[str] = typer.Option(None, help="a run to leave out, with the rows that need it (repeat)")) -> None:
    skip = set(skip or [])
    if skip - set(RUNS):
        raise typer.BadParameter(f"unknown run(s) {', '.join(sorted(skip - set(RUNS)))}: choose from {', '.join(RUNS)}",
                                 param_hint="--skip")
    table = [(label, runs) for label, runs in ROWS if not skip & set(runs)]
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    # grounding and the one run that does not stack on it first; then the runs that need its adapter
    # (one queue when grounding has finished already: nothing waits for it)
    needed = {run for _, runs in table for run in runs}
    first = [name for name in FIRST if name in needed]
    rest = [name for name in RUNS if name in needed and name not in FIRST]
    if "grounding" in first and train_args("grounding", out, smoke) is not None:
        train(first, out, smoke, jobs)
        first = []
    train(first + rest, out, smoke, jobs)
    adapted = ["+".join(["mini", *(str(out / r / "adapter") for r in runs)]) for _, runs in table[1:]]  # table[0]: the base
    evals = {f"eval-{mode}": eval_args(out, mode, compare, n, smoke)
             for mode, compare in [("image", adapted), ("perception", adapted), ("text", [])]
             if not (out / f"eval-{mode}" / "summary.json").exists()}
    call_all(evals, jobs, out)
    text, image, perception = summaries(out, "text")[0], summaries(out, "image"), summaries(out, "perception")
    if not len(image) == len(perception) == len(table):
        sys.exit(f"{out}/eval-image or eval-perception holds another set of rows (an earlier call with another "
                 "--skip): remove those folders and run again")

    times = read_times(out)
    tasks = list(text["tasks"])
    head = ("| row | macro success | macro optimal | detour success | "
            + " | ".join(f"{t} success" for t in tasks) + " | perception all-correct |")
    lines = [head, "|" + "---|" * (5 + len(tasks))]
    rows = [("base, text (upper bound)", text, None)] + [(label, s, p) for (label, _), s, p in zip(table, image, perception, strict=True)]
    results = []
    for label, s, p in rows:
        m = s["macro"]
        lines.append(f"| {label} | {pct(m['success'])} | {pct(m['optimal'])} | {pct(m['detour_success'])} | "
                     + " | ".join(pct(s["tasks"][t]["success"]) for t in tasks)
                     + f" | {pct(p['macro']['all_correct']) if p else '–'} |")
        results.append({"row": label, "mode": s["mode"], "macro": m, "tasks": {t: s["tasks"][t]["success"] for t in tasks},
                        "perception_all_correct": p["macro"]["all_correct"] if p else None})
    lines += ["", f"Wall time per stage (s, {jobs} at a time): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items())]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"rows": results, "times_s": times}, indent=1))
    report.plot([text, *image], [label for label, _, _ in rows], out / "plot.png")
    print("\n".join(lines) + f"\nThis call: {time.time() - t0:.0f} s in all.")


if __name__ == "__main__":
    app()
