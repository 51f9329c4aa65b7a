from types import SimpleNamespace

from modules import FLAVOUR, FORGE
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
_user = "toon.safetensors" if FLAVOUR == "neo" else "toon.safetensors [aaaa]"
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
        **({"forge_preset": "sd"} if FLAVOUR == "neo" else {}),
    }
)
opts.data.writes.clear()
config_filename = "config.json"
state = State()
sd_model = None
sd_upscalers = []
