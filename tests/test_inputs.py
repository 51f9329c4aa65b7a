"""Headless jobs on the user's own images (`multipass run --init`, `--mask`): a folder of photos
gets its faces detailed, a painted mask its regions, and nothing outside them changes."""

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

pytest.importorskip("torch")
skimage_data = pytest.importorskip("skimage.data")

from lib_multipass.cli import main  # noqa: E402
from lib_multipass.infotext import parse_params_line  # noqa: E402

FACE = (177, 66, 272, 161)  # the astronaut's face (512 x 512)


@pytest.fixture
def home(tiny_models, monkeypatch):
    monkeypatch.setenv("MULTIPASS_HOME", str(tiny_models.parent))
    return tiny_models.parent


def photo(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    astronaut = Image.fromarray(skimage_data.astronaut())
    astronaut.save(folder / "astronaut.png")
    astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "mirrored.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image")
    return folder, astronaut


def changed(a: Image.Image, b: Image.Image) -> np.ndarray:
    return np.abs(np.asarray(a.convert("RGB"), int) - np.asarray(b.convert("RGB"), int)).max(2) > 0


def write_recipe(tmp_path, passes, **base):
    path = tmp_path / "r.json"
    path.write_text(
        json.dumps({"base": {"prompt": "a portrait", "steps": 4, **base}, "passes": passes})
    )
    return path


def test_a_folder_of_photos_gets_each_face_detailed(home, tmp_path, capsys):
    folder, astronaut = photo(tmp_path)
    face = {
        "name": "face",
        "region": "crop",
        "mask_source": "detect",
        "detector": "opencv-face",
        "detect_max": 1,
        "checkpoint": "tiny-photo",
        "denoising_strength": 0.5,
        "working_width": 64,
        "working_height": 64,
    }
    recipe = write_recipe(tmp_path, [face])
    out = tmp_path / "out"
    code = main(["run", str(recipe), "--init", str(folder), "--seed", "9", "--out", str(out)])
    printed, errors = capsys.readouterr()
    assert code == 0, errors
    assert "finished 1 run over 2 images" in printed
    finals = sorted(p.name for p in out.glob("*-final.png"))
    assert finals == ["01-astronaut-final.png", "02-mirrored-final.png"]

    final = Image.open(out / "01-astronaut-final.png")
    diff = changed(astronaut, final)
    x1, y1, x2, y2 = FACE
    assert diff[y1:y2, x1:x2].mean() > 0.5  # the face was inpainted
    ys, xs = np.nonzero(diff)
    margin = 40  # the detection's box, dilated and blurred, lies around the face
    assert xs.min() >= x1 - margin and xs.max() < x2 + margin
    assert ys.min() >= y1 - margin and ys.max() < y2 + margin

    # the infotext says what the image is and what ran on it, not a base generation
    text = final.info["parameters"]
    params = parse_params_line(text.splitlines()[-1])
    assert params["Multipass input"] == "astronaut.png" and params["Seed"] == "9"
    assert "Steps" not in params and "Model" not in params
    assert params["Multipass 1 found"] == "1 face, 1 inpainted"
    mirrored = parse_params_line(Image.open(out / "02-mirrored-final.png").info["parameters"])
    assert mirrored["Seed"] == "10" and mirrored["Multipass input"] == "mirrored.jpg"


def test_a_painted_mask_gives_each_region_its_own_prompt(home, tmp_path, capsys):
    folder, astronaut = photo(tmp_path)
    mask = Image.new("L", (256, 256))  # half the images' size: scaled to them, as the WebUI does
    pen = ImageDraw.Draw(mask)
    pen.ellipse((30, 150, 100, 240), fill=255)
    pen.ellipse((160, 150, 230, 240), fill=255)
    mask.save(tmp_path / "mask.png")
    regions = {
        "region": "crop",
        "mask_split": True,
        "mask_blur": 4,
        "prompt": "a red hat [SEP] a blue hat",
        "prompt_mode": "replace",
        "checkpoint": "tiny-toon",
        "denoising_strength": 0.6,
        "working_width": 64,
        "working_height": 64,
    }
    recipe = write_recipe(tmp_path, [regions], seed=3)
    out = tmp_path / "out"
    args = ["run", str(recipe), "--init", str(folder / "astronaut.png"), "--mask"]
    code = main([*args, str(tmp_path / "mask.png"), "--stages", "--out", str(out)])
    assert code == 0, capsys.readouterr().out
    assert sorted(p.name for p in out.glob("01-*.png")) == [
        "01-astronaut-00-input.png",
        "01-astronaut-final.png",
    ]
    final = Image.open(out / "01-astronaut-final.png")
    diff = changed(astronaut, final)
    painted = np.asarray(mask.resize((512, 512)).filter(ImageFilter.MaxFilter(2 * 16 + 1))) > 0
    assert not diff[~painted].any()  # nothing outside the blurred areas
    assert diff[300:480, 60:200].mean() > 0.5 and diff[300:480, 320:460].mean() > 0.5
    assert "Multipass 1 mask split: True" in final.info["parameters"]


def test_a_pass_on_the_jobs_mask_needs_one(home, tmp_path, capsys):
    folder, _ = photo(tmp_path)
    recipe = write_recipe(tmp_path, [{"region": "crop"}])
    code = main(["run", str(recipe), "--init", str(folder), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "--mask headless" in capsys.readouterr().err


def test_a_phone_photo_is_read_upright(tmp_path):
    """Phones store a portrait photo landscape, with its rotation in EXIF; the WebUI reads it
    upright (ImageOps.exif_transpose), and so does --init."""
    from lib_multipass.inputs import read_inputs

    stored = Image.new("RGB", (128, 64), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 8, 64))  # the photo's top, stored on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    (photo_in,) = read_inputs(tmp_path / "phone.jpg")
    assert photo_in.image.size == (64, 128)
    r, _g, b = photo_in.image.getpixel((32, 2))
    assert r > 200 and b < 60  # the top is up
