from types import SimpleNamespace

from modules.options import OptionInfo, Options  # noqa: F401 - the real shared re-exports it
from modules.shared_state import State

cmd_opts = SimpleNamespace(multipass_allow_ckpt=False, ckpt_dir=None)
opts = Options(
    {
        "sd_model_checkpoint": "toon.safetensors [aaaa]",
        "sd_vae": "Automatic",
        "img2img_fix_steps": False,
        "samples_format": "png",
        "grid_format": "png",
        "grid_save": True,
        "CLIP_stop_at_last_layers": 1,
    }
)
state = State()
sd_model = None
sd_upscalers = []
