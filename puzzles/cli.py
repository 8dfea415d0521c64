"""`python -m puzzles export | score | import`.

Bad input (unknown task, level out of range, n <= 0, an output path that is a file, a malformed
records / answers / benchmark file) prints one line on stderr and exits with code 2; outputs are
written through temp files and renamed, so nothing is left half-written.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import typer
from rich.console import Console

from puzzles import get_task, make_record
from puzzles.benchmarks import IMPORTERS
from puzzles.export import export as export_split, render_writer, write_group
from puzzles.splits import check_request
from puzzles.scoring import score as score_records, table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Generate, export, import and score grid planning puzzles.")


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is a file; give a folder")


def _check_size(size: int, side: int) -> None:
    if size < 3 * side:
        raise ValueError(f"--size {size} is too small for a {side}x{side} grid (need >= {3 * side}; the mini preset uses 16 px per cell)")


@app.command()
def export(
    task: str = typer.Option(..., help="frozenlake, maze or minibehaviour"),
    level: int = typer.Option(..., help="grid side: frozenlake 3..8, maze 3..6, minibehaviour 5..6"),
    split: str = typer.Option(..., help="train, val or test"),
    n: int = typer.Option(..., help="number of distinct puzzles"),
    seed: int = typer.Option(0, help="generator seed"),
    size: int = typer.Option(256, help="image side in pixels"),
    out: Path = typer.Option(..., help="output folder"),
):
    """Write OUT/<task>/level<L>/<split>.jsonl and one PNG per puzzle."""
    check_request(task, level, split, n)  # before anything is written
    _check_size(size, level)
    _check_out(out)
    path = export_split(task, level, split, n, seed, size, out)
    print(f"wrote {n} puzzles to {path}")


def _read_jsonl(path: Path, what: str) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise ValueError(f"{what} file {path} does not exist")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} line {lineno}: not JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path} line {lineno}: expected a JSON object")
            rows.append((lineno, row))
    return rows


def load_records(path: Path) -> list[dict]:
    records, ids = [], set()
    for lineno, rec in _read_jsonl(path, "records"):
        try:
            task = get_task(rec["task"])
            task.validate(rec["state"])
            if not isinstance(rec["level"], int) or not isinstance(rec["id"], str):
                raise ValueError("'id' must be a string and 'level' an int")
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path} line {lineno}: malformed record ({type(e).__name__}: {e})") from None
        if rec["id"] in ids:
            raise ValueError(f"{path} line {lineno}: duplicate id {rec['id']!r}")
        ids.add(rec["id"])
        records.append(rec)
    if not records:
        raise ValueError(f"records file {path} holds no records")
    return records


def load_answers(path: Path, ids: set[str]) -> dict[str, str]:
    answers = {}
    for lineno, row in _read_jsonl(path, "answers"):
        rid, response = row.get("id"), row.get("response")
        if not isinstance(rid, str) or not isinstance(response, str):
            raise ValueError(f"{path} line {lineno}: expected {{\"id\": str, \"response\": str}}")
        if rid not in ids:
            raise ValueError(f"{path} line {lineno}: id {rid!r} is not in the records")
        if rid in answers:
            raise ValueError(f"{path} line {lineno}: duplicate answer for {rid!r}")
        answers[rid] = response
    return answers


@app.command()
def score(
    records: Path = typer.Option(..., help="records JSONL (from export or import)"),
    answers: Path = typer.Option(..., help="JSONL of {id, response} model outputs"),
    json_out: Path = typer.Option(None, "--json", help="also write the summary (and per-case rows) here"),
):
    """Score model answers against records: per task/level parse, success, optimal, illegal rates."""
    recs = load_records(records)
    summary = score_records(recs, load_answers(answers, {r["id"] for r in recs}))
    if json_out is not None:
        _check_out(json_out)
        from puzzles.export import write_text

        write_text(json_out, json.dumps(summary, indent=1) + "\n")
    console = Console()
    if not console.is_terminal:  # piped or captured: rich would squeeze the table into 80 columns
        console = Console(width=120)
    console.print(table(summary))


@app.command("import")
def import_(
    format: str = typer.Option(..., "--format", help="vsp or visualplanning"),
    path: Path = typer.Option(..., help="benchmark folder (VSP: level*/table; VisualPlanning: <task>/*.jsonl)"),
    size: int = typer.Option(256, help="image side in pixels for puzzles the benchmark ships no image for"),
    out: Path = typer.Option(..., help="output folder"),
):
    """Convert a public benchmark into our JSONL records (our plans, the benchmark's source file)."""
    if format not in IMPORTERS:
        raise ValueError(f"--format must be one of {', '.join(IMPORTERS)}, got {format!r}")
    if not path.is_dir():
        raise ValueError(f"--path {path} is not a folder")
    _check_out(out)
    items = IMPORTERS[format](path)  # parses and validates everything before anything is written
    groups = defaultdict(list)
    for item in items:
        task = get_task(item.task)
        if item.image is None:
            _check_size(size, item.level)
        rec = make_record(task, item.level, item.split, None, item.state, len(groups[item.task, item.level, item.split]))
        rec["id"], rec["source"] = item.id, item.source
        write = (lambda dst, src=item.image: shutil.copyfile(src, dst)) if item.image else render_writer(task, item.state, size)
        groups[item.task, item.level, item.split].append((rec, write))
    for (task, level, split), recs in sorted(groups.items()):
        p = write_group(out, task, level, split, recs)
        print(f"wrote {len(recs)} {task} level {level} {split} records to {p}")


def _is_click_error(e: BaseException) -> bool:
    # typer >= 0.22 vendors its own click, so match the class by name rather than by import.
    return any(cls.__name__ == "ClickException" for cls in type(e).__mro__)


def main(argv: list[str] | None = None) -> int:
    try:
        result = app(args=argv, prog_name="python -m puzzles", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
    except Exception as e:
        if _is_click_error(e):  # usage errors: missing option, not an integer, unknown command
            if e.format_message():  # (no arguments at all: the help was already printed)
                print(f"error: {e.format_message()}", file=sys.stderr)
        elif type(e).__name__ == "Abort":
            print("error: aborted", file=sys.stderr)
        else:
            raise
    return 2
