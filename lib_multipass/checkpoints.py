"""Checkpoint files: list a folder, find one by name, tell its family from the header alone.

Reading a `.safetensors` header needs no torch: it is 8 bytes of length and a JSON table of
tensor names. Pickle-based `.ckpt` files are listed but flagged: loading them runs code.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

MAX_HEADER = 100 * 1024 * 1024
EXTENSIONS = (".safetensors", ".ckpt")

# a key prefix that only one family's text encoder has, in the WebUI's single-file layout
_FAMILY_KEYS = (
    ("conditioner.embedders.", "sdxl"),
    ("cond_stage_model.model.", "sd2"),
    ("cond_stage_model.transformer.", "sd1"),
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


def read_safetensors_header(path: str | Path) -> dict:
    """The JSON header of a `.safetensors` file (tensor names, dtypes, shapes, metadata)."""
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_HEADER:
            raise ValueError(f"{path}: safetensors header of {length} bytes is over {MAX_HEADER}")
        data = fh.read(length)
    try:
        header = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a safetensors file ({e})") from e
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file (header is not a JSON object)")
    return header


def family_from_keys(keys: list[str] | dict) -> str | None:
    """sd1, sd2 or sdxl from a single-file checkpoint's tensor names; None if it is none of them."""
    for prefix, family in _FAMILY_KEYS:
        if any(k.startswith(prefix) for k in keys):
            return family
    return None


def sniff_family(path: str | Path) -> str | None:
    """The family of a `.safetensors` checkpoint, from its header only (no weights read)."""
    return family_from_keys(list(read_safetensors_header(path)))


def family_or_default(path: str | Path, default: str = "sd1") -> str:
    """A checkpoint file's family for automatic working sizes, `default` when it can't be told.

    Only `.safetensors` headers are read (a pickle is never opened for this); an unreadable
    file gets the default here and is reported where it is loaded.
    """
    if Path(path).suffix.lower() != ".safetensors":
        return default
    try:
        return sniff_family(path) or default
    except (OSError, ValueError):
        return default


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
