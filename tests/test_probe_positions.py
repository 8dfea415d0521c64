"""bench/probe_positions.py: the probe separates what is separable, not what is not, and keeps grid cells only."""

import copy
import importlib.util
from pathlib import Path

import torch

from mgsd_mini import model as M
from mgsd_mini.evaluate import DEFAULT_LEVELS

spec = importlib.util.spec_from_file_location("probe_positions", Path(__file__).resolve().parents[1] / "bench" / "probe_positions.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


def test_linear_probe_reads_a_linear_code_and_not_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (600,), generator=g)
    code = torch.randn(5, 16, generator=g)
    x = code[y] + 0.3 * torch.randn(600, 16, generator=g)
    assert probe.linear_probe_accuracy(x, y) > 0.95
    noise = torch.randn(600, 16, generator=g)
    assert probe.linear_probe_accuracy(noise, y) < 0.45  # chance is ~0.2


def test_cell_features_keep_the_grid_cells_with_or_without_the_canvas():
    net, processor = M.build_mini(seed=0)
    fit = copy.deepcopy(processor)
    fit.image_processor.canvas_px = 0
    n_cells = sum(level * level for levels in DEFAULT_LEVELS.values() for level in levels)
    for proc in (processor, fit):
        x, rows, cols = probe.cell_features(net.eval(), proc, 1)
        assert len(x) == len(rows) == len(cols) == n_cells and x.shape[1] == net.config.text_config.hidden_size
        # every cell of every grid appears once: (row, col) pairs per side-s grid are s*s distinct ones
        assert sorted(zip(rows.tolist(), cols.tolist())) == sorted(
            (r, c) for levels in DEFAULT_LEVELS.values() for s in levels for r in range(s) for c in range(s))


def test_cell_features_are_the_tokens_of_the_grid_cells_on_the_canvas():
    net, processor = M.build_mini(seed=0)
    x, rows, cols = probe.cell_features(net.eval(), processor, 1, {"frozenlake": (3,)})
    canvas_cells = processor.image_processor.canvas_px // 16
    tokens = probe.token_features(net, processor, "frozenlake", 3, 1)[0]
    assert len(tokens) == canvas_cells ** 2
    assert torch.equal(x, tokens[rows * canvas_cells + cols])
