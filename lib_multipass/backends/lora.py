"""LoRA files merged into a loaded pipeline's weights, and the weights put back exactly.

The WebUI's Lora extension (A1111 1.10.1 extensions-builtin/Lora: networks.py, network.py,
network_lora.py) adds each LoRA layer's `up @ down`, scaled by alpha / rank and by the tag's
multiplier (te for text-encoder layers, unet for the UNet), to the layer's weight, and keeps a
copy of the weight to restore it. This module does the same to a diffusers pipeline: the layers
are named as kohya's files name them, `lora_unet_<diffusers or LDM module path>`, `lora_te_`
(SD1), `lora_te1_`/`lora_te2_` (SDXL's two encoders). A pipeline only ever holds the LoRAs of
the generation it is used for: the set is compared before every use, and the copies put back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import ldm
from ..networks import NetworkFile
from ..prompts import LoraUse

PARTS = {"lora_A.weight": "lora_down.weight", "lora_B.weight": "lora_up.weight"}


class LoraError(RuntimeError):
    """A LoRA that cannot be applied to this checkpoint (names the LoRA and why)."""


@dataclass
class LoraFile:
    """A LoRA file's layers (kohya name -> its tensors) and the embeddings it bundles."""

    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    bundled: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_lora(path: Path) -> LoraFile:
    """A LoRA file's tensors; .safetensors, or (with the user's opt-in) a pickle through torch's
    weights-only unpickler."""
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise LoraError(f"{path.name} holds no dictionary of tensors")
    out = LoraFile()
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            continue
        module, _, part = str(key).partition(".")
        if module == "bundle_emb":
            name, _, rest = part.partition(".")
            which = rest.split(".")[0]
            vec = tensor.detach().float()
            vec = vec.unsqueeze(0) if vec.dim() == 1 else vec
            out.bundled.setdefault(name, {})["" if which == "string_to_param" else which] = vec
            continue
        out.layers.setdefault(module, {})[PARTS.get(part, part)] = tensor
    return out


def layer_names(pipe: Any) -> dict[str, tuple[Any, bool]]:
    """Every LoRA-able layer of a pipeline by each name kohya's files may give it, with whether
    it belongs to a text encoder."""
    import torch

    kinds = (torch.nn.Linear, torch.nn.Conv2d)
    out: dict[str, tuple[Any, bool]] = {}
    second = getattr(pipe, "text_encoder_2", None)
    encoders = [("lora_te1_", pipe.text_encoder), ("lora_te2_", second)]
    if second is None:  # SD1: lora_te_ (and lora_te1_, which the WebUI also takes for SD1)
        encoders = [("lora_te_", pipe.text_encoder), ("lora_te1_", pipe.text_encoder)]
    for prefix, model in encoders:
        for name, module in model.named_modules():
            if isinstance(module, kinds):
                # kohya names them from text_model (transformers 5's CLIPTextModel has no
                # such level; its WithProjection does)
                if not name.startswith(("text_model.", "text_projection")):
                    name = "text_model." + name
                out[prefix + name.replace(".", "_")] = (module, True)
    unet = pipe.unet
    per_block = unet.config.layers_per_block
    per_block = per_block if isinstance(per_block, int) else per_block[0]
    up_attention = ["CrossAttn" in t for t in unet.config.up_block_types]
    for name, module in unet.named_modules():
        if not isinstance(module, kinds):
            continue
        out["lora_unet_" + name.replace(".", "_")] = (module, False)
        try:
            ldm_name = ldm.unet_key(name + ".weight", per_block, up_attention)
        except KeyError:
            continue
        ldm_name = ldm_name.removeprefix(ldm.UNET_PREFIX).removesuffix(".weight")
        out.setdefault("lora_unet_" + ldm_name.replace(".", "_"), (module, False))
    return out


