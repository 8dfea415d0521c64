"""Triton availability and launch settings shared by the Triton kernels.

`triton` is imported lazily (only when the Triton backend is first used) so that `import kernels`
works without triton or a GPU, and so that `TRITON_INTERPRET=1` can still be set before the first
import.  The kernels read each logit row in blocks of `BLOCK_V` columns and process
`ROWS_PER_PROGRAM` rows per program as one 2-D tile ([rows, BLOCK_V]).

Tests override the two knobs below (e.g. `BLOCK_V = 16`) so that the online log-sum-exp loop over
several vocabulary blocks really runs; `None` means "pick for the device".
"""
from __future__ import annotations

import torch

BLOCK_V: int | None = None  # columns per block; a power of two
ROWS_PER_PROGRAM: int | None = None  # rows per program; a power of two

def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def launch_config(n_rows: int, vocab: int, device: torch.device) -> tuple[int, int, int]:
    """(rows per program, vocabulary block, num_warps) for an [n_rows, vocab] problem.

    On a GPU one row per program with a 4096-wide block streams the row at full bandwidth while
    keeping the fp32 temporaries in registers.  The CPU interpreter costs ~ms per program and per
    op regardless of tile size, so there we put many rows in one tile instead.
    """
    on_gpu = device.type == "cuda"
    rows = ROWS_PER_PROGRAM or (1 if on_gpu else min(16, _next_pow2(n_rows)))
    block = BLOCK_V or min(4096 if on_gpu else 1024, _next_pow2(vocab))
    for name, value in (("ROWS_PER_PROGRAM", rows), ("BLOCK_V", block)):
        if value & (value - 1):
            raise ValueError(f"kernels.triton_setup.{name} must be a power of two, got {value}")
    return rows, block, 8 if on_gpu else 1


def require_triton(device: torch.device) -> None:
    """Raise a clear error when the Triton backend cannot run on `device`."""
    try:
        import triton
    except ImportError as err:
        raise RuntimeError("kernels backend 'triton' needs the `triton` package (pip install triton)") from err
    if device.type != "cuda":
        if not triton.knobs.runtime.interpret:
            raise RuntimeError(
                "kernels backend 'triton' on CPU tensors needs TRITON_INTERPRET=1 set before "
                "triton is first imported; use set_backend('torch') or CUDA tensors instead"
            )
