"""Triton kernel + launcher: per-row KL / JSD between student and teacher logits, with the
gradient w.r.t. the student logits.  Conventions and gradient formulas: see `torch_path`.

Each program owns ROWS rows and walks their vocabulary in BLOCK-wide column blocks:
  pass 1: online max / sum of exp for both rows (as in `logprob`), giving log p and log q of any
          element as (x - m) / T - log d without materialising either softmax.  Reverse KL also
          gets its loss here, online (see `_online_reverse_kl`), and skips pass 2;
  pass 2: the loss, sum_i of elementwise terms (forward KL also writes its gradient, (p - q) / T,
          which needs no row total);
  pass 3 (reverse KL, JSD, only when a gradient is wanted): the gradient, which needs the row
          total (e.g. p_i (log p_i - log q_i - KL) / T).
So each logit row is read once (reverse KL without gradient), twice (reverse KL with gradient,
forward KL, JSD without gradient) or three times (JSD with gradient).
A term whose weight underflows to 0 is 0 (0 log 0 = 0), so -inf teacher logits are fine wherever
the divergence is finite.  Masked rows are never read: their loss and gradient are 0.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .logprob import _grad_buffer, online_max_sum
from .triton_setup import launch_config

KINDS = {"reverse": 0, "forward": 1, "jsd": 2}


@triton.jit
def _tile(ptr, row_off, c, ok):
    return tl.load(ptr + row_off[:, None] + c[None, :], mask=ok, other=float("-inf")).to(tl.float32)


@triton.jit
def _log_softmax(x, m, log_d, inv_t):
    return (x - m[:, None]) * inv_t - log_d[:, None]


@triton.jit
def _tile_log_probs(s_ptr, s_off, t_ptr, t_off, c, ok, m_s, log_ds, m_t, log_dt, inv_t):
    """Student and teacher log-probabilities over one tile of columns, from their row statistics."""
    logp = _log_softmax(_tile(s_ptr, s_off, c, ok), m_s, log_ds, inv_t)
    logq = _log_softmax(_tile(t_ptr, t_off, c, ok), m_t, log_dt, inv_t)
    return logp, logq


@triton.jit
def _store_tile(ptr, row_off, c, x, row_ok, vocab):
    """Store a [ROWS, BLOCK] tile in the pointer's dtype, skipping padded rows and columns."""
    tl.store(ptr + row_off[:, None] + c[None, :], x.to(ptr.dtype.element_ty), mask=row_ok[:, None] & (c < vocab)[None, :])


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
def _online_reverse_kl(m_s, d_s, m_t, d_t, b, xs, xt, inv_t):
    """Fold [ROWS, BLOCK] tiles xs, xt into the running statistics of both rows and into
    b = sum_i e^{u_i} (u_i - v_i), with u = (xs - m_s) / T and v = (xt - m_t) / T taken relative
    to the running maxima; in the end KL(p || q) = b / d_s - log d_s + log d_t.

    When the maxima grow by (ds, dt) (in units of 1/T), every earlier u - v changes by dt - ds
    and its weight by e^{-ds}: b <- e^{-ds} (b + (dt - ds) d_s).  Keeping u, v relative to the
    current maxima (a per-row offset) means no large values cancel: E_p[x_s - x_t] and
    LSE(s) - LSE(t) can each be ~1e4 while KL is ~1.  A zero weight contributes 0 (0 log 0 = 0);
    a teacher -inf where the student has mass makes b, hence KL, +inf."""
    ms_new = tl.maximum(m_s, tl.max(xs, axis=1))
    mt_new = tl.maximum(m_t, tl.max(xt, axis=1))
    ms_ref = tl.where(ms_new == float("-inf"), 0.0, ms_new)  # all -inf so far: avoid -inf - -inf
    mt_ref = tl.where(mt_new == float("-inf"), 0.0, mt_new)
    # an old max of -inf had zero weight (d_s = 0) or an infinite b already: shift 0
    shift = tl.where(m_t == float("-inf"), 0.0, (mt_new - m_t) * inv_t) \
        - tl.where(m_s == float("-inf"), 0.0, (ms_new - m_s) * inv_t)
    alpha = tl.exp((m_s - ms_ref) * inv_t)
    u = (xs - ms_ref[:, None]) * inv_t
    v = (xt - mt_ref[:, None]) * inv_t
    e = tl.exp(u)
    b = alpha * (b + shift * d_s) + tl.sum(tl.where(e > 0.0, e * (u - v), 0.0), axis=1)
    d_s = alpha * d_s + tl.sum(e, axis=1)
    d_t = d_t * tl.exp((m_t - mt_ref) * inv_t) + tl.sum(tl.exp(v), axis=1)
    return ms_new, d_s, mt_new, d_t, b


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

    # pass 1: softmax statistics of both rows (and, for reverse KL, the loss)
    m_s = tl.full([ROWS], float("-inf"), tl.float32)
    m_t = tl.full([ROWS], float("-inf"), tl.float32)
    d_s = tl.zeros([ROWS], tl.float32)
    d_t = tl.zeros([ROWS], tl.float32)
    b = tl.zeros([ROWS], tl.float32)
    for start in range(0, vocab, BLOCK):
        c = start + cols
        ok = live[:, None] & (c < vocab)[None, :]
        if KIND == 0:
            m_s, d_s, m_t, d_t, b = _online_reverse_kl(
                m_s, d_s, m_t, d_t, b, _tile(s_ptr, s_off, c, ok), _tile(t_ptr, t_off, c, ok), inv_t)
        else:
            m_s, d_s = online_max_sum(m_s, d_s, _tile(s_ptr, s_off, c, ok), inv_t)
            m_t, d_t = online_max_sum(m_t, d_t, _tile(t_ptr, t_off, c, ok), inv_t)
    log_ds = tl.log(d_s)
    log_dt = tl.log(d_t)

    # pass 2 (forward KL, JSD): the loss; kl_pm = KL(p || m) is the JSD's student term (and its
    # gradient's total)
    kl = tl.zeros([ROWS], tl.float32)
    kl_pm = tl.zeros([ROWS], tl.float32)
    if KIND == 0:
        kl = b / d_s - log_ds + log_dt
    else:
        for start in range(0, vocab, BLOCK):
            c = start + cols
            logp, logq = _tile_log_probs(s_ptr, s_off, t_ptr, t_off, c, live[:, None] & (c < vocab)[None, :],
                                         m_s, log_ds, m_t, log_dt, inv_t)
            p = tl.exp(logp)
            q = tl.exp(logq)
            if KIND == 1:
                kl += tl.sum(_xlogy_diff(q, logq, logp), axis=1)
                if COMPUTE_GRAD:
                    g = tl.where(live[:, None], (p - q) * inv_t, 0.0)
                    _store_tile(grad_ptr, g_off, c, g, row_ok, vocab)
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
            logp, logq = _tile_log_probs(s_ptr, s_off, t_ptr, t_off, c, live[:, None] & (c < vocab)[None, :],
                                         m_s, log_ds, m_t, log_dt, inv_t)
            p = tl.exp(logp)
            if KIND == 0:
                g = tl.where(p > 0.0, p * (logp - logq - kl[:, None]), 0.0)
            else:
                logm = _log_mixture(logp, logq, log_beta, log_1m_beta)
                g = tl.where(p > 0.0, (1.0 - beta) * p * (logp - logm - kl_pm[:, None]), 0.0)
            g = tl.where(live[:, None], g * inv_t, 0.0)
            _store_tile(grad_ptr, g_off, c, g, row_ok, vocab)


