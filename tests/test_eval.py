"""Scoring and summary numbers of mgsd_mini/evaluate.py, checked exactly on chosen responses."""

import json

import pytest
import puzzles
from PIL import Image

from mgsd_mini import evaluate as ev
from mgsd_mini import prompts, report


def _answer(plan, restated: str = "some state text") -> str:
    return f"{restated}\n<answer>{' '.join(plan)}</answer>"


def _pick(task, level, n, blind_solves, seed=0):
    """n held-out puzzles whose obstacle-blind plan succeeds (or fails, the detour ones)."""
    t = puzzles.get_task(task)
    pool = puzzles.make_split(task, level, "test", 60, seed)
    chosen = [r for r in pool if t.verify(r["state"], r["blind_plan"]).success == blind_solves][:n]
    assert len(chosen) == n
    return chosen


def _off_grid(task, case) -> str:
    """A response that walks straight off the grid from the start (an illegal move)."""
    for move in "UDLR":
        response = _answer([move] * (int(case["level"]) + 1))
        out = puzzles.check(task, case["state"], response)
        if out.illegal is not None and not out.success:
            return response
    pytest.skip("no straight walk from this start is illegal")  # pragma: no cover


def _planning_rows():
    """FrozenLake L3: 4 cases (2 blind-solvable, 2 detour), FrozenLake L4: 2 cases, Maze L3: 2 detour cases."""
    fl3_blind, fl3_detour = _pick("frozenlake", 3, 2, True), _pick("frozenlake", 3, 2, False)
    fl4 = _pick("frozenlake", 4, 2, True)
    mz3 = _pick("maze", 3, 2, False)
    cases = fl3_blind + fl3_detour + fl4 + mz3
    responses = [
        _answer(fl3_blind[0]["optimal_plan"] + [fl3_blind[0]["optimal_plan"][-1]]),  # success, one extra move: not optimal
        _off_grid("frozenlake", fl3_blind[1]),  # parses, illegal, fails
        _answer(fl3_detour[0]["optimal_plan"]),  # success + optimal on a detour puzzle
        "I do not know",  # no answer block: parse failure, counts as a failure
        _answer(fl4[0]["optimal_plan"], fl4[0]["symbolic_text"]),  # restated exactly
        _answer(fl4[1]["optimal_plan"], fl4[1]["symbolic_text"].replace("S", ".")),  # restated without the start
        "<answer>R R banana</answer>",  # unknown token: parse failure
        _answer(mz3[1]["optimal_plan"]),
    ]
    items = [{"case": i} for i in range(len(cases))]
    return ev.score(cases, items, responses, "image")


def test_planning_summary_numbers_are_exact():
    rows = _planning_rows()
    s = ev.summarize(rows, "image", "mini", ["runs/g/adapter"])
    assert s["mode"] == "image" and s["model"] == "mini" and s["adapters"] == ["runs/g/adapter"] and s["n"] == 8

    fl3 = s["tasks"]["frozenlake"]["levels"]["3"]
    assert fl3 == {"n": 4, "parse_rate": 0.75, "success": 0.5, "optimal": 0.25, "illegal_rate": 0.25,
                   "blind_success": 0.5, "detour_success": 0.5, "n_detour": 2, "restated": 0.0}
    fl4 = s["tasks"]["frozenlake"]["levels"]["4"]
    assert fl4 == {"n": 2, "parse_rate": 1.0, "success": 1.0, "optimal": 1.0, "illegal_rate": 0.0,
                   "blind_success": 1.0, "detour_success": None, "n_detour": 0, "restated": 0.5}
    mz3 = s["tasks"]["maze"]["levels"]["3"]
    assert mz3 == {"n": 2, "parse_rate": 0.5, "success": 0.5, "optimal": 0.5, "illegal_rate": 0.0,
                   "blind_success": 0.0, "detour_success": 0.5, "n_detour": 2, "restated": 0.0}

    # A task's rate is the mean over its levels (not pooled over cases: that would give 4/6 here).
    fl = s["tasks"]["frozenlake"]
    assert (fl["success"], fl["optimal"], fl["parse_rate"], fl["illegal_rate"], fl["blind_success"]) == (
        0.75, 0.625, 0.875, 0.125, 0.75)
    assert fl["detour_success"] == 0.5  # level 4 has no detour puzzle and is left out
    assert fl["restated"] == 0.25  # only the exact state text before <answer> counts
    assert s["macro"] == {"success": 0.625, "optimal": 0.5625, "detour_success": 0.5}


