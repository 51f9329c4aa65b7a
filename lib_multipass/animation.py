"""The chain as an animation: one frame per stage of an image (the base or the given image, each
run, the last being the final), as an animated WebP or GIF.

Every stage is a whole image (a crop pass's stage has its crop pasted in place), scaled to one
frame size no larger than the final's, with a caption strip naming the stage. Frames are
bounded: at most MAX_SIDE px a side, and at most MAX_TOTAL_PIXELS over all frames together,
so a long chain of large images stays small in memory and on disk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from .fields import ANIMATION_FORMATS

MAX_SIDE = 512  # a frame's longest side, at most
MAX_TOTAL_PIXELS = 48_000_000  # every frame's pixels together (a 256-run chain stays bounded)
CAPTION = 14  # height of the caption strip under each frame


def frame_size(final: tuple[int, int], frames: int) -> tuple[int, int]:
    """The picture part of each frame: the final's aspect, at most MAX_SIDE a side, smaller
    when there are so many frames that they would pass MAX_TOTAL_PIXELS together."""
    w, h = final
    scale = min(1.0, MAX_SIDE / max(w, h))
    budget = MAX_TOTAL_PIXELS / max(1, frames)
    scale = min(scale, math.sqrt(budget / (w * h)))
    return max(8, round(w * scale)), max(8, round(h * scale))


def frames(stages: Sequence[tuple[Image.Image, str]]) -> list[Image.Image]:
    """One frame per stage, in order: the stage's image at the frame size over its caption."""
    if not stages:
        return []
    size = frame_size(stages[-1][0].size, len(stages))
    font = ImageFont.load_default()
    out = []
    for image, label in stages:
        frame = Image.new("RGB", (size[0], size[1] + CAPTION), (24, 24, 28))
        frame.paste(image.convert("RGB").resize(size, Image.Resampling.LANCZOS), (0, 0))
        ImageDraw.Draw(frame).text((3, size[1] + 1), label, fill=(235, 235, 235), font=font)
        out.append(frame)
    return out


def stages_of(outputs: Sequence[Any], first: str = "base") -> list[tuple[Image.Image, str]]:
    """An image's stages (a job's RunOutputs for it) with their captions: `first` (the base or
    the given input), then each run's label, the last marked as the final."""
    out = []
    for k, o in enumerate(outputs):
        label = first if o.run is None else o.run.label
        if o.skipped:
            label += " (skipped)"
        if k == len(outputs) - 1 and k > 0:
            label += " = final"
        out.append((o.image, label))
    return out


def save(images: Sequence[Image.Image], path: Path, fmt: str, frame_ms: int, loop: int = 0) -> Path:
    """Write frames as an animated `fmt` ('webp' or 'gif'), each shown `frame_ms`
    milliseconds, played `loop` times (0: forever)."""
    if fmt not in ANIMATION_FORMATS or fmt == "none":
        raise ValueError(f"animation format {fmt!r} is not one of webp, gif")
    first, rest = images[0], list(images[1:])
    options: dict[str, Any] = {
        "save_all": True,
        "append_images": rest,
        "duration": frame_ms,
        "loop": loop,
    }
    if fmt == "webp":
        first.save(path, "WEBP", quality=85, method=4, **options)
    else:
        first.save(path, "GIF", optimize=False, disposal=1, **options)
    return path
