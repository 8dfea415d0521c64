"""Stage 0 (base) and stage 1 (grounding) data and loops, and `python train.py`'s answers to bad input."""

import functools
import json

import pytest
import torch
from typer.testing import CliRunner

import puzzles
from mgsd_mini import config, generic_images, grounding, lora, parallel, pretrain, prompts
from mgsd_mini import model as M
from mgsd_mini.data import IGNORE, encode_chat
from train import app


def planning_example(processor, *args, **kwargs) -> dict:
    return pretrain.encode(processor, [pretrain.planning_draft(processor, *args, **kwargs)])[0]


def assert_same_training(a, b):
    """Two runs' (losses, weights) — one process against two: the same sums, added up in another order.
    Adam grows the order's rounding (1e-7) step by step: the losses drift apart by 1e-5 by step 4, and
    where a gradient is ~0 its sign, and so a whole step of lr, can flip. So: losses to 1e-4, and all
    but a few elements of each tensor to 1e-3 of its largest (a gradient summed wrong moves nearly all of them)."""
    assert a[0] == pytest.approx(b[0], rel=1e-4)
    assert a[1].keys() == b[1].keys() and len(a[1]) > 0
    for name in a[1]:
        close = torch.isclose(a[1][name], b[1][name], rtol=1e-4, atol=1e-3 * float(a[1][name].abs().max()))
        assert close.float().mean() >= 0.99, f"{name}: {int((~close).sum())} of {close.numel()} elements differ"


def _decoded_labels(processor, example) -> str:
    ids = example["input_ids"][example["labels"] != IGNORE]
    return processor.tokenizer.decode(ids)


@pytest.fixture(scope="module")
def mini():
    return M.build_mini(seed=0)


@pytest.fixture(scope="module")
def mini_dir(tmp_path_factory, mini):
    """A saved (random-init) mini model, loadable through the `--model DIR` path."""
    return M.save(*mini, tmp_path_factory.mktemp("mini") / "model")


# Stage-0 batches without images: no image-only steps, no image batches, no generic grid before the
# own-state prompts (the default shows one there).
TEXT_ONLY = {"vision_steps": 0, "image_frac": 0.0, "own_state_image": "none"}


def test_base_batches_are_pure_in_the_index_and_train_split_only(mini):
    _, processor = mini
    cfg = config.resolve("base", "mini", {"batch_size": 3, "image_frac": 0.3})
    batches = pretrain.make_batches(processor, cfg)
    for i in range(6):
        a, b = batches(i), batches(i)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rng = __import__("random").Random(0)
    for task, level in pretrain.task_levels(cfg):
        t = puzzles.get_task(task)
        for i in range(20):
            state = pretrain.train_puzzle(task, level, rng, detour=i % 2 == 1)
            assert puzzles.split_of(t.canonical(state)) == "train"
            if i % 2:  # a detour puzzle: the obstacle-blind plan fails on it, the optimal plan does not
                assert not t.verify(state, t.blind_plan(state)).success and t.verify(state, t.solve(state)).success


def test_base_batches_start_with_image_only_steps(mini):
    _, processor = mini
    cfg = config.resolve("base", "mini", {"batch_size": 2, "grad_accum": 2, **TEXT_ONLY, "vision_steps": 2})
    batches = pretrain.make_batches(processor, cfg)  # (micro-batches; vision_steps counts optimizer steps)
    assert ["pixel_values" in batches(i) for i in range(6)] == [True, True, True, True, False, False]


def test_base_planning_example_labels_only_the_restated_state_and_plan(mini):
    _, processor = mini
    rng = __import__("random").Random(1)
    ex = planning_example(processor, "maze", 3, rng)
    target = _decoded_labels(processor, ex)
    restated = target.split("\n<answer>")[0]
    assert restated.split("\n")[-1].startswith("start (") and target.endswith("</answer><|im_end|>") and target.endswith("</answer><|im_end|>")
    plan = puzzles.parse_answer(target.removesuffix("<|im_end|>"), "maze")
    assert plan and len(plan) >= 1
    prompt_ids = ex["input_ids"][ex["labels"] == IGNORE]
    prompt = processor.tokenizer.decode(prompt_ids)
    assert restated in prompt and "Reference plan" not in prompt  # it restates its prompt, and plans on its own