def test_rows_record_the_verifier_outcome():
    rows = _planning_rows()
    assert [r["parse_ok"] for r in rows] == [True, True, True, False, True, True, False, True]
    assert rows[1]["illegal"] is not None and rows[0]["illegal"] is None
    assert rows[0]["n_actions"] == rows[0]["optimal_length"] + 1
    json.dumps(rows)  # the JSONL rows are plain JSON


def test_perception_summary_numbers_are_exact():
    a, b = puzzles.make_split("frozenlake", 3, "test", 2, 0)
    c = puzzles.make_split("maze", 3, "test", 1, 0)[0]
    cases = [a, b, c]
    items = ev.build_prompts(cases, "perception", processor=_FakeProcessor())
    assert len(items) == len(a["perception"]) + len(b["perception"]) + len(c["perception"])
    wrong_q = b["perception"][1]["question"]
    responses = []
    for it in items:
        gold = it["gold"]
        if it["case"] == 1 and it["question"] == wrong_q:
            gold = "( 9 , 9 )"
        if it["case"] == 2:
            gold = f"<answer>{gold}</answer>"  # the answer block is accepted too
        responses.append(gold)
    rows = ev.score(cases, items, responses, "perception")
    s = ev.summarize(rows, "perception", "mini")
    nq = len(a["perception"])
    fl = s["tasks"]["frozenlake"]
    assert fl["levels"]["3"]["n"] == 2 and fl["levels"]["3"]["n_questions"] == 2 * nq
    assert fl["all_correct"] == 0.5
    assert fl["success"] == (2 * nq - 1) / (2 * nq)
    assert fl["questions"][wrong_q] == 0.5
    assert all(v == 1.0 for q, v in fl["questions"].items() if q != wrong_q)
    mz = s["tasks"]["maze"]
    assert mz["all_correct"] == 1.0 and mz["success"] == 1.0
    assert s["macro"]["all_correct"] == 0.75
    assert s["macro"]["success"] == pytest.approx((fl["success"] + 1.0) / 2)
    mean_q = sum(fl["questions"].values()) / len(fl["questions"])
    assert s["macro"]["questions"] == pytest.approx((mean_q + 1.0) / 2)


class _FakeProcessor:
    """Just enough for build_prompts: image_size reads the patch and merge sizes, `instructed` the vocabulary size."""

    def __init__(self, vocab_size=650):  # the mini tokenizer's size; a Qwen backbone's is 151,936
        self.tokenizer = range(vocab_size)

    class image_processor:  # noqa: N801
        patch_size, merge_size = 8, 2


def test_prompts_per_mode_and_image_sizes():
    cases = puzzles.make_split("frozenlake", 4, "test", 2, 0) + puzzles.make_split("minibehaviour", 5, "test", 1, 0)
    image = ev.build_prompts(cases, "image", _FakeProcessor())
    assert [it["images"][0].size for it in image] == [(64, 64), (64, 64), (80, 80)]
    assert image[0]["messages"][0]["content"][0] == {"type": "image"}
    text = ev.build_prompts(cases, "text", _FakeProcessor())
    assert all(it["images"] is None for it in text)
    body = text[0]["messages"][0]["content"][0]["text"]
    assert body == f"frozenlake\n{cases[0]['symbolic_text']}"  # mini: task name + state, no plan, no instructions
    qwen = ev.build_prompts(cases, "text", _FakeProcessor(151_936))[0]["messages"][0]["content"][0]["text"]
    assert qwen.startswith("Solve this frozenlake puzzle . S start") and cases[0]["symbolic_text"] in qwen
    assert qwen.endswith(prompts.ANSWER_FORMAT) and "Reference plan" not in qwen  # the upper bound gets no plan
    # teacher mode: the stage-2 teacher's prompt, the same state followed by the BFS plan (solved if the record lacks it)
    records = [cases[0], {k: v for k, v in cases[2].items() if k != "optimal_plan"}]
    for case, original, item in zip(records, (cases[0], cases[2]), ev.build_prompts(records, "teacher", _FakeProcessor())):
        plan = puzzles.get_task(case["task"]).solve(case["state"])
        assert plan == original["optimal_plan"] and len(plan) > 0
        assert item["messages"][0]["content"][0]["text"] == (
            f"{case['task']}\nReference plan : {prompts.plan_text(plan)}\n{case['symbolic_text']}")
    for vocab, words in ((650, ["frozenlake"]), (151_936, ["Solve this frozenlake puzzle shown in the image", "S start"])):
        student = ev.build_prompts(cases[:1], "image", _FakeProcessor(vocab))[0]["messages"][0]["content"][1]["text"]
        question = ev.build_prompts(cases[:1], "perception", _FakeProcessor(vocab))[0]["messages"][0]["content"][1]["text"]
        assert all(w in student for w in words) and (question.startswith("This is a") == (vocab > 650))
    # text-perception: the image's questions, in the same order with the same gold, asked about the state text
    for vocab in (650, 151_936):
        image_qs, text_qs = (ev.build_prompts(cases, m, _FakeProcessor(vocab)) for m in ("perception", "text-perception"))
        assert [(q["case"], q["question"], q["gold"]) for q in text_qs] == [(q["case"], q["question"], q["gold"]) for q in image_qs]
        for it in text_qs:
            body, case = it["messages"][0]["content"][0]["text"], cases[it["case"]]
            assert it["images"] is None and len(it["messages"][0]["content"]) == 1
            mini = f"{case['symbolic_text']}\n{case['task']} {it['question']}"
            assert body == mini if vocab == 650 else (case["symbolic_text"] in body and body.startswith("This is a"))
    with pytest.raises(ValueError):
        ev.build_prompts(cases, "video", _FakeProcessor())


