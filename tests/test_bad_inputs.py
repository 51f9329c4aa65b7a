"""Bad input at every door of the command line, the way users give it: `multipass` run as a
subprocess on files, flags, folders and checkpoint files. Each case must exit with the right
code, print no traceback, and name the field or file and what is allowed. Valid edge cases
that look odd must be accepted.
"""

from __future__ import annotations

import codecs
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

PASS = {"denoising_strength": 0.5}
BASE = {"width": 64, "height": 64, "steps": 4, "checkpoint": "tiny-toon"}


def recipe(*passes: dict, base: dict | None = None, **top: Any) -> dict:
    return {"base": {**BASE, **(base or {})}, "passes": list(passes or [PASS]), **top}


@dataclass
class Case:
    """A command line (with files it needs), the exit code and what its message must say."""

    name: str
    args: list[str]
    says: list[str]
    code: int = 2
    files: dict[str, Any] = field(default_factory=dict)  # name -> dict (JSON) | bytes | callable


def header_only(keys: list[str]) -> bytes:
    header = {
        k: {"dtype": "F16", "shape": [1], "data_offsets": [2 * i, 2 * i + 2]}
        for i, k in enumerate(keys)
    }
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + b"\0\0" * len(keys)


def torch_save(obj: Any) -> Any:
    def write(path: Path) -> None:
        import torch

        torch.save(obj, str(path))

    return write


def mask_png(white: bool) -> Any:
    def write(path: Path) -> None:
        from PIL import Image

        img = Image.new("L", (64, 64), 0)
        if white:
            img.paste(255, (10, 10, 30, 30))
        img.save(path)

    return write


def photo_png(w: int, h: int) -> Any:
    def write(path: Path) -> None:
        from PIL import Image

        Image.new("RGB", (w, h), (90, 120, 150)).save(path)

    return write


