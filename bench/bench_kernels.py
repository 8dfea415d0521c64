"""Benchmark (not a test): per-token reverse KL forward + backward, chunked path vs naive torch.

CPU: each variant runs in a fresh subprocess that builds fp32 student/teacher logits [N, V], then
runs loss = per-row KL, (loss * w).sum().backward().  Peak extra memory = the process's peak RSS
(ru_maxrss) minus its RSS once the inputs exist; it includes the [N, V] gradient both variants must
produce, so it is also printed without it ("temporaries").
  naive:   F.kl_div(log_softmax(t), log_softmax(s), log_target=True).sum(-1) + autograd
  chunked: kernels.per_token_kl(s, t) on the torch backend (a few rows at a time, analytic grad)
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


def worker(variant: str, n: int, vocab: int) -> dict:
    """Run one variant once in this (fresh) process; report time and peak memory."""
    fn = {"naive": _naive, "chunked": _chunked}[variant]
    fn(torch.randn(4, 64, requires_grad=True), torch.randn(4, 64)).sum().backward()  # load code paths
    g = torch.Generator().manual_seed(0)
    s = torch.empty(n, vocab).normal_(generator=g).mul_(3).requires_grad_()
    t = torch.empty(n, vocab).normal_(generator=g).mul_(3)
    w = torch.rand(n, generator=g)
    base = psutil.Process().memory_info().rss
    start, cpu_start = time.perf_counter(), time.process_time()
    (fn(s, t) * w).sum().backward()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    assert s.grad is not None and s.grad.shape == s.shape
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_extra": peak - base,
            "tensor": s.numel() * s.element_size()}


def cpu_compare(n: int, vocab: int) -> None:
    results = {}
    for variant in ("naive", "chunked"):
        cmd = [sys.executable, __file__, "--worker", variant, "--n", str(n), "--v", str(vocab)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    size = results["naive"]["tensor"]
    print(f"CPU, N={n}, V={vocab}, fp32 (one logits tensor = {size / GB:.2f} GiB), "
          f"torch threads={torch.get_num_threads()}, reverse KL forward+backward")
    print(f"{'variant':8} {'wall s':>8} {'cpu s':>8} {'peak extra GiB':>15} {'x tensor':>9} {'temporaries x':>14}")
    for variant, r in results.items():
        extra = r["peak_extra"] / size
        print(f"{variant:8} {r['seconds']:8.2f} {r['cpu_seconds']:8.2f} {r['peak_extra'] / GB:15.2f} "
              f"{extra:9.2f} {extra - 1:14.2f}")
    c, nv = results["chunked"], results["naive"]
    print(f"chunked / naive: wall time {c['seconds'] / nv['seconds']:.2f}x, cpu time "
          f"{c['cpu_seconds'] / nv['cpu_seconds']:.2f}x, peak extra {c['peak_extra'] / nv['peak_extra']:.2f}x")
    print("(peak extra = peak RSS - RSS with the inputs built; it includes the [N, V] gradient both variants "
          "must produce, 'temporaries' excludes it; cpu s = process CPU time, robust to other load)")


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
    parser.add_argument("--worker", choices=["naive", "chunked"], help=argparse.SUPPRESS)
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
