"""Checkpoints: exact round trip of weights/optimizer/RNG, atomic writes, pruning, clear errors."""

import random

import pytest
import torch

from mgsd_mini import checkpoint
from mgsd_mini.checkpoint import CheckpointError


def trained_toy(seed):
    """A small module with a few AdamW steps taken, so the optimizer has real state."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.LayerNorm(7), torch.nn.Linear(7, 3))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    for _ in range(3):
        net(torch.randn(4, 5)).square().mean().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    return net, opt, sched


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_restores_training_exactly(tmp_path, seed):
    net, opt, sched = trained_toy(seed)
    random.seed(seed)
    rng = checkpoint.capture_rng()
    expected_draws = (random.random(), torch.rand(3))
    checkpoint.save_checkpoint(tmp_path, 3, dict(net.named_parameters()), opt, sched, rng, {"stage": "x", "lr": 0.01})

    state = checkpoint.load_latest(tmp_path)
    assert state["step"] == 3 and state["config"] == {"stage": "x", "lr": 0.01}
    net2, opt2, sched2 = trained_toy(seed + 100)  # different weights and moments
    with torch.no_grad():
        for n, p in net2.named_parameters():
            p.copy_(state["trainables"][n])
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    checkpoint.restore_rng(state["rng"])
    assert random.random() == expected_draws[0] and torch.equal(torch.rand(3), expected_draws[1])
    # One more identical step on both gives identical weights: the moments and step counts came back.
    x = torch.randn(4, 5)
    for n_, o_, s_ in ((net, opt, sched), (net2, opt2, sched2)):
        n_(x).square().mean().backward()
        o_.step()
        s_.step()
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), net2.parameters()))
    assert sched.get_last_lr() == sched2.get_last_lr()


def test_keeps_newest_and_ignores_temporaries(tmp_path):
    net, opt, sched = trained_toy(0)
    assert checkpoint.load_latest(tmp_path / "none") is None
    for step in (2, 4, 6):
        checkpoint.save_checkpoint(tmp_path, step, dict(net.named_parameters()), opt, sched, checkpoint.capture_rng(), {}, keep=2)
    (tmp_path / ".step-tmp-crashed").mkdir()  # what a crash mid-write leaves
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step-000004", "step-000006"]
    assert checkpoint.load_latest(tmp_path)["step"] == 6


@pytest.mark.parametrize("damage", ["truncate", "garbage_json", "missing_file"])
def test_damaged_checkpoint_raises_clear_error(tmp_path, damage):
    net, opt, sched = trained_toy(0)
    path = checkpoint.save_checkpoint(tmp_path, 1, dict(net.named_parameters()), opt, sched, checkpoint.capture_rng(), {})
    if damage == "truncate":
        f = path / "optimizer.safetensors"
        f.write_bytes(f.read_bytes()[:40])
    elif damage == "garbage_json":
        (path / "state.json").write_text("{not json")
    else:
        (path / "rng.safetensors").unlink()
    with pytest.raises(CheckpointError, match="step-000001.*(corrupt or truncated|incomplete).*delete it"):
        checkpoint.load_latest(tmp_path)
