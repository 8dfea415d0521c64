"""Stage 2 (mgsd_mini/distill.py): alignment, both losses against references, masking, frozen weights,
exact resume, a smoke run, and the error paths.

The mini model is freshly built with its weights re-drawn at std 0.15 (a stock init repeats one token
whatever the context, which would hide alignment bugs), plus a "grounding" and a "distill" adapter
whose B matrices are random, so the student differs from the teacher and every LoRA weight gets a
gradient.
"""

import copy
import json
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import puzzles
from kernels.reference import per_token_kl_ref
from mgsd_mini import checkpoint, config, distill, lora
from mgsd_mini import model as M
from mgsd_mini.data import collate
from mgsd_mini.generate import generate, prompt_positions, suppressed_token_ids
from mgsd_mini.sft import TrainingDiverged, make_optimizer, named_trainables

MAX_NEW = 10


def spread_weights(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.15, generator=g)


def randomize_lora(model, name, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if f"lora_B.{name}." in n:
                p.normal_(0.0, 0.05, generator=g)


def student_model(seed=0):
    """Base (frozen) + grounding (frozen, random) + distill (trainable, random B) — the stage-2 student."""
    model, processor = M.build_mini(seed=0)
    spread_weights(model)
    torch.manual_seed(seed)  # lora_A's Kaiming init draws from the global RNG
    lora.add_lora(model, "grounding", r=4, alpha=8.0)
    randomize_lora(model, "grounding", 2)
    lora.add_lora(model, "distill", r=4, alpha=8.0)
    randomize_lora(model, "distill", 3 + seed)
    for n, p in model.named_parameters():
        p.requires_grad_(".distill." in n)
    return model, processor


@pytest.fixture(scope="module")
def mini():
    return student_model()


def cfg_for(**kw):
    base = dict(max_new_tokens=MAX_NEW, logit_chunk=1000, tasks=("frozenlake", "maze"), levels=(3, 4))
    return config.resolve("distill", "mini", {**base, **kw})


def records(n=3, seed=0):
    """Puzzles of different tasks and sizes, so prompts (and images, off the canvas) have different lengths."""
    picks = [("frozenlake", 3), ("maze", 4), ("frozenlake", 5), ("maze", 3)]
    return [puzzles.make_split(task, level, "train", 1, seed)[0] for task, level in picks[:n]]


def rollout(model, processor, examples, temperature=0.0, seed=0):
    batch = collate(examples, processor.tokenizer.pad_token_id, left_pad=True)
    return generate(model, processor, batch, MAX_NEW, temperature=temperature, seed=seed)


def full_logits(model, processor, examples, responses):
    """Reference scoring: one plain forward over [prompt ; response], logits at every response position."""
    pad_id = processor.tokenizer.pad_token_id
    batch = distill.join(examples, responses, pad_id)
    out = model(**batch, position_ids=prompt_positions(model, batch), use_cache=False).logits
    logits = torch.cat([out[i, len(ex["input_ids"]) - 1:len(ex["input_ids"]) - 1 + len(y)]
                        for i, (ex, y) in enumerate(zip(examples, responses))])
    banned = suppressed_token_ids(processor.tokenizer)
    logits[:, banned] = float("-inf")  # the reference bans with a true -inf
    return logits


def distill_grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# ----------------------------------------------------------------------------- alignment


@pytest.mark.parametrize("who", ["teacher", "student"])
def test_scoring_a_greedy_rollout_reproduces_the_logprobs_generate_reported(mini, who):
    model, processor = mini
    if who == "student":  # on the mini canvas all images have one size; off it, prompts differ in length too
        processor = copy.deepcopy(processor)
        processor.image_processor.canvas_px = 0
    students, teachers = distill.encode_prompts(processor, records(3), reference_plan=True)
    examples = teachers if who == "teacher" else students
    pad_id = processor.tokenizer.pad_token_id
    banned = suppressed_token_ids(processor.tokenizer)
    with torch.no_grad(), (lora.adapters_disabled(model) if who == "teacher" else torch.enable_grad()):
        out = rollout(model, processor, examples)
        responses = distill.responses_of(out.tokens, out.mask)
        assert len({len(e["input_ids"]) for e in examples}) == 3 and all(len(y) > 3 for y in responses)
        model.model.rope_deltas = torch.full((7, 1), 99)  # stale deltas must not be read
        hidden = distill.response_hidden(model, examples, responses, pad_id)
        logp = torch.log_softmax(distill.chunk_logits(hidden, model.lm_head, banned), -1)
    scored = logp.gather(1, torch.cat(responses)[:, None]).squeeze(1)
    torch.testing.assert_close(scored, out.logprobs[out.mask.bool()], atol=1e-4, rtol=0)


def test_teacher_and_student_score_the_same_tokens_with_different_contexts(mini):
    model, processor = mini
    students, teachers = distill.encode_prompts(processor, records(2), reference_plan=True)
    out = rollout(model, processor, students, temperature=1.0, seed=5)
    responses = distill.responses_of(out.tokens, out.mask)
    with torch.no_grad():
        s = distill.response_hidden(model, students, responses, processor.tokenizer.pad_token_id)
        with lora.adapters_disabled(model):
            t = distill.response_hidden(model, teachers, responses, processor.tokenizer.pad_token_id)
    assert s.shape == t.shape == (sum(len(y) for y in responses), model.config.text_config.hidden_size)
    assert not torch.allclose(s, t)  # different prompts (and adapters): the divergence is not trivially 0


def test_reference_plan_switch_changes_only_the_teacher_prompt(mini):
    _, processor = mini
    recs = records(2)
    s1, t1 = distill.encode_prompts(processor, recs, reference_plan=True)
    s0, t0 = distill.encode_prompts(processor, recs, reference_plan=False)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(s1, s0))
    assert all(len(a["input_ids"]) > len(b["input_ids"]) for a, b in zip(t1, t0))
    assert all("pixel_values" in s and "pixel_values" not in t for s, t in zip(s1, t1))


