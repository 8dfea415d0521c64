"""Do a model's visual tokens say *where* they are? A linear probe from each merged visual token of a
puzzle image to its cell's row and column.

    python bench/probe_positions.py --model mini --n 60

Renders `--n` train-split puzzles per task-level of the mini preset, takes the vision tower's output
(one merged token per 16-px cell), fits a linear classifier (row, then column) on 70 % of the cells
and reports its accuracy on the other 30 %. A diagnostic for the canvas (processor.CanvasImageProcessor):
Qwen3-VL interpolates its vision position table to each image's patch grid, so without a fixed canvas
row r of a 3x3 grid and of a 5x5 one carry different embeddings.
"""

import argparse

import torch
import torch.nn.functional as F

import puzzles
from mgsd_mini import model as models
from mgsd_mini.evaluate import DEFAULT_LEVELS
from mgsd_mini.generic_images import CELL_PX


def token_features(net, processor, task: str, level: int, n: int) -> list[torch.Tensor]:
    """The vision tower's merged tokens [tokens, hidden] of n train-split puzzle images, in raster order."""
    out = []
    for rec in puzzles.make_split(task, level, "train", n, 0):
        px = processor.image_processor(images=[models.puzzle_image(processor, task, level, rec["state"])], return_tensors="pt")
        with torch.no_grad():
            out.append(net.model.get_image_features(px["pixel_values"], px["image_grid_thw"]).pooler_output[0])
    return out


def cell_features(net, processor, n: int, task_levels: dict = DEFAULT_LEVELS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features [cells, hidden], rows, cols) of every grid cell of n puzzles per task-level."""
    canvas_cells = processor.image_processor.canvas_px // CELL_PX
    feats, rows, cols = [], [], []
    for task, levels in task_levels.items():
        for level in levels:
            for tokens in token_features(net, processor, task, level, n):
                side = canvas_cells or level  # tokens in raster order over the canvas, or over the grid itself
                for k, token in enumerate(tokens):
                    r, c = divmod(k, side)
                    if r < level and c < level:  # a grid cell, not the canvas around it
                        feats.append(token), rows.append(r), cols.append(c)
    return torch.stack(feats), torch.tensor(rows), torch.tensor(cols)


def linear_probe_accuracy(x: torch.Tensor, y: torch.Tensor, seed: int = 0, steps: int = 500) -> float:
    """Held-out accuracy of a softmax-regression probe trained on a random 70 % of the rows."""
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, test = order[: int(0.7 * len(x))], order[int(0.7 * len(x)):]
    w = torch.zeros(x.shape[1], int(y.max()) + 1, requires_grad=True)
    b = torch.zeros(w.shape[1], requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        (F.cross_entropy(x[train] @ w + b, y[train]) + 1e-4 * w.pow(2).sum()).backward()
        opt.step()
    with torch.no_grad():
        return ((x[test] @ w + b).argmax(1) == y[test]).float().mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mini")
    ap.add_argument("--n", type=int, default=60, help="puzzles per task-level")
    args = ap.parse_args()
    net, processor = models.load(args.model)
    x, rows, cols = cell_features(net.eval(), processor, args.n)
    print(f"{args.model} (canvas {processor.image_processor.canvas_px} px): {len(x)} cells")
    for name, y in (("row", rows), ("column", cols)):
        chance = torch.bincount(y).max().item() / len(y)
        print(f"  {name:6s} linear-probe accuracy {100 * linear_probe_accuracy(x, y):5.1f} %  (majority class {100 * chance:.0f} %)")


if __name__ == "__main__":
    main()
