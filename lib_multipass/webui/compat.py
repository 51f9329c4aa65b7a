"""The one place that knows how A1111 1.6-1.10, reForge, Forge 2 and Forge Neo differ where
Multipass touches them. Features are detected (a function, an attribute), never versions.

Checkpoints: the user's checkpoint setting (`opts.sd_model_checkpoint`, the top dropdown,
config.json) is never written, not even for the length of a pass.

- A1111 and reForge load a pass's checkpoint with `reload_model_weights(info=...)` (under
  `SkipWritingToConfig`, which A1111 needs and reForge ignores). Both hosts reload "the
  settings' checkpoint" at the start of every `process_images` and of every batch, looking the
  setting's value up in `checkpoint_aliases` (`select_checkpoint`). While a nested pass runs,
  that one alias entry resolves to the pass's checkpoint, so those reloads keep the pass's
  model; the entry is put back in a `finally`, and the setting itself is never touched.
- Forge 2 and Neo load whatever `model_data.forge_loading_parameters` names (checkpoint,
  additional modules, storage dtype) in `forge_model_reload()`. Their `checkpoint_change` and
  `modules_change` write the settings (and take a `preset` on Neo), so Multipass sets the
  loading parameters itself, as Forge's own XYZ plot does, and puts the user's back afterwards;
  the next `forge_model_reload()` (the nested pass's, or the user's next job's) loads them.

VAEs and text encoders: A1111 and reForge load a pass's VAE with
`sd_vae.reload_vae_weights(vae_file=...)`; Forge 2 and Neo take VAEs and text encoders as
additional modules. Families: A1111 and reForge flag the loaded model (`is_sdxl`...); Forge 2
and Neo name it by its diffusion engine's class (Flux and newer have no flag).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..schedule import img2img_steps, txt2img_steps

MINIMUM = "AUTOMATIC1111 WebUI 1.6, reForge, Forge 2 or Forge Neo"
MODULE_EXTENSIONS = (".safetensors", ".sft", ".gguf", ".ckpt", ".pt", ".pth", ".bin")
# Forge 2 / Neo diffusion engines (backend/diffusion_engine/*.py) -> Multipass family
ENGINE_FAMILIES = {
    "StableDiffusion": "sd1",
    "StableDiffusion2": "sd2",
    "StableDiffusionXL": "sdxl",
    "StableDiffusionXLRefiner": "sdxl",
    "StableDiffusion3": "sd3",
    "Flux": "flux",
    "Chroma": "chroma",
    "QwenImage": "qwen",
    "QwenImage21": "qwen",
    "Wan": "wan",
    # the newest Neo (mid-2026): Flux.2 Klein, Z-Image, Lumina-2 (Neta), Anima
    "Flux2": "flux2",
    "ZImage": "zimage",
    "Lumina2": "lumina2",
    "Anima": "anima",
}
_CHECKSUM = re.compile(r"\s*\[[^]]+]\s*$")


class HostError(RuntimeError):
    """The WebUI lacks something Multipass needs."""


def host_module(name: str) -> Any:
    """A module of the host WebUI, imported when first needed."""
    return importlib.import_module(name)


def _shared() -> Any:
    return host_module("modules.shared")


def is_forge() -> bool:
    """Forge 2 or Neo: models load in forge_model_reload() from loading parameters."""
    sd_models = host_module("modules.sd_models")
    params = getattr(getattr(sd_models, "model_data", None), "forge_loading_parameters", None)
    return hasattr(sd_models, "forge_model_reload") and isinstance(params, dict)


def check_host() -> None:
    """Fail with a clear message on a WebUI too old for Multipass."""
    sd_models = host_module("modules.sd_models")
    needed = ["checkpoint_aliases", "select_checkpoint"]
    if not is_forge():  # the newest Neo has no reload_model_weights, nor needs it
        needed.append("reload_model_weights")
    missing = [n for n in needed if not hasattr(sd_models, n)]
    try:
        host_module("modules.ui_components").InputAccordion  # noqa: B018 - 1.6+
    except (ImportError, AttributeError):
        missing.append("ui_components.InputAccordion")
    if missing:
        raise HostError(f"Multipass needs {MINIMUM} or newer (missing: {', '.join(missing)})")


# -- checkpoints -------------------------------------------------------------------------------


def find_checkpoint(name: str) -> Any | None:
    """The CheckpointInfo listed under `name` (title, file name, name or hash); never a path.

    A title whose hash the host has not computed yet (Neo hashes at first load) or computed
    differently still finds its file: the '[hash]' part is dropped for a second look-up.
    """
    aliases = host_module("modules.sd_models").checkpoint_aliases
    if not name:
        return None
    info = aliases.get(name)
    if info is None and _CHECKSUM.search(name):
        info = aliases.get(_CHECKSUM.sub("", name))
    return info


def checkpoint_name(info: Any) -> str:
    """A name of `info` that stays valid when the host hashes the file (titles gain ' [hash]')."""
    return str(getattr(info, "name", "") or info.title)


def refresh_checkpoint_titles() -> list[str]:
    """Re-read the host's checkpoint folders, as its own refresh button does; the new list."""
    host_module("modules.sd_models").list_models()
    return checkpoint_titles()


