"""XYZ plot axes such as "[Multipass] Pass 1 checkpoint", added once from on_before_ui.

An axis value is written into a copy of the cell's script args (XYZ copies `p` shallowly for
each cell, so the shared args and recipe dict are never mutated), and switches Multipass on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from ..fields import PASS_FIELDS
from ..recipe import coerce, plain
from . import compat

TITLE = "Multipass"
AXIS_FIELDS = (
    "checkpoint",
    "denoising_strength",
    "steps",
    "cfg_scale",
    "clip_skip",
    "sampler",
    "upscale_by",
    "prompt",
    "tile_overlap",
    "seams_fix_strength",
    "controlnet_1_model",
    "controlnet_1_weight",
    "controlnet_1_guidance_end",
    "repeats",
    "converge_below",
)
LABEL = "[Multipass] Pass {n} {label}"


def axis_label(index: int, name: str) -> str:
    f = next(f for f in PASS_FIELDS if f.name == name)
    return LABEL.format(n=index + 1, label=f.label.lower())


def _our_args(p: Any) -> tuple[int, int] | None:
    for script in getattr(p.scripts, "alwayson_scripts", []):
        if script.title() == TITLE:
            return script.args_from, script.args_to
    return None


def apply_value(p: Any, index: int, name: str, value: Any) -> None:
    """Set pass `index`'s field `name` to `value` in this cell's own copy of the args."""
    span = _our_args(p)
    if span is None:
        raise RuntimeError("the Multipass script is not loaded in this tab")
    f = next(f for f in PASS_FIELDS if f.name == name)
    args = list(p.script_args)
    start = span[0]
    recipe = copy.deepcopy(args[start + 1]) if isinstance(args[start + 1], dict) else {}
    passes = recipe.setdefault("passes", [])
    while len(passes) <= index:
        passes.append({"enabled": False})
    value = coerce(f, value, lenient=True)
    passes[index] = {
        **passes[index],
        name: plain(value),
        "enabled": True,
    }
    args[start] = True
    args[start + 1] = recipe
    p.script_args = tuple(args)


def _apply(index: int, name: str) -> Callable[[Any, Any, Any], None]:
    def apply(p: Any, x: Any, xs: Any) -> None:
        apply_value(p, index, name, x)

    return apply


def axis_options(xyz: Any, n_passes: int) -> list[Any]:
    """The AxisOption objects for `n_passes` passes."""
    kinds = {"int": int, "float": float}
    out = []
    for i in range(n_passes):
        for name in AXIS_FIELDS:
            f = next(f for f in PASS_FIELDS if f.name == name)
            kwargs: dict[str, Any] = {}
            if name == "checkpoint":
                kwargs["choices"] = compat.checkpoint_titles
            if name == "sampler":
                kwargs["choices"] = compat.sampler_names
            if name == "controlnet_1_model":
                kwargs["choices"] = lambda: compat.controlnet_model_names() or []
            out.append(
                xyz.AxisOption(
                    axis_label(i, name), kinds.get(f.kind, str), _apply(i, name), **kwargs
                )
            )
    return out


def find_xyz_module() -> Any | None:
    """The loaded xyz_grid script module, if the host has one."""
    scripts = compat.host_module("modules.scripts")
    for data in getattr(scripts, "scripts_data", []):
        if data.script_class.__module__ in (
            "xyz_grid.py",
            "scripts.xyz_grid",
        ) or data.path.endswith("xyz_grid.py"):
            return data.module
    return None


def register(n_passes: int) -> bool:
    """Add the axes to XYZ plot, once; True if they are there."""
    xyz = find_xyz_module()
    if xyz is None:
        return False
    have = {o.label for o in xyz.axis_options}
    new = [o for o in axis_options(xyz, n_passes) if o.label not in have]
    xyz.axis_options.extend(new)
    return True
