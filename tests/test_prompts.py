"""The WebUI's prompt language, headless: checked against A1111 1.10.1's own results.

tests/data/a1111_prompts.py holds what the WebUI's real prompt code returns for a list of
prompts (how it was made is said there); these tests run Multipass's own code on the same
prompts. Hypothesis adds: no text crashes the parser, and `(x:1.0)` is `x`.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lib_multipass import prompts
from lib_multipass.prompts import (
    CHUNK,
    PromptError,
    chunk_tokens,
    composable_parts,
    extra_networks,
    is_break,
    lora_uses,
    parse_attention,
    parse_prompt,
    prompt_schedule,
    single_part,
)
from tests.data import a1111_prompts as A

START, END = 49406, 49407


@pytest.mark.parametrize("index", range(len(A.SCHEDULES)))
def test_prompt_editing_and_alternation_as_a1111(index):
    prompt = A.SCHEDULES[index]
    for steps, want in zip((10, 20), A.SCHEDULES_A1111[index], strict=True):
        assert prompt_schedule(prompt, steps) == [tuple(x) for x in want], (prompt, steps)


@pytest.mark.parametrize("index", range(len(A.ATTENTION)))
def test_emphasis_escapes_and_break_as_a1111(index):
    want = [tuple(x) for x in A.ATTENTION_A1111[index]]
    assert parse_attention(A.ATTENTION[index]) == want  # the same floats, bit for bit


def test_a_break_inside_brackets_is_a_word_as_in_a1111():
    assert parse_attention("(a BREAK b)") == [("a", 1.1), ("BREAK", -1.1), ("b", 1.1)]
    assert not is_break(("BREAK", -1.1)) and is_break(("BREAK", -1.0))


@pytest.mark.parametrize("index", range(len(A.MULTICOND)))
def test_and_and_prompt_weights_split_as_a1111(index):
    (indexes, texts) = A.MULTICOND_A1111[index]
    want = [(texts[i], w) for i, w in indexes]
    assert composable_parts(A.MULTICOND[index]) == want


def test_and_and_a_prompt_weight_are_refused_by_name():
    assert single_part("a cat:1") == "a cat"  # weight 1 is the WebUI's plain prompt
    with pytest.raises(PromptError, match="AND"):
        single_part("a cat AND a dog")
    with pytest.raises(PromptError, match=r"':1\.5'.*composable-diffusion weight"):
        single_part("a cat:1.5")


@pytest.mark.parametrize("index", range(len(A.NETWORKS)))
def test_extra_network_tags_cut_out_as_a1111(index):
    text, tags = extra_networks(A.NETWORKS[index])
    want_text, want_tags = A.NETWORKS_A1111[index]
    assert text == want_text
    grouped: dict[str, list[list[str]]] = {}
    for tag in tags:
        grouped.setdefault(tag.kind, []).append(list(tag.args))
    assert [[k, v] for k, v in grouped.items()] == want_tags


def test_lora_tags_read_as_the_webuis_lora_extension():
    _, tags = extra_networks("<lora:a:0.5> <lyco:b:te=0.3:unet=1.5> <lora:c:1:0.2:dyn=4> <lora:d>")
    uses, problems = lora_uses(tags)
    assert problems == []
    assert [(u.name, u.te, u.unet, u.dyn) for u in uses] == [
        ("a", 0.5, 0.5, None),
        ("b", 0.3, 1.5, None),
        ("c", 1.0, 0.2, 4),
        ("d", 1.0, 1.0, None),
    ]
    _, tags = extra_networks("<lora:x:heavy> <hypernet:h:1> <foo:bar>")
    _, problems = lora_uses(tags)
    assert "the weight 'heavy' is not a number" in problems[0]
    assert "hypernetworks are not loaded headless" in problems[1]
    assert "unknown <foo:...> tag" in problems[2]


def test_negative_prompts_keep_their_tags_and_and_as_text():
    """The WebUI reads tags and AND in the positive prompt only."""
    parsed = parse_prompt("<lora:x:1> a AND b:2", 20, negative=True)
    assert parsed.loras == () and parsed.schedule == ((20, "<lora:x:1> a AND b:2"),)


@pytest.fixture(scope="module")
def clip_tokenizer(tmp_path_factory):
    from transformers import CLIPTokenizer

    from lib_multipass import tiny
    from lib_multipass.backends.diffusers_backend import SD1_ARCHITECTURE, clip_vocabulary

    folder = tmp_path_factory.mktemp("clip") / "cfg"
    tiny.write_config_dir(folder, SD1_ARCHITECTURE, clip_vocabulary())
    return CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))


def _finder(tokens_by_name, vectors):
    table = {}
    for name, ids in tokens_by_name.items():
        table.setdefault(ids[0], []).append((ids, name))
    for options in table.values():
        options.sort(key=lambda x: len(x[0]), reverse=True)

    def find(tokens, position):
        for ids, name in table.get(tokens[position], ()):
            if list(tokens[position : position + len(ids)]) == ids:
                return name, vectors[name], len(ids)
        return None

    return find


@pytest.mark.parametrize("open_clip", [False, True], ids=["clip-l", "open-clip"])
@pytest.mark.parametrize("index", range(len(A.CHUNKS)))
def test_chunks_as_a1111(clip_tokenizer, index, open_clip):
    """75-token chunks with A1111's rules: BREAK, the last-comma backtrack, embeddings never
    straddling two chunks, the token count; CLIP-L's and bigG's tokenizers alike."""
    from lib_multipass.backends.conditioning import tokenize

    names = {n: tokenize(clip_tokenizer, [n])[0] for n in ("shinyfox", "badhands")}
    assert names == A.EMBEDDING_TOKENS_A1111
    vectors = {n: len(v) for n, v in A.EMBEDDING_VECTORS_A1111.items()}
    pieces = parse_attention(A.CHUNKS[index])
    ids = tokenize(clip_tokenizer, [t for t, _ in pieces], open_clip=open_clip)
    laid = [(t, w, is_break(p)) for t, p, (_, w) in zip(ids, pieces, pieces, strict=True)]
    chunks, count = chunk_tokens(
        laid, start=START, end=END, comma=267, find_embedding=_finder(names, vectors)
    )
    want_count, want_chunks = A.CHUNKS_A1111[index]
    assert count == want_count
    assert len(chunks) == len(want_chunks)
    for chunk, (body, weights, fixes) in zip(chunks, want_chunks, strict=True):
        pad = CHUNK - len(body)
        assert chunk.tokens == [START, *body, *[END] * pad, END]
        assert [round(w, 6) for w in chunk.weights] == [1.0, *weights, *[1.0] * pad, 1.0]
        assert [[offset, name] for offset, name, _ in chunk.embeddings] == fixes


# -- the encoder against A1111's forward ---------------------------------------------------------


@pytest.fixture(scope="module")
def small_clip(clip_tokenizer):
    """A small CLIP text model (CLIP's vocabulary, deterministic weights) and our encoder on
    it, with the test embeddings, as A1111 encoded with it."""
    torch = pytest.importorskip("torch")
    from transformers import CLIPTextConfig, CLIPTextModel

    from lib_multipass.backends.conditioning import EmbeddingVectors, PromptEncoder, TextSide

    model = A.fill(CLIPTextModel(CLIPTextConfig(**A.CONFIG))).eval()
    side = TextSide(clip_tokenizer, model, False, "last", "")
    vectors = EmbeddingVectors(None, {"": 32}, side.tokenize)
    vectors.set_extra({n: {"": torch.tensor(v)} for n, v in A.EMBEDDING_VECTORS_A1111.items()})
    return PromptEncoder([side], embeddings=vectors)


def _stats(z):
    z = z[0].double()
    t = z.shape[0]
    picks = [(0, 0), (1, 1), (2, 5), (5, 7), (t // 2, 3), (t - 1, 31)]
    return {
        "shape": list(z.shape),
        "sum": float(z.sum()),
        "abs": float(z.abs().sum()),
        "sq": float((z * z).sum()),
        "picks": [float(z[i, j]) for i, j in picks],
    }


def _close(got, want):
    assert got["shape"] == want["shape"]
    for key in ("sum", "abs", "sq"):
        assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-3), key
    assert got["picks"] == pytest.approx(want["picks"], rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("clip_skip", [1, 2])
@pytest.mark.parametrize("index", range(len(A.ENCODE)))
def test_encoding_as_a1111(small_clip, index, clip_skip):
    """Weights multiplied in and the mean restored, chunks joined, embeddings in place, clip
    skip through the final layer norm: the same numbers as A1111's forward."""
    import torch

    small_clip.clip_skip = clip_skip
    with torch.inference_mode():
        got = small_clip.encode([A.ENCODE[index]]).hidden
    _close(_stats(got), A.ENCODE_A1111[index][clip_skip - 1])


def test_a_schedules_texts_are_encoded_together_as_a1111(small_clip):
    """The texts of one prompt's schedule share one mean restoration, as in A1111."""
    import torch

    small_clip.clip_skip = 1
    texts = [t for _, t in prompt_schedule("a [red:blue:3] (fox:1.3) in snow", 10)]
    assert texts == A.ENCODE_BATCH_A1111["texts"]
    with torch.inference_mode():
        got = small_clip.encode(texts).hidden
    for row, want in enumerate(A.ENCODE_BATCH_A1111["rows"]):
        _close(_stats(got[row : row + 1]), want)


# -- properties ----------------------------------------------------------------------------------

BRACKETY = st.text(alphabet=st.sampled_from(list("ab ()[]:|\\,.0123456789-BREAK\n<>")), max_size=60)


@given(st.one_of(BRACKETY, st.text(max_size=200)), st.integers(1, 150))
def test_no_text_crashes_the_parser(text, steps):
    """Any text either parses (a schedule ending at the last step, pieces with weights) or is
    refused with a PromptError saying why; never another exception."""
    try:
        parsed = parse_prompt(text, steps)
    except PromptError as e:
        assert str(e)
        return
    assert parsed.schedule[-1][0] == steps
    assert all(1 <= end <= steps for end, _ in parsed.schedule)
    for _, variant in parsed.schedule:
        assert parse_attention(variant)


@given(st.text(alphabet=st.sampled_from(list("abcxyz ,.-'0123456789")), min_size=1, max_size=80))
def test_weight_one_is_no_weight(words):
    """`(x:1.0)` gives the same pieces, hence the same tokens, weights and encoding, as x."""
    assert parse_attention(f"({words}:1.0)") == parse_attention(words)
    assert prompt_schedule(f"({words}:1.0)", 20) == [(20, f"({words}:1.0)")]


def test_weight_one_encodes_exactly_as_none(small_clip):
    import torch

    small_clip.clip_skip = 1
    with torch.inference_mode():
        a = small_clip.encode(["a (cat:1.0) on a mat"]).hidden
        b = small_clip.encode(["a cat on a mat"]).hidden
        c = small_clip.encode(["a (cat) on a mat"]).hidden
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_deep_nesting_is_refused_not_a_crash():
    with pytest.raises(PromptError, match="nested at most"):
        prompt_schedule("(" * (prompts.MAX_NESTING + 5) + "x", 20)
    assert prompt_schedule("(" * 20 + "[a:b:3]" + ")" * 20, 10)[0][0] == 3


def test_a1111s_own_parser_varies_where_ours_takes_the_edit():
    """Where a stray bracket sits next to an edit, A1111's Earley parse differs from one run
    to the next (lark resolves the ambiguity through Python's hash seed): '[a:3][' was a
    schedule in some runs and text in others. Ours always takes the edit."""
    assert prompt_schedule("[a:3][", 10) == [(3, "["), (10, "a[")]