def no_progress(gr: Any) -> Any:
    """show_progress's "don't" value: False in gradio 3, "hidden" in gradio 4."""
    major = int(str(getattr(gr, "__version__", "3")).split(".")[0] or 3)
    return "hidden" if major >= 4 else False


def checkpoint_titles() -> list[str]:
    """The host's checkpoint list, as its own dropdown shows it (titles; names on Forge)."""
    sd_models = host_module("modules.sd_models")
    tiles = getattr(sd_models, "checkpoint_tiles", None)
    try:
        return list(tiles()) if tiles is not None else list(sd_models.checkpoints_list)
    except TypeError:
        return list(sd_models.checkpoints_list)


def checkpoint_entry(name: str) -> str:
    """The entry the host's checkpoint dropdown lists for `name` (`name` if it has none)."""
    info = find_checkpoint(name)
    if info is None:
        return name
    tiles = set(checkpoint_titles())
    for candidate in (info.title, info.name, getattr(info, "short_title", "")):
        if candidate in tiles:
            return candidate
    return name


def _forge_params() -> dict[str, Any]:
    return host_module("modules.sd_models").model_data.forge_loading_parameters


def current_checkpoint() -> Any | None:
    """The CheckpointInfo of the loaded checkpoint (on Forge: the one selected to load next)."""
    if is_forge():
        info = _forge_params().get("checkpoint_info")
        if info is not None:
            return info
    info = getattr(getattr(_shared(), "sd_model", None), "sd_checkpoint_info", None)
    if info is not None:
        return info
    return host_module("modules.sd_models").select_checkpoint()


def loaded_family() -> str:
    """The family of the loaded model ('' if the host does not say)."""
    model = getattr(_shared(), "sd_model", None)
    if model is None:
        return ""
    for cls in type(model).__mro__:
        if cls.__name__ in ENGINE_FAMILIES:
            return ENGINE_FAMILIES[cls.__name__]
    for flag, family in (("is_sdxl", "sdxl"), ("is_sd3", "sd3"), ("is_sd2", "sd2")):
        if getattr(model, flag, False) is True:
            return family
    return "sd1" if getattr(model, "is_sd1", False) is True else ""


# -- VAEs and text encoders ----------------------------------------------------------------------


def _vae_files() -> dict[str, str]:
    """VAE files by the names the host lists them under (sd_vae.vae_dict: file name -> path)."""
    try:
        return dict(host_module("modules.sd_vae").vae_dict)
    except (ImportError, AttributeError):
        return {}


def vae_names() -> list[str]:
    """VAE choices a pass can name, as the host lists them.

    A1111/reForge: 'Automatic', 'None' and files, with the host's meanings. Forge 2/Neo: 'None'
    (the checkpoint's own VAE) and files: there is no 'Automatic' among additional modules.
    """
    files = list(_vae_files())
    if is_forge():
        return ["None", *files]
    try:
        return list(host_module("modules.shared_items").sd_vae_items())
    except (ImportError, AttributeError):
        return ["Automatic", "None", *files]


