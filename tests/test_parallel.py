"""parallel.py: gradients and scalars summed over two real processes; work shared between them; one worker starts nothing."""

import pytest
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


def _square(x):
    return {"x": x, "square": torch.tensor([x * x]), "by": parallel.rank_world()[0]}


def _shared_squares(n, chunk):
    return parallel.all_gather(parallel.rank_world()[0]), parallel.map_shared(_square, list(range(n)), chunk)


@pytest.mark.parametrize("n,chunk", [(0, 4), (1, 4), (7, 2), (16, 3)])
def test_map_shared_splits_the_work_and_gives_every_rank_the_whole_result_in_order(n, chunk):
    ranks, results = parallel.run(2, _shared_squares, n, chunk)
    assert ranks == [0, 1]
    assert [r["x"] for r in results] == list(range(n)) and [int(r["square"]) for r in results] == [x * x for x in range(n)]
    assert [r["by"] for r in results] == [x % 2 for x in range(n)]  # each item computed once, by one rank
    ranks, alone = parallel.run(1, _shared_squares, n, chunk)
    assert ranks == [0] and [r["x"] for r in alone] == list(range(n)) and all(r["by"] == 0 for r in alone)
