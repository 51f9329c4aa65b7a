"""lib_controlnet/global_state.py of Forge 2 (and the same functions in reForge and Neo):
get_all_controlnet_names() lists 'None' first and the model files of models/ControlNet by
name (update_controlnet_filenames), get_controlnet_filename(name) raises KeyError for an
unknown name, get_all_preprocessor_names() lists 'None' first."""

import os

from modules import paths

controlnet_filename_dict = {"None": "model.safetensors"}
controlnet_names = ["None"]
PREPROCESSORS = ["None", "tile_resample", "tile_colorfix", "canny", "depth_anything_v2"]


def update_controlnet_filenames():
    global controlnet_names
    folder = os.path.join(paths.models_path, "ControlNet")
    found = {"None": "model.safetensors"}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        stem, ext = os.path.splitext(name)
        if ext in (".safetensors", ".pth", ".pt", ".bin"):
            found[stem] = os.path.join(folder, name)
    controlnet_filename_dict.clear()
    controlnet_filename_dict.update(found)
    controlnet_names = list(found)


def get_all_controlnet_names():
    return controlnet_names


def get_controlnet_filename(controlnet_name):
    return controlnet_filename_dict[controlnet_name]


def get_preprocessor(name):
    return name if name in PREPROCESSORS else None


def get_all_preprocessor_names():
    return list(PREPROCESSORS)


update_controlnet_filenames()  # scripts/controlnet.py calls it at import