def _module_files() -> dict[str, str]:
    """Forge's additional-module files by name (its 'VAE / Text Encoder' list)."""
    main_entry = host_module("modules_forge.main_entry")
    found = dict(getattr(main_entry, "module_list", None) or {})
    if found:
        return found
    # the list is filled when the UI is built; an API-only server scans the same folders
    paths = host_module("modules.paths")
    opts = _shared().cmd_opts
    folders = [
        os.path.join(paths.models_path, "VAE"),
        os.path.join(paths.models_path, "text_encoder"),
    ]
    for name in ("vae_dir", "text_encoder_dir", "vae_dirs", "text_encoder_dirs"):
        value = getattr(opts, name, None)
        folders += [value] if isinstance(value, str) else list(value or [])
    for folder in folders:
        for root, _, names in os.walk(folder) if os.path.isdir(folder) else ():
            for n in sorted(names):
                if n.endswith(MODULE_EXTENSIONS):
                    found[n] = os.path.join(root, n)
    return found


def text_encoder_names() -> list[str] | None:
    """Text-encoder modules a pass can name; None where the host has no such thing."""
    if not is_forge():
        return None
    vaes = set(_vae_files().values())
    return [n for n, path in _module_files().items() if path not in vaes and n not in _vae_files()]


def _is_vae_module(path: str) -> bool:
    return path in set(_vae_files().values()) or os.path.basename(path) in _vae_files()


def pass_modules(user_modules: list[str], vae: str, text_encoders: tuple[str, ...]) -> list[str]:
    """Forge's additional modules for a pass: the user's, with the pass's VAE and text encoders
    in place of theirs where the pass names them ('None': the checkpoint's own VAE)."""
    vaes = [m for m in user_modules if _is_vae_module(m)]
    encoders = [m for m in user_modules if not _is_vae_module(m)]
    if vae == "None":
        vaes = []
    elif vae:
        vaes = [_vae_files()[vae]]
    if text_encoders:
        files = _module_files()
        encoders = [files[n] for n in text_encoders]
    return [*vaes, *encoders]


def _vae_file_for(vae: str, checkpoint_file: str) -> str | None:
    """A1111/reForge: the file a pass's VAE choice means for a checkpoint (None: its own)."""
    sd_vae = host_module("modules.sd_vae")
    if vae == "None":
        return None
    if vae == "Automatic":  # the host's 'Automatic', whatever the user's setting says
        for how in ("resolve_vae_from_user_metadata", "resolve_vae_near_checkpoint"):
            resolve = getattr(sd_vae, how, None)
            res = resolve(checkpoint_file) if resolve is not None else None
            if res is not None and res.resolved:
                return res.vae
        return None
    return _vae_files()[vae]


# -- the models of a job --------------------------------------------------------------------------


class PassModels:
    """Loads each pass's checkpoint, VAE and text encoders for nested passes and puts the
    user's back afterwards, without ever writing the user's settings."""

    def __init__(self) -> None:
        self.forge = is_forge()
        self.original_params = dict(_forge_params()) if self.forge else None
        self.vae_changed = False

    def switch(self, info: Any) -> None:
        """Make `info` the checkpoint of the passes that follow."""
        sd_models = host_module("modules.sd_models")
        if self.forge:
            self._select({**_forge_params(), "checkpoint_info": info})
            return
        with sd_models.SkipWritingToConfig():
            sd_models.reload_model_weights(info=info)

    def _select(self, params: dict[str, Any]) -> None:
        """Forge: what the next forge_model_reload() loads; as refresh_model_loading_parameters
        does, the prompt cache is marked for clearing (a new text encoder changes conds)."""
        sd_models = host_module("modules.sd_models")
        if str(params) == str(sd_models.model_data.forge_loading_parameters):
            return
        sd_models.model_data.forge_loading_parameters = params
        processing = host_module("modules.processing")
        if hasattr(processing, "need_global_unload"):
            processing.need_global_unload = True

    @contextlib.contextmanager
    def running(self, info: Any, vae: str, text_encoders: tuple[str, ...]) -> Iterator[None]:
        """Around one nested pass on checkpoint `info` with the pass's VAE and text encoders."""
        if self.forge:
            user = list((self.original_params or {}).get("additional_modules") or [])
            modules = pass_modules(user, vae, text_encoders)
            self._select({**_forge_params(), "additional_modules": modules})
            yield
            return
        if vae:
            self._use_vae(_vae_file_for(vae, info.filename))
        sd_models = host_module("modules.sd_models")
        aliases = sd_models.checkpoint_aliases
        key = _shared().opts.sd_model_checkpoint
        missing = object()
        before = aliases.get(key, missing)
        aliases[key] = info  # the settings' checkpoint resolves to the pass's while it runs
        try:
            yield
        finally:
            if before is missing:
                aliases.pop(key, None)
            else:
                aliases[key] = before

    def _recover_from_a_failed_load(self) -> None:
        """Forge frees the loaded model before it loads the next (Neo deletes it, Forge 2 sets
        it to None); when that load fails, the host is left with no model and every later job
        fails. Put back the host's own start-up placeholder and forget the loaded parameters,
        so its next job loads the user's checkpoint, as after a fresh start."""
        sd_models = host_module("modules.sd_models")
        data = sd_models.model_data
        if vars(data).get("sd_model") is not None:
            return
        placeholder = getattr(sd_models, "FakeInitialModel", None)
        data.sd_model = placeholder() if placeholder is not None else None
        data.forge_hash = ""

    def _use_vae(self, vae_file: str | None) -> None:

        sd_vae = host_module("modules.sd_vae")
        if getattr(sd_vae, "loaded_vae_file", object()) != vae_file:
            sd_vae.reload_vae_weights(_shared().sd_model, vae_file=vae_file)
            self.vae_changed = True

    def restore(self) -> None:
        """Put back the user's VAE and (Forge) loading parameters; the checkpoint itself is put
        back by the engine, which knows whether it changed."""
        if self.forge:
            if self.original_params is not None:
                self._select(dict(self.original_params))
            self._recover_from_a_failed_load()
            return
        if self.vae_changed:
            self.vae_changed = False
            host_module("modules.sd_vae").reload_vae_weights(_shared().sd_model)


