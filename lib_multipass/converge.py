"""Repeats that stop when the image has settled: how much a run changed an image, which images
still take a strength's repeats, and a small plot of the changes.

A run's change is the mean absolute difference between the image before and after it, both
cut to the area the run changed (the bounding box of the pixels that differ: a crop pass's
crop, not the whole picture, where the sizes match) and reduced to a fixed 64x64 thumbnail (box
filter, RGB), in 0-255 units: the same measure at any image size, a detail crop's change not
diluted by the picture around it, cheap next to a sampling step, and blind to noise finer than
the thumbnail's pixels.
A pass with `converge_below` set stops each strength's repeats for an image once one of its
runs changed it by less than that; never more runs than the repeats ask for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageStat

THUMB = 64  # side of the thumbnail a change is measured on


def thumbnail(image: Image.Image) -> Image.Image:
    """The image as changes are measured: RGB, THUMB x THUMB, box-filtered."""
    return _rgb(image).resize((THUMB, THUMB), Image.Resampling.BOX)


def changed_box(before: Image.Image, after: Image.Image) -> tuple[int, int, int, int] | None:
    """The bounding box of the pixels a run changed (None: none did); the whole image where
    the run changed its size (an upscale)."""
    if before.size != after.size:
        return (0, 0, *after.size)
    return ImageChops.difference(_rgb(before), _rgb(after)).getbbox()


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def change(before: Image.Image, after: Image.Image) -> float:
    """How much a run changed an image: the mean absolute difference of the two thumbnails of
    the area it changed, over every pixel and channel, from 0 (the same) to 255."""
    box = changed_box(before, after)
    if box is None:
        return 0.0
    if before.size == after.size:
        before, after = before.crop(box), after.crop(box)
    diff = ImageChops.difference(thumbnail(before), thumbnail(after))
    means = ImageStat.Stat(diff).mean
    return sum(means) / len(means)


def group_of(run: Any) -> tuple[int, int]:
    """Which strength of which pass a run repeats: (pass index, strength index)."""
    return run.pass_index, run.repeat // max(1, run.repeats)


class Repeats:
    """Which images still take a run: an image leaves a strength's repeats once a run of them
    changed it by less than the pass's `converge_below`, and comes back for the next strength.
    """

    def __init__(self) -> None:
        self._settled: dict[int, tuple[int, int]] = {}  # image -> the group it settled in

    def wanted(self, run: Any, images: Iterable[int]) -> list[int]:
        """The images of `images` that still take `run`."""
        if not run.converge_below:
            return list(images)
        group = group_of(run)
        return [i for i in images if self._settled.get(i) != group]

    def record(self, run: Any, image: int, changed: float) -> bool:
        """Note that `run` changed `image` by `changed`; True when the image has settled (its
        strength's remaining repeats are skipped)."""
        if run.converge_below and changed < run.converge_below:
            self._settled[image] = group_of(run)
            return True
        return False


# -- the plot -------------------------------------------------------------------------------

PLOT_SIZE = (200, 120)
_MARGIN = (30, 12, 8, 18)  # left, top, right, bottom
_BACK, _AXIS, _LINE, _DOT = (24, 24, 28), (120, 120, 130), (90, 170, 255), (255, 255, 255)
_LIMIT = (255, 110, 90)


def plot_scale(changes: Sequence[float], threshold: float = 0.0) -> float:
    """The top of the plot's y axis: a round number above every change and the threshold."""
    top = max([*changes, threshold, 1.0])
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 255):
        if top <= step:
            return float(step)
    return 255.0


def plot_points(
    changes: Sequence[float], threshold: float = 0.0, size: tuple[int, int] = PLOT_SIZE
) -> list[tuple[int, int]]:
    """Where the plot draws each change: run k (from 0) at x, its change at y (pixels)."""
    left, top, right, bottom = _MARGIN
    width, height = size[0] - left - right, size[1] - top - bottom
    scale = plot_scale(changes, threshold)
    n = len(changes)
    points = []
    for k, c in enumerate(changes):
        x = left + (width // 2 if n == 1 else round(k * width / (n - 1)))
        y = top + round((1 - min(c, scale) / scale) * height)
        points.append((x, y))
    return points


def threshold_y(
    changes: Sequence[float], threshold: float, size: tuple[int, int] = PLOT_SIZE
) -> int:
    """The y (pixels) of the threshold's line."""
    _, top, _, bottom = _MARGIN
    height = size[1] - top - bottom
    return top + round((1 - threshold / plot_scale(changes, threshold)) * height)


def change_plot(
    changes: Sequence[float],
    threshold: float = 0.0,
    title: str = "change per run",
    size: tuple[int, int] = PLOT_SIZE,
) -> Image.Image:
    """A small plot of an image's change per run (0-255 units), the threshold as a red line:
    each change a white dot joined by a blue line, run numbers along the bottom."""
    image = Image.new("RGB", size, _BACK)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    left, top, right, bottom = _MARGIN
    x0, y0, x1, y1 = left, top, size[0] - right, size[1] - bottom
    draw.line([(x0, y0), (x0, y1), (x1, y1)], fill=_AXIS)
    scale = plot_scale(changes, threshold)
    draw.text((2, y0 - 4), f"{scale:g}", fill=_AXIS, font=font)
    draw.text((2, y1 - 8), "0", fill=_AXIS, font=font)
    draw.text((x0 + 4, 0), title, fill=(220, 220, 220), font=font)
    if threshold:
        ty = threshold_y(changes, threshold, size)
        draw.line([(x0 + 1, ty), (x1, ty)], fill=_LIMIT)
    points = plot_points(changes, threshold, size)
    if len(points) <= 8:  # each change's value beside its dot, where they fit
        for (x, y), c in zip(points, changes, strict=True):
            draw.text((min(x + 3, x1 - 22), max(y - 11, 0)), f"{c:.1f}", fill=_DOT, font=font)
    if len(points) > 1:
        draw.line(points, fill=_LINE, width=1)
    for k, (x, y) in enumerate(points):
        draw.rectangle([x - 1, y - 1, x + 1, y + 1], fill=_DOT)
        draw.text((x - 2, y1 + 3), str(k + 1), fill=_AXIS, font=font)
    return image
