"""Images a headless job starts from (`multipass run --init`), instead of generating its base:
a file, or a folder of them, all of one size, as the WebUI's img2img batch takes them.

Sizes follow the base size's rules (sides multiples of 8 from 64 to 4096), so that every pass
plans and pastes exactly as it would on a generated base; nothing is resized behind the user's
back. Problems come as `InputError(value, allowed)`, which the command line names under its flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from .fields import BASE_FIELDS, MAX_SIDE, field_map
from .imaging import MASK_ALL_BLACK

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
_BASE = field_map(BASE_FIELDS)
MAX_INPUTS = int(_BASE["images"].maximum)  # as --images
# as --size: the base width's bounds (height has the same)
MIN_SIDE, MAX_BASE_SIDE = int(_BASE["width"].minimum), int(_BASE["width"].maximum)
SIZE_RULE = f"sides that are multiples of 8 from {MIN_SIDE} to {MAX_BASE_SIDE} px"


class InputError(ValueError):
    """An input that cannot start a job: the value shown and what is allowed."""

    def __init__(self, value: str, allowed: str) -> None:
        super().__init__(f"got {value!r}; allowed: {allowed}")
        self.value, self.allowed = value, allowed


@dataclass(frozen=True)
class Input:
    """One given image: its file name (for outputs and infotext) and the image, in RGB."""

    name: str
    image: Image.Image
    seed: int | None = None  # the Seed its own infotext names (a Multipass or WebUI image)
    infotext: str | None = None  # its own WebUI infotext (PNG "parameters"), if it has one


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(str(path), "an image file or a folder of them (this is not there)")
    found = sorted(
        (p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES),
        key=lambda p: p.name,
    )
    if not found:
        kinds = ", ".join(SUFFIXES)
        raise InputError(str(path), f"a folder holding images ({kinds}); this one holds none")
    if len(found) > MAX_INPUTS:
        raise InputError(
            str(path), f"at most {MAX_INPUTS} images per job (this folder holds {len(found)})"
        )
    return found


def _infotext_of(path: Path) -> str | None:
    """An image's WebUI infotext (its PNG "parameters" text), if it has one."""
    try:
        with Image.open(path) as img:
            text = img.info.get("parameters")
    except (OSError, Image.DecompressionBombError):
        return None
    return text if isinstance(text, str) and text.strip() else None


def _seed_in(text: str | None) -> int | None:
    """The seed an infotext names ('Seed: N' on its parameters line): the seed a chain
    continued from its image goes on with."""
    from .infotext import parse_params_line

    if text is None:
        return None
    seed = parse_params_line(text.strip().split("\n")[-1]).get("Seed", "")
    return int(seed) if seed.isdigit() and int(seed) < 2**32 else None


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            w, h = img.size
            inside = MIN_SIDE <= w <= MAX_BASE_SIDE and MIN_SIDE <= h <= MAX_BASE_SIDE
            if not inside or w % 8 or h % 8:
                raise InputError(
                    str(path), f"an image with {SIZE_RULE}, crop or resize it first ({w}x{h})"
                )
            img.load()
            # upright as the photo is seen (phones store rotation in EXIF), as the WebUI reads it
            return (ImageOps.exif_transpose(img) or img).convert("RGB")

    except (OSError, Image.DecompressionBombError) as e:
        raise InputError(str(path), f"an image file ({' '.join(str(e).split())[:160]})") from e


def read_inputs(path: Path) -> list[Input]:
    """The images at `path` (a file, or a folder's images by name), all of one size."""
    inputs = []
    for p in _files(path):
        text = _infotext_of(p)
        inputs.append(Input(p.name, _open(p), _seed_in(text), text))
    first = inputs[0]
    for other in inputs[1:]:
        if other.image.size != first.image.size:
            w, h = other.image.size
            fw, fh = first.image.size
            raise InputError(
                str(path / other.name),
                f"images of one size per job (the first, {first.name}, is {fw}x{fh}; "
                f"this one is {w}x{h})",
            )
    return inputs


def read_mask(path: Path) -> Image.Image:
    """A job's inpaint mask (white is inpainted) as L; a mask of another size than the images
    is scaled to them when used, as the WebUI scales a mask to its image."""
    try:
        with Image.open(path) as img:
            if max(img.size) > MAX_SIDE:  # as a recipe's mask image
                raise InputError(str(path), f"a mask of at most {MAX_SIDE} px a side")
            img.load()
            mask = img.convert("L")
    except FileNotFoundError as e:
        raise InputError(str(path), "a mask image file (this is not there)") from e
    except (OSError, Image.DecompressionBombError) as e:
        raise InputError(str(path), f"a mask image file ({' '.join(str(e).split())[:160]})") from e
    if mask.getbbox() is None:
        raise InputError(str(path), MASK_ALL_BLACK)
    return mask