# -- lists -------------------------------------------------------------------------------------


# "Clip skip" in every host (A1111 1.10.1 shared_options.py:181, reForge shared_options.py:203,
# Forge 2 shared_options.py:183 and main_entry.py:121, Neo shared_options.py:222); each host's
# own XYZ "Clip skip" axis sets it as a per-job override (scripts/xyz_grid.py:289)
CLIP_SKIP_OPTION = "CLIP_stop_at_last_layers"


def clip_skip() -> int:
    """The host's Clip skip setting, as the job's own generation uses it."""
    try:
        return int(getattr(_shared().opts, CLIP_SKIP_OPTION, 1) or 1)
    except (TypeError, ValueError):
        return 1


def clip_skip_override(value: int) -> dict[str, Any]:
    """override_settings for a nested job with this clip skip: none when it is the host's
    current setting (process_images sets an override for the job and puts the user's value
    back afterwards, without saving it)."""
    if not value or value == clip_skip():
        return {}
    return {CLIP_SKIP_OPTION: int(value)}


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
    return [u.name for u in _shared().sd_upscalers]


# -- detectors -------------------------------------------------------------------------------


_registry: Any = None


def detectors(refresh: bool = False) -> Any:
    """The host's detectors: OpenCV's cascades (every WebUI has OpenCV), mediapipe's where it
    is installed, YOLO models in models/adetailer (adetailer's) and models/multipass where
    ultralytics is; `.pt` models need --multipass-allow-ckpt, as `.ckpt` checkpoints do."""
    global _registry
    if _registry is None or refresh:
        from ..detectors import Registry

        models = Path(host_module("modules.paths").models_path)
        folders = [models / "adetailer", models / "multipass"]
        _registry = Registry(folders, allow_pickles=allow_pickles())
    return _registry


def detector_names() -> list[str]:
    """The detectors that can run in this host, for the dropdown and the schema."""
    return detectors().names()


def ensure_image_folder() -> None:
    """Make the host's temp image folder if it is set and missing: the hosts write every image
    a UI function returns there without creating it (ui_tempdir.save_pil_to_file), and Forge
    Neo's default (<data path>/tmp) exists only once that setting has been changed."""
    folder = getattr(_shared().opts, "temp_dir", "")
    if folder and not os.path.isdir(folder):
        os.makedirs(folder, exist_ok=True)


# -- nested processing ------------------------------------------------------------------------


# fields of the job that nested passes keep where the host has them (Forge 2 / Neo: Flux's
# distilled CFG, which a pass's own settings do not cover)
INHERITED = ("distilled_cfg_scale",)


