"""Crop geometry for detailed ("only masked") inpainting, in whole pixels.

Boxes are (x1, y1, x2, y2) with x2 and y2 exclusive, as PIL's getbbox returns them. The rules:
the crop always contains the mask's box and lies inside the image; it contains the padded box
where the image allows; its aspect ratio equals the working size's, to within rounding, so the
generated crop is never stretched. Where the image is too small for that aspect, the working size
follows the crop instead (same area, rounded to multiples of 8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Box = tuple[int, int, int, int]
Size = tuple[int, int]

# native side of each family's training resolution, for automatic working sizes
FAMILY_SIDE = {
    "sd1": 512,
    "sd2": 768,
    "sdxl": 1024,
    "sd3": 1024,
    "flux": 1024,
    "chroma": 1024,
    "qwen": 1328,
    # the newest Forge Neo's image families (Flux.2 Klein, Z-Image, Lumina-2/Neta, Anima)
    "flux2": 1024,
    "zimage": 1024,
    "lumina2": 1024,
    "anima": 1024,
}
# families a host runs that Multipass cannot size by itself, and why
UNSIZED = {"wan": "a video model (Wan), with no one native frame size"}
MAX_AUTO_ASPECT = 3.0  # automatic working sizes stay within 1:3 .. 3:1


@dataclass(frozen=True)
class Crop:
    """Where a detailed-inpaint pass works: `box` in the image, generated at `working` size."""

    box: Box
    working: Size

    @property
    def scale(self) -> float:
        """Working pixels per image pixel (above 1: the crop gains detail)."""
        return self.working[0] / (self.box[2] - self.box[0])


def round8(x: float, minimum: int = 64) -> int:
    """Round to the nearest multiple of 8 (latents are 1/8 of the image), at least `minimum`."""
    return max(minimum, math.floor(x / 8 + 0.5) * 8)


def resolve_padding(
    mask_box: Box, padding: float, unit: str, sides: tuple[float, ...] = ()
) -> tuple[int, int, int, int]:
    """Padding per side (left, top, right, bottom) in pixels.

    A fraction is of the mask box's width (left, right) or height (top, bottom), rounded up, so a
    small mask gets a little context and a large one a lot.
    """
    left, top, right, bottom = sides if sides else (padding,) * 4
    if unit == "px":
        return tuple(math.ceil(v) for v in (left, top, right, bottom))  # type: ignore[return-value]
    if unit != "fraction":
        raise ValueError(f"padding unit {unit!r} is not one of 'px', 'fraction'")
    w = mask_box[2] - mask_box[0]
    h = mask_box[3] - mask_box[1]
    return (
        math.ceil(left * w - 1e-9),
        math.ceil(top * h - 1e-9),
        math.ceil(right * w - 1e-9),
        math.ceil(bottom * h - 1e-9),
    )


def pad_box(box: Box, pads: tuple[int, int, int, int], size: Size) -> Box:
    """`box` grown by the padding on each side, clamped to the image."""
    x1, y1, x2, y2 = box
    left, top, right, bottom = pads
    w, h = size
    return (max(0, x1 - left), max(0, y1 - top), min(w, x2 + right), min(h, y2 + bottom))


def size_for_area(area: float, aspect: float, minimum: int = 64) -> Size:
    """Multiples of 8 with about `area` pixels whose ratio is nearest `aspect`.

    Rounding each side alone can be 10% off the aspect at small sizes; this tries the
    multiples of 8 on both sides of the ideal width and picks the truest ratio.
    """
    width = math.sqrt(area * aspect)
    best: tuple[float, float, Size] | None = None
    for w in {max(minimum, 8 * math.floor(width / 8)), max(minimum, 8 * math.ceil(width / 8))}:
        for h in {
            max(minimum, 8 * math.floor(w / aspect / 8)),
            max(minimum, 8 * math.ceil(w / aspect / 8)),
        }:
            key = (abs(math.log((w / h) / aspect)), abs(w * h - area))
            if best is None or key < best[:2]:
                best = (*key, (w, h))
    assert best is not None
    return best[2]


def auto_working_size(box_size: Size, family: str = "sd1") -> Size:
    """The checkpoint's native pixel area at the crop's aspect (within 1:3..3:1), multiples of 8."""
    side = FAMILY_SIDE.get(family)
    if side is None:
        raise ValueError(f"checkpoint family {family!r} is not one of {', '.join(FAMILY_SIDE)}")
    aspect = min(MAX_AUTO_ASPECT, max(1 / MAX_AUTO_ASPECT, box_size[0] / box_size[1]))
    return size_for_area(side * side, aspect)


def _place(lo_need: int, hi_need: int, length: int, extent: int, centre: float) -> int:
    """Start of a span of `length` in [0, extent] that covers [lo_need, hi_need), near `centre`."""
    start = math.floor(centre - length / 2 + 0.5)
    low = max(0, hi_need - length)
    high = min(lo_need, extent - length)
    return min(max(start, low), high)


def crop_for_mask(
    mask_box: Box,
    image_size: Size,
    pads: tuple[int, int, int, int],
    working: Size | None = None,
    family: str = "sd1",
) -> Crop:
    """The crop and working size for a mask box, with padding and the working aspect ratio.

    `working` None means automatic (from `family`). The working size is rounded to multiples of 8.
    """
    w_img, h_img = image_size
    x1, y1, x2, y2 = mask_box
    if not (0 <= x1 < x2 <= w_img and 0 <= y1 < y2 <= h_img):
        raise ValueError(f"mask box {mask_box} is not inside the image of size {w_img}x{h_img}")
    padded = pad_box(mask_box, pads, image_size)
    pw, ph = padded[2] - padded[0], padded[3] - padded[1]
    if working is None:
        work = auto_working_size((pw, ph), family)
    else:
        work = (round8(working[0]), round8(working[1]))
    aspect = work[0] / work[1]

    # grow the padded box to the working aspect, then shrink to fit the image if needed
    cw, ch = (ph * aspect, ph) if pw / ph < aspect else (pw, pw / aspect)
    fit = min(1.0, w_img / cw, h_img / ch)
    cw, ch = cw * fit, ch * fit
    mw, mh = x2 - x1, y2 - y1
    if cw < mw - 1e-9 or ch < mh - 1e-9:
        # the mask itself cannot be framed at this aspect inside the image:
        # crop the padded box and let the working size follow its aspect instead
        cw, ch = pw, ph
        work = size_for_area(work[0] * work[1], pw / ph, 8)
    cw_i = min(w_img, max(mw, math.floor(cw + 0.5)))
    ch_i = min(h_img, max(mh, math.floor(ch + 0.5)))

    def start(lo_m: int, hi_m: int, lo_p: int, hi_p: int, length: int, extent: int) -> int:
        centre = (lo_p + hi_p) / 2
        if length >= hi_p - lo_p:
            return _place(lo_p, hi_p, length, extent, centre)
        return _place(lo_m, hi_m, length, extent, centre)

    cx = start(x1, x2, padded[0], padded[2], cw_i, w_img)
    cy = start(y1, y2, padded[1], padded[3], ch_i, h_img)
    return Crop((cx, cy, cx + cw_i, cy + ch_i), work)


def scale_box(box: Box, src: Size, dst: Size) -> Box:
    """A box from an image of size `src` to the same place in an image of size `dst`.

    Rounds outwards, so the scaled box always covers what the original covered.
    """
    sx, sy = dst[0] / src[0], dst[1] / src[1]
    x1, y1, x2, y2 = box
    return (
        max(0, math.floor(x1 * sx)),
        max(0, math.floor(y1 * sy)),
        min(dst[0], math.ceil(x2 * sx)),
        min(dst[1], math.ceil(y2 * sy)),
    )


def upscaled_size(size: Size, factor: float) -> Size:
    """The size after upscaling by `factor`, rounded to multiples of 8 (never below 64)."""
    if factor == 1:
        return size
    return round8(size[0] * factor), round8(size[1] * factor)
