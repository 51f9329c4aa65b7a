"""Checkpoints: the list and aliases as the hosts build them, and loading as each flavour does
(A1111 1.10.1 sd_models.py:56-128, 183, 218, 940; reForge :1089, :1262; Forge 2 :472 and Neo
:417 forge_model_reload). Every real load is recorded in `loads` (titles, in order)."""

import contextlib
import hashlib
import json
import os
import re
import struct

from modules import FLAVOUR, NEO, FORGE, paths, script_callbacks, shared

model_path = os.path.abspath(os.path.join(paths.models_path, "Stable-diffusion"))
checkpoints_list = {}
checkpoint_aliases = {}
checkpoint_alisases = checkpoint_aliases
loads = []  # names (file names) in load order, for tests
hashed = set()  # files whose sha256 is in the hash cache
re_strip_checksum = re.compile(r"\s*\[[^]]+]\s*$")
SHORT = {"toon": "aaaa", "photo": "bbbb", "xl": "cccc", "flux": "eeee"}


def _sha256(filename):
    stem = os.path.splitext(os.path.basename(filename))[0]
    return SHORT.get(stem, "dddd") * 16


class CheckpointInfo:
    def __init__(self, filename):
        self.filename = filename
        abspath = os.path.abspath(filename)
        name = os.path.relpath(abspath, model_path).replace("\\", "/")
        self.name = name
        self.name_for_extra = os.path.splitext(os.path.basename(filename))[0]
        self.model_name = os.path.splitext(name.replace("/", "_").replace("\\", "_"))[0]
        self.hash = hashlib.sha1(name.encode()).hexdigest()[:8]
        # A1111 and Forge 2 here have the hashes cached; Neo hashes a file at its first load
        self.sha256 = _sha256(filename) if not NEO or filename in hashed else None
        self.shorthash = self.sha256[0:4] if self.sha256 else None
        self.title = name if self.shorthash is None else f"{name} [{self.shorthash}]"
        self.short_title = (
            self.name_for_extra if self.shorthash is None else f"{self.name_for_extra} [{self.shorthash}]"
        )
        self.ids = [self.hash, self.model_name, self.title, name, self.name_for_extra, f"{name} [{self.hash}]"]
        if self.shorthash:
            self.ids += [self.shorthash, self.sha256, f"{self.name} [{self.shorthash}]",
                         f"{self.name_for_extra} [{self.shorthash}]"]

    def register(self):
        checkpoints_list[self.title] = self
        for id_ in self.ids:
            checkpoint_aliases[id_] = self

    def calculate_shorthash(self):
        self.sha256 = _sha256(self.filename)
        hashed.add(self.filename)
        shorthash = self.sha256[0:4]
        if self.shorthash == shorthash:
            return self.shorthash
        self.shorthash = shorthash
        if self.shorthash not in self.ids:
            self.ids += [self.shorthash, self.sha256, f"{self.name} [{self.shorthash}]",
                         f"{self.name_for_extra} [{self.shorthash}]"]
        old_title = self.title
        self.title = f"{self.name} [{self.shorthash}]"
        self.short_title = f"{self.name_for_extra} [{self.shorthash}]"
        items = list(checkpoints_list.items())
        checkpoints_list.clear()
        for k, v in items:
            checkpoints_list[self.title if k == old_title else k] = v
        self.register()
        return self.shorthash

    if FORGE:

        def __repr__(self):
            return str(dict(filename=self.filename, hash=self.hash))


def list_models():
    checkpoints_list.clear()
    checkpoint_aliases.clear()
    if not os.path.isdir(model_path):
        return
    for root, _, files in os.walk(model_path):
        for name in sorted(files):
            if name.endswith((".safetensors", ".ckpt")):
                CheckpointInfo(os.path.join(root, name)).register()


def checkpoint_tiles(use_short=False):
    if FORGE:
        return [x.short_title if use_short else x.name for x in checkpoints_list.values()]
    return [x.short_title if use_short else x.title for x in checkpoints_list.values()]