def inherited(p: Any) -> dict[str, Any]:
    """The job's values of INHERITED fields, for its nested passes."""
    return {name: getattr(p, name) for name in INHERITED if hasattr(p, name)}


def empty_script_runner() -> Any:
    """A ScriptRunner holding no scripts, for nested passes (reForge reads p.scripts)."""
    return host_module("modules.scripts").ScriptRunner()


def script_name(script: Any) -> str:
    """A script's name as the API keys it and the setting lists it: its title, lower case."""
    try:
        return str(script.title()).lower()
    except Exception:  # a script whose title() fails is named by nothing
        return ""


CONTROLNET = "controlnet"  # the ControlNet script's name on every host (title "ControlNet")
MULTIPASS = "multipass"


@dataclasses.dataclass
class JobScripts:
    """The job's always-on scripts and their args, and which of them run in passes."""

    runner: Any
    args: tuple[Any, ...]
    chosen: tuple[str, ...]  # names (lower-case titles) from the setting

    def alwayson(self) -> list[Any]:
        return list(getattr(self.runner, "alwayson_scripts", None) or [])

    def find(self, name: str) -> Any | None:
        return next((s for s in self.alwayson() if script_name(s) == name), None)

    def for_pass(self, units: list[Any]) -> tuple[Any, list[Any]]:
        """A ScriptRunner for a nested pass and its script args: the chosen scripts with the
        job's args at the same places, and ControlNet (only for a pass with units) with the
        pass's units in its place, padded with disabled units to the place's size, so no
        script's args move (sd-webui-controlnet's update_cn_script keeps the same rule)."""
        runner = empty_script_runner()
        chosen = set(self.chosen) - {MULTIPASS, CONTROLNET}
        picked = [s for s in self.alwayson() if script_name(s) in chosen]
        args = list(self.args or ())
        if units:
            cn = self.find(CONTROLNET)
            if cn is None:
                raise HostError("ControlNet's script is not among the job's scripts")
            size = cn.args_to - cn.args_from
            if len(units) > size:
                raise HostError(
                    f"the job's ControlNet takes {size} units; this pass has {len(units)}"
                )
            host = controlnet_host()
            pad = [host.disabled_unit() for _ in range(size - len(units))] if host else []
            args += [None] * max(0, cn.args_to - len(args))
            args[cn.args_from : cn.args_to] = [*units, *pad]
            picked = [s for s in self.alwayson() if s in picked or s is cn]
        runner.alwayson_scripts = picked
        runner.scripts = list(picked)
        return runner, args


def job_scripts(p: Any, chosen: tuple[str, ...]) -> JobScripts:
    """The job's scripts, for its passes."""
    return JobScripts(
        getattr(p, "scripts", None), tuple(getattr(p, "script_args", ()) or ()), chosen
    )


def alwayson_script_names() -> list[str]:
    """The host's always-on scripts (for the setting's choices), Multipass and ControlNet
    left out: a pass's ControlNet comes from its own units."""
    scripts = host_module("modules.scripts")
    names: list[str] = []
    for runner in (
        getattr(scripts, "scripts_txt2img", None),
        getattr(scripts, "scripts_img2img", None),
    ):
        for s in getattr(runner, "alwayson_scripts", None) or []:
            name = script_name(s)
            if name and name not in (MULTIPASS, CONTROLNET) and name not in names:
                names.append(name)
    return names


# -- ControlNet ---------------------------------------------------------------------------------

# ControlMode values (sd-webui-controlnet scripts/enums.py ControlMode; Forge's
# lib_controlnet/external_code.py ControlMode): the same three strings on every host
CONTROL_MODES = {
    "balanced": "Balanced",
    "prompt": "My prompt is more important",
    "controlnet": "ControlNet is more important",
}


