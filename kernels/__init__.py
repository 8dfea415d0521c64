"""Fused per-token log-prob and per-token KL / JSD over the vocabulary, forward and backward.

    token_logprobs(logits, tokens, temperature=1.0, inplace=False)      -> [...] fp32
    per_token_kl(student_logits, teacher_logits, kind="reverse", beta=0.5,
                 temperature=1.0, mask=None, inplace=False)            -> [...] fp32
    set_backend("auto" | "triton" | "torch")

CUDA tensors run Triton kernels (`logprob`, `kl`) that read each logit row in blocks with an online
log-sum-exp; CPU tensors run a chunked torch path (`torch_path`) that upcasts only a few rows at a
time.  With inplace=True the gradient overwrites the student logits' own storage during the
forward, so no [N, V] gradient buffer is allocated (opt-in; contract in `per_token_kl`).
`reference` holds the plain formulas used as the test oracle.  Importing this package needs
neither triton nor a GPU.
"""
from .dispatch import get_backend, per_token_kl, set_backend, token_logprobs

__all__ = ["token_logprobs", "per_token_kl", "set_backend", "get_backend"]
