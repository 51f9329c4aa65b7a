"""The built-in default checkpoints: two tiny SD1-architecture models built from code.

"tiny-toon" and "tiny-photo" are randomly initialised (differently seeded) and make noise-like
pictures. They exist so that every code path, from loading a WebUI single-file checkpoint to a
detailed-inpaint crop, runs on a machine with no models and no network. They are built
deterministically on first use and written in the WebUI's single-file layout (original LDM key
names, with their architecture in the file's metadata), so they go through the same loader as a
user's checkpoints.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from . import ldm

TINY_SEEDS = {"tiny-toon": 1, "tiny-photo": 2}
METADATA_KEY = "multipass.architecture"
FORMAT = 1  # bump when the tiny architecture changes, so old files are rebuilt

VOCAB_BYTES = 256
BOS, EOS = 2 * VOCAB_BYTES, 2 * VOCAB_BYTES + 1

UNET = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [32, 32, 32, 32],
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 32,
    "sample_size": 128,
    "scaling_factor": 0.18215,
}
TEXT_ENCODER = {
    "architectures": ["CLIPTextModel"],
    "model_type": "clip_text_model",
    "vocab_size": 2 * VOCAB_BYTES + 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "projection_dim": 32,
    "hidden_act": "quick_gelu",
    "bos_token_id": BOS,
    "eos_token_id": EOS,
    "pad_token_id": EOS,
}
# the noise schedule of SD1 (scaled_linear betas), so strengths and samplers act as on SD1
SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "prediction_type": "epsilon",
}


def architecture() -> dict[str, Any]:
    """Everything a loader needs besides the weights: configs and tokenizer choice."""
    return {
        "format": FORMAT,
        "family": "sd1",
        "unet": UNET,
        "vae": VAE,
        "text_encoder": TEXT_ENCODER,
        "scheduler": SCHEDULER,
        "tokenizer": "bytes",
    }


def byte_symbols() -> list[str]:
    """CLIP's byte encoding, in the order of CLIP's vocabulary.

    Printable Latin-1 bytes stand for themselves, every other byte for a code point from 256 on.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    rest = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(rest))]


def byte_vocabulary() -> tuple[dict[str, int], str]:
    """A CLIP-style byte-level BPE vocabulary (vocab.json, merges.txt) with no merges:
    every byte is a token, alone or ending a word ('</w>')."""
    symbols = byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": VOCAB_BYTES + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = BOS
    vocab["<|endoftext|>"] = EOS
    return vocab, "#version: 0.2\n"


def write_config_dir(
    folder: Path, arch: dict[str, Any], vocabulary: tuple[dict[str, int], str] | None = None
) -> Path:
    """A diffusers config folder (no weights) for `from_single_file(config=...)`.

    `vocabulary` is the tokenizer's (vocab, merges); by default the tiny byte vocabulary.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    index = {
        "_class_name": "StableDiffusionPipeline",
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", arch["scheduler"]["_class_name"]],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    files = {
        "model_index.json": index,
        "unet/config.json": {"_class_name": "UNet2DConditionModel", **arch["unet"]},
        "vae/config.json": {"_class_name": "AutoencoderKL", **arch["vae"]},
        "text_encoder/config.json": arch["text_encoder"],
        "scheduler/scheduler_config.json": arch["scheduler"],
        "tokenizer/tokenizer_config.json": {
            "model_max_length": arch["text_encoder"]["max_position_embeddings"],
            "tokenizer_class": "CLIPTokenizer",
            "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
        },
    }
    vocab, merges = vocabulary or byte_vocabulary()
    files["tokenizer/vocab.json"] = vocab
    # write beside, then move into place: a half-written folder is never used
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    for name, data in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    (tmp / "tokenizer/merges.txt").write_text(merges, encoding="utf-8")
    if folder.exists():
        shutil.rmtree(tmp)
        return folder
    os.replace(tmp, folder)
    return folder


def build_state_dict(seed: int) -> dict[str, Any]:
    """The LDM-named weights of a tiny model, randomly initialised from `seed` (fp16)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**UNET)
        vae = AutoencoderKL(**{k: v for k, v in VAE.items()})
        text = CLIPTextModel(CLIPTextConfig(**TEXT_ENCODER))
    finally:
        torch.random.set_rng_state(gen_state)

    up_attention = ["CrossAttn" in t for t in UNET["up_block_types"]]
    out: dict[str, Any] = {}
    for key, value in unet.state_dict().items():
        out[ldm.unet_key(key, UNET["layers_per_block"], up_attention)] = value
    for key, value in vae.state_dict().items():
        if ldm.vae_needs_conv_shape(key):
            value = value[:, :, None, None]
        out[ldm.vae_key(key, len(VAE["up_block_types"]))] = value
    for key, value in text.state_dict().items():
        if key.endswith("position_ids"):
            continue
        out[ldm.clip_key(key)] = value
    return {k: v.detach().to(torch.float16).contiguous() for k, v in out.items()}


def default_home() -> Path:
    """Where built-in models are cached: $MULTIPASS_HOME, else ~/.cache/multipass."""
    home = os.environ.get("MULTIPASS_HOME")
    return Path(home) if home else Path.home() / ".cache" / "multipass"


def ensure_tiny_models(folder: Path | None = None) -> Path:
    """Build the tiny checkpoints into `folder` (default: the cache) unless already there."""
    from safetensors.torch import save_file

    from .checkpoints import read_safetensors_header

    folder = folder or default_home() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    meta = {METADATA_KEY: json.dumps(architecture(), sort_keys=True)}
    for name, seed in TINY_SEEDS.items():
        path = folder / f"{name}.safetensors"
        if path.exists():
            try:
                have = read_safetensors_header(path).get("__metadata__", {})
                if have.get(METADATA_KEY) == meta[METADATA_KEY]:
                    continue
            except ValueError:
                pass
        tmp = path.with_suffix(".tmp")
        save_file(build_state_dict(seed), str(tmp), metadata=meta)
        os.replace(tmp, path)
    return folder
