"""ControlNet units of a pass: what the pass's flat `controlnet_N_*` fields ask for, as one
value the plan, the engine and a host backend pass along. Pure: the host's ControlNet is
reached in webui/compat.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .fields import CONTROLNET_UNITS


@dataclass(frozen=True)
class ControlUnit:
    """One ControlNet unit of a pass; its control image is the pass's input piece (the whole
    image, a crop or a tile), given with each sampling request."""

    number: int  # 1-based: the pass's controlnet_<number>_ fields
    model: str
    module: str  # '' : no preprocessor
    weight: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    control_mode: str = "balanced"

    def field(self, name: str) -> str:
        """The pass field this unit's `name` comes from, for error messages."""
        return f"controlnet_{self.number}_{name}"


def units_of(p: Any) -> tuple[ControlUnit, ...]:
    """The pass's ControlNet units: those with a model set."""
    units = []
    for n in range(1, CONTROLNET_UNITS + 1):
        k = f"controlnet_{n}_"
        model = getattr(p, k + "model", "")
        if not model:
            continue
        units.append(
            ControlUnit(
                number=n,
                model=model,
                module=getattr(p, k + "module"),
                weight=getattr(p, k + "weight"),
                guidance_start=getattr(p, k + "guidance_start"),
                guidance_end=getattr(p, k + "guidance_end"),
                control_mode=getattr(p, k + "control_mode"),
            )
        )
    return tuple(units)


def unit_problems(p: Any) -> list[tuple[str, Any, str]]:
    """Rules that tie a unit's fields together, as (field, value, allowed) for the recipe's
    checks to place (the host's lists are checked by the backend)."""
    problems = []
    for n in range(1, CONTROLNET_UNITS + 1):
        k = f"controlnet_{n}_"
        model, module = getattr(p, k + "model", ""), getattr(p, k + "module", "")
        start, end = getattr(p, k + "guidance_start", 0.0), getattr(p, k + "guidance_end", 1.0)
        if module and not model:
            allowed = f"a ControlNet model for preprocessor {module!r} (a unit needs a model)"
            problems.append((k + "model", model, allowed))
        if model and start >= end:
            allowed = f"an ending step after the starting step ({start:g})"
            problems.append((k + "guidance_end", end, allowed))
    return problems


# a ControlNet file's family from its header: the cross-attention width of any attn2.to_k
# (LDM and diffusers layouts alike), else a transformer ControlNet's marks
_CONTEXT_FAMILY = {768: "sd1", 1024: "sd2", 2048: "sdxl", 1280: "sdxl"}
_MARKS = (("double_blocks.", "flux"), ("single_blocks.", "flux"), ("controlnet_x_embedder", "flux"))


def family_from_header(header: dict) -> str | None:
    """The checkpoint family a ControlNet model's `.safetensors` header is made for; None
    where the header does not say (the host then decides)."""
    for key, entry in header.items():
        if key.endswith("attn2.to_k.weight") and isinstance(entry, dict):
            shape = entry.get("shape") or []
            if len(shape) == 2 and shape[1] in _CONTEXT_FAMILY:
                return _CONTEXT_FAMILY[shape[1]]
    for mark, family in _MARKS:
        if any(mark in k for k in header):
            return family
    return None


def model_family(path: str) -> str | None:
    """The family of a ControlNet model file (header only; None for other formats or when
    it cannot be read)."""
    from .checkpoints import read_safetensors_header

    if not str(path).lower().endswith(".safetensors"):
        return None
    try:
        return family_from_header(read_safetensors_header(path))
    except (OSError, ValueError):
        return None
