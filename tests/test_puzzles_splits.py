"""Splits never share a puzzle; the same seed gives byte-identical JSONL and PNGs."""

import filecmp
import json

import pytest

from puzzles import TASKS, make_split, split_of
from puzzles.cli import main


@pytest.mark.parametrize("name,level", [(n, lv) for n, t in TASKS.items() for lv in t.levels])
def test_splits_are_disjoint_by_canonical_state(name, level):
    task = TASKS[name]
    keys = {}
    for split, n in (("train", 800), ("val", 100), ("test", 100)):  # 1,000 puzzles per task-level
        recs = make_split(name, level, split, n, seed=0)
        assert len(recs) == n and all(r["split"] == split and r["level"] == level for r in recs)
        keys[split] = {task.canonical(r["state"]) for r in recs}
        assert len(keys[split]) == n  # de-duplicated
        assert all(split_of(k) == split for k in keys[split])
        assert len({r["id"] for r in recs}) == n
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]
    # Whatever the seed, a puzzle lands in the same split.
    other = {task.canonical(r["state"]) for r in make_split(name, level, "test", 50, seed=1)}
    assert not other & keys["train"] and not other & keys["val"]


def test_make_split_is_deterministic_and_records_are_complete():
    a, b = make_split("minibehaviour", 5, "val", 20, seed=3), make_split("minibehaviour", 5, "val", 20, seed=3)
    assert json.dumps(a) == json.dumps(b)
    assert json.dumps(a) != json.dumps(make_split("minibehaviour", 5, "val", 20, seed=4))
    rec = a[0]
    for key in ("id", "task", "level", "split", "seed", "state", "optimal_plan", "optimal_length", "blind_plan",
                "symbolic_text", "perception"):
        assert key in rec
    assert rec["optimal_length"] == len(rec["optimal_plan"]) and rec["id"].startswith("minibehaviour-L5-")
    assert all(set(p) == {"question", "answer"} for p in rec["perception"])


def test_make_split_errors():
    with pytest.raises(ValueError, match="cannot supply"):
        make_split("maze", 3, "test", 5000, seed=0, patience=200)
    with pytest.raises(ValueError, match="positive"):
        make_split("maze", 3, "test", 0, seed=0)
    with pytest.raises(ValueError, match="split"):
        make_split("maze", 3, "dev", 5, seed=0)
    with pytest.raises(ValueError, match="level"):
        make_split("maze", 7, "test", 5, seed=0)


@pytest.mark.parametrize("name,level,size", [("frozenlake", 4, 64), ("maze", 5, 256), ("minibehaviour", 6, 96)])
def test_export_is_byte_identical_for_the_same_seed(tmp_path, name, level, size):
    runs = []
    for out, seed in (("a", 5), ("b", 5), ("c", 6)):
        assert main(["export", "--task", name, "--level", str(level), "--split", "train", "--n", "12",
                     "--seed", str(seed), "--size", str(size), "--out", str(tmp_path / out)]) == 0
        runs.append(tmp_path / out / name / f"level{level}")
    a, b, c = runs
    assert (a / "train.jsonl").read_bytes() == (b / "train.jsonl").read_bytes()
    pngs = sorted(p.name for p in (a / "train").iterdir())
    assert len(pngs) == 12 and pngs == sorted(p.name for p in (b / "train").iterdir())
    assert filecmp.cmpfiles(a / "train", b / "train", pngs, shallow=False)[0] == pngs
    assert (a / "train.jsonl").read_bytes() != (c / "train.jsonl").read_bytes()
    recs = [json.loads(line) for line in (a / "train.jsonl").read_text().splitlines()]
    assert all((a / r["image"]).is_file() for r in recs)
    assert not [p for p in a.iterdir() if p.name.startswith(".")]  # no temp files left behind
