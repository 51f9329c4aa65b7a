"""The diffusers backend: WebUI-style single-file checkpoints, sampled offline on diffusers.

Checkpoints are found by name in folders (never opened by a path from a recipe), loaded with
`from_single_file` against a local config folder (nothing is fetched from a model hub), and
kept in a RAM cache bounded in bytes, so switching back and forth does not re-read disk.
Samplers and schedule types are the WebUI's names; img2img runs exactly the steps the WebUI
would (lib_multipass.schedule), and masked runs blend latents outside the mask at every step
as the WebUI's "only masked" inpainting does with a normal checkpoint.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from .. import tiny
from ..checkpoints import (
    FAMILIES,
    CheckpointFile,
    family_from_keys,
    family_or_default,
    inspect_file,
    list_checkpoints,
    read_safetensors_header,
    sniff_family,
)
from ..geometry import Size
from ..networks import EmbeddingLibrary, LoraLibrary, NetworkFile
from ..plan import Run
from ..prompts import LoraUse, ParsedPrompt, PromptError, parse_prompt
from ..protocol import SampleRequest, StepCallback
from ..recipe import Problem, where_pass
from ..schedule import img2img_steps, txt2img_steps
from . import lora as lora_merge
from . import rng, sampling, sigmas, timesteps
from .conditioning import PromptEncoder, mentioned_embeddings, schedule_steps, tokenize

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# every sampler runs as the WebUI runs it: k-diffusion's on the WebUI's sigmas
# (lib_multipass.backends.sampling, with every schedule type of the WebUI), DDIM, PLMS and UniPC
# on its timesteps (lib_multipass.backends.timesteps, where the schedule type has no effect, as
# in the WebUI)
SAMPLERS: tuple[str, ...] = (*sampling.SAMPLERS, *timesteps.SAMPLERS)
SCHEDULE_TYPES = ("", "Automatic", *sigmas.SCHEDULE_TYPES)
UPSCALERS = {
    "Lanczos": Image.Resampling.LANCZOS,
    "Bicubic": Image.Resampling.BICUBIC,
    "Bilinear": Image.Resampling.BILINEAR,
    "Nearest": Image.Resampling.NEAREST,
}
CACHE_SHARE = 0.6  # of the memory available when the runner starts: the default RAM cache
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
DEVICES = ("auto", "cpu", "cuda", "mps")


def available_memory() -> int:
    """Bytes of memory available now (Linux: MemAvailable; elsewhere free physical pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


def default_cache_bytes() -> int:
    """The RAM cache's default size: a share of the memory available now."""
    return int(available_memory() * CACHE_SHARE)


def resolve_device(name: str = "auto") -> tuple[str | None, str | None]:
    """(device, problem): 'auto' is CUDA, then Apple's MPS, then the CPU; a device this torch
    build lacks is a problem saying what is there."""
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    have = ["cpu", *(["cuda"] if cuda else []), *(["mps"] if mps else [])]
    if name == "auto":
        return ("cuda" if cuda else "mps" if mps else "cpu"), None
    kind = name.split(":", 1)[0]
    if kind not in DEVICES[1:]:
        return None, f"one of auto, {', '.join(DEVICES[1:])} (or cuda:N)"
    if kind not in have:
        build = torch.__version__
        return None, f"auto or {', '.join(have)}: this torch ({build}) has no {kind.upper()} device"
    if kind == "cuda" and ":" in name:
        index = name.split(":", 1)[1]
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            return None, f"cuda:0 to cuda:{torch.cuda.device_count() - 1}"
    return name, None


def resolve_dtype(name: str, device: str) -> tuple[str | None, str | None]:
    """(dtype name, problem): 'auto' is fp16 on a GPU, fp32 on the CPU; fp16 on the CPU is
    refused (slow, and some layers lack it)."""
    if name == "auto":
        return ("fp16" if device.split(":")[0] in ("cuda", "mps") else "fp32"), None
    if name not in DTYPES:
        return None, "one of auto, " + ", ".join(DTYPES)
    if name == "fp16" and device == "cpu":
        return None, "auto, fp32 or bf16 on the CPU (fp16 is for GPUs)"
    return name, None


# SD1.x in diffusers' terms: enough to load a user's SD1 checkpoint with no hub access
SD1_ARCHITECTURE: dict[str, Any] = {
    "family": "sd1",
    "unet": {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    },
    "vae": {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [128, 256, 512, 512],
        "latent_channels": 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "sample_size": 512,
        "scaling_factor": 0.18215,
    },
    "text_encoder": {
        "architectures": ["CLIPTextModel"],
        "model_type": "clip_text_model",
        "vocab_size": 49408,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": 77,
        "projection_dim": 768,
        "hidden_act": "quick_gelu",
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "pad_token_id": 49407,
    },
    "scheduler": tiny.SCHEDULER,
    "tokenizer": "clip",
}


RUNNER_FAMILIES = ("sd1", "sdxl")  # what the runner builds pipelines for
FAMILY_NAMES = {
    "sd1": "SD1.x",
    "sd2": "SD2.x",
    "sdxl": "SDXL",
    "sd3": "SD3",
    "flux": "Flux",
    "chroma": "Chroma",
    "qwen": "Qwen-Image",
    "wan": "Wan",
}


_CLIP_L = SD1_ARCHITECTURE["text_encoder"]
# SDXL 1.0 in diffusers' terms (its published configs; parameter counts checked by the tests)
SDXL_ARCHITECTURE: dict[str, Any] = {
    "family": "sdxl",
    "unet": {
        "sample_size": 128,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [320, 640, 1280],
        "layers_per_block": 2,
        "transformer_layers_per_block": [1, 2, 10],
        "attention_head_dim": [5, 10, 20],
        "cross_attention_dim": 2048,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816,
        "norm_num_groups": 32,
    },
    "vae": {**SD1_ARCHITECTURE["vae"], "sample_size": 1024, "scaling_factor": 0.13025},
    "text_encoder": {**_CLIP_L, "projection_dim": 768},
    "text_encoder_2": {
        "architectures": ["CLIPTextModelWithProjection"],
        "model_type": "clip_text_model",
        "vocab_size": 49408,
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_hidden_layers": 32,
        "num_attention_heads": 20,
        "max_position_embeddings": 77,
        "projection_dim": 1280,
        "hidden_act": "gelu",
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
    },
    "scheduler": tiny.XL_SCHEDULER,
    "tokenizer": "clip",
}
ARCHITECTURES = {"sd1": SD1_ARCHITECTURE, "sdxl": SDXL_ARCHITECTURE}
# top-level marker tensors of v-prediction checkpoints (NoobAI-style), as reForge, Forge and
# Neo read them: v_pred (v-prediction), ztsnr (zero terminal SNR), edm_vpred.* (EDM v-pred)
V_PRED, ZTSNR, EDM_VPRED = "v_pred", "ztsnr", "edm_vpred.sigma_max"


class BackendError(RuntimeError):
    """A checkpoint or setting the diffusers backend cannot use."""


def prediction_of(keys: Any) -> dict[str, Any]:
    """Scheduler settings a checkpoint's marker keys ask for: v-prediction, and zero-terminal-
    SNR rescaling where `ztsnr` is there too (as reForge and Neo do); {} for epsilon."""
    if V_PRED not in keys:
        return {}
    out: dict[str, Any] = {"prediction_type": "v_prediction"}
    if ZTSNR in keys:
        out["rescale_betas_zero_snr"] = True
    return out


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, 0)
    return st.st_mtime_ns, st.st_size


