"""Checkpoints: a list, aliases, and loading that records every switch (loads) for tests."""

import os
from types import SimpleNamespace

from modules import FLAVOUR, script_callbacks, shared

checkpoints_list = {}
checkpoint_aliases = {}
loads = []  # titles in load order, for tests


class CheckpointInfo:
    def __init__(self, filename):
        self.filename = filename
        name = os.path.basename(filename)
        self.name = name
        self.name_for_extra = os.path.splitext(name)[0]
        self.model_name = self.name_for_extra
        self.hash = f"{abs(hash(name)) % 16**8:08x}"
        self.shorthash = {"toon": "aaaa", "photo": "bbbb", "inpaint": "cccc"}.get(
            self.model_name, "dddd"
        )
        self.sha256 = self.shorthash * 16
        self.title = f"{name} [{self.shorthash}]"
        self.short_title = f"{self.name_for_extra} [{self.shorthash}]"
        self.ids = [
            self.hash,
            self.model_name,
            self.title,
            name,
            self.name_for_extra,
            self.shorthash,
        ]

    def register(self):
        checkpoints_list[self.title] = self
        for id_ in self.ids:
            checkpoint_aliases[id_] = self


def list_models():
    checkpoints_list.clear()
    checkpoint_aliases.clear()
    for name in ("toon.safetensors", "photo.safetensors", "old.ckpt"):
        CheckpointInfo(os.path.join("/models/Stable-diffusion", name)).register()


def select_checkpoint():
    info = checkpoint_aliases.get(shared.opts.sd_model_checkpoint)
    return info if info is not None else next(iter(checkpoints_list.values()))


class FakeModel:
    def __init__(self, info):
        self.sd_checkpoint_info = info
        self.sd_model_checkpoint = info.filename
        self.sd_model_hash = info.shorthash
        self.is_sdxl = False


class SkipWritingToConfig:
    skip = False
    previous = None

    def __enter__(self):
        self.previous = SkipWritingToConfig.skip
        SkipWritingToConfig.skip = True
        return self

    def __exit__(self, exc_type, exc_value, exc_traceback):
        SkipWritingToConfig.skip = self.previous


def _load(info):
    shared.sd_model = FakeModel(info)
    loads.append(info.title)
    script_callbacks.model_loaded_callback(shared.sd_model)


if FLAVOUR == "forge":
    model_data = SimpleNamespace(sd_model=None, forge_loading_parameters={})

    def reload_model_weights(sd_model=None, info=None, forced_reload=False):
        """Forge 2: empty."""

    def load_model(checkpoint_info=None, already_loaded_state_dict=None):
        """Forge 2: empty."""

    def forge_model_reload():
        info = model_data.forge_loading_parameters.get("checkpoint_info")
        current = getattr(shared.sd_model, "sd_checkpoint_info", None)
        if info is not None and info is not current:
            _load(info)
        return shared.sd_model

else:
    model_data = SimpleNamespace(sd_model=None)

    def reload_model_weights(sd_model=None, info=None, forced_reload=False):
        checkpoint_info = info or select_checkpoint()
        current = getattr(shared.sd_model, "sd_checkpoint_info", None)
        if (
            current is not None
            and current.filename == checkpoint_info.filename
            and not forced_reload
        ):
            return shared.sd_model
        _load(checkpoint_info)
        if not SkipWritingToConfig.skip:
            shared.opts.data["sd_model_checkpoint"] = checkpoint_info.title
        return shared.sd_model
