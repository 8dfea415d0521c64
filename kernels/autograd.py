"""One autograd.Function for every fused loss here: the forward already computed the gradient.

`compute(x, *args, want_grad=..., grad_out=...)` returns (loss [N], grad [N, V] or None), where
grad is d loss[n] / d x[n, :] (each row's loss depends on its own row only), written into
`grad_out` when one is given.  Backward then only scales each gradient row by grad_output[n].

Where the gradient lives, from most to least memory:
  scale_in_place=False   a fresh buffer, scaled into a copy: backward can run several times
                         (gradcheck needs this); forward + backward hold two [N, V] tensors.
  default                a fresh buffer, scaled in place and handed to autograd: one [N, V]
                         tensor, backward runs once (Liger-Kernel does the same).
  into_input=True        the gradient overwrites x itself during the forward (Liger's
                         cross-entropy trick): no [N, V] tensor at all beyond x.  x's values are
                         gone after the call, so the caller must own x and never read it again.
                         The kernels write through raw pointers, so we bump x's autograd version
                         counter (`increment_version`, what `mark_dirty` does underneath): any
                         autograd node that saved x, or a view of its storage, for its own
                         backward then raises "modified by an inplace operation" instead of
                         silently using the gradient as data.  (`mark_dirty` proper cannot be
                         used: autograd forbids a Function that modifies a view input in place
                         from also returning the loss, and flattened [B, T, V] logits are a view.)
"""
from __future__ import annotations

import torch
from torch.autograd.graph import increment_version


class PrecomputedGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, compute, x, args, want_grad, into_input, scale_in_place):
        into_input = into_input and want_grad  # nothing is written when no gradient is wanted
        loss, grad = compute(x, *args, want_grad=want_grad, grad_out=x if into_input else None)
        if into_input:
            increment_version(x)
            ctx.version = x._version  # to catch writes to x between forward and backward
        ctx.grad, ctx.into_input = grad, into_input
        ctx.scale_in_place = scale_in_place or into_input  # x is the only copy: never duplicate it
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad = ctx.grad
        if grad is None:
            raise RuntimeError(
                "kernels: this loss's gradient buffer was already used by an earlier backward "
                "(it is scaled in place to save memory); recompute the loss to backprop again"
            )
        if ctx.into_input and grad._version != ctx.version:
            raise RuntimeError(
                "kernels: the logits passed with inplace=True hold the loss's gradient and were "
                "modified before backward; do not touch them between the loss and backward()"
            )
        scale = grad_loss.unsqueeze(-1)
        if ctx.scale_in_place:
            ctx.grad = None
            return None, grad.mul_(scale), None, None, None, None
        return None, grad * scale, None, None, None, None


def apply(compute, x: torch.Tensor, *args, into_input: bool = False, scale_in_place: bool = True) -> torch.Tensor:
    """loss = compute(x, *args) with its precomputed gradient wired into autograd (see module doc).

    The gradient is computed only when autograd will need it: `ctx.needs_input_grad` reads True
    even under `torch.no_grad()`, so grad mode is checked here.
    """
    want_grad = torch.is_grad_enabled() and x.requires_grad
    return PrecomputedGrad.apply(compute, x, args, want_grad, into_input, scale_in_place)
