"""Test-wide settings. Runs before any test module imports the project."""
import os

# No hub access in tests, ever (a lookup otherwise spends ~25 s retrying).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Triton kernels only run natively on a GPU; elsewhere the interpreter runs them on CPU tensors.
# It must be switched on before `triton` is first imported.
try:
    import torch

    _has_cuda = torch.cuda.is_available()
except Exception:  # pragma: no cover - torch is a hard dependency
    _has_cuda = False
if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")