def _pickle_family(path: Path) -> tuple[str | None, str | None]:
    """A .ckpt's family from its state dict, loaded with torch's weights-only unpickler (no
    code runs); or why it holds no model. Only called after the user's opt-in."""
    import torch

    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # whatever the unpickler says is the reason
        reason = " ".join(str(e).split())[:200]
        return None, f"not a PyTorch checkpoint torch can read ({reason})"
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not state:
        return None, "a pickle that holds no model (no state dict of tensors)"
    return family_from_keys([str(k) for k in state]), None


CLIP_MERGES = Path(__file__).resolve().parent.parent / "data" / "clip_merges.txt.gz"


def clip_bpe_file() -> Path:
    """CLIP's BPE merges, shipped with Multipass (lib_multipass/data; MIT, OpenAI): the
    vocabulary of CLIP-L and OpenCLIP bigG, read without importing anything heavy."""
    return CLIP_MERGES


def clip_vocabulary(bpe_path: Path | None = None) -> tuple[dict[str, int], str]:
    """vocab.json and merges.txt of CLIP's tokenizer, built from its BPE merges (one merge a
    line, as lib_multipass/data/clip_merges.txt.gz holds them): 256 bytes, the same ending a
    word, the merged tokens in merge order, then the start and end tokens (49,408 in all)."""
    with gzip.open(bpe_path or CLIP_MERGES, "rt", encoding="utf-8") as fh:
        merges = [m for m in fh.read().split("\n") if m.strip()]
    symbols = tiny.byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), *("".join(m.split()) for m in merges)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, "#version: 0.2\n" + "\n".join(merges) + "\n"


