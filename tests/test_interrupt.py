"""Interruption, end to end through `python train.py`: for every stage, a run killed with SIGKILL at
an arbitrary point and then stopped with Ctrl-C, resumed each time with --resume, ends with weights
bit-identical to an uninterrupted run (CPU), and Ctrl-C leaves a checkpoint and prints the command that resumes it (which the test then runs)."""

import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mgsd_mini import lora
from mgsd_mini import model as M

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A saved random mini base and a grounding adapter on it, for the grounding and distill runs."""
    root = tmp_path_factory.mktemp("interrupt")
    model, processor = M.build_mini(seed=0)
    M.save(model, processor, root / "base")
    torch.manual_seed(0)
    lora.add_lora(model, "grounding", r=4, alpha=8.0)
    lora.save_adapter(model, "grounding", root / "grounding")
    return root


def stage_args(stage, models):
    """Tiny but real runs: ~20-30 optimizer steps, a checkpoint every few, no closing evaluation."""
    if stage == "base":
        return ["--steps", "30", "--batch-size", "2", "--vision-steps", "5", "--image-frac", "0.3", "--ckpt-every", "4",
                "--layers", "3", "--mlp", "128"]  # a shape of its own: the options reach the model, and the resume
    common = ["--model", models / "base", "--tasks", "frozenlake", "--levels", "3", "--ckpt-every", "3", "--log-every", "1"]
    if stage == "grounding":  # two processes by default (--workers 2): they stop, and resume, together
        return common + ["--n-per-level", "3", "--steps", "24", "--batch-size", "2", "--grad-accum", "1", "--lora-r", "4", "--eval-n", "0"]
    return common + ["--grounding", models / "grounding", "--n-per-task", "6", "--steps", "15", "--batch-size", "2",
                     "--lora-r", "4", "--val-every", "0", "--max-new-tokens", "12"]


def start(stage, out, args, resume=False):
    cmd = [sys.executable, "train.py", "--stage", stage, "--out", out, *args] + (["--resume"] if resume else [])
    return subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(proc, out: Path, newer_than: int = 0, timeout=120):
    """Block until a checkpoint newer than step `newer_than` is in place (renamed, so complete)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        steps = [int(p.name[5:]) for p in (out / "checkpoints").glob("step-*")]
        if steps and max(steps) > newer_than:
            return max(steps)
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise TimeoutError(f"no checkpoint in {out}")


def final_weights(stage, out: Path) -> dict:
    path = out / "model" / "model.safetensors" if stage == "base" else out / "adapter" / "adapter_model.safetensors"
    return load_file(str(path))


@pytest.mark.parametrize("stage", ["base", "grounding", "distill"])
def test_kill_then_ctrl_c_then_resume_equals_an_uninterrupted_run(stage, models, tmp_path):
    args = stage_args(stage, models)
    whole = start(stage, tmp_path / "whole", args)
    assert whole.wait(timeout=300) == 0, whole.communicate()

    out = tmp_path / "interrupted"
    first = start(stage, out, args)
    step = wait_for_checkpoint(first, out)
    time.sleep(random.Random(stage).uniform(0.0, 0.3))  # somewhere inside a later step
    first.send_signal(signal.SIGKILL)
    first.wait()

    second = start(stage, out, args, resume=True)
    wait_for_checkpoint(second, out, newer_than=step)
    second.send_signal(signal.SIGINT)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 130, err
    saved = int(err.split("checkpoint saved at step ")[1].split(")")[0])
    assert (out / "checkpoints" / f"step-{saved:06d}").is_dir()
    assert "Traceback" not in err
    printed = shlex.split(err.split("resume with  ")[1].splitlines()[0])  # the command it tells the user to run
    assert printed[:2] == ["python", "train.py"] and "--resume" in printed and str(out) in printed

    third = subprocess.Popen([sys.executable, *printed[1:]], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert third.wait(timeout=300) == 0, third.communicate()
    expected, got = final_weights(stage, tmp_path / "whole"), final_weights(stage, out)
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    if stage == "base":
        assert sum(k.endswith("mlp.up_proj.weight") and "language_model" in k for k in got) == 3
        assert got["model.language_model.layers.0.mlp.up_proj.weight"].shape[0] == 128
