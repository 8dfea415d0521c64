"""Batched KV-cache generation (mgsd_mini/generate.py) on the mini Qwen3-VL.

A freshly initialised model (weights ~N(0, 0.02)) repeats one token whatever the context, which
would let position or padding bugs pass unseen; the fixture re-draws the weights with a larger
spread so that greedy outputs depend on the image, the text and the positions.
"""

import pytest
import torch
from PIL import Image

from mgsd_mini import prompts
from mgsd_mini.data import collate, encode_chat
from mgsd_mini.generate import generate, stop_token_ids, suppressed_token_ids

MAX_NEW = 12


@pytest.fixture(scope="module")
def mini():
    from mgsd_mini.model import build_mini

    model, processor = build_mini(seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.15, generator=g)
    return model, processor


def _image(side: int, seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (16 * side, 16 * side, 3), generator=g, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def _examples(processor):
    """Prompts of four different lengths (three image sizes + text only), so left padding is exercised."""
    text = [{"role": "user", "content": [{"type": "text", "text": "Solve this frozenlake puzzle . S . H G"}]}]
    return [
        encode_chat(processor, prompts.student_prompt("frozenlake"), [_image(3, 0)], True),
        encode_chat(processor, text, None, True),
        encode_chat(processor, prompts.student_prompt("maze"), [_image(5, 1)], True),
        encode_chat(processor, prompts.perception_prompt("maze", "Where is the target ?"), [_image(4, 2)], True),
    ]


def _batch(processor, examples):
    return collate(examples, processor.tokenizer.pad_token_id, left_pad=True)


@pytest.fixture(scope="module")
def greedy(mini):
    model, processor = mini
    return generate(model, processor, _batch(processor, _examples(processor)), MAX_NEW)


def test_prompts_really_have_different_lengths_and_outputs_depend_on_them(mini, greedy):
    _, processor = mini
    assert len({len(e["input_ids"]) for e in _examples(processor)}) == 4
    rows = {tuple(r.tolist()) for r in greedy.tokens}
    assert len(rows) == 4 and all(len(set(r)) > 3 for r in rows)  # not one token repeated


def test_kv_cache_gives_the_same_greedy_tokens_as_recomputing(mini, greedy):
    model, processor = mini
    ref = generate(model, processor, _batch(processor, _examples(processor)), MAX_NEW, use_cache=False)
    assert torch.equal(greedy.tokens, ref.tokens)
    assert torch.equal(greedy.mask, ref.mask)
    torch.testing.assert_close(greedy.logprobs, ref.logprobs, atol=1e-4, rtol=0)
    assert greedy.texts == ref.texts


def test_batched_left_padded_generation_equals_one_prompt_at_a_time(mini, greedy):
    model, processor = mini
    for row, example in enumerate(_examples(processor)):
        alone = generate(model, processor, _batch(processor, [example]), MAX_NEW)
        n = alone.tokens.shape[1]
        assert torch.equal(alone.tokens[0], greedy.tokens[row, :n])
        torch.testing.assert_close(alone.logprobs[0], greedy.logprobs[row, :n], atol=1e-4, rtol=0)


def test_matches_transformers_generate(mini, greedy):
    """An independent reference for the multimodal positions: HF's own generate (greedy)."""
    model, processor = mini
    batch = _batch(processor, _examples(processor))
    ref = model.generate(**batch, max_new_tokens=MAX_NEW, do_sample=False,
                         suppress_tokens=suppressed_token_ids(processor.tokenizer))
    model.model.rope_deltas = None  # HF generate leaves them behind (DESIGN §7)
    assert torch.equal(ref[:, batch["input_ids"].shape[1]:], greedy.tokens)


def test_logprobs_are_those_of_a_teacher_forced_forward(mini):
    """Sampled at temperature 1: logprobs = log-softmax of the (pad-suppressed) logits at each token."""
    model, processor = mini
    batch = _batch(processor, _examples(processor))
    out = generate(model, processor, batch, MAX_NEW, temperature=1.0, seed=3)
    again = generate(model, processor, batch, MAX_NEW, temperature=1.0, seed=3)
    assert torch.equal(out.tokens, again.tokens)  # seeded sampling is reproducible
    assert not torch.equal(out.tokens, generate(model, processor, batch, MAX_NEW, temperature=1.0, seed=4).tokens)
    L, T = batch["input_ids"].shape[1], out.tokens.shape[1]
    ids = torch.cat([batch["input_ids"], out.tokens], 1)
    mask = torch.cat([batch["attention_mask"], out.mask], 1)
    from mgsd_mini.generate import prompt_positions

    pos = prompt_positions(model, batch)
    new = pos.amax(dim=(0, 2))[:, None] + 1 + torch.arange(T)  # [B, T]
    pos = torch.cat([pos, new[None].expand(3, -1, -1)], 2)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, pixel_values=batch["pixel_values"],
                       image_grid_thw=batch["image_grid_thw"]).logits[:, L - 1:-1].float()
    logits[..., suppressed_token_ids(processor.tokenizer)] = float("-inf")
    ref = torch.log_softmax(logits, -1).gather(2, out.tokens[..., None]).squeeze(2) * out.mask
    torch.testing.assert_close(out.logprobs, ref, atol=1e-4, rtol=0)


