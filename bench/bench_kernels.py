"""Benchmark (not a test): per-token reverse KL forward + backward, chunked path vs naive torch.

CPU: each variant runs in a fresh subprocess that builds fp32 student/teacher logits [N, V], then
runs loss = per-row KL, (loss * w).sum().backward().  Peak extra memory = the process's peak RSS
(ru_maxrss) minus its RSS once the inputs exist.
  naive:   F.kl_div(log_softmax(t), log_softmax(s), log_target=True).sum(-1) + autograd
  chunked: kernels.per_token_kl(s, t) on the torch backend (a few rows at a time, analytic grad
           written into one new [N, V] buffer)
  inplace: the same with inplace=True: the gradient overwrites s's own storage.  In-place needs
           logits that are not a leaf, so here s = leaf.clone() (built before the baseline;
           CloneBackward passes the gradient through unchanged, and autograd stores that very
           tensor as leaf.grad: `grad aliases s` in the output).
naive and chunked keep s.grad, a new [N, V] tensor (1.0x), inside their peak extra.
CUDA (when present): achieved bytes/s of the Triton forward + backward on bf16 logits, counting the
minimum traffic (read both logit rows once, write one gradient row), as a fraction of a measured
device-to-device copy's bytes/s (read + write).

    python bench/bench_kernels.py                 # N=4096, V=151936 (2.5 GB per logits tensor)
    python bench/bench_kernels.py --n 256 --v 32000
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import psutil
import torch
import torch.nn.functional as F

GB = 1024**3


def _naive(s, t):
    return F.kl_div(F.log_softmax(t, -1), F.log_softmax(s, -1), reduction="none", log_target=True).sum(-1)


def _chunked(s, t):
    import kernels

    kernels.set_backend("torch")
    return kernels.per_token_kl(s, t, "reverse")


def _inplace(s, t):
    import kernels

    kernels.set_backend("torch")
    return kernels.per_token_kl(s, t, "reverse", inplace=True)


VARIANTS = {"naive": _naive, "chunked": _chunked, "inplace": _inplace}


def worker(variant: str, n: int, vocab: int) -> dict:
    """Run one variant once in this (fresh) process; report time and peak memory."""
    fn = VARIANTS[variant]
    fn(torch.randn(4, 64, requires_grad=True) * 1, torch.randn(4, 64)).sum().backward()  # load code paths
    g = torch.Generator().manual_seed(0)
    leaf = torch.empty(n, vocab).normal_(generator=g).mul_(3).requires_grad_()
    s = leaf.clone() if variant == "inplace" else leaf  # in-place needs a non-leaf
    t = torch.empty(n, vocab).normal_(generator=g).mul_(3)
    w = torch.rand(n, generator=g)
    base = psutil.Process().memory_info().rss
    start, cpu_start = time.perf_counter(), time.process_time()
    (fn(s, t) * w).sum().backward()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    assert leaf.grad is not None and leaf.grad.shape == leaf.shape
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_extra": peak - base,
            "tensor": s.numel() * s.element_size(),
            "grad_aliases_s": leaf.grad.data_ptr() == s.data_ptr() and s is not leaf}


def cpu_compare(n: int, vocab: int) -> None:
    load_before = psutil.getloadavg()[0]
    results = {}
    for variant in VARIANTS:
        cmd = [sys.executable, __file__, "--worker", variant, "--n", str(n), "--v", str(vocab)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    size = results["naive"]["tensor"]
    print(f"CPU, N={n}, V={vocab}, fp32 (one logits tensor = {size / GB:.2f} GiB), "
          f"torch threads={torch.get_num_threads()}, reverse KL forward+backward; "
          f"load average {load_before:.2f} before, {psutil.getloadavg()[0]:.2f} after, {psutil.cpu_count()} CPUs")
    nv = results["naive"]
    print(f"{'variant':8} {'wall s':>8} {'cpu s':>8} {'peak extra GiB':>15} {'x tensor':>9} "
          f"{'wall/naive':>11} {'cpu/naive':>10} {'peak/naive':>11}")
    for variant, r in results.items():
        print(f"{variant:8} {r['seconds']:8.2f} {r['cpu_seconds']:8.2f} {r['peak_extra'] / GB:15.3f} "
              f"{r['peak_extra'] / size:9.3f} {r['seconds'] / nv['seconds']:11.2f} "
              f"{r['cpu_seconds'] / nv['cpu_seconds']:10.2f} {r['peak_extra'] / nv['peak_extra']:11.3f}")
    print(f"(peak extra = peak RSS - RSS with the inputs built; naive and chunked include the new [N, V] "
          f"gradient s.grad (1.0x); inplace: grad aliases s = {results['inplace']['grad_aliases_s']}; "
          "cpu s = process CPU time, less sensitive to other load than wall s)")


def _cuda_time(fn, iters: int = 10) -> float:
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / iters


def cuda_bandwidth(vocab: int) -> None:
    import kernels

    kernels.set_backend("auto")
    print(f"\nCUDA ({torch.cuda.get_device_name()}), V={vocab}, bf16, Triton reverse KL forward+backward")
    for n in (1024, 8192):
        s = torch.randn(n, vocab, device="cuda", dtype=torch.bfloat16).requires_grad_()
        t = torch.randn(n, vocab, device="cuda", dtype=torch.bfloat16)
        w = torch.rand(n, device="cuda")

        def step():
            s.grad = None
            kernels.per_token_kl(s, t).backward(w)

        seconds = _cuda_time(step)
        dst = torch.empty_like(t)
        copy_seconds = _cuda_time(lambda: dst.copy_(t))
        nbytes = 3 * s.numel() * s.element_size()  # read s, read t, write grad
        achieved, copy_bw = nbytes / seconds, 2 * t.numel() * t.element_size() / copy_seconds
        print(f"N={n:5}: {seconds * 1e3:8.2f} ms, {achieved / 1e9:7.1f} GB/s; copy {copy_bw / 1e9:7.1f} GB/s; "
              f"fraction {achieved / copy_bw:.2f}")
        del s, t, w, dst
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096, help="rows (tokens)")
    parser.add_argument("--v", type=int, default=151_936, help="vocabulary size")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--skip-cpu", action="store_true", help="only the CUDA measurement")
    args = parser.parse_args()
    if args.n < 1 or args.v < 1:
        parser.exit(2, "bench_kernels: --n and --v must be >= 1\n")
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.v)))
        return
    if not args.skip_cpu:
        cpu_compare(args.n, args.v)
    if torch.cuda.is_available():
        cuda_bandwidth(args.v)
    else:
        print("\nCUDA: no GPU here, Triton bandwidth not measured")


if __name__ == "__main__":
    main()
