"""`python reproduce.py --smoke`: every row of the results table trained and evaluated end to end (two
steps and two puzzles per stage), so the entry behind the README's table cannot silently rot."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_reproduce_smoke_trains_every_run_evaluates_every_row_and_reuses_finished_runs(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "reproduce.py", "--smoke", "--out", str(tmp_path)]
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    labels = [r["row"] for r in results["rows"]]
    assert labels[0] == "base, text (upper bound)" and len(labels) == 8 and "grounding + distill (main)" in labels
    assert [r["mode"] for r in results["rows"]] == ["text"] + ["image"] * 7
    for row in results["rows"]:
        assert 0.0 <= row["macro"]["success"] <= 1.0 and set(row["tasks"]) == {"frozenlake"}
        assert row["mode"] == "text" or 0.0 <= row["perception_all_correct"] <= 1.0
    assert set(results["times_s"]) == {"grounding", "distill-full", "distill-sampled", "distill-no-plan",
                                       "distill-no-grounding", "sft-gold"}
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    table = (tmp_path / "results.md").read_text()
    assert "| grounding + distill (main) |" in table
    # the distill runs stack on this table's own grounding adapter (the ablation on none)
    main_cfg = json.loads((tmp_path / "distill-full" / "config.json").read_text())
    assert main_cfg["grounding"] == str(tmp_path / "grounding" / "adapter")
    assert json.loads((tmp_path / "distill-no-grounding" / "config.json").read_text())["init"] == "base"
    assert json.loads((tmp_path / "sft-gold" / "config.json").read_text())["loss"] == "gold"

    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "train.py" not in again.stdout  # nothing is trained twice
    assert (tmp_path / "results.md").read_text() == table  # the same evaluations, reused

    # an interrupted distill run already holds `adapter` (its best so far): it is resumed, not reused
    sys.path.insert(0, str(ROOT))
    import reproduce

    assert reproduce.train_args("distill-full", tmp_path, smoke=True) is None
    shutil.rmtree(tmp_path / "distill-full" / "adapter-last")
    assert (tmp_path / "distill-full" / "adapter").is_dir()
    assert reproduce.train_args("distill-full", tmp_path, smoke=True)[-1] == "--resume"


def test_reproduce_refuses_an_unknown_run_to_skip(tmp_path):
    r = subprocess.run([sys.executable, "reproduce.py", "--skip", "distill-nope", "--out", str(tmp_path / "r")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "distill-nope" in r.stderr and "distill-sampled" in r.stderr
    assert not (tmp_path / "r").exists()  # refused before anything was made


def test_runs_wait_for_grounding_only_while_it_is_unfinished(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT))
    import reproduce

    queues = []
    monkeypatch.setattr(reproduce, "call_all", lambda commands, jobs, out: queues.append(list(commands)) or {})
    monkeypatch.setattr(reproduce, "summaries", lambda out, mode: (_ for _ in ()).throw(SystemExit("stop before the table")))
    with pytest.raises(SystemExit):
        reproduce.main(out=tmp_path, n=1, smoke=True, jobs=2, skip=None)
    # grounding unfinished: it goes first, beside the one run that does not stack on it
    assert queues[0] == ["grounding", "distill-no-grounding"]
    assert queues[1] == ["distill-full", "distill-sampled", "distill-no-plan", "sft-gold"]

    queues.clear()
    (tmp_path / "grounding" / "adapter").mkdir(parents=True)
    with pytest.raises(SystemExit):
        reproduce.main(out=tmp_path, n=1, smoke=True, jobs=2, skip=None)
    # grounding finished: every missing run in one queue, nothing waits
    assert queues[0] == ["distill-no-grounding", "distill-full", "distill-sampled", "distill-no-plan", "sft-gold"]