def dotted_png(path: Path) -> None:
    """A mask of 65 separate white dots: one more area than a split allows."""
    from PIL import Image

    img = Image.new("L", (200, 200), 0)
    for i in range(65):
        x, y = (i % 9) * 22, (i // 9) * 22
        img.paste(255, (x, y, x + 8, y + 8))
    img.save(path)


def zip_without_pickle(path: Path) -> None:

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/readme.txt", "hello")


FLUX_KEYS = [
    "model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale",
    "model.diffusion_model.img_in.weight",
]
LORA_KEYS = [
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight",
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha",
]
XL_LORA_KEYS = [k.replace("lora_te_", "lora_te2_") for k in LORA_KEYS]
DEEP = "[" * 100_000 + "]" * 100_000
R = "r.json"
L = "l.jsonl"


def jsonl(*lines: Any) -> bytes:
    """A job list: each line an object (as JSON) or text as it is."""
    return "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()


ALLOWED_INT = "a whole number from 1 to 64"

CASES = [
    # -- recipe files: encodings, JSON, structure ---------------------------------------------
    Case(
        "latin-1 file",
        ["plan", R],
        ["not UTF-8 text (byte 0xe9", "UTF-8 (with or without a BOM)"],
        files={R: '{"passes": [{"name": "caf\u00e9"}]}'.encode("latin-1")},
    ),
    Case(
        "utf-16 without bom",
        ["plan", R],
        ["UTF-16 or UTF-32 text without a byte order mark"],
        files={R: json.dumps(recipe()).encode("utf-16-le")},
    ),
    Case("invalid json", ["plan", R], ["valid JSON (line 1, column"], files={R: b'{"passes": [}'}),
    Case("empty file", ["plan", R], ["valid JSON"], files={R: b""}),
    Case("absurd nesting", ["plan", R], ["nested"], files={R: DEEP.encode()}),
    Case(
        "1000-digit steps",
        ["plan", R],
        ["pass 1, field 'steps': got <a number of 1000 digits>"],
        files={R: ('{"passes": [{"steps": ' + "9" * 1000 + "}]}").encode()},
    ),
    Case(
        "5000-digit seed",
        ["run", R],
        ["base, field 'seed': got <a number of 5000 digits>"],
        files={R: ('{"base": {"seed": -' + "1" * 5000 + '}, "passes": []}').encode()},
    ),
    Case(
        "duplicate key in a pass",
        ["plan", R],
        ["pass 1, field 'denoising_strength'", "each field given once, not twice"],
        files={R: b'{"passes": [{"denoising_strength": 0.3, "denoising_strength": 0.7}]}'},
    ),
    Case(
        "duplicate top-level key",
        ["plan", R],
        ["recipe, field 'passes'", "once, not twice"],
        files={R: b'{"passes": [], "passes": [{}]}'},
    ),
    Case(
        "NaN",
        ["plan", R],
        ["NaN is not a JSON value"],
        files={R: b'{"passes": [{"denoising_strength": NaN}]}'},
    ),
    Case(
        "Infinity",
        ["plan", R],
        ["Infinity is not a JSON value"],
        files={R: b'{"passes": [{"cfg_scale": Infinity}]}'},
    ),
    Case(
        "top-level list",
        ["plan", R],
        ["field '(all)'", "an object with a 'passes' list"],
        files={R: [PASS]},
    ),
    Case("top-level text", ["plan", R], ["an object with a 'passes' list"], files={R: "passes"}),
    Case(
        "misspelt top-level key",
        ["plan", R],
        ["field 'pases'", "did you mean 'passes'"],
        files={R: {"pases": [PASS]}},
    ),
    Case(
        "passes not a list",
        ["plan", R],
        ["field 'passes'", "a list of at most 16 passes"],
        files={R: {"passes": PASS}},
    ),
    Case(
        "17 passes",
        ["plan", R],
        ["a list of at most 16 passes"],
        files={R: {"passes": [PASS] * 17}},
    ),
    Case(
        "a pass that is a number",
        ["plan", R],
        ["pass 2, field '(all)'", "an object of named"],
        files={R: {"passes": [PASS, 3]}},
    ),
    Case("missing recipe file", ["plan", "nope.json"], ["'nope.json'", "a readable file"]),
    Case("recipe path is a folder", ["plan", "."], ["a readable file (it is a folder)"]),
    Case(
        "base width not a multiple of 8",
        ["run", R],
        ["base, field 'width': got 100", "a multiple of 8"],
        files={R: recipe(base={"width": 100})},
    ),
    Case(
        "unknown base field",
        ["run", R],
        ["base, field 'step'", "did you mean 'steps'"],
        files={R: recipe(base={"step": 4})},
    ),
    Case(
        "strength out of range",
        ["plan", R],
        ["pass 1, field 'denoising_strength': got 1.5", "from 0.001 to 1"],
        files={R: recipe({"denoising_strength": 1.5})},
    ),
    Case(
        "strength list with text",
        ["plan", R],
        ["field 'strengths'", "'x' is not a number"],
        files={R: recipe({"schedule": "list", "strengths": [0.5, "x"]})},
    ),
    Case(
        "box of three numbers",
        ["plan", R],
        ["field 'boxes'", "box 1 (1 2 3) is not four"],
        files={R: recipe({"region": "crop", "mask_source": "boxes", "boxes": [[1, 2, 3]]})},
    ),
    Case(
        "version 2",
        ["plan", R],
        ["field 'version': got 2", "from 1 to 1"],
        files={R: recipe(version=2)},
    ),
    Case(
        "bad step mode",
        ["plan", R],
        ["field 'step_mode': got 'exact'", "'proportional'"],
        files={R: recipe(step_mode="exact")},
    ),
    Case(
        "over the run limit",
        ["plan", R],
        ["at most 256 runs in all"],
        files={R: recipe({"schedule": "curve", "curve_passes": 64, "repeats": 16})},
    ),
    Case(
        "upscale past 8192 px",
        ["plan", R],
        ["field 'upscale_by'", "within 8192 px"],
        files={R: recipe({"upscale_by": 3}, base={"width": 4096, "height": 4096})},
    ),
    Case(
        "crop on the job's mask headless",
        ["plan", R],
        ["field 'mask_source'", "no inpaint mask of its own"],
        files={R: recipe({"region": "crop"})},
    ),
    Case(
        "mask source image without one",
        ["plan", R],
        ["field 'mask_image'", "a mask image for mask source 'image'"],
        files={R: recipe({"region": "crop", "mask_source": "image"})},
    ),
    Case(
        "mask image missing",
        ["plan", R],
        ["field 'mask_image': got 'face.png'"],
        files={R: recipe({"region": "crop", "mask_source": "image", "mask_image": "face.png"})},
    ),
    Case(
        "mask image all black",
        ["plan", R],
        ["field 'mask_image'", "all black"],
        files={
            R: recipe({"region": "crop", "mask_source": "image", "mask_image": "m.png"}),
            "m.png": mask_png(False),
        },
    ),
    Case(
        "mask split into too many areas",
        ["plan", R],
        ["field 'mask_split'", "at most 64 separate areas", "65 separate areas"],
        files={
            R: recipe(
                {
                    "region": "crop",
                    "mask_source": "image",
                    "mask_image": "m.png",
                    "mask_split": True,
                }
            ),
            "m.png": dotted_png,
        },
    ),
    Case(
        "mask image not an image",
        ["plan", R],
        ["field 'mask_image': got 'm.png'"],
        files={
            R: recipe({"region": "crop", "mask_source": "image", "mask_image": "m.png"}),
            "m.png": b"not a png",
        },
    ),
    Case(
        "box wholly outside the image",
        ["plan", R],
        ["field 'boxes'", "box 1 lies wholly outside it"],
        files={R: recipe({"region": "crop", "mask_source": "boxes", "boxes": [[70, 0, 80, 9]]})},
    ),
    # -- flags ----------------------------------------------------------------------------------
    Case(
        "--images 0",
        ["run", R, "--images", "0"],
        ["command line, field '--images': got 0; allowed: " + ALLOWED_INT],
        files={R: recipe()},
    ),
    Case(
        "--images 65",
        ["run", R, "--images", "65"],
        ["got 65; allowed: " + ALLOWED_INT],
        files={R: recipe()},
    ),
    Case(
        "--images abc",
        ["run", R, "--images", "abc"],
        ["got 'abc'; allowed: " + ALLOWED_INT],
        files={R: recipe()},
    ),
    Case(
        "--images 2.5",
        ["run", R, "--images", "2.5"],
        ["got 2.5; allowed: " + ALLOWED_INT],
        files={R: recipe()},
    ),
    Case(
        "--seed -2",
        ["run", R, "--seed", "-2"],
        ["field '--seed': got -2", "from -1 to"],
        files={R: recipe()},
    ),
    Case("--seed 2^32", ["run", R, "--seed", "4294967296"], ["to 4294967295"], files={R: recipe()}),
    Case(
        "--rng TPU",
        ["run", R, "--rng", "TPU"],
        ["command line, field '--rng': got 'TPU'; allowed: one of 'CPU', 'GPU', 'NV'"],
        files={R: recipe()},
    ),
    Case(
        "base rng cpu",
        ["run", R],
        ["base, field 'rng': got 'cpu'", "one of 'CPU', 'GPU', 'NV'"],
        files={R: recipe(base={"rng": "cpu"})},
    ),
    Case(
        "base variation strength 1.5",
        ["run", R],
        ["base, field 'subseed_strength': got 1.5", "from 0 to 1"],
        files={R: recipe(base={"subseed_strength": 1.5})},
    ),
    Case(
        "--init not there",
        ["run", R, "--init", "nope.png"],
        ["field '--init': got 'nope.png'", "an image file or a folder of them"],
        files={R: recipe()},
    ),
    Case(
        "--init folder without images",
        ["run", R, "--init", "in"],
        ["field '--init': got 'in'", "a folder holding images (.png, .jpg"],
        files={R: recipe(), "in/notes.txt": b"no images here"},
    ),
    Case(
        "--init images of two sizes",
        ["run", R, "--init", "in"],
        ["field '--init'", "images of one size per job (the first, a.png, is 64x64", "64x128"],
        files={R: recipe(), "in/a.png": photo_png(64, 64), "in/b.png": photo_png(64, 128)},
    ),
    Case(
        "--init not an image",
        ["run", R, "--init", "a.png"],
        ["field '--init': got 'a.png'; allowed: an image file"],
        files={R: recipe(), "a.png": b"not a png"},
    ),
    Case(
        "--init of a size that is not a multiple of 8",
        ["run", R, "--init", "a.png"],
        ["field '--init'", "multiples of 8 from 64 to 4096", "(100x64)"],
        files={R: recipe(), "a.png": photo_png(100, 64)},
    ),
    Case(
        "--init with --images and --size",
        ["run", R, "--init", "a.png", "--images", "2", "--size", "64x64"],
        ["field '--images': got 2; allowed: not with --init", "field '--size'"],
        files={R: recipe(), "a.png": photo_png(64, 64)},
    ),
    Case(
        "--mask all black",
        ["run", R, "--init", "a.png", "--mask", "m.png"],
        ["field '--mask': got 'm.png'", "all black"],
        files={R: recipe(), "a.png": photo_png(64, 64), "m.png": mask_png(False)},
    ),
    Case(
        "--mask not there",
        ["run", R, "--mask", "m.png"],
        ["field '--mask': got 'm.png'; allowed: a mask image file"],
        files={R: recipe()},
    ),
    Case(
        "a pass on the job's mask, no --mask",
        ["run", R, "--init", "a.png"],
        ["field 'mask_source': got 'job'", "--mask headless"],
        files={R: recipe({"region": "crop"}), "a.png": photo_png(64, 64)},
    ),
    Case(
        "--size 500x500",
        ["plan", R, "--size", "500x500"],
        ["field '--size': got '500x500'", "a multiple of 8 from 64 to 4096"],
        files={R: recipe()},
    ),
    Case("--size 512", ["plan", R, "--size", "512"], ["a size WxH"], files={R: recipe()}),
    Case("--size 0x0", ["run", R, "--size", "0x0"], ["a size WxH"], files={R: recipe()}),
    Case(
        "--steps 0",
        ["plan", R, "--steps", "0"],
        ["field '--steps': got 0", "from 1 to 150"],
        files={R: recipe()},
    ),
    Case("--steps 151", ["plan", R, "--steps", "151"], ["from 1 to 150"], files={R: recipe()}),
    Case(
        "--step-mode exact",
        ["plan", R, "--step-mode", "exact"],
        ["field '--step-mode': got 'exact'", "one of 'proportional', 'fixed'"],
        files={R: recipe()},
    ),
    Case(
        "--cache-mb -1",
        ["run", R, "--cache-mb", "-1"],
        ["field '--cache-mb': got -1", "from 0 to"],
        files={R: recipe()},
    ),
    Case("--cache-mb lots", ["models", "--cache-mb", "lots"], ["got 'lots'"]),
    Case(
        "misspelt option",
        ["run", R, "--imgs", "3"],
        ["field '--imgs'", "did you mean '--images'"],
        files={R: recipe()},
    ),
    Case("run without a recipe", ["run"], ["field 'RECIPE': got 'nothing'", "a recipe JSON"]),
    Case("unknown command", ["rn", R], ["field 'command': got 'rn'", "'run'"]),
    Case(
        "--size without a value",
        ["plan", R, "--size"],
        ["field '--size'", "a size WxH"],
        files={R: recipe()},
    ),
    Case(
        "--models not a folder",
        ["run", R, "--models", "nowhere"],
        ["field '--models'", "an existing folder (this one is not there)"],
        files={R: recipe()},
    ),
    Case(
        "--webui is a file",
        ["models", "--webui", R],
        ["field '--webui'", "this one is a file"],
        files={R: recipe()},
    ),
    Case(
        "--out is a file",
        ["run", R, "--out", R],
        ["field '--out'", "(it is a file)"],
        files={R: recipe()},
    ),
    Case(
        "--out under a file",
        ["run", R, "--out", "r.json/sub"],
        ["field '--out'", "is a file"],
        files={R: recipe()},
    ),
    Case(
        "--out cannot be created",
        ["run", R, "--out", "/proc/multipass/out"],
        ["field '--out'", "a folder Multipass can create and write to"],
        files={R: recipe()},
    ),
    # -- names the runner does not know, checkpoint files ----------------------------------------
    Case(
        "unknown pass checkpoint",
        ["run", R],
        ["pass 1, field 'checkpoint': got 'photoreal'", "one of tiny-photo, tiny-toon"],
        files={R: recipe({"checkpoint": "photoreal"})},
    ),
    Case(
        "unknown base checkpoint",
        ["run", R],
        ["base, field 'checkpoint': got 'nope'"],
        files={R: recipe(base={"checkpoint": "nope"})},
    ),
    Case(
        "unknown base sampler",
        ["run", R],
        ["base, field 'sampler': got 'Euler z'", "one of Euler, Euler a"],
        files={R: recipe(base={"sampler": "Euler z"})},
    ),
    Case(
        "schedule type that is not one",
        ["run", R],
        [
            "pass 1, field 'scheduler': got 'Karras 2'",
            "one of '', 'Automatic', 'Uniform', 'Karras'",
        ],
        files={R: recipe({"sampler": "PLMS", "scheduler": "Karras 2"})},
    ),
    Case(
        "truncated checkpoint",
        ["run", R, "--models", "m"],
        ["pass 1, field 'checkpoint': got 'cut'", "cut.safetensors: truncated"],
        files={R: recipe({"checkpoint": "cut"}), "m/cut.safetensors": "TRUNCATED"},
    ),
    Case(
        "fake safetensors",
        ["run", R, "--models", "m"],
        ["fake.safetensors: not a safetensors"],
        files={R: recipe({"checkpoint": "fake"}), "m/fake.safetensors": b"\xff" * 64},
    ),
    Case(
        "ckpt without the opt-in",
        ["run", R, "--models", "m"],
        ["old.ckpt: a pickle-based", "--allow-ckpt"],
        files={R: recipe({"checkpoint": "old"}), "m/old.ckpt": b"PK\x03\x04"},
    ),
    Case(
        "ckpt that is text",
        ["run", R, "--models", "m", "--allow-ckpt"],
        ["old.ckpt: not a PyTorch checkpoint"],
        files={R: recipe({"checkpoint": "old"}), "m/old.ckpt": b"hello, I am text"},
    ),
    Case(
        "ckpt zip without a pickle",
        ["run", R, "--models", "m", "--allow-ckpt"],
        ["a zip archive without data.pkl"],
        files={R: recipe({"checkpoint": "old"}), "m/old.ckpt": zip_without_pickle},
    ),
    Case(
        "ckpt that holds no model",
        ["run", R, "--models", "m", "--allow-ckpt"],
        ["old.ckpt: holds no tensors of a model family"],
        files={R: recipe({"checkpoint": "old"}), "m/old.ckpt": torch_save({"epoch": 3})},
    ),
    Case(
        "safetensors of no known model",
        ["run", R, "--models", "m"],
        ["odd.safetensors: holds no tensors of a model family"],
        files={R: recipe({"checkpoint": "odd"}), "m/odd.safetensors": header_only(["foo"])},
    ),
    Case(
        "Flux file",
        ["run", R, "--models", "m"],
        ["flux.safetensors: a Flux checkpoint, which the diffusers runner does not load"],
        files={R: recipe({"checkpoint": "flux"}), "m/flux.safetensors": header_only(FLUX_KEYS)},
    ),
    Case(
        "per-pass VAE headless",
        ["run", R],
        ["pass 1, field 'vae'", "each checkpoint's VAE"],
        files={R: recipe({"vae": "vae-ft-mse"})},
    ),
    Case(
        "text encoders headless",
        ["run", R],
        ["field 'text_encoders'"],
        files={R: recipe({"text_encoders": ["t5xxl.safetensors"]})},
    ),
    Case(
        "unknown upscaler",
        ["run", R],
        ["pass 1, field 'upscaler': got 'ESRGAN'", "one of Lanczos"],
        files={R: recipe({"upscale_by": 2, "upscaler": "ESRGAN"})},
    ),
    # -- prompts, LoRAs, embeddings, clip skip ----------------------------------------------------
    Case(
        "a LoRA and no LoRA folder",
        ["run", R],
        ["pass 1, field 'prompt': got '<lora:detail:0.8>'", "--loras or --webui (none was"],
        files={R: recipe({"prompt": "<lora:detail:0.8>, sharp", "prompt_mode": "append"})},
    ),
    Case(
        "a LoRA that is not in --loras",
        ["run", R, "--loras", "loras"],
        ["pass 1, field 'prompt': got '<lora:nope:1>'; allowed: a LoRA from loras: knight"],
        files={
            R: recipe({"prompt": "<lora:nope:1> a", "prompt_mode": "replace"}),
            "loras/knight.safetensors": header_only(LORA_KEYS),
        },
    ),
    Case(
        "plan: a LoRA that is not in --loras, checked as run checks it",
        ["plan", R, "--loras", "loras"],
        ["pass 1, field 'prompt': got '<lora:nope:1>'; allowed: a LoRA from loras: knight"],
        files={
            R: recipe({"prompt": "<lora:nope:1> a", "prompt_mode": "replace"}),
            "loras/knight.safetensors": header_only(LORA_KEYS),
        },
    ),
    Case(
        "plan: an --embeddings folder that is not there",
        ["plan", R, "--embeddings", "nowhere"],
        ["command line, field '--embeddings': got 'nowhere'", "an existing folder"],
        files={R: recipe({})},
    ),
    Case(
        "a LoRA in a WebUI's models/Lora that is not there",
        ["run", R, "--webui", "w"],
        ["base, field 'prompt': got '<lora:nope:1>'", "a LoRA from w/models/Lora", ": knight"],
        files={
            R: recipe(base={"prompt": "<lora:nope:1> x"}),
            "w/models/Stable-diffusion/readme.txt": b"",
            "w/models/Lora/sub/knight.safetensors": header_only(LORA_KEYS),
        },
    ),
    Case(
        "a LoRA weight that is not a number",
        ["run", R, "--loras", "loras"],
        ["field 'prompt': got '<lora:knight:strong> a'", "the weight 'strong' is not a number"],
        files={
            R: recipe({"prompt": "<lora:knight:strong> a", "prompt_mode": "replace"}),
            "loras/knight.safetensors": header_only(LORA_KEYS),
        },
    ),
    Case(
        "an SDXL LoRA on an SD1 checkpoint",
        ["run", R, "--loras", "loras"],
        ["got '<lora:xl:1>'", "xl.safetensors is an SDXL LoRA; this pass's checkpoint is SD1.x"],
        files={
            R: recipe({"prompt": "<lora:xl:1> a", "prompt_mode": "replace"}),
            "loras/xl.safetensors": header_only(XL_LORA_KEYS),
        },
    ),
    Case(
        "a LyCORIS LoHa",
        ["run", R, "--loras", "loras"],
        ["got '<lora:loha:1>'", "a LyCORIS LoHa network", "LoRA layers (lora_up/lora_down) only"],
        files={
            R: recipe({"prompt": "<lora:loha:1> a", "prompt_mode": "replace"}),
            "loras/loha.safetensors": header_only(["lora_unet_a.hada_w1_a", "lora_unet_a.alpha"]),
        },
    ),
    Case(
        "a pickled LoRA without --allow-ckpt",
        ["run", R, "--loras", "loras"],
        ["got '<lora:old:1>'", "old.pt is a pickle-based file", "--allow-ckpt"],
        files={
            R: recipe({"prompt": "<lora:old:1> a", "prompt_mode": "replace"}),
            "loras/old.pt": torch_save({"lora_te_x.alpha": 1.0}),
        },
    ),
    Case(
        "a truncated LoRA",
        ["run", R, "--loras", "loras"],
        ["got '<lora:cut:1>'", "cut.safetensors: truncated, or not a safetensors file"],
        files={
            R: recipe({"prompt": "<lora:cut:1> a", "prompt_mode": "replace"}),
            "loras/cut.safetensors": header_only(LORA_KEYS)[:20],
        },
    ),
    Case(
        "a pickled embedding without --allow-ckpt",
        ["run", R, "--embeddings", "emb"],
        ["base, field 'prompt': got 'oldstyle'", "oldstyle.pt is a pickle-based file"],
        files={
            R: recipe(base={"prompt": "an oldstyle portrait"}),
            "emb/oldstyle.pt": torch_save({"string_to_param": {}}),
        },
    ),
    Case(
        "a hypernetwork tag",
        ["run", R],
        ["pass 1, field 'prompt': got '<hypernet:anime:1> a'", "hypernetworks are not loaded"],
        files={R: recipe({"prompt": "<hypernet:anime:1> a", "prompt_mode": "replace"})},
    ),
    Case(
        "an unknown tag",
        ["run", R],
        ["base, field 'prompt': got '<lorra:x:1> a'", "unknown <lorra:...> tag"],
        files={R: recipe(base={"prompt": "<lorra:x:1> a"})},
    ),
    Case(
        "AND in a prompt",
        ["run", R],
        ["base, field 'prompt': got 'a cat AND a dog'", "a prompt without AND"],
        files={R: recipe(base={"prompt": "a cat AND a dog"})},
    ),
    Case(
        "a composable weight at a prompt's end",
        ["run", R],
        ["pass 1, field 'prompt': got 'sharp:1.4'", "does not end in ':1.4'"],
        files={R: recipe({"prompt": "sharp:1.4", "prompt_mode": "replace"})},
    ),
    Case(
        "an emphasis weight that is not a number",
        ["run", R],
        ["base, field 'negative_prompt': got '(blurry:1.2.3)'", "an emphasis weight that is a"],
        files={R: recipe(base={"negative_prompt": "(blurry:1.2.3)"})},
    ),
    Case(
        "clip skip 13 in a pass",
        ["plan", R],
        [
            "pass 1, field 'clip_skip': got 13; allowed: a whole number from 1 to 12, or 0 for "
            "the base generation's value"
        ],
        files={R: recipe({"clip_skip": 13})},
    ),
    Case(
        "clip skip 0 in the base",
        ["run", R],
        ["base, field 'clip_skip': got 0; allowed: a whole number from 1 to 12"],
        files={R: recipe(base={"clip_skip": 0})},
    ),
    Case(
        "clip skip as text",
        ["plan", R],
        ["pass 1, field 'clip_skip': got 'two'"],
        files={R: recipe({"clip_skip": "two"})},
    ),
    Case(
        "clip skip deeper than tiny-toon's encoder",
        ["run", R],
        ["pass 1, field 'clip_skip': got 3; allowed: 1 to 2: tiny-toon's text encoder has 2"],
        files={R: recipe({"clip_skip": 3})},
    ),
    Case(
        "--loras not a folder",
        ["run", R, "--loras", "nowhere"],
        ["command line, field '--loras': got 'nowhere'; allowed: an existing folder"],
        files={R: recipe()},
    ),
    Case(
        "--embeddings is a file",
        ["models", "--embeddings", R],
        ["field '--embeddings'", "an existing folder (this one is a file)"],
        files={R: recipe()},
    ),
    Case("--loras without a value", ["demo", "--loras"], ["field '--loras': got 'nothing'"]),
    Case(
        "a detector that is not here",
        ["run", R],
        ["pass 1, field 'detector': got 'face_yolov8n.pt'", "'opencv-face'"],
        files={
            R: recipe({"region": "crop", "mask_source": "detect", "detector": "face_yolov8n.pt"})
        },
    ),
    Case(
        "--detectors not a folder",
        ["detectors", "--detectors", "nowhere"],
        ["field '--detectors'", "an existing folder"],
    ),
    # -- tile passes ---------------------------------------------------------------------------
    Case(
        "a tile style that is not one",
        ["plan", R],
        ["pass 1, field 'tile_style': got 'usdu'", "one of 'ultimate', 'sd-upscale'"],
        files={R: recipe({"region": "tiles", "tile_style": "usdu"})},
    ),
    Case(
        "a tile width not a multiple of 8",
        ["plan", R],
        ["pass 1, field 'tile_width': got 500", "a multiple of 8"],
        files={R: recipe({"region": "tiles", "tile_width": 500, "tile_height": 512})},
    ),
    Case(
        "a tile width without a height",
        ["plan", R],
        ["pass 1, field 'tile_height'", "both tile width and height set"],
        files={R: recipe({"region": "tiles", "tile_width": 512})},
    ),
    Case(
        "an overlap as large as the tile",
        ["plan", R],
        ["pass 1, field 'tile_overlap': got 64", "an overlap smaller than the tile (64x64)"],
        files={
            R: recipe(
                {
                    "region": "tiles",
                    "tile_style": "sd-upscale",
                    "tile_width": 64,
                    "tile_height": 64,
                    "tile_overlap": 64,
                    "upscale_by": 2,
                }
            )
        },
    ),
    Case(
        "a seams fix on sd-upscale tiles",
        ["plan", R],
        ["pass 1, field 'seams_fix': got 'band'", "'none' with tile style 'sd-upscale'"],
        files={R: recipe({"region": "tiles", "tile_style": "sd-upscale", "seams_fix": "band"})},
    ),
    Case(
        "a seams fix strength of 0",
        ["plan", R],
        ["pass 1, field 'seams_fix_strength': got 0", "from 0.001 to 1"],
        files={R: recipe({"region": "tiles", "seams_fix_strength": 0})},
    ),
    Case(
        "a tile order that is not one",
        ["run", R],
        ["pass 1, field 'tile_order': got 'spiral'", "one of 'chess', 'linear'"],
        files={R: recipe({"region": "tiles", "tile_order": "spiral"})},
    ),
    # -- ControlNet units (WebUI only; every rule also at the API and the UI) -------------------
    Case(
        "a ControlNet unit headless",
        ["run", R],
        ["pass 1, field 'controlnet_1_model': got 'control_sd15_tile'", "runs in the WebUI"],
        files={R: recipe({"controlnet_1_model": "control_sd15_tile"})},
    ),
    Case(
        "a ControlNet unit headless, when planned",
        ["plan", R],
        ["pass 1, field 'controlnet_2_model'", "not headless"],
        files={R: recipe({"controlnet_2_model": "tile"})},
    ),
    Case(
        "a ControlNet preprocessor without a model",
        ["plan", R],
        ["pass 1, field 'controlnet_1_model': got ''", "a ControlNet model for preprocessor"],
        files={R: recipe({"controlnet_1_module": "canny"})},
    ),
    Case(
        "a ControlNet unit that ends before it starts",
        ["plan", R],
        ["pass 1, field 'controlnet_1_guidance_end': got 0.2", "after the starting step (0.5)"],
        files={
            R: recipe(
                {
                    "controlnet_1_model": "t",
                    "controlnet_1_guidance_start": 0.5,
                    "controlnet_1_guidance_end": 0.2,
                }
            )
        },
    ),
    Case(
        "a ControlNet weight above 2",
        ["plan", R],
        ["pass 1, field 'controlnet_1_weight': got 2.5", "from 0 to 2"],
        files={R: recipe({"controlnet_1_model": "t", "controlnet_1_weight": 2.5})},
    ),
    Case(
        "a ControlNet control mode as the WebUI words it",
        ["plan", R],
        ["field 'controlnet_2_control_mode'", "one of 'balanced', 'prompt', 'controlnet'"],
        files={R: recipe({"controlnet_2_model": "t", "controlnet_2_control_mode": "Balanced"})},
    ),
    Case(
        "a downscale below a quarter",
        ["run", R],
        ["pass 1, field 'upscale_by': got 0.1", "from 0.25 to 8"],
        files={R: recipe({"upscale_by": 0.1})},
    ),
    Case(
        "a tile overlap too large for the field",
        ["plan", R],
        ["pass 1, field 'tile_overlap': got 4096", "from 0 to 2048"],
        files={R: recipe({"region": "tiles", "tile_overlap": 4096})},
    ),
    Case(
        "plan --batch-size 0",
        ["plan", R, "--batch-size", "0"],
        ["command line, field '--batch-size': got 0", ALLOWED_INT],
        files={R: recipe()},
    ),
    # -- plan checks names as run does; device problems before anything loads -------------------
    Case(
        "plan with a misspelt checkpoint",
        ["plan", R],
        ["base, field 'checkpoint': got 'tiny-fhoto'", "one of tiny-photo, tiny-toon, tiny-xl"],
        files={R: recipe(base={"checkpoint": "tiny-fhoto"})},
    ),
    Case(
        "plan with a sampler that is not one",
        ["plan", R],
        ["pass 1, field 'sampler': got 'x'", "one of Euler, Euler a"],
        files={R: recipe({"sampler": "x"})},
    ),
    Case(
        "UniPC at a strength that runs fewer than its 3 steps",
        ["plan", R],
        [
            "pass 1, field 'denoising_strength': got 0.1",
            "with sampler UniPC at 4 steps, a strength of at least 0.75 (below it UniPC runs "
            "fewer than 3 steps)",
        ],
        files={R: recipe({"sampler": "UniPC", "denoising_strength": 0.1})},
    ),
    Case(
        "image rules that are no WebUI's",
        ["run", R, "--image-rules", "comfy"],
        ["command line, field '--image-rules': got 'comfy'", "one of 'A1111', 'Forge'"],
        files={R: recipe()},
    ),
    Case(
        "image rules in a recipe that are no WebUI's",
        ["plan", R],
        ["base, field 'image_rules': got 'forge2'", "one of 'A1111', 'Forge'"],
        files={R: recipe(base={"image_rules": "forge2"})},
    ),
    Case(
        "DDIM at a strength that runs no step",
        ["plan", R],
        [
            "pass 1, field 'denoising_strength': got 0.3",
            "with sampler DDIM at 4 steps, a strength of at least 0.50 (below it DDIM runs no "
            "step)",
        ],
        files={R: recipe({"sampler": "DDIM", "denoising_strength": 0.3})},
    ),
    Case(
        "PLMS base at 1 step",
        ["plan", R],
        ["base, field 'steps': got 1", "at least 2 with sampler PLMS"],
        files={R: recipe(base={"sampler": "PLMS", "steps": 1})},
    ),
    Case(
        "UniPC base at 2 steps",
        ["plan", R],
        ["base, field 'steps': got 2", "at least 3 with sampler UniPC"],
        files={R: recipe(base={"sampler": "UniPC", "steps": 2})},
    ),
    Case(
        "run --device cuda without CUDA",
        ["run", R, "--device", "cuda"],
        ["command line, field '--device': got 'cuda'", "has no CUDA device"],
        files={R: recipe()},
    ),
    Case(
        "run --dtype fp16 on the CPU",
        ["run", R, "--device", "cpu", "--dtype", "fp16"],
        ["command line, field '--dtype': got 'fp16'", "fp16 is for GPUs"],
        files={R: recipe()},
    ),
    Case(
        "every problem at once",
        ["run", R, "--images", "0"],
        [
            "4 problems",
            "field '--images'",
            "pass 1, field 'cfg_scale'",
            "pass 2, field 'checkpoint'",
            "base, field 'sampler'",
        ],
        files={R: recipe({"cfg_scale": 99}, {"checkpoint": "nope"}, base={"sampler": "x"})},
    ),
    # -- job lists (multipass jobs): every line checked before any job runs -------------------
    Case(
        "jobs: a line that is not JSON",
        ["jobs", L],
        ["l.jsonl line 2, field '(line)'", "one JSON object per line"],
        files={R: recipe(), L: jsonl({"recipe": R}, "{nope")},
    ),
    Case(
        "jobs: a misspelt key",
        ["jobs", L],
        ["l.jsonl line 1, field 'sead'", "did you mean 'seed'?"],
        files={R: recipe(), L: jsonl({"recipe": R, "sead": 4})},
    ),
    Case(
        "jobs: no recipe",
        ["jobs", L],
        ["l.jsonl line 1, field 'recipe': got 'nothing'", "a recipe file's path"],
        files={L: jsonl({"prompt": "a fox"})},
    ),
    Case(
        "jobs: a recipe file that is not there",
        ["jobs", L],
        ["l.jsonl line 1, recipe file", "gone.json", "a readable file"],
        files={L: jsonl({"recipe": "gone.json"})},
    ),
    Case(
        "jobs: a bad field in the recipe names the line and the pass",
        ["jobs", L],
        ["l.jsonl line 2, recipe file 'r.json', pass 1, field 'cfg_scale': got 99"],
        files={R: recipe({"cfg_scale": 99}), L: jsonl({"recipe": {"passes": []}}, {"recipe": R})},
    ),
    Case(
        "jobs: a checkpoint the runner does not have",
        ["jobs", L],
        ["l.jsonl line 1, job 2 of 2, base, field 'checkpoint': got 'nope'", "one of tiny-photo"],
        files={R: recipe(), L: jsonl({"recipe": R, "checkpoints": ["tiny-toon", "nope"]})},
    ),
    Case(
        "jobs: a seed range backwards",
        ["jobs", L],
        ["l.jsonl line 1, field 'seeds': got '9-1'", "a range 'FIRST-LAST'"],
        files={R: recipe(), L: jsonl({"recipe": R, "seeds": "9-1"})},
    ),
    Case(
        "jobs: seeds that would make one image twice",
        ["jobs", L],
        ["l.jsonl line 1, field 'seeds': got '1 and 2'", "seeds at least 'images' (2) apart"],
        files={R: recipe(), L: jsonl({"recipe": R, "seeds": "1-3", "images": 2})},
    ),
    Case(
        "jobs: a product too large",
        ["jobs", L],
        ["l.jsonl line 1, field '(product)': got '20000 jobs'", "at most 10000 jobs"],
        files={R: recipe(), L: jsonl({"recipe": R, "prompts": ["a", "b"], "seeds": "1-10000"})},
    ),
    Case(
        "jobs: both prompt and prompts",
        ["jobs", L],
        ["l.jsonl line 1, field 'prompts'", "either 'prompt' or 'prompts', not both"],
        files={R: recipe(), L: jsonl({"recipe": R, "prompt": "a", "prompts": ["b"]})},
    ),
    Case(
        "jobs: a size off the grid and images with init",
        ["jobs", L],
        ["l.jsonl line 1, field 'size': got '100x64'", "l.jsonl line 2, field 'images'"],
        files={
            R: recipe(),
            "in.png": photo_png(64, 64),
            L: jsonl({"recipe": R, "size": "100x64"}, {"recipe": R, "init": "in.png", "images": 2}),
        },
    ),
    Case(
        "jobs: an empty list",
        ["jobs", L],
        ["field '(file)': got 'no jobs'", "at least one job line"],
        files={L: b"# nothing yet\n\n"},
    ),
    Case(
        "jobs: a list file that is not there",
        ["jobs", "none.jsonl"],
        ["job list 'none.jsonl', field '(file)'", "a readable file"],
    ),
    Case(
        "jobs: --workers 0",
        ["jobs", L, "--engine", "ray", "--workers", "0"],
        ["command line, field '--workers': got 0", "a whole number from 1 to 256"],
        files={R: recipe(), L: jsonl({"recipe": R})},
    ),
    Case(
        "jobs: --ray-address with the embedded engine",
        ["jobs", L, "--ray-address", "auto"],
        ["command line, field '--ray-address': got 'auto'", "only with --engine ray"],
        files={R: recipe(), L: jsonl({"recipe": R})},
    ),
    Case(
        "jobs: --ray-address that is not an address",
        ["jobs", L, "--engine", "ray", "--ray-address", "head/node"],
        [
            "command line, field '--ray-address': got 'head/node'",
            "allowed: a running Ray cluster's address: HOST:PORT of its head",
        ],
        files={R: recipe(), L: jsonl({"recipe": R})},
    ),
    Case(
        "jobs: --ray-address where no cluster answers",
        ["jobs", L, "--engine", "ray", "--ray-address", "127.0.0.1:9"],
        [
            "command line, field '--ray-address': got '127.0.0.1:9'",
            "(nothing answered at 127.0.0.1:9: Connection refused)",
        ],
        files={R: recipe(), L: jsonl({"recipe": R})},
    ),
    Case(
        "jobs: --animation with WebUI hosts",
        ["jobs", L, "--webui-url", "http://127.0.0.1:9", "--animation", "webp"],
        [
            "command line, field '--animation': got 'webp'; allowed: not with --webui-url",
        ],
        files={R: recipe(), L: jsonl({"recipe": R})},
    ),
    Case(
        "jobs: --loop without --animation",
        ["jobs", L, "--loop", "2"],
        ["command line, field '--loop': got 2; allowed: only with --animation webp or gif"],
        files={R: recipe(), L: jsonl({"recipe": R})},
    ),
    Case(
        "jobs: an engine that is not one",
        ["jobs", L, "--engine", "dask"],
        ["command line, field '--engine': got 'dask'", "one of 'embedded', 'ray'"],
        files={R: recipe(), L: jsonl({"recipe": R})},
    ),
    Case(
        "jobs: a WebUI address that is not one, and --engine with it",
        ["jobs", L, "--webui-url", "ftp://box", "--webui-url", "http://h:99999", "--engine", "ray"],
        [
            "field '--webui-url': got 'ftp://box'",
            "field '--webui-url': got 'http://h:99999'",
            "field '--engine': got 'ray'; allowed: --engine or --webui-url, not both",
        ],
        files={R: recipe(), L: jsonl({"recipe": R})},
    ),
    Case(
        "jobs: --images-per-request 0, and without a WebUI host",
        ["jobs", L, "--images-per-request", "0"],
        [
            "command line, field '--images-per-request': got 0",
            "a whole number from 1 to 100",
            "field '--images-per-request': got 0; allowed: only with --webui-url",
        ],
        files={R: recipe(), L: jsonl({"recipe": R})},
    ),
    # -- chains: convergence, where a job starts and stops, animations --------------------------
    Case(
        "converge_below above 255",
        ["run", R],
        ["pass 1, field 'converge_below': got 300; allowed: a finite number from 0 to 255"],
        files={R: recipe({"repeats": 3, "converge_below": 300})},
    ),
    Case(
        "converge_below without repeats",
        ["plan", R],
        ["pass 1, field 'converge_below': got 2", "needs repeats of 2 or more"],
        files={R: recipe({"converge_below": 2})},
    ),
    Case(
        "converge_below as text",
        ["run", R],
        ["pass 1, field 'converge_below': got 'low'; allowed: a finite number"],
        files={R: recipe({"repeats": 3, "converge_below": "low"})},
    ),
    Case(
        "from_pass beyond the recipe",
        ["run", R],
        ["recipe, field 'from_pass': got 3; allowed: a pass of this recipe: 1 to 1"],
        files={R: recipe(PASS, from_pass=3)},
    ),
    Case(
        "stop_after before from_pass",
        ["run", R],
        ["recipe, field 'stop_after': got 1; allowed: a pass from 2 (the start) to 2"],
        files={R: recipe(PASS, PASS, from_pass=2, stop_after=1)},
    ),
    Case(
        "from_pass at disabled passes only",
        ["plan", R],
        ["recipe, field 'from_pass': got 2; allowed: an enabled pass from pass 2 to pass 2"],
        files={R: recipe(PASS, {"enabled": False}, from_pass=2)},
    ),
    Case(
        "stop_after 17",
        ["plan", R],
        ["recipe, field 'stop_after': got 17; allowed: a whole number from 1 to 16, or 0 for"],
        files={R: recipe(PASS, stop_after=17)},
    ),
    Case(
        "--from-pass 0",
        ["run", R, "--from-pass", "0"],
        ["command line, field '--from-pass': got 0; allowed: a whole number from 1 to 16"],
        files={R: recipe()},
    ),
    Case(
        "--from-pass beyond the recipe",
        ["run", R, "--from-pass", "4", "--init", "in.png"],
        ["command line, field '--from-pass': got 4; allowed: a pass of this recipe: 1 to 1"],
        files={R: recipe(), "in.png": photo_png(64, 64)},
    ),
    Case(
        "--stop-after before --from-pass",
        ["plan", R, "--from-pass", "2", "--stop-after", "1"],
        ["command line, field '--stop-after': got 1; allowed: a pass from 2 (the start) to 2"],
        files={R: recipe(PASS, PASS)},
    ),
    Case(
        "a bad checkpoint given before --from-pass",
        ["run", R, "--from-pass", "2"],
        ["pass 1, field 'checkpoint': got 'nope'; allowed: one of tiny-photo, tiny-toon"],
        files={R: recipe({"checkpoint": "nope", **PASS}, PASS)},
    ),
    Case(
        "--stop-after text",
        ["plan", R, "--stop-after", "last"],
        ["command line, field '--stop-after': got 'last'; allowed: a whole number"],
        files={R: recipe()},
    ),
    Case(
        "--animation mp4",
        ["run", R, "--animation", "mp4"],
        ["command line, field '--animation': got 'mp4'; allowed: one of 'none', 'webp', 'gif'"],
        files={R: recipe()},
    ),
    Case(
        "--frame-ms 5",
        ["run", R, "--animation", "gif", "--frame-ms", "5"],
        ["command line, field '--frame-ms': got 5; allowed: a whole number from 20 to 10000"],
        files={R: recipe()},
    ),
    Case(
        "--loop -1",
        ["run", R, "--animation", "webp", "--loop", "-1"],
        ["command line, field '--loop': got -1; allowed: a whole number from 0 to 1000"],
        files={R: recipe()},
    ),
    Case(
        "--frame-ms without --animation",
        ["run", R, "--frame-ms", "200"],
        ["command line, field '--frame-ms': got 200; allowed: only with --animation webp or gif"],
        files={R: recipe()},
    ),
]


def write_files(folder: Path, files: dict[str, Any], tiny_models: Path) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content == "TRUNCATED":
            data = (tiny_models / "tiny-toon.safetensors").read_bytes()
            path.write_bytes(data[: len(data) // 2])
        elif callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(json.dumps(content), encoding="utf-8")


def multipass(args: list[str], cwd: Path, home: Path, **kw: Any) -> subprocess.CompletedProcess:
    env = {**os.environ, "MULTIPASS_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lib_multipass", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,  # generous: a loaded 2-core machine is slow, never wrong
        **kw,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_named_and_nothing_runs(case, tiny_models, tmp_path):
    write_files(tmp_path, case.files, tiny_models)
    done = multipass(case.args, tmp_path, tiny_models.parent)
    output = done.stdout + done.stderr
    assert done.returncode == case.code, output
    assert "Traceback" not in output, output
    assert "allowed" in done.stderr, output
    for text in case.says:
        assert text in done.stderr, f"{text!r} not in:\n{done.stderr}"
    assert not list(tmp_path.rglob("*-final.png")), "nothing may run"


def test_there_are_at_least_sixty_bad_inputs():
    assert len(CASES) >= 60


def test_models_marks_unusable_files(tiny_models, tmp_path):
    write_files(
        tmp_path,
        {
            "m/cut.safetensors": "TRUNCATED",
            "m/odd.safetensors": header_only(["foo"]),
            "l/knight.safetensors": header_only(LORA_KEYS),
            "l/loha.safetensors": header_only(["lora_unet_a.hada_w1_a"]),
            "e/shiny.safetensors": header_only(["emb_params"]),
        },
        tiny_models,
    )
    args = ["models", "--models", "m", "--loras", "l", "--embeddings", "e"]
    done = multipass(args, tmp_path, tiny_models.parent)
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "unusable: truncated" in lines["cut"]
    assert "unusable: holds no tensors of a model family" in lines["odd"]
    assert " sd1 " in lines["tiny-toon"]
    assert (
        " sd1 lora " in lines["knight"] and "unusable: loha.safetensors: a LyCORIS" in lines["loha"]
    )
    assert "embedding, 1 vector" in lines["shiny"]


# -- odd but valid --------------------------------------------------------------------------------

VALID = [
    ("utf-8 with a BOM", codecs.BOM_UTF8 + json.dumps(recipe()).encode()),
    ("utf-16 with a BOM (PowerShell)", json.dumps(recipe()).encode("utf-16")),
    ("steps given as 20.0", json.dumps(recipe({"steps": 20.0}, base={"steps": 20.0})).encode()),
    (
        "strength 0 and 1",
        json.dumps(
            recipe({"denoising_strength": 0, "upscale_by": 2}, {"denoising_strength": 1})
        ).encode(),
    ),
    (
        "exactly the run limit",
        json.dumps(recipe({"schedule": "curve", "curve_passes": 64, "repeats": 4})).encode(),
    ),
    (
        "a box partly outside the image",
        json.dumps(
            recipe({"region": "crop", "mask_source": "boxes", "boxes": [[40, 40, 200, 200]]})
        ).encode(),
    ),
]


@pytest.mark.parametrize(("name", "raw"), VALID, ids=[n for n, _ in VALID])
def test_odd_but_valid_input_is_accepted(name, raw, tiny_models, tmp_path):
    (tmp_path / R).write_bytes(raw)
    done = multipass(["plan", R, "--steps", "20.0"], tmp_path, tiny_models.parent)
    assert done.returncode == 0, done.stderr
    if name == "exactly the run limit":
        assert "256 runs" in done.stdout


def test_strength_0_and_1_run(tiny_models, tmp_path):
    (tmp_path / R).write_bytes(dict(VALID)["strength 0 and 1"])
    done = multipass(["run", R, "--out", "o"], tmp_path, tiny_models.parent)
    assert done.returncode == 0, done.stderr
    assert "finished 2 runs over 1 image" in done.stdout


def test_a_reused_output_folder_holds_only_the_new_run(tiny_models, tmp_path):
    (tmp_path / R).write_text(json.dumps(recipe()))
    assert (
        multipass(
            ["run", R, "--out", "o", "--images", "2", "--seed", "5"], tmp_path, tiny_models.parent
        ).returncode
        == 0
    )
    (tmp_path / "o" / "mine.txt").write_text("the user's own file")
    assert (
        multipass(["run", R, "--out", "o", "--seed", "9"], tmp_path, tiny_models.parent).returncode
        == 0
    )
    finals = sorted(p.name for p in (tmp_path / "o").glob("*-final.png"))
    assert finals == ["01-9-final.png"]
    assert (tmp_path / "o" / "mine.txt").exists()
