"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

    <run>/checkpoints/step-000200/
        trainables.safetensors   the trained tensors by name (full model in stage 0, LoRA weights later)
        optimizer.safetensors    AdamW moments and step counters, keyed "<param index>.<name>"
        rng.safetensors          torch CPU (and CUDA) generator states
        state.json               step, optimizer param groups, scheduler, python RNG, config
        manifest.json            byte size and sha256 of each file above (written last)

Each checkpoint is written into a temporary directory and renamed into place, so a crash leaves the
previous checkpoints intact and never a half-written one; the newest `keep` are kept. A checkpoint
damaged later (a truncated copy, a flipped bit, a deleted file) fails its manifest check on load:
`load_latest` reports it and falls back to the newest good one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors, save_file

from mgsd_mini.config import to_json

STEP_DIR = re.compile(r"^step-(\d+)$")
FILES = ("trainables.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json")
MANIFEST = "manifest.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message names it and says what to do."""


def capture_rng() -> dict:
    """Every random generator a training step draws from (python, torch CPU, CUDA)."""
    rng = {"python": random.getstate(), "torch": torch.random.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: dict) -> None:
    version, state, gauss = rng["python"]
    random.setstate((version, tuple(state), gauss))
    torch.random.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_checkpoint(ckpt_dir, step: int, trainables: dict[str, torch.Tensor], optimizer, scheduler, rng: dict, config: dict, keep: int = 2) -> Path:
    """Write checkpoint `step` atomically under ckpt_dir and prune all but the newest `keep`."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    opt = optimizer.state_dict()
    opt_tensors, opt_scalars = {}, {}
    for index, state in opt["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                opt_tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                opt_scalars[f"{index}.{key}"] = value
    rng_tensors = {"torch": rng["torch"]}
    for i, state in enumerate(rng.get("cuda", [])):
        rng_tensors[f"cuda.{i}"] = state
    state = {
        "step": step,
        "param_groups": opt["param_groups"],
        "optimizer_scalars": opt_scalars,
        "scheduler": scheduler.state_dict() if scheduler else None,  # LambdaLR keeps no closures: JSON-able
        "python_rng": rng["python"],
        "config": config,
    }
    tmp = Path(tempfile.mkdtemp(prefix=".step-tmp-", dir=ckpt_dir))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in trainables.items()}, str(tmp / FILES[0]))
        save_file(opt_tensors, str(tmp / FILES[1]))
        save_file(rng_tensors, str(tmp / FILES[2]))
        (tmp / FILES[3]).write_text(json.dumps(state))
        (tmp / MANIFEST).write_text(json.dumps({f: _fingerprint((tmp / f).read_bytes()) for f in FILES}))  # written last
        final = ckpt_dir / f"step-{step:06d}"
        if final.exists():  # re-saving the same step (e.g. after a resume): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(ckpt_dir) -> list[Path]:
    """Checkpoint directories under ckpt_dir, oldest first (temporary ones are ignored)."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def _fingerprint(data: bytes) -> dict:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def load_latest(ckpt_dir) -> dict | None:
    """The newest readable checkpoint under ckpt_dir as a dict, or None if there is none.

    Keys: step, trainables {name: tensor}, optimizer (a torch optimizer state_dict), scheduler,
    rng (for restore_rng), config, path. A damaged checkpoint is reported on stderr and skipped for
    the previous one; CheckpointError (naming the newest) if none is readable.
    """
    errors = []
    for path in reversed(list_checkpoints(ckpt_dir)):
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            print(f"warning: {err}; trying the previous checkpoint", file=sys.stderr)
            errors.append(err)
            continue
        if errors:
            print(f"resuming from {path.name}, the newest good checkpoint", file=sys.stderr)
        return state
    if errors:
        raise errors[0]
    return None


def load_checkpoint(path) -> dict:
    """One checkpoint directory, verified against its manifest (sizes, then sha256) before it is read."""
    path = Path(path)
    missing = [f for f in (*FILES, MANIFEST) if not (path / f).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete (missing {', '.join(missing)}): delete it to resume from the previous one")
    try:  # each file is read once: its bytes are checked, then deserialised
        data = {f: (path / f).read_bytes() for f in FILES}
        manifest = json.loads((path / MANIFEST).read_text())
        damaged = [f for f in FILES if manifest.get(f) != _fingerprint(data[f])]
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        damaged = [MANIFEST]
    if damaged:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({', '.join(damaged)} fails the size/sha256 check): delete it to resume from the previous one")
    try:
        state = json.loads(data[FILES[3]])
        trainables, opt_tensors, rng_tensors = (load_safetensors(data[f]) for f in FILES[:3])
    except (json.JSONDecodeError, UnicodeDecodeError, SafetensorError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(err).__name__}): delete it to resume from the previous one") from None
    opt_state: dict[int, dict] = {}
    for key, value in list(opt_tensors.items()) + list(state["optimizer_scalars"].items()):
        index, name = key.split(".", 1)
        opt_state.setdefault(int(index), {})[name] = value
    rng = {"python": state["python_rng"], "torch": rng_tensors["torch"]}
    cuda = [rng_tensors[k] for k in sorted((k for k in rng_tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda:
        rng["cuda"] = cuda
    return {
        "step": state["step"],
        "trainables": trainables,
        "optimizer": {"state": opt_state, "param_groups": state["param_groups"]},
        "scheduler": state["scheduler"],
        "rng": rng,
        "config": state["config"],
        "path": path,
    }


def restore(state: dict, params: dict[str, torch.nn.Parameter], optimizer, scheduler, metrics_path: Path | None) -> int:
    """Put a loaded checkpoint back into a run: weights, optimizer, schedule, RNG; returns its step.

    Metric lines logged after the checkpoint are dropped (the resumed run logs them again); None:
    a helper rank of a data-parallel run, which leaves the file to rank 0.
    """
    if set(params) != set(state["trainables"]):
        raise CheckpointError(f"checkpoint {state['path']} does not match the trained parameters: resume with the same model, adapters and LoRA rank")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state["trainables"][name])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng(state["rng"])
    if metrics_path is not None:
        truncate_metrics(metrics_path, state["step"])
    return state["step"]


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after `step` (they will be logged again)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    tmp.replace(path)


def end_of_step(ckpt_dir, done: int, cfg, params: dict, optimizer, scheduler, interrupt: "Interrupt", save: bool = True,
                stop: bool | None = None) -> None:
    """After optimizer step `done`: checkpoint when due (every cfg.ckpt_every steps, the last step) or
    when Ctrl-C asked to stop, then stop if it did. Shared by the SFT and distillation loops; `save`
    False on the helper ranks of a data-parallel run, whose weights are rank 0's; `stop` there is
    what the ranks agreed on for this step (default: whether Ctrl-C was pressed)."""
    stop = interrupt.requested if stop is None else stop
    if save and (done % cfg.ckpt_every == 0 or done == cfg.steps or stop):
        save_checkpoint(ckpt_dir, done, {n: p.detach() for n, p in params.items()}, optimizer, scheduler, capture_rng(), to_json(cfg))
    if stop and done < cfg.steps:
        raise KeyboardInterrupt(f"checkpoint saved at step {done}")


class Interrupt:
    """Set by the first Ctrl-C inside `interruptible()`: the loop finishes its step, checkpoints, stops."""

    requested = False


@contextmanager
def interruptible():
    """Turn the first SIGINT into a request to stop at the next step boundary (so the checkpoint
    written then is consistent); a second Ctrl-C interrupts at once. A no-op off the main thread."""
    flag = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True
        print("\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to stop at once)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