@dataclasses.dataclass
class ControlNetHost:
    """The host's ControlNet: its model and preprocessor lists and its unit type.

    reForge, Forge 2 and Neo have it built in (extensions-builtin/sd_forge_controlnet:
    lib_controlnet/global_state.py get_all_controlnet_names, get_controlnet_filename,
    get_all_preprocessor_names; external_code.py ControlNetUnit). A1111 has it from the
    sd-webui-controlnet extension, through its documented external API (scripts/
    external_code.py: get_models, get_modules, ControlNetUnit; the script reads units as
    dicts, as the API sends them: internal_controlnet/external_code.py to_processing_unit).
    """

    what: str
    external_code: Any
    global_state: Any = None

    @property
    def builtin(self) -> bool:
        return self.global_state is not None

    def models(self) -> list[str]:
        if self.builtin:
            return [m for m in self.global_state.get_all_controlnet_names() if m != "None"]
        models = list(self.external_code.get_models())
        return models or list(self.external_code.get_models(update=True))

    def find_model(self, name: str) -> str | None:
        """The listed model `name` means: as listed, or without its ' [hash]'."""
        models = self.models()
        if name in models:
            return name
        return next((m for m in models if _CHECKSUM.sub("", m) == name), None)

    def model_file(self, name: str) -> str | None:
        try:
            if self.builtin:
                return str(self.global_state.get_controlnet_filename(name))
            state = getattr(self.external_code, "global_state", None)
            return str(getattr(state, "cn_models", {})[name])
        except (KeyError, AttributeError, TypeError):
            return None

    def modules(self) -> list[str]:
        if self.builtin:
            return list(self.global_state.get_all_preprocessor_names())
        return list(self.external_code.get_modules())

    @property
    def no_module(self) -> str:
        return "None" if self.builtin else "none"

    def module_for(self, name: str) -> str | None:
        """The host's spelling of a preprocessor, matched without regard to case ('', 'none'
        or 'None': no preprocessor, which A1111's extension spells 'none' and Forge's 'None');
        None if the host has no such preprocessor."""
        if not name or name.lower() == "none":
            return self.no_module
        return next((m for m in self.modules() if m.lower() == name.lower()), None)

    def unit(self, u: Any, image: Any) -> Any:
        """The host's unit for a Multipass unit with its control image (PIL)."""
        import numpy as np

        values = {
            "enabled": True,
            "module": self.module_for(u.module) or u.module,
            "model": self.find_model(u.model) or u.model,
            "weight": float(u.weight),
            "image": np.asarray(image.convert("RGB")),
            "resize_mode": "Just Resize",
            "guidance_start": float(u.guidance_start),
            "guidance_end": float(u.guidance_end),
            "pixel_perfect": True,
            "control_mode": CONTROL_MODES[u.control_mode],
            "save_detected_map": False,
        }
        if self.builtin:
            return self.external_code.ControlNetUnit(**values)
        return values  # sd-webui-controlnet reads dicts with ControlNetUnit.from_dict

    def disabled_unit(self) -> Any:
        return (
            self.external_code.ControlNetUnit(enabled=False) if self.builtin else {"enabled": False}
        )


def _controlnet_extension() -> Any | None:
    """sd-webui-controlnet's scripts/external_code, imported as other extensions import it
    (extensions.<folder>.scripts.external_code), if the extension is active."""
    try:
        extensions = host_module("modules.extensions").active()
    except (ImportError, AttributeError):
        return None
    for ext in extensions:
        path = Path(getattr(ext, "path", "") or "")
        if "controlnet" in path.name.lower() and (path / "scripts" / "external_code.py").is_file():
            try:
                return host_module(f"{path.parent.name}.{path.name}.scripts.external_code")
            except ImportError:
                return None
    return None


def controlnet_host() -> ControlNetHost | None:
    """The host's ControlNet, or None where it has none."""
    try:
        return ControlNetHost(
            "the built-in ControlNet",
            host_module("lib_controlnet.external_code"),
            host_module("lib_controlnet.global_state"),
        )
    except ImportError:
        pass
    ext = _controlnet_extension()
    return ControlNetHost("sd-webui-controlnet", ext) if ext is not None else None


def controlnet_unit_count() -> int:
    """How many units the job's ControlNet takes (the setting both ControlNets read)."""
    try:
        return int(_shared().opts.data.get("control_net_unit_count", 3))
    except (AttributeError, TypeError, ValueError):
        return 3


def allow_pickles() -> bool:
    """Whether the user started the WebUI with --multipass-allow-ckpt."""
    return bool(getattr(_shared().cmd_opts, "multipass_allow_ckpt", False))


def controlnet_model_names() -> list[str] | None:
    """The host's ControlNet models for the dropdowns; None where it has no ControlNet."""
    host = controlnet_host()
    return host.models() if host is not None else None


