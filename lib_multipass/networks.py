"""LoRA and textual-inversion embedding files: folders, names, and what their headers say.

Pure (no torch): a `.safetensors` header names every tensor with its shape, which is enough to
tell a LoRA's kind (LoRA, or a LyCORIS type the runner does not apply), the model family it was
trained for, and an embedding's width and vector count. Pickle-based files (`.pt`, `.ckpt`,
`.bin`) are listed but load only with the user's opt-in (`--allow-ckpt`): unpickling runs code.

Names are the WebUI's: a file's name without its extension, found anywhere under the folder
(A1111's Lora extension and textual-inversion loader walk their folders); a LoRA also answers to
its training name (`ss_output_name` in its metadata) where no other file claims it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import read_safetensors_header

LORA_EXTENSIONS = (".safetensors", ".pt", ".ckpt")
EMBEDDING_EXTENSIONS = (".safetensors", ".pt", ".bin")
PICKLES = (".pt", ".ckpt", ".bin")
MAX_LISTED = 12

# LyCORIS and other network types, by a key part that marks them (A1111's network_*.py)
_OTHER_TYPES = (
    ("hada_w1_a", "LyCORIS LoHa"),
    ("lokr_w1", "LyCORIS LoKr"),
    ("oft_blocks", "OFT"),
    ("oft_diag", "OFT"),
    ("w_norm", "LyCORIS norm"),
    ("a1.weight", "GLoRA"),
    ("on_input", "IA3"),
)
_LORA_PARTS = (
    "lora_up.weight",
    "lora_down.weight",
    "lora_mid.weight",
    "lora_A.weight",
    "lora_B.weight",
    "alpha",
    "scale",
    "dora_scale",
)
_CONTEXT_WIDTH = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


@dataclass(frozen=True)
class NetworkFile:
    """A LoRA or embedding file, named as the WebUI names it."""

    name: str
    path: Path
    alias: str = ""

    @property
    def pickled(self) -> bool:
        """True for pickle-based files, which run code when loaded."""
        return self.path.suffix.lower() in PICKLES


def list_files(folders: Iterable[Path], extensions: Sequence[str]) -> dict[str, NetworkFile]:
    """Files under `folders` (recursively, in name order) by name; the first of a name wins."""
    out: dict[str, NetworkFile] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        found = []
        for root, dirs, files in os.walk(folder, followlinks=True):
            dirs.sort()
            for f in files:
                path = Path(root) / f
                if path.suffix.lower() in extensions and not f.startswith("."):
                    found.append(path)
        for path in sorted(found, key=lambda p: (str(p.relative_to(folder)).lower(), str(p))):
            out.setdefault(path.stem, NetworkFile(path.stem, path))
    return out


def _stamps(folders: Sequence[Path]) -> tuple:
    out = []
    for folder in folders:
        try:
            out.append(folder.stat().st_mtime_ns)
        except OSError:
            out.append(None)
    return tuple(out)


class _Listing:
    """Files of some folders by name, listed again when a folder changes (a file added while
    the runner is up is found, as the WebUI finds it)."""

    def __init__(self, folders: Sequence[Path], extensions: Sequence[str]) -> None:
        self.folders = [Path(f) for f in folders]
        self.extensions = extensions
        self._stamp: tuple | None = None
        self._files: dict[str, NetworkFile] = {}

    @property
    def files(self) -> dict[str, NetworkFile]:
        stamp = _stamps(self.folders)
        if stamp != self._stamp:
            self._files = list_files(self.folders, self.extensions)
            self._stamp = stamp
            self.changed()
        return self._files

    def changed(self) -> None:
        """Called when the listing changes."""


def listed(names: Iterable[str], limit: int = MAX_LISTED) -> str:
    """Names for a message: all of them, or the first ones and how many more."""
    names = list(names)
    if not names:
        return "(none there)"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _header(path: Path) -> dict:
    return read_safetensors_header(path)


def _tensors(header: dict) -> dict[str, list[int]]:
    return {
        k: list(v.get("shape") or [])
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict)
    }


class LoraLibrary(_Listing):
    """The LoRA files of a run: `--loras` folders and a WebUI's models/Lora and models/LyCORIS."""

    def __init__(self, folders: Sequence[Path], *, allow_pickles: bool = False) -> None:
        super().__init__(folders, LORA_EXTENSIONS)
        self.allow_pickles = allow_pickles
        self._aliases: dict[str, NetworkFile] | None = None
        self._headers: dict[Path, tuple[tuple[int, int], dict | str]] = {}

    def changed(self) -> None:
        self._aliases = None

    def where(self) -> str:
        """The folders, for messages."""
        return ", ".join(str(f) for f in self.folders) or "no LoRA folder (--loras or --webui)"

    def allowed(self) -> str:
        """What a LoRA name may be, for a Problem."""
        if not self.folders:
            return "a LoRA from a folder given with --loras or --webui (none was given)"
        return f"a LoRA from {self.where()}: {listed(self.files)}"

    def find(self, name: str) -> NetworkFile | None:
        """A LoRA by its file name, else by its training name if no other file claims it."""
        if name in self.files:
            return self.files[name]
        return self._alias_map().get(name)

    def _alias_map(self) -> dict[str, NetworkFile]:
        if self._aliases is None:
            seen: dict[str, list[NetworkFile]] = {}
            for f in self.files.values():
                header = self.header(f)
                meta = header.get("__metadata__", {}) if isinstance(header, dict) else {}
                alias = meta.get("ss_output_name") if isinstance(meta, dict) else None
                if isinstance(alias, str) and alias and alias not in self.files:
                    seen.setdefault(alias, []).append(f)
            self._aliases = {a: fs[0] for a, fs in seen.items() if len(fs) == 1}
        return self._aliases

    def header(self, f: NetworkFile) -> dict | str:
        """A safetensors file's header, or why it cannot be read ({} for a pickle)."""
        if f.pickled:
            return {}
        try:
            st = f.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError as e:
            return f"cannot be read ({e.strerror or e})"
        cached = self._headers.get(f.path)
        if cached is None or cached[0] != stamp:
            try:
                value: dict | str = _header(f.path)
            except (ValueError, OSError) as e:
                value = str(e).removeprefix(f"{f.path}: ")
            self._headers[f.path] = (stamp, value)
            cached = self._headers[f.path]
        return cached[1]

    def family(self, f: NetworkFile) -> str | None:
        """The model family a LoRA was made for ('sd1', 'sd2', 'sdxl'), None if unknown."""
        header = self.header(f)
        return lora_family(header) if isinstance(header, dict) else None

    def problem(self, f: NetworkFile, family: str | None = None) -> str | None:
        """Why `f` cannot be applied to a checkpoint of `family` (None if it can)."""
        if f.pickled and not self.allow_pickles:
            return (
                f"{f.path.name} is a pickle-based file, which can run code when loaded "
                "(allow it with --allow-ckpt, or use its .safetensors)"
            )
        header = self.header(f)
        if isinstance(header, str):
            return f"{f.path.name}: {header}"
        if f.pickled:
            return None  # read when applied (torch's weights-only loader)
        kind = lora_kind(header)
        if kind is not None:
            return f"{f.path.name}: {kind}"
        made_for = lora_family(header)
        if family and made_for and family != made_for:
            names = {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}
            return (
                f"{f.path.name} is an {names.get(made_for, made_for)} LoRA; this pass's "
                f"checkpoint is {names.get(family, family)}"
            )
        return None


