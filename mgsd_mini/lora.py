"""LoRA, written out: low-rank adapters on named linear layers, several at once, peft's file format.

For a frozen linear layer W (out x in) and each active adapter n with rank r_n and alpha_n,

    y = x W^T + b + sum_n (alpha_n / r_n) * dropout(x) A_n^T B_n^T,   A_n: r_n x in,  B_n: out x r_n

A_n starts like a default nn.Linear (Kaiming-uniform) and B_n at zero, so a new adapter leaves the
model's outputs unchanged until it is trained. The adapter path runs in fp32 (fp32 master weights for
what we train) and is cast back to the base layer's dtype. In fp32, a call where it costs fewer
multiply-adds (a rank near the layer's width, many tokens) folds the adapters into W instead:
one matmul with W + sum_n (alpha_n / r_n) B_n A_n, the same function and gradients.

Several named adapters stack on the same layers (stage 1 "grounding", stage 2 "distill"); the
`adapters_disabled` context gives back the exact base model, which is how stage 2 gets its teacher
from the same weights. `merge` folds adapters into W for good; `merged` only for a block
(W untouched). Adapters are saved in peft's
on-disk format (adapter_config.json + adapter_model.safetensors, keys
`base_model.model.<module>.lora_{A,B}.weight`), so `peft.PeftModel.from_pretrained` loads them, and
`load_adapter` reads peft's files as well as ours.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

# All linear layers of the language model (DESIGN §4); the vision tower and merger stay frozen.
LM_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# The linear layers of Qwen-VL's vision blocks, patch merger and deepstack mergers (mini grounding only).
VISION_TARGETS = ("qkv", "proj", "linear_fc1", "linear_fc2")
PEFT_PREFIX = "base_model.model."
CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"
BASE_FILE = "mgsd_base.json"  # ours, beside peft's files (peft ignores it): the id of the base it was trained on


class AdapterError(ValueError):
    """An adapter that cannot be added, found or loaded; the message says what to do."""


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus any number of named low-rank adapters (formula in the module docstring)."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base = base
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.dropout = nn.ModuleDict()
        self.scaling: dict[str, float] = {}
        self.active: list[str] = []
        self.disabled = False
        self.merged: torch.Tensor | None = None  # W + the folded deltas, set only inside `merged()`
        self.unfolded: list[str] = []  # inside `merged()`: the active adapters that keep their own path

    def add(self, name: str, r: int, alpha: float, dropout: float) -> None:
        device = self.base.weight.device
        self.lora_A[name] = nn.Linear(self.base.in_features, r, bias=False, device=device, dtype=torch.float32)
        self.lora_B[name] = nn.Linear(r, self.base.out_features, bias=False, device=device, dtype=torch.float32)
        nn.init.kaiming_uniform_(self.lora_A[name].weight, a=math.sqrt(5))  # nn.Linear's (and peft's) init
        nn.init.zeros_(self.lora_B[name].weight)
        self.dropout[name] = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.train(self.base.training)  # new modules start in train mode; follow the model's mode
        self.scaling[name] = alpha / r
        self.active.append(name)

    def delta_weight(self, name: str) -> torch.Tensor:
        """(alpha/r) B A, the adapter's change to W."""
        return self.scaling[name] * (self.lora_B[name].weight @ self.lora_A[name].weight)

    def folded(self, weight: torch.Tensor, names: list[str]) -> torch.Tensor:
        """`weight` (W, or W already folded with other adapters) + the deltas of adapters `names`."""
        return weight + sum(self.delta_weight(n) for n in names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.disabled:
            return self.base(x)
        weight, paths = (self.base.weight, self.active) if self.merged is None else (self.merged, self.unfolded)
        if not paths:
            return nn.functional.linear(x, weight, self.base.bias)
        if weight.dtype != torch.float32:  # e.g. a bf16 base: the adapters run in fp32, their sum is cast back once
            x32 = x.to(torch.float32)
            deltas = [self.lora_B[n](self.lora_A[n](self.dropout[n](x32))) * self.scaling[n] for n in paths]
            return nn.functional.linear(x, weight, self.base.bias) + torch.stack(deltas).sum(0).to(x.dtype)
        rows = x.reshape(-1, x.shape[-1])
        if self._fold_pays(rows.shape[0], paths):
            # one matmul with W + the deltas; autograd takes A's and B's gradients from W's
            return nn.functional.linear(rows, self.folded(weight, paths), self.base.bias).view(*x.shape[:-1], weight.shape[0])
        # fp32, each adapter on its own path: its scaled product is accumulated into the base output by its last matmul,
        # in place on the 2-D matmul output (F.linear keeps its input for backward, not its output;
        # in place on a view would cost a copy in backward), so no pass over the (tokens x out)
        # activation is spent on the scaling, the sum or the add — on the mini model those passes
        # cost as much as the adapters' matmuls (bench/bench_lora.py).
        y = nn.functional.linear(rows, weight, self.base.bias)
        for n in paths:
            y.addmm_(self.lora_A[n](self.dropout[n](rows)), self.lora_B[n].weight.t(), alpha=self.scaling[n])
        return y.view(*x.shape[:-1], y.shape[-1])

    def _fold_pays(self, rows: int, paths: list[str]) -> bool:
        """Whether folding the adapters into W costs fewer multiply-adds than their own path.

        Their own path adds rows·r·(in+out) in forward, and twice that in backward when they train
        (their gradients and theirs of x). Folding costs in·out·r to build W + (alpha/r) B A, and in
        backward, in·out·rows for W's gradient, from which A's and B's take 2·in·out·r more. At a
        rank near the width (the mini grounding's r 64 on 128-wide layers) folding wins: grounding's
        forward + backward 1.26x faster (bench/bench_lora.py); at the paper's (r 8 on 2,560) and in
        one-token decoding it never does.
        Dropout acts on x, which the fold cannot see: only without it.
        """
        if self.training and not all(isinstance(self.dropout[n], nn.Identity) for n in paths):
            return False
        i, o = self.base.in_features, self.base.out_features
        r = sum(self.lora_A[n].out_features for n in paths)
        trains = torch.is_grad_enabled() and any(self.lora_A[n].weight.requires_grad for n in paths)
        own = rows * r * (i + o) * (3 if trains else 1)
        fold = i * o * r + (i * o * rows + 2 * i * o * r if trains else 0)
        return fold < own

    def extra_repr(self) -> str:
        return f"adapters={list(self.lora_A)}, active={self.active}, disabled={self.disabled}"


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """{module name: LoRALinear} in model order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def adapter_names(model: nn.Module) -> list[str]:
    names: list[str] = []
    for layer in lora_layers(model).values():
        names += [n for n in layer.lora_A if n not in names]
    return names


def _wrap(model: nn.Module, module_name: str) -> LoRALinear:
    """The LoRALinear at module_name, replacing a plain nn.Linear there on first use."""
    parent_name, _, child = module_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    module = getattr(parent, child)
    if isinstance(module, LoRALinear):
        return module
    if not isinstance(module, nn.Linear):
        raise AdapterError(f"{module_name} is a {type(module).__name__}, not a linear layer: LoRA only wraps nn.Linear")
    layer = LoRALinear(module)
    setattr(parent, child, layer)
    return layer


def find_targets(model: nn.Module, targets=LM_TARGETS, scope: str = "language_model") -> list[str]:
    """Names of the linear layers inside `scope` whose name is, or ends with ".", one of `targets`."""
    names = []
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            module = module.base
        elif not isinstance(module, nn.Linear) or name.endswith(".base"):
            continue
        if scope and scope not in name.split("."):
            continue
        if any(name == t or name.endswith("." + t) for t in targets):
            names.append(name)
    return names


def add_lora(model: nn.Module, name: str, r: int, alpha: float, dropout: float = 0.0, targets=LM_TARGETS,
             scope: str | None = "language_model") -> None:
    """Add a trainable adapter `name` (zero-init B, active) to the target layers; freeze every base weight.

    `scope` limits the targets to one submodule ("language_model"); None allows the whole model.
    """
    if name in adapter_names(model):
        raise AdapterError(f"the model already has an adapter named '{name}': pick another name")
    if r <= 0:
        raise AdapterError(f"LoRA rank must be positive, got r={r}")
    modules = find_targets(model, targets, scope)
    if not modules:
        raise AdapterError(f"no linear layer {'of ' + scope + ' ' if scope else ''}matches targets {list(targets)}")
    for module_name in modules:
        _wrap(model, module_name).add(name, r, alpha, dropout)
    for param_name, param in model.named_parameters():
        if ".lora_A." not in param_name and ".lora_B." not in param_name:
            param.requires_grad_(False)
    _set_trainable(model, name, True)


def _set_trainable(model: nn.Module, name: str, trainable: bool) -> None:
    for layer in lora_layers(model).values():
        if name in layer.lora_A:
            layer.lora_A[name].weight.requires_grad_(trainable)
            layer.lora_B[name].weight.requires_grad_(trainable)


def set_active(model: nn.Module, names: list[str]) -> None:
    """Make exactly `names` the active adapters (in this order) on every LoRA layer."""
    unknown = set(names) - set(adapter_names(model))
    if unknown:
        raise AdapterError(f"unknown adapter(s) {sorted(unknown)}; the model has {adapter_names(model)}")
    for layer in lora_layers(model).values():
        layer.active = [n for n in names if n in layer.lora_A]


@contextmanager
def adapters_disabled(model: nn.Module):
    """Inside the block the model is exactly the base model (every LoRA layer returns base(x))."""
    layers = list(lora_layers(model).values())
    before = [layer.disabled for layer in layers]
    for layer in layers:
        layer.disabled = True
    try:
        yield model
    finally:
        for layer, was in zip(layers, before):
            layer.disabled = was


@contextmanager
def merged(model: nn.Module, frozen_only: bool = False):
    """Inside the block, each fp32 LoRA layer folds its active adapters into one weight, W + sum of deltas.

    On a small model a forward pass is bound by per-op overhead, not arithmetic: each adapter path is
    four more ops per layer, and folding two stacked adapters made the mini model's rollouts ~1.7x
    faster (README, Training, stage 2). `frozen_only` folds only the adapters that take no gradient
    (stage 2's grounding adapter while the distill adapter trains); the others keep their path. The
    merged weight is a separate tensor, so W stays bit-identical and `adapters_disabled` still gives
    the exact base inside the block. A folded adapter's dropout is skipped (it is for decoding, or frozen). bf16
    layers are left as they are: rounding W + delta to bf16 would drop a small delta (lr 1e-6
    updates), and a second copy of the weights would not fit the GPU's memory plan. Blocks nest:
    leaving one restores the fold of the block around it.
    """
    layers = [layer for layer in lora_layers(model).values() if layer.base.weight.dtype == torch.float32]
    outer = [(layer.merged, layer.unfolded) for layer in layers]
    for layer in layers:
        names = [n for n in layer.active if not (frozen_only and layer.lora_A[n].weight.requires_grad)]
        if names:
            with torch.no_grad():
                layer.merged = layer.folded(layer.base.weight, names)
            layer.unfolded = [n for n in layer.active if n not in names]
    try:
        yield model
    finally:
        for layer, (weight, unfolded) in zip(layers, outer, strict=True):
            layer.merged, layer.unfolded = weight, unfolded


@torch.no_grad()
def merge(model: nn.Module, names: list[str] | None = None) -> None:
    """Fold adapters (default: the active ones) into the base weights, W += (alpha/r) B A, and drop them.

    Layers left with no adapter become plain nn.Linear again, so a fully merged model saves with
    `save_pretrained` like any checkpoint.
    """
    for module_name, layer in lora_layers(model).items():
        for n in list(layer.active if names is None else names):
            if n in layer.lora_A:
                w = layer.base.weight
                w.copy_((w.float() + layer.delta_weight(n)).to(w.dtype))
                _drop(layer, n)
        if not layer.lora_A:
            parent_name, _, child = module_name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, layer.base)


def _drop(layer: LoRALinear, name: str) -> None:
    del layer.lora_A[name], layer.lora_B[name], layer.dropout[name], layer.scaling[name]
    layer.active = [n for n in layer.active if n != name]


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def base_id(model: nn.Module) -> str:
    """A short hash of a slice of the input embeddings: tells one base model from another.

    Rounded to bf16 first, so the same base loaded in fp32 (CPU) or bf16 (GPU) gets the same id.
    """
    emb = model.get_input_embeddings().weight
    return hashlib.sha256(emb[:16, :64].detach().to("cpu", torch.bfloat16).view(torch.int16).numpy().tobytes()).hexdigest()[:16]


def save_adapter(model: nn.Module, name: str, out_dir: str | Path) -> Path:
    """Write adapter `name` in peft's format into out_dir (atomically: temp dir, then rename)."""
    layers = {m: layer for m, layer in lora_layers(model).items() if name in layer.lora_A}
    if not layers:
        raise AdapterError(f"the model has no adapter named '{name}' (it has {adapter_names(model)})")
    first = next(iter(layers.values()))
    r = first.lora_A[name].out_features
    dropout = first.dropout[name].p if isinstance(first.dropout[name], nn.Dropout) else 0.0
    config = {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": getattr(getattr(model, "config", None), "_name_or_path", None) or None,
        "r": r,
        "lora_alpha": first.scaling[name] * r,
        "lora_dropout": dropout,
        "target_modules": sorted(layers),  # full module names: peft matches them exactly
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
    }
    tensors = {}
    for module_name, layer in layers.items():
        tensors[f"{PEFT_PREFIX}{module_name}.lora_A.weight"] = layer.lora_A[name].weight.detach().float().cpu().contiguous()
        tensors[f"{PEFT_PREFIX}{module_name}.lora_B.weight"] = layer.lora_B[name].weight.detach().float().cpu().contiguous()
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        (tmp / BASE_FILE).write_text(json.dumps({"base_id": base_id(model)}))
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def load_adapter(model: nn.Module, path: str | Path, name: str | None = None, trainable: bool = False) -> str:
    """Load an adapter saved by `save_adapter` or by peft; it becomes active (appended). Returns its name.

    Raises AdapterError for a missing/corrupt adapter, an unsupported peft variant, or an adapter whose
    layers or shapes (or recorded base id) do not match this model.
    """
    path = Path(path)
    name = name or path.name
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise AdapterError(f"{path} is not an adapter directory (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
        tensors = load_file(str(path / WEIGHTS_FILE))
        recorded = json.loads((path / BASE_FILE).read_text()).get("base_id") if (path / BASE_FILE).is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError, SafetensorError, OSError) as err:
        raise AdapterError(f"adapter {path} is unreadable ({type(err).__name__}): it is corrupt or truncated, re-save it") from None
    if not isinstance(config, dict) or "r" not in config or "lora_alpha" not in config:
        raise AdapterError(f"{path / CONFIG_FILE} is not a LoRA adapter config (needs r and lora_alpha)")
    if config.get("peft_type") != "LORA":
        raise AdapterError(f"adapter {path} is a {config.get('peft_type')} adapter; only LoRA is supported")
    unsupported = [k for k in ("use_dora", "rank_pattern", "alpha_pattern", "modules_to_save", "layer_replication") if config.get(k)]
    if unsupported or config.get("bias", "none") != "none" or config.get("fan_in_fan_out"):
        raise AdapterError(f"adapter {path} uses peft features this project does not implement ({unsupported or 'bias/fan_in_fan_out'})")
    if recorded is not None and recorded != base_id(model):
        raise AdapterError(
            f"adapter {path} was trained on a different base model ({config.get('base_model_name_or_path') or 'unknown'}): "
            f"load it onto the model it was trained from"
        )
    if name in adapter_names(model):
        raise AdapterError(f"the model already has an adapter named '{name}': pass another name")
    r, alpha = int(config["r"]), float(config["lora_alpha"])
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    weights = _group_by_module(tensors, path)
    modules = dict(model.named_modules())
    for module_name, (a, b) in weights.items():
        base = modules.get(module_name)
        base = base.base if isinstance(base, LoRALinear) else base
        if not isinstance(base, nn.Linear) or a.shape != (r, base.in_features) or b.shape != (base.out_features, r):
            raise AdapterError(f"adapter {path} does not fit this model at {module_name}: it was made for a different base model")
    for module_name, (a, b) in weights.items():
        layer = _wrap(model, module_name)
        layer.add(name, r, alpha, config.get("lora_dropout", 0.0))
        layer.scaling[name] = scale
        with torch.no_grad():
            layer.lora_A[name].weight.copy_(a)
            layer.lora_B[name].weight.copy_(b)
    for param_name, param in model.named_parameters():
        if ".lora_A." not in param_name and ".lora_B." not in param_name:
            param.requires_grad_(False)
    _set_trainable(model, name, trainable)
    return name


def load_adapters(model: nn.Module, paths: list[str | Path]) -> list[str]:
    """Stack adapters in the order given (grounding, then distill), each named after its folder
    (made unique, since every run saves to a folder named `adapter`); returns their names."""
    names: list[str] = []
    for path in paths:
        name = Path(path).name or "adapter"
        while name in names:
            name += "_"
        names.append(load_adapter(model, path, name=name))
    return names


def _group_by_module(tensors: dict[str, torch.Tensor], path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module name: (A, B)} from peft keys `base_model.model.<module>.lora_{A,B}[.<adapter>].weight`."""
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        if not key.startswith(PEFT_PREFIX) or not key.endswith(".weight"):
            raise AdapterError(f"adapter {path} has an unexpected tensor '{key}': not a LoRA adapter file")
        stem = key[len(PEFT_PREFIX) : -len(".weight")]
        for part in ("lora_A", "lora_B"):
            marker = f".{part}"
            if marker in stem:
                module_name = stem[: stem.index(marker)]
                grouped.setdefault(module_name, {})[part] = tensor
                break
        else:
            raise AdapterError(f"adapter {path} has an unexpected tensor '{key}': not a LoRA adapter file")
    if not grouped or any(len(pair) != 2 for pair in grouped.values()):
        raise AdapterError(f"adapter {path} is incomplete (missing lora_A or lora_B tensors): re-save it")
    return {m: (pair["lora_A"], pair["lora_B"]) for m, pair in grouped.items()}
