"""`python -m puzzles`: export / score round trip and one-line errors with exit code 2 on bad input."""

import json
import subprocess
import sys

import pytest

from puzzles.cli import main


def test_score_counts_every_record(tmp_path, capsys):
    assert main(["export", "--task", "frozenlake", "--level", "3", "--split", "test", "--n", "10", "--size", "48",
                 "--out", str(tmp_path)]) == 0
    records = tmp_path / "frozenlake/level3/test.jsonl"
    recs = [json.loads(x) for x in records.read_text().splitlines()]
    answers = tmp_path / "answers.jsonl"
    # 6 optimal answers, 2 garbage, 2 missing: success 60 %, parse 60 %.
    rows = [{"id": r["id"], "response": f"<answer>{' '.join(r['optimal_plan'])}</answer>"} for r in recs[:6]]
    rows += [{"id": r["id"], "response": "I do not know"} for r in recs[6:8]]
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows))
    capsys.readouterr()
    assert main(["score", "--records", str(records), "--answers", str(answers), "--json", str(tmp_path / "s.json")]) == 0
    assert "frozenlake" in capsys.readouterr().out
    s = json.loads((tmp_path / "s.json").read_text())
    level = s["tasks"]["frozenlake"]["levels"]["3"]
    assert level["n"] == 10 and level["success"] == 0.6 and level["parse_rate"] == 0.6 and level["missing"] == 2
    assert s["macro"]["success"] == 0.6 and len(s["cases"]) == 10


@pytest.mark.parametrize("args", [
    ["export", "--task", "sokoban", "--level", "3", "--split", "test", "--n", "5"],
    ["export", "--task", "maze", "--level", "7", "--split", "test", "--n", "5"],
    ["export", "--task", "maze", "--level", "3", "--split", "test", "--n", "0"],
    ["export", "--task", "maze", "--level", "3", "--split", "dev", "--n", "5"],
    ["export", "--task", "maze", "--level", "3", "--split", "test", "--n", "x"],
    ["export", "--task", "maze", "--level", "3", "--split", "test", "--n", "5", "--size", "4"],
    ["import", "--format", "vsp", "--path", "/nonexistent"],
    ["import", "--format", "csv", "--path", "."],
])
def test_bad_export_and_import_input(tmp_path, capsys, args):
    out = tmp_path / "out"
    assert main(args + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not out.exists()  # nothing partially written


def test_bad_score_input(tmp_path, capsys):
    main(["export", "--task", "maze", "--level", "3", "--split", "val", "--n", "3", "--size", "48", "--out", str(tmp_path)])
    records = tmp_path / "maze/level3/val.jsonl"
    bad = {"notjson.jsonl": "{oops\n", "unknown.jsonl": '{"id": "nope", "response": "R"}\n',
           "types.jsonl": '{"id": 3, "response": "R"}\n'}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        capsys.readouterr()
        assert main(["score", "--records", str(records), "--answers", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
    capsys.readouterr()
    assert main(["score", "--records", str(tmp_path / "types.jsonl"), "--answers", str(tmp_path / "types.jsonl")]) == 2
    assert main(["score", "--records", str(tmp_path / "missing.jsonl"), "--answers", str(records)]) == 2
    (tmp_path / "afile").write_text("x")
    capsys.readouterr()
    assert main(["export", "--task", "maze", "--level", "3", "--split", "val", "--n", "3", "--out", str(tmp_path / "afile")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_module_entry_point_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "puzzles", "export", "--task", "nope", "--level", "3", "--split",
                           "test", "--n", "1", "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