# ----------------------------------------------------------------------------- losses


@pytest.mark.parametrize("divergence,chunk", [("reverse", 1000), ("reverse", 3), ("forward", 4), ("jsd", 5)])
def test_full_loss_is_the_mean_per_token_divergence_and_its_gradient_matches_autograd(divergence, chunk):
    model, processor = student_model()
    cfg = cfg_for(loss="full", divergence=divergence, jsd_beta=0.3, logit_chunk=chunk)
    students, teachers = distill.encode_prompts(processor, records(3), reference_plan=True)
    out = rollout(model, processor, students, temperature=1.0, seed=1)
    responses = distill.responses_of(out.tokens, out.mask)
    n = sum(len(y) for y in responses)
    pad_id, banned = processor.tokenizer.pad_token_id, suppressed_token_ids(processor.tokenizer)

    loss, kl = distill.score(model, pad_id, banned, students, teachers, responses, cfg, n)
    got = distill_grads(model)
    model.zero_grad(set_to_none=True)

    with torch.no_grad(), lora.adapters_disabled(model):
        t_logits = full_logits(model, processor, teachers, responses)
    ref = per_token_kl_ref(full_logits(model, processor, students, responses), t_logits, divergence, 0.3).mean()
    ref.backward()
    want = distill_grads(model)
    assert math.isclose(loss, ref.item(), rel_tol=1e-5) and math.isclose(kl / n, ref.item(), rel_tol=1e-5)
    assert loss > 0 and set(got) == set(want) and len(got) == 2 * 7 * 6  # A and B of 7 layers x 6 blocks
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("divergence", ["reverse", "forward", "jsd"])
def test_full_loss_gradient_matches_finite_differences_in_float64(divergence):
    g = torch.Generator().manual_seed(0)
    n, hidden, vocab = 5, 6, 11
    head = torch.nn.Linear(hidden, vocab, bias=False).double()
    with torch.no_grad():
        head.weight.copy_(torch.randn(vocab, hidden, generator=g, dtype=torch.float64))
    head.weight.requires_grad_(False)  # frozen, as the model's (tied) lm_head is
    student_h = torch.randn(n, hidden, generator=g, dtype=torch.float64, requires_grad=True)
    teacher_h = torch.randn(n, hidden, generator=g, dtype=torch.float64)
    targets = torch.randint(0, vocab, (n,), generator=g)
    cfg = cfg_for(loss="full", divergence=divergence, logit_chunk=2)
    banned = [3]

    loss, _ = distill.response_loss(student_h, teacher_h, targets, head, banned, cfg, denom=7)
    with torch.no_grad():
        s_ref = F.linear(student_h, head.weight).index_fill(1, torch.tensor(banned), float("-inf"))
        t_ref = F.linear(teacher_h, head.weight).index_fill(1, torch.tensor(banned), float("-inf"))
    assert math.isclose(loss, per_token_kl_ref(s_ref, t_ref, divergence).sum().item() / 7, rel_tol=1e-12)

    eps, numeric = 1e-6, torch.zeros_like(student_h)
    for idx in range(student_h.numel()):
        x = student_h.detach().clone().view(-1)
        x[idx] += eps
        up, _ = distill.response_loss(x.view(n, hidden), teacher_h, targets, head, banned, cfg, 7, backward=False)
        x[idx] -= 2 * eps
        down, _ = distill.response_loss(x.view(n, hidden), teacher_h, targets, head, banned, cfg, 7, backward=False)
        numeric.view(-1)[idx] = (up - down) / (2 * eps)
    torch.testing.assert_close(student_h.grad, numeric, atol=1e-8, rtol=1e-6)


