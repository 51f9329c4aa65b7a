"""The WebUI's prompt language, headless: extra-network tags, prompt editing, emphasis, BREAK.

Pure (no torch). Each function follows what AUTOMATIC1111 1.10.1 does with a prompt before its
text encoder sees it, in the same order (modules/processing.py, extra_networks.py,
prompt_parser.py, sd_hijack_clip.py), so a recipe means the same headless as in the WebUI:

1. `<kind:args>` tags are cut out of the prompt (`extra_networks`); `<lora:name:w>` (and its
   alias `<lyco:...>`) become LoRA uses (`lora_uses`).
2. The positive prompt is split at `AND` with an optional trailing `:weight` per part
   (composable diffusion); the runner takes one part of weight 1 (`composable_parts`).
3. Prompt editing `[a:b:when]`, `[a:when]`, `[a::when]` and alternation `[a|b]` give one text
   per stretch of sampling steps (`prompt_schedule`).
4. Each text is split into pieces with weights: `(x)` x1.1, `[x]` /1.1, `(x:w)`, escapes, and
   `BREAK` (`parse_attention`).
5. The tokens of the pieces are laid into 75-token chunks, with the WebUI's comma backtracking
   and textual-inversion embeddings in place (`chunk_tokens`).

The encoder (lib_multipass.backends.conditioning) turns the chunks into embeddings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

BREAK_WEIGHT = -1.0  # parse_attention's mark of a BREAK piece, as the WebUI marks it
CHUNK = 75  # tokens of prompt per chunk; with its start and end tokens a chunk is 77
COMMA_BACKTRACK = 20  # the WebUI's comma_padding_backtrack default ("Prompt word wrap length")
MAX_NESTING = 64  # brackets nested deeper than this are refused (the parser recurses per level)
LORA_KINDS = ("lora", "lyco")  # lyco: the WebUI's alias of lora (Lora extension, lora_script)


class PromptError(ValueError):
    """A prompt the runner cannot take; the message says what and why, for a Problem."""


# -- 1. extra-network tags --------------------------------------------------------------------

_TAG = re.compile(r"<(\w+):([^>]+)>")  # as the WebUI's extra_networks.re_extra_net matches


@dataclass(frozen=True)
class Tag:
    """An extra-network tag as written in a prompt: `<kind:arg:arg...>`."""

    kind: str
    args: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class LoraUse:
    """One `<lora:name:te:unet:dyn>` tag: the LoRA's name and its multipliers for the text
    encoders and the UNet (unet defaults to te, te to 1), as the WebUI's Lora extension reads
    them (positional, or te=, unet=, dyn= named)."""

    name: str
    te: float = 1.0
    unet: float = 1.0
    dyn: int | None = None
    text: str = ""


def extra_networks(prompt: str) -> tuple[str, list[Tag]]:
    """The prompt without its `<kind:args>` tags, and the tags in order (the WebUI removes every
    such tag, whatever its kind, before the text is encoded)."""
    tags: list[Tag] = []

    def cut(m: re.Match[str]) -> str:
        tags.append(Tag(m[1], tuple(m[2].split(":")), m[0]))
        return ""

    return _TAG.sub(cut, prompt), tags


def lora_uses(tags: Sequence[Tag]) -> tuple[list[LoraUse], list[str]]:
    """LoRA uses of `lora`/`lyco` tags, and why any tag cannot be used (a multiplier that is not
    a number, a hypernetwork, a kind the runner does not know)."""
    uses: list[LoraUse] = []
    problems: list[str] = []
    for tag in tags:
        if tag.kind not in LORA_KINDS:
            if tag.kind == "hypernet":
                problems.append(
                    f"{tag.text}: hypernetworks are not loaded headless (the WebUI's "
                    "<hypernet:...>); remove the tag or run the recipe in the WebUI"
                )
            else:
                problems.append(
                    f"{tag.text}: the runner knows <lora:name:weight> (and its alias <lyco:...>) "
                    f"only; the WebUI would drop an unknown <{tag.kind}:...> tag silently"
                )
            continue
        try:
            uses.append(_lora_use(tag))
        except ValueError as e:
            problems.append(f"{tag.text}: {e}")
    return uses, problems


def _lora_use(tag: Tag) -> LoraUse:
    positional: list[str] = []
    named: dict[str, str] = {}
    for item in tag.args:
        parts = item.split("=", 2)
        if len(parts) == 2:
            named[parts[0]] = parts[1]
        else:
            positional.append(item)
    if not positional or not positional[0]:
        raise ValueError("a LoRA tag names its LoRA first: <lora:name:weight>")
    te = _number(named.get("te", positional[1] if len(positional) > 1 else "1"), "weight")
    unet = _number(named.get("unet", positional[2] if len(positional) > 2 else str(te)), "unet")
    dyn_text = named.get("dyn", positional[3] if len(positional) > 3 else None)
    dyn = None
    if dyn_text is not None:
        try:
            dyn = int(dyn_text)
        except ValueError:
            raise ValueError(f"the dyn dimension {dyn_text!r} is not a whole number") from None
        if dyn < 1:
            raise ValueError(f"the dyn dimension {dyn} is not at least 1")
    return LoraUse(positional[0], te, unet, dyn, tag.text)


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"the {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"the {what} {text!r} is not a finite number")
    return value


# -- 2. AND --------------------------------------------------------------------------------------

_AND = re.compile(r"\bAND\b")
_PART_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def composable_parts(prompt: str) -> list[tuple[str, float]]:
    """A positive prompt's AND-separated parts, each with its trailing `:weight` (1 if none),
    the weight cut from its text, as the WebUI splits them for composable diffusion."""
    out = []
    for part in _AND.split(prompt):
        m = _PART_WEIGHT.search(part)
        if m is None:
            out.append((part, 1.0))
        else:
            out.append((m[1], float(m[2]) if m[2] is not None else 1.0))
    return out


def single_part(prompt: str) -> str:
    """The text the runner encodes for a positive prompt: its one composable part. `AND` and a
    part weight other than 1 (which scale the guidance per part) are refused with PromptError."""
    parts = composable_parts(prompt)
    if len(parts) > 1:
        raise PromptError(
            "a prompt without AND: the WebUI's composable diffusion (several prompts, each "
            "guiding the image with its own weight) is not run headless"
        )
    text, weight = parts[0]
    if weight != 1.0:
        raise PromptError(
            f"a prompt that does not end in ':{weight:g}': after the last word, the WebUI reads "
            "it as the prompt's composable-diffusion weight (it scales the guidance), which is "
            "not run headless; write (words:weight) for emphasis"
        )
    return text


# -- 3. prompt editing and alternation -----------------------------------------------------------

# the grammar the WebUI parses with lark (prompt_parser.schedule_parser), as a parser of our own:
#   start: (prompt | a stray '[', ']', '(', ')' or ':')*
#   prompt: (emphasized | scheduled | alternate | plain | whitespace)*
#   emphasized: '(' prompt ')' | '(' prompt ':' prompt ')' | '[' prompt ']'   (kept verbatim)
#   scheduled: '[' [prompt ':'] prompt ':' [ws] NUMBER [ws] ']'
#   alternate: '[' prompt ('|' [prompt])+ ']'
#   plain: one or more of: any character but \ [ ] ( ) : |, or \ and any character but a newline
# A prompt the grammar does not take is one plain text for every step, as in the WebUI.
_PLAIN = re.compile(r"(?:[^\\\[\]():|]|\\.)+")
_WS = re.compile(r"\s+")
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)")
_STRAY = "[]():"


@dataclass
class _Edit:
    before: list | None
    after: list
    number: str
    when: int = 0


@dataclass
class _Alt:
    options: list[list | None]


@dataclass
class _Parser:
    text: str
    memo: dict[int, tuple[list, int]] = field(default_factory=dict)
    depth: int = 0

    def prompt(self, i: int) -> tuple[list, int]:
        """The longest prompt from i (possibly empty): its nodes and where it ends."""
        if i in self.memo:
            return self.memo[i]
        nodes: list = []
        start = i
        while i < len(self.text):
            found = self.item(i)
            if found is None:
                break
            node, i = found
            nodes.append(node)
        self.memo[start] = (nodes, i)
        return nodes, i

    def item(self, i: int) -> tuple[object, int] | None:
        c = self.text[i]
        if c == "[":
            return self.nested(lambda: self.square(i))
        if c == "(":
            return self.nested(lambda: self.round(i))
        m = _PLAIN.match(self.text, i)
        if m:
            return m[0], m.end()
        return None

    def nested(self, parse: Callable[[], tuple[object, int] | None]) -> tuple[object, int] | None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise PromptError(f"brackets nested at most {MAX_NESTING} deep")
        try:
            return parse()
        finally:
            self.depth -= 1

    def round(self, i: int) -> tuple[object, int] | None:
        inner, j = self.prompt(i + 1)
        if self.at(j, ")"):
            return ["(", inner, ")"], j + 1
        if self.at(j, ":"):
            second, k = self.prompt(j + 1)
            if self.at(k, ")"):
                return ["(", inner, ":", second, ")"], k + 1
        return None

    def square(self, i: int) -> tuple[object, int] | None:
        first, j = self.prompt(i + 1)
        if self.at(j, "]"):
            return ["[", first, "]"], j + 1
        if self.at(j, ":"):
            edit = self.when(j + 1)  # [after:when]
            if edit is not None:
                number, end = edit
                return _Edit(None, first, number), end
            second, k = self.prompt(j + 1)
            if self.at(k, ":"):
                edit = self.when(k + 1)  # [before:after:when]
                if edit is not None:
                    number, end = edit
                    return _Edit(first, second, number), end
            return None
        if self.at(j, "|"):
            options: list[list | None] = [first]
            while self.at(j, "|"):
                option, j = self.prompt(j + 1)
                options.append(option or None)
            if self.at(j, "]"):
                return _Alt(options), j + 1
        return None

    def when(self, i: int) -> tuple[str, int] | None:
        """[ws] NUMBER [ws] ']' from i: the number's text and the end after ']'."""
        m = _WS.match(self.text, i)
        i = m.end() if m else i
        num = _NUMBER.match(self.text, i)
        if num is None:
            return None
        i = num.end()
        m = _WS.match(self.text, i)
        i = m.end() if m else i
        return (num[0], i + 1) if self.at(i, "]") else None

    def at(self, i: int, c: str) -> bool:
        return i < len(self.text) and self.text[i] == c

    def start(self) -> list | None:
        """The whole text's nodes, or None if the grammar does not take it."""
        nodes: list = []
        i = 0
        while i < len(self.text):
            found, j = self.prompt(i)
            if j > i:
                nodes.append(found)
                i = j
            elif self.text[i] in _STRAY:
                nodes.append(self.text[i])
                i += 1
            else:
                return None  # a '|' outside alternation, a '\' at the end or before a newline
        return nodes