def controlnet_module_names() -> list[str]:
    """The host's preprocessors ('None'/'none', no preprocessor, is the dropdown's own)."""
    host = controlnet_host()
    return [m for m in host.modules() if m.lower() != "none"] if host is not None else []


# -- the host's progress -----------------------------------------------------------------------


class HostProgress:
    """The host's progress bar, ETA and console bar cover the passes, as its own hires fix
    makes them cover its second pass (processing.py, txt2img init: the job count grows, the
    console's total grows by the second pass's steps, before the first image).

    The WebUI's bar is job_no / job_count plus the current job's step fraction
    (modules/progress.py), each nested pass job counting one job. `count_ahead` counts the
    passes' nested jobs at the job's first batch, so the bar never runs back when the passes
    start (a real Forge 2 went from 93% to 34% when they were counted only then); here, when
    they start, the count and the console total take the difference to what they will really
    run, never fall behind the jobs really run (a detect pass finds its crops on the way), and
    end at the jobs run plus what the request still has to run after this job (the further
    cells of an X/Y/Z plot and their passes, counted at the first cell). The console's "Total
    progress" bar (shared.total_tqdm; newest Neo has none) counts the passes' sampling steps
    and ends where it counted."""

    def __init__(self, jobs: int, steps: int, ahead: tuple[int, int] = (0, 0)) -> None:
        global _after
        state = _shared().state
        state.job_count = max(int(state.job_count), int(state.job_no)) + jobs - ahead[0]
        # what the request runs after these passes: counted before, kept to the end
        self.after = _after = max(int(state.job_count) - int(state.job_no) - jobs, 0)
        self.tqdm = getattr(_shared(), "total_tqdm", None)
        total = _tqdm_total(self.tqdm)
        self.after_steps = 0
        if total is not None:
            total = total + steps - ahead[1]
            self._set_total(total)
            done = _tqdm_done(self.tqdm) or 0
            self.after_steps = max(total - done - steps, 0) if self.after else 0

    def _set_total(self, total: int) -> None:
        with contextlib.suppress(Exception):
            self.tqdm.updateTotal(total)

    def finish(self) -> None:
        global _after
        _after = 0
        state = _shared().state
        state.job_count = max(int(state.job_no) + self.after, 1)
        done = _tqdm_done(self.tqdm)
        if done is not None and done + self.after_steps != _tqdm_total(self.tqdm):
            self._set_total(done + self.after_steps)  # a detect pass found more or fewer crops


_after = 0  # the jobs the request runs after the passes running now (HostProgress)


@dataclasses.dataclass
class _Ahead:
    """The passes counted ahead for the request's later jobs (the further cells of an X/Y/Z
    plot, which counts every cell's own jobs before the first): per job of the host's count,
    how many nested jobs and steps the passes add, and what is counted for them now."""

    request: Any = None
    jobs_per_job: float = 0.0
    steps_per_job: float = 0.0
    jobs: int = 0
    steps: int = 0


_ahead = _Ahead()


def count_ahead(jobs: int, steps: int, steps_per_job: int, own_jobs: int = 1) -> tuple[int, int]:
    """The passes' nested jobs and sampling steps added to the host's count and console total
    at the job's first batch (the `process_batch` hook: after the host set its count, Forge 2
    and A1111 processing.py:921, and hires fix its total, :1325-1334), as (jobs, steps)
    counted for this job. The console bar is made at the first step from job_count *
    sampling_steps (shared_total_tqdm.py), so where it is not made yet its total is set here
    from the job's own steps per job (`steps_per_job`).

    An X/Y/Z plot counts all its cells' jobs before the first cell (xyz_grid.py: job_count =
    cells * n_iter, A1111 1.10.1 :296, Forge 2 :320, Neo :319; its console total, :675), each
    cell a job of its own: the jobs counted beyond this one's `own_jobs` (n_iter, doubled by
    hires fix) are taken to run passes like this one's, so every cell's passes are counted at
    the first cell and the bar never runs back at the next; each later job (`jobs` 0 where
    Multipass is off) takes its share and sets the rest right."""
    state = _shared().state
    if int(state.job_count) < 0:
        return 0, 0
    request = (getattr(state, "time_start", None), getattr(state, "job_timestamp", None))
    if int(state.job_no) == 0 or _ahead.request != request:  # the request's first job
        _ahead.__init__(request)
    if not (jobs or steps or _ahead.jobs or _ahead.steps):
        return 0, 0  # nothing to count, nothing counted for this job before
    if jobs or steps:
        _ahead.jobs_per_job = jobs / max(own_jobs, 1)
        _ahead.steps_per_job = steps / max(own_jobs, 1)
    later = max(int(state.job_count) - int(state.job_no) - own_jobs - _ahead.jobs, 0)
    later_jobs = round(_ahead.jobs_per_job * later)
    later_steps = round(_ahead.steps_per_job * later)
    bar = getattr(_shared(), "total_tqdm", None)
    counted = 0
    if bar is not None:
        total = _tqdm_total(bar)
        if total is None:
            total = int(state.job_count) * steps_per_job
        want = total + steps + later_steps - _ahead.steps
        with contextlib.suppress(Exception):
            bar.updateTotal(want)
            counted = steps if _tqdm_total(bar) == want else 0
        _ahead.steps = later_steps if counted or not steps else 0
    state.job_count = int(state.job_count) + jobs + later_jobs - _ahead.jobs
    _ahead.jobs = later_jobs
    return jobs, counted


