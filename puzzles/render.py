"""Drawing helpers shared by the renderers: cell geometry and flat-colour primitives.

Cell i spans pixels [round(i*size/n), round((i+1)*size/n)), so n cells tile `size` exactly and a
size of 16*n gives every cell 16x16 pixels (one merged visual token of the mini preset).
"""

from __future__ import annotations

from PIL import Image, ImageDraw

Colour = tuple[int, int, int]


def edges(n: int, size: int) -> list[int]:
    return [round(i * size / n) for i in range(n + 1)]


class Canvas:
    """An n x n grid drawn on a size x size RGB image."""

    def __init__(self, n: int, size: int, background: Colour):
        if size < 3 * n:
            raise ValueError(f"image size {size} px is too small for a {n}x{n} grid (need >= {3 * n})")
        self.n, self.size = n, size
        self.image = Image.new("RGB", (size, size), background)
        self.draw = ImageDraw.Draw(self.image)
        self.e = edges(n, size)
        self.cell_px = size / n

    def line_width(self, fraction: float) -> int:
        return max(1, round(self.cell_px * fraction))

    def _span(self, i: int, width: int) -> tuple[int, int]:
        """Pixels [a, b) of a line of `width` centred on edge i, kept inside the image."""
        a = min(max(self.e[i] - width // 2, 0), self.size - width)
        return a, a + width

    def fill_cell(self, r: int, c: int, colour: Colour) -> None:
        self.draw.rectangle([self.e[c], self.e[r], self.e[c + 1] - 1, self.e[r + 1] - 1], fill=colour)

    def disc(self, r: int, c: int, colour: Colour, radius: float = 0.3) -> None:
        """A filled circle of `radius` cells at the cell centre (never touches the cell's edges)."""
        cx, cy = (self.e[c] + self.e[c + 1] - 1) / 2, (self.e[r] + self.e[r + 1] - 1) / 2
        rad = max(1.0, radius * self.cell_px)
        self.draw.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=colour)

    def square(self, r: int, c: int, colour: Colour, half: float = 0.3) -> None:
        """A filled square of half-side `half` cells at the cell centre."""
        cx, cy = (self.e[c] + self.e[c + 1] - 1) / 2, (self.e[r] + self.e[r + 1] - 1) / 2
        h = max(1.0, half * self.cell_px)
        self.draw.rectangle([round(cx - h), round(cy - h), round(cx + h), round(cy + h)], fill=colour)

    def grid_lines(self, colour: Colour, fraction: float = 1 / 16) -> None:
        """Thin lines on every cell edge, so the grid size is visible on uniform regions."""
        w = self.line_width(fraction)
        for i in range(self.n + 1):
            a, b = self._span(i, w)
            self.draw.rectangle([a, 0, b - 1, self.size - 1], fill=colour)
            self.draw.rectangle([0, a, self.size - 1, b - 1], fill=colour)

    def wall(self, r: int, c: int, side: str, colour: Colour, fraction: float = 1 / 8) -> None:
        """A thick line on one edge ('U','D','L','R') of cell (r, c), a little longer than the edge."""
        w = self.line_width(fraction)
        if side in "UD":
            a, b = self._span(r + (side == "D"), w)
            x0, _ = self._span(c, w)
            _, x1 = self._span(c + 1, w)
            self.draw.rectangle([x0, a, x1 - 1, b - 1], fill=colour)
        else:
            a, b = self._span(c + (side == "R"), w)
            y0, _ = self._span(r, w)
            _, y1 = self._span(r + 1, w)
            self.draw.rectangle([a, y0, b - 1, y1 - 1], fill=colour)