def test_sampled_gradient_is_the_advantage_weighted_score_function_computed_by_hand():
    model, processor = student_model()
    cfg = cfg_for(loss="sampled", logit_chunk=4)
    students, teachers = distill.encode_prompts(processor, records(2), reference_plan=True)
    out = rollout(model, processor, students, temperature=1.0, seed=2)
    responses = distill.responses_of(out.tokens, out.mask)
    tokens = torch.cat(responses)
    n = len(tokens)
    pad_id, banned = processor.tokenizer.pad_token_id, suppressed_token_ids(processor.tokenizer)

    loss, kl = distill.score(model, pad_id, banned, students, teachers, responses, cfg, n)
    got = distill_grads(model)
    model.zero_grad(set_to_none=True)

    # By hand: s_t = log π_θ(y_t), q_t = log π_T(y_t); ∇L = −Σ_t (q_t − s_t) ∇s_t / N, one ∇s_t at a time.
    # The student on the weights score() uses: the frozen adapter folded in (test_lora checks that fold).
    params = dict(named_trainables(model))
    with lora.merged(model, frozen_only=True):
        s = torch.log_softmax(full_logits(model, processor, students, responses), -1).gather(1, tokens[:, None]).squeeze(1)
    with torch.no_grad(), lora.adapters_disabled(model):
        q = torch.log_softmax(full_logits(model, processor, teachers, responses), -1).gather(1, tokens[:, None]).squeeze(1)
    want = {name: torch.zeros_like(p) for name, p in params.items()}
    for t in range(n):
        grads = torch.autograd.grad(s[t], list(params.values()), retain_graph=True)
        for name, grad in zip(params, grads):
            want[name] -= (q[t] - s[t]).detach() * grad / n
    assert math.isclose(kl / n, (s - q).mean().item(), rel_tol=1e-5)
    assert math.isclose(loss, (-(q - s) * s).sum().item() / n, rel_tol=1e-5)
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=1e-4)


