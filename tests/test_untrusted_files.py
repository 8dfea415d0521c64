"""Security: nothing a user passes is unpickled. A pickle that would run code, handed over as a
checkpoint, a model or an adapter, is refused with a clear error and never executed."""

import json
import pickle

import pytest
import torch

from mgsd_mini import checkpoint, lora
from mgsd_mini import model as M

MARKER = "pwned"


class Payload:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def malicious(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"weights": Payload(tmp_path / MARKER)}))
    return path


def test_a_pickle_checkpoint_with_a_matching_manifest_is_refused(tmp_path):
    step = tmp_path / "checkpoints" / "step-000001"
    step.mkdir(parents=True)
    for name in checkpoint.FILES[:3]:
        malicious(step, name)
    (step / "state.json").write_text(json.dumps({"step": 1}))
    # The attacker also forges the manifest, so only the safetensors reader stands in the way.
    (step / checkpoint.MANIFEST).write_text(json.dumps({f: checkpoint._fingerprint((step / f).read_bytes()) for f in checkpoint.FILES}))
    with pytest.raises(checkpoint.CheckpointError, match="corrupt or truncated"):
        checkpoint.load_latest(tmp_path / "checkpoints")
    assert not (step / MARKER).exists()


def test_a_pickle_model_is_refused(tmp_path):
    model, processor = M.build_mini(seed=0)
    saved = M.save(model, processor, tmp_path / "model")
    (saved / "model.safetensors").unlink()
    malicious(saved, "pytorch_model.bin")
    with pytest.raises(M.ModelLoadError, match="safetensors"):
        M.load(str(saved))
    assert not (saved / MARKER).exists()


def test_a_pickle_adapter_is_refused(tmp_path):
    model, _ = M.build_mini(seed=0)
    torch.manual_seed(0)
    lora.add_lora(model, "g", r=4, alpha=8.0)
    saved = lora.save_adapter(model, "g", tmp_path / "adapter")
    weights = next(saved.glob("*.safetensors"))
    weights.write_bytes(pickle.dumps(Payload(saved / MARKER)))
    fresh, _ = M.build_mini(seed=0)
    with pytest.raises(lora.AdapterError, match="unreadable"):
        lora.load_adapter(fresh, saved)
    (saved / "adapter_model.bin").write_bytes(weights.read_bytes())
    weights.unlink()
    with pytest.raises(lora.AdapterError, match="not an adapter directory"):
        lora.load_adapter(fresh, saved)
    assert not (saved / MARKER).exists()
