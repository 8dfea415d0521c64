"""python eval.py — visual-planning, text upper-bound and perception evaluation (DESIGN §6).

    python eval.py --model mini --mode image --n 20
    python eval.py --model runs/base/model --adapter runs/grounding/adapter --adapter runs/distill/adapter
    python eval.py --model mini --compare mini+runs/grounding/adapter --mode image
    python eval.py --model mini --benchmark data/vsp/frozenlake --mode image

Writes into --out (default runs/eval-<timestamp>/): summary.json, cases.jsonl (one row per prompt),
plot.png and config.json (the resolved EvalConfig); the folder appears only once everything is
written. User errors print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _fail(message: str):
    typer.echo(f"eval.py: error: {message}", err=True)
    raise typer.Exit(2)


def _split_values(values: list[str] | None) -> list[str]:
    """Accept both `--tasks a --tasks b` and `--tasks a,b`."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _model_spec(spec: str) -> tuple[str, list[str]]:
    """`MODEL[+ADAPTER...]` (the --compare syntax) -> (model, adapters)."""
    model, *adapters = spec.split("+")
    return model, adapters


def _label(model: str, adapters: list[str]) -> str:
    """`mini + grounding + distill`: each adapter by its folder, or by its run's folder when it is a
    run's `adapter/` (runs/grounding-X/adapter -> grounding-X), so stacked runs stay distinguishable."""
    names = [(path.parent.name if path.name == "adapter" and path.parent.name else path.name) or a
             for a, path in ((a, Path(a)) for a in adapters)]
    return " + ".join([model, *names])


