"""Public entry points: validate inputs, pick a backend, flatten leading dims, wire autograd."""
from __future__ import annotations

import math

import torch

from . import autograd, torch_path
from .triton_setup import require_triton

_BACKENDS = ("auto", "triton", "torch")
_backend = "auto"
_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def set_backend(name: str) -> None:
    """'auto' (CUDA tensors -> Triton, CPU -> torch), 'triton' (always; on CPU this needs
    TRITON_INTERPRET=1 before triton is imported) or 'torch' (always the chunked torch path)."""
    global _backend
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {name!r}")
    _backend = name


def get_backend() -> str:
    return _backend


def _use_triton(device: torch.device) -> bool:
    use = _backend == "triton" or (_backend == "auto" and device.type == "cuda")
    if use:
        require_triton(device)
    return use


def _check_logits(name: str, x) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype not in _FLOAT_DTYPES:
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a floating tensor (fp32, bf16, fp16 or fp64) of shape [..., V], got {got}")
    if x.dim() < 1 or x.shape[-1] < 1:
        raise ValueError(f"{name} must have shape [..., V] with V >= 1, got {tuple(x.shape)}")


def _check_temperature(temperature) -> float:
    t = float(temperature)
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return t


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log_softmax(logits / T)[..., tokens]: logits [..., V], tokens [...] int -> [...] fp32.

    Differentiable w.r.t. `logits`; the softmax is never materialised.  Backward may run once per
    call (the gradient buffer is scaled in place).
    """
    _check_logits("logits", logits)
    lead, vocab = tuple(logits.shape[:-1]), logits.shape[-1]
    if not isinstance(tokens, torch.Tensor) or tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise ValueError(f"tokens must be an integer tensor of shape {lead}, got {getattr(tokens, 'dtype', type(tokens).__name__)}")
    if tuple(tokens.shape) != lead:
        raise ValueError(f"tokens must have shape {lead} (logits' leading dims), got {tuple(tokens.shape)}")
    if tokens.device != logits.device:
        raise ValueError(f"tokens must be on {logits.device}, got {tokens.device}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab):
        raise ValueError(f"tokens must be in [0, {vocab}) (V = logits.shape[-1]), got range "
                         f"[{int(tokens.min())}, {int(tokens.max())}]")
    t = _check_temperature(temperature)

    impl = _logprob_impl(logits.device)
    out = autograd.apply(impl, logits.reshape(-1, vocab), tokens.reshape(-1).long(), t)
    return out.reshape(lead)


def per_token_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    kind: str = "reverse",
    beta: float = 0.5,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-row divergence between p = softmax(student / T) and q = softmax(teacher / T).

    kind: 'reverse' KL(p||q), 'forward' KL(q||p), or 'jsd': beta KL(q||m) + (1-beta) KL(p||m) with
    m = beta q + (1-beta) p (TRL `generalized_jsd_loss` / Liger `LigerJSD` convention: beta weights
    the teacher; beta = 0 is forward KL, beta = 1 reverse KL).  Logits [..., V] (fp32/bf16/fp16,
    fp32 accumulation) -> [...] fp32.  Gradient flows to the student only; rows where `mask`
    ([...], bool or 0/1) is False give 0 loss and 0 gradient.  Backward may run once per call.
    """
    _check_logits("student_logits", student_logits)
    _check_logits("teacher_logits", teacher_logits)
    shape = tuple(student_logits.shape)
    if tuple(teacher_logits.shape) != shape:
        raise ValueError(f"teacher_logits must have the student's shape {shape}, got {tuple(teacher_logits.shape)}")
    if teacher_logits.device != student_logits.device:
        raise ValueError(f"teacher_logits must be on {student_logits.device}, got {teacher_logits.device}")
    if kind not in ("reverse", "forward", "jsd"):
        raise ValueError(f"kind must be 'reverse', 'forward' or 'jsd', got {kind!r}")
    beta = float(beta)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    t = _check_temperature(temperature)
    lead, vocab = shape[:-1], shape[-1]
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != lead:
            raise ValueError(f"mask must be a tensor of shape {lead} (the logits' leading dims), "
                             f"got {tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__}")
        if mask.device != student_logits.device:
            raise ValueError(f"mask must be on {student_logits.device}, got {mask.device}")
        mask = mask.reshape(-1) != 0
    if kind == "jsd" and beta in (0.0, 1.0):  # TRL's limits of the generalised JSD
        kind = "forward" if beta == 0.0 else "reverse"

    impl = _kl_impl(student_logits.device)
    out = autograd.apply(impl, student_logits.reshape(-1, vocab), teacher_logits.detach().reshape(-1, vocab),
                         kind, beta, t, mask)
    return out.reshape(lead)


def _logprob_impl(device: torch.device):
    if _use_triton(device):
        from . import logprob

        return logprob.token_logprobs
    return torch_path.token_logprobs


def _kl_impl(device: torch.device):
    if _use_triton(device):
        from . import kl

        return kl.per_token_kl
    return torch_path.per_token_kl