def _walk(node: object, visit: Callable[[object], None]) -> None:
    stack = [node]
    while stack:
        n = stack.pop()
        visit(n)
        if isinstance(n, list):
            stack.extend(n)
        elif isinstance(n, _Edit):
            stack.extend([n.before, n.after])
        elif isinstance(n, _Alt):
            stack.extend(n.options)


def _text_at(node: object, step: int) -> str:
    out: list[str] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if n is None:
            continue
        if isinstance(n, str):
            out.append(n)
        elif isinstance(n, list):
            stack.extend(reversed(n))
        elif isinstance(n, _Edit):
            stack.append(n.before if step <= n.when else n.after)
        elif isinstance(n, _Alt):
            stack.append(n.options[(step - 1) % len(n.options)])
    return "".join(out)


def prompt_schedule(prompt: str, steps: int) -> list[tuple[int, str]]:
    """The texts of a prompt over `steps` sampling steps: [(last step, text), ...], the last
    entry's step being `steps`. A stretch's text holds from the step after the previous entry's
    to its own (the WebUI's get_learned_conditioning_prompt_schedules, with its default timeline:
    a whole number is a step, a number with a '.' a fraction of the steps)."""
    tree = _Parser(prompt).start()
    if tree is None:
        return [(steps, prompt)]
    ends = {steps}

    def collect(n: object) -> None:
        if isinstance(n, _Edit):
            value = float(n.number)
            if "." in n.number:
                value *= steps
            if not math.isfinite(value):
                raise PromptError(f"a prompt-editing step that is a finite number, not {n.number}")
            n.when = min(steps, int(value))
            if n.when >= 1:
                ends.add(n.when)
        elif isinstance(n, _Alt):
            ends.update(range(1, steps + 1))

    _walk(tree, collect)
    return [(end, _text_at(tree, end)) for end in sorted(ends)]


