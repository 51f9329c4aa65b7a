"""Repository-level checks: lint, the README's generated reference, the layout."""

import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

from lib_multipass.docs import fields_markdown


def test_readme_field_reference_is_current():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert fields_markdown() in readme, "regenerate it with `multipass fields`"


def test_readme_has_the_two_commands_that_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = "bash tests/setup.sh && python -m pytest"
    assert test_command in readme and test_command in ci


@pytest.mark.parametrize(
    "path",
    [
        "scripts",
        "javascript",
        "style.css",
        "install.py",
        "preload.py",
        "lib_multipass",
        "tests",
        "README.md",
        "LICENSE",
    ],
)
def test_design_card_layout(path):
    assert (ROOT / path).exists()


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with the dev extra)")
    for args in (["check", "."], ["format", "--check", "."]):
        done = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_preload_adds_the_ckpt_opt_in():
    import argparse
    import importlib.util

    spec = importlib.util.spec_from_file_location("mp_preload", ROOT / "preload.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser = argparse.ArgumentParser()
    module.preload(parser)
    assert parser.parse_args([]).multipass_allow_ckpt is False
    assert parser.parse_args(["--multipass-allow-ckpt"]).multipass_allow_ckpt is True


def test_install_hook_installs_nothing():
    done = subprocess.run(
        [sys.executable, str(ROOT / "install.py")], capture_output=True, check=True
    )
    assert done.stdout == b""


def test_readme_infotext_example_is_what_multipass_writes():
    from lib_multipass.infotext import params_to_text, result_params
    from lib_multipass.recipe import load_recipe

    recipe = load_recipe(ROOT / "examples" / "upscale-then-face.json")
    text = params_to_text(result_params(recipe, range(len(recipe.passes)), "complete"))
    assert f"```text\n{text}\n```" in (ROOT / "README.md").read_text(encoding="utf-8")
