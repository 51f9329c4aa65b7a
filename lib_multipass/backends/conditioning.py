"""Prompts to embeddings as the WebUI makes them (A1111 1.10.1's sd_hijack_clip.py, its SDXL
conditioner, and textual inversion), on a diffusers pipeline's tokenizers and text encoders.

For each prompt: its texts over the sampling steps (prompt editing, alternation), each split into
weighted pieces, tokenized piece by piece, laid into 75-token chunks (lib_multipass.prompts);
each chunk index is encoded for all of the prompt's texts in one batch, the token weights are
multiplied into the hidden states and the batch's mean restored ("Original" emphasis), and the
chunks are joined along the tokens. SD1 takes CLIP-L's last layer, or with clip skip n its n-th
layer from the end through the final layer norm. SDXL joins CLIP-L's and OpenCLIP bigG's
penultimate layers (each weighted on its own) and takes bigG's pooled output of the first chunk;
an empty negative prompt is zeros. Clip skip does not change SDXL, as in A1111.

The sampler asks `Conditioning.cond_at(step)` for the embeddings of a sampling step (counted as
the WebUI's CFG denoiser counts its calls, from 0), so prompt editing works in any sampler loop.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..networks import EmbeddingLibrary, NetworkFile
from ..prompts import (
    Chunk,
    ParsedPrompt,
    chunk_tokens,
    empty_chunk,
    is_break,
    parse_attention,
)

# samplers whose steps call the model twice: the WebUI schedules prompts over twice the steps
# (sd_samplers_kdiffusion.py: second_order; sd_samplers_common.SamplerData.total_steps)
SECOND_ORDER = frozenset({"Heun", "DPM2", "DPM2 a", "DPM++ SDE", "DPM++ 2S a", "Restart"})


def schedule_steps(sampler: str, steps: int) -> int:
    """The steps a prompt's schedule is laid over, as the WebUI counts them for `sampler`."""
    return steps * 2 if sampler in SECOND_ORDER else steps


def _fix_text(text: str) -> str:
    """ftfy's repair of a text, as the WebUI's CLIP tokenizers apply it (when ftfy is there)."""
    try:
        import ftfy
    except ImportError:  # the runner's extra installs it; without it, text is taken as it is
        return text
    return ftfy.fix_text(text)


@dataclass
class Encoded:
    """A prompt's texts, encoded: hidden states [texts, 77 * chunks, width], and for SDXL the
    pooled output of each text's first chunk [texts, width]."""

    hidden: Any
    pooled: Any = None


@dataclass
class Conds:
    """The conditioning of one sampling step for a batch: prompts and negative prompts."""

    cond: Any  # [batch, tokens, width]
    uncond: Any  # [batch, tokens', width]; tokens' may differ from tokens
    cond_pooled: Any = None  # SDXL: [batch, width]
    uncond_pooled: Any = None