def get_closet_checkpoint_match(search_string):
    if not search_string:
        return None
    checkpoint_info = checkpoint_aliases.get(search_string, None)
    if checkpoint_info is not None:
        return checkpoint_info
    found = sorted([i for i in checkpoints_list.values() if search_string in i.title], key=lambda x: len(x.title))
    if found:
        return found[0]
    without = re.sub(re_strip_checksum, "", search_string)
    found = sorted([i for i in checkpoints_list.values() if without in i.title], key=lambda x: len(x.title))
    return found[0] if found else None


def select_checkpoint():
    model_checkpoint = shared.opts.sd_model_checkpoint
    checkpoint_info = checkpoint_aliases.get(model_checkpoint, None)
    if checkpoint_info is not None:
        return checkpoint_info
    if len(checkpoints_list) == 0:
        if FORGE:
            return None
        raise FileNotFoundError("no checkpoints")
    return next(iter(checkpoints_list.values()))


def read_keys(filename):
    """The tensor names and shapes of a .safetensors file (its header only)."""
    if not filename.endswith(".safetensors") or not os.path.exists(filename):
        return {}
    with open(filename, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        return {k: v.get("shape") for k, v in json.loads(fh.read(n)).items() if k != "__metadata__"}


def family_of_keys(keys):
    if any(k.startswith("conditioner.embedders.") for k in keys):
        return "sdxl"
    if any("double_stream_modulation_img" in k for k in keys):  # Flux.2 (Klein)
        return "flux2"
    if any("double_blocks." in k for k in keys):
        return "flux"
    if any("cap_embedder." in k for k in keys):  # NextDiT: Lumina-2 (Gemma-2), Z-Image (Qwen3)
        widths = [s[1] for k, s in keys.items() if k.endswith("cap_embedder.1.weight") and s]
        return "zimage" if widths == [2560] else "lumina2"
    if any("head.modulation" in k for k in keys):  # Wan: 2.2 TI2V-5B's VAE takes 48 channels
        shapes = [s for k, s in keys.items() if k.endswith("patch_embedding.weight") and s]
        return "wan22" if shapes and shapes[0][1] == 48 else "wan"
    return "sd1"


# Neo's diffusion engines (backend/diffusion_engine/*.py, mid-2026): Flux2 (flux2.py),
# ZImage (zimage.py), Lumina2 (lumina.py), Wan (wan.py); no StableDiffusion2/3 any more
ENGINES = {
    "sd1": "StableDiffusion",
    "sdxl": "StableDiffusionXL",
    "flux": "Flux",
    "flux2": "Flux2",
    "zimage": "ZImage",
    "lumina2": "Lumina2",
    "wan": "Wan",
    "wan22": "Wan",
}
# the VAE's upscale ratio, which the newest Neo's processing.opt_f follows (Wan 2.2's TI2V-5B
# VAE: 16; every other here: 8)
VAE_RATIO = {"wan22": 16}


class FakeModel:
    """The loaded model with the family attributes each host sets."""

    def __init__(self, info, modules=()):
        self.sd_checkpoint_info = info
        self.sd_model_checkpoint = info.filename
        self.filename = info.filename
        self.sd_model_hash = info.shorthash
        self.modules = tuple(modules)
        self.lowvram = False
        family = family_of_keys(read_keys(info.filename))
        self.is_sd1 = family == "sd1"
        self.is_sdxl = family == "sdxl"
        self.vae_ratio = VAE_RATIO.get(family, 8)
        names = ENGINES
        if NEO:  # backend/diffusion_engine/base.py: no is_sd2/is_sd3 meaning, is_wan
            self.is_sd2 = False
            self.is_wan = family.startswith("wan")
        else:
            self.is_sd2 = False
            self.is_sd3 = False
        if FORGE:
            self.__class__ = type(names[family], (FakeModel,), {})
        elif FLAVOUR == "a1111":
            self.model_type = {"sd1": 1, "sdxl": 3}.get(family, 1)
            self.is_ssd = False
        else:
            self.is_ssd = False


class FakeInitialModel:
    """The placeholder Forge 2 and Neo hold before their first load (sd_models.py:385 / :333)."""

    def __init__(self):
        self.cond_stage_model = None
        self.chunk_length = 75


class SdModelData:
    def __init__(self):
        self.sd_model = FakeInitialModel() if FORGE else None
        self.loaded_sd_models = []
        self.forge_loading_parameters = {}
        self.forge_hash = ""

    def get_sd_model(self):
        return self.sd_model

    def set_sd_model(self, v):
        self.sd_model = v


model_data = SdModelData()


def _check_loadable(info):
    """Files named 'corrupt...' are whole but fail to load, as a broken merge would."""
    if "corrupt" in os.path.basename(info.filename):
        raise RuntimeError(f"Failed to recognize model type! ({info.filename})")


def _load(info, modules=()):
    model_data.set_sd_model(FakeModel(info, modules))
    if FLAVOUR == "neo2026":  # processing.opt_f follows the loaded VAE's upscale ratio
        from modules import processing

        processing.opt_f = shared.sd_model.vae_ratio
    loads.append(info.name)
    script_callbacks.model_loaded_callback(shared.sd_model)


if FORGE:

    def SkipWritingToConfig():
        return contextlib.nullcontext()

    if FLAVOUR != "neo2026":  # the newest Neo dropped these empty stubs (sd_models.py, 2026)

        def reload_model_weights(sd_model=None, info=None, forced_reload=False):
            pass

        def load_model(checkpoint_info=None, already_loaded_state_dict=None):
            pass

    def forge_model_reload():
        current_hash = str(model_data.forge_loading_parameters)
        if model_data.forge_hash == current_hash:
            return model_data.sd_model, False
        if model_data.sd_model:
            # the previous model is freed before the next loads: Forge 2 sets it to None,
            # Neo deletes the attribute (sd_models.py:453); a failed load leaves it so
            if NEO:
                del model_data.sd_model
            else:
                model_data.sd_model = None
        info = model_data.forge_loading_parameters["checkpoint_info"]
        if info is None:
            raise ValueError("You do not have any model!")
        _check_loadable(info)
        _load(info, model_data.forge_loading_parameters.get("additional_modules", []))
        shared.sd_model.sd_model_hash = info.calculate_shorthash()
        model_data.forge_hash = current_hash
        return shared.sd_model, True

else:

    class SkipWritingToConfig:
        skip = False
        previous = None

        def __enter__(self):
            self.previous = SkipWritingToConfig.skip
            SkipWritingToConfig.skip = True
            return self

        def __exit__(self, exc_type, exc_value, exc_traceback):
            SkipWritingToConfig.skip = self.previous

    if FLAVOUR == "a1111":

        def reload_model_weights(sd_model=None, info=None, forced_reload=False):
            checkpoint_info = info or select_checkpoint()
            sd_model = sd_model or model_data.sd_model
            if sd_model is not None and sd_model.sd_model_checkpoint == checkpoint_info.filename and not forced_reload:
                return sd_model
            _check_loadable(checkpoint_info)
            _load(checkpoint_info)
            if not SkipWritingToConfig.skip:
                shared.opts.data["sd_model_checkpoint"] = checkpoint_info.title
            from modules import sd_vae

            sd_vae.reload_vae_weights(shared.sd_model)  # load_model_weights resolves the VAE
            return shared.sd_model

    else:  # reForge: reload_model_weights is load_model, which never writes the setting

        def load_model(checkpoint_info=None, already_loaded_state_dict=None, forced_reload=False):
            checkpoint_info = checkpoint_info or select_checkpoint()
            for loaded in list(model_data.loaded_sd_models):
                if loaded.filename == checkpoint_info.filename and not forced_reload:
                    model_data.loaded_sd_models.remove(loaded)
                    model_data.loaded_sd_models.insert(0, loaded)
                    model_data.set_sd_model(loaded)
                    return loaded
            while len(model_data.loaded_sd_models) >= shared.opts.sd_checkpoints_limit:
                model_data.loaded_sd_models.pop()
            _check_loadable(checkpoint_info)
            _load(checkpoint_info)
            model_data.loaded_sd_models.insert(0, shared.sd_model)
            from modules import sd_vae

            sd_vae.reload_vae_weights(shared.sd_model)
            return shared.sd_model

        def reload_model_weights(sd_model=None, info=None, forced_reload=False):
            return load_model(info, forced_reload=forced_reload)


def apply_token_merging(sd_model, token_merging_ratio):
    if sd_model is not None:
        sd_model.applied_token_merged_ratio = token_merging_ratio
