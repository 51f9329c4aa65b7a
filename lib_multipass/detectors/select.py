"""Which detections a pass inpaints (pure): confidence, area bounds, order, top N."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..geometry import Size
from . import Detection


def order_key(order: str):
    """The sort key of a detection order (largest first, left to right...)."""
    if order == "largest":
        return lambda d: (-d.area, d.box[0], d.box[1])
    if order == "left-to-right":
        return lambda d: (d.box[0], d.box[1], -d.area)
    if order == "top-to-bottom":
        return lambda d: (d.box[1], d.box[0], -d.area)
    if order == "confidence":
        return lambda d: (-d.score, -d.area, d.box[0])
    raise ValueError(f"detection order {order!r} is not one of largest, left-to-right, ...")


def confident_count(p: Any, detections: Sequence[Detection]) -> int:
    """How many detections a detect pass counts as found: those at least its threshold sure
    (what the infotext's "found" and the preview's count say)."""
    return sum(1 for d in detections if d.score >= p.detect_threshold)


def select_for(p: Any, detections: Sequence[Detection], size: Size) -> list[Detection]:
    """`select` with a detect pass's own filters."""
    return select(
        detections,
        size,
        threshold=p.detect_threshold,
        max_count=p.detect_max,
        order=p.detect_order,
        min_area=p.detect_min_area,
        max_area=p.detect_max_area,
    )


def select(
    detections: Sequence[Detection],
    size: Size,
    *,
    threshold: float,
    max_count: int,
    order: str,
    min_area: float,
    max_area: float,
) -> list[Detection]:
    """The detections to inpaint, in order: at least `threshold` confident, with an area
    between `min_area` and `max_area` of the image's, the first `max_count` (0: all)."""
    image_area = size[0] * size[1]
    kept = [
        d
        for d in detections
        if d.score >= threshold and min_area <= d.area / image_area <= max_area
    ]
    kept.sort(key=order_key(order))
    return kept[:max_count] if max_count else kept
