"""python train.py --stage {base,grounding,distill} — the three training stages of MGSD (DESIGN §4).

    python train.py --stage base --ship            # stage 0 (mini only): a base, installed as `--model mini`
    python train.py --stage grounding              # stage 1: LoRA SFT on perception questions
    python train.py --stage distill                # stage 2: on-policy distillation from the symbolic teacher
    python train.py --stage grounding --preset qwen3-vl-4b --lr 2e-4 --batch-size 8

Any field of the stage's config dataclass (mgsd_mini/config.py) can be set as `--key value`
(`--batch-size 8`, `--tasks frozenlake,maze`, `--no-reference-plan`). The run directory (`--out`,
default runs/<stage>-<timestamp>/) gets config.json, metrics.jsonl, checkpoints/ and the result
(model/ or adapter/). An existing non-empty run directory is refused unless `--resume` (continue
from its newest checkpoint) or `--overwrite` (start again from scratch). User errors print one line
on stderr and exit with status 2 (and leave no new run directory behind).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
STAGES = ("base", "grounding", "distill")
# The flag names for stage-2 options, mapped onto DistillConfig fields.
ALIASES = {"from": "init", "kl": "divergence", "teacher-plan": "reference-plan"}


def _fail(message: str):
    typer.echo(f"train.py: error: {message}", err=True)
    raise typer.Exit(2)


def parse_overrides(args: list[str]) -> dict[str, str]:
    """`--key value` and boolean `--flag` / `--no-flag` pairs -> {key: value string}."""
    out, i = {}, 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ValueError(f"unexpected argument '{arg}': options are written --key value")
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = args[i + 1]
            i += 2
        else:  # a bare flag: --ship -> true, --no-ship -> false
            key, value = (key[3:], "false") if key.startswith("no-") else (key, "true")
            i += 1
        out[ALIASES.get(key, key)] = value
    return out


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def main(
    ctx: typer.Context,
    stage: str = typer.Option(..., help="base (mini only), grounding or distill"),
    preset: str = typer.Option("mini", help="mini, qwen3-vl-4b or qwen3-vl-8b"),
    out: Path = typer.Option(None, help="run directory [default: runs/<stage>-<timestamp>]"),
    resume: bool = typer.Option(False, help="continue the run in --out from its newest checkpoint"),
    overwrite: bool = typer.Option(False, help="delete what --out holds and start again"),
) -> None:
    """Train one stage; every other `--key value` overrides a field of the stage's config."""
    if preset == "mini":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the mini preset never needs the hub
    from mgsd_mini import config

    if stage not in STAGES:
        _fail(f"unknown stage '{stage}': choose one of {', '.join(STAGES)}")
    try:
        cfg = config.resolve(stage, preset, parse_overrides(ctx.args))
    except ValueError as err:
        _fail(str(err))
    if resume and overwrite:
        _fail("--resume and --overwrite contradict each other: pick one")
    run_dir = Path(out or cfg.out or Path("runs") / f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}")
    if run_dir.exists() and not run_dir.is_dir():
        _fail(f"--out {run_dir} is a file: give a directory")
    busy = run_dir.is_dir() and any(run_dir.iterdir())
    if resume and not busy:
        _fail(f"nothing to resume in {run_dir}: run without --resume to start it")
    if busy and not (resume or overwrite):
        _fail(f"{run_dir} already holds a run: pass --resume to continue it, --overwrite to start again, or another --out")
    if overwrite and busy:
        shutil.rmtree(run_dir)
    cfg.out = str(run_dir)
    fresh = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _fail(f"cannot create {run_dir}: {err.strerror}")

    from mgsd_mini import checkpoint, evaluate, lora, model as models, sft

    run = _stage_runner(stage)
    try:
        result = run(cfg, run_dir, resume=resume)
    except KeyboardInterrupt as err:
        saved = f" ({err.args[0]})" if err.args else ""
        # the same options again (a resumed run must not lose e.g. --ship or --steps), with --resume
        again = " ".join(shlex.quote(a) for a in ctx.args)
        preset_arg = f" --preset {preset}" if preset != "mini" else ""
        typer.echo(f"\ninterrupted{saved}: resume with  python train.py --stage {stage}{preset_arg} --out "
                   f"{shlex.quote(str(run_dir))} --resume{' ' + again if again else ''}", err=True)
        raise typer.Exit(130)
    except (sft.TrainingDiverged, config.ConfigError, models.ModelLoadError, lora.AdapterError, checkpoint.CheckpointError,
            evaluate.EvalInputError) as err:
        if fresh and not any(run_dir.iterdir()):
            run_dir.rmdir()  # refused before it wrote anything: leave no empty run folder behind
        _fail(str(err))
    typer.echo(f"{stage}: done -> {result}")


def _stage_runner(stage: str):
    if stage == "base":
        from mgsd_mini.pretrain import run
    elif stage == "grounding":
        from mgsd_mini.grounding import run
    else:
        from mgsd_mini.distill import run
    return run


if __name__ == "__main__":
    app(sys.argv[1:] or ["--help"])
