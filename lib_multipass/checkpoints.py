"""Checkpoint files: list a folder, find one by name, tell its family from the header alone.

Reading a `.safetensors` header needs no torch: it is 8 bytes of length and a JSON table of
tensor names. Pickle-based `.ckpt` files are listed but flagged: loading them runs code.
"""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

MAX_HEADER = 100 * 1024 * 1024
EXTENSIONS = (".safetensors", ".ckpt")

# what marks each family in a single-file checkpoint, checked in this order: diffusion-model
# keys (the same with or without the "model.diffusion_model." prefix, as Forge's loaders find
# them), then text-encoder prefixes of the SD family
_FAMILY_MARKS = (
    ("distilled_guidance_layer.", "chroma"),
    ("double_blocks.", "flux"),
    ("joint_blocks.", "sd3"),
    ("txt_norm.weight", "qwen"),
    ("head.modulation", "wan"),
)
_FAMILY_KEYS = (
    ("conditioner.embedders.", "sdxl"),
    ("cond_stage_model.model.", "sd2"),
    ("cond_stage_model.transformer.", "sd1"),
)
# a UNet-only file: the cross-attention width tells SD1 (768), SD2 (1024), SDXL (2048, 1280)
_CONTEXT_KEY = "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
_CONTEXT_FAMILY = {768: "sd1", 1024: "sd2", 2048: "sdxl", 1280: "sdxl"}
FAMILIES = (
    "sd1",
    "sd2",
    "sdxl",
    "sd3",
    "flux",
    "chroma",
    "qwen",
    "wan",
    "flux2",
    "zimage",
    "lumina2",
)


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint on disk, named as the WebUI names it: its path in the folder, no suffix."""

    name: str
    path: Path

    @property
    def pickled(self) -> bool:
        """True for `.ckpt` files, which run code when loaded."""
        return self.path.suffix == ".ckpt"


def _header(path: str | Path) -> tuple[int, dict]:
    """The length and JSON header of a `.safetensors` file; ValueError saying what is wrong."""
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError("not a safetensors file (shorter than 8 bytes)")
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_HEADER:
            raise ValueError(
                f"not a safetensors file (its first 8 bytes claim a header of {length} bytes)"
            )
        data = fh.read(length)
    if len(data) < length:
        raise ValueError(
            f"truncated, or not a safetensors file: its header should take {length} bytes "
            f"and the file ends after {len(data)}"
        )
    try:
        header = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"not a safetensors file (its header is not JSON: {e})") from None
    if not isinstance(header, dict):
        raise ValueError("not a safetensors file (its header is not a JSON object)")
    return length, header


def read_safetensors_header(path: str | Path) -> dict:
    """The JSON header of a `.safetensors` file (tensor names, dtypes, shapes, metadata)."""
    try:
        return _header(path)[1]
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def inspect_file(path: str | Path) -> tuple[str | None, str | None]:
    """(family, problem): a checkpoint file's family (None if unknown), or why it is not a
    usable checkpoint (truncated, not safetensors, not a PyTorch pickle). Reads the header
    only; a pickle is never unpickled here."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.suffix.lower() == ".ckpt":
            return None, _pickle_problem(path)
        length, header = _header(path)
    except ValueError as e:
        return None, str(e)
    except OSError as e:
        return None, f"cannot be read ({e.strerror or e})"
    ends = [
        entry["data_offsets"][1]
        for key, entry in header.items()
        if key != "__metadata__"
        and isinstance(entry, dict)
        and isinstance(entry.get("data_offsets"), list)
        and len(entry["data_offsets"]) == 2
        and isinstance(entry["data_offsets"][1], int)
    ]
    need = 8 + length + max(ends, default=0)
    if need > size:
        return None, (
            f"truncated: its tensors need {need:,} bytes and the file has {size:,} "
            "(an interrupted download or copy?)"
        )
    if not ends:
        return None, "holds no tensors"
    return family_from_keys(header), None


def checkpoint_problem(path: str | Path) -> str | None:
    """Why a `.safetensors` file is not a model checkpoint a WebUI can run, if it is not:
    truncated or fake (inspect_file), or holding no diffusion model at all (a VAE or a text
    encoder put among the checkpoints: A1111 would load nothing of it and, with strict=False,
    keep running the previous weights under the new name)."""
    family, problem = inspect_file(path)
    if problem is not None or family is not None:
        return problem
    keys = read_safetensors_header(path)
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        return "holds no model.diffusion_model tensors: not a checkpoint (a VAE or a text encoder?)"
    return None


