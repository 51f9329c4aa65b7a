"""The "Multipass" section of the WebUI's settings."""

from __future__ import annotations

from typing import Any

from . import compat

SECTION = ("multipass", "Multipass")
DEFAULT_PASSES = 3
MAX_PASSES_SHOWN = 16


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


def _opt(name: str, default: Any) -> Any:
    return getattr(compat.host_module("modules.shared").opts, name, default)


def passes_shown() -> int:
    return max(1, min(MAX_PASSES_SHOWN, int(_opt("multipass_passes", DEFAULT_PASSES))))


def padding_unit() -> str:
    value = _opt("multipass_padding_unit", "px")
    return value if value in ("px", "fraction") else "px"
