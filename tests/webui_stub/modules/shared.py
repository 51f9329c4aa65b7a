import os
import sys
from types import SimpleNamespace

from modules import FLAVOUR, NEO, FORGE, paths
from modules.options import OptionInfo, Options  # noqa: F401 - the real shared re-exports it
from modules.shared_state import State

cmd_opts = SimpleNamespace(
    multipass_allow_ckpt=False,
    ckpt_dir=None,
    ckpt_dirs=[],
    vae_dir=None,
    vae_dirs=[],
    text_encoder_dir=None,
    text_encoder_dirs=[],
    vae_path=None,
)
_user = "toon.safetensors" if NEO else "toon.safetensors [aaaa]"
opts = Options(
    {
        "sd_model_checkpoint": _user,
        "sd_vae": "Automatic",
        "sd_vae_overrides_per_model_preferences": True,
        "sd_checkpoints_limit": 1,
        "img2img_fix_steps": False,
        "samples_format": "png",
        "grid_format": "png",
        "grid_save": True,
        "return_grid": True,
        "CLIP_stop_at_last_layers": 1,
        "token_merging_ratio": 0.0,
        **(
            {"forge_additional_modules": [], "forge_unet_storage_dtype": "Automatic"}
            if FORGE
            else {}
        ),
        **({"forge_preset": "sd"} if NEO else {}),
        # Neo's default is a folder nothing creates (ui_tempdir.py); the others' is gradio's
        "temp_dir": os.path.join(paths.data_path, "tmp") if NEO else "",
    }
)
opts.data.writes.clear()
config_filename = "config.json"
state = State()
sd_upscalers = []


class Shared(sys.modules[__name__].__class__):
    """shared.sd_model is model_data's, as the hosts make it (shared_items.py, A1111 1.6+)."""

    @property
    def sd_model(self):
        import modules.sd_models

        return modules.sd_models.model_data.get_sd_model()

    @sd_model.setter
    def sd_model(self, value):
        import modules.sd_models

        modules.sd_models.model_data.set_sd_model(value)


sys.modules[__name__].__class__ = Shared

if FLAVOUR != "neo2026":  # the newest Neo has no console total bar
    from modules.shared_total_tqdm import TotalTQDM

    total_tqdm = TotalTQDM()
