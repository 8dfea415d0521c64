"""Straightforward torch formulas: the test oracle (run them in float64).

They materialise full [N, V] log-softmax tensors, so they are for checking, not for training.
Autograd through them gives the reference gradients.

Conventions (shared by every backend):
  p = softmax(student / T) (student), q = softmax(teacher / T) (teacher);
  reverse KL = KL(p || q) = sum_i p_i (log p_i - log q_i)
  forward KL = KL(q || p) = sum_i q_i (log q_i - log p_i)
  jsd(beta)  = beta KL(q || m) + (1 - beta) KL(p || m),  m = beta q + (1 - beta) p,
which is TRL's `generalized_jsd_loss` / Liger's `LigerJSD` convention (there `beta` weights the
teacher); as in TRL, beta = 0 means forward KL and beta = 1 means reverse KL.
Terms with a zero weight are 0 (0 log 0 = 0), so a -inf teacher logit contributes nothing to the
forward KL and the JSD, and makes the reverse KL +inf where the student has mass.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def token_logprobs_ref(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log_softmax(logits / T)[..., tokens] in the dtype of `logits`."""
    logp = F.log_softmax(logits / temperature, dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def _kl_terms(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """Elementwise a (log a - log b) with 0 where a == 0; NaN-free gradients (double where)."""
    has_mass = log_a > -math.inf
    diff = torch.where(has_mass, log_a - log_b, torch.zeros_like(log_a))
    return log_a.exp() * diff


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    return _kl_terms(log_a, log_b).sum(-1)


def per_token_kl_ref(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    kind: str = "reverse",
    beta: float = 0.5,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-row divergence between softmax(student / T) and softmax(teacher / T) (see module doc)."""
    logp = F.log_softmax(student_logits / temperature, dim=-1)
    logq = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    if kind == "jsd" and beta == 0.0:
        kind = "forward"
    if kind == "jsd" and beta == 1.0:
        kind = "reverse"
    if kind == "reverse":
        loss = _kl(logp, logq)
    elif kind == "forward":
        loss = _kl(logq, logp)
    elif kind == "jsd":
        # log m = logaddexp(log beta + log q, log(1 - beta) + log p), safe when both are -inf.
        a, b = logq + math.log(beta), logp + math.log1p(-beta)
        hi = torch.maximum(a, b)
        finite = hi > -math.inf
        hi_safe = torch.where(finite, hi, torch.zeros_like(hi))
        total = torch.where(finite, torch.exp(a - hi_safe) + torch.exp(b - hi_safe), torch.ones_like(hi))
        logm = torch.where(finite, hi_safe + torch.log(total), hi)
        loss = beta * _kl(logq, logm) + (1 - beta) * _kl(logp, logm)
    else:
        raise ValueError(f"kind must be 'reverse', 'forward' or 'jsd', got {kind!r}")
    if mask is not None:
        loss = torch.where(mask.bool(), loss, torch.zeros_like(loss))
    return loss
