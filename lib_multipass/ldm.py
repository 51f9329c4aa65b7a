"""Key names of the WebUI's single-file checkpoints (the original LDM layout), from diffusers'.

diffusers converts LDM checkpoints to its own layout but not back; Multipass writes its built-in
models as WebUI-style files so that they go through the same loader as a user's checkpoints.
These functions only rename keys (pure); the caller reshapes the VAE attention weights, which
are 1x1 convolutions in LDM and linear layers in diffusers (`vae_needs_conv_shape`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
# SDXL: CLIP-L in transformers layout, OpenCLIP bigG in OpenCLIP's own
XL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
XL_OPENCLIP_PREFIX = "conditioner.embedders.1.model."

_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",  # SDXL's size/crop conditioning
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTN = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}
_VAE_TOP = {"conv_norm_out": "norm_out"}


def _resnet(rest: str, table: Mapping[str, str]) -> str:
    head, _, tail = rest.partition(".")
    return f"{table.get(head, head)}.{tail}"


def unet_key(key: str, layers_per_block: int, up_has_attention: Sequence[bool]) -> str:
    """The LDM name of a diffusers UNet2DConditionModel key (SD1/SD2 layout)."""
    stride = layers_per_block + 1
    for old, new in _UNET_TOP.items():
        if key.startswith(old + "."):
            return UNET_PREFIX + new + key[len(old) :]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = 1 + block * stride + j
        if kind == "resnets":
            return f"{UNET_PREFIX}input_blocks.{index}.0.{_resnet(rest, _RESNET)}"
        return f"{UNET_PREFIX}input_blocks.{index}.1.{rest}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        index = 1 + int(m[1]) * stride + layers_per_block
        return f"{UNET_PREFIX}input_blocks.{index}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key):
        kind, j, rest = m[1], int(m[2]), m[3]
        if kind == "resnets":
            return f"{UNET_PREFIX}middle_block.{2 * j}.{_resnet(rest, _RESNET)}"
        return f"{UNET_PREFIX}middle_block.1.{rest}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = block * stride + j
        if kind == "resnets":
            return f"{UNET_PREFIX}output_blocks.{index}.0.{_resnet(rest, _RESNET)}"
        return f"{UNET_PREFIX}output_blocks.{index}.1.{rest}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        block = int(m[1])
        index = block * stride + layers_per_block
        slot = 2 if up_has_attention[block] else 1
        return f"{UNET_PREFIX}output_blocks.{index}.{slot}.conv.{m[2]}"
    raise KeyError(f"no LDM name for UNet key {key!r}")


def vae_key(key: str, num_up_blocks: int) -> str:
    """The LDM name of a diffusers AutoencoderKL key."""
    for old, new in _VAE_TOP.items():
        key = re.sub(rf"^(encoder|decoder)\.{old}\.", rf"\1.{new}.", key)
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        return f"{VAE_PREFIX}encoder.down.{m[1]}.block.{m[2]}.{_resnet(m[3], _VAE_RESNET)}"
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"{VAE_PREFIX}encoder.down.{m[1]}.downsample.conv.{m[2]}"
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        block = num_up_blocks - 1 - int(m[1])
        return f"{VAE_PREFIX}decoder.up.{block}.block.{m[2]}.{_resnet(m[3], _VAE_RESNET)}"
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        block = num_up_blocks - 1 - int(m[1])
        return f"{VAE_PREFIX}decoder.up.{block}.upsample.conv.{m[2]}"
    if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"{VAE_PREFIX}{m[1]}.mid.block_{int(m[2]) + 1}.{_resnet(m[3], _VAE_RESNET)}"
    if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)$", key):
        return f"{VAE_PREFIX}{m[1]}.mid.attn_1.{_VAE_ATTN.get(m[2], m[2])}.{m[3]}"
    return VAE_PREFIX + key


def vae_needs_conv_shape(key: str) -> bool:
    """Whether a diffusers VAE weight is a linear layer that LDM stores as a 1x1 convolution."""
    return bool(re.search(r"mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$", key))


def clip_key(key: str, prefix: str = CLIP_PREFIX) -> str:
    """The LDM name of a transformers CLIPTextModel key (with or without 'text_model.')."""
    if not key.startswith("text_model."):
        key = "text_model." + key
    return prefix + key


_OPENCLIP_TOP = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "text_projection.weight": "text_projection",
}
_OPENCLIP_LAYER = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def openclip_key(key: str, prefix: str = XL_OPENCLIP_PREFIX) -> tuple[str, str | None]:
    """The OpenCLIP (LDM) name of a transformers CLIPTextModelWithProjection key, and for the
    q, k and v projections which third of OpenCLIP's fused `in_proj` they are ('q', 'k', 'v').

    The caller fuses q, k and v into `in_proj` and transposes `text_projection` (OpenCLIP keeps
    it as width x projection, transformers as a linear layer's projection x width).
    """
    if key in _OPENCLIP_TOP:
        return prefix + _OPENCLIP_TOP[key], None
    m = re.match(r"text_model\.encoder\.layers\.(\d+)\.(.*)\.(weight|bias)$", key)
    if m is None:
        raise KeyError(f"no OpenCLIP name for text encoder key {key!r}")
    block, part, kind = m[1], m[2], m[3]
    head = f"{prefix}transformer.resblocks.{block}."
    if qkv := re.fullmatch(r"self_attn\.(q|k|v)_proj", part):
        return f"{head}attn.in_proj_{kind}", qkv[1]
    if part not in _OPENCLIP_LAYER:
        raise KeyError(f"no OpenCLIP name for text encoder key {key!r}")
    return f"{head}{_OPENCLIP_LAYER[part]}.{kind}", None
