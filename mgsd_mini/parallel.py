"""Data parallelism over CPU processes: one training process per core, gradients summed each step.

On this 2-core CPU two one-thread processes, each on half of every micro-batch, take a grounding
step 1.18x faster than one process with two threads, and 3x faster when another process shares
the CPU — two threads of one process stall each other then (bench/bench_workers.py). `run(n, fn,
*args)` runs `fn(*args)` as rank 0 in this process — progress bar, files and the result stay here —
and as ranks 1..n-1 in spawned helper processes. Inside, the training loop (sft.train_sft) asks
`rank_world()` for its shard and sums token counts, losses, gradients and the Ctrl-C flag over the
ranks, so every rank takes the same optimizer step — the same arithmetic as one process, up to the
order of the float sums — and all stop at the same step."""

from __future__ import annotations

import datetime
import shutil
import signal
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mgsd_mini.config import ConfigError


def check_cpu(workers: int, device: torch.device) -> None:
    """Refuse `workers` > 1 off the CPU: it means one process per core, not per GPU."""
    if workers > 1 and device.type != "cpu":
        raise ConfigError(f"--workers {workers} runs one process per CPU core; on a GPU use --workers 1")


def rank_world() -> tuple[int, int]:
    """(this process's rank, number of processes); (0, 1) outside `run`."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def shard(items: list) -> list:
    """This rank's share of `items`: every world-th, so that each rank gets as many long rows as
    short ones from a length-sorted batch (all of them in one process)."""
    rank, world = rank_world()
    return items[rank::world]


def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over all ranks, in place (unchanged with one process)."""
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def all_gather(obj) -> list:
    """[rank 0's `obj`, rank 1's, ...] on every rank (pickled through the process group); [obj] alone."""
    if not dist.is_initialized():
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def map_shared(fn, items: list, chunk: int = 256) -> list:
    """[fn(x) for x in items] on every rank, each rank computing every world-th item of each block
    of `chunk` per rank, then sharing its results: the work is split, the result is whole
    everywhere. Blocks bound the pickled bytes in flight (grounding's examples hold ~0.7 GB of pixels)."""
    rank, world = rank_world()
    if world == 1:
        return [fn(x) for x in items]
    results = [None] * len(items)
    for start in range(0, len(items), chunk * world):
        block = range(start, min(start + chunk * world, len(items)))
        for r, done in enumerate(all_gather([fn(items[i]) for i in block[rank::world]])):
            for i, result in zip(block[r::world], done, strict=True):
                results[i] = result
    return results


def sum_gradients(params: list[torch.nn.Parameter], *scalars: float) -> list[float]:
    """Replace each parameter's gradient by its sum over ranks (a rank without one adds zeros; a
    parameter no rank has a gradient for keeps None, so AdamW skips it as in one process); returns
    `scalars` summed over ranks too — one all-reduce for all of them."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    has_grad = [float(p.grad is not None) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads] + [torch.tensor(has_grad + list(scalars), dtype=grads[0].dtype)])
    all_sum(flat)
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
        offset += g.numel()
    for p, ranks_with_grad in zip(params, flat[offset:offset + len(params)].tolist()):
        if ranks_with_grad == 0:
            p.grad = None
    return flat[offset + len(params):].tolist()


def _helper(rank: int, world: int, store: str, fn, args) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until training starts: then a Ctrl-C is summed with the gradients
    torch.set_num_threads(1)
    _join(rank, world, store)
    try:
        fn(*args)
    except KeyboardInterrupt:
        pass  # stopped with rank 0 at the same step; rank 0 reports it
    finally:
        dist.destroy_process_group()


def _join(rank: int, world: int, store: str) -> None:
    # gloo: CPU collectives; a rendezvous file, not a port, so parallel runs cannot collide
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(minutes=30))


def run(n: int, fn, *args):
    """`fn(*args)` on n ranks: ranks 1..n-1 in helper processes, rank 0 here; returns rank 0's result.
    n = 1: just `fn(*args)`, no processes, no process group."""
    if n <= 1:
        return fn(*args)
    threads = torch.get_num_threads()
    folder = tempfile.mkdtemp(prefix="mgsd-ddp-")
    store = str(Path(folder) / "rendezvous")
    helpers = [mp.get_context("spawn").Process(target=_helper, args=(rank, n, store, fn, args), daemon=True) for rank in range(1, n)]
    for p in helpers:
        p.start()
    torch.set_num_threads(1)
    try:
        _join(0, n, store)
        try:
            result = fn(*args)
        finally:
            dist.destroy_process_group()
        for p in helpers:
            p.join()
            if p.exitcode != 0:
                raise RuntimeError(f"a data-parallel helper process exited with code {p.exitcode}")
        return result
    finally:
        for p in helpers:
            if p.is_alive():
                p.terminate()
        torch.set_num_threads(threads)
        shutil.rmtree(folder, ignore_errors=True)
