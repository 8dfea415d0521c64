"""One autograd.Function for every fused loss here: the forward already computed the gradient.

`compute(x, *args, want_grad=...)` returns (loss [N], grad [N, V] or None), where grad is
d loss[n] / d x[n, :] (each row's loss depends on its own row only).  Backward then only scales each
gradient row by grad_output[n].  By default it scales the saved buffer in place and hands it to
autograd, so forward + backward holds one gradient-sized tensor, not two (Liger-Kernel does the
same); the price is that backward can run only once per forward.  `inplace=False` keeps the
buffer intact (for gradcheck, which runs backward many times).
"""
from __future__ import annotations

import torch


class PrecomputedGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, compute, x, args, inplace):
        loss, grad = compute(x, *args, want_grad=ctx.needs_input_grad[1])
        ctx.grad, ctx.inplace = grad, inplace
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad = ctx.grad
        if grad is None:
            raise RuntimeError(
                "kernels: this loss's gradient buffer was already used by an earlier backward "
                "(it is scaled in place to save memory); recompute the loss to backprop again"
            )
        scale = grad_loss.unsqueeze(-1)
        if ctx.inplace:
            ctx.grad = None
            return None, grad.mul_(scale), None, None
        return None, grad * scale, None, None


def apply(compute, x: torch.Tensor, *args, inplace: bool = True) -> torch.Tensor:
    """loss = compute(x, *args) with its precomputed gradient wired into autograd."""
    return PrecomputedGrad.apply(compute, x, args, inplace)