def _pickle_problem(path: Path) -> str | None:
    """Why a `.ckpt` is not a PyTorch checkpoint, from its first bytes (never unpickled)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as e:
            return f"a broken zip archive, not a usable PyTorch checkpoint ({e})"
        if not any(n.endswith("data.pkl") for n in names):
            return "a zip archive without data.pkl: not a PyTorch checkpoint"
        return None
    if head[:1] == b"\x80":
        return None  # an old-style (non-zip) torch.save pickle
    return "not a PyTorch checkpoint (neither a zip archive nor a pickle)"


def _nextdit_family(keys: list[str] | dict) -> str | None:
    """Lumina-2 and Z-Image share NextDiT's layout (cap_embedder...); the caption features'
    width tells them apart: Gemma-2 2B's 2304 (Lumina-2, Neta) or Qwen3 4B's 2560 (Z-Image)."""
    names = [k for k in keys if "cap_embedder." in k]
    if not names:
        return None
    if isinstance(keys, dict):
        for name in names:
            shape = (keys[name] or {}).get("shape") if isinstance(keys[name], dict) else None
            if name.endswith("cap_embedder.1.weight") and shape and len(shape) == 2:
                return "zimage" if shape[1] == 2560 else "lumina2"
    return "lumina2"


def family_from_keys(keys: list[str] | dict) -> str | None:
    """The family (one of FAMILIES) of a single-file checkpoint from its tensor names (and, in
    a header dict, shapes); None if it is none of them."""
    if "double_stream_modulation_img" in " ".join(k for k in keys if "modulation" in k):
        return "flux2"  # Flux.2 (Klein): shared modulation, before Flux's double_blocks mark
    nextdit = _nextdit_family(keys)
    if nextdit:
        return nextdit
    for mark, family in _FAMILY_MARKS:
        if any(mark in k for k in keys):
            return family
    for prefix, family in _FAMILY_KEYS:
        if any(k.startswith(prefix) for k in keys):
            return family
    if isinstance(keys, dict):
        for key, entry in keys.items():
            if key.endswith(_CONTEXT_KEY) and isinstance(entry, dict):
                shape = entry.get("shape") or []
                if len(shape) == 2 and shape[1] in _CONTEXT_FAMILY:
                    return _CONTEXT_FAMILY[shape[1]]
    return None


def sniff_family(path: str | Path) -> str | None:
    """The family of a `.safetensors` checkpoint, from its header only (no weights read)."""
    return family_from_keys(read_safetensors_header(path))


def family_or_default(path: str | Path, default: str = "sd1") -> str:
    """A checkpoint file's family for automatic working sizes.

    Only `.safetensors` headers are read (a pickle is never opened for this): a `.ckpt` gets
    `default` (the SD1 era's format); a `.safetensors` file of no known family, or one that
    cannot be read, gets '' (it is reported where it is loaded, and a crop pass on it needs an
    explicit working size).
    """
    if Path(path).suffix.lower() != ".safetensors":
        return default
    try:
        return sniff_family(path) or ""
    except (OSError, ValueError):
        return ""


def list_checkpoints(folder: str | Path) -> list[CheckpointFile]:
    """Checkpoint files under `folder`, sorted by name."""
    root = Path(folder)
    found = [
        CheckpointFile(path.relative_to(root).with_suffix("").as_posix(), path)
        for path in root.rglob("*")
        if path.suffix in EXTENSIONS and path.is_file()
    ]
    return sorted(found, key=lambda c: c.name.lower())


def find_checkpoint(folder: str | Path, name: str) -> CheckpointFile:
    """The checkpoint called `name` (with or without its suffix) in `folder`.

    Names are looked up in the folder's listing, never opened as paths, so a name cannot reach
    a file outside the folder.
    """
    known = list_checkpoints(folder)
    wanted = name[: -len(s)] if (s := Path(name).suffix) in EXTENSIONS else name
    for c in known:
        if c.name == wanted or c.path.name == name:
            return c
    listed = ", ".join(c.name for c in known) or "none"
    raise LookupError(f"checkpoint {name!r} is not in {folder}; available: {listed}")
