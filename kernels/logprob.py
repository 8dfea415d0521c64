"""Triton kernel + launcher: per-token log-prob log_softmax(logits / T)[n, y_n] and its gradient.

Each program owns ROWS rows and walks their vocabulary in BLOCK-wide column blocks:
  pass 1: online max m and sum d = sum_i exp((x_i - m) / T) over the raw logits x, rescaling d
          by exp((m_old - m_new) / T) whenever the max grows; then log p_y = (x_y - m) / T - log d.
  pass 2 (only when a gradient is wanted): grad_i = (1[i == y] - exp((x_i - m) / T) / d) / T.
The max is kept in raw logit units and differences are taken before scaling by 1/T: x - m is
exact for nearby fp32 values, whereas x / T rounds at the magnitude of x (1e-3 at |x| = 1e4).
Statistics stay in fp32 registers; the logits are read in their own dtype and the gradient is
written in it.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_setup import launch_config


@triton.jit
def online_max_sum(m, d, x, inv_t):
    """Fold a [ROWS, BLOCK] tile x into the running (max m, sum d of exp((x - m) / T)); -inf safe."""
    m_new = tl.maximum(m, tl.max(x, axis=1))
    m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)  # all -inf so far: avoid -inf - -inf
    d = d * tl.exp((m - m_ref) * inv_t) + tl.sum(tl.exp((x - m_ref[:, None]) * inv_t), axis=1)
    return m_new, d


@triton.jit
def _logprob_kernel(
    logits_ptr, tokens_ptr, loss_ptr, grad_ptr,
    n_rows, vocab, stride_row, stride_grad, inv_t,
    COMPUTE_GRAD: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = rows < n_rows
    row_off = rows.to(tl.int64) * stride_row
    cols = tl.arange(0, BLOCK)

    m = tl.full([ROWS], float("-inf"), tl.float32)
    d = tl.zeros([ROWS], tl.float32)
    for start in range(0, vocab, BLOCK):
        c = start + cols
        ok = row_ok[:, None] & (c < vocab)[None, :]
        x = tl.load(logits_ptr + row_off[:, None] + c[None, :], mask=ok, other=float("-inf"))
        m, d = online_max_sum(m, d, x.to(tl.float32), inv_t)
    log_d = tl.log(d)

    tok = tl.load(tokens_ptr + rows, mask=row_ok, other=0)
    x_y = tl.load(logits_ptr + row_off + tok, mask=row_ok, other=0.0).to(tl.float32)
    tl.store(loss_ptr + rows, (x_y - m) * inv_t - log_d, mask=row_ok)

    if COMPUTE_GRAD:
        for start in range(0, vocab, BLOCK):
            c = start + cols
            ok = row_ok[:, None] & (c < vocab)[None, :]
            x = tl.load(logits_ptr + row_off[:, None] + c[None, :], mask=ok, other=float("-inf")).to(tl.float32)
            p = tl.exp((x - m[:, None]) * inv_t - log_d[:, None])
            g = tl.where(c[None, :] == tok[:, None], 1.0 - p, -p) * inv_t
            g_offs = rows.to(tl.int64)[:, None] * stride_grad + c[None, :]
            tl.store(grad_ptr + g_offs, g.to(grad_ptr.dtype.element_ty), mask=ok)


def _grad_buffer(like: torch.Tensor, want_grad: bool, grad_out: torch.Tensor | None, fallback: torch.Tensor):
    """The [N, V] gradient buffer: `grad_out` (unit column stride) or a new one; `fallback` is a
    dummy pointer for kernels launched with COMPUTE_GRAD=False."""
    if not want_grad:
        return fallback
    if grad_out is None:
        return torch.empty(like.shape, dtype=like.dtype, device=like.device)
    if grad_out.shape != like.shape or grad_out.dtype != like.dtype or grad_out.stride(-1) != 1:
        raise ValueError(f"grad_out must be a {tuple(like.shape)} {like.dtype} tensor with unit column stride")
    return grad_out


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float, want_grad: bool,
                   grad_out: torch.Tensor | None = None):
    """[N, V] logits, [N] tokens -> (log-probs [N] fp32, grad [N, V] in logits' dtype or None).

    The gradient goes into `grad_out` when given, which may be `logits` itself: the token's logit
    is loaded before pass 2, and pass 2 stores each block right after loading it.
    """
    logits = logits if logits.stride(-1) == 1 else logits.contiguous()
    n, vocab = logits.shape
    loss = torch.empty(n, dtype=torch.float32, device=logits.device)
    grad = _grad_buffer(logits, want_grad, grad_out, fallback=loss)
    if n == 0:  # nothing to launch (an empty grid)
        return loss, grad if want_grad else None
    rows, block, warps = launch_config(n, vocab, logits.device)
    _logprob_kernel[(triton.cdiv(n, rows),)](
        logits, tokens.contiguous(), loss, grad,
        n, vocab, logits.stride(0), grad.stride(0), 1.0 / temperature,
        COMPUTE_GRAD=want_grad, ROWS=rows, BLOCK=block, num_warps=warps,
    )
    return loss, grad if want_grad else None
