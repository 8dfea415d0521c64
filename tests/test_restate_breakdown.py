"""bench/restate_breakdown.py scores a restatement's grid rows and coordinates line separately."""

import json
import subprocess
import sys
from pathlib import Path

import puzzles

ROOT = Path(__file__).resolve().parents[1]


def test_grid_rows_and_coordinates_are_scored_apart(tmp_path):
    gold = ". . S\n. H .\nG . .\nstart ( 0 , 2 ) goal ( 2 , 0 )"
    rows = [  # right grid and wrong coordinates; one wrong row and right coordinates; another question
        {"task": "frozenlake", "level": 3, "question": puzzles.RESTATE, "gold": gold,
         "response": gold.replace("goal ( 2 , 0 )", "goal ( 2 , 2 )") + "<|im_end|>", "correct": False},
        {"task": "frozenlake", "level": 3, "question": puzzles.RESTATE, "gold": gold, "response": gold.replace(". H .", ". . ."), "correct": False},
        {"task": "frozenlake", "level": 3, "question": "where is the start ?", "gold": "( 0 , 2 )", "response": "( 0 , 2 )", "correct": True},
    ]
    path = tmp_path / "cases.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = subprocess.run([sys.executable, "bench/restate_breakdown.py", str(path)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].split() == ["frozenlake", "3", "2", "50.0%", "83.3%", "50.0%"]
    # per question: both restatements wrong, the position question right
    assert lines[4].split()[-2:] == ["2", "0.0%"] and "Restate" in lines[4]
    assert lines[5].split()[-2:] == ["1", "100.0%"] and "where is the start" in lines[5]