@pytest.mark.parametrize("task,level", [("frozenlake", 4), ("minibehaviour", 5), ("maze", 3)])
def test_grid_only_prompts_drop_the_coordinates_line_but_the_response_restates_it(mini, task, level):
    _, processor = mini
    rng = __import__("random").Random(3)
    ex = planning_example(processor, task, level, rng, grid_only_frac=1.0)
    prompt = processor.tokenizer.decode(ex["input_ids"][ex["labels"] == IGNORE])
    restated = _decoded_labels(processor, ex).split("\n<answer>")[0]
    grid, coordinates = restated.rsplit("\n", 1)
    assert grid in prompt and coordinates.split()[0] in ("start", "agent")
    # a maze grid marks neither start nor target, so its prompt always keeps the coordinates line
    assert (coordinates in prompt) == (task not in prompts.GRID_MARKS_ALL)
    if task not in prompts.GRID_MARKS_ALL:
        with pytest.raises(ValueError, match="coordinates line"):
            prompts.state_text(task, pretrain.train_puzzle(task, level, rng), coordinates=False)


@pytest.mark.parametrize("task,level", [("frozenlake", 3), ("maze", 4), ("minibehaviour", 5)])
def test_plan_prompts_give_the_plan_the_response_answers(mini, task, level):
    _, processor = mini
    ex = planning_example(processor, task, level, __import__("random").Random(4), plan_frac=1.0)
    prompt = processor.tokenizer.decode(ex["input_ids"][ex["labels"] == IGNORE])
    target = _decoded_labels(processor, ex)
    plan = puzzles.parse_answer(target.removesuffix("<|im_end|>"), task)
    restated = target.split("\n<answer>")[0]
    # the very plan the response ends with, then the state, right before the response that restates it
    assert f"{task}\nReference plan : {prompts.plan_text(plan)}\n{restated}<|im_end|>" in prompt


@pytest.mark.parametrize("task,level", [("frozenlake", 5), ("maze", 3), ("minibehaviour", 5)])
def test_own_state_prompts_name_the_task_only_and_label_the_plan_only(mini, task, level):
    _, processor = mini
    ex = planning_example(processor, task, level, __import__("random").Random(6), own_state_frac=1.0)
    text = processor.tokenizer.decode(ex["input_ids"])
    target = _decoded_labels(processor, ex)
    assert target.startswith("<answer>") and target.endswith("</answer><|im_end|>")
    plan = puzzles.parse_answer(target.removesuffix("<|im_end|>"), task)
    # the state is in the (teacher-forced) response, between the bare task prompt and the plan
    restated = text.split("<|im_start|>assistant\n")[1].split("\n<answer>")[0]
    assert f"<|im_start|>user\n{task}<|im_end|>" in text and restated.count("\n") >= 2
    assert f"{restated}\n<answer>{prompts.plan_text(plan)}</answer>" in text


@pytest.mark.parametrize("kind", ["generic", "puzzle"])
@pytest.mark.parametrize("task,level", [("frozenlake", 4), ("minibehaviour", 5)])
def test_own_state_images_make_the_student_prompt_and_leave_the_labels(mini, task, level, kind):
    _, processor = mini
    ex = planning_example(processor, task, level, __import__("random").Random(6), own_state_frac=1.0, own_state_image=kind)
    plain = planning_example(processor, task, level, __import__("random").Random(6), own_state_frac=1.0)
    # the prompt is the image-mode student prompt of a puzzle of this task and level, token for token
    state = pretrain.train_puzzle(task, level, __import__("random").Random(1))
    image = puzzles.get_task(task).render(state, M.image_size(processor, task, level))
    student = encode_chat(processor, prompts.student_prompt(task, instructions=False), [image], add_generation_prompt=True)
    assert torch.equal(ex["input_ids"][:len(student["input_ids"])], student["input_ids"])
    assert torch.equal(ex["image_grid_thw"], student["image_grid_thw"])
    # the same labels as without the image: the plan only, never the restated state
    assert _decoded_labels(processor, ex) == _decoded_labels(processor, plain)
    rng = __import__("random").Random(2)
    assert pretrain.own_state_images(processor, task, level, state, rng, "none") is None
    assert pretrain.own_state_images(processor, task, level, state, rng, "generic")[0].size == image.size
    assert pretrain.own_state_images(processor, task, level, state, rng, "puzzle")[0].tobytes() == image.tobytes()
    with pytest.raises(ValueError, match="choose one of none, generic, puzzle"):
        pretrain.own_state_images(processor, task, level, state, rng, "pixels")


