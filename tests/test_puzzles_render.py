"""The rendered image encodes the full state: recover every puzzle from cell colours alone."""

import random

import pytest

from puzzles import TASKS, frozenlake as fl, maze as mz, minibehaviour as mb


_NEAREST = {}


def nearest(colour, palette):
    """The palette entry closest to a pixel colour (memoised: images hold only a few colours)."""
    key = (colour, id(palette))
    if key not in _NEAREST:
        _NEAREST[key] = min(palette, key=lambda k: sum((a - b) ** 2 for a, b in zip(colour, palette[k])))
    return _NEAREST[key]


def geometry(img, levels, is_line):
    """The one grid side n for which every cell edge is drawn as a line and no cell interior has one."""
    px, size = img.load(), img.size[0]
    found = []
    for n in levels:
        e = [round(i * size / n) for i in range(n + 1)]
        mid = [(e[i] + e[i + 1] - 1) // 2 for i in range(n)]
        margin = round(size / n / 8) + 1  # lines and walls reach at most this far into a cell
        inside = [x for c in range(n) for x in range(e[c] + margin, e[c + 1] - margin)]
        edges_drawn = all(is_line(px[min(x, size - 1), y]) and is_line(px[y, min(x, size - 1)]) for x in e for y in mid)
        interiors_clear = all(not is_line(px[x, y]) and not is_line(px[y, x]) for x in inside for y in mid)
        if edges_drawn and interiors_clear:
            found.append((n, e, mid))
    assert len(found) == 1, [f[0] for f in found]
    return px, size, found[0]


FL_PAL = {"ice": fl.ICE, "hole": fl.HOLE, "goal": fl.GOAL, "start": fl.PLAYER, "line": fl.GRID}
MAZE_PAL = {"floor": mz.FLOOR, "line": mz.GRID, "wall": mz.WALL, "start": mz.START, "target": mz.TARGET}
MB_PAL = {"floor": mb.FLOOR, "line": mb.GRID, "table": mb.TABLE, "printer": mb.PRINTER, "agent": mb.AGENT}


def recover_frozenlake(img):
    pal = FL_PAL
    px, _, (n, _, mid) = geometry(img, TASKS["frozenlake"].levels, lambda c: nearest(c, pal) == "line")
    kinds = {(r, c): nearest(px[mid[c], mid[r]], pal) for r in range(n) for c in range(n)}
    return {"size": n, "start": [list(k) for k, v in kinds.items() if v == "start"][0],
            "goal": [list(k) for k, v in kinds.items() if v == "goal"][0],
            "holes": [list(k) for k, v in kinds.items() if v == "hole"]}


def recover_maze(img):
    pal = MAZE_PAL
    px, size, (n, e, mid) = geometry(img, TASKS["maze"].levels, lambda c: nearest(c, pal) in ("line", "wall"))
    clamp = lambda x: min(x, size - 1)  # noqa: E731
    kinds = {(r, c): nearest(px[mid[c], mid[r]], pal) for r in range(n) for c in range(n)}
    open_ = [["".join(side for side, (x, y) in (("U", (mid[c], e[r])), ("D", (mid[c], clamp(e[r + 1]))),
                                               ("L", (e[c], mid[r])), ("R", (clamp(e[c + 1]), mid[r])))
                      if nearest(px[x, y], pal) != "wall") or "-" for c in range(n)] for r in range(n)]
    return {"size": n, "start": [list(k) for k, v in kinds.items() if v == "start"][0],
            "target": [list(k) for k, v in kinds.items() if v == "target"][0], "open": open_}


def recover_minibehaviour(img):
    pal = MB_PAL
    px, _, (n, _, mid) = geometry(img, TASKS["minibehaviour"].levels, lambda c: nearest(c, pal) == "line")
    kinds = {(r, c): nearest(px[mid[c], mid[r]], pal) for r in range(n) for c in range(n)}
    return {"size": n, "agent": [list(k) for k, v in kinds.items() if v == "agent"][0],
            "printer": [list(k) for k, v in kinds.items() if v == "printer"][0],
            "table": [list(k) for k, v in kinds.items() if v == "table"]}


RECOVER = {"frozenlake": recover_frozenlake, "maze": recover_maze, "minibehaviour": recover_minibehaviour}


@pytest.mark.parametrize("name", list(TASKS))
def test_pixels_recover_the_full_state(name):
    task, rng = TASKS[name], random.Random(11)
    for i in range(130):
        state = task.generate(task.levels[i % len(task.levels)], rng)
        size = 16 * state["size"] if i < 100 else rng.choice([256, 200])  # mini preset, then paper size
        img = task.render(state, size)
        assert img.mode == "RGB" and img.size == (size, size)
        assert task.canonical(RECOVER[name](img)) == task.canonical(state), (state, size)


def test_render_rejects_sizes_too_small_for_the_grid():
    state = TASKS["frozenlake"].generate(8, random.Random(0))
    with pytest.raises(ValueError, match="too small"):
        TASKS["frozenlake"].render(state, 20)