def _updown(parts: dict[str, Any], use: LoraUse, weight: Any, name: str) -> Any:
    """A layer's change, as network_lora.calc_updown and network.finalize_updown make it."""
    import torch

    if "lora_up.weight" not in parts or "lora_down.weight" not in parts:
        raise LoraError(f"layer {name} has no lora_up/lora_down weights ({', '.join(parts)})")
    up = parts["lora_up.weight"].to(weight.device, weight.dtype)
    down = parts["lora_down.weight"].to(weight.device, weight.dtype)
    mid = parts.get("lora_mid.weight")
    rank = down.shape[0]
    up2, down2 = up.reshape(up.shape[0], -1), down.reshape(down.shape[0], -1)
    if use.dyn is not None:
        up2, down2 = up2[:, : use.dyn], down2[: use.dyn, :]
    if mid is not None:  # CP decomposition (LoCon)
        mid = mid.to(weight.device, weight.dtype)
        updown = torch.einsum("n m k l, i n, m j -> i j k l", mid, up2, down2)
    else:
        shape = [up.shape[0], down.shape[1], *down.shape[2:]]
        updown = (up2 @ down2).reshape(shape)
    if updown.numel() != weight.numel():
        raise LoraError(
            f"layer {name} has shape {list(updown.shape)}, the checkpoint's {list(weight.shape)}"
        )
    updown = updown.reshape(weight.shape)
    if "scale" in parts:
        updown = updown * float(parts["scale"])
    elif "alpha" in parts:
        updown = updown * (float(parts["alpha"]) / rank)
    dora = parts.get("dora_scale")
    if dora is not None:  # DoRA: the merged weight's column norms set from dora_scale
        merged = updown + weight
        dims = weight.dim() - 1
        norm = (
            merged.transpose(0, 1)
            .reshape(merged.shape[1], -1)
            .norm(dim=1, keepdim=True)
            .reshape(merged.shape[1], *[1] * dims)
            .transpose(0, 1)
        )
        updown = merged * (dora.to(weight.device, weight.dtype) / norm) - weight
    return updown


@dataclass
class Applied:
    """The LoRAs merged into one pipeline, and the copies of the weights they changed."""

    key: tuple = ()
    backups: dict[int, tuple[Any, Any]] = field(default_factory=dict)  # id -> (param, copy)
    bundled: dict[str, dict[str, Any]] = field(default_factory=dict)


def lora_key(uses: list[tuple[LoraUse, NetworkFile]]) -> tuple:
    """What makes two LoRA sets the same: files (and their stamps) and multipliers, in order."""
    out = []
    for use, f in uses:
        st = os.stat(f.path)
        out.append((str(f.path), st.st_mtime_ns, st.st_size, use.te, use.unet, use.dyn))
    return tuple(out)


def restore(applied: Applied) -> None:
    """Put back every weight a LoRA changed, bit for bit."""
    import torch

    with torch.no_grad():
        for param, copy in applied.backups.values():
            param.copy_(copy.to(param.device))
    applied.backups.clear()
    applied.bundled = {}
    applied.key = ()


def apply(pipe: Any, applied: Applied, uses: list[tuple[LoraUse, NetworkFile]]) -> None:
    """Make `pipe` hold exactly these LoRAs (none: its own weights), changing only what
    differs from what it holds."""
    import torch

    key = lora_key(uses) if uses else ()
    if key == applied.key:
        return
    restore(applied)
    if not uses:
        return
    names = layer_names(pipe)
    try:
        with torch.no_grad():
            for use, f in uses:
                lora = read_lora(f.path)
                matched = 0
                for layer, parts in lora.layers.items():
                    target = names.get(layer)
                    if target is None:
                        continue  # as the WebUI, layers the checkpoint lacks are left out
                    module, te = target
                    weight = module.weight
                    if id(weight) not in applied.backups:
                        applied.backups[id(weight)] = (weight, weight.detach().to("cpu", copy=True))
                    try:
                        change = _updown(parts, use, weight, layer)
                    except LoraError as e:
                        raise LoraError(f"LoRA {use.name!r} ({f.path.name}): {e}") from None
                    weight.add_(change * (use.te if te else use.unet))
                    matched += 1
                if lora.layers and not matched:
                    raise LoraError(
                        f"LoRA {use.name!r} ({f.path.name}): none of its {len(lora.layers)} "
                        "layers is a layer of this checkpoint (a LoRA for another model?)"
                    )
                for name, vectors in lora.bundled.items():
                    applied.bundled.setdefault(name, vectors)
    except LoraError:
        restore(applied)
        raise
    except (RuntimeError, ValueError, OSError) as e:
        restore(applied)
        raise LoraError(f"LoRA {use.name!r} ({f.path.name}) could not be applied: {e}") from e
    applied.key = key
