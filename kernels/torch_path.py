"""Chunked pure-torch path (the CPU backend): loss and analytic gradient, a few rows at a time.

Each function takes 2-D [N, V] logits and returns (loss [N] fp32, grad [N, V] in the logits' dtype
or None); the gradient goes into `grad_out` when given, which may be the logits themselves (the
in-place mode): every chunk's rows are read into fp32 temporaries before its gradient is stored.  Only `CHUNK_ROWS` rows are ever upcast to fp32 at once, so the temporaries stay a few
MB even at V = 151,936, while a naive `log_softmax` + `kl_div` + backward holds several full
[N, V] copies.  Gradients (with s = student / T, p = softmax(s), q = softmax(teacher / T)):

  token log-prob  d/dlogits_i = (1[i == y] - p_i) / T
  reverse KL      d/dlogits_i = p_i (log p_i - log q_i - KL(p||q)) / T
  forward KL      d/dlogits_i = (p_i - q_i) / T
  jsd(beta)       d/dlogits_i = (1 - beta) p_i (log p_i - log m_i - KL(p||m)) / T,  m = beta q + (1-beta) p

(the beta KL(q||m) term's derivative cancels against part of the (1 - beta) KL(p||m) term's).
No T^2 factor is applied: scale the loss yourself if you want Hinton-style distillation.
"""
from __future__ import annotations

import math

import torch

CHUNK_ROWS = 16  # rows upcast at once: ~60 MB of temporaries at V = 151,936; fewer, larger ops
# than 4 rows win on a busy 2-core machine (each op is a parallel region that waits for a core)


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 accumulation, or fp64 for fp64 inputs (used by gradcheck)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _chunks(n: int):
    for start in range(0, n, CHUNK_ROWS):
        yield slice(start, min(start + CHUNK_ROWS, n))


def _where_mass(w: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """value where the weight w > 0, else 0: the 0 log 0 = 0 convention (as in the kernels)."""
    return torch.where(w > 0, value, torch.zeros((), dtype=value.dtype))


def _log_softmax(x: torch.Tensor, temperature: float, acc: torch.dtype) -> torch.Tensor:
    """log_softmax(x / T) in `acc`.  For T != 1 the row max is subtracted before dividing by T:
    x - max is exact for nearby values, whereas x / T rounds at the magnitude of x (1e-3 at
    |x| = 1e4)."""
    x = x.to(acc)
    if temperature != 1.0:
        row_max = x.amax(-1, keepdim=True)
        x = (x - torch.where(row_max > -math.inf, row_max, torch.zeros((), dtype=acc))).div_(temperature)
    return torch.log_softmax(x, dim=-1)


def _grad_buffer(like: torch.Tensor, want_grad: bool, grad_out: torch.Tensor | None):
    if not want_grad:
        return None
    return grad_out if grad_out is not None else torch.empty_like(like)


def token_logprobs(logits, tokens, temperature, want_grad, grad_out=None):
    n, _ = logits.shape
    acc = _acc_dtype(logits.dtype)
    loss = torch.empty(n, dtype=acc, device=logits.device)
    grad = _grad_buffer(logits, want_grad, grad_out)
    for rows in _chunks(n):
        logp = _log_softmax(logits[rows], temperature, acc)
        tok = tokens[rows].unsqueeze(-1)
        loss[rows] = logp.gather(-1, tok).squeeze(-1)
        if want_grad:
            g = logp.exp_().neg_()
            g.scatter_add_(-1, tok, torch.ones_like(tok, dtype=acc))
            grad[rows] = g.div_(temperature)
    return loss, grad


def per_token_kl(student, teacher, kind, beta, temperature, mask, want_grad, grad_out=None):
    """`kind` is 'reverse', 'forward' or 'jsd' with 0 < beta < 1 (the caller maps beta 0/1)."""
    n, _ = student.shape
    acc = _acc_dtype(student.dtype)
    loss = torch.empty(n, dtype=acc, device=student.device)
    grad = _grad_buffer(student, want_grad, grad_out)
    for rows in _chunks(n):
        logp = _log_softmax(student[rows], temperature, acc)
        logq = _log_softmax(teacher[rows], temperature, acc)
        p = logp.exp()
        q = logq.exp() if kind != "reverse" else None
        if kind == "reverse":
            diff = logq.neg_().add_(logp)  # log p - log q
            kl = torch.linalg.vecdot(p, diff)
            if kl.isnan().any():  # 0 * inf terms (p == 0 with log q or log p = -inf): count them as 0
                kl = torch.linalg.vecdot(p, diff.masked_fill_(p == 0, 0))
            g = diff.sub_(kl.unsqueeze(-1)).mul_(p) if want_grad else None
        elif kind == "forward":
            kl = torch.linalg.vecdot(q, _where_mass(q, logq - logp))
            g = p.sub_(q) if want_grad else None
        else:  # jsd
            # log m = log(beta q + (1 - beta) p); logaddexp(-inf, -inf) is -inf, as wanted
            logm = torch.logaddexp(logq + math.log(beta), logp + math.log1p(-beta))
            diff_p = _where_mass(p, logp - logm)
            kl_p = torch.linalg.vecdot(p, diff_p)
            kl_q = torch.linalg.vecdot(q, _where_mass(q, logq - logm))
            kl = beta * kl_q + (1 - beta) * kl_p
            g = diff_p.sub_(kl_p.unsqueeze(-1)).mul_(p).mul_(1 - beta) if want_grad else None
        loss[rows] = kl
        if want_grad:
            grad[rows] = g if temperature == 1.0 else g.div_(temperature)
    if mask is not None:
        loss = torch.where(mask, loss, torch.zeros((), dtype=acc))
        if want_grad:
            grad.masked_fill_(~mask.unsqueeze(-1), 0)
    return loss, grad
