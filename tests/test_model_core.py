"""The mini Qwen3-VL: build, processor, forward/backward, save -> from_pretrained reload, bad input."""

import copy
import json
import shutil

import pytest
import torch
from PIL import Image

from mgsd_mini import model as M
from mgsd_mini import prompts
from mgsd_mini.model import ModelLoadError
from mgsd_mini.processor import CANVAS_GREY, CanvasImageProcessor


@pytest.fixture(scope="module")
def mini():
    return M.build_mini(seed=0)


def image_batch(processor, sides=(3, 4), task="frozenlake"):
    """One student prompt per side with a solid-colour image of the mini render size."""
    images = [Image.new("RGB", (16 * s, 16 * s), (40 * s, 200 - 30 * s, 90)) for s in sides]
    texts = [processor.apply_chat_template(prompts.student_prompt(task), tokenize=False, add_generation_prompt=True) for _ in sides]
    return processor(text=texts, images=images, return_tensors="pt", padding=True)


def test_build_is_deterministic_small_and_leaves_global_rng_alone(mini):
    model, _ = mini
    state = torch.random.get_rng_state()
    again, _ = M.build_mini(seed=0)
    other, _ = M.build_mini(seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    sd, sd_again, sd_other = model.state_dict(), again.state_dict(), other.state_dict()
    assert all(torch.equal(sd[k], sd_again[k]) for k in sd)
    assert not torch.equal(sd["model.language_model.layers.0.self_attn.q_proj.weight"], sd_other["model.language_model.layers.0.self_attn.q_proj.weight"])
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 <= n <= 3_000_000, n
    text = model.config.text_config
    assert sum(text.rope_parameters["mrope_section"]) == text.head_dim // 2
    assert model.config.vision_config.out_hidden_size == text.hidden_size


@pytest.mark.parametrize("layers,mlp", [(2, 64), (8, 256)])
def test_stage0_chooses_the_decoder_shape_and_it_survives_save_and_load(layers, mlp, tmp_path):
    model, processor = M.build_mini(seed=0, layers=layers, mlp=mlp)
    text = model.config.text_config
    assert (text.num_hidden_layers, text.intermediate_size, len(model.model.language_model.layers)) == (layers, mlp, layers)
    assert model.model.language_model.layers[0].mlp.up_proj.weight.shape == (mlp, text.hidden_size)
    again, _ = M.load(str(M.save(model, processor, tmp_path / "m")), device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


@pytest.mark.parametrize("sides", [(3,), (4, 5), (5, 2, 3)])
def test_processor_gives_the_canvas_tokens_and_one_per_cell_without_it(mini, sides):
    model, processor = mini
    cells = processor.image_processor.canvas_px // 16
    batch = image_batch(processor, sides)
    n_image = (batch["input_ids"] == processor.image_token_id).sum(1)
    assert cells == 5 and n_image.tolist() == [cells * cells] * len(sides)  # every grid on one canvas
    assert batch["image_grid_thw"].tolist() == [[1, 2 * cells, 2 * cells]] * len(sides)
    assert torch.equal(batch["mm_token_type_ids"].bool(), batch["input_ids"] == processor.image_token_id)
    for s in sides:
        assert M.image_size(processor, "frozenlake", s) == 16 * s == M.image_size(model, "maze", s)
    fit = copy.deepcopy(processor)  # the same processor with the canvas off
    fit.image_processor.canvas_px = 0
    batch = image_batch(fit, sides)
    assert (batch["input_ids"] == fit.image_token_id).sum(1).tolist() == [s * s for s in sides]
    assert batch["image_grid_thw"].tolist() == [[1, 2 * s, 2 * s] for s in sides]


@pytest.mark.parametrize("side", [2, 3, 5])
def test_canvas_pastes_the_image_top_left_on_grey_and_refuses_a_larger_one(mini, side):
    """The canvas image's pixels are the image's own at the top left and the grey elsewhere: the same
    patches as the processor without canvas fed the hand-pasted canvas."""
    _, processor = mini
    ip = processor.image_processor
    rng = torch.Generator().manual_seed(side)
    pixels = torch.randint(0, 256, (16 * side, 16 * side, 3), generator=rng, dtype=torch.uint8)
    image = Image.fromarray(pixels.numpy())
    by_hand = Image.new("RGB", (ip.canvas_px, ip.canvas_px), CANVAS_GREY)
    by_hand.paste(image, (0, 0))
    plain = CanvasImageProcessor(**{**ip.to_dict(), "canvas_px": 0})
    got, want = ip(images=[image], return_tensors="pt"), plain(images=[by_hand], return_tensors="pt")
    assert torch.equal(got["pixel_values"], want["pixel_values"]) and torch.equal(got["image_grid_thw"], want["image_grid_thw"])
    with pytest.raises(ValueError, match="does not fit"):
        ip(images=[Image.new("RGB", (ip.canvas_px + 16, 16))], return_tensors="pt")


def test_canvas_survives_save_and_a_processor_saved_without_it_loads_without_it(tmp_path):
    ip = CanvasImageProcessor(canvas_px=48, patch_size=8, merge_size=2)
    ip.save_pretrained(tmp_path / "canvas")
    assert CanvasImageProcessor.from_pretrained(tmp_path / "canvas").canvas_px == 48
    config = json.loads((tmp_path / "canvas" / "preprocessor_config.json").read_text())
    del config["canvas_px"]  # as saved before the canvas (the Qwen checkpoints, earlier mini models)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "preprocessor_config.json").write_text(json.dumps(config))
    assert CanvasImageProcessor.from_pretrained(tmp_path / "old").canvas_px == 0


def test_tokenizer_round_trips_any_text_and_has_qwen_specials(mini):
    _, processor = mini
    tok = processor.tokenizer
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id is not None
    assert processor.image_token_id != processor.video_token_id
    for text in ["S . . H\nstart ( 0 , 0 ) goal ( 2 , 3 )", "<answer>R R D</answer>", "ünïcødé 日本 🙂 {}[]~", "  two  spaces\t"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    assert len(tok) <= 1024


def test_forward_backward(mini):
    model, processor = mini
    batch = image_batch(processor, (3, 4))
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    model.train()
    try:
        out = model(**batch, labels=labels)
        out.loss.backward()
    finally:
        model.eval()
    assert torch.isfinite(out.loss) and out.logits.shape[:2] == batch["input_ids"].shape
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert any(n.startswith("model.visual.") for n in grads) and any("language_model" in n for n in grads)
    assert all(torch.isfinite(g).all() for g in grads.values())
    model.zero_grad(set_to_none=True)


def test_save_and_reload_through_from_pretrained(mini, tmp_path):
    model, processor = mini
    out = M.save(model, processor, tmp_path / "mini")
    M.save(model, processor, out)  # overwriting an existing model directory is atomic too
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left behind
    loaded, loaded_proc = M.load(str(out))
    assert isinstance(loaded, type(model)) and type(loaded_proc) is type(processor)
    batch = image_batch(processor, (3, 5))
    again = image_batch(loaded_proc, (3, 5))
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**again).logits)


def test_generate_runs_and_leaves_no_stale_rope_state(mini):
    model, processor = mini
    batch = image_batch(processor, (3, 4))
    with torch.no_grad():
        before = model(**batch).logits
        cached = model.generate(**batch, max_new_tokens=6, do_sample=False, use_cache=True)
        uncached = model.generate(**batch, max_new_tokens=6, do_sample=False, use_cache=False)
        after = model(**batch).logits
    assert torch.equal(cached, uncached)
    assert torch.equal(before, after)


def test_load_mini_without_shipped_base_builds_seed_zero(mini, monkeypatch, tmp_path):
    monkeypatch.setattr(M, "MINI_BASE", tmp_path / "absent")
    loaded, _ = M.load("mini")
    ref = mini[0].state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())


def test_bad_model_names_and_dirs_raise_one_clear_error(mini, tmp_path):
    model, processor = mini
    with pytest.raises(ModelLoadError, match="unknown model 'qwen9'"):
        M.load("qwen9")
    with pytest.raises(ModelLoadError, match="unknown model"):
        M.load(str(tmp_path / "missing" / "dir"))
    with pytest.raises(ModelLoadError, match="cannot load model nobody/no-such-model"):
        M.load("nobody/no-such-model")  # offline in tests: the hub lookup fails fast
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        M.load(str(tmp_path / "empty"))
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="'bert' model"):
        M.load(str(tmp_path / "bert"))
    good = M.save(model, processor, tmp_path / "good")
    broken = tmp_path / "broken"
    shutil.copytree(good, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="corrupt or truncated"):
        M.load(str(broken))
    with pytest.raises(ModelLoadError, match="not a model directory|is a file"):
        M.load(str(good / "config.json"))
