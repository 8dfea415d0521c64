"""Generic image-text data for the mini base (stage 0): coloured grids and shapes, never puzzles.

The real Qwen3-VL base has seen billions of generic images, so its vision pathway works but it was
never taught to read *puzzle states*. To give the mini base the same starting point, its vision
tower learns only from these captions of random grids: cell colours, grid size, where a shape is.
The puzzle palettes, symbols and questions never appear, so a base trained on this still cannot
restate a FrozenLake map from pixels — the modality gap that grounding and distillation close.

Images use the mini preset's geometry (16 px per cell, one merged visual token per cell); the mini
processor pastes them on its fixed canvas, as it does puzzle images.
"""

from __future__ import annotations

import random

from PIL import Image

from puzzles.render import Canvas

COLOURS = {
    "red": (200, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 200), "yellow": (230, 210, 40),
    "purple": (130, 50, 160), "orange": (240, 130, 20), "black": (20, 20, 20), "white": (245, 245, 245),
}
SHAPES = ("circle", "square")
CELL_PX = 16
# Share of questions answered by a raster-order transcription of the whole grid. A tiny model learns
# that monotone scan within a few hundred steps (DESIGN §4), whereas with random-access questions
# alone ("colour at row r, column c", "where is the circle") the first shipped base stayed at chance
# (bench/probe_vision.py): the scan is what teaches the vision pathway to read cells.
RASTER_SHARE = 0.5
SIZES = range(3, 6)  # grid sides: they must fit the mini canvas (processor.MINI_CANVAS_CELLS)


def sample(rng: random.Random, sizes: range = SIZES) -> tuple[Image.Image, str, str]:
    """One (image, question, answer): a random grid of colours with one shape on it."""
    n = rng.choice(sizes)
    names = list(COLOURS)
    cells = [[rng.choice(names) for _ in range(n)] for _ in range(n)]
    canvas = Canvas(n, CELL_PX * n, COLOURS["white"])
    for r in range(n):
        for c in range(n):
            canvas.fill_cell(r, c, COLOURS[cells[r][c]])
    shape, at = rng.choice(SHAPES), (rng.randrange(n), rng.randrange(n))
    # the shape's colour differs from its cell, so it is always visible
    shape_colour = rng.choice([k for k in names if k != cells[at[0]][at[1]]])
    draw = canvas.disc if shape == "circle" else canvas.square
    draw(*at, COLOURS[shape_colour])

    if rng.random() < RASTER_SHARE:
        return canvas.image, "describe the grid row by row .", "\n".join(" ".join(row) for row in cells)
    r, c = rng.randrange(n), rng.randrange(n)
    question, answer = rng.choice([
        ("how many rows and columns does the grid have ?", f"{n}x{n}"),
        (f"what colour is the cell at row {r} column {c} ?", cells[r][c]),
        (f"list the colours of row {r} from left to right .", " ".join(cells[r])),
        (f"list the colours of column {c} from top to bottom .", " ".join(row[c] for row in cells)),
        (f"where is the {shape} ?", f"( {at[0]} , {at[1]} )"),
        ("what shape is drawn on the grid ?", f"{shape_colour} {shape}"),
    ])
    return canvas.image, question, answer