@pytest.mark.parametrize("option,mark", [("plan_frac", "Reference plan"), ("own_state_frac", "user\nfrozenlake<|im_end|>")])
def test_prompt_options_set_their_share_and_zero_keeps_the_old_data(mini, option, mark):
    _, processor = mini
    def texts(**kw):
        rng = __import__("random").Random(5)
        return [processor.tokenizer.decode(planning_example(processor, "frozenlake", 3, rng, **kw)["input_ids"])
                for _ in range(40)]
    share = sum(mark in t for t in texts(**{option: 0.5})) / 40
    assert 0.25 <= share <= 0.75
    assert texts(**{option: 0.0}) == texts()  # no random draw at 0: earlier bases' data unchanged


@pytest.mark.parametrize("task,level", [("frozenlake", 4), ("maze", 3), ("minibehaviour", 5)])
def test_question_examples_ask_about_the_state_text_and_label_the_answer_only(mini, task, level):
    _, processor = mini
    t, rng, asked = puzzles.get_task(task), __import__("random").Random(3), set()
    for _ in range(30):
        replay = __import__("random").Random()
        replay.setstate(rng.getstate())
        state = pretrain.train_puzzle(task, level, replay)  # the puzzle question_draft draws first
        ex = pretrain.encode(processor, [pretrain.question_draft(task, level, rng)])[0]
        text, answer = processor.tokenizer.decode(ex["input_ids"]), _decoded_labels(processor, ex).removesuffix("<|im_end|>")
        prompt = text.split("<|im_start|>user\n")[1].split("<|im_end|>")[0]
        state_text, question = prompt.rsplit(f"\n{task} ", 1)
        assert "pixel_values" not in ex and state_text == t.symbolic_text(state) and puzzles.split_of(t.canonical(state)) == "train"
        assert (question, answer) in t.perception(state) and question != puzzles.RESTATE  # the exact answer, labelled alone
        asked.add(question)
    assert len(asked) == len(t.perception(state)) - 1  # every question but the restatement comes up


def test_question_frac_sets_the_share_of_question_batches_and_zero_keeps_the_old_data(mini):
    _, processor = mini
    def kinds(**kw):
        cfg = config.resolve("base", "mini", {"batch_size": "2", **TEXT_ONLY, **kw})
        batches = pretrain.make_batches(processor, cfg)
        return [processor.tokenizer.decode(batches(i)["input_ids"][0]) for i in range(40)]
    share = sum("<answer>" not in text for text in kinds(question_frac="0.5")) / 40
    assert 0.25 <= share <= 0.75
    assert kinds(question_frac="0") == kinds()  # no random draw at 0: earlier bases' data unchanged


def test_task_shares_weight_the_planning_batches(mini):
    _, processor = mini
    def tasks(shares):
        cfg = config.resolve("base", "mini", {"batch_size": "1", **TEXT_ONLY, "task_shares": shares})
        batches = pretrain.make_batches(processor, cfg)
        return [processor.tokenizer.decode(batches(i)["input_ids"][0]).split("\n")[1].removesuffix("<|im_end|>")  # (own-state: the task alone)
                for i in range(60)]
    assert tasks("1,1,1") == tasks("2,2,2")  # only the ratio counts
    assert tasks("0.01,10,0.01").count("maze") >= 55 and tasks("1,1,1").count("maze") <= 35
    with pytest.raises(config.ConfigError, match="--task-shares"):
        config.resolve("base", "mini", {"task_shares": "1,1"})


