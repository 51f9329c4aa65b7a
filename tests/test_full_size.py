"""A full-size SD1.5 checkpoint, as the WebUI stores it, runs headless right after install.

The test writes a random-weight SD1.5 in the WebUI's single-file layout (LDM key names, fp16,
2.1 GB), and the runner lists it, loads it with its own configs and CLIP's vocabulary (shipped
with Multipass: no open-clip-torch, nothing fetched), tokenizes a prompt with the real CLIP
tokenizer and samples one step at 64x64. The file and the model are freed afterwards.
"""

from __future__ import annotations

import gc

import pytest

torch = pytest.importorskip("torch")

from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

from lib_multipass import ldm  # noqa: E402
from lib_multipass.backends.diffusers_backend import SD1_ARCHITECTURE, DiffusersBackend  # noqa: E402
from lib_multipass.engine import SampleRequest  # noqa: E402


def random_sd15(seed: int = 0) -> dict:
    """SD1.5's tensors under the WebUI's key names, random (norms 1, biases 0), fp16: made
    from the shapes alone (models built on the meta device), so it takes seconds, not minutes."""
    arch = SD1_ARCHITECTURE
    with torch.device("meta"):
        unet = UNet2DConditionModel(**arch["unet"])
        vae = AutoencoderKL(**arch["vae"])
        text = CLIPTextModel(CLIPTextConfig(**arch["text_encoder"]))
    g = torch.Generator().manual_seed(seed)

    def value(key: str, shape: torch.Size) -> torch.Tensor:
        if key.endswith(".bias"):
            return torch.zeros(shape, dtype=torch.float16)
        if len(shape) == 1:  # norm weights
            return torch.ones(shape, dtype=torch.float16)
        return (torch.randn(shape, generator=g) * 0.02).half()

    up_attention = ["CrossAttn" in t for t in arch["unet"]["up_block_types"]]
    out = {}
    for key, v in unet.state_dict().items():
        name = ldm.unet_key(key, arch["unet"]["layers_per_block"], up_attention)
        out[name] = value(key, v.shape)
    for key, v in vae.state_dict().items():
        shape = (*v.shape, 1, 1) if ldm.vae_needs_conv_shape(key) else v.shape
        out[ldm.vae_key(key, len(arch["vae"]["up_block_types"]))] = value(key, shape)
    for key, v in text.state_dict().items():
        if not key.endswith("position_ids"):
            out[ldm.clip_key(key)] = value(key, v.shape)
    return out


def test_a_full_size_sd15_checkpoint_runs_a_step_through_the_real_tokenizer(tmp_path):
    folder = tmp_path / "Stable-diffusion"
    folder.mkdir()
    path = folder / "sd15-random.safetensors"
    tensors = random_sd15()
    assert sum(t.numel() for t in tensors.values()) == 1_066_235_307  # SD1.5's parameters
    save_file(tensors, str(path))
    del tensors
    gc.collect()
    backend = DiffusersBackend([folder], home=tmp_path / "home", dtype="fp32", device="cpu")
    try:
        (c,) = backend.checkpoints()
        assert backend.describe_file(c) == "sd1"
        backend.load_checkpoint("sd15-random")
        encoder = backend._encoder(backend._pipeline("txt2img"), 1)
        (chunk,) = encoder.chunks(encoder.sides[0], "A person riding a (motorcycle:1.2)")
        assert chunk.tokens[:7] == [49406, 320, 2533, 6765, 320, 10297, 49407]
        assert chunk.weights[5] == pytest.approx(1.2)
        long = ", ".join(["a person riding a motorcycle"] * 20)  # over 75 tokens: two chunks
        request = SampleRequest(long, "blurry", "Euler", "", 1, 7.0, 1, 64, 64)
        steps = []
        (image,) = backend.generate([request], lambda s, n: steps.append((s, n)))
        assert image.size == (64, 64) and steps == [(1, 1)]
        cond = backend.conditioning(backend._pipeline("txt2img"), [request]).cond_at(0)
        assert cond.cond.shape == (1, 154, 768) and cond.uncond.shape == (1, 77, 768)
    finally:
        del backend
        gc.collect()
        path.unlink()
