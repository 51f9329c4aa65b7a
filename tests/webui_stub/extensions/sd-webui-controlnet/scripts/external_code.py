"""sd-webui-controlnet (Mikubill, 2024-07) for A1111: the documented external API,
scripts/external_code.py (which re-exports internal_controlnet/external_code.py):
get_models() lists global_state.cn_models_names (model names with ' [hash]'), get_modules()
the preprocessors ('none' first), find_cn_script() finds the always-on script titled
"ControlNet", get_all_units_in_processing(p) reads its units from p.script_args through
p.scripts (dicts become units by ControlNetUnit.from_dict, as API payloads; other args are
skipped). The script (scripts/controlnet.py Script) reads its units from p in process(),
not from its own args. Sampling with a unit is recorded on p (`stub_controlnet`)."""

import hashlib
import os
from enum import Enum
from typing import Any

import numpy as np
from PIL import Image

from modules import paths, scripts, shared


class ControlMode(Enum):
    BALANCED = "Balanced"
    PROMPT = "My prompt is more important"
    CONTROL = "ControlNet is more important"


class GlobalState:
    """scripts/global_state.py: cn_models maps names to files, cn_models_names lower -> name."""

    def __init__(self):
        self.cn_models = {}
        self.cn_models_names = {}

    def update_cn_models(self):
        folder = os.path.join(paths.models_path, "ControlNet")
        self.cn_models = {"None": None}
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            stem, ext = os.path.splitext(name)
            if ext in (".safetensors", ".pth", ".pt", ".ckpt", ".bin"):
                short = hashlib.sha256(stem.encode()).hexdigest()[:8]
                self.cn_models[f"{stem} [{short}]"] = os.path.join(folder, name)
        self.cn_models_names = {k.lower(): k for k in self.cn_models}


global_state = GlobalState()
MODULES = ["none", "tile_resample", "tile_colorfix", "canny", "depth_anything_v2"]


class ControlNetUnit:
    """internal_controlnet/args.py ControlNetUnit (pydantic): enabled defaults to False,
    module 'none', model 'None'; weight 0-2, guidance 0-1 with start < end; module and model
    checked against the lists; control_mode by its enum value."""

    def __init__(self, **values: Any):
        self.enabled = values.pop("enabled", False)
        self.module = values.pop("module", "none")
        self.model = values.pop("model", "None")
        self.weight = float(values.pop("weight", 1.0))
        self.image = values.pop("image", None)
        self.guidance_start = float(values.pop("guidance_start", 0.0))
        self.guidance_end = float(values.pop("guidance_end", 1.0))
        self.control_mode = ControlMode(values.pop("control_mode", "Balanced"))
        self.resize_mode = values.pop("resize_mode", "Crop and Resize")
        self.pixel_perfect = values.pop("pixel_perfect", False)
        self.save_detected_map = values.pop("save_detected_map", True)
        if values:
            raise ValueError(f"unknown fields {sorted(values)}")
        if self.module not in MODULES:
            raise ValueError(f"module({self.module}) not found in supported modules.")
        if self.model not in global_state.cn_models:
            raise ValueError(f"model({self.model}) not found in supported models.")
        if not 0 <= self.weight <= 2 or not 0 <= self.guidance_start < self.guidance_end <= 1:
            raise ValueError("weight or guidance out of range")

    @classmethod
    def from_dict(cls, values: dict) -> "ControlNetUnit":
        return cls(**values)


def get_models(update: bool = False):
    if update:
        global_state.update_cn_models()
    return list(global_state.cn_models_names.values())


def get_modules(alias_names: bool = False):
    return list(MODULES)


def find_cn_script(script_runner):
    if script_runner is None:
        return None
    for script in script_runner.alwayson_scripts:
        if script.title().lower() == "controlnet":
            return script
    return None


def get_all_units_in_processing(p):
    cn = find_cn_script(p.scripts)
    if cn is None:
        return []
    args = p.script_args[cn.args_from : cn.args_to]
    return [
        a if isinstance(a, ControlNetUnit) else ControlNetUnit.from_dict(a)
        for a in args
        if isinstance(a, (ControlNetUnit, dict))
    ]


class ControlNetScript(scripts.Script):
    """scripts/controlnet.py Script: title "ControlNet"; get_enabled_units(p) reads p."""

    def title(self):
        return "ControlNet"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def process(self, p, *args, **kwargs):
        received = []
        for unit in get_all_units_in_processing(p):
            if not unit.enabled:
                continue
            image = unit.image if unit.image is not None else np.asarray(p.init_images[0])
            received.append(
                {
                    "model": unit.model,
                    "module": unit.module,
                    "weight": unit.weight,
                    "guidance_start": unit.guidance_start,
                    "guidance_end": unit.guidance_end,
                    "control_mode": unit.control_mode.value,
                    "image": Image.fromarray(np.asarray(image)),
                }
            )
        p.stub_controlnet = received


shared.opts.data.setdefault("control_net_unit_count", 3)
global_state.update_cn_models()
