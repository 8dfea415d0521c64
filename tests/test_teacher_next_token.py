"""bench/teacher_next_token.py: the probed sequence is the teacher's view of a gold prefix, token for token."""

import importlib.util
from pathlib import Path

import pytest
import torch

import puzzles
from mgsd_mini import distill, model as M, prompts

spec = importlib.util.spec_from_file_location("teacher_next_token", Path(__file__).resolve().parents[1] / "bench" / "teacher_next_token.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.mark.parametrize("task,level,cut", [("minibehaviour", 5, " table"), ("maze", 3, " target"), ("frozenlake", 4, "<answer>")])
def test_cut_sequence_is_the_teacher_prompt_then_the_gold_response_up_to_the_cut(task, level, cut):
    _, processor = M.build_mini(seed=0)
    tokenizer = processor.tokenizer
    records = puzzles.make_split(task, level, "train", 3, seed=1)
    _, teachers = distill.encode_prompts(processor, records, reference_plan=True)
    for rec, teacher, (ids, target) in zip(records, teachers, bench.cut_sequences(processor, records, cut, True)):
        n = len(teacher["input_ids"])
        assert torch.equal(ids[:n], teacher["input_ids"])
        gold = tokenizer(prompts.response(task, rec["state"], rec["optimal_plan"]), add_special_tokens=False)["input_ids"]
        assert gold[:len(ids) - n + 1] == ids[n:].tolist() + [target]  # the student's tokens would be these
        before, upto = tokenizer.decode(ids[n:].tolist()), tokenizer.decode(ids[n:].tolist() + [target])
        assert len(upto) > len(before) and (before + cut).startswith(upto)  # the target begins the cut


def test_main_reports_a_probability_and_refuses_a_cut_not_in_the_response(monkeypatch, capsys):
    monkeypatch.setattr(bench.models, "load", lambda name: M.build_mini(seed=0))
    p = bench.main(["--n", "2"])
    assert 0.0 <= p <= 1.0 and "mean p(' table')" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="does not occur"):
        bench.main(["--n", "1", "--cut", " printer-adjacent"])