class EmbeddingVectors:
    """Textual-inversion embeddings a text encoder can use: those whose width is the model's
    (the WebUI skips the others, and their names stay words), looked up by token ids."""

    def __init__(
        self, library: EmbeddingLibrary | None, widths: dict[str, int], tokenize: Callable
    ) -> None:
        self.library = library
        self.widths = widths  # {"": 768} (SD1) or {"clip_l": 768, "clip_g": 1280} (SDXL)
        self.width = sum(widths.values())
        self._tokenize = tokenize
        self._vectors: dict[str, dict[str, Any]] = {}
        self._lookup: dict[int, list[tuple[list[int], str]]] | None = None
        self._seen: dict[str, NetworkFile] | None = None
        self.extra: dict[str, dict[str, Any]] = {}  # bundled with a LoRA: name -> vectors

    def _files(self) -> dict[str, NetworkFile]:
        return self.library.files if self.library is not None else {}

    def usable(self, name: str) -> bool:
        """Whether embedding `name` is used (its width fits and it can be read)."""
        if name in self.extra:
            return True
        f = self._files().get(name)
        if f is None or self.library is None or self.library.problem(f) is not None:
            return False
        shape = self.library.shape(f)
        if isinstance(shape, str) or (shape is not None and shape.width != self.width):
            return False
        return self._load(name) is not None  # read as the WebUI reads its embeddings: all

    def lookup(self) -> dict[int, list[tuple[list[int], str]]]:
        """Usable embeddings by the first token id of their name, longest names first."""
        files = self._files()
        if files is not self._seen:  # the folder changed: list its embeddings again
            self._seen, self._lookup = files, None
        if self._lookup is None:
            table: dict[int, list[tuple[list[int], str]]] = {}
            names = [n for n in self._files() if n not in self.extra and self.usable(n)]
            for name in [*names, *self.extra]:
                ids = self._tokenize([name])[0]
                if ids:
                    table.setdefault(ids[0], []).append((ids, name))
            for options in table.values():
                options.sort(key=lambda x: len(x[0]), reverse=True)
            self._lookup = table
        return self._lookup

    def finder(self) -> Callable[[Sequence[int], int], tuple[str, int, int] | None]:
        table = self.lookup()

        def find(tokens: Sequence[int], position: int) -> tuple[str, int, int] | None:
            for ids, name in table.get(tokens[position], ()):
                if list(tokens[position : position + len(ids)]) == ids:
                    return name, self.count(name), len(ids)
            return None

        return find

    def count(self, name: str) -> int:
        vectors = self.vectors(name)
        return int(next(iter(vectors.values())).shape[0])

    def vectors(self, name: str) -> dict[str, Any]:
        """An embedding's vectors by text encoder key ('' for one-encoder embeddings)."""
        if name in self.extra:
            return self.extra[name]
        loaded = self._load(name)
        if loaded is None:
            raise KeyError(name)
        return loaded

    def _load(self, name: str) -> dict[str, Any] | None:
        if name not in self._vectors:
            f = self._files()[name]
            try:
                vectors = read_embedding(f.path)
            except (ValueError, OSError, RuntimeError):
                return None
            width = sum(int(v.shape[-1]) for v in vectors.values())
            if width != self.width:
                return None
            self._vectors[name] = vectors
        return self._vectors[name]

    def set_extra(self, extra: dict[str, dict[str, Any]]) -> None:
        """Embeddings a LoRA brings (bundle_emb), used while it is applied; an embedding of the
        same name from the embeddings folder wins, as in the WebUI."""
        usable = {
            n: v
            for n, v in extra.items()
            if n not in self._files() and sum(int(t.shape[-1]) for t in v.values()) == self.width
        }
        if usable != self.extra:
            self.extra = usable
            self._lookup = None


def read_embedding(path: Path) -> dict[str, Any]:
    """An embedding file's vectors: {'': [n, width]} or SDXL's {'clip_l': ..., 'clip_g': ...}.
    .safetensors always; .pt/.bin through torch's weights-only unpickler (the caller has the
    user's opt-in); the formats the WebUI reads (textual inversion's string_to_param, a
    single-tensor file, SDXL's clip_l + clip_g)."""
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        data: Any = load_file(str(path), device="cpu")
    else:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(data, dict):
        raise ValueError("not an embedding (no dictionary of tensors)")
    if "clip_l" in data and "clip_g" in data:
        return {"clip_l": data["clip_l"].float(), "clip_g": data["clip_g"].float()}
    params = data.get("string_to_param")
    if isinstance(params, dict):
        data = params
    else:
        flat = {k: v for k, v in data.items() if k.startswith("string_to_param.")}
        data = flat or data
    tensors = [v for v in data.values() if isinstance(v, torch.Tensor)]
    if len(tensors) != 1:
        raise ValueError("not an embedding (it should hold one tensor)")
    vec = tensors[0].detach().float()
    return {"": vec.unsqueeze(0) if vec.dim() == 1 else vec}


def text_model(model: Any) -> Any:
    """The transformer inside a CLIP text model (transformers 5's CLIPTextModel is it)."""
    return getattr(model, "text_model", model)


