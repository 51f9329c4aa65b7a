"""lib_controlnet/external_code.py of Forge 2 (2025-06) and Neo: ControlMode and ResizeMode
enums by value, the ControlNetUnit dataclass (fields as in Forge; from_dict keeps only known
keys), and the ControlNet script (scripts/controlnet.py ControlNetForForgeOfficial): title
"ControlNet", args are its units (ControlNetUnit, or dicts from the API), get_enabled_units
asserts every arg is a unit, process() reads enabled units and bound-checks them. Sampling
with a unit is recorded on p (`stub_controlnet`) for the stand-in's process_images."""

from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

import numpy as np
from PIL import Image

from lib_controlnet import global_state
from modules import scripts


class ControlMode(Enum):
    BALANCED = "Balanced"
    PROMPT = "My prompt is more important"
    CONTROL = "ControlNet is more important"


class ResizeMode(Enum):
    RESIZE = "Just Resize"
    INNER_FIT = "Crop and Resize"
    OUTER_FIT = "Resize and Fill"


@dataclass
class ControlNetUnit:
    input_mode: str = "simple"
    use_preview_as_input: bool = False
    generated_image: Any = None
    mask_image: Any = None
    mask_image_fg: Any = None
    hr_option: str = "Both"
    enabled: bool = True
    module: str = "None"
    model: str = "None"
    weight: float = 1.0
    image: Any = None
    image_fg: Any = None
    resize_mode: Any = ResizeMode.INNER_FIT
    processor_res: int = -1
    threshold_a: float = -1
    threshold_b: float = -1
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: Any = ControlMode.BALANCED
    save_detected_map: bool = True

    @staticmethod
    def from_dict(d):
        known = {f.name for f in fields(ControlNetUnit)}
        return ControlNetUnit(**{k: v for k, v in d.items() if k in known})


class ControlNetForForgeOfficial(scripts.Script):
    sorting_priority = 10

    def title(self):
        return "ControlNet"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def get_enabled_units(self, units):
        units = [ControlNetUnit.from_dict(u) if isinstance(u, dict) else u for u in units]
        assert all(isinstance(unit, ControlNetUnit) for unit in units)
        return [x for x in units if x.enabled]

    def process(self, p, *args, **kwargs):
        received = []
        for unit in self.get_enabled_units(args):
            # bound_check_params, and what process_unit_after_click_generate looks up
            assert global_state.get_preprocessor(unit.module) is not None, unit.module
            global_state.get_controlnet_filename(unit.model)  # KeyError for an unknown model
            ControlMode(unit.control_mode)
            image = unit.image if unit.image is not None else np.asarray(p.init_images[0])
            received.append(_received(unit, image))
        p.stub_controlnet = received


def _received(unit, image):
    return {
        "model": unit.model,
        "module": unit.module,
        "weight": unit.weight,
        "guidance_start": unit.guidance_start,
        "guidance_end": unit.guidance_end,
        "control_mode": ControlMode(unit.control_mode).value,
        "image": Image.fromarray(np.asarray(image)),
    }