def test_benchmark_records_load_their_image_and_bad_input_is_reported(tmp_path):
    rec = puzzles.make_split("frozenlake", 3, "test", 1, 0)[0]
    Image.new("RGB", (192, 192), (10, 20, 30)).save(tmp_path / "a.png")
    (tmp_path / "b.jsonl").write_text(json.dumps({**rec, "image": "a.png", "source": "x"}) + "\n"
                                      + json.dumps({**rec, "id": "r2"}) + "\n")
    cases = ev.benchmark_cases(tmp_path / "b.jsonl")
    assert len(cases) == 2 and cases[0]["_image"].size == (192, 192) and "_image" not in cases[1]
    assert ev.case_image(cases[0], 48).getpixel((5, 5)) == (10, 20, 30)  # its own image, resized
    assert ev.case_image(cases[1], 48).size == (48, 48)  # no image: rendered
    assert len(ev.benchmark_cases(tmp_path, {"frozenlake": [3]}, n=1)) == 1
    (tmp_path / "a.png").write_bytes(b"not a png")
    with pytest.raises(ev.EvalInputError, match="cannot load image"):
        ev.benchmark_cases(tmp_path / "b.jsonl")
    (tmp_path / "b.jsonl").write_text("{not json\n")
    with pytest.raises(ev.EvalInputError, match="not a puzzle record"):
        ev.benchmark_cases(tmp_path / "b.jsonl")
    with pytest.raises(ev.EvalInputError, match="no such"):
        ev.benchmark_cases(tmp_path / "missing.jsonl")


def test_choose_levels_defaults_and_filters():
    assert ev.choose_levels(["frozenlake", "maze", "minibehaviour"]) == {
        "frozenlake": [3, 4, 5], "maze": [3, 4], "minibehaviour": [5]}
    assert ev.choose_levels(["frozenlake", "maze"], [6, 8]) == {"frozenlake": [6, 8], "maze": [6]}
    with pytest.raises(ValueError, match="no valid level"):
        ev.choose_levels(["minibehaviour"], [3])
    assert ev.choose_levels(["maze", "minibehaviour"], [3], drop_empty=True) == {"maze": [3]}
    with pytest.raises(ValueError, match="no task has"):
        ev.choose_levels(["maze", "minibehaviour"], [8], drop_empty=True)
    with pytest.raises(ValueError, match="unknown task"):
        ev.choose_levels(["chess"])


def test_table_and_plot_render(tmp_path):
    s = ev.summarize(_planning_rows(), "image", "mini")
    t = report.table(s)
    assert t.row_count == 2 + 3  # a row per task and per level
    report.plot([s, s], ["base", "distill"], tmp_path / "plot.png")
    with Image.open(tmp_path / "plot.png") as im:
        assert im.format == "PNG" and im.size[0] >= 480
        # the first model's FrozenLake L4 bar (success 1.0) is drawn in its colour
        assert report.PALETTE[0] in {c for _, c in im.convert("RGB").getcolors(1 << 16)}