@dataclass
class TextSide:
    """One text encoder as the WebUI wraps it: its tokenizer, model, layer and token ids."""

    tokenizer: Any
    model: Any
    open_clip: bool  # OpenCLIP bigG (SDXL's second): its text cleaning, pad 0, pooled output
    layer: str  # "last" (SD1: clip skip applies) or "penultimate" (SDXL)
    key: str  # which vectors of an SDXL embedding it takes: "clip_l" or "clip_g" ("" SD1)
    start: int = 0
    end: int = 0
    comma: int | None = None

    def __post_init__(self) -> None:
        self.start = int(self.tokenizer.bos_token_id)
        self.end = int(self.tokenizer.eos_token_id)
        self.comma = self.tokenizer.get_vocab().get(",</w>")

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return tokenize(self.tokenizer, texts, open_clip=self.open_clip)


def tokenize(tokenizer: Any, texts: Sequence[str], *, open_clip: bool = False) -> list[list[int]]:
    """Token ids of each text, no start or end token, no truncation, cleaned as the WebUI's
    tokenizer for the encoder cleans it (transformers' CLIPTokenizer with ftfy for CLIP-L;
    open_clip's, which also unescapes HTML and reads no special tokens, for bigG)."""
    if not texts:
        return []
    if open_clip:
        cleaned = [html.unescape(html.unescape(_fix_text(t))).strip() for t in texts]
        out = tokenizer(
            cleaned, truncation=False, add_special_tokens=False, split_special_tokens=True
        )
    else:
        cleaned = [_fix_text(t) for t in texts]
        out = tokenizer(cleaned, truncation=False, add_special_tokens=False)
    return [list(ids) for ids in out["input_ids"]]


def mentioned_embeddings(
    tokenize_texts: Callable[[Sequence[str]], list[list[int]]],
    texts: Sequence[str],
    names: Sequence[str],
) -> list[str]:
    """Which of these embedding names the texts use, found as the encoder finds them: a
    name's tokens within one weighted piece of a text (longest name first)."""
    table: dict[int, list[tuple[list[int], str]]] = {}
    for name, ids in zip(names, tokenize_texts(list(names)), strict=True):
        if ids:
            table.setdefault(ids[0], []).append((ids, name))
    for options in table.values():
        options.sort(key=lambda x: len(x[0]), reverse=True)
    found: dict[str, None] = {}
    for text in texts:
        pieces = [p[0] for p in parse_attention(text) if not is_break(p)]
        for ids in tokenize_texts(pieces):
            position = 0
            while position < len(ids):
                step = 1
                for name_ids, name in table.get(ids[position], ()):
                    if ids[position : position + len(name_ids)] == name_ids:
                        found[name] = None
                        step = len(name_ids)
                        break
                position += step
    return list(found)


