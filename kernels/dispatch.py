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


def _check_inplace(name: str, x: torch.Tensor, other: torch.Tensor | None = None) -> bool:
    """Whether inplace=True will overwrite `x` with its gradient; ValueError where that is unsafe.

    Nothing is written when no gradient is wanted (grad mode off, or `x` does not require grad).
    Otherwise `x` must be contiguous (its storage is the [N, V] gradient buffer), must not be a
    leaf or a view of one (that would destroy a tensor the caller holds as data, e.g. a parameter;
    PyTorch forbids in-place ops on those too), and must not share storage with `other` (the
    teacher, still being read).  Whether anyone else reads `x` later cannot be checked here: that
    is the caller's promise (see `per_token_kl`); autograd nodes that saved `x` are caught at
    backward by its bumped version counter.
    """
    if not (torch.is_grad_enabled() and x.requires_grad):
        return False
    if not x.is_contiguous():
        raise ValueError(f"inplace=True needs a contiguous {name} (its storage becomes the gradient), "
                         f"got strides {x.stride()} for shape {tuple(x.shape)}")
    root = x if x._base is None else x._base
    if root.is_leaf:
        raise ValueError(f"inplace=True would overwrite {name}, a leaf tensor that requires grad (or a view "
                         "of one); pass logits computed in the graph (e.g. hidden @ lm_head.T) or inplace=False")
    if other is not None and other.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
        raise ValueError(f"inplace=True needs {name} not to share storage with the teacher logits")
    return True


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0,
                   inplace: bool = False) -> torch.Tensor:
    """log_softmax(logits / T)[..., tokens]: logits [..., V], tokens [...] int -> [...] fp32.

    Differentiable w.r.t. `logits`; the softmax is never materialised.  Backward may run once per
    call (the gradient buffer is scaled in place).

    inplace=True (opt-in) writes the gradient into `logits`' own storage during the forward, so
    forward + backward allocate no [N, V] tensor at all.  Contract: after the call `logits` holds
    garbage (the gradient), so the caller must not read it again, in or outside autograd; it must
    be contiguous and not a leaf (ValueError otherwise).  Typical use: logits freshly computed by
    an lm_head for this loss only.  When no gradient is wanted, nothing is overwritten.
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
    into_input = bool(inplace) and _check_inplace("logits", logits)

    impl = _logprob_impl(logits.device)
    out = autograd.apply(impl, logits.reshape(-1, vocab), tokens.reshape(-1).long(), t, into_input=into_input)
    return out.reshape(lead)


def per_token_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    kind: str = "reverse",
    beta: float = 0.5,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """Per-row divergence between p = softmax(student / T) and q = softmax(teacher / T).

    kind: 'reverse' KL(p||q), 'forward' KL(q||p), or 'jsd': beta KL(q||m) + (1-beta) KL(p||m) with
    m = beta q + (1-beta) p (TRL `generalized_jsd_loss` / Liger `LigerJSD` convention: beta weights
    the teacher; beta = 0 is forward KL, beta = 1 reverse KL).  Logits [..., V] (fp32/bf16/fp16,
    fp32 accumulation) -> [...] fp32.  Gradient flows to the student only; rows where `mask`
    ([...], bool or 0/1) is False give 0 loss and 0 gradient.  Backward may run once per call.

    inplace=True (opt-in) writes the gradient into `student_logits`' own storage during the
    forward (as Liger-Kernel's cross-entropy does), so forward + backward allocate no [N, V]
    tensor; backward scales it by grad_output.  Contract: after the call `student_logits` holds
    garbage (the gradient), so the caller must not read it again, in or outside autograd; it must
    be contiguous, not a leaf, and not share storage with the teacher (ValueError otherwise).
    Typical use: logits freshly computed by a (chunked) lm_head for the distillation loss only.
    When no gradient is wanted (no_grad, or a student that does not require grad) nothing is
    overwritten.  Not the default because only the caller knows that nobody else reads the logits.
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

    into_input = bool(inplace) and _check_inplace("student_logits", student_logits, teacher_logits)

    impl = _kl_impl(student_logits.device)
    out = autograd.apply(impl, student_logits.reshape(-1, vocab), teacher_logits.detach().reshape(-1, vocab),
                         kind, beta, t, mask, into_input=into_input)
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
