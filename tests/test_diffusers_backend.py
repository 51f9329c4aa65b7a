"""The diffusers backend and the built-in models, on real files and real pipelines."""

import gzip
import hashlib

import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from lib_multipass import ldm, tiny  # noqa: E402
from lib_multipass.backends.diffusers_backend import (  # noqa: E402
    SAMPLERS,
    BackendError,
    DiffusersBackend,
    clip_vocabulary,
)
from lib_multipass.engine import SampleRequest  # noqa: E402
from lib_multipass.schedule import img2img_steps, txt2img_steps  # noqa: E402


def test_tiny_models_are_deterministic_and_small(tmp_path, tiny_models):
    again = tiny.ensure_tiny_models(tmp_path)
    for name in tiny.TINY_SEEDS:
        a = (tiny_models / f"{name}.safetensors").read_bytes()
        b = (again / f"{name}.safetensors").read_bytes()
        assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
        assert len(a) < 4 * 2**20
    toon = (tiny_models / "tiny-toon.safetensors").read_bytes()
    assert toon != (tiny_models / "tiny-photo.safetensors").read_bytes()


def test_tiny_models_use_the_webui_single_file_layout(tiny_models):
    from lib_multipass.checkpoints import read_safetensors_header, sniff_family

    keys = set(read_safetensors_header(tiny_models / "tiny-toon.safetensors"))
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    assert "first_stage_model.decoder.up.0.block.0.conv1.weight" in keys
    assert "cond_stage_model.transformer.text_model.final_layer_norm.weight" in keys
    assert sniff_family(tiny_models / "tiny-toon.safetensors") == "sd1"


def test_loading_through_from_single_file_gives_back_every_weight(backend):
    backend.load_checkpoint("tiny-toon")
    pipe = backend._cache["tiny-toon"][0]
    built = tiny.build_state_dict(tiny.TINY_SEEDS["tiny-toon"])
    up_attention = ["CrossAttn" in t for t in tiny.UNET["up_block_types"]]
    seen = set()
    for key, value in pipe.unet.state_dict().items():
        name = ldm.unet_key(key, tiny.UNET["layers_per_block"], up_attention)
        assert torch.equal(value.half(), built[name]), key
        seen.add(name)
    for key, value in pipe.vae.state_dict().items():
        name = ldm.vae_key(key, 4)
        want = built[name][:, :, 0, 0] if ldm.vae_needs_conv_shape(key) else built[name]
        assert torch.equal(value.half(), want), key
        seen.add(name)
    for key, value in pipe.text_encoder.state_dict().items():
        if not key.endswith("position_ids"):
            assert torch.equal(value.half(), built[ldm.clip_key(key)]), key
            seen.add(ldm.clip_key(key))
    assert seen == set(built)  # every tensor written was read back, none left over


def test_tokenizer_takes_any_text(backend):
    backend.load_checkpoint("tiny-toon")
    tok = backend._cache["tiny-toon"][0].tokenizer
    ids = tok("a café, 東京 — ok").input_ids
    assert ids[0] == tiny.BOS and ids[-1] == tiny.EOS
    assert tok.unk_token_id not in ids[1:-1]


@pytest.mark.parametrize(
    ("strength", "steps", "mode", "sampler"),
    [
        (0.5, 8, "proportional", "Euler"),
        (0.3, 10, "proportional", "Euler"),
        (1.0, 6, "proportional", "Euler"),
        (0.05, 20, "proportional", "Euler"),
        (0.5, 6, "fixed", "Euler"),
        (0.7, 5, "fixed", "Euler"),
        (0.5, 8, "proportional", "DDIM"),
        (0.7, 5, "fixed", "PLMS"),
        (0.6, 10, "proportional", "UniPC"),
        (0.5, 8, "proportional", "DPM++ 2M SDE"),
    ],
)
def test_img2img_runs_exactly_the_webui_steps(backend, strength, steps, mode, sampler):
    """Each step is reported once, against the total the plan counts (the timestep samplers
    take fewer than the others at the same strength), and the bar ends at 100%."""
    backend.load_checkpoint("tiny-toon")
    calls = []
    request = SampleRequest(
        "x",
        "",
        sampler,
        "",
        steps,
        5.0,
        1,
        64,
        64,
        strength=strength,
        step_mode=mode,
        image=Image.new("RGB", (64, 64), (120, 60, 30)),
    )
    backend.generate([request], lambda s, n: calls.append((s, n)))
    want = img2img_steps(strength, steps, mode, sampler).run
    assert calls == [(k, want) for k in range(1, want + 1)]


def test_every_listed_sampler_runs(backend):
    backend.load_checkpoint("tiny-toon")
    for sampler in SAMPLERS:
        for scheduler in ("", "Karras", "Exponential"):
            steps: list[int] = []
            request = SampleRequest("x", "", sampler, scheduler, 4, 5.0, 1, 64, 64)
            (image,) = backend.generate([request], lambda s, n, steps=steps: steps.append(s))
            want = txt2img_steps(4, sampler).run
            assert image.size == (64, 64) and steps == list(range(1, want + 1)), sampler