def per_token_kl(student, teacher, kind, beta, temperature, mask, want_grad, grad_out=None):
    """[N, V] logits -> (loss [N] fp32, grad [N, V] in the student's dtype or None).

    `kind` is 'reverse', 'forward' or 'jsd' with 0 < beta < 1 (the caller maps beta 0/1);
    `mask` is None or a bool [N].  The gradient goes into `grad_out` when given, which may be
    `student` itself: every block of a row is stored only in the row's last pass, after that pass
    has loaded it, and each row belongs to one program, so no logit is read after it is overwritten.
    """
    student = student if student.stride(-1) == 1 else student.contiguous()
    teacher = teacher if teacher.stride(-1) == 1 else teacher.contiguous()
    n, vocab = student.shape
    loss = torch.empty(n, dtype=torch.float32, device=student.device)
    grad = _grad_buffer(student, want_grad, grad_out, fallback=loss)
    mask_i8 = mask.to(torch.int8) if mask is not None else loss
    jsd = kind == "jsd"
    if n == 0:  # nothing to launch (an empty grid)
        return loss, grad if want_grad else None
    rows, block, warps = launch_config(n, vocab, student.device)
    _kl_kernel[(triton.cdiv(n, rows),)](
        student, teacher, mask_i8, loss, grad,
        n, vocab, student.stride(0), teacher.stride(0), grad.stride(0), 1.0 / temperature,
        beta, math.log(beta) if jsd else 0.0, math.log1p(-beta) if jsd else 0.0,
        KIND=KINDS[kind], HAS_MASK=mask is not None, COMPUTE_GRAD=want_grad,
        ROWS=rows, BLOCK=block, num_warps=warps,
    )
    return loss, grad if want_grad else None
