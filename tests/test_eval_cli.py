"""`python eval.py` end to end on the mini model (tiny budgets), and its answers to bad input."""

import json

import pytest
import puzzles
from PIL import Image
from typer.testing import CliRunner

from eval import app

FAST = ["--n", "1", "--levels", "3", "--max-new-tokens", "3", "--no-progress"]


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _assert_user_error(result, *words):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eval.py: error:"), result.stderr
    assert "Traceback" not in result.output
    for w in words:
        assert w in lines[0]


def test_image_mode_writes_table_json_jsonl_plot_and_config(tmp_path):
    out, extra = tmp_path / "run", tmp_path / "copy.json"
    r = _run("--model", "mini", "--mode", "image", "--tasks", "frozenlake,maze", *FAST, "--out", out, "--json", extra)
    assert r.exit_code == 0, r.output
    assert "macro: success" in r.stdout and "frozenlake" in r.stdout  # the rich table
    summary = json.loads((out / "summary.json").read_text())
    assert json.loads(extra.read_text()) == summary
    assert summary["mode"] == "image" and summary["model"] == "mini" and summary["adapters"] == []
    assert set(summary["macro"]) == {"success", "optimal", "detour_success"}
    for task in ("frozenlake", "maze"):
        t = summary["tasks"][task]
        assert {"success", "optimal", "parse_rate", "illegal_rate", "blind_success", "detour_success", "restated"} <= set(t)
        assert set(t["levels"]["3"]) == {"n", "parse_rate", "success", "optimal", "illegal_rate", "blind_success",
                                         "detour_success", "n_detour", "restated"}
    rows = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and {r["task"] for r in rows} == {"frozenlake", "maze"}
    config = json.loads((out / "config.json").read_text())
    assert config["stage"] == "eval" and config["max_new_tokens"] == 3 and config["task_levels"] == {
        "frozenlake": [3], "maze": [3]}
    with Image.open(out / "plot.png") as im:
        assert im.format == "PNG"


def test_perception_mode_has_one_row_per_question(tmp_path):
    out = tmp_path / "run"
    r = _run("--mode", "perception", "--tasks", "maze", *FAST, "--out", out)
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    questions = puzzles.make_split("maze", 3, "test", 1, 0)[0]["perception"]
    rows = (out / "cases.jsonl").read_text().splitlines()
    assert len(rows) == len(questions)
    assert {"all_correct", "questions", "success"} <= set(summary["macro"])
    assert set(summary["tasks"]["maze"]["questions"]) == {q["question"] for q in questions}


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """Two adapters for the mini base (stackable) and one made on a different base."""
    from mgsd_mini.lora import add_lora, save_adapter
    from mgsd_mini.model import build_mini, load

    root = tmp_path_factory.mktemp("adapters")
    model, _ = load("mini")
    for name in ("grounding", "distill"):
        add_lora(model, name, r=2, alpha=4.0)
        save_adapter(model, name, root / name)
    other, _ = build_mini(seed=1)
    add_lora(other, "grounding", r=2, alpha=4.0)
    save_adapter(other, "grounding", root / "other" / "grounding")
    return root


def test_stacked_adapters_and_compare(tmp_path, adapters):
    out = tmp_path / "run"
    g, d = adapters / "grounding", adapters / "distill"
    r = _run("--mode", "text", "--tasks", "frozenlake", *FAST, "--adapter", g, "--adapter", d,
             "--compare", "mini", "--compare", f"mini+{g}", "--out", out)
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["adapters"] == [str(g), str(d)]
    assert [s["adapters"] for s in summary["compare"]] == [[], [str(g)]]
    rows = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    assert [r["model"] for r in rows] == ["mini + grounding + distill", "mini", "mini + grounding"]


def test_a_runs_adapter_folder_is_labelled_by_its_run():
    import eval as eval_cli

    label = eval_cli._label("mini", ["runs/grounding-1/adapter", "runs/distill-2/adapter", "x/adapter-last"])
    assert label == "mini + grounding-1 + distill-2 + adapter-last"
    assert eval_cli._label("mini", ["adapter"]) == "mini + adapter"  # a bare relative folder keeps its name


def test_adapter_for_a_different_base_is_refused(tmp_path, adapters):
    r = _run(*FAST, "--tasks", "maze", "--adapter", adapters / "other" / "grounding", "--out", tmp_path / "run")
    _assert_user_error(r, "different base")
    assert not (tmp_path / "run").exists()


def test_existing_output_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("keep me")
    _assert_user_error(_run(*FAST, "--out", out), "already exists")
    assert (out / "summary.json").read_text() == "keep me"


@pytest.mark.parametrize("args,words", [
    (["--model", "no/such/dir"], ["unknown model"]),
    (["--mode", "video"], ["--mode"]),
    (["--tasks", "chess"], ["unknown task"]),
    (["--tasks", "minibehaviour"], ["no valid level"]),  # FAST asks for level 3
    (["--levels", "three"], ["--levels"]),
    (["--n", "0"], ["--n"]),
    (["--split", "dev"], ["--split"]),
    (["--preset", "gpt"], ["unknown preset"]),
    (["--adapter", "no-such-adapter"], ["adapter"]),
    (["--benchmark", "missing.jsonl"], ["benchmark"]),
])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, args, words):
    r = _run(*FAST, *args, "--out", tmp_path / "run")
    _assert_user_error(r, *words)
    assert not (tmp_path / "run").exists()


def test_output_under_a_file_fails_before_evaluating(tmp_path):
    (tmp_path / "file").write_text("keep me")
    _assert_user_error(_run(*FAST, "--out", tmp_path / "file" / "run"), "cannot create")
    assert (tmp_path / "file").read_text() == "keep me"


def test_not_a_model_dir_and_broken_benchmark_image(tmp_path):
    (tmp_path / "notamodel").mkdir()
    (tmp_path / "notamodel" / "weights.txt").write_text("x")
    _assert_user_error(_run(*FAST, "--model", tmp_path / "notamodel", "--out", tmp_path / "run"), "not a model directory")
    rec = puzzles.make_split("frozenlake", 3, "test", 1, 0)[0]
    (tmp_path / "img.png").write_bytes(b"\x89PNG truncated")
    (tmp_path / "bench.jsonl").write_text(json.dumps({**rec, "image": "img.png"}) + "\n")
    _assert_user_error(_run("--benchmark", tmp_path / "bench.jsonl", "--out", tmp_path / "run"), "cannot load image")
    assert not (tmp_path / "run").exists()