def is_scheduled(prompt: str, steps: int) -> bool:
    """Whether a prompt's text changes during sampling (prompt editing or alternation)."""
    return len(prompt_schedule(prompt, steps)) > 1


# -- 4. emphasis and BREAK -----------------------------------------------------------------------

ROUND, SQUARE = 1.1, 1 / 1.1
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
# one lexeme of the WebUI's attention syntax, in the order its parser tries them
_LEXEME = re.compile(
    r"(?P<escaped>\\[()\[\]\\])|(?P<backslash>\\)|(?P<open>[(\[])"
    r"|(?P<weighted>:\s*(?P<weight>[+-]?[.\d]+)\s*\))|(?P<close>[)\]])"
    r"|(?P<text>[^\\()\[\]:]+)|(?P<colon>:)"
)


def parse_attention(text: str) -> list[tuple[str, float]]:
    """A text as pieces with their emphasis weights: `(x)` 1.1, `[x]` 1/1.1, `(x:w)` w, nested
    multiplying, `\\(` `\\)` `\\[` `\\]` `\\\\` literal; an unclosed bracket weighs to the end;
    `BREAK` is a piece ('BREAK', -1) that starts a new chunk. Runs of equal weight are merged.
    Like the WebUI's parse_prompt_attention, including its quirks: a BREAK inside brackets gets
    their weight and is then just the word, and a lone backslash is dropped."""
    pieces: list[list] = []
    rounds: list[int] = []
    squares: list[int] = []

    def scale(start: int, by: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= by

    for m in _LEXEME.finditer(text):
        kind = m.lastgroup if m.lastgroup != "weight" else "weighted"
        if kind in ("escaped", "backslash"):
            pieces.append([m[0][1:], 1.0])
        elif kind == "open":
            (rounds if m[0] == "(" else squares).append(len(pieces))
        elif kind == "weighted" and rounds:
            try:
                weight = float(m["weight"])
            except ValueError:
                raise PromptError(
                    f"an emphasis weight that is a number, not {m['weight']!r} (in {m[0]!r})"
                ) from None
            scale(rounds.pop(), weight)
        elif m[0] == ")" and rounds:
            scale(rounds.pop(), ROUND)
        elif m[0] == "]" and squares:
            scale(squares.pop(), SQUARE)
        else:
            for k, part in enumerate(_BREAK.split(m[0])):
                if k:
                    pieces.append(["BREAK", BREAK_WEIGHT])
                pieces.append([part, 1.0])
    for start in rounds:
        scale(start, ROUND)
    for start in squares:
        scale(start, SQUARE)
    if not pieces:
        pieces = [["", 1.0]]
    merged = [pieces[0]]
    for piece in pieces[1:]:
        if piece[1] == merged[-1][1]:
            merged[-1][0] += piece[0]
        else:
            merged.append(piece)
    return [(t, w) for t, w in merged]


def is_break(piece: tuple[str, float]) -> bool:
    """Whether a parsed piece is a BREAK (a new chunk), as the WebUI tells it."""
    return piece[0] == "BREAK" and piece[1] == BREAK_WEIGHT


# -- 5. chunks -----------------------------------------------------------------------------------


@dataclass
class Chunk:
    """77 token ids (start, 75 of prompt, end), a weight per token, and the embeddings whose
    vectors replace token ids: (offset in the 75, embedding name, vector count)."""

    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    embeddings: list[tuple[int, str, int]] = field(default_factory=list)


# (tokens, position) -> (embedding name, its vector count, tokens its name takes) or None
EmbeddingFinder = Callable[[Sequence[int], int], "tuple[str, int, int] | None"]


def chunk_tokens(
    pieces: Sequence[tuple[Sequence[int], float, bool]],
    *,
    start: int,
    end: int,
    comma: int | None,
    backtrack: int = COMMA_BACKTRACK,
    find_embedding: EmbeddingFinder | None = None,
) -> tuple[list[Chunk], int]:
    """Lay a prompt's pieces (token ids, weight, is a BREAK) into chunks of 75 tokens between a
    start and an end token, padded with end tokens, as the WebUI's tokenize_line does: a BREAK
    or a full chunk starts the next; a full chunk whose last comma is at most `backtrack` tokens
    back moves what follows the comma to the next chunk; an embedding's vectors never straddle
    two chunks. Returns the chunks and the prompt's token count (the WebUI's 'n/75')."""
    chunks: list[Chunk] = []
    chunk = Chunk()
    count = 0
    last_comma = -1

    def close(last: bool = False) -> None:
        nonlocal chunk, count, last_comma
        count += len(chunk.tokens) if last else CHUNK
        pad = CHUNK - len(chunk.tokens)
        if pad > 0:
            chunk.tokens += [end] * pad
            chunk.weights += [1.0] * pad
        chunk.tokens = [start, *chunk.tokens, end]
        chunk.weights = [1.0, *chunk.weights, 1.0]
        last_comma = -1
        chunks.append(chunk)
        chunk = Chunk()

    for tokens, weight, is_break_piece in pieces:
        if is_break_piece:
            close()
            continue
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == comma:
                last_comma = len(chunk.tokens)
            elif (
                backtrack
                and len(chunk.tokens) == CHUNK
                and last_comma != -1
                and len(chunk.tokens) - last_comma <= backtrack
            ):
                cut = last_comma + 1
                moved_tokens, moved_weights = chunk.tokens[cut:], chunk.weights[cut:]
                chunk.tokens, chunk.weights = chunk.tokens[:cut], chunk.weights[:cut]
                close()
                chunk.tokens, chunk.weights = moved_tokens, moved_weights
            if len(chunk.tokens) == CHUNK:
                close()
            found = find_embedding(tokens, position) if find_embedding else None
            if found is None:
                chunk.tokens.append(token)
                chunk.weights.append(weight)
                position += 1
                continue
            name, vectors, length = found
            if len(chunk.tokens) + vectors > CHUNK:
                close()
            chunk.embeddings.append((len(chunk.tokens), name, vectors))
            chunk.tokens += [0] * vectors
            chunk.weights += [weight] * vectors
            position += length
    if chunk.tokens or not chunks:
        close(last=True)
    return chunks, count


def empty_chunk(start: int, end: int) -> Chunk:
    """A chunk of no prompt, as the WebUI pads a batch of texts to the same chunk count."""
    return Chunk([start] + [end] * (CHUNK + 1), [1.0] * (CHUNK + 2))


# -- a prompt, checked ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt as the runner encodes it: its text without tags (one composable part for a
    positive prompt), its LoRA uses and its schedule over the sampling steps."""

    text: str
    loras: tuple[LoraUse, ...]
    schedule: tuple[tuple[int, str], ...]


def parse_prompt(prompt: str, steps: int, *, negative: bool = False) -> ParsedPrompt:
    """A prompt ready to encode over `steps` steps, or PromptError saying what the runner does
    not take. A negative prompt keeps its tags as text and is not split at AND, as in the WebUI
    (which reads tags and AND in the positive prompt only)."""
    loras: list[LoraUse] = []
    text = prompt
    if not negative:
        text, tags = extra_networks(prompt)
        loras, problems = lora_uses(tags)
        if problems:
            raise PromptError("; ".join(problems))
        text = single_part(text)
    schedule = prompt_schedule(text, steps)
    for _, variant in schedule:
        parse_attention(variant)  # a bad emphasis weight is named before the job
    return ParsedPrompt(text, tuple(loras), tuple(schedule))


def prompt_problem(prompt: str, *, negative: bool = False, steps: int = 20) -> str | None:
    """Why the runner cannot take a prompt (None if it can), for a Problem's 'allowed'."""
    try:
        parse_prompt(prompt, steps, negative=negative)
    except PromptError as e:
        return str(e)
    return None