class DiffusersBackend:
    """Runs a Multipass job on diffusers (CPU or GPU), with checkpoints from folders."""

    def __init__(
        self,
        folders: Sequence[Path],
        *,
        home: Path | None = None,
        cache_bytes: int | None = None,
        allow_ckpt: bool = False,
        device: str = "auto",
        dtype: str = "auto",
        report: Callable[[str], None] | None = None,
        loras: Sequence[Path] = (),
        embeddings: Sequence[Path] = (),
    ) -> None:
        """`cache_bytes` None: a share of the memory available now (default_cache_bytes);
        `device` auto: CUDA, then MPS, then the CPU; `dtype` auto: fp16 on a GPU, else fp32.
        `report` gets a line for anything a user should know (a checkpoint too big to cache).
        `loras` and `embeddings` are folders of LoRA files and textual-inversion embeddings
        that prompts name (`<lora:name:weight>`, an embedding's file name)."""
        self.folders = [Path(f) for f in folders]
        self.home = home or tiny.default_home()
        self.cache_bytes = default_cache_bytes() if cache_bytes is None else cache_bytes
        self.allow_ckpt = allow_ckpt
        resolved, problem = resolve_device(device)
        if problem:
            raise BackendError(f"device {device!r}: allowed: {problem}")
        self.device = str(resolved)
        kind, problem = resolve_dtype(dtype, self.device)
        if problem:
            raise BackendError(f"dtype {dtype!r}: allowed: {problem}")
        self.dtype = str(kind)
        self.report = report or (lambda line: None)
        self.disk_loads: Counter[str] = Counter()
        self.cache_hits: Counter[str] = Counter()
        self._files: dict[str, CheckpointFile] = {}
        for folder in self.folders:
            for c in list_checkpoints(folder) if folder.is_dir() else []:
                self._files.setdefault(c.name, c)
        self._cache: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._sigmas: dict[str, sigmas.ModelSigmas] = {}  # checkpoint -> its noise levels
        self._current = ""
        self._families: dict[str, str] = {}
        self._file_problems: dict[tuple, str | None] = {}
        self.loras = LoraLibrary([Path(f) for f in loras], allow_pickles=allow_ckpt)
        self.embeddings = EmbeddingLibrary([Path(f) for f in embeddings], allow_pickles=allow_ckpt)
        self._applied: dict[str, lora_merge.Applied] = {}  # checkpoint -> LoRAs in its weights
        self._encoders: dict[tuple, PromptEncoder] = {}
        self._tokenizers: dict[str, Any] = {}
        self._noted: set[str] = set()

    # -- checkpoints --------------------------------------------------------------------------

    def checkpoints(self) -> list[CheckpointFile]:
        """Every checkpoint this backend can name, first folder first."""
        return list(self._files.values())

    def current_checkpoint(self) -> str:
        return self._current

    def checkpoint_id(self, name: str) -> str:
        name = name or self._current
        try:
            return self._file(name).name if name else ""
        except BackendError:
            return ""

    def _file(self, name: str) -> CheckpointFile:
        c = self._files.get(name)
        if c is None:
            stem = name.removesuffix(".safetensors").removesuffix(".ckpt")
            c = self._files.get(stem)
        if c is None:
            known = ", ".join(self._files) or "none"
            raise BackendError(f"checkpoint {name!r} is not available; available: {known}")
        return c

    def checkpoint_family(self, name: str) -> str:
        name = name or self._current
        if not name:
            return "sd1"
        if name not in self._families:
            family = "sd1"  # unknown names and unreadable files are reported by check_run
            try:
                c = self._file(name)
                arch = None if c.pickled else self._metadata_architecture(c)
                family = arch["family"] if arch else family_or_default(c.path)
            except (BackendError, ValueError, OSError):
                pass
            self._families[name] = family
        return self._families[name]

    def _metadata_architecture(self, c: CheckpointFile) -> dict[str, Any] | None:
        meta = read_safetensors_header(c.path).get("__metadata__") or {}
        raw = meta.get(tiny.METADATA_KEY)
        return json.loads(raw) if raw else None

    def _architecture(self, c: CheckpointFile) -> dict[str, Any]:
        """What to build for `c`: the tiny models' own, or its family's, with the scheduler's
        prediction type set from the file's v-prediction markers."""
        arch = None if c.pickled else self._metadata_architecture(c)
        if arch is None:
            family = "sd1" if c.pickled else sniff_family(c.path)
            if family not in ARCHITECTURES:
                raise BackendError(
                    f"checkpoint {c.name!r} is {family or 'of an unknown family'}: the diffusers "
                    "runner loads SD1.x and SDXL checkpoints and the built-in tiny models"
                )
            arch = ARCHITECTURES[family]
        settings = {} if c.pickled else prediction_of(read_safetensors_header(c.path))
        if settings:
            arch = {**arch, "scheduler": {**arch["scheduler"], **settings}}
        return arch

    def _config_dir(self, c: CheckpointFile) -> Path:
        arch = self._architecture(c)
        digest = hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:16]
        folder = self.home / "configs" / digest
        if not (folder / "model_index.json").exists():
            vocab = clip_vocabulary() if arch.get("tokenizer") == "clip" else None
            tiny.write_config_dir(folder, arch, vocab)
        return folder

    def load_checkpoint(self, name: str) -> None:
        c = self._file(name)
        if c.name in self._cache:
            self._cache.move_to_end(c.name)
            self.cache_hits[c.name] += 1
        else:
            if c.pickled and not self.allow_ckpt:
                raise BackendError(
                    f"checkpoint {c.name!r} is a pickle-based .ckpt file, which can run code "
                    "when loaded; convert it to .safetensors, or allow it with --allow-ckpt"
                )
            self._make_room(c)
            pipe = self._read(c)
            self._cache[c.name] = (pipe, pipeline_bytes(pipe))
            self._evict(keep=c.name)
        self._activate(c.name)

    def _activate(self, name: str) -> None:
        """Make `name` the current checkpoint; on a GPU only it sits in device memory, the
        cached others wait in RAM."""
        if self.device != "cpu" and name != self._current:
            if self._current in self._cache:
                self._cache[self._current][0].to("cpu")
            self._cache[name][0].to(self.device)
        self._current = name

    def _torch_dtype(self) -> Any:
        import torch

        return getattr(torch, DTYPES[self.dtype])

    def _make_room(self, c: CheckpointFile) -> None:
        """Before reading `c`, drop cached checkpoints until it fits beside the rest, so a
        switch never holds two models it cannot keep; say so when `c` cannot be cached."""
        need = self._expected_bytes(c)
        if need > self.cache_bytes:
            gb = need / 2**30
            self.report(
                f"note: {c.name} needs {gb:.1f} GB in {self.dtype}, more than the "
                f"{self.cache_bytes / 2**30:.1f} GB RAM cache (--cache-mb): it is read from "
                "disk whenever it is needed"
            )
        total = sum(size for _, size in self._cache.values())
        for name in list(self._cache):
            if total + need <= self.cache_bytes:
                break
            total -= self._drop(name)

    def _expected_bytes(self, c: CheckpointFile) -> int:
        """A checkpoint's size in memory at the run dtype, from its header (or file size)."""
        size = 2 if self.dtype in ("fp16", "bf16") else 4
        try:
            header = {} if c.pickled else read_safetensors_header(c.path)
        except ValueError:
            header = {}
        numel = 0
        for key, entry in header.items():
            if key != "__metadata__" and isinstance(entry, dict):
                count = 1
                for n in entry.get("shape") or []:
                    count *= int(n)
                numel += count
        return numel * size if numel else c.path.stat().st_size * size // 2

    def _drop(self, name: str) -> int:
        pipe, size = self._cache.pop(name)
        if name == self._current:
            self._current = ""  # nothing is loaded until the next checkpoint is read

        self._sigmas.pop(name, None)
        for key in [k for k in self._encoders if k[0] == name]:
            del self._encoders[key]
        self._applied.pop(name, None)  # its weights, LoRAs and all, go with it
        del pipe
        return size

    def _read(self, c: CheckpointFile) -> Any:
        from diffusers.utils import logging as dlogging

        dlogging.set_verbosity_error()
        dlogging.disable_progress_bar()
        self.disk_loads[c.name] += 1
        family = self._architecture(c)["family"]
        extra: dict[str, Any] = {}
        if family == "sd1":
            extra = {"safety_checker": None, "feature_extractor": None}
            extra["requires_safety_checker"] = False
        pipe = _pipeline_class(family).from_single_file(
            str(c.path),
            config=str(self._config_dir(c)),
            local_files_only=True,
            torch_dtype=self._torch_dtype(),
            **extra,
        )
        pipe.set_progress_bar_config(disable=True)
        upsample_as_the_webui(pipe.unet)
        return pipe  # in RAM; _activate moves the current one to the device

    def _evict(self, keep: str) -> None:
        total = sum(size for _, size in self._cache.values())
        for name in list(self._cache):
            if total <= self.cache_bytes:
                break
            if name != keep:
                total -= self._drop(name)

    def cached(self) -> dict[str, int]:
        """Checkpoints held in RAM and their bytes, least recently used first."""
        return {name: size for name, (_, size) in self._cache.items()}

    # -- checks ------------------------------------------------------------------------------

    # -- checkpoint files ----------------------------------------------------------------------

    def file_problem(self, c: CheckpointFile) -> str | None:
        """Why this backend cannot load `c` (None if it can), found before any job runs: a
        truncated or fake file, a pickle without the opt-in or without a model, a family the
        runner does not load."""
        key = (str(c.path), *_stamp(c.path))
        if key not in self._file_problems:
            self._file_problems[key] = self._inspect(c)
        return self._file_problems[key]

    def _inspect(self, c: CheckpointFile) -> str | None:
        if c.pickled and not self.allow_ckpt:
            return "a pickle-based .ckpt file, which can run code when loaded (--allow-ckpt)"
        family, problem = inspect_file(c.path)
        if problem is not None:
            return problem
        if c.pickled:
            family, problem = _pickle_family(c.path)
            if problem is not None:
                return problem
        elif self._metadata_architecture(c) is not None:
            return self._sampling_problem(c)  # a tiny model: its architecture is in the file
        if family in RUNNER_FAMILIES:
            return self._sampling_problem(c)
        if family is None:
            return (
                "holds no tensors of a model family Multipass knows "
                f"({', '.join(FAMILIES)}): not a Stable Diffusion checkpoint?"
            )
        name = FAMILY_NAMES.get(family, family)
        article = "an" if name[:1] in "AEIOS" else "a"  # "an SDXL", "a Flux"
        return f"{article} {name} checkpoint, which the diffusers runner does not load yet"

    def _sampling_problem(self, c: CheckpointFile) -> str | None:
        if not c.pickled and EDM_VPRED in read_safetensors_header(c.path):
            return (
                f"an EDM v-prediction checkpoint (it has the key {EDM_VPRED!r}), which the "
                "diffusers runner does not sample"
            )
        return None

    def prediction(self, name: str) -> dict[str, Any]:
        """The scheduler settings checkpoint `name`'s markers ask for ({} for epsilon)."""
        c = self._file(name)
        return {} if c.pickled else prediction_of(read_safetensors_header(c.path))

    def describe_file(self, c: CheckpointFile) -> str:
        """The family of a listed checkpoint, or 'unusable: why', for `multipass models`."""
        if c.pickled and not self.allow_ckpt:
            return "pickle, needs --allow-ckpt"
        problem = self.file_problem(c)
        if problem:
            return f"unusable: {problem}"
        family = self.checkpoint_family(c.name)
        kind = self.prediction(c.name)
        if kind:
            family += " v-pred" + (" ztsnr" if kind.get("rescale_betas_zero_snr") else "")
        return family

    def describe_lora(self, f: NetworkFile) -> str:
        """A LoRA's family, or 'unusable: why', for `multipass models`."""
        problem = self.loras.problem(f)
        if problem:
            return f"unusable: {problem}"
        return {"sd1": "sd1 lora", "sd2": "sd2 lora", "sdxl": "sdxl lora"}.get(
            self.loras.family(f) or "", "lora"
        )

    def describe_embedding(self, f: NetworkFile) -> str:
        """An embedding's shape, or 'unusable: why', for `multipass models`."""
        problem = self.embeddings.problem(f)
        if problem:
            return f"unusable: {problem}"
        shape = self.embeddings.shape(f)
        if shape is None or isinstance(shape, str):
            return "embedding"
        kinds = {768: "sd1 ", 1024: "sd2 "}
        kind = "sdxl " if len(shape.widths) == 2 else kinds.get(shape.width, "")
        plural = "s" if shape.vectors != 1 else ""
        return f"{kind}embedding, {shape.vectors} vector{plural}"

    def check_run(self, run: Run) -> list[Problem]:
        where = where_pass(run.pass_index)
        problems = []
        if run.checkpoint:
            try:
                c = self._file(run.checkpoint)
                problem = self.file_problem(c)
                if problem is not None:
                    allowed = f"a usable checkpoint ({c.path.name}: {problem})"
                    problems.append(Problem(where, "checkpoint", run.checkpoint, allowed))
            except BackendError:
                problems.append(
                    Problem(
                        where,
                        "checkpoint",
                        run.checkpoint,
                        "one of " + (", ".join(self._files) or "(no checkpoints found)"),
                    )
                )
        problems += self.check_sampling(run.sampler, run.scheduler, run.vae, where)
        problems += self._prompt_problems(run, where)
        if run.text_encoders:
            allowed = "[] (the diffusers runner uses each checkpoint's own text encoders)"
            problems.append(Problem(where, "text_encoders", list(run.text_encoders), allowed))
        if run.upscaler is not None and run.upscaler not in UPSCALERS:
            allowed = "one of " + ", ".join(UPSCALERS)
            problems.append(Problem(where, "upscaler", run.upscaler, allowed))
        for unit in run.controlnet:
            allowed = (
                "'' here: ControlNet per pass runs in the WebUI (sd-webui-controlnet on A1111, "
                "the built-in ControlNet on reForge, Forge 2 and Neo), not headless"
            )
            problems.append(Problem(where, unit.field("model"), unit.model, allowed))
        return problems

    def check_sampling(self, sampler: str, scheduler: str, vae: str, where: str) -> list[Problem]:
        """Problems with a sampler, schedule type or VAE choice, named as the recipe names them."""
        problems = []
        if sampler not in SAMPLERS:
            problems.append(Problem(where, "sampler", sampler, "one of " + ", ".join(SAMPLERS)))
        elif sigmas.SCHEDULE_ALIASES.get(scheduler, scheduler) not in SCHEDULE_TYPES:
            allowed = ", ".join(repr(s) for s in SCHEDULE_TYPES)
            problems.append(Problem(where, "scheduler", scheduler, f"one of {allowed}"))
        if vae:
            problems.append(
                Problem(where, "vae", vae, "'' (the diffusers runner uses each checkpoint's VAE)")
            )
        return problems

    # -- prompts, LoRAs, embeddings, clip skip ------------------------------------------------

    def _prompt_problems(self, run: Run, where: str) -> list[Problem]:
        """What in a run's prompts the runner cannot do, before the job: syntax it does not
        run (AND, a bad weight), LoRAs that are not there or do not fit the checkpoint,
        embeddings it may not read, a clip skip deeper than the text encoder."""
        problems: list[Problem] = []
        steps = schedule_steps(run.sampler, run.steps)
        family = self.checkpoint_family(run.checkpoint)
        texts: dict[str, list[str]] = {"prompt": [], "negative_prompt": []}
        sides = (
            ("prompt", False, [run.prompt, *run.crop_prompts]),
            ("negative_prompt", True, [run.negative_prompt, *run.crop_negatives]),
        )
        for name, negative, prompts in sides:
            for text in dict.fromkeys(prompts):
                try:
                    parsed = parse_prompt(text, steps, negative=negative)
                except PromptError as e:
                    problems.append(Problem(where, name, text, str(e), about=(name,)))
                    continue
                texts[name] += [t for _, t in parsed.schedule]
                for use in parsed.loras:
                    problem = self._lora_problem(use, family)
                    if problem is not None:
                        problems.append(Problem(where, name, use.text, problem, about=(name,)))
        for name, found in texts.items():
            problems += self._embedding_problems(run, found, where, name)
        problems += self._clip_skip_problems(run, where)
        return problems

    def _lora_problem(self, use: LoraUse, family: str) -> str | None:
        f = self.loras.find(use.name)
        if f is None:
            return self.loras.allowed()
        problem = self.loras.problem(f, family)
        return None if problem is None else f"a LoRA that fits ({problem})"

    def _embedding_problems(
        self, run: Run, texts: list[str], where: str, field: str = "prompt"
    ) -> list[Problem]:
        """Embeddings the prompts name (by file name, as the WebUI finds them) that cannot be
        read; one whose width does not fit the checkpoint stays a word, as in the WebUI, and
        is said so once."""
        files = self.embeddings.files
        if not files or not texts:
            return []
        try:
            tok = self._tokenizer(run.checkpoint or self._current)
        except (BackendError, OSError, ValueError):
            return []  # the checkpoint's own problem is reported
        found = mentioned_embeddings(lambda t: tokenize(tok, t), texts, list(files))
        problems = []
        width = self._text_width(run.checkpoint or self._current)
        for name in found:
            f = files[name]
            problem = self.embeddings.problem(f)
            if problem is not None:
                allowed = f"an embedding the runner can read ({problem})"
                problems.append(Problem(where, field, name, allowed, about=(field,)))
                continue
            shape = self.embeddings.shape(f)
            if width and shape is not None and not isinstance(shape, str) and shape.width != width:
                key = f"{name}:{width}"
                if key not in self._noted:
                    self._noted.add(key)
                    self.report(
                        f"note: embedding {name} ({f.path.name}) is {shape.width} wide and this "
                        f"checkpoint's text encoders {width}: '{name}' stays a word, as in the "
                        "WebUI"
                    )
        return problems

    def _clip_skip_problems(self, run: Run, where: str) -> list[Problem]:
        if run.clip_skip <= 1:
            return []
        name = run.checkpoint or self._current
        try:
            arch = self._architecture(self._file(name)) if name else None
        except (BackendError, ValueError, OSError):
            return []
        if arch is None or "text_encoder_2" in arch:
            return []  # SDXL takes its own layers, whatever the clip skip (as A1111)
        layers = int(arch["text_encoder"]["num_hidden_layers"])
        if run.clip_skip <= layers:
            return []
        allowed = f"1 to {layers}: {name}'s text encoder has {layers} layers"
        return [Problem(where, "clip_skip", run.clip_skip, allowed, about=("clip_skip",))]

    def _tokenizer(self, name: str) -> Any:
        """The CLIP-L tokenizer of checkpoint `name`, from its config folder (no model read)."""
        from transformers import CLIPTokenizer

        folder = str(self._config_dir(self._file(name)) / "tokenizer")
        if folder not in self._tokenizers:
            self._tokenizers[folder] = CLIPTokenizer.from_pretrained(folder)
        return self._tokenizers[folder]

    def _text_width(self, name: str) -> int:
        try:
            arch = self._architecture(self._file(name))
        except (BackendError, ValueError, OSError):
            return 0
        width = int(arch["text_encoder"]["hidden_size"])
        if "text_encoder_2" in arch:
            width += int(arch["text_encoder_2"]["hidden_size"])
        return width

    def _loras_for(self, parsed: Sequence[ParsedPrompt]) -> list[tuple[LoraUse, NetworkFile]]:
        """The LoRAs a batch's prompts name, each file once: the WebUI applies the tags of the
        prompt being sampled (a crop's own prompt carries its own)."""
        uses: list[tuple[LoraUse, NetworkFile]] = []
        for p in parsed:
            for use in p.loras:
                f = self.loras.find(use.name)
                if f is None:
                    raise BackendError(f"LoRA {use.name!r} is not in {self.loras.where()}")
                uses.append((use, f))
        return uses

    def _encoder(self, pipe: Any, clip_skip: int) -> PromptEncoder:
        applied = self._applied.get(self._current)
        key = (self._current, clip_skip, applied.key if applied else ())
        if key not in self._encoders:
            for old in [k for k in self._encoders if k[:2] == key[:2]]:
                del self._encoders[old]
            self._encoders[key] = PromptEncoder.for_pipeline(
                pipe, clip_skip=clip_skip, embeddings=self.embeddings
            )
        encoder = self._encoders[key]
        if encoder.embeddings is not None:
            encoder.embeddings.set_extra(applied.bundled if applied else {})
        return encoder

    def conditioning(self, pipe: Any, requests: Sequence[SampleRequest]) -> Any:
        """The batch's conditioning (lib_multipass.backends.conditioning.Conditioning), with
        its LoRAs merged into the loaded checkpoint's weights first. A sampler loop asks it
        `cond_at(step)` before each model call (see conditioning.py)."""
        import torch

        first = requests[0]
        steps = schedule_steps(first.sampler, first.steps)
        try:
            positives = [parse_prompt(r.prompt, steps) for r in requests]
            negatives = [parse_prompt(r.negative_prompt, steps, negative=True) for r in requests]
        except PromptError as e:
            raise BackendError(str(e)) from None
        base = self._cache[self._current][0]
        applied = self._applied.setdefault(self._current, lora_merge.Applied())
        try:
            lora_merge.apply(base, applied, self._loras_for(positives))
        except lora_merge.LoraError as e:
            raise BackendError(str(e)) from None
        encoder = self._encoder(pipe, first.clip_skip)
        with torch.inference_mode():
            return encoder.conditioning(positives, negatives, steps)

    # -- sampling ----------------------------------------------------------------------------

    def _pipeline(self, kind: str = "txt2img") -> Any:
        """The loaded checkpoint's pipeline, whose parts (UNet, VAE, text encoders) the runner
        samples with for every kind of job."""
        if not self._current:
            raise BackendError("no checkpoint is loaded")
        return self._cache[self._current][0]

    def generate(
        self, requests: Sequence[SampleRequest], on_step: StepCallback
    ) -> list[Image.Image]:
        """One diffusers call for the batch: per-image prompts (encoded as the WebUI encodes
        them), seeds (a CPU generator each, so a seed gives the same noise on any device) and
        init images; one of a batch is passed exactly as a single generation by hand would be.
        Images whose prompts name different LoRAs are sampled in turn, each with its own."""
        groups: dict[tuple, list[int]] = {}
        for k, r in enumerate(requests):
            groups.setdefault(_lora_names(r.prompt), []).append(k)
        if len(groups) == 1:
            return self._generate(requests, on_step)
        out: list[Image.Image | None] = [None] * len(requests)
        members_list = list(groups.values())
        for n, members in enumerate(members_list):
            # progress counts the batch's steps once: the last group reports them
            report = on_step if n == len(members_list) - 1 else _no_progress
            made = self._generate([requests[k] for k in members], report)
            for k, image in zip(members, made, strict=True):
                out[k] = image
        return [image for image in out if image is not None]

    def _model_sigmas(self) -> sigmas.ModelSigmas:
        """The loaded checkpoint's noise levels (zero terminal SNR where its markers say)."""
        key = self._current
        if key not in self._sigmas:
            config = dict(self._cache[self._current][0].scheduler.config)
            ztsnr = bool(config.get("rescale_betas_zero_snr"))
            self._sigmas[key] = sigmas.ModelSigmas.from_config(config, zero_terminal_snr=ztsnr)
        return self._sigmas[key]

    def _generate(
        self, requests: Sequence[SampleRequest], on_step: StepCallback
    ) -> list[Image.Image]:
        """A batch sampled as the WebUI samples it: the WebUI's noise for each image's seed, its
        sigmas (k-diffusion's samplers) or timesteps (DDIM, PLMS, UniPC) on its CFG denoiser,
        VAE encode and decode one image at a time, pixels truncated to bytes, and a masked
        image put back outside its mask."""
        import torch

        first = requests[0]
        pipe = self._cache[self._current][0]
        xl = _family_of_pipeline(pipe) == "sdxl"
        device = str(pipe.unet.device)
        noise = rng.ImageNoise(
            (4, first.height // 8, first.width // 8),
            [r.seed for r in requests],
            subseeds=[r.subseed for r in requests],
            subseed_strength=first.subseed_strength,
            source=first.rng,
            device=device,
        )
        upsample_as(pipe.unet, first.image_rules)
        with torch.inference_mode():
            init, mask = self._init_latents(pipe, requests, device)
            time_ids = None
            if xl:
                ids = sdxl_time_ids(first.width, first.height)
                time_ids = torch.tensor(ids, dtype=torch.float32)
            model = dict(
                conds=self.conditioning(pipe, requests).cond_at,
                cfg_scale=first.cfg_scale,
                v_prediction=self.prediction(self._current).get("prediction_type")
                == "v_prediction",
                time_ids=time_ids,
                init_latent=init,
                mask=mask,
            )
            if first.sampler in timesteps.SAMPLERS:
                latents = self._sample_timesteps(pipe, requests, model, noise, on_step, init)
            else:
                latents = self._sample_sigmas(pipe, requests, model, noise, on_step, init, xl)
            out = [_decode(pipe.vae, latents[k : k + 1]) for k in range(len(requests))]
        if first.mask is not None:
            out = [
                _overlay(image, _init_image(r), r.mask)
                for image, r in zip(out, requests, strict=True)
            ]
        return out

    def _init_latents(
        self, pipe: Any, requests: Sequence[SampleRequest], device: str
    ) -> tuple[Any, Any]:
        """(init latent, latent mask) of an img2img batch, each image's latent drawn from the
        VAE's posterior as the WebUI draws it; (None, None) for txt2img."""
        import torch

        first = requests[0]
        if first.image is None:
            return None, None
        images = [_init_image(r) for r in requests]
        posteriors = [_posterior(pipe.vae, image, device) for image in images]
        mean = torch.cat([m for m, _ in posteriors])
        std = torch.cat([s for _, s in posteriors])
        seeds = rng.encode_seeds([r.seed for r in requests], first.image_rules)
        latent = rng.posterior_sample(mean.float(), std.float(), seeds, first.rng)
        init = latent * pipe.vae.config.scaling_factor
        if first.mask is None:
            return init, None
        mask = torch.cat([_latent_mask(r.mask, init.shape[-2:]) for r in requests])
        return init, mask.to(device)

    def _sample_sigmas(
        self,
        pipe: Any,
        requests: Sequence[SampleRequest],
        model: dict[str, Any],
        noise: rng.ImageNoise,
        on_step: StepCallback,
        init: Any,
        xl: bool,
    ) -> Any:
        """k-diffusion's sampler over the WebUI's sigmas for the batch."""
        first = requests[0]
        levels = self._model_sigmas()
        if init is None:
            run = whole = sigmas.sampler_sigmas(
                first.sampler, first.scheduler, first.steps, levels, xl=xl
            )
        else:
            whole, run = sigmas.img2img_levels(
                first.sampler,
                first.scheduler,
                first.steps,
                first.strength,
                levels,
                first.step_mode,
                xl,
            )
        denoiser = sampling.Denoiser(pipe.unet, levels, **model)
        start = noise.next()
        then: Any = noise.next
        if first.sampler in sampling.BROWNIAN:  # a tree over the whole schedule the run is cut from
            then = rng.BrownianNoise(start, whole, [r.seed for r in requests])
        total = len(run) - 1
        return sampling.sample(
            first.sampler, denoiser, start, run, then, lambda k: on_step(k, total), init
        )

    def _sample_timesteps(
        self,
        pipe: Any,
        requests: Sequence[SampleRequest],
        model: dict[str, Any],
        noise: rng.ImageNoise,
        on_step: StepCallback,
        init: Any,
    ) -> Any:
        """The WebUI's DDIM, PLMS or UniPC over its timestep grid for the batch."""
        first = requests[0]
        alphas = self._model_sigmas().alphas_cumprod
        denoiser = timesteps.NoiseDenoiser(pipe.unet, alphas, **model)
        if init is None:
            total = txt2img_steps(first.steps, first.sampler).run
        else:
            total = img2img_steps(first.strength, first.steps, first.step_mode, first.sampler).run
        return timesteps.sample(
            first.sampler,
            denoiser,
            noise.next(),
            first.steps,
            lambda k: on_step(k, total),
            init,
            first.strength,
            first.step_mode,
        )

    def upscale(self, image: Image.Image, size: Size, upscaler: str) -> Image.Image:
        """`image` resized to `size`: with the named filter, or, to a smaller size, with Lanczos
        whatever the upscaler (as the WebUI's resize_image downscales)."""
        if upscaler not in UPSCALERS:
            raise BackendError(f"upscaler {upscaler!r} is not one of {', '.join(UPSCALERS)}")
        smaller = size[0] <= image.width and size[1] <= image.height
        how = Image.Resampling.LANCZOS if smaller else UPSCALERS[upscaler]
        return image.convert("RGB").resize(size, how)


def upsample_as_the_webui(unet: Any) -> None:
    """Make the UNet's upsamplers meet odd sizes as A1111's does.

    At a size that is not a multiple of 64 px (SD1; 32 px SDXL) a downsampled feature map has
    an odd side, and going up again it must meet its skip connection's size. diffusers
    interpolates straight to that size, then convolves; A1111's UNet doubles, convolves, and
    its torch.cat hijack (modules/sd_hijack_unet.py) resizes the result to the skip's size,
    nearest. Forge and ComfyUI go diffusers' way (`upsample_as(unet, "Forge")`)."""
    import torch.nn.functional as F
    from diffusers.models.upsampling import Upsample2D

    for module in unet.modules():
        if not isinstance(module, Upsample2D) or getattr(module, "_multipass_webui", False):
            continue
        own = module.forward

        def forward(
            hidden_states: Any, output_size: Any = None, *args: Any, _up=own, _m=module
        ) -> Any:
            if _m._multipass_rules != "A1111":
                return _up(hidden_states, output_size, *args)
            out = _up(hidden_states, None, *args)
            if output_size is not None and tuple(out.shape[-2:]) != tuple(output_size):
                out = F.interpolate(out, size=tuple(output_size), mode="nearest")
            return out

        module.forward = forward
        module._multipass_webui = True
        module._multipass_rules = "A1111"


def upsample_as(unet: Any, rules: str) -> None:
    """Odd sizes upsampled by `rules` (fields.IMAGE_RULES): A1111's way or Forge's (diffusers')."""
    for module in unet.modules():
        if getattr(module, "_multipass_webui", False):
            module._multipass_rules = rules


def _init_image(r: SampleRequest) -> Image.Image:
    """A request's init image at its size, resized with Lanczos as the WebUI's resize_image."""
    assert r.image is not None
    image = r.image.convert("RGB")
    if image.size != (r.width, r.height):
        image = image.resize((r.width, r.height), Image.Resampling.LANCZOS)
    return image


def _posterior(vae: Any, image: Image.Image, device: str) -> tuple[Any, Any]:
    """The mean and spread of an image's latent as the WebUI's VAE sees the image ([0, 255] ->
    [-1, 1]); the WebUI draws the latent from them (rng.posterior_sample)."""
    import numpy as np
    import torch

    x = torch.from_numpy(np.moveaxis(np.asarray(image, dtype=np.float32) / 255.0, 2, 0))
    x = (x[None] * 2 - 1).to(device, vae.dtype)
    dist = vae.encode(x).latent_dist
    return dist.mean, dist.std


def _decode(vae: Any, latent: Any) -> Image.Image:
    """A latent's image as the WebUI decodes it: the VAE, [-1, 1] clamped to [0, 1], times
    255, truncated to bytes (astype(uint8)); an SDXL VAE that needs it runs in float32."""
    import numpy as np
    import torch

    upcast = bool(getattr(vae.config, "force_upcast", False)) and vae.dtype == torch.float16
    dtype = torch.float32 if upcast else vae.dtype
    if upcast:
        vae.to(torch.float32)
    try:
        x = vae.decode((latent / vae.config.scaling_factor).to(dtype)).sample.float()
    finally:
        if upcast:
            vae.to(torch.float16)
    x = torch.clamp((x[0] + 1.0) / 2.0, min=0.0, max=1.0)
    pixels = (255.0 * np.moveaxis(x.cpu().numpy(), 0, 2)).astype(np.uint8)
    return Image.fromarray(pixels)


def _latent_mask(mask: Image.Image, shape: Any) -> Any:
    """The WebUI's latent mask of an inpaint mask (white regenerates): resized to the latent
    size (bicubic), rounded to 0 or 1; returns the part kept (1 - the regenerated) [1, 4, h, w]."""
    import numpy as np
    import torch

    h, w = int(shape[0]), int(shape[1])
    small = mask.convert("L").convert("RGB").resize((w, h))
    regenerated = np.around(np.asarray(small, dtype=np.float32)[:, :, 0] / 255)
    kept = torch.from_numpy(1.0 - regenerated)
    return kept[None, None].repeat(1, 4, 1, 1)


def _overlay(image: Image.Image, init: Image.Image, mask: Image.Image) -> Image.Image:
    """The WebUI's overlay of an inpainted image: the init image outside the mask (where the
    mask, doubled and clipped, is not white) composited over what was generated."""
    import numpy as np

    m = mask.convert("L")
    if m.size != image.size:
        m = m.resize(image.size, Image.Resampling.LANCZOS)
    doubled = np.clip(np.asarray(m, dtype=np.float32) * 2, 0, 255).astype(np.uint8)
    keep = Image.fromarray(255 - doubled)
    masked = Image.new("RGBa", image.size)
    masked.paste(init.convert("RGBA").convert("RGBa"), mask=keep)
    out = image.convert("RGBA")
    out.alpha_composite(masked.convert("RGBA"))
    return out.convert("RGB")


def _no_progress(step: int, steps: int) -> None:
    """Progress of a batch's earlier LoRA group: the last group reports the batch's steps."""


def _lora_names(prompt: str) -> tuple:
    """What sets a prompt's LoRAs apart (its tags, parsed), to group a batch by them."""
    from ..prompts import extra_networks, lora_uses

    uses, _ = lora_uses(extra_networks(prompt)[1])
    return tuple((u.name, u.te, u.unet, u.dyn) for u in uses)


def _pipeline_class(family: str) -> Any:
    """The diffusers pipeline a checkpoint of `family` is read into (its parts are what the
    runner samples with)."""
    import diffusers

    names = {"sd1": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline"}
    return getattr(diffusers, names[family])


def _family_of_pipeline(pipe: Any) -> str:
    return "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd1"


def pipeline_bytes(pipe: Any) -> int:
    """Bytes held by a pipeline's weights (every torch module among its components)."""
    total = 0
    for module in pipe.components.values():
        if hasattr(module, "parameters") and hasattr(module, "buffers"):
            for t in [*module.parameters(), *module.buffers()]:
                total += t.numel() * t.element_size()
    return total


def sdxl_time_ids(width: int, height: int) -> tuple[int, ...]:
    """SDXL's size and crop conditioning as the WebUI sets it for a generation of this size:
    original size, crop offsets, target size, the sizes the generation's (height, width), the
    crop the settings' sdxl_crop_top / sdxl_crop_left, 0 by default; the negative prompt gets the
    same (A1111 1.10.1 modules/sd_models_xl.py, get_learned_conditioning; Forge's sdxl engine
    likewise)."""
    return (height, width, 0, 0, height, width)
