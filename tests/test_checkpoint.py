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


DAMAGES = ["truncate", "flip_one_byte", "garbage_json", "missing_file", "garbage_manifest"]


def damage_checkpoint(path, damage):
    if damage == "truncate":
        f = path / "optimizer.safetensors"
        f.write_bytes(f.read_bytes()[:40])
    elif damage == "flip_one_byte":  # same size, still valid safetensors: only the hash can tell
        f = path / "trainables.safetensors"
        data = bytearray(f.read_bytes())
        data[-1] ^= 0x01
        f.write_bytes(bytes(data))
    elif damage == "garbage_json":
        (path / "state.json").write_text("{not json")
    elif damage == "missing_file":
        (path / "rng.safetensors").unlink()
    else:
        (path / "manifest.json").write_text("\x00" * 7)


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_checkpoint_raises_clear_error(tmp_path, damage):
    net, opt, sched = trained_toy(0)
    path = checkpoint.save_checkpoint(tmp_path, 1, dict(net.named_parameters()), opt, sched, checkpoint.capture_rng(), {})
    damage_checkpoint(path, damage)
    with pytest.raises(CheckpointError, match="step-000001.*(corrupt or truncated|incomplete).*delete it"):
        checkpoint.load_latest(tmp_path)


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, damage, capsys):
    net, opt, sched = trained_toy(0)
    params = dict(net.named_parameters())
    checkpoint.save_checkpoint(tmp_path, 2, params, opt, sched, checkpoint.capture_rng(), {})
    good = {n: p.detach().clone() for n, p in params.items()}
    with torch.no_grad():
        for p in params.values():
            p.add_(1.0)
    newest = checkpoint.save_checkpoint(tmp_path, 4, params, opt, sched, checkpoint.capture_rng(), {})
    damage_checkpoint(newest, damage)
    state = checkpoint.load_latest(tmp_path)
    assert state["step"] == 2 and all(torch.equal(state["trainables"][n], t) for n, t in good.items())
    err = capsys.readouterr().err
    assert "step-000004" in err and "resuming from step-000002" in err