def test_gold_loss_is_the_gold_responses_nll_from_the_image_and_never_asks_the_teacher(monkeypatch):
    model, processor = student_model()
    cfg = cfg_for(loss="gold", logit_chunk=5)
    recs = records(3)
    students, teachers = distill.encode_prompts(processor, recs, reference_plan=True)
    gold = distill.gold_responses(processor.tokenizer, recs)
    text = processor.tokenizer.decode(gold[1])
    assert text.endswith("</answer><|im_end|>") and puzzles.check(recs[1]["task"], recs[1]["state"], text).success
    tokens, n = torch.cat(gold), sum(len(y) for y in gold)
    pad_id, banned = processor.tokenizer.pad_token_id, suppressed_token_ids(processor.tokenizer)
    monkeypatch.setattr(lora, "adapters_disabled", lambda m: pytest.fail("the gold loss needs no teacher"))
    loss, _ = distill.score(model, pad_id, banned, students, teachers, gold, cfg, n)
    got = distill_grads(model)
    model.zero_grad(set_to_none=True)
    nll = -torch.log_softmax(full_logits(model, processor, students, gold), -1).gather(1, tokens[:, None]).mean()
    nll.backward()
    assert math.isclose(loss, nll.item(), rel_tol=1e-5)
    for name, grad in distill_grads(model).items():
        torch.testing.assert_close(got[name], grad, atol=1e-6, rtol=1e-4)


def test_masked_tokens_contribute_nothing_and_micro_batches_sum(mini):
    model, processor = mini
    cfg = cfg_for(loss="full")
    students, teachers = distill.encode_prompts(processor, records(4), reference_plan=True)
    out = rollout(model, processor, students, temperature=1.0, seed=3)
    pad_id, banned = processor.tokenizer.pad_token_id, suppressed_token_ids(processor.tokenizer)

    # Whatever sits after end-of-turn (padding or garbage) is not part of the response.
    garbage = torch.where(out.mask.bool(), out.tokens, torch.randint_like(out.tokens, 5, 50))
    responses = distill.responses_of(garbage, out.mask)
    assert all(torch.equal(a, b) for a, b in zip(responses, distill.responses_of(out.tokens, out.mask)))
    assert sum(len(y) for y in responses) == int(out.mask.sum())

    n = sum(len(y) for y in responses)
    whole, _ = distill.score(model, pad_id, banned, students, teachers, responses, cfg, n)
    g_whole = distill_grads(model)
    model.zero_grad(set_to_none=True)
    a, _ = distill.score(model, pad_id, banned, students[:2], teachers[:2], responses[:2], cfg, n)
    b, _ = distill.score(model, pad_id, banned, students[2:], teachers[2:], responses[2:], cfg, n)
    g_parts = distill_grads(model)
    model.zero_grad(set_to_none=True)
    assert math.isclose(whole, a + b, rel_tol=1e-5)
    for name in g_whole:
        torch.testing.assert_close(g_parts[name], g_whole[name], atol=1e-7, rtol=1e-4)

    # A row with an empty response adds nothing; an all-empty micro-batch gives 0 and no gradient.
    empty = torch.zeros(0, dtype=torch.long)
    with_empty, _ = distill.score(model, pad_id, banned, students[:2], teachers[:2], [responses[0], empty], cfg, n)
    alone, _ = distill.score(model, pad_id, banned, students[:1], teachers[:1], [responses[0]], cfg, n)
    model.zero_grad(set_to_none=True)
    assert math.isclose(with_empty, alone, rel_tol=1e-6)
    assert distill.score(model, pad_id, banned, students[:2], teachers[:2], [empty, empty], cfg, 1) == (0.0, 0.0)
    assert not distill_grads(model)


# ----------------------------------------------------------------------------- training


def test_training_moves_only_the_distill_adapter_and_the_teacher_gets_no_grads():
    model, processor = student_model()
    cfg = cfg_for(batch_size=3, micro_batch_size=2, lr=1e-2, n_per_task=4)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if ".distill." not in n}
    before = {n: p.detach().clone() for n, p in model.named_parameters() if ".distill." in n}
    params = named_trainables(model)
    optimizer = make_optimizer(params, cfg)
    pool = distill.train_pool(cfg)
    for step in range(3):
        stats = distill.distill_step(model, processor, distill.step_records(pool, cfg, step), cfg, seed=step)
        assert stats["tokens"] > 0 and math.isfinite(stats["loss"])
        assert all(p.grad is None for n, p in model.named_parameters() if ".distill." not in n)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), name  # base weights and grounding adapter: bit-identical
    assert all(not torch.equal(p, before[n]) for n, p in params.items())
    assert "grounding" in lora.lora_layers(model)["model.language_model.layers.0.self_attn.q_proj"].active