def test_base_continue_from_trains_a_saved_model_further(tmp_path, mini_dir):
    cfg = config.resolve("base", "mini", {"continue_from": str(mini_dir), "steps": "2", "batch_size": "2",
                                          "vision_steps": "0", "plan_frac": "0.5", "log_every": "1"})
    saved = pretrain.run(cfg, tmp_path / "run")
    before, _ = M.load(str(mini_dir))
    after, _ = M.load(str(saved))
    b, a = before.state_dict(), after.state_dict()
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)  # it started there and moved


def test_drafts_encode_together_as_one_by_one(mini):
    _, processor = mini
    rng = __import__("random").Random(7)
    drafts = [pretrain.planning_draft(processor, task, level, rng, plan_frac=0.3, own_state_frac=0.4, own_state_image=image)
              for task, level, image in [("frozenlake", 4, "generic"), ("maze", 3, "none"), ("minibehaviour", 5, "puzzle")] for _ in range(4)]
    drafts += [pretrain.question_draft("maze", 4, rng), pretrain.generic_image_draft(rng, 3)]
    assert any(d.images for d in drafts) and any(not d.images for d in drafts) and any(d.plan_only for d in drafts)
    together, alone = pretrain.encode(processor, drafts), [pretrain.encode(processor, [d])[0] for d in drafts]
    for a, b in zip(together, alone, strict=True):  # text-only drafts share one processor call: the same tensors
        assert a.keys() == b.keys() and "labels" in a and all(torch.equal(a[k], b[k]) for k in a)


def test_two_worker_base_takes_the_steps_of_one(tmp_path):
    def run(workers):
        cfg = config.resolve("base", "mini", {"steps": 4, "batch_size": 3, "grad_accum": 2, "vision_steps": 1, "image_frac": 0.3,
                                              "plan_frac": 0.3, "own_state_frac": 0.3, "own_state_image": "generic", "layers": 2,
                                              "mlp": 64, "log_every": 1, "workers": workers})
        saved = pretrain.run(cfg, tmp_path / str(workers))
        losses = [json.loads(line)["loss"] for line in (tmp_path / str(workers) / "metrics.jsonl").read_text().splitlines()]
        return losses, M.load(str(saved))[0].state_dict()

    one, two = run(1), run(2)
    assert len(one[0]) == 4
    assert_same_training(two, one)  # odd batches: unequal shares, the same sum


def test_generic_images_never_show_a_puzzle(mini):
    _, processor = mini
    rng = __import__("random").Random(2)
    for side in generic_images.SIZES:
        ex = pretrain.encode(processor, [pretrain.generic_image_draft(rng, side)])[0]
        text = processor.tokenizer.decode(ex["input_ids"])
        assert "pixel_values" in ex and not any(t in text.lower() for t in puzzles.TASKS)


def test_grounding_data_never_contains_a_test_puzzle(mini):
    _, processor = mini
    cfg = config.resolve("grounding", "mini", {"n_per_level": 3, "levels": "3,5", "rare_frac": 0.5})  # (a longer draw for MiniBehaviour)
    puzzles_questions = grounding.perception_examples(processor, cfg)
    # every example's answer is a gold perception answer of a train-split puzzle
    n_questions = n_puzzles = 0
    for task, levels in grounding.task_levels(cfg).items():
        for level in levels:
            records = grounding.train_records(task, level, cfg)
            assert all(r["split"] == "train" for r in records)
            test_ids = {r["id"] for r in puzzles.make_split(task, level, "test", 100, cfg.seed)}
            assert not test_ids & {r["id"] for r in records}
            n_questions += sum(len(r["perception"]) for r in records)
            n_puzzles += len(records)
    assert len(puzzles_questions) == n_puzzles and sum(map(len, puzzles_questions)) == n_questions
    # the questions about one puzzle share its pixel tensor (memory)
    assert all(len({id(ex["pixel_values"]) for ex in questions}) == 1 for questions in puzzles_questions)


