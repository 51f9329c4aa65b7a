"""The one place that knows how A1111 1.6-1.10, reForge and Forge 2 differ where Multipass
touches them. Features are detected, not version strings.

- Checkpoint switch: A1111 and reForge reload weights (`reload_model_weights`, with
  `SkipWritingToConfig` so the user's choice in the settings stays); Forge 2, where those are
  empty, changes the checkpoint through `modules_forge.main_entry` and `forge_model_reload`.
- Nested img2img: A1111 reloads the settings' checkpoint at the start of every
  `process_images`, so a nested pass names its checkpoint in `override_settings` (restored
  afterwards); Forge already follows the changed setting. reForge crashes on `p.scripts = None`,
  so nested passes get an empty script runner.
"""

from __future__ import annotations

import importlib
from typing import Any

MINIMUM = "AUTOMATIC1111 WebUI 1.6, reForge or Forge 2"


class HostError(RuntimeError):
    """The WebUI lacks something Multipass needs."""


def host_module(name: str) -> Any:
    """A module of the host WebUI, imported when first needed."""
    return importlib.import_module(name)


def is_forge() -> bool:
    """Forge 2: models are switched through modules_forge.main_entry."""
    try:
        sd_models = host_module("modules.sd_models")
        host_module("modules_forge.main_entry")
    except ImportError:
        return False
    return hasattr(sd_models, "forge_model_reload")


def check_host() -> None:
    """Fail with a clear message on a WebUI too old for Multipass."""
    sd_models = host_module("modules.sd_models")
    needed = ["checkpoint_aliases", "reload_model_weights"]
    missing = [n for n in needed if not hasattr(sd_models, n)]
    try:
        host_module("modules.ui_components").InputAccordion  # noqa: B018 - 1.6+
    except (ImportError, AttributeError):
        missing.append("ui_components.InputAccordion")
    if missing:
        raise HostError(f"Multipass needs {MINIMUM} or newer (missing: {', '.join(missing)})")


# -- checkpoints -------------------------------------------------------------------------------


def find_checkpoint(name: str) -> Any | None:
    """The CheckpointInfo listed under `name` (title, name or hash), exactly; never a path."""
    return host_module("modules.sd_models").checkpoint_aliases.get(name)


def refresh_checkpoint_titles() -> list[str]:
    """Re-read the host's checkpoint folders, as its own refresh button does; the new list."""
    host_module("modules.sd_models").list_models()
    return checkpoint_titles()


def no_progress(gr: Any) -> Any:
    """show_progress's "don't" value: False in gradio 3, "hidden" in gradio 4."""
    major = int(str(getattr(gr, "__version__", "3")).split(".")[0] or 3)
    return "hidden" if major >= 4 else False


def checkpoint_titles() -> list[str]:
    """The host's checkpoint list, as its dropdowns show it."""
    return list(host_module("modules.sd_models").checkpoints_list)


def current_checkpoint() -> Any | None:
    """The CheckpointInfo of the loaded (or, on Forge, selected) checkpoint."""
    sd_models = host_module("modules.sd_models")
    data = getattr(sd_models, "model_data", None)
    params = getattr(data, "forge_loading_parameters", None)
    if is_forge() and params:
        return params.get("checkpoint_info")
    model = getattr(host_module("modules.shared"), "sd_model", None)
    info = getattr(model, "sd_checkpoint_info", None)
    if info is not None:
        return info
    return find_checkpoint(host_module("modules.shared").opts.sd_model_checkpoint)


def switch_checkpoint(info: Any) -> None:
    """Load `info` for the passes that follow, leaving the user's saved setting alone."""
    sd_models = host_module("modules.sd_models")
    if is_forge():
        main_entry = host_module("modules_forge.main_entry")
        main_entry.checkpoint_change(info.title, save=False, refresh=True)
        sd_models.forge_model_reload()
        return
    with sd_models.SkipWritingToConfig():
        sd_models.reload_model_weights(info=info)


def nested_override_settings(info: Any | None, vae: str) -> dict[str, Any]:
    """override_settings for a nested pass, so the host keeps the pass's checkpoint and VAE."""
    out: dict[str, Any] = {}
    if info is not None and not is_forge():
        out["sd_model_checkpoint"] = info.title
    if vae:
        out["sd_vae"] = vae
    return out


# -- lists -------------------------------------------------------------------------------------


def sampler_names() -> list[str]:
    """Sampler names the host accepts (visible ones first)."""
    sd_samplers = host_module("modules.sd_samplers")
    return [s.name for s in getattr(sd_samplers, "all_samplers", sd_samplers.samplers)]


def find_sampler(name: str) -> Any | None:
    """The host's sampler config for a name or alias."""
    return host_module("modules.sd_samplers").find_sampler_config(name)


def scheduler_labels() -> list[str]:
    """Schedule types (1.9+; empty on older hosts, where a sampler implies its schedule)."""
    try:
        return [s.label for s in host_module("modules.sd_schedulers").schedulers]
    except ImportError:
        return []


def find_scheduler(name: str) -> bool:
    try:
        return name in host_module("modules.sd_schedulers").schedulers_map
    except ImportError:
        return False


def upscaler_names() -> list[str]:
    """Image upscalers (latent upscale modes only work inside hires fix, so they are left out)."""
    return [u.name for u in host_module("modules.shared").sd_upscalers]


def vae_names() -> list[str]:
    """VAE choices as the host lists them ('Automatic', 'None', files)."""
    try:
        return list(host_module("modules.shared_items").sd_vae_items())
    except (ImportError, AttributeError):
        return ["Automatic", "None", *host_module("modules.sd_vae").vae_dict]


# -- nested processing ------------------------------------------------------------------------


def empty_script_runner() -> Any:
    """A ScriptRunner holding no scripts, for nested passes (reForge reads p.scripts)."""
    return host_module("modules.scripts").ScriptRunner()


def allow_pickles() -> bool:
    """Whether the user started the WebUI with --multipass-allow-ckpt."""
    return bool(getattr(host_module("modules.shared").cmd_opts, "multipass_allow_ckpt", False))