@dataclass
class PromptEncoder:
    """The text side of one loaded checkpoint, encoding prompts the WebUI's way."""

    sides: list[TextSide]
    clip_skip: int = 1
    embeddings: EmbeddingVectors | None = None
    backtrack: int = 20
    _empty: Encoded | None = field(default=None, repr=False)

    @classmethod
    def for_pipeline(
        cls,
        pipe: Any,
        *,
        clip_skip: int = 1,
        embeddings: EmbeddingLibrary | None = None,
    ) -> PromptEncoder:
        """The encoder of a diffusers SD1 or SDXL pipeline."""
        if getattr(pipe, "text_encoder_2", None) is not None:
            sides = [
                TextSide(pipe.tokenizer, pipe.text_encoder, False, "penultimate", "clip_l"),
                TextSide(pipe.tokenizer_2, pipe.text_encoder_2, True, "penultimate", "clip_g"),
            ]
        else:
            sides = [TextSide(pipe.tokenizer, pipe.text_encoder, False, "last", "")]
        widths = {s.key: int(s.model.config.hidden_size) for s in sides}
        vectors = EmbeddingVectors(embeddings, widths, sides[0].tokenize)
        return cls(sides, clip_skip, vectors)

    @property
    def xl(self) -> bool:
        return len(self.sides) == 2

    def chunks(self, side: TextSide, text: str) -> list[Chunk]:
        """A text's chunks for one encoder (tokenize_line)."""
        pieces = parse_attention(text)
        ids = side.tokenize([t for t, _ in pieces])
        finder = self.embeddings.finder() if self.embeddings is not None else None
        laid = [(tokens, w, is_break((t, w))) for tokens, (t, w) in zip(ids, pieces, strict=True)]
        chunks, _ = chunk_tokens(
            laid,
            start=side.start,
            end=side.end,
            comma=side.comma,
            backtrack=self.backtrack,
            find_embedding=finder,
        )
        return chunks

    def token_count(self, text: str) -> int:
        """A text's token count as the WebUI shows it (n of the 75 per chunk)."""
        side = self.sides[0]
        pieces = parse_attention(text)
        ids = side.tokenize([t for t, _ in pieces])
        laid = [(tokens, w, is_break((t, w))) for tokens, (t, w) in zip(ids, pieces, strict=True)]
        return chunk_tokens(laid, start=side.start, end=side.end, comma=side.comma)[1]

    def encode(self, texts: Sequence[str], *, negative: bool = False) -> Encoded:
        """The texts of one prompt (its schedule), encoded together as the WebUI does: padded
        to one chunk count with empty chunks, each chunk's weights and mean over all texts."""
        import torch

        if self.xl and negative and all(t == "" for t in texts):
            return self._zeros(len(texts))  # SDXL's empty negative prompt (force_zero_embeddings)
        parts, pooled = [], None
        for side in self.sides:
            per_text = [self.chunks(side, t) for t in texts]
            count = max(len(c) for c in per_text)
            zs = []
            blank = empty_chunk(side.start, side.end)
            for k in range(count):
                batch = [c[k] if k < len(c) else blank for c in per_text]
                z, pool = self._encode_chunk(side, batch)
                zs.append(z)
                if k == 0:
                    pooled = pool if side.open_clip else pooled
            parts.append(torch.cat(zs, dim=1))
        if len({p.shape[1] for p in parts}) > 1:
            raise ValueError(
                "the prompt's two tokenizers made different chunk counts; shorten the prompt"
            )
        return Encoded(torch.cat(parts, dim=2), pooled if self.xl else None)

    def _zeros(self, n: int) -> Encoded:
        import torch

        side = self.sides[-1]
        model = side.model
        width = sum(int(s.model.config.hidden_size) for s in self.sides)
        hidden = torch.zeros((n, 77, width), dtype=model.dtype, device=model.device)
        pooled = torch.zeros((n, int(model.config.projection_dim)), dtype=model.dtype)
        return Encoded(hidden, pooled.to(model.device))

    def empty(self) -> Encoded:
        """The empty prompt's encoding (one chunk), which pads shorter conditionings."""
        if self._empty is None:
            self._empty = self.encode([""])
        return self._empty

    def _encode_chunk(self, side: TextSide, batch: Sequence[Chunk]) -> tuple[Any, Any]:
        """One chunk index of a batch of texts: hidden states with the weights applied and the
        mean restored, and the pooled output (bigG)."""
        import torch

        model = side.model
        tokens = torch.tensor([c.tokens for c in batch], device=model.device)
        if side.open_clip:  # open_clip pads with 0 after the first end token
            for row, c in enumerate(batch):
                tokens[row, c.tokens.index(side.end) + 1 :] = 0
        fixes = [
            [(offset, self._vector(name, side.key)) for offset, name, _ in c.embeddings]
            for c in batch
        ]
        hook = None
        if any(fixes):
            embedding = text_model(model).embeddings.token_embedding

            def place(module: Any, inputs: Any, output: Any) -> Any:
                out = output.clone()
                for row, row_fixes in enumerate(fixes):
                    for offset, vec in row_fixes:
                        n = min(out.shape[1] - offset - 1, vec.shape[0])
                        out[row, offset + 1 : offset + 1 + n] = vec[:n].to(out)
                return out

            hook = embedding.register_forward_hook(place)
        try:
            out = model(input_ids=tokens, output_hidden_states=True)
        finally:
            if hook is not None:
                hook.remove()
        if side.layer == "penultimate":
            z = out.hidden_states[-2]
        elif self.clip_skip > 1:
            z = text_model(model).final_layer_norm(out.hidden_states[-self.clip_skip])
        else:
            z = out.last_hidden_state
        pooled = getattr(out, "text_embeds", None) if side.open_clip else None
        weights = torch.tensor([c.weights for c in batch], device=z.device, dtype=z.dtype)
        mean = z.mean()
        z = z * weights.unsqueeze(-1)
        new = z.mean()
        if new != 0:  # an untrained model's mean can be exactly 0, where the WebUI makes NaN
            z = z * (mean / new)
        return z, pooled

    def _vector(self, name: str, key: str) -> Any:
        assert self.embeddings is not None
        vectors = self.embeddings.vectors(name)
        return vectors.get(key, vectors.get(""))

    def conditioning(
        self,
        prompts: Sequence[ParsedPrompt],
        negatives: Sequence[ParsedPrompt],
        steps: int,
    ) -> Conditioning:
        """A batch's conditioning over `steps` schedule steps: each prompt once (a batch of
        the same prompt shares it), every text of its schedule encoded together."""
        cache: dict[tuple[bool, tuple[tuple[int, str], ...]], Schedule] = {}

        def schedule(p: ParsedPrompt, negative: bool) -> Schedule:
            key = (negative, p.schedule)
            if key not in cache:
                encoded = self.encode([t for _, t in p.schedule], negative=negative)
                ends = [end for end, _ in p.schedule]
                cache[key] = Schedule(ends, encoded)
            return cache[key]

        return Conditioning(
            [schedule(p, False) for p in prompts],
            [schedule(p, True) for p in negatives],
            steps,
            self.empty,
        )


