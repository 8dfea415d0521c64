"""Chat encoding, label masking and collation (mgsd_mini/data.py) on the mini processor."""

import pytest
import torch
from PIL import Image

from mgsd_mini import prompts
from mgsd_mini.config import resolve
from mgsd_mini.data import IGNORE, collate, encode_chat, encode_sft, pack_shared_prefix, segment_mask
from mgsd_mini.model import build_mini


@pytest.fixture(scope="module")
def processor():
    return build_mini(seed=0)[1]


def _image(side: int, seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (16 * side, 16 * side, 3), generator=g, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def _text_prompt(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


CASES = [  # (prompt messages, images, response)
    (prompts.student_prompt("frozenlake"), [_image(3, 0)], "S . H\n. . G\n<answer>R D</answer>"),
    (prompts.student_prompt("maze"), [_image(4, 1)], "<answer>U U L</answer>"),
    (prompts.perception_prompt("minibehaviour", "Where is the printer ?"), [_image(5, 2)], "( 1 , 2 )"),
    (_text_prompt("a text-only prompt : S . . G"), None, "unseen wörds ✓ <answer>R R R</answer>"),
]


@pytest.mark.parametrize("messages,images,response", CASES)
def test_labels_cover_exactly_the_assistant_response_and_its_end_of_turn(processor, messages, images, response):
    tok = processor.tokenizer
    ex = encode_sft(processor, messages, response, images)
    ids, labels = ex["input_ids"], ex["labels"]
    labelled = (labels != IGNORE).nonzero().squeeze(1)
    # One contiguous span, whose labels are the input ids themselves (the model shifts them).
    assert len(labelled) > 0 and torch.equal(labelled, torch.arange(labelled[0], labelled[-1] + 1))
    assert torch.equal(labels[labelled], ids[labelled])
    assert tok.decode(ids[labelled]) == response + "<|im_end|>"
    # Everything before it is the prompt (ending with the generation prompt), nothing after it but the
    # template's newline; no image token and no user text is ever a target.
    prompt = encode_chat(processor, messages, images, add_generation_prompt=True)
    assert torch.equal(ids[: labelled[0]], prompt["input_ids"])
    assert tok.decode(ids[labelled[-1] + 1:]) == "\n"
    assert not (labels == processor.image_token_id).any()


def test_image_tokens_and_types_match_the_image_grid(processor):
    image = _image(4, 3)
    ex = encode_chat(processor, prompts.student_prompt("maze"), [image], add_generation_prompt=True)
    n_visual = int(ex["image_grid_thw"].prod()) // processor.image_processor.merge_size ** 2
    cells = processor.image_processor.canvas_px // 16
    assert n_visual == cells * cells  # one merged visual token per 16-px cell of the mini canvas
    assert int((ex["input_ids"] == processor.image_token_id).sum()) == n_visual
    assert torch.equal(ex["mm_token_type_ids"] == 1, ex["input_ids"] == processor.image_token_id)


@pytest.mark.parametrize("left_pad", [False, True])
def test_collate_pads_and_concatenates_in_batch_order(processor, left_pad):
    pad = processor.tokenizer.pad_token_id
    examples = [encode_sft(processor, m, r, im) for m, im, r in CASES]
    batch = collate(examples, pad, left_pad=left_pad)
    width = max(len(e["input_ids"]) for e in examples)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (len(examples), width)
    for row, ex in enumerate(examples):
        n = len(ex["input_ids"])
        real = slice(width - n, width) if left_pad else slice(0, n)
        padding = slice(0, width - n) if left_pad else slice(n, width)
        for key in ("input_ids", "labels", "attention_mask", "mm_token_type_ids"):
            assert torch.equal(batch[key][row, real], ex[key])
        assert (batch["input_ids"][row, padding] == pad).all()
        assert (batch["labels"][row, padding] == IGNORE).all()
        assert (batch["attention_mask"][row, padding] == 0).all()
        assert (batch["mm_token_type_ids"][row, padding] == 0).all()
    with_images = [e for e in examples if "pixel_values" in e]
    assert torch.equal(batch["pixel_values"], torch.cat([e["pixel_values"] for e in with_images]))
    assert torch.equal(batch["image_grid_thw"], torch.cat([e["image_grid_thw"] for e in with_images]))


def test_collate_text_only_batch_has_no_image_tensors(processor):
    examples = [encode_chat(processor, _text_prompt(t), None, True) for t in ("a", "a longer prompt here")]
    batch = collate(examples, processor.tokenizer.pad_token_id, left_pad=True)
    assert "pixel_values" not in batch and "image_grid_thw" not in batch
    with pytest.raises(ValueError):
        collate([], 0)


@pytest.mark.parametrize("task", ["frozenlake", "maze", "minibehaviour"])
def test_every_grid_cell_is_one_token(processor, task):
    """A cell's column is a fixed token offset within its row: one token per cell, one per newline,
    whatever the cell and wherever it stands (BPE must not split a rare maze cell like ' UDLR')."""
    import random

    import puzzles

    t, rng = puzzles.get_task(task), random.Random(task)
    for level in t.levels:
        for _ in range(40):
            rows = t.symbolic_text(t.generate(level, rng)).split("\n")[:-1]  # the grid, without the coordinates line
            grid = "\n".join(rows)
            assert len(processor.tokenizer(grid)["input_ids"]) == len(grid.split()) + grid.count("\n"), grid


def _puzzle_questions(processor, task: str, level: int, seed: int) -> list[dict]:
    """The encoded perception questions about one train puzzle (what grounding packs)."""
    from mgsd_mini import grounding

    cfg = resolve("grounding", "mini", {"tasks": (task,), "levels": (level,), "n_per_level": 1, "seed": seed})
    return grounding.perception_examples(processor, cfg)[0]


@pytest.mark.parametrize("seed,puzzle_set,size", [
    (0, [("frozenlake", 3), ("maze", 4)], 0),
    (1, [("minibehaviour", 5), ("frozenlake", 5), ("maze", 3)], 0),
    (2, [("maze", 4), ("minibehaviour", 5)], 2),  # 5 questions -> 2 + 2 + 1: one question packs alone too
])
def test_packed_questions_give_the_loss_and_gradient_of_the_questions_one_by_one(seed, puzzle_set, size):
    from mgsd_mini.sft import sft_loss_sum

    model, processor = build_mini(seed=seed)
    model.train()
    pad = processor.tokenizer.pad_token_id
    puzzles_questions = [_puzzle_questions(processor, task, level, seed) for task, level in puzzle_set]
    groups = [questions[i:i + (size or len(questions))] for questions in puzzles_questions for i in range(0, len(questions), size or len(questions))]
    assert size == 0 or min(map(len, groups)) == 1
    packed = [pack_shared_prefix(group, model.model.get_rope_index) for group in groups]

    def loss_and_grads(batch):
        model.zero_grad()
        loss, n_labelled = sft_loss_sum(model, batch)
        loss.backward()
        return loss.item(), n_labelled, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    one_by_one, together = loss_and_grads(collate([q for g in groups for q in g], pad)), loss_and_grads(collate(packed, pad))
    assert together[1] == one_by_one[1] and together[0] == pytest.approx(one_by_one[0], rel=1e-5)
    assert together[2].keys() == one_by_one[2].keys()
    for name, grad in one_by_one[2].items():
        # atol scales with the tensor: a bias gradient sums thousands of patches' terms of up to ~100
        # in a different order (the vision tower runs once a puzzle, not once a question), and its
        # near-zero entries keep ~1e-7 of that scale as rounding (machine-dependent: BLAS kernels)
        torch.testing.assert_close(together[2][name], grad, rtol=1e-4, atol=1e-5 * max(1.0, float(grad.abs().max())), msg=name)
    # the vision tower runs once per puzzle, and each question's tail keeps the positions it has alone
    for group, row in zip(groups, packed):
        assert torch.equal(row["pixel_values"], group[0]["pixel_values"]) and len(row["image_grid_thw"]) == 1
        shared = int((row["segment_ids"] == 0).sum())
        for i, question in enumerate(group):
            alone, _ = model.model.get_rope_index(question["input_ids"][None], mm_token_type_ids=question["mm_token_type_ids"][None],
                                                  image_grid_thw=question["image_grid_thw"])
            tail = row["segment_ids"] == i + 1
            assert torch.equal(row["position_ids"][:, tail], alone[:, 0, shared:])
            assert torch.equal(row["input_ids"][tail], question["input_ids"][shared:])


def test_segment_mask_lets_each_tail_see_the_prefix_and_itself_only():
    segments = torch.tensor([[0, 0, 1, 1, 2, -1]])
    mask = segment_mask(segments)[0, 0]
    expected = torch.tensor([
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 0, 0, 1, 0],  # tail 2 sees the prefix, not tail 1
        [0, 0, 0, 0, 0, 1],  # padding sees only itself (a row of nothing has no softmax)
    ], dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_packing_refuses_questions_about_different_images(processor):
    model, _ = build_mini(seed=0)
    a = _puzzle_questions(processor, "frozenlake", 4, 0)[:2]
    b = _puzzle_questions(processor, "frozenlake", 4, 1)[:2]
    with pytest.raises(ValueError, match="share their images"):
        pack_shared_prefix(a + b, model.model.get_rope_index)


@pytest.mark.parametrize("task,level,seed", [("frozenlake", 5, 0), ("maze", 3, 1), ("minibehaviour", 5, 2)])
def test_encoding_a_puzzles_questions_in_one_call_equals_one_by_one(processor, task, level, seed):
    from mgsd_mini import grounding
    from mgsd_mini.data import encode_sfts

    cfg = resolve("grounding", "mini", {"tasks": (task,), "levels": (level,), "n_per_level": 1, "seed": seed})
    [(pairs, image)] = grounding.perception_pairs(processor, cfg)
    together = encode_sfts(processor, pairs, [image])
    assert all(example["pixel_values"] is together[0]["pixel_values"] for example in together)  # one copy, shared
    for pair, example in zip(pairs, together, strict=True):
        alone = encode_sft(processor, *pair, [image])
        assert example.keys() == alone.keys()
        for key, value in alone.items():
            assert torch.equal(example[key], value), key
    text_only = [(_text_prompt("a"), "b"), (_text_prompt("a much longer prompt"), "c d e")]
    for pair, example in zip(text_only, encode_sfts(processor, text_only, None), strict=True):
        alone = encode_sft(processor, *pair, None)
        assert example.keys() == alone.keys() and all(torch.equal(example[k], v) for k, v in alone.items())


def test_a_processor_that_expands_image_pads_otherwise_gets_every_text_with_its_images(processor, monkeypatch):
    """_encode_texts tokenizes all but the first text itself; where its expansion of <|image_pad|>
    disagrees with the processor's on the first, each text goes through the processor."""
    from mgsd_mini import data
    from mgsd_mini.data import encode_sfts

    pairs = [(prompts.perception_prompt("maze", q), a) for q, a in [("where is the goal ?", "( 0 , 1 )"), ("what is the grid size ?", "3x3")]]
    image = _image(3, 4)
    expected = encode_sfts(processor, pairs, [image])
    monkeypatch.setattr(data, "_expand_image_pads", lambda text, pads: text.replace("<|image_pad|>", "<|image_pad|>" * (pads[0] + 1)))
    for got, want in zip(encode_sfts(processor, pairs, [image]), expected, strict=True):
        assert got.keys() == want.keys() and all(torch.equal(got[k], v) for k, v in want.items())


def test_two_images_in_one_text_expand_each_by_its_own_grid(processor):
    from mgsd_mini.data import encode_sfts

    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "and"}, {"type": "image"}, {"type": "text", "text": "?"}]}]
    images = [_image(3, 5), _image(5, 6)]
    together = encode_sfts(processor, [(prompt, "a"), (prompt, "b c")], images)
    for response, example in zip(["a", "b c"], together, strict=True):
        alone = encode_sft(processor, prompt, response, images)
        assert example.keys() == alone.keys() and all(torch.equal(example[k], v) for k, v in alone.items())
    grids = together[1]["image_grid_thw"]
    assert len(grids) == 2 and int(together[1]["mm_token_type_ids"].sum()) == int(grids.prod(-1).sum()) // 4  # a token per 2x2 patches
