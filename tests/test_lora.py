"""LoRA: zero-init is a no-op, merge and merged() == unmerged, disabling gives the exact base, peft reads our files."""

import json

import pytest
import torch

from mgsd_mini import lora
from mgsd_mini import model as M
from mgsd_mini.lora import AdapterError
from tests.test_model_core import image_batch


def text_batch(processor, n=2):
    texts = [f"<|im_start|>user\nSolve this maze puzzle {i} .<|im_end|>\n" * (i + 1) for i in range(n)]
    return processor(text=texts, return_tensors="pt", padding=True)


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def randomise(model, name, seed, std=0.05):
    """Give adapter `name` a non-zero B so it actually changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    for layer in lora.lora_layers(model).values():
        if name in layer.lora_B:
            w = layer.lora_B[name].weight
            w.data.copy_(torch.randn(w.shape, generator=g) * std)


@pytest.fixture()
def fresh():
    return M.build_mini(seed=0)


@pytest.mark.parametrize("r,alpha", [(1, 1.0), (4, 8.0), (8, 16.0)])
def test_zero_init_adapter_leaves_logits_unchanged_and_only_it_trains(fresh, r, alpha):
    model, processor = fresh
    batch = image_batch(processor, (3, 4))
    base = logits(model, batch)
    lora.add_lora(model, "g", r=r, alpha=alpha)
    assert torch.equal(logits(model, batch), base)
    layers = lora.lora_layers(model)
    assert len(layers) == 6 * 7 and all("language_model" in n for n in layers)
    trainable = lora.trainable_parameters(model)
    assert len(trainable) == 2 * len(layers)
    assert {id(p) for p in trainable} == {id(l.lora_A["g"].weight) for l in layers.values()} | {id(l.lora_B["g"].weight) for l in layers.values()}


@pytest.mark.parametrize("fold", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n_adapters,shape,seed", [(1, (3, 5), 0), (2, (7,), 1), (2, (2, 3, 4), 2)])
def test_formula_and_gradients_match_the_dense_update(dtype, n_adapters, shape, seed, fold, monkeypatch):
    """y = x W^T + b + sum_n s_n x A_n^T B_n^T, and its gradients, against the dense weight it stands
    for — with the adapters on their own path and folded into W (fp32 only)."""
    monkeypatch.setattr(lora.LoRALinear, "_fold_pays", lambda self, rows, paths: fold)
    torch.manual_seed(seed)
    base = torch.nn.Linear(24, 40).to(dtype)
    layer = lora.LoRALinear(base)
    for n in range(n_adapters):
        layer.add(f"a{n}", r=2 + 2 * n, alpha=4.0 + n, dropout=0.0)
        torch.nn.init.normal_(layer.lora_B[f"a{n}"].weight, std=0.1)
    x = torch.randn(*shape, 24, dtype=dtype, requires_grad=True)
    y = layer(x)
    assert y.shape == (*shape, 40) and y.dtype == dtype
    x_ref = x.detach().float().requires_grad_()
    w = base.weight.float() + sum(layer.delta_weight(f"a{n}") for n in range(n_adapters))
    y_ref = x_ref @ w.T + base.bias.float()
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(y.float(), y_ref, **tol)
    g = torch.randn(y.shape)
    adapter_weights = [m.weight for n in range(n_adapters) for m in (layer.lora_A[f"a{n}"], layer.lora_B[f"a{n}"])]
    grads = torch.autograd.grad((y.float() * g).sum(), [x, *adapter_weights])
    grads_ref = torch.autograd.grad((y_ref * g).sum(), [x_ref, *adapter_weights])
    for got, want in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got.float(), want, **tol)


def test_adapters_fold_into_w_when_that_costs_fewer_multiply_adds():
    def layer(width, out, r, dropout=0.0):
        lin = lora.LoRALinear(torch.nn.Linear(width, out))
        lin.add("g", r=r, alpha=2.0 * r, dropout=dropout)
        return lin

    mini, paper = layer(128, 128, 64), layer(2560, 2560, 8)
    assert mini._fold_pays(2400, ["g"])  # training at a rank near the width (the mini grounding)
    assert not paper._fold_pays(2400, ["g"])  # the paper's r 8 on a 4B model's width
    assert not mini._fold_pays(1, ["g"])  # one decoded token: building W + BA costs more than it saves
    with torch.no_grad():
        assert mini._fold_pays(2400, ["g"]) and not mini._fold_pays(32, ["g"])
    mini.lora_A["g"].weight.requires_grad_(False)
    mini.lora_B["g"].weight.requires_grad_(False)
    assert mini._fold_pays(1000, ["g"]) and not mini._fold_pays(8, ["g"])  # frozen: forward only
    dropped = layer(128, 128, 64, dropout=0.1)
    assert not dropped._fold_pays(2400, ["g"])  # dropout acts on x, which the fold cannot see
    dropped.eval()
    assert dropped._fold_pays(2400, ["g"])


@pytest.mark.parametrize("seed", [0, 1])
def test_stacked_adapters_disable_exactly_and_merge_equal(fresh, seed):
    model, processor = fresh
    batch = image_batch(processor, (3, 5))
    base = logits(model, batch)
    lora.add_lora(model, "grounding", r=4, alpha=8.0)
    lora.add_lora(model, "distill", r=2, alpha=4.0, dropout=0.1)
    randomise(model, "grounding", seed)
    randomise(model, "distill", seed + 10)
    both = logits(model, batch)
    assert not torch.allclose(both, base, atol=1e-3)
    with lora.adapters_disabled(model):
        assert torch.equal(logits(model, batch), base)  # the stage-2 teacher is exactly the base
    assert torch.equal(logits(model, batch), both)
    lora.set_active(model, ["grounding"])
    only_grounding = logits(model, batch)
    lora.set_active(model, ["grounding", "distill"])
    lora.merge(model)
    assert not lora.lora_layers(model)  # fully merged: plain nn.Linear again
    torch.testing.assert_close(logits(model, batch), both, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(only_grounding, both, atol=1e-3)


def test_gradients_reach_only_the_trainable_adapter(fresh, tmp_path):
    model, processor = fresh
    lora.add_lora(model, "grounding", r=4, alpha=8.0)
    randomise(model, "grounding", 3)
    lora.save_adapter(model, "grounding", tmp_path / "grounding")
    student, _ = M.build_mini(seed=0)
    lora.load_adapter(student, tmp_path / "grounding", trainable=False)
    lora.add_lora(student, "distill", r=4, alpha=8.0)
    batch = text_batch(processor)
    student(**batch, labels=batch["input_ids"]).loss.backward()
    for name, p in student.named_parameters():
        assert (p.grad is not None) == (".distill." in name), name


@pytest.mark.parametrize("seed", [0, 1])
def test_merged_block_matches_adapter_paths_and_leaves_the_base_bit_identical(fresh, seed):
    model, processor = fresh
    batch = image_batch(processor, (3, 4))
    base = logits(model, batch)
    lora.add_lora(model, "grounding", r=4, alpha=8.0, targets=lora.LM_TARGETS + lora.VISION_TARGETS, scope=None)
    lora.add_lora(model, "distill", r=2, alpha=4.0)
    randomise(model, "grounding", seed)
    randomise(model, "distill", seed + 10)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    both = logits(model, batch)
    with lora.merged(model):
        assert all(l.merged is not None for l in lora.lora_layers(model).values())
        torch.testing.assert_close(logits(model, batch), both, rtol=1e-4, atol=1e-4)
        with lora.adapters_disabled(model):
            assert torch.equal(logits(model, batch), base)  # the teacher is still exactly the base
    assert all(l.merged is None for l in lora.lora_layers(model).values())
    assert torch.equal(logits(model, batch), both)
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())


def test_merged_frozen_only_keeps_the_trainable_path_and_its_gradients(fresh):
    model, processor = fresh
    lora.add_lora(model, "grounding", r=4, alpha=8.0)
    randomise(model, "grounding", 3)
    lora._set_trainable(model, "grounding", False)
    lora.add_lora(model, "distill", r=4, alpha=8.0)
    randomise(model, "distill", 4)
    batch = text_batch(processor)

    def loss_and_grads():
        model.zero_grad()
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = loss_and_grads()
    layers = lora.lora_layers(model).values()
    with lora.merged(model, frozen_only=True):
        assert all(l.merged is not None and l.unfolded == ["distill"] for l in layers)
        outer = [l.merged for l in layers]
        with lora.merged(model):  # an inner block folds both; leaving it restores the outer fold
            assert all(l.unfolded == [] for l in layers)
            torch.testing.assert_close(model(**batch, labels=batch["input_ids"]).loss, loss, rtol=1e-5, atol=1e-5)
        assert all(l.merged is w and l.unfolded == ["distill"] for l, w in zip(layers, outer, strict=True))
        merged_loss, merged_grads = loss_and_grads()
    assert all(l.merged is None and l.unfolded == [] for l in layers)
    torch.testing.assert_close(merged_loss, loss, rtol=1e-5, atol=1e-5)
    assert merged_grads.keys() == grads.keys() and all(".distill." in n for n in grads)
    for n in grads:
        torch.testing.assert_close(merged_grads[n], grads[n], rtol=1e-4, atol=1e-5)


def test_merged_leaves_bf16_layers_on_their_adapter_path(fresh):
    model, _ = fresh
    lora.add_lora(model, "g", r=4, alpha=8.0)
    randomise(model, "g", 5)
    layers = list(lora.lora_layers(model).values())
    layers[0].base.to(torch.bfloat16)
    with lora.merged(model):
        assert layers[0].merged is None and all(l.merged is not None for l in layers[1:])


@pytest.mark.parametrize("vision", [False, True])
def test_save_load_roundtrip_and_peft_agree(fresh, tmp_path, vision):
    peft = pytest.importorskip("peft")
    model, processor = fresh
    batch = image_batch(processor, (4,))
    if vision:  # the mini grounding adapter also covers the vision blocks and mergers
        lora.add_lora(model, "g", r=4, alpha=16.0, targets=lora.LM_TARGETS + lora.VISION_TARGETS, scope=None)
        assert any(".visual." in name for name in lora.lora_layers(model))
    else:
        lora.add_lora(model, "g", r=4, alpha=16.0)
        assert not any(".visual." in name for name in lora.lora_layers(model))
    randomise(model, "g", 5)
    ours = logits(model, batch)
    out = lora.save_adapter(model, "g", tmp_path / "g")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 16.0

    reloaded, _ = M.build_mini(seed=0)
    assert lora.load_adapter(reloaded, out) == "g"
    assert torch.equal(logits(reloaded, batch), ours)

    peft_model = peft.PeftModel.from_pretrained(M.build_mini(seed=0)[0], str(out))
    torch.testing.assert_close(logits(peft_model, batch), ours, rtol=1e-5, atol=1e-5)

    # ...and the other way round: an adapter peft saved loads into ours.
    peft_model.save_pretrained(tmp_path / "from_peft")
    ours_again, _ = M.build_mini(seed=0)
    lora.load_adapter(ours_again, tmp_path / "from_peft", name="p")
    torch.testing.assert_close(logits(ours_again, batch), ours, rtol=1e-5, atol=1e-5)


def test_load_adapters_stacks_runs_saved_under_the_same_folder_name(fresh, tmp_path):
    """Every stage saves to `<run>/adapter`: two such folders stack under distinct names, in order,
    and give the logits of the two adapters trained together."""
    model, processor = fresh
    batch = text_batch(processor)
    for i, name in enumerate(("g", "d")):
        lora.add_lora(model, name, r=4, alpha=8.0)
        randomise(model, name, 10 + i)
        lora.save_adapter(model, name, tmp_path / name / "adapter")
    stacked = logits(model, batch)
    reloaded, _ = M.build_mini(seed=0)
    assert lora.load_adapters(reloaded, [tmp_path / "g" / "adapter", tmp_path / "d" / "adapter"]) == ["adapter", "adapter_"]
    torch.testing.assert_close(logits(reloaded, batch), stacked, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(stacked, logits(M.build_mini(seed=0)[0], batch))


def test_bad_adapters_raise_adapter_error(fresh, tmp_path):
    model, _ = fresh
    lora.add_lora(model, "g", r=4, alpha=8.0)
    with pytest.raises(AdapterError, match="already has an adapter named 'g'"):
        lora.add_lora(model, "g", r=4, alpha=8.0)
    with pytest.raises(AdapterError, match="unknown adapter"):
        lora.set_active(model, ["nope"])
    with pytest.raises(AdapterError, match="no linear layer"):
        lora.add_lora(model, "h", r=4, alpha=8.0, targets=("no_such_proj",))
    out = lora.save_adapter(model, "g", tmp_path / "g")
    with pytest.raises(AdapterError, match="not an adapter directory"):
        lora.load_adapter(M.build_mini(0)[0], tmp_path / "missing")
    with pytest.raises(AdapterError, match="different base model"):
        lora.load_adapter(M.build_mini(seed=1)[0], out)  # same architecture, other weights
    weights = out / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(AdapterError, match="corrupt or truncated"):
        lora.load_adapter(M.build_mini(0)[0], out)