@dataclass
class Schedule:
    """One prompt's conditioning over the steps: texts end at `ends` (last step of each)."""

    ends: list[int]
    encoded: Encoded

    def at(self, step: int) -> int:
        """Which text holds at `step` (the WebUI's rule: the first whose end is at or after
        it; past the last, the first)."""
        for index, end in enumerate(self.ends):
            if step <= end:
                return index
        return 0


@dataclass
class Conditioning:
    """A batch's prompts and negative prompts over the sampling steps.

    `cond_at(step)` is what a sampler loop calls before each model evaluation (step counted from
    0, one per call of the model, as the WebUI's CFG denoiser counts); `padded_at` gives cond
    and uncond the same length, for a sampler that evaluates both in one batch."""

    conds: list[Schedule]
    unconds: list[Schedule]
    steps: int
    empty: Callable[[], Encoded]

    @property
    def scheduled(self) -> bool:
        """Whether any prompt changes during sampling."""
        return any(len(s.ends) > 1 for s in [*self.conds, *self.unconds])

    def cond_at(self, step: int) -> Conds:
        picks = [s.at(step) for s in self.conds]
        cond, cond_pooled = _stack([s.encoded for s in self.conds], picks)
        picks = [s.at(step) for s in self.unconds]
        uncond, uncond_pooled = _stack([s.encoded for s in self.unconds], picks)
        return Conds(cond, uncond, cond_pooled, uncond_pooled)

    def padded_at(self, step: int) -> Conds:
        """cond_at with the shorter of cond and uncond padded with the empty prompt's chunk, as
        the WebUI's "Pad prompt/negative prompt" option does."""
        import torch

        c = self.cond_at(step)
        if c.cond.shape[1] == c.uncond.shape[1]:
            return c
        empty = self.empty().hidden[:1].to(c.cond)
        repeats = abs(c.cond.shape[1] - c.uncond.shape[1]) // empty.shape[1]

        def pad(t: Any) -> Any:
            return torch.cat([t, empty.repeat(t.shape[0], repeats, 1)], dim=1)

        if c.cond.shape[1] < c.uncond.shape[1]:
            c.cond = pad(c.cond)
        else:
            c.uncond = pad(c.uncond)
        return c


def _stack(encoded: Sequence[Encoded], picks: Sequence[int]) -> tuple[Any, Any]:
    """One text of each prompt, as a batch; shorter prompts repeat their last vector, as the
    WebUI stacks a batch's conditionings."""
    import torch

    rows = [e.hidden[i] for e, i in zip(encoded, picks, strict=True)]
    longest = max(r.shape[0] for r in rows)
    rows = [
        r if r.shape[0] == longest else torch.cat([r, r[-1:].repeat(longest - r.shape[0], 1)])
        for r in rows
    ]
    pooled = None
    if encoded[0].pooled is not None:
        pooled = torch.stack([e.pooled[i] for e, i in zip(encoded, picks, strict=True)])
    return torch.stack(rows), pooled