def lora_kind(header: dict) -> str | None:
    """Why a LoRA file's tensors are not LoRA layers the runner applies (None if they are)."""
    tensors = _tensors(header)
    if not tensors:
        return "holds no tensors"
    for key in tensors:
        for mark, what in _OTHER_TYPES:
            if mark in key:
                return (
                    f"a {what} network (its key {key!r}); the runner applies LoRA layers "
                    "(lora_up/lora_down) only"
                )
    layers = [k for k in tensors if not k.startswith("bundle_emb.")]
    if layers and not any(k.partition(".")[2] in _LORA_PARTS for k in layers):
        return f"no LoRA layers (lora_up/lora_down keys), e.g. {layers[0]!r}"
    return None


def lora_family(header: dict) -> str | None:
    """A LoRA's model family from its metadata and key names ('sd1', 'sd2', 'sdxl'), or None."""
    meta = header.get("__metadata__") or {}
    if isinstance(meta, dict):
        if str(meta.get("ss_base_model_version", "")).startswith("sdxl"):
            return "sdxl"
        if str(meta.get("ss_v2", "")) == "True":
            return "sd2"
    tensors = _tensors(header)
    for key, shape in tensors.items():
        wide = len(shape) >= 2 and shape[1] in _CONTEXT_WIDTH
        if key.endswith("attn2_to_k.lora_down.weight") and wide:
            return _CONTEXT_WIDTH[shape[1]]
    if any(k.startswith(("lora_te2_", "lora_te1_")) for k in tensors):
        return "sdxl"
    if any(k.startswith(("lora_te_", "lora_unet_down_blocks_")) for k in tensors):
        return "sd1"
    return None