def _bias_logits(model, token_ids, rows=None, amount=100.0):
    """A forward hook on lm_head that makes `token_ids` the argmax (for batch `rows`, default all)."""
    def hook(_module, _inputs, logits):
        logits = logits.clone()
        index = slice(None) if rows is None else rows
        logits[index, :, token_ids] += amount
        return logits
    return model.lm_head.register_forward_hook(hook)


def test_vision_pad_tokens_are_never_generated(mini):
    model, processor = mini
    banned = suppressed_token_ids(processor.tokenizer)
    assert sorted(banned) == sorted([processor.image_token_id, processor.video_token_id])
    handle = _bias_logits(model, banned)
    try:
        for temperature in (0.0, 1.0):
            out = generate(model, processor, _batch(processor, _examples(processor)), 6, temperature=temperature, seed=0)
            assert not torch.isin(out.tokens, torch.tensor(banned)).any()
            assert torch.isfinite(out.logprobs).all()
    finally:
        handle.remove()


def test_rows_stop_at_end_of_turn_and_are_padded_after(mini):
    model, processor = mini
    tok = processor.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    assert eos in stop_token_ids(tok)
    handle = _bias_logits(model, [eos], rows=[0])  # row 0 ends at once, the others run to the budget
    try:
        out = generate(model, processor, _batch(processor, _examples(processor)), MAX_NEW)
    finally:
        handle.remove()
    assert out.tokens.shape == (4, MAX_NEW)
    assert out.tokens[0, 0] == eos and out.mask[0].tolist() == [1] + [0] * (MAX_NEW - 1)
    assert (out.tokens[0, 1:] == tok.pad_token_id).all() and (out.logprobs[0, 1:] == 0).all()
    assert out.texts[0] == ""
    assert (out.mask[1:] == 1).all() and (out.logprobs[1:] < 0).all()


def test_all_rows_stopping_ends_the_loop_early(mini):
    model, processor = mini
    eos = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    handle = _bias_logits(model, [eos])
    try:
        out = generate(model, processor, _batch(processor, _examples(processor)), MAX_NEW)
    finally:
        handle.remove()
    assert out.tokens.shape == (4, 1) and (out.tokens == eos).all() and (out.mask == 1).all()


def test_right_padded_prompts_are_refused(mini):
    model, processor = mini
    batch = collate(_examples(processor), processor.tokenizer.pad_token_id, left_pad=False)
    with pytest.raises(ValueError, match="left-padded"):
        generate(model, processor, batch, 2)