@app.command()
def main(
    model: str = typer.Option("mini", help="mini, qwen3-vl-4b, qwen3-vl-8b, a local model directory or a hub id"),
    adapter: list[str] = typer.Option(None, help="LoRA adapter directory; repeat to stack (grounding, then distill)"),
    mode: str = typer.Option("image", help="image (student prompt), text (symbolic upper bound), teacher (text + "
                                           "the reference plan: the stage-2 teacher's prompt), perception (questions about the image) "
                                           "or text-perception (the same questions about the state text)"),
    tasks: list[str] = typer.Option(None, help="tasks (repeat or comma-separate) [default: all three]"),
    levels: list[str] = typer.Option(None, help="levels kept for every task (repeat or comma-separate) "
                                                "[default: FrozenLake 3,4,5; Maze 3,4; MiniBehaviour 5]"),
    n: int = typer.Option(None, help="puzzles per task and level [default: the preset's; benchmark: all records]"),
    split: str = typer.Option("test", help="puzzle split: train, val or test"),
    seed: int = typer.Option(0, help="seed of the held-out puzzles"),
    batch_size: int = typer.Option(None, help="prompts per generation batch [default: the preset's]"),
    max_new_tokens: int = typer.Option(None, help="generation budget per response [default: the preset's]"),
    benchmark: Path = typer.Option(None, help="imported benchmark JSONL, or a folder of them (python -m puzzles import)"),
    json_out: Path = typer.Option(None, "--json", help="also write the summary JSON to this file"),
    compare: list[str] = typer.Option(None, help="more models on the same cases, MODEL[+ADAPTER...] (repeat)"),
    preset: str = typer.Option(None, help="mini, qwen3-vl-4b or qwen3-vl-8b [default: --model if it names one, else mini]"),
    out: Path = typer.Option(None, help="output folder [default: runs/eval-<timestamp>]; must be new or empty"),
    progress: bool = typer.Option(True, help="show the progress bar"),
) -> None:
    """Greedy decoding on held-out puzzles (or an imported benchmark), scored by the puzzles verifier."""
    if model == "mini":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the mini preset never needs the hub
    import torch

    from mgsd_mini import config, report
    from mgsd_mini import evaluate as ev
    from mgsd_mini.lora import load_adapters
    from mgsd_mini.model import load

    # ---- validate everything cheap before loading a model
    task_names, compare_specs = _split_values(tasks), _split_values(compare)
    try:
        level_values = [int(v) for v in _split_values(levels)]
    except ValueError:
        _fail(f"--levels takes integers, got {' '.join(levels)}")
    overrides = {"model": model, "adapters": list(adapter or []), "mode": mode, "split": split, "seed": seed,
                 "levels": level_values, "compare": compare_specs, "n": n, "batch_size": batch_size,
                 "max_new_tokens": max_new_tokens, "tasks": task_names or None,
                 "benchmark": str(benchmark) if benchmark else None, "json": str(json_out) if json_out else None}
    try:
        cfg = config.resolve("eval", preset or (model if model in config.PRESETS else "mini"),
                             {k: v for k, v in overrides.items() if v is not None})
    except ValueError as err:
        _fail(str(err))
    if cfg.mode not in ev.MODES:
        _fail(f"unknown --mode '{cfg.mode}': choose one of {', '.join(ev.MODES)}")
    if cfg.split not in ("train", "val", "test"):
        _fail(f"unknown --split '{cfg.split}': choose train, val or test")
    for name, value in (("--n", cfg.n), ("--batch-size", cfg.batch_size), ("--max-new-tokens", cfg.max_new_tokens)):
        if value <= 0:
            _fail(f"{name} must be a positive integer, got {value}")
    # A benchmark is filtered by task/level only when asked; held-out puzzles always use a selection.
    selection = None
    if benchmark is None or task_names or level_values:
        try:
            selection = ev.choose_levels(cfg.tasks, cfg.levels, drop_empty=not task_names)
        except ValueError as err:
            _fail(str(err))
    out = out or Path("runs") / f"eval-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        _fail(f"output {out} already exists and is not an empty folder: choose another --out or remove it")
    if json_out is not None and json_out.is_dir():
        _fail(f"--json {json_out} is a folder: give a file path")
    try:  # fail now, not after the evaluation, if the output cannot be written
        out.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryDirectory(dir=out.parent).cleanup()
    except OSError as err:
        _fail(f"cannot create {out}: {err.strerror} ({err.filename})")
    specs = [(cfg.model, list(cfg.adapters))] + [_model_spec(s) for s in cfg.compare]
    for _, adapters in specs:
        for a in adapters:
            if not Path(a).is_dir():
                _fail(f"adapter {a} is not a directory: pass a folder written by save_adapter "
                      "(adapter_config.json + adapter_model.safetensors)")

    # ---- the cases, the same for every model
    try:
        if benchmark is not None:
            cases = ev.benchmark_cases(benchmark, selection, n)
        else:
            cases = ev.held_out_cases(selection, cfg.n, cfg.split, cfg.seed)
    except ValueError as err:  # EvalInputError, or puzzles refusing a level / n
        _fail(str(err))

    # ---- each model in turn
    summaries, labels, rows = [], [], []
    for model_name, adapters in specs:
        try:
            net, processor = load(model_name, device=cfg.device)
            load_adapters(net, adapters)
        except ValueError as err:  # ModelLoadError / AdapterError carry a one-line fix
            _fail(str(err))
        label = _label(model_name, adapters)
        typer.echo(f"evaluating {label} on {len(cases)} puzzles ({cfg.mode} mode)", err=True)
        summary, model_rows = ev.evaluate(net, processor, cases, cfg.mode, batch_size=cfg.batch_size,
                                          max_new_tokens=cfg.max_new_tokens, model_name=model_name,
                                          adapters=adapters, progress=progress)
        summaries.append(summary)
        labels.append(label)
        rows += [{"model": label, **r} for r in model_rows]
        del net
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ---- outputs: built in a temp folder, then moved into place in one step
    main_summary = dict(summaries[0])
    if len(summaries) > 1:
        main_summary["compare"] = summaries[1:]
    run_config = {**config.to_json(cfg), "task_levels": selection, "argv": sys.argv[1:]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~report.umask())  # mkdtemp makes a private 0700 folder
    try:
        report.write_json(tmp / "summary.json", main_summary)
        report.write_jsonl(tmp / "cases.jsonl", rows)
        report.write_json(tmp / "config.json", run_config)
        report.plot(summaries, labels, tmp / "plot.png")
        if out.exists():
            out.rmdir()  # checked empty above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if json_out is not None:
        report.write_json(json_out, main_summary)
    report.print_tables(summaries)
    typer.echo(f"wrote {out}/: summary.json, cases.jsonl, plot.png, config.json", err=True)


if __name__ == "__main__":
    app()
