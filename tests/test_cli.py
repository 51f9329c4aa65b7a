"""The `multipass` command, run the way users run it."""

import json
import subprocess
import sys

from lib_multipass.cli import main


def test_plan_each_example(examples_dir, capsys):
    for path in sorted(examples_dir.glob("*.json")):
        assert main(["plan", str(path)]) == 0
        out = capsys.readouterr().out
        assert "run  pass" in out and "after the base, however many images" in out


def test_plan_of_the_face_example_shows_the_crop(examples_dir, capsys):
    assert main(["plan", str(examples_dir / "upscale-then-face.json")]) == 0
    out = capsys.readouterr().out
    assert "512x768 -> 768x1152 (Lanczos)" in out
    assert "crop 272x308@248,122->480x544" in out


def test_plan_json_and_overrides(examples_dir, capsys):
    code = main(
        [
            "plan",
            str(examples_dir / "denoise-chain.json"),
            "--json",
            "--steps",
            "30",
            "--step-mode",
            "fixed",
            "--size",
            "640x384",
        ]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["steps_run"] for r in doc["runs"]] == [30] * 8
    assert doc["runs"][0]["size_in"] == [640, 384]


def test_plan_with_mask_image(tmp_path, capsys):
    from PIL import Image

    mask = Image.new("L", (512, 512), 0)
    mask.paste(255, (100, 100, 150, 180))
    mask.save(tmp_path / "face.png")
    recipe = {
        "passes": [
            {
                "region": "crop",
                "mask_source": "image",
                "mask_image": "face.png",
                "padding": 0,
                "mask_blur": 0,
            }
        ]
    }
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    assert main(["plan", str(tmp_path / "r.json")]) == 0
    assert "crop 50x80@100,100->" in capsys.readouterr().out


def test_bad_recipe_exits_2_naming_the_field(tmp_path, capsys):
    (tmp_path / "r.json").write_text(json.dumps({"passes": [{"denoising_strength": 3}]}))
    assert main(["plan", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "pass 1, field 'denoising_strength': got 3" in err and "allowed" in err


def test_missing_mask_file_exits_2(tmp_path, capsys):
    recipe = {"passes": [{"region": "crop", "mask_source": "image", "mask_image": "nope.png"}]}
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    assert main(["plan", str(tmp_path / "r.json")]) == 2
    assert "field 'mask_image'" in capsys.readouterr().err


def test_bad_size_is_a_usage_error(examples_dir, capsys):
    assert main(["plan", str(examples_dir / "denoise-chain.json"), "--size", "500x500"]) == 2
    assert "field '--size': got '500x500'; allowed: a size WxH" in capsys.readouterr().err


def test_schema_command(capsys):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "Multipass recipe"


def test_module_entry_point(examples_dir):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lib_multipass",
            "plan",
            str(examples_dir / "cartoon-to-photo.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "photo finish" in done.stdout


def test_pure_modules_import_no_torch_gradio_or_webui():
    code = (
        "import sys, lib_multipass.recipe, lib_multipass.schedule, lib_multipass.geometry, "
        "lib_multipass.infotext, lib_multipass.plan, lib_multipass.schema, lib_multipass.cli, "
        "lib_multipass.checkpoints, lib_multipass.prompts, lib_multipass.networks; "
        "bad = [m for m in ('torch', 'gradio', 'modules', 'numpy', 'PIL') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_engine_and_runner_leave_torch_to_the_backend():
    code = (
        "import sys, lib_multipass.engine, lib_multipass.runner, lib_multipass.ldm, "
        "lib_multipass.backends.conditioning, lib_multipass.backends.lora; "
        "print([m for m in ('torch', 'diffusers', 'gradio', 'modules') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
