"""The SFT loop: the loss falls, resume is bit-identical, schedules, divergence stops cleanly."""

import json
import signal

import pytest
import torch

from mgsd_mini import checkpoint, config, lora, parallel
from mgsd_mini import model as M
from mgsd_mini.sft import TrainingDiverged, lr_factor, named_trainables, train_sft


def make_batches(processor, seed=0, size=2):
    """batches_fn(i): a deterministic tiny chat batch per micro-batch index, labels on the answer only."""
    tok = processor.tokenizer
    words = ["U", "D", "L", "R"]

    def batches_fn(i):
        g = torch.Generator().manual_seed(seed * 1000 + i)
        texts, labels = [], []
        for _ in range(size):
            plan = " ".join(words[j] for j in torch.randint(0, 4, (int(torch.randint(2, 5, (1,), generator=g)),), generator=g))
            prompt = f"<|im_start|>user\nRepeat : {plan}<|im_end|>\n<|im_start|>assistant\n"
            texts.append(prompt + plan + "<|im_end|>")
            labels.append(len(tok(prompt)["input_ids"]))
        enc = tok(texts, return_tensors="pt", padding=True, padding_side="right")
        lab = enc["input_ids"].clone()
        for row, n_prompt in enumerate(labels):
            lab[row, :n_prompt] = -100
        lab[enc["attention_mask"] == 0] = -100
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": lab}

    return batches_fn


def lora_setup(dropout=0.1):
    model, processor = M.build_mini(seed=0)
    torch.manual_seed(0)
    lora.add_lora(model, "g", r=4, alpha=8.0, dropout=dropout)
    return model, processor


def cfg_for(**kw):
    base = dict(steps=6, lr=5e-3, batch_size=2, grad_accum=2, ckpt_every=2, log_every=1, schedule="cosine", warmup_frac=0.2)
    return config.resolve("grounding", "mini", {**base, **kw})


def test_loss_decreases_and_metrics_are_logged(tmp_path):
    model, processor = lora_setup(dropout=0.0)
    cfg = cfg_for(steps=12, lr=1e-2, ckpt_every=100)
    out = train_sft(model, make_batches(processor), named_trainables(model), cfg, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13)) and out["step"] == 12
    assert sum(r["loss"] for r in rows[-3:]) < sum(r["loss"] for r in rows[:3])
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "checkpoints")] == ["step-000012"]


@pytest.mark.parametrize("full_model", [False, True])
def test_resume_is_bit_identical(tmp_path, full_model):
    def setup():
        if full_model:
            model, processor = M.build_mini(seed=0)
            model.config.text_config.attention_dropout = 0.0
            return model, processor
        return lora_setup(dropout=0.1)  # dropout: the RNG state must be restored too

    cfg = cfg_for(steps=5, ckpt_every=2)
    ref, processor = setup()
    train_sft(ref, make_batches(processor), named_trainables(ref), cfg, tmp_path / "ref")

    crashed, _ = setup()
    batches = make_batches(processor)

    def crash_in_step_4(i):
        if i == 3 * cfg.grad_accum + 1:  # mid-way through step 4: last checkpoint is step 2
            raise KeyboardInterrupt
        return batches(i)

    with pytest.raises(KeyboardInterrupt):
        train_sft(crashed, crash_in_step_4, named_trainables(crashed), cfg, tmp_path / "run")
    resumed, _ = setup()  # a fresh process: weights come only from the checkpoint
    state = train_sft(resumed, batches, named_trainables(resumed), cfg, tmp_path / "run", resume=True)
    assert state["step"] == 5
    ref_params, res_params = named_trainables(ref), named_trainables(resumed)
    assert all(torch.equal(ref_params[n], res_params[n]) for n in ref_params)
    ref_log = [json.loads(l) for l in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    run_log = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in ref_log] == [r["loss"] for r in run_log]


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant", "wsd"])
def test_schedules_warm_up_then_decay(schedule):
    cfg = config.resolve("base", "mini", {"steps": 100, "warmup_frac": 0.1, "schedule": schedule, "decay_frac": 0.25})
    f = [lr_factor(s, cfg) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(0 <= x <= 1 for x in f)
    assert all(a >= b for a, b in zip(f[9:], f[10:]))  # never rises after warm-up
    if schedule == "constant":
        assert f[-1] == 1.0
    else:
        assert f[-1] < 0.1
    if schedule == "wsd":
        assert f[74] == 1.0 and f[76] < 1.0


def test_non_finite_loss_stops_with_step_and_keeps_checkpoint(tmp_path):
    model, processor = lora_setup(dropout=0.0)
    batches = make_batches(processor)
    cfg = cfg_for(steps=6, ckpt_every=2)

    def poisoned(i):
        if i >= 3 * cfg.grad_accum:  # step 4 on: corrupt the adapter -> NaN loss
            for layer in lora.lora_layers(model).values():
                layer.lora_B["g"].weight.data.fill_(float("nan"))
        return batches(i)

    with pytest.raises(TrainingDiverged, match="step 4: loss is nan.*step-000002"):
        train_sft(model, poisoned, named_trainables(model), cfg, tmp_path)
    state = checkpoint.load_latest(tmp_path / "checkpoints")
    assert state["step"] == 2 and all(torch.isfinite(t).all() for t in state["trainables"].values())


def test_a_ctrl_c_during_the_ranks_gradient_sum_stops_the_run_at_the_next_step(tmp_path, monkeypatch):
    """Two ranks, faked in one process: the Ctrl-C comes while rank 0 waits in the sum of step 3,
    after it sent its flag. Every rank agreed to go on at step 3, so the request must count at
    step 4 — not be overwritten by step 3's agreement, which let a run go on to its end."""
    model, processor = lora_setup(dropout=0.0)
    sums = []

    def sum_during_which_ctrl_c_comes(params, *scalars):
        sums.append(scalars)
        if len(sums) == 3:
            signal.raise_signal(signal.SIGINT)  # the handler of checkpoint.interruptible() takes it
        return list(scalars)  # (the other rank adds nothing)

    monkeypatch.setattr(parallel, "rank_world", lambda: (0, 2))
    monkeypatch.setattr(parallel, "all_sum", lambda tensor: tensor)
    monkeypatch.setattr(parallel, "sum_gradients", sum_during_which_ctrl_c_comes)
    with pytest.raises(KeyboardInterrupt, match="checkpoint saved at step 4"):
        train_sft(model, make_batches(processor), named_trainables(model), cfg_for(steps=8, ckpt_every=100), tmp_path)
    assert [s[1] for s in sums] == [0.0, 0.0, 0.0, 1.0]  # step 4 sent the request; every rank stops there
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "checkpoints")] == ["step-000004"]
