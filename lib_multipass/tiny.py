"""The built-in default checkpoints: tiny SD1- and SDXL-architecture models built from code.

"tiny-toon" and "tiny-photo" (SD1) and "tiny-xl" (SDXL: two text encoders, size conditioning)
are randomly initialised (differently seeded) and make noise-like pictures. They exist so that
every code path, from loading a WebUI single-file checkpoint to a detailed-inpaint crop and a
switch between families, runs on a machine with no models and no network. They are built
deterministically on first use and written in the WebUI's single-file layouts (original LDM key
names; SDXL's CLIP-L in transformers layout and OpenCLIP bigG in OpenCLIP's; their architecture
in the file's metadata), so they go through the same loader as a user's checkpoints.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from . import ldm

TINY_SEEDS = {"tiny-toon": 1, "tiny-photo": 2, "tiny-xl": 3}
TINY_FAMILIES = {"tiny-toon": "sd1", "tiny-photo": "sd1", "tiny-xl": "sdxl"}
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


# tiny SDXL: the text encoders differ in width (as CLIP-L and bigG do: loaders tell them apart
# by it), cross-attention takes both (32 + 48), and the pooled bigG output plus six size and
# crop numbers feed the time embedding, as in SDXL
XL_UNET = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "transformer_layers_per_block": [1, 1],
    "attention_head_dim": [4, 8],
    "cross_attention_dim": 80,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 48 + 6 * 8,
    "norm_num_groups": 32,
}
XL_VAE = {**VAE, "scaling_factor": 0.13025, "force_upcast": False}
XL_TEXT_ENCODER = {**TEXT_ENCODER, "hidden_act": "quick_gelu"}
XL_TEXT_ENCODER_2 = {
    "architectures": ["CLIPTextModelWithProjection"],
    "model_type": "clip_text_model",
    "vocab_size": 2 * VOCAB_BYTES + 2,
    "hidden_size": 48,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "projection_dim": 48,
    "hidden_act": "gelu",
    "bos_token_id": BOS,
    "eos_token_id": EOS,
    "pad_token_id": 1,
}
# SDXL's noise schedule (its scheduler config: Euler, scaled_linear, leading spacing)
XL_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "prediction_type": "epsilon",
    "use_karras_sigmas": False,
}


def architecture(family: str = "sd1") -> dict[str, Any]:
    """Everything a loader needs besides the weights of a tiny model: configs and tokenizer."""
    if family == "sdxl":
        return {
            "format": FORMAT,
            "family": "sdxl",
            "unet": XL_UNET,
            "vae": XL_VAE,
            "text_encoder": XL_TEXT_ENCODER,
            "text_encoder_2": XL_TEXT_ENCODER_2,
            "scheduler": XL_SCHEDULER,
            "tokenizer": "bytes",
        }
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
    xl = "text_encoder_2" in arch
    index = {
        "_class_name": "StableDiffusionXLPipeline" if xl else "StableDiffusionPipeline",
        "scheduler": ["diffusers", arch["scheduler"]["_class_name"]],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    if xl:
        index |= {
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "force_zeros_for_empty_prompt": True,
        }
    else:
        index |= {
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
        }
    files = {
        "model_index.json": index,
        "unet/config.json": {"_class_name": "UNet2DConditionModel", **arch["unet"]},
        "vae/config.json": {"_class_name": "AutoencoderKL", **arch["vae"]},
        "text_encoder/config.json": arch["text_encoder"],
        "scheduler/scheduler_config.json": arch["scheduler"],
        "tokenizer/tokenizer_config.json": _tokenizer_config(arch["text_encoder"], "<|endoftext|>"),
    }
    vocab, merges = vocabulary or byte_vocabulary()
    files["tokenizer/vocab.json"] = vocab
    tokenizers = ["tokenizer"]
    if xl:
        # OpenCLIP bigG shares CLIP's vocabulary but pads with "!" (token 0), as open_clip does
        files["text_encoder_2/config.json"] = arch["text_encoder_2"]
        files["tokenizer_2/tokenizer_config.json"] = _tokenizer_config(arch["text_encoder_2"], "!")
        files["tokenizer_2/vocab.json"] = vocab
        tokenizers.append("tokenizer_2")
    # write beside, then move into place: a half-written folder is never used
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    for name, data in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    for name in tokenizers:
        (tmp / name / "merges.txt").write_text(merges, encoding="utf-8")
    if folder.exists():
        shutil.rmtree(tmp)
        return folder
    os.replace(tmp, folder)
    return folder


def _tokenizer_config(text_encoder: dict[str, Any], pad: str) -> dict[str, Any]:
    return {
        "model_max_length": text_encoder["max_position_embeddings"],
        "tokenizer_class": "CLIPTokenizer",
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": pad,
        "unk_token": "<|endoftext|>",
    }


def build_state_dict(seed: int, family: str = "sd1") -> dict[str, Any]:
    """The LDM-named weights of a tiny model, randomly initialised from `seed` (fp16)."""
    return build_for(architecture(family), seed)


def build_for(arch: dict[str, Any], seed: int) -> dict[str, Any]:
    """LDM-named fp16 weights of any SD1 or SDXL architecture, randomly initialised from
    `seed` (the benchmarks build realistic sizes with it)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**arch["unet"])
        vae = AutoencoderKL(**arch["vae"])
        text = CLIPTextModel(CLIPTextConfig(**arch["text_encoder"]))
        text_2 = None
        if "text_encoder_2" in arch:
            text_2 = CLIPTextModelWithProjection(CLIPTextConfig(**arch["text_encoder_2"]))
    finally:
        torch.random.set_rng_state(gen_state)

    up_attention = ["CrossAttn" in t for t in arch["unet"]["up_block_types"]]
    out: dict[str, Any] = {}
    for key, value in unet.state_dict().items():
        out[ldm.unet_key(key, arch["unet"]["layers_per_block"], up_attention)] = value
    for key, value in vae.state_dict().items():
        if ldm.vae_needs_conv_shape(key):
            value = value[:, :, None, None]
        out[ldm.vae_key(key, len(arch["vae"]["up_block_types"]))] = value
    clip_prefix = ldm.CLIP_PREFIX if text_2 is None else ldm.XL_CLIP_PREFIX
    for key, value in text.state_dict().items():
        if key.endswith("position_ids"):
            continue
        out[ldm.clip_key(key, clip_prefix)] = value
    if text_2 is not None:
        out |= _openclip_weights(text_2.state_dict())
    return {k: v.detach().to(torch.float16).contiguous() for k, v in out.items()}


def _openclip_weights(state: dict[str, Any]) -> dict[str, Any]:
    """A transformers CLIPTextModelWithProjection's weights in OpenCLIP's layout: q, k and v
    fused into in_proj, text_projection as width x projection."""
    import torch

    out: dict[str, Any] = {}
    fused: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        name, part = ldm.openclip_key(key)
        if part is not None:
            fused.setdefault(name, {})[part] = value
        elif name.endswith("text_projection"):
            out[name] = value.T
        else:
            out[name] = value
    for name, parts in fused.items():
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


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
    for name, seed in TINY_SEEDS.items():
        family = TINY_FAMILIES[name]
        meta = {METADATA_KEY: json.dumps(architecture(family), sort_keys=True)}
        path = folder / f"{name}.safetensors"
        if path.exists():
            try:
                have = read_safetensors_header(path).get("__metadata__", {})
                if have.get(METADATA_KEY) == meta[METADATA_KEY]:
                    continue
            except ValueError:
                pass
        tmp = path.with_suffix(".tmp")
        save_file(build_state_dict(seed, family), str(tmp), metadata=meta)
        os.replace(tmp, path)
    return folder
