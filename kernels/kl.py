"""Triton kernel + launcher: per-row KL / JSD between student and teacher logits, with the
gradient w.r.t. the student logits.  Conventions and gradient formulas: see `torch_path`.

Each program owns ROWS rows and walks their vocabulary in BLOCK-wide column blocks:
  pass 1: online max / sum of exp for both rows (as in `logprob`), giving log p and log q of any
          element as (x - m) / T - log d without materialising either softmax;
  pass 2: the loss, sum_i of elementwise terms (forward KL also writes its gradient, (p - q) / T,
          which needs no row total);
  pass 3 (reverse KL, JSD, only when a gradient is wanted): the gradient, which needs the row
          total from pass 2 (e.g. p_i (log p_i - log q_i - KL) / T).
A term whose weight underflows to 0 is 0 (0 log 0 = 0), so -inf teacher logits are fine wherever
the divergence is finite.  Masked rows are never read: their loss and gradient are 0.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .logprob import online_max_sum
from .triton_setup import launch_config

KINDS = {"reverse": 0, "forward": 1, "jsd": 2}


@triton.jit
def _tile(ptr, row_off, c, ok):
    return tl.load(ptr + row_off[:, None] + c[None, :], mask=ok, other=float("-inf")).to(tl.float32)


@triton.jit
def _log_softmax(x, m, log_d, inv_t):
    return (x - m[:, None]) * inv_t - log_d[:, None]


@triton.jit
def _log_mixture(logp, logq, log_beta, log_1m_beta):
    """log m = log(beta q + (1 - beta) p) = logaddexp(log beta + log q, log(1 - beta) + log p)."""
    a = logq + log_beta
    b = logp + log_1m_beta
    hi = tl.maximum(a, b)
    lo = tl.minimum(a, b)
    hi_ref = tl.where(hi == float("-inf"), 0.0, hi)
    return tl.where(hi == float("-inf"), hi, hi + tl.log(1.0 + tl.exp(lo - hi_ref)))


@triton.jit
def _xlogy_diff(w, log_w, log_other):
    """Elementwise w (log w - log other) with 0 where w == 0."""
    return tl.where(w > 0.0, w * (log_w - log_other), 0.0)


@triton.jit
def _kl_kernel(
    s_ptr, t_ptr, mask_ptr, loss_ptr, grad_ptr,
    n_rows, vocab, stride_s, stride_t, stride_g, inv_t, beta, log_beta, log_1m_beta,
    KIND: tl.constexpr, HAS_MASK: tl.constexpr, COMPUTE_GRAD: tl.constexpr,
    ROWS: tl.constexpr, BLOCK: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = rows < n_rows
    live = row_ok
    if HAS_MASK:
        live = live & (tl.load(mask_ptr + rows, mask=row_ok, other=0) != 0)
    s_off = rows.to(tl.int64) * stride_s
    t_off = rows.to(tl.int64) * stride_t
    g_off = rows.to(tl.int64) * stride_g
    cols = tl.arange(0, BLOCK)

    # pass 1: softmax statistics of both rows
    m_s = tl.full([ROWS], float("-inf"), tl.float32)
    m_t = tl.full([ROWS], float("-inf"), tl.float32)
    d_s = tl.zeros([ROWS], tl.float32)
    d_t = tl.zeros([ROWS], tl.float32)
    for start in range(0, vocab, BLOCK):
        c = start + cols
        ok = live[:, None] & (c < vocab)[None, :]
        m_s, d_s = online_max_sum(m_s, d_s, _tile(s_ptr, s_off, c, ok), inv_t)
        m_t, d_t = online_max_sum(m_t, d_t, _tile(t_ptr, t_off, c, ok), inv_t)
    log_ds = tl.log(d_s)
    log_dt = tl.log(d_t)

    # pass 2: the loss; kl_pm = KL(p || m) is the JSD's student term (and its gradient's total)
    kl = tl.zeros([ROWS], tl.float32)
    kl_pm = tl.zeros([ROWS], tl.float32)
    for start in range(0, vocab, BLOCK):
        c = start + cols
        ok = live[:, None] & (c < vocab)[None, :]
        logp = _log_softmax(_tile(s_ptr, s_off, c, ok), m_s, log_ds, inv_t)
        logq = _log_softmax(_tile(t_ptr, t_off, c, ok), m_t, log_dt, inv_t)
        p = tl.exp(logp)
        q = tl.exp(logq)
        if KIND == 0:
            kl += tl.sum(_xlogy_diff(p, logp, logq), axis=1)
        elif KIND == 1:
            kl += tl.sum(_xlogy_diff(q, logq, logp), axis=1)
            if COMPUTE_GRAD:
                g = tl.where(live[:, None], (p - q) * inv_t, 0.0)
                offs = g_off[:, None] + c[None, :]
                tl.store(grad_ptr + offs, g.to(grad_ptr.dtype.element_ty), mask=row_ok[:, None] & (c < vocab)[None, :])
        else:
            logm = _log_mixture(logp, logq, log_beta, log_1m_beta)
            kl += tl.sum(_xlogy_diff(q, logq, logm), axis=1)
            kl_pm += tl.sum(_xlogy_diff(p, logp, logm), axis=1)
    if KIND == 2:
        kl = beta * kl + (1.0 - beta) * kl_pm
    tl.store(loss_ptr + rows, tl.where(live, kl, 0.0), mask=row_ok)

    # pass 3: gradients that need the row total
    if COMPUTE_GRAD and KIND != 1:
        for start in range(0, vocab, BLOCK):
            c = start + cols
            ok = live[:, None] & (c < vocab)[None, :]
            logp = _log_softmax(_tile(s_ptr, s_off, c, ok), m_s, log_ds, inv_t)
            logq = _log_softmax(_tile(t_ptr, t_off, c, ok), m_t, log_dt, inv_t)
            p = tl.exp(logp)
            if KIND == 0:
                g = tl.where(p > 0.0, p * (logp - logq - kl[:, None]), 0.0)
            else:
                logm = _log_mixture(logp, logq, log_beta, log_1m_beta)
                g = tl.where(p > 0.0, (1.0 - beta) * p * (logp - logm - kl_pm[:, None]), 0.0)
            g = tl.where(live[:, None], g * inv_t, 0.0)
            offs = g_off[:, None] + c[None, :]
            tl.store(grad_ptr + offs, g.to(grad_ptr.dtype.element_ty), mask=row_ok[:, None] & (c < vocab)[None, :])


def per_token_kl(student, teacher, kind, beta, temperature, mask, want_grad):
    """[N, V] logits -> (loss [N] fp32, grad [N, V] in the student's dtype or None).

    `kind` is 'reverse', 'forward' or 'jsd' with 0 < beta < 1 (the caller maps beta 0/1);
    `mask` is None or a bool [N].
    """
    student = student if student.stride(-1) == 1 else student.contiguous()
    teacher = teacher if teacher.stride(-1) == 1 else teacher.contiguous()
    n, vocab = student.shape
    loss = torch.empty(n, dtype=torch.float32, device=student.device)
    grad = torch.empty((n, vocab), dtype=student.dtype, device=student.device) if want_grad else loss
    mask_i8 = mask.to(torch.int8) if mask is not None else loss
    jsd = kind == "jsd"
    if n == 0:  # nothing to launch (an empty grid)
        return loss, grad if want_grad else None
    rows, block, warps = launch_config(n, vocab, student.device)
    _kl_kernel[(triton.cdiv(n, rows),)](
        student, teacher, mask_i8, loss, grad,
        n, vocab, student.stride(0), teacher.stride(0), vocab, 1.0 / temperature,
        beta, math.log(beta) if jsd else 0.0, math.log1p(-beta) if jsd else 0.0,
        KIND=KINDS[kind], HAS_MASK=mask is not None, COMPUTE_GRAD=want_grad,
        ROWS=rows, BLOCK=block, num_warps=warps,
    )
    return loss, grad if want_grad else None