def test_unknown_sampler_scheduler_vae_and_upscaler_are_named(backend):
    problems = backend.check_sampling("Euler z", "", "", "pass 1")
    assert problems[0].field == "sampler" and "'Euler a'" not in problems[0].allowed
    assert "Euler a" in problems[0].allowed
    problems = backend.check_sampling("DDIM", "Karras 2", "vae-ft-mse", "pass 2")
    assert [p.field for p in problems] == ["scheduler", "vae"]
    with pytest.raises(BackendError, match="upscaler 'ESRGAN_4x' is not one of Lanczos"):
        backend.upscale(Image.new("RGB", (8, 8)), (16, 16), "ESRGAN_4x")


def test_ram_cache_spares_the_disk_and_is_bounded(tiny_models):
    roomy = DiffusersBackend([tiny_models], home=tiny_models.parent / "home")
    for name in ["tiny-toon", "tiny-photo"] * 3:
        roomy.load_checkpoint(name)
    assert dict(roomy.disk_loads) == {"tiny-toon": 1, "tiny-photo": 1}
    assert set(roomy.cached()) == {"tiny-toon", "tiny-photo"}

    tight = DiffusersBackend([tiny_models], home=tiny_models.parent / "home", cache_bytes=1)
    for name in ["tiny-toon", "tiny-photo"] * 3:
        tight.load_checkpoint(name)
    assert dict(tight.disk_loads) == {"tiny-toon": 3, "tiny-photo": 3}
    assert list(tight.cached()) == ["tiny-photo"]  # only the loaded one stays


def test_pickle_checkpoints_need_opt_in(tiny_models, tmp_path):
    (tmp_path / "old.ckpt").write_bytes(b"not loaded")
    backend = DiffusersBackend([tmp_path, tiny_models], home=tiny_models.parent / "home")
    with pytest.raises(BackendError, match=r"pickle-based \.ckpt.*--allow-ckpt"):
        backend.load_checkpoint("old")


def test_other_families_are_refused_clearly(tiny_models, tmp_path):
    from safetensors.torch import save_file

    save_file(
        {"model.diffusion_model.double_blocks.0.img_in.weight": torch.zeros(1)},
        str(tmp_path / "flux.safetensors"),
    )
    backend = DiffusersBackend([tmp_path, tiny_models], home=tiny_models.parent / "home")
    assert backend.checkpoint_family("flux") == "flux"
    assert "a Flux checkpoint, which the diffusers runner" in backend.describe_file(
        backend._file("flux")
    )
    with pytest.raises(BackendError, match=r"'flux' is flux: the diffusers runner loads SD1\.x"):
        backend.load_checkpoint("flux")


def test_clip_vocabulary_follows_clips_order(tmp_path):
    bpe = tmp_path / "bpe.txt.gz"
    with gzip.open(bpe, "wt", encoding="utf-8") as fh:
        fh.write("t h\nth e</w>\n")
    vocab, merges = clip_vocabulary(bpe)
    symbols = tiny.byte_symbols()
    assert vocab["!"] == 0 and vocab[symbols[-1]] == 255 and vocab["!</w>"] == 256
    assert vocab["th"] == 512 and vocab["the</w>"] == 513
    assert vocab["<|startoftext|>"] == 514 and vocab["<|endoftext|>"] == 515
    assert merges.splitlines() == ["#version: 0.2", "t h", "th e</w>"]


def test_clips_vocabulary_ships_with_multipass(tmp_path):
    """CLIP's merges come with Multipass (no open-clip-torch, nothing fetched): the tokenizer
    built from them gives CLIP's own ids (49,408 tokens; "A person riding a motorcycle" as the
    CLIP tokenizers document it)."""
    from transformers import CLIPTokenizer

    from lib_multipass.backends.diffusers_backend import SD1_ARCHITECTURE, clip_bpe_file

    assert clip_bpe_file().is_file() and clip_bpe_file().stat().st_size < 250_000
    vocab, _ = clip_vocabulary()
    assert len(vocab) == 49408 and vocab["<|endoftext|>"] == 49407 and vocab[",</w>"] == 267
    folder = tiny.write_config_dir(tmp_path / "cfg", SD1_ARCHITECTURE, (vocab, _))
    tok = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
    ids = tok("A person riding a motorcycle", add_special_tokens=False)["input_ids"]
    assert ids == [320, 2533, 6765, 320, 10297]


def test_sd1_architecture_has_sd15_parameter_counts():
    """The SD1 config the runner loads user checkpoints with builds SD1.5's exact networks."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lib_multipass.backends.diffusers_backend import SD1_ARCHITECTURE

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD1_ARCHITECTURE["unet"])
        vae = AutoencoderKL(**SD1_ARCHITECTURE["vae"])
        text = CLIPTextModel(CLIPTextConfig(**SD1_ARCHITECTURE["text_encoder"]))

    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert (count(unet), count(vae), count(text)) == (859_520_964, 83_653_863, 123_060_480)
