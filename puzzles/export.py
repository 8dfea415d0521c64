"""Writing records to disk: DIR/<task>/level<L>/<split>.jsonl plus one PNG per record.

Each (task, level, split) group is written atomically: images go to a temp folder and the JSONL to a
temp file, and both are renamed into place only when everything was written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from puzzles import get_task, make_split

# An image writer: called with the destination path of the PNG.
WritePng = Callable[[Path], None]


def jsonl_path(out: Path, task: str, level: int, split: str) -> Path:
    return Path(out) / task / f"level{level}" / f"{split}.jsonl"


def write_group(out: Path, task: str, level: int, split: str, items: Iterable[tuple[dict, WritePng]]) -> Path:
    """Write records (each with its PNG writer); sets record["image"] relative to the JSONL."""
    path = jsonl_path(out, task, level, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = path.parent / split
    if images.exists() and not images.is_dir():
        raise ValueError(f"{images} exists and is not a folder")
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{split}-", dir=path.parent))
    tmp_jsonl = tmp_dir / "records.jsonl"
    try:
        with open(tmp_jsonl, "w", encoding="utf-8") as f:
            for rec, write_png in items:
                write_png(tmp_dir / f"{rec['id']}.png")
                rec["image"] = f"{split}/{rec['id']}.png"
                f.write(json.dumps(rec) + "\n")
        os.replace(tmp_jsonl, path.with_name(f".{path.name}.tmp"))
        if images.exists():
            shutil.rmtree(images)
        os.replace(tmp_dir, images)
        os.replace(path.with_name(f".{path.name}.tmp"), path)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        path.with_name(f".{path.name}.tmp").unlink(missing_ok=True)
        raise
    return path


def render_writer(task, state: dict, size: int) -> WritePng:
    return lambda dst: task.render(state, size).save(dst, format="PNG")


def export(task: str, level: int, split: str, n: int, seed: int, size: int, out: Path) -> Path:
    """Generate a split and write it with renders at `size` px; returns the JSONL path."""
    t = get_task(task)
    records = make_split(task, level, split, n, seed)
    return write_group(out, task, level, split, ((r, render_writer(t, r["state"], size)) for r in records))


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically (temp file in the same folder + os.replace): never half-written.

    The one atomic writer of the project (records, summaries, configs, metrics all go through it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
