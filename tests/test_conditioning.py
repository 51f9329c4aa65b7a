"""Prompts, LoRAs, embeddings and clip skip headless, end to end on the built-in tiny models.

The encoder's numbers are checked against A1111's in test_prompts.py; here the whole runner:
what a prompt's syntax does to an image, LoRA files merged and put back, embeddings by name,
clip skip, prompt editing per step, and every problem named before the job.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import save_file  # noqa: E402

from lib_multipass.backends import lora as lora_merge  # noqa: E402
from lib_multipass.backends.diffusers_backend import BackendError, DiffusersBackend  # noqa: E402
from lib_multipass.engine import Job, SampleRequest, prepare, run_job  # noqa: E402
from lib_multipass.plan import JobContext  # noqa: E402
from lib_multipass.recipe import RecipeError, parse_recipe  # noqa: E402


def arr(img):
    return np.asarray(img.convert("RGB"))


def request(prompt="a red fox in snow", negative="blurry", **kw):
    fields = {"sampler": "Euler a", "scheduler": "", "steps": 4, "cfg_scale": 7.0, "seed": 5}
    fields |= {"width": 64, "height": 64}
    fields |= kw
    return SampleRequest(prompt, negative, **fields)


def image(backend, checkpoint="tiny-toon", **kw):
    backend.load_checkpoint(checkpoint)
    return arr(backend.generate([request(**kw)], lambda s, n: None)[0])


@pytest.fixture
def networks(tiny_models, tmp_path):
    """A backend with a LoRA folder and an embeddings folder the tests fill."""
    loras, embeddings = tmp_path / "loras", tmp_path / "embeddings"
    loras.mkdir()
    embeddings.mkdir()
    return loras, embeddings


def make_backend(tiny_models, loras=None, embeddings=None, **kw):
    return DiffusersBackend(
        [tiny_models],
        home=tiny_models.parent / "home",
        loras=[loras] if loras else [],
        embeddings=[embeddings] if embeddings else [],
        **kw,
    )


# -- prompt syntax -------------------------------------------------------------------------------


def test_weight_one_is_the_same_image_and_emphasis_is_not(backend):
    plain = image(backend, prompt="a red fox in snow")
    assert np.array_equal(image(backend, prompt="a (red fox:1.0) in snow"), plain)
    assert not np.array_equal(image(backend, prompt="a (red fox) in snow"), plain)
    assert not np.array_equal(image(backend, prompt="a [red fox] in snow"), plain)


def test_a_long_prompt_uses_all_its_tokens(backend):
    """Past 75 tokens a prompt goes on in a second chunk: what is written there changes the
    image (text past 75 tokens used to be cut off)."""
    first = "ab " * 37 + "a"  # the tiny tokenizer's 75 tokens: 'a' and 'b</w>' per word
    backend.load_checkpoint("tiny-toon")
    encoder = backend._encoder(backend._pipeline("txt2img"), 1)
    assert encoder.token_count(first) == 75
    assert len(encoder.chunks(encoder.sides[0], first + " cd")) == 2
    one = image(backend, prompt=first)
    two = image(backend, prompt=first + " cd cd cd")
    other = image(backend, prompt=first + " ef ef ef")
    assert not np.array_equal(one, two) and not np.array_equal(two, other)


def test_break_starts_a_new_chunk(backend):
    backend.load_checkpoint("tiny-toon")
    encoder = backend._encoder(backend._pipeline("txt2img"), 1)
    assert len(encoder.chunks(encoder.sides[0], "a red fox BREAK in snow")) == 2
    assert not np.array_equal(
        image(backend, prompt="a red fox BREAK in snow"), image(backend, prompt="a red fox in snow")
    )


def test_prompt_editing_changes_the_prompt_during_sampling(backend):
    """[a:b:2] samples 'a' up to step 2 and 'b' after: unlike either alone; with its switch
    after the last step it is 'a' throughout, bit for bit."""
    a, b = image(backend, prompt="a red fox"), image(backend, prompt="a blue whale")
    edited = image(backend, prompt="[a red fox:a blue whale:2]")
    assert not np.array_equal(edited, a) and not np.array_equal(edited, b)
    assert np.array_equal(image(backend, prompt="[a red fox:a blue whale:9]"), a)
    alternating = image(backend, prompt="a [red|blue] fox")
    assert not np.array_equal(alternating, image(backend, prompt="a red fox"))


def test_prompt_editing_is_asked_per_model_call(backend):
    """The sampler loop asks cond_at(step) per model call, from 0, as the WebUI's CFG
    denoiser counts; the texts hold to their end step (inclusive)."""
    backend.load_checkpoint("tiny-toon")
    pipe = backend._pipeline("txt2img")
    cond = backend.conditioning(pipe, [request(prompt="[cat:dog:2]", negative="[x::1]")])
    assert cond.scheduled and cond.steps == 4
    assert [s.ends for s in cond.conds] == [[2, 4]] and [s.ends for s in cond.unconds] == [[1, 4]]
    at = [cond.cond_at(step) for step in range(4)]
    assert torch.equal(at[0].cond, at[2].cond) and not torch.equal(at[2].cond, at[3].cond)
    assert torch.equal(at[0].uncond, at[1].uncond) and not torch.equal(at[1].uncond, at[2].uncond)
    heun = backend.conditioning(pipe, [request(prompt="[cat:dog:2]", sampler="Heun")])
    assert heun.steps == 8 and heun.conds[0].ends == [2, 8]  # second-order: twice the steps


def test_cond_and_uncond_of_different_lengths(backend):
    """A long prompt and a short negative: cond_at gives each its own length (the WebUI's
    default evaluates them apart); padded_at pads the shorter with the empty prompt's chunk
    (its 'Pad prompt/negative prompt' option), which the diffusers pipeline needs."""
    backend.load_checkpoint("tiny-toon")
    pipe = backend._pipeline("txt2img")
    long = "a red fox BREAK in snow BREAK at night"
    cond = backend.conditioning(pipe, [request(prompt=long, negative="blurry")])
    c = cond.cond_at(0)
    assert c.cond.shape[1] == 231 and c.uncond.shape[1] == 77
    padded = cond.padded_at(0)
    assert padded.uncond.shape[1] == 231 and torch.equal(padded.uncond[:, :77], c.uncond)
    assert torch.equal(padded.uncond[0, 77:154], cond.empty().hidden[0])
    assert image(backend, prompt=long).shape == (64, 64, 3)


def test_clip_skip_2_differs_from_1(backend):
    one = image(backend, clip_skip=1)
    assert not np.array_equal(image(backend, clip_skip=2), one)
    assert np.array_equal(image(backend, clip_skip=1), one)


def test_sdxl_conditioning_is_the_webuis(backend):
    """Both encoders' penultimate layers joined, the pooled output of bigG's first chunk, an
    empty negative prompt as zeros; emphasis and long prompts work; clip skip does not change
    SDXL (as in A1111)."""
    backend.load_checkpoint("tiny-xl")
    pipe = backend._pipeline("txt2img")
    cond = backend.conditioning(pipe, [request(prompt="a red fox BREAK in snow", negative="")])
    c = cond.cond_at(0)
    assert c.cond.shape == (1, 154, 80) and c.cond_pooled.shape == (1, 48)
    assert not c.uncond.any() and not c.uncond_pooled.any()
    first = backend.conditioning(pipe, [request(prompt="a red fox", negative="")]).cond_at(0)
    assert torch.allclose(first.cond_pooled, c.cond_pooled)  # the first chunk's pooled
    plain = image(backend, "tiny-xl")
    assert not np.array_equal(image(backend, "tiny-xl", prompt="a (red fox:1.3) in snow"), plain)
    assert np.array_equal(image(backend, "tiny-xl", clip_skip=2), plain)


def test_refused_syntax_is_named_before_the_job(backend):
    recipe = parse_recipe(
        {
            "passes": [
                {"prompt": "a cat AND a dog", "prompt_mode": "replace"},
                {"prompt": "x:1.4", "prompt_mode": "replace"},
            ]
        }
    )
    job = Job(JobContext(64, 64, steps=4, checkpoint="tiny-toon", prompt="<hypernet:h:1> a"))
    with pytest.raises(RecipeError) as e:
        prepare(recipe, job, backend)
    text = str(e.value)
    assert "base, field 'prompt': got '<hypernet:h:1> a'; allowed: <hypernet:h:1>: hyper" in text
    assert "pass 1, field 'prompt': got 'a cat AND a dog'; allowed: a prompt without AND" in text
    assert "pass 2, field 'prompt': got 'x:1.4'" in text


# -- LoRA ----------------------------------------------------------------------------------------

RANK = 4


def write_lora(path: Path, backend, checkpoint="tiny-toon", *, ldm_names=False, seed=0):
    """A kohya-format LoRA for a tiny checkpoint: lora_up/lora_down/alpha on a cross-attention
    layer, a resnet conv and a text-encoder projection of each encoder."""
    from lib_multipass.backends.lora import layer_names

    backend.load_checkpoint(checkpoint)
    pipe = backend._cache[checkpoint][0]
    names = layer_names(pipe)
    g = torch.Generator().manual_seed(seed)
    xl = getattr(pipe, "text_encoder_2", None) is not None
    attention = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
    if ldm_names:  # the same layer as the LDM layout names it (input_blocks.N.1...)
        attention = next(
            k for k in names if k.startswith("lora_unet_input_blocks_") and k.endswith("attn2_to_k")
        )
        assert (
            names[attention][0]
            is names["lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"][0]
        )
    if xl:
        wanted = [
            attention,
            "lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
            "lora_te2_text_model_encoder_layers_1_mlp_fc1",
        ]
    else:
        wanted = [
            attention,
            "lora_unet_down_blocks_0_resnets_0_conv1",
            "lora_te_text_model_encoder_layers_0_self_attn_q_proj",
        ]
    tensors = {}
    for key in wanted:
        weight = names[key][0].weight
        out, inp = weight.shape[0], weight.shape[1]
        kernel = list(weight.shape[2:])
        tensors[f"{key}.lora_down.weight"] = torch.randn([RANK, inp, *kernel], generator=g) * 0.5
        tensors[f"{key}.lora_up.weight"] = torch.randn(
            [out, RANK, *([1, 1] if kernel else [])], generator=g
        )
        tensors[f"{key}.alpha"] = torch.tensor(2.0)
    tensors["lora_unet_not_a_layer_of_this_model.lora_up.weight"] = torch.zeros(1, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in tensors.items()}, str(path))
    return tensors


def weights_of(backend, name):
    pipe = backend._cache[name][0]
    return {
        f"{part}.{k}": v.clone()
        for part in ("unet", "text_encoder", "vae")
        for k, v in getattr(pipe, part).state_dict().items()
    }


def test_a_lora_changes_the_image_as_its_weight_says(tiny_models, networks):
    loras, _ = networks
    backend = make_backend(tiny_models, loras)
    tensors = write_lora(loras / "knight.safetensors", backend)
    original = weights_of(backend, "tiny-toon")
    none = image(backend, prompt="a knight")
    zero = image(backend, prompt="a knight <lora:knight:0>")
    half = image(backend, prompt="a knight <lora:knight:0.5>")
    full = image(backend, prompt="<lora:knight:1> a knight")
    assert np.array_equal(zero, none)  # weight 0: no change, bit for bit
    assert not np.array_equal(half, none) and not np.array_equal(full, half)
    # the merge is the WebUI's: W + weight * alpha / rank * (up @ down), in the weight's dtype
    key = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    module = dict(lora_merge.layer_names(backend._cache["tiny-toon"][0]))[key][0]
    up = tensors[f"{key}.lora_up.weight"].half().float()
    down = tensors[f"{key}.lora_down.weight"].half().float()
    before = next(v for k, v in original.items() if k.endswith("layers.0.self_attn.q_proj.weight"))
    assert torch.allclose(module.weight, before + 1.0 * 2.0 / RANK * (up @ down), atol=1e-5)
    # another job without the LoRA: the cached model has its own weights back, bit for bit
    assert np.array_equal(image(backend, prompt="a knight"), none)
    after = weights_of(backend, "tiny-toon")
    assert all(torch.equal(after[k], original[k]) for k in original)
    assert backend.disk_loads["tiny-toon"] == 1


def test_te_and_unet_multipliers_apart(tiny_models, networks):
    loras, _ = networks
    backend = make_backend(tiny_models, loras)
    write_lora(loras / "knight.safetensors", backend)
    none = image(backend, prompt="a knight")
    te_only = image(backend, prompt="a knight <lora:knight:1:0>")
    unet_only = image(backend, prompt="a knight <lora:knight:te=0:unet=1>")
    assert len({none.tobytes(), te_only.tobytes(), unet_only.tobytes()}) == 3


def test_sdxl_loras_with_ldm_names(tiny_models, networks):
    """SDXL LoRAs name UNet layers in the LDM layout (input_blocks...), and the two text
    encoders lora_te1_/lora_te2_, as kohya writes them."""
    loras, _ = networks
    backend = make_backend(tiny_models, loras)
    write_lora(loras / "xl.safetensors", backend, "tiny-xl", ldm_names=True)
    none = image(backend, "tiny-xl", prompt="a knight")
    assert not np.array_equal(image(backend, "tiny-xl", prompt="a knight <lora:xl:1>"), none)
    assert np.array_equal(image(backend, "tiny-xl", prompt="a knight"), none)


def test_a_missing_or_unfit_lora_is_named_before_the_job(tiny_models, networks):
    loras, _ = networks
    backend = make_backend(tiny_models, loras)
    write_lora(loras / "knight.safetensors", backend)
    save_file({"lora_unet_x.hada_w1_a": torch.zeros(2, 2)}, str(loras / "loha.safetensors"))
    recipe = parse_recipe(
        {
            "passes": [
                {"prompt": "<lora:nope:1> a", "prompt_mode": "replace"},
                {"prompt": "<lora:loha:1> b", "prompt_mode": "replace"},
                {"prompt": "<lora:knight:1> c", "prompt_mode": "replace", "checkpoint": "tiny-xl"},
            ]
        }
    )
    job = Job(JobContext(64, 64, steps=4, checkpoint="tiny-toon", prompt="a knight"))
    with pytest.raises(RecipeError) as e:
        prepare(recipe, job, backend)
    text = str(e.value)
    assert (
        f"pass 1, field 'prompt': got '<lora:nope:1>'; allowed: a LoRA from {loras}: knight, loha"
    ) in text
    assert "pass 2, field 'prompt': got '<lora:loha:1>'; allowed: a LoRA that fits (loha." in text
    assert "LyCORIS LoHa" in text
    assert "knight.safetensors is an SD1.x LoRA; this pass's checkpoint is SDXL" in text


def test_each_crop_gets_the_loras_of_its_own_prompt(tiny_models, networks, monkeypatch):
    """A crop pass's [SEP] prompts each carry their own LoRA, as the WebUI applies the tags
    of the prompt being sampled."""
    loras, _ = networks
    backend = make_backend(tiny_models, loras)
    write_lora(loras / "knight.safetensors", backend)
    write_lora(loras / "dragon.safetensors", backend, seed=1)
    seen = []
    real = lora_merge.apply

    def spy(pipe, applied, uses):
        seen.append([u.name for u, _ in uses])
        return real(pipe, applied, uses)

    monkeypatch.setattr(lora_merge, "apply", spy)
    recipe = parse_recipe(
        {
            "passes": [
                {
                    "region": "crop",
                    "mask_source": "boxes",
                    "boxes": [[0, 0, 32, 32], [32, 32, 64, 64]],
                    "working_width": 64,
                    "working_height": 64,
                    "prompt": "<lora:knight:0.8> a knight [SEP] <lora:dragon:1> a dragon",
                    "prompt_mode": "replace",
                    "denoising_strength": 0.5,
                }
            ]
        }
    )
    ctx = JobContext(64, 64, steps=4, checkpoint="tiny-toon", prompt="two figures")
    result = run_job(recipe, Job(ctx, seeds=[3]), backend)
    assert result.complete, result.account()
    assert seen == [[], ["knight"], ["dragon"]]  # base, crop 1, crop 2
    assert backend._applied["tiny-toon"].key  # the last crop's LoRA, until the next use


def test_a_batch_with_different_loras_samples_each_with_its_own(tiny_models, networks):
    loras, _ = networks
    backend = make_backend(tiny_models, loras)
    write_lora(loras / "knight.safetensors", backend)
    backend.load_checkpoint("tiny-toon")
    a, b = request(prompt="<lora:knight:1> x", seed=1), request(prompt="x", seed=2)
    together = backend.generate([a, b], lambda s, n: None)
    alone = [backend.generate([r], lambda s, n: None)[0] for r in (a, b)]
    assert all(np.array_equal(arr(x), arr(y)) for x, y in zip(together, alone, strict=True))


# -- embeddings ----------------------------------------------------------------------------------


def test_an_embedding_is_used_by_its_file_name(tiny_models, networks):
    _, embeddings = networks
    g = torch.Generator().manual_seed(3)
    save_file({"emb_params": torch.randn(2, 32, generator=g)}, str(embeddings / "foxy.safetensors"))
    without = image(make_backend(tiny_models), prompt="a foxy in snow")
    backend = make_backend(tiny_models, embeddings=embeddings)
    with_it = image(backend, prompt="a foxy in snow")
    assert not np.array_equal(with_it, without)
    assert np.array_equal(image(backend, prompt="a FOXY in snow"), with_it)  # as the tokenizer
    # its vectors are in the prompt's tokens: 'foxy' becomes two embedding positions
    encoder = backend._encoder(backend._pipeline("txt2img"), 1)
    (chunk,) = encoder.chunks(encoder.sides[0], "a foxy in snow")
    assert chunk.embeddings == [(1, "foxy", 2)]


def test_an_sdxl_embedding_gives_each_encoder_its_vectors(tiny_models, networks):
    _, embeddings = networks
    g = torch.Generator().manual_seed(4)
    vectors = {"clip_l": torch.randn(2, 32, generator=g), "clip_g": torch.randn(2, 48, generator=g)}
    save_file(vectors, str(embeddings / "xlstyle.safetensors"))
    backend = make_backend(tiny_models, embeddings=embeddings)
    plain = image(make_backend(tiny_models), "tiny-xl", prompt="a xlstyle fox")
    assert not np.array_equal(image(backend, "tiny-xl", prompt="a xlstyle fox"), plain)
    encoder = backend._encoder(backend._pipeline("txt2img"), 1)
    assert [s.key for s in encoder.sides] == ["clip_l", "clip_g"]
    assert torch.equal(encoder._vector("xlstyle", "clip_g"), vectors["clip_g"])


def test_embeddings_the_runner_may_not_read_are_named(tiny_models, networks):
    _, embeddings = networks
    torch.save({"string_to_param": {"*": torch.randn(1, 32)}}, embeddings / "pickled.pt")
    save_file({"emb_params": torch.randn(1, 32)}, str(embeddings / "narrow.safetensors"))
    notes = []
    backend = make_backend(tiny_models, embeddings=embeddings, report=notes.append)
    recipe = parse_recipe(
        {"passes": [{"checkpoint": "tiny-xl", "prompt": "narrow", "prompt_mode": "replace"}]}
    )
    job = Job(JobContext(64, 64, steps=4, checkpoint="tiny-toon", prompt="a pickled fox"))
    with pytest.raises(RecipeError) as e:
        prepare(recipe, job, backend)
    assert "base, field 'prompt': got 'pickled'; allowed: an embedding the runner can read (" in (
        str(e.value)
    )
    assert "--allow-ckpt" in str(e.value)
    # an SD1 embedding in an SDXL prompt stays a word, as in the WebUI, and is said so
    assert any("embedding narrow (narrow.safetensors) is 32 wide" in n for n in notes)
    allowed = make_backend(tiny_models, embeddings=embeddings, allow_ckpt=True)
    plain = image(make_backend(tiny_models), prompt="a pickled fox")
    assert not np.array_equal(image(allowed, prompt="a pickled fox"), plain)


def test_a_lora_brings_its_bundled_embeddings(tiny_models, networks):
    loras, _ = networks
    backend = make_backend(tiny_models, loras)
    tensors = write_lora(loras / "knight.safetensors", backend)
    tensors["bundle_emb.knightstyle.string_to_param.*"] = torch.randn(1, 32)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(loras / "knight.safetensors"))
    with_word = image(backend, prompt="<lora:knight:1> knightstyle")
    backend2 = make_backend(tiny_models, loras)
    tensors.pop("bundle_emb.knightstyle.string_to_param.*")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(loras / "knight.safetensors"))
    assert not np.array_equal(image(backend2, prompt="<lora:knight:1> knightstyle"), with_word)


def test_a_lora_error_leaves_the_weights_as_they_were(tiny_models, networks):
    loras, _ = networks
    backend = make_backend(tiny_models, loras)
    tensors = write_lora(loras / "bad.safetensors", backend)
    key = "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"
    tensors[key] = torch.randn(5, RANK)  # the wrong shape for its layer
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(loras / "bad.safetensors"))
    original = weights_of(backend, "tiny-toon")
    with pytest.raises(BackendError, match=r"LoRA 'bad' .*shape"):
        image(backend, prompt="<lora:bad:1> x")
    after = weights_of(backend, "tiny-toon")
    assert all(torch.equal(after[k], original[k]) for k in original)


def test_clip_skip_deeper_than_the_encoder_is_named(backend):
    recipe = parse_recipe({"passes": [{"clip_skip": 5}]})
    job = Job(JobContext(64, 64, steps=4, checkpoint="tiny-toon", prompt="x"))
    with pytest.raises(RecipeError, match=r"pass 1, field 'clip_skip': got 5; allowed: 1 to 2"):
        prepare(recipe, job, backend)


def test_clip_skip_flows_from_base_and_pass_to_the_sampler(backend, monkeypatch):
    seen = []
    real = DiffusersBackend.generate

    def spy(self, requests, on_step):
        seen.append(requests[0].clip_skip)
        return real(self, requests, on_step)

    monkeypatch.setattr(DiffusersBackend, "generate", spy)
    recipe = parse_recipe({"passes": [{"denoising_strength": 0.3}, {"clip_skip": 1}]})
    ctx = dataclasses.replace(
        JobContext(64, 64, steps=4, checkpoint="tiny-toon", prompt="x"), clip_skip=2
    )
    assert run_job(recipe, Job(ctx, seeds=[1]), backend).complete
    assert seen == [2, 2, 1]
