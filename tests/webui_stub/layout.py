"""Model folders for the stand-in: header-only checkpoints whose tensor names say their family,
a VAE and a text encoder (used by the WebUI tests and the browser test's app)."""

import json
from pathlib import Path

SD1_KEYS = [
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
    "model.diffusion_model.input_blocks.0.0.weight",
]
SDXL_KEYS = [
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
    "conditioner.embedders.1.model.ln_final.weight",
    "model.diffusion_model.input_blocks.0.0.weight",
]
FLUX_KEYS = [
    "model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale",
    "model.diffusion_model.img_in.weight",
]


def header_only(path: Path, keys, metadata=None) -> None:
    """A .safetensors file with these tensor names and no data: enough for every header read."""
    shapes = keys if isinstance(keys, dict) else dict.fromkeys(keys, [0])
    header = {k: {"dtype": "F16", "shape": s, "data_offsets": [0, 0]} for k, s in shapes.items()}
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw)


def lay_out_models(root: Path) -> Path:
    """toon, photo (SD1), xl (SDXL), flux, a pickle, a VAE, a text encoder and two
    ControlNet models (SD1 tile, SDXL canny) under `root`."""
    sd = Path(root) / "Stable-diffusion"
    header_only(sd / "toon.safetensors", SD1_KEYS)
    header_only(sd / "photo.safetensors", SD1_KEYS)
    header_only(sd / "xl.safetensors", SDXL_KEYS)
    header_only(sd / "flux.safetensors", FLUX_KEYS)
    header_only(sd / "corrupt.safetensors", SD1_KEYS)  # whole, but the host fails to load it

    (sd / "old.ckpt").write_bytes(b"PK")
    header_only(Path(root) / "VAE" / "vae-ft-mse.safetensors", ["decoder.conv_in.weight"])
    header_only(Path(root) / "text_encoder" / "t5xxl.safetensors", ["encoder.block.0.layer.0.x"])
    # ControlNet models whose headers say their family (the cross-attention width)
    cn = Path(root) / "ControlNet"
    to_k = "control_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
    header_only(cn / "control_sd15_tile.safetensors", {to_k: [320, 768]})
    header_only(cn / "control_sdxl_canny.safetensors", {to_k: [640, 2048]})
    return Path(root)