@pytest.mark.parametrize("n", [1, 7, 12])
def test_train_pool_gives_each_task_the_same_share_split_evenly_over_its_levels(n):
    cfg = config.resolve("distill", "mini", {"n_per_task": n, "tasks": ("frozenlake", "minibehaviour")})
    pool = distill.train_pool(cfg)
    counts = Counter((r["task"], int(r["level"])) for r in pool)
    assert sum(c for (t, _), c in counts.items() if t == "frozenlake") == n == counts["minibehaviour", 5]
    per_level = [counts.get(("frozenlake", lv), 0) for lv in (3, 4, 5)]
    assert max(per_level) - min(per_level) <= 1 and all(r["split"] == "train" for r in pool)
    assert len({r["id"] for r in pool}) == len(pool)


def test_step_records_are_a_pure_function_of_seed_and_step_and_cover_each_epoch():
    cfg = cfg_for(batch_size=3, n_per_task=4)  # 2 tasks x 4 (2 per level) = 8 prompts per epoch
    pool = distill.train_pool(cfg)
    assert len(pool) == 8 and all(r["split"] == "train" for r in pool)
    first = [r["id"] for s in range(3) for r in distill.step_records(pool, cfg, s)]  # steps 0-2: 9 prompts
    assert [r["id"] for r in distill.step_records(pool, cfg, 1)] == first[3:6]
    assert sorted(first[:8]) == sorted(r["id"] for r in pool)  # epoch 0 = every prompt exactly once
    other = config.resolve("distill", "mini", {**cfg.__dict__, "seed": 1})
    assert [r["id"] for r in distill.step_records(distill.train_pool(other), other, 0)] != first[:3]


# ----------------------------------------------------------------------------- run()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved (spread-weight) mini base and a grounding adapter trained on it (random B)."""
    root = tmp_path_factory.mktemp("distill")
    model, processor = M.build_mini(seed=0)
    spread_weights(model)
    M.save(model, processor, root / "base")
    torch.manual_seed(0)
    lora.add_lora(model, "grounding", r=4, alpha=8.0)
    randomize_lora(model, "grounding", 2)
    lora.save_adapter(model, "grounding", root / "grounding")
    return root


def run_cfg(saved, **kw):
    base = dict(model=str(saved / "base"), grounding=str(saved / "grounding"), batch_size=2, max_new_tokens=8,
                n_per_task=3, tasks=("frozenlake",), levels=(3,), val_every=0, lr=1e-2, lora_r=4)
    return config.resolve("distill", "mini", {**base, **kw})


def test_run_smoke_writes_adapter_metrics_best_and_plot(saved, tmp_path):
    out = distill.run(run_cfg(saved, steps=3, val_every=2, val_n=1, micro_batch_size=1), tmp_path)
    assert out == tmp_path / "adapter"
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3] and [("val_macro" in r) for r in rows] == [True, False, True, True]
    for key in ("loss", "kl", "success", "response_len", "t_generate", "t_score", "t_update", "tok_s", "grad_norm"):
        assert all(math.isfinite(r[key]) for r in rows[1:]), key
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 3
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "best.json").read_text())["step"] in (0, 2, 3)
    model, _ = M.load(str(saved / "base"))
    lora.load_adapter(model, saved / "grounding", name="grounding")
    assert lora.load_adapter(model, out, name="distill") == "distill"
    last = load_file(str(tmp_path / "adapter-last" / lora.WEIGHTS_FILE))
    assert any(k.endswith("lora_B.weight") and last[k].abs().sum() > 0 for k in last)  # B left zero: it trained