def job_sampling_steps(p: Any) -> int:
    """The steps the host's sampler runs for one of the job's own images, as its console bar
    counts them (one a sampler callback): txt2img its steps, img2img t_enc + 1 for k-diffusion
    (sd_samplers_common.py setup_img2img_steps, sd_samplers_kdiffusion.py sample_img2img);
    DDIM, PLMS and UniPC walk the WebUI's timestep grid and take fewer
    (sd_samplers_timesteps.py, schedule.txt2img_steps / img2img_steps)."""
    steps = int(getattr(p, "steps", 0) or 0)
    sampler = str(getattr(p, "sampler_name", "") or "")
    try:
        if not hasattr(p, "init_images"):
            return txt2img_steps(steps, sampler).run
        opts = host_module("modules.shared").opts
        mode = "fixed" if getattr(opts, "img2img_fix_steps", False) else "proportional"
        strength = float(getattr(p, "denoising_strength", 0) or 0)
        return img2img_steps(strength, steps, mode, sampler).run
    except ValueError:  # a strength or step count the host takes and the schedule does not
        return steps


def job_own_jobs(p: Any) -> int:
    """The jobs the host counts for the job itself: n_iter, doubled by hires fix (txt2img
    init, A1111 processing.py:1298, Forge 2 :1333, Neo :1346)."""
    n_iter = max(1, int(getattr(p, "n_iter", 1) or 1))
    return n_iter * (2 if getattr(p, "enable_hr", False) else 1)


def _tqdm_total(bar: Any) -> int | None:
    inner = getattr(bar, "_tqdm", None)  # the hosts keep their tqdm in _tqdm
    total = getattr(inner, "total", None)
    return int(total) if isinstance(total, (int, float)) else None


def _tqdm_done(bar: Any) -> int | None:
    done = getattr(getattr(bar, "_tqdm", None), "n", None)
    return int(done) if isinstance(done, (int, float)) else None


def before_nested_job() -> None:
    """A nested job starts: the job count never falls behind the jobs run, nor eats into
    what the request counted after the passes."""
    state = _shared().state
    if state.job_no + _after >= state.job_count:
        state.job_count = state.job_no + _after + 1


def latent_factor() -> int:
    """Pixels per latent cell of the loaded model: processing.opt_f, 8 on most hosts; the
    newest Neo sets it from the loaded VAE's upscale ratio (16 for Wan 2.2's TI2V VAE)."""
    try:
        value = int(getattr(host_module("modules.processing"), "opt_f", 8) or 8)
    except (ImportError, TypeError, ValueError):
        return 8
    return value if value > 0 else 8


def load_pass_model() -> None:
    """The newest Neo: load what the loading parameters name now, as process_images does first
    thing (forge_model_reload skips a model already loaded), so the pass's own model sets
    opt_f (its VAE's ratio) before its job is sized. Known by what it lacks: Forge 2 and the
    October 2025 Neo still have the empty reload_model_weights, and a fixed opt_f of 8, so
    their models load in process_images as before; A1111/reForge load at the switch."""
    sd_models = host_module("modules.sd_models")
    if is_forge() and not hasattr(sd_models, "reload_model_weights"):
        sd_models.forge_model_reload()