@dataclass(frozen=True)
class EmbeddingShape:
    """An embedding's vectors: how many, and their width per text encoder ('clip_l', 'clip_g'
    for SDXL files; '' for one-encoder files)."""

    vectors: int
    widths: tuple[tuple[str, int], ...]

    @property
    def width(self) -> int:
        """The width the WebUI compares with the model's (SDXL: CLIP-L's plus bigG's)."""
        return sum(w for _, w in self.widths)


def embedding_shape(header: dict) -> EmbeddingShape | str:
    """An embedding file's shape from its header, or why it is not an embedding the runner
    reads (as the WebUI's create_embedding_from_data tells them apart)."""
    tensors = _tensors(header)
    if "clip_l" in tensors and "clip_g" in tensors:
        shape_l, shape_g = tensors["clip_l"], tensors["clip_g"]
        if len(shape_l) != 2 or len(shape_g) != 2 or shape_l[0] != shape_g[0]:
            return "an SDXL embedding whose clip_l and clip_g do not fit together"
        return EmbeddingShape(shape_g[0], (("clip_l", shape_l[1]), ("clip_g", shape_g[1])))
    params = [k for k in tensors if k.startswith("string_to_param.")]
    keys = params or list(tensors)
    if len(keys) != 1:
        return f"holds {len(keys)} tensors; an embedding holds one (or SDXL's clip_l and clip_g)"
    shape = tensors[keys[0]]
    if len(shape) == 1:
        return EmbeddingShape(1, (("", shape[0]),))
    if len(shape) != 2:
        return f"its tensor has shape {shape}; an embedding is vectors x width"
    return EmbeddingShape(shape[0], (("", shape[1]),))


class EmbeddingLibrary(_Listing):
    """Textual-inversion embeddings of a run: `--embeddings` folders and a WebUI's embeddings/."""

    def __init__(self, folders: Sequence[Path], *, allow_pickles: bool = False) -> None:
        super().__init__(folders, EMBEDDING_EXTENSIONS)
        self.allow_pickles = allow_pickles
        self._shapes: dict[Path, tuple[tuple[int, int], EmbeddingShape | str]] = {}

    def where(self) -> str:
        return ", ".join(str(f) for f in self.folders) or "no embeddings folder"

    def shape(self, f: NetworkFile) -> EmbeddingShape | str | None:
        """A safetensors embedding's shape, why it is not one, or None for a pickle (its shape
        is known once loaded)."""
        if f.pickled:
            return None
        try:
            st = f.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError as e:
            return f"cannot be read ({e.strerror or e})"
        cached = self._shapes.get(f.path)
        if cached is None or cached[0] != stamp:
            try:
                value: EmbeddingShape | str = embedding_shape(_header(f.path))
            except (ValueError, OSError) as e:
                value = str(e).removeprefix(f"{f.path}: ")
            self._shapes[f.path] = (stamp, value)
            cached = self._shapes[f.path]
        return cached[1]

    def problem(self, f: NetworkFile) -> str | None:
        """Why embedding `f` cannot be used when a prompt names it (None if it can)."""
        if f.pickled and not self.allow_pickles:
            return (
                f"{f.path.name} is a pickle-based file, which can run code when loaded "
                "(allow it with --allow-ckpt, or use its .safetensors)"
            )
        shape = self.shape(f)
        return f"{f.path.name}: {shape}" if isinstance(shape, str) else None
