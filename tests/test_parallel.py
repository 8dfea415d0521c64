"""parallel.py: gradients and scalars summed over two real processes; one worker starts nothing."""

import torch

from mgsd_mini import parallel


def _grads_on_this_rank():
    rank, world = parallel.rank_world()
    every, one, none = (torch.nn.Parameter(torch.zeros(n)) for n in (3, 2, 1))
    every.grad = torch.full((3,), float(rank + 1))
    if rank == 1:
        one.grad = torch.ones(2)  # rank 0 has no gradient for it: it adds zeros
    scalars = parallel.sum_gradients([every, one, none], 10.0 * (rank + 1), float(rank == 0))
    return world, every.grad.tolist(), one.grad if one.grad is None else one.grad.tolist(), none.grad, scalars


def test_two_processes_sum_gradients_and_scalars_and_keep_none_where_no_rank_had_one():
    world, every, one, none, scalars = parallel.run(2, _grads_on_this_rank)
    assert world == 2 and every == [3.0] * 3 and one == [1.0, 1.0] and none is None and scalars == [30.0, 1.0]
    assert parallel.rank_world() == (0, 1)  # the group is gone afterwards


def test_one_worker_runs_in_this_process_without_a_group():
    world, every, one, none, scalars = parallel.run(1, _grads_on_this_rank)
    assert world == 1 and every == [1.0] * 3 and one is None and none is None and scalars == [10.0, 1.0]