@pytest.mark.parametrize("n, frac, seed", [(40, 0.5, 0), (25, 0.3, 1), (12, 1.0, 2)])
def test_grounding_draws_rare_frac_of_the_rooms_with_the_agent_next_to_the_printer(n, frac, seed):
    cfg = config.resolve("grounding", "mini", {"n_per_level": n, "rare_frac": frac, "seed": seed})
    records = grounding.train_records("minibehaviour", 5, cfg)
    next_to = lambda r: abs(r["state"]["agent"][0] - r["state"]["printer"][0]) + abs(r["state"]["agent"][1] - r["state"]["printer"][1]) == 1  # noqa: E731
    assert len(records) == len({r["id"] for r in records}) == n and all(r["split"] == "train" for r in records)
    assert sum(map(next_to, records)) == round(frac * n)
    assert sum(map(next_to, puzzles.make_split("minibehaviour", 5, "train", n, seed))) < round(frac * n)  # as drawn: ~1 in 5
    # no rare cases (FrozenLake), or rare_frac 0: make_split's puzzles, in its order
    for task, level, over in [("frozenlake", 4, {"rare_frac": 0.5}), ("minibehaviour", 5, {"rare_frac": 0.0})]:
        cfg = config.resolve("grounding", "mini", {"n_per_level": n, "seed": seed, **over})
        assert grounding.train_records(task, level, cfg) == puzzles.make_split(task, level, "train", n, seed)
    for bad in (1.5, -0.1):
        with pytest.raises(config.ConfigError, match="rare-frac must be in 0..1"):
            config.resolve("grounding", "mini", {"rare_frac": bad})


def test_grounding_draws_each_tasks_own_number_of_puzzles_a_level():
    cfg = config.resolve("grounding", "mini", {"n_per_level_by_task": "3,2,5", "rare_frac": 0.0})
    assert {t: [len(grounding.train_records(t, level, cfg)) for level in levels] for t, levels in grounding.task_levels(cfg).items()} \
        == {"frozenlake": [3, 3, 3], "maze": [2, 2], "minibehaviour": [5]}
    assert grounding.puzzles_per_level("maze", config.resolve("grounding", "mini", {"n_per_level": 7})) == 7  # one count for all
    for bad in ("3,2", "3,0,5", ""):
        with pytest.raises(config.ConfigError, match="a count of at least 1 for each of frozenlake,maze,minibehaviour"):
            config.resolve("grounding", "mini", {"n_per_level_by_task": bad})


def test_a_rare_share_that_needs_most_of_a_levels_puzzles_draws_no_more_than_it_holds():
    # MiniBehaviour level 5 holds 3,294 train rooms, 501 with the agent next to the printer: 448
    # rare of 1,400 need a draw of ~3,000 (doubling from 1,400 would ask for 5,600)
    t = puzzles.get_task("minibehaviour")
    cfg = config.resolve("grounding", "mini", {"n_per_level_by_task": "1,1,1400", "rare_frac": 0.32})
    records = grounding.train_records("minibehaviour", 5, cfg)
    assert len(records) == len({r["id"] for r in records}) == 1400 and sum(t.rare(r["state"]) for r in records) == 448
    with pytest.raises(ValueError, match="minibehaviour level 5: 700 rare and 700 other train puzzles are more than it holds"):
        grounding.train_records("minibehaviour", 5, config.resolve("grounding", "mini", {"n_per_level_by_task": "1,1,1400", "rare_frac": 0.5}))


