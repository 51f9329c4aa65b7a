"""The "Multipass" section of the WebUI's settings."""

from __future__ import annotations

from typing import Any

from ..fields import OUTPUT_FIELDS, field_map
from . import compat

SECTION = ("multipass", "Multipass")
DEFAULT_PASSES = 3
MAX_PASSES_SHOWN = 16
# always-on scripts that shape sampling and keep working on a pass's own image, by their names
# (lower-case titles) in A1111/reForge extensions and Forge 2/Neo built-ins; Multipass itself
# never runs in its passes, and a pass's ControlNet comes from its own units
DEFAULT_PASS_SCRIPTS = (
    "soft inpainting",
    "dynamic thresholding (cfg scale fix)",
    "dynamicthresholding (cfg-fix) integrated",
    "freeu",
    "freeu integrated (sd 1.x, sd 2.x, sdxl)",
    "selfattentionguidance integrated (sd 1.x, sd 2.x, sdxl)",
    "perturbedattentionguidance integrated",
)


def register(shared: Any, gr: Any) -> None:
    """Add the options (called from on_ui_settings)."""
    option = shared.OptionInfo
    shared.opts.add_option(
        "multipass_passes",
        option(
            DEFAULT_PASSES,
            "Passes shown in the accordion (reload the UI to apply)",
            gr.Slider,
            {"minimum": 1, "maximum": MAX_PASSES_SHOWN, "step": 1},
            section=SECTION,
        ),
    )
    shared.opts.add_option(
        "multipass_save_intermediates",
        option(False, "Also save the base image and every pass's image", section=SECTION),
    )
    register_chain(shared, gr)
    shared.opts.add_option(
        "multipass_pass_scripts",
        option(
            list(DEFAULT_PASS_SCRIPTS),
            "The job's scripts that also run in every pass, with the job's settings "
            "(Multipass itself never does; a pass's ControlNet comes from its own units)",
            gr.Dropdown,
            _pass_script_choices,
            section=SECTION,
        ),
    )
    shared.opts.add_option(
        "multipass_padding_unit",
        option(
            "px",
            "Default padding unit of detail crops",
            gr.Radio,
            {"choices": ["px", "fraction"]},
            section=SECTION,
        ),
    )


def _pass_script_choices() -> dict[str, Any]:
    """The setting's choices: the host's always-on scripts, with the defaults it has not."""
    names = compat.alwayson_script_names()
    return {
        "choices": [*names, *(n for n in DEFAULT_PASS_SCRIPTS if n not in names)],
        "multiselect": True,
    }


def pass_scripts() -> tuple[str, ...]:
    """The job's always-on scripts that also run in every pass, with the job's args."""
    value = _opt("multipass_pass_scripts", list(DEFAULT_PASS_SCRIPTS))
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    return tuple(str(v).lower() for v in value or () if str(v).strip())


def register_chain(shared: Any, gr: Any) -> None:
    """The options of chains: the change plot and the chain animation, with the bounds the
    command line's flags have (fields.OUTPUT_FIELDS)."""
    option = shared.OptionInfo
    f = field_map(OUTPUT_FIELDS)
    shared.opts.add_option(
        "multipass_change_plot",
        option(
            False,
            "Show a plot of each image's change per run in the gallery (passes of several runs)",
            section=SECTION,
        ),
    )
    anim = f["animation"]
    shared.opts.add_option(
        "multipass_animation",
        option(
            anim.default,
            "Save each image's chain (base, each run, final) as an animation beside it, and "
            "show it in the gallery",
            gr.Radio,
            {"choices": list(anim.choices)},
            section=SECTION,
        ),
    )
    for name, key in (
        ("frame_ms", "multipass_animation_frame_ms"),
        ("loop", "multipass_animation_loop"),
    ):
        field = f[name]
        shared.opts.add_option(
            key,
            option(
                field.default,
                field.label + (f" ({field.help})" if field.help else ""),
                gr.Slider,
                {"minimum": field.minimum, "maximum": field.maximum, "step": field.step},
                section=SECTION,
            ),
        )


def _opt(name: str, default: Any) -> Any:
    return getattr(compat.host_module("modules.shared").opts, name, default)


def passes_shown() -> int:
    return max(1, min(MAX_PASSES_SHOWN, int(_opt("multipass_passes", DEFAULT_PASSES))))


def padding_unit() -> str:
    value = _opt("multipass_padding_unit", "px")
    return value if value in ("px", "fraction") else "px"


def change_plot() -> bool:
    return bool(_opt("multipass_change_plot", False))


def animation() -> Any:
    """The chain animation the settings ask for (runner.Animation); a value out of bounds (a
    hand-edited config) falls back to the default."""
    from ..recipe import _Bad, coerce
    from ..runner import Animation

    f = field_map(OUTPUT_FIELDS)
    values = {}
    for name, key in (
        ("animation", "multipass_animation"),
        ("frame_ms", "multipass_animation_frame_ms"),
        ("loop", "multipass_animation_loop"),
    ):
        try:
            values[name] = coerce(f[name], _opt(key, f[name].default), lenient=True)
        except _Bad:
            values[name] = f[name].default
    return Animation(values["animation"], values["frame_ms"], values["loop"])
