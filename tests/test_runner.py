"""Headless runs the way users run them: the multipass command, files on disk, PNG infotext."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

pytest.importorskip("torch")

from lib_multipass.cli import main
from lib_multipass.demo import DEMO_RECIPE
from lib_multipass.infotext import parse_params_line, recipe_from_infotext
from lib_multipass.recipe import load_recipe, parse_recipe


@pytest.fixture
def home(tiny_models, monkeypatch):
    """MULTIPASS_HOME with the session's tiny models already built."""
    monkeypatch.setenv("MULTIPASS_HOME", str(tiny_models.parent))
    return tiny_models.parent


def run_cli(*args, env_home):
    env = {**os.environ, "MULTIPASS_HOME": str(env_home)}
    return subprocess.run(
        [sys.executable, "-m", "lib_multipass", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )


def test_demo_writes_finals_stages_sheet_and_recipe(home, tmp_path):
    done = run_cli("demo", "--out", str(tmp_path / "demo"), env_home=home)
    assert done.returncode == 0, done.stderr
    assert "noise-like pictures" in done.stdout and "finished 6 runs over 2 images" in done.stdout
    assert "tiny-xl" in done.stdout  # an SD1 -> SDXL finish
    out = tmp_path / "demo"
    finals = sorted(out.glob("*-final.png"))
    assert [p.name for p in finals] == ["01-1234-final.png", "02-1235-final.png"]
    # every stage but the last, which is the final (written once)
    assert len(list(out.glob("0?-*-0?-*.png"))) == 2 * 6  # base + 5 of the 6 runs per image

    sheet = Image.open(out / "contact-sheet.png")
    assert sheet.width > 6 * 160 and sheet.height > 2 * 160
    # the WebUI's PNG Info reads the recipe back from every PNG
    text = Image.open(finals[0]).info["parameters"]
    assert text.startswith("a lighthouse on a cliff at sunset\nNegative prompt: blurry\n")
    params = parse_params_line(text.splitlines()[-1])
    assert params["Seed"] == "1234" and params["Size-1"] == "128" and params["Model"] == "tiny-toon"
    demo = parse_recipe({k: v for k, v in DEMO_RECIPE.items() if k != "base"})
    assert recipe_from_infotext(text) == demo
    assert load_recipe(out / "recipe.json") == parse_recipe(DEMO_RECIPE)


def test_run_an_example_recipe_small(home, tmp_path, examples_dir, capsys):
    code = main(
        [
            "run",
            str(examples_dir / "upscale-then-face.json"),
            "--size",
            "64x96",
            "--images",
            "2",
            "--seed",
            "3",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "finished 2 runs over 2 images" in out
    final = Image.open(tmp_path / "o" / "01-3-final.png")
    assert final.size == (96, 144)


def test_models_lists_the_builtin_ones(home, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "tiny-toon" in out and "tiny-photo" in out and "sd1" in out


def test_unknown_checkpoint_is_bad_input(home, tmp_path, capsys):
    recipe = {"base": {"width": 64, "height": 64}, "passes": [{"checkpoint": "photoreal-v5"}]}
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    assert main(["run", str(tmp_path / "r.json"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert (
        "pass 1, field 'checkpoint': got 'photoreal-v5'; allowed: one of tiny-photo, tiny-toon"
        in err
    )
    assert not (tmp_path / "o").exists()


def test_a_failing_pass_saves_what_was_finished(home, tiny_models, tmp_path, capsys):
    from conftest import misshapen_copy

    models = tmp_path / "models"
    misshapen_copy(tiny_models, models / "cut.safetensors")
    recipe = {
        "base": {"width": 64, "height": 64, "steps": 6, "checkpoint": "tiny-toon"},
        "passes": [{"denoising_strength": 0.5}, {"checkpoint": "cut"}],
    }
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    code = main(
        [
            "run",
            str(tmp_path / "r.json"),
            "--models",
            str(models),
            "--out",
            str(tmp_path / "o"),
            "--stages",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "failed" in captured.out and "pass 2, image 1 of 1" in captured.out
    assert len(list((tmp_path / "o").glob("01-*-partial.png"))) == 1
    # the base as a stage; pass 1 is the last finished stage, the partial itself
    assert len(list((tmp_path / "o").glob("01-*-0?-*.png"))) == 1


def test_missing_runner_packages_are_explained(monkeypatch, capsys, home):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "tqdm":
            raise ModuleNotFoundError("No module named 'tqdm'", name="tqdm")

        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert main(["demo", "--out", "/nonexistent/never"]) == 2
    assert "tqdm is not installed" in capsys.readouterr().err
