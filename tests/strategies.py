"""Hypothesis strategies for valid recipes, generated from the field table itself."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from lib_multipass.fields import CONTROLNET_UNITS, MAX_SIDE, PASS_FIELDS, Field

TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)),
    max_size=24,
)
# values that stress the infotext quoting
TRICKY = st.sampled_from(
    [
        '"quoted"',
        " lead",
        "trail ",
        "a, b",
        "k: v",
        "line\nbreak",
        "512x512",
        '"',
        "\\",
        "",
        "{prompt}, x",
    ]
)


def box() -> st.SearchStrategy[tuple[int, int, int, int]]:
    return st.tuples(
        st.integers(0, MAX_SIDE - 1),
        st.integers(0, MAX_SIDE - 1),
        st.integers(1, 512),
        st.integers(1, 512),
    ).map(lambda t: (t[0], t[1], min(MAX_SIDE, t[0] + t[2]), min(MAX_SIDE, t[1] + t[3])))


def value(f: Field) -> st.SearchStrategy[Any]:
    """Any valid value of field `f`."""
    if f.kind == "bool":
        return st.booleans()
    if f.kind == "int":
        s = st.integers(int(f.minimum), int(f.maximum))
        return s | st.just(f.special) if f.special is not None else s
    if f.kind == "float":
        s = st.floats(f.minimum, f.maximum, allow_nan=False)
        return s | st.just(f.special) if f.special is not None else s
    if f.kind == "str":
        return TEXT | TRICKY
    if f.kind == "choice":
        return st.sampled_from(f.choices)
    if f.kind == "floats":
        item = st.floats(f.minimum, f.maximum)
        item = item | st.just(f.special) if f.special is not None else item
        return st.lists(item, max_size=6).map(tuple)
    if f.kind == "sides":
        return st.just(()) | st.tuples(*[st.floats(f.minimum, f.maximum)] * 4)
    if f.kind == "boxes":
        return st.lists(box(), max_size=3).map(tuple)
    if f.kind == "names":
        return st.lists((TEXT | TRICKY).filter(bool), max_size=3).map(tuple)
    raise AssertionError(f.kind)


@st.composite
def pass_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """A valid pass as a dict of typed values; each field present or left to its default."""
    out = {}
    for f in PASS_FIELDS:
        if draw(st.booleans()):
            out[f.name] = draw(value(f))
    if out.get("schedule") == "list" and not out.get("strengths"):
        out["strengths"] = (0.5,)
    if out.get("region") == "crop" and out.get("mask_source") == "boxes" and not out.get("boxes"):
        out["boxes"] = ((0, 0, 8, 8),)
    if out.get("region") == "crop" and out.get("mask_source") == "detect":
        out["detector"] = out.get("detector") or "opencv-face"
    low, high = out.get("detect_min_area", 0.0), out.get("detect_max_area", 1.0)
    if low > high:
        out["detect_min_area"], out["detect_max_area"] = high, low
    if bool(out.get("working_width")) != bool(out.get("working_height")):
        out["working_width"] = out["working_height"] = 512
    for name in ("tile_width", "tile_height"):  # tiles are whole multiples of 8
        if name in out:
            out[name] -= out[name] % 8
    if bool(out.get("tile_width")) != bool(out.get("tile_height")):
        out["tile_width"] = out["tile_height"] = 512
    if out.get("region") == "tiles" and out.get("tile_style") == "sd-upscale":
        out["seams_fix"] = "none"
    if out.get("converge_below") and out.get("repeats", 1) < 2:
        out["repeats"] = 2  # convergence stops repeats: it needs some
    for n in range(1, CONTROLNET_UNITS + 1):  # a unit needs a model; it ends after it starts
        k = f"controlnet_{n}_"
        if out.get(k + "module") and not out.get(k + "model"):
            out[k + "model"] = "control_sd15_tile"
        start, end = out.get(k + "guidance_start", 0.0), out.get(k + "guidance_end", 1.0)
        if out.get(k + "model") and start >= end:
            out[k + "guidance_start"], out[k + "guidance_end"] = 0.0, 1.0
    return out


@st.composite
def recipe_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """A valid recipe dict (no base: that is the headless runner's, not the infotext's)."""
    out: dict[str, Any] = {"passes": draw(st.lists(pass_dicts(), max_size=4))}
    if draw(st.booleans()):
        out["step_mode"] = draw(st.sampled_from(["proportional", "fixed"]))
    n = len(out["passes"])
    if n and draw(st.booleans()):  # a chain started later, stopped early, or both
        start = draw(st.integers(1, n))
        stop = draw(st.sampled_from([0, *range(start, n + 1)]))
        chosen = out["passes"][start - 1 : stop or n]
        if any(p.get("enabled", True) for p in chosen):
            out["from_pass"], out["stop_after"] = start, stop
    return out
