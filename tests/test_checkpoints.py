"""Checkpoint files: real .safetensors files in the WebUI's single-file layout."""

import numpy as np
import pytest
from safetensors.numpy import save_file

from lib_multipass.checkpoints import (
    find_checkpoint,
    list_checkpoints,
    read_safetensors_header,
    sniff_family,
)

LAYOUTS = {
    "sd1": "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
    "sd2": "cond_stage_model.model.token_embedding.weight",
    "sdxl": "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
}


def write_checkpoint(path, family):
    tensors = {
        "model.diffusion_model.input_blocks.0.0.weight": np.zeros((4, 4, 3, 3), np.float16),
        LAYOUTS[family]: np.zeros((8, 4), np.float16),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))


@pytest.mark.parametrize("family", LAYOUTS)
def test_family_from_header(tmp_path, family):
    path = tmp_path / f"{family}.safetensors"
    write_checkpoint(path, family)
    assert sniff_family(path) == family
    assert "model.diffusion_model.input_blocks.0.0.weight" in read_safetensors_header(path)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 4)
    with pytest.raises(ValueError, match="shorter than 8 bytes"):
        read_safetensors_header(tmp_path / "bad.safetensors")
    (tmp_path / "huge.safetensors").write_bytes((2**40).to_bytes(8, "little"))
    with pytest.raises(ValueError, match="header of"):
        read_safetensors_header(tmp_path / "huge.safetensors")
    (tmp_path / "junk.safetensors").write_bytes((4).to_bytes(8, "little") + b"\x00\x01{]")
    with pytest.raises(ValueError, match="not a safetensors file"):
        read_safetensors_header(tmp_path / "junk.safetensors")


def test_list_and_find_by_name_only(tmp_path):
    write_checkpoint(tmp_path / "toon.safetensors", "sd1")
    write_checkpoint(tmp_path / "xl" / "photo.safetensors", "sdxl")
    (tmp_path / "old.ckpt").write_bytes(b"pickle")
    (tmp_path / "notes.txt").write_text("x")
    found = list_checkpoints(tmp_path)
    assert [c.name for c in found] == ["old", "toon", "xl/photo"]
    assert [c.pickled for c in found] == [True, False, False]
    assert find_checkpoint(tmp_path, "xl/photo").path == tmp_path / "xl" / "photo.safetensors"
    assert find_checkpoint(tmp_path, "toon.safetensors").name == "toon"
    with pytest.raises(
        LookupError, match=r"'\.\./etc/passwd' is not in .*available: old, toon, xl/photo"
    ):
        find_checkpoint(tmp_path, "../etc/passwd")


def test_family_or_default_never_opens_pickles_and_tolerates_bad_files(tmp_path):
    from lib_multipass.checkpoints import family_or_default

    write_checkpoint(tmp_path / "xl.safetensors", "sdxl")
    assert family_or_default(tmp_path / "xl.safetensors") == "sdxl"
    (tmp_path / "old.ckpt").write_bytes(b"\x80 pickle that must not be read")
    assert family_or_default(tmp_path / "old.ckpt") == "sd1"
    # a safetensors file that cannot be read or is of no known family has none ('')
    (tmp_path / "cut.safetensors").write_bytes(b"\x01")
    assert family_or_default(tmp_path / "cut.safetensors", default="sd2") == ""
    save_file({"x": np.zeros(1, np.float16)}, str(tmp_path / "odd.safetensors"))
    assert family_or_default(tmp_path / "odd.safetensors") == ""


@pytest.mark.parametrize(
    ("keys", "family"),
    [
        (["model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale"], "flux"),
        (["double_blocks.0.img_attn.norm.key_norm.scale", "img_in.weight"], "flux"),
        (
            [
                "model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale",
                "model.diffusion_model.distilled_guidance_layer.norms.0.scale",
            ],
            "chroma",
        ),
        (["model.diffusion_model.joint_blocks.0.context_block.attn.qkv.weight"], "sd3"),
        (["model.diffusion_model.txt_norm.weight"], "qwen"),
        (["model.diffusion_model.head.modulation"], "wan"),
        (["first_stage_model.decoder.conv_in.weight"], None),
    ],
)
def test_newer_families_from_their_keys(keys, family):
    from lib_multipass.checkpoints import family_from_keys

    assert family_from_keys(keys) == family


@pytest.mark.parametrize(("width", "family"), [(768, "sd1"), (1024, "sd2"), (2048, "sdxl")])
def test_a_unet_only_file_is_told_by_its_cross_attention_width(width, family):
    from lib_multipass.checkpoints import family_from_keys

    key = "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
    header = {key: {"dtype": "F16", "shape": [640, width], "data_offsets": [0, 0]}}
    assert family_from_keys(header) == family


def test_unknown_safetensors_have_no_family_and_pickles_default(tmp_path):
    from lib_multipass.checkpoints import family_or_default

    save_file({"something.else": np.zeros((2,), np.float16)}, str(tmp_path / "x.safetensors"))
    assert family_or_default(tmp_path / "x.safetensors") == ""
    (tmp_path / "y.ckpt").write_bytes(b"PK")
    assert family_or_default(tmp_path / "y.ckpt") == "sd1"