@pytest.mark.parametrize("pack,pack_size", [(True, 0), (True, 2), (False, 0)])
def test_grounding_steps_hold_a_shuffled_epoch_split_into_micro_batches_by_length(mini, pack, pack_size):
    model, processor = mini
    cfg = config.resolve("grounding", "mini", {"n_per_level": 2, "levels": "3,5", "batch_size": 2 if pack else 4, "grad_accum": 2 if pack else 3,
                                               "pack_questions": pack, "pack_size": pack_size})
    puzzles_questions = grounding.perception_examples(processor, cfg)
    units = grounding.training_units(puzzles_questions, model, cfg)
    # a unit is a question, all of a puzzle's questions, or pack_size of them (the last may hold fewer)
    size = (pack_size or max(map(len, puzzles_questions))) if pack else 1
    assert len(units) == sum(-(-len(questions) // size) for questions in puzzles_questions)
    assert sum(int((u["labels"] != -100).sum()) for u in units) == sum(int((q["labels"] != -100).sum()) for p in puzzles_questions for q in p)
    pad = processor.tokenizer.pad_token_id
    batches_fn = grounding.make_batches(units, pad, cfg)
    per_epoch = -(-len(units) // cfg.batch_size)
    seen = []
    for step in range(-(-per_epoch // cfg.grad_accum)):
        micro = [batches_fn(step * cfg.grad_accum + k) for k in range(cfg.grad_accum) if step * cfg.grad_accum + k < per_epoch]
        lengths = [(b["input_ids"] != pad).sum(1).tolist() for b in micro]
        # shorter units first: each micro-batch is no longer than the next one's shortest
        assert all(max(a) <= min(b) for a, b in zip(lengths, lengths[1:]))
        seen += [ids[ids != pad].tolist() for b in micro for ids in b["input_ids"]]
        assert all(("position_ids" in b) == pack and b["attention_mask"].ndim == (4 if pack else 2) for b in micro)
    # one epoch is every unit (a puzzle's packed questions, or one question) exactly once
    assert sorted(seen) == sorted(u["input_ids"].tolist() for u in units)
    assert len(seen) == len(units) > 2 * cfg.batch_size * cfg.grad_accum


def test_grounding_steps_end_with_one_micro_batch_of_the_bases_own_planning_examples(mini):
    _, processor = mini
    cfg = config.resolve("grounding", "mini", {"n_per_level": 2, "levels": "3,5", "batch_size": 4, "grad_accum": 2, "replay_examples": 3})
    units = grounding.training_units(grounding.perception_examples(processor, cfg), mini[0], cfg)
    perception = grounding.make_batches(units, processor.tokenizer.pad_token_id, cfg)
    replay = functools.partial(grounding.replay_batch, processor, cfg)
    batches_fn = grounding.with_replay(perception, replay, cfg)
    replayed = []
    for step in range(3):
        for k in range(cfg.grad_accum):  # the perception micro-batches, in their own order
            assert torch.equal(batches_fn(3 * step + k)["input_ids"], perception(2 * step + k)["input_ids"])
        batch = batches_fn(3 * step + 2)
        assert torch.equal(batch["input_ids"], replay(3 * step + 2)["input_ids"])  # pure in the index
        assert batch["input_ids"].shape[0] == cfg.replay_examples and "pixel_values" in batch
        for ids, labels in zip(batch["input_ids"], batch["labels"]):
            text = processor.tokenizer.decode(ids)
            target = processor.tokenizer.decode(ids[labels != IGNORE])
            # an image then the task name; the restated state is context, only the plan is a target
            assert "<|vision_start|>" in text and target.startswith("<answer>") and target.endswith("</answer><|im_end|>")
            assert not any(q in text for q in ("Question", "?"))
        replayed.append(batch["input_ids"])
    assert len({tuple(ids.flatten().tolist()) for ids in replayed}) == 3  # fresh examples every step
    assert config.resolve("grounding", "qwen3-vl-4b", {}).replay_examples == 0  # the paper's grounding is perception only


def test_few_step_grounding_run_learns_and_saves_a_peft_adapter(tmp_path, mini_dir):
    cfg = config.resolve("grounding", "mini", {
        "model": str(mini_dir), "tasks": "frozenlake", "levels": "3", "n_per_level": 4,
        "steps": 12, "batch_size": 4, "grad_accum": 1, "lr": 1e-2, "lora_r": 4, "log_every": 1, "ckpt_every": 100, "eval_n": 2,
        "pack_questions": False, "workers": 1,  # (the packed two-process default runs in the CLI tests and the quickstart)
    })
    adapter = grounding.run(cfg, tmp_path)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3])
    summary = json.loads((tmp_path / "perception.json").read_text())
    assert summary["mode"] == "perception" and "all_correct" in summary["macro"]
    model, _ = M.load(str(mini_dir))
    assert lora.load_adapter(model, adapter) == "adapter"


def test_two_worker_grounding_takes_the_steps_of_one_and_resumes_from_its_checkpoint(tmp_path, mini_dir):
    def run(out, workers, resume=False):
        cfg = config.resolve("grounding", "mini", {
            "model": str(mini_dir), "tasks": "frozenlake", "levels": "3", "n_per_level": 4, "steps": 4, "batch_size": 5,
            "grad_accum": 2, "replay_examples": 3, "lora_r": 4, "log_every": 1, "ckpt_every": 2, "eval_n": 0, "workers": workers})
        adapter = grounding.run(cfg, tmp_path / out, resume=resume)
        losses = [json.loads(line)["loss"] for line in (tmp_path / out / "metrics.jsonl").read_text().splitlines()]
        model, _ = M.load(str(mini_dir))
        lora.load_adapter(model, adapter)
        return losses, {n: p.detach().clone() for n, p in model.named_parameters() if "lora" in n}

    one, two = run("one", 1), run("two", 2)
    assert_same_training(one, two)  # odd batch and replay sizes: the ranks' shares differ, their sum does not
    (tmp_path / "two" / "checkpoints" / "step-000004").rename(tmp_path / "moved")  # as if stopped after step 2
    assert_same_training(run("two", 2, resume=True), one)


def _perception_rows(model_dir, cases):
    torch.manual_seed(0)
    model, processor = M.load(model_dir)
    lora.add_lora(model, "grounding", 4, 8, 0.0)  # a nonzero adapter, so the rows are not the base's
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    return grounding.perception_rows(model, processor, cases)


def test_perception_eval_on_two_processes_gives_the_rows_of_one(mini_dir):
    cases = grounding.evaluate.held_out_cases({"frozenlake": [3], "minibehaviour": [5]}, 2, "test")
    one, two = _perception_rows(str(mini_dir), cases), parallel.run(2, _perception_rows, str(mini_dir), cases)
    assert len(one) == sum(len(c["perception"]) for c in cases) and [r["id"] for r in one][0] == cases[0]["id"]
    assert two == one


def _train(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("args, words", [
    (["--stage", "finetune"], ["unknown stage", "base, grounding, distill"]),
    (["--stage", "grounding", "--preset", "llama"], ["unknown preset"]),
    (["--stage", "base", "--preset", "qwen3-vl-4b"], ["only for the mini preset"]),
    (["--stage", "grounding", "--bogus", "1"], ["unknown option --bogus"]),
    (["--stage", "grounding", "--lr", "fast"], ["--lr expects float"]),
    (["--stage", "grounding", "stray"], ["unexpected argument"]),
    (["--stage", "grounding", "--model", "/nonexistent/model"], ["/nonexistent/model"]),
    (["--stage", "grounding", "--n-per-level", "0"], ["--n-per-level must be at least 1"]),
    (["--stage", "distill", "--batch-size", "-4"], ["--batch-size must be at least 1"]),
    (["--stage", "grounding", "--levels", "99"], ["no valid level"]),
    (["--stage", "base", "--own-state-image", "pixels"], ["--own-state-image must be one of none, generic, puzzle"]),
    (["--stage", "grounding", "--replay-examples", "-1"], ["--replay-examples must be at least 0"]),
    (["--stage", "grounding", "--workers", "0"], ["--workers must be at least 1"]),
    (["--stage", "grounding", "--workers", "2", "--device", "cuda"], ["one process per CPU core", "--workers 1"]),
])
def test_train_bad_input_gives_one_line_and_exit_2(tmp_path, args, words):
    r = _train(*args, "--out", tmp_path / "run")
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.py: error:") and "Traceback" not in r.output
    assert all(w in lines[0] for w in words), lines[0]
    assert not (tmp_path / "run").exists()  # a refused run leaves no empty folder behind


def test_train_output_under_a_file_is_one_line_and_nothing_is_touched(tmp_path):
    (tmp_path / "file").write_text("keep me")
    r = _train("--stage", "grounding", "--out", tmp_path / "file" / "run")
    assert r.exit_code == 2 and "cannot create" in r.stderr and "Traceback" not in r.output
    assert (tmp_path / "file").read_text() == "keep me"


def test_train_refuses_a_busy_run_dir_and_a_resume_of_nothing(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "config.json").write_text("{}")
    r = _train("--stage", "grounding", "--out", busy)
    assert r.exit_code == 2 and "already holds a run" in r.stderr
    assert (busy / "config.json").read_text() == "{}"  # nothing overwritten
    r = _train("--stage", "grounding", "--out", tmp_path / "empty", "--resume")
    assert r.exit_code == 2 and "nothing to resume" in r.stderr