def test_resume_after_k_steps_gives_a_bit_identical_adapter(saved, tmp_path):
    straight = tmp_path / "straight"
    distill.run(run_cfg(saved, steps=4), straight)
    broken = tmp_path / "broken"
    distill.run(run_cfg(saved, steps=2), broken)  # "interrupted" after 2 steps (checkpoint at the end)
    distill.run(run_cfg(saved, steps=4), broken, resume=True)
    a, b = (load_file(str(d / "adapter" / lora.WEIGHTS_FILE)) for d in (straight, broken))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [[(r["step"], r["loss"]) for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())] for d in (straight, broken)]
    assert rows[0] == rows[1] and len(rows[0]) == 4


def test_base_init_needs_no_grounding_adapter(saved, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/grounding-* here
    with pytest.raises(lora.AdapterError, match="no grounding adapter"):
        distill.run(run_cfg(saved, grounding=None, steps=1), tmp_path / "a")
    assert distill.run(run_cfg(saved, grounding=None, init="base", steps=1), tmp_path / "b").is_dir()
    (tmp_path / "runs" / "grounding-1").mkdir(parents=True)
    lora_dir = tmp_path / "runs" / "grounding-1" / "adapter"
    lora_dir.symlink_to(saved / "grounding")
    assert distill.find_grounding(run_cfg(saved, grounding=None)) == lora_dir.relative_to(tmp_path)


def test_non_finite_loss_stops_at_that_step_and_keeps_the_last_checkpoint(saved, tmp_path, monkeypatch):
    real, calls = distill.distill_step, []

    def poisoned(*args, **kw):
        stats = real(*args, **kw)
        calls.append(1)
        return {**stats, "loss": float("nan")} if len(calls) == 3 else stats

    monkeypatch.setattr(distill, "distill_step", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 3: loss is nan.*step-000002"):
        distill.run(run_cfg(saved, steps=5, ckpt_every=2), tmp_path)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "checkpoints")] == ["step-000002"]
    assert not (tmp_path / "adapter-last").exists()


def test_bad_options_and_too_long_sequences_are_clear_errors(mini, saved, tmp_path):
    for bad in (dict(loss="exact"), dict(divergence="tv"), dict(init="nothing"), dict(temperature=0.0), dict(logit_chunk=0)):
        with pytest.raises(config.ConfigError):
            distill.run(run_cfg(saved, **bad), tmp_path)
    model, processor = mini
    students, _ = distill.encode_prompts(processor, records(1), reference_plan=True)
    limit = model.config.text_config.max_position_embeddings
    model.config.text_config.max_position_embeddings = 8  # fewer positions than the prompt alone needs
    try:
        with pytest.raises(config.ConfigError, match="lower --max-new-tokens"):
            distill.response_hidden(model, students, [torch.tensor([5, 6, 7])], processor.tokenizer.pad_token_id)
    finally:
        model.config.text_config.max_position_embeddings = limit


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing_enable` is deprecated")  # what model.load calls
def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    cfg = cfg_for(loss="full", logit_chunk=6)
    grads = []
    for ckpt in (False, True):
        model, processor = student_model()
        if ckpt:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            assert model.model.language_model.gradient_checkpointing
        model.train()
        students, teachers = distill.encode_prompts(processor, records(2), reference_plan=True)
        model.eval()
        out = rollout(model, processor, students, temperature=1.0, seed=4)
        responses = distill.responses_of(out.tokens, out.mask)
        model.train()
        pad_id, banned = processor.tokenizer.pad_token_id, suppressed_token_ids(processor.tokenizer)
        loss, _ = distill.score(model, pad_id, banned, students, teachers, responses, cfg, sum(len(y) for y in responses))
        grads.append((loss, distill_grads(model)))
    (l0, g0), (l1, g1) = grads
    assert math.isclose(l0, l1, rel_tol=1e-6) and g0.keys() == g1.keys()
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], atol=1e-7, rtol=1e-5)
