"""Infotext: compact, quoted as the WebUI quotes, and read back to the same recipe."""

import pytest
from hypothesis import given
from strategies import TRICKY, recipe_dicts

from lib_multipass import __version__
from lib_multipass.fields import PASS_FIELDS
from lib_multipass.infotext import (
    params_to_text,
    parse_params_line,
    protect,
    quote,
    recipe_from_infotext,
    recipe_from_params,
    recipe_to_params,
    unquote,
)
from lib_multipass.recipe import RecipeError, parse_recipe

HOST_LINE = "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768, Model: toon"


def without_mask_images(recipe):
    """Mask images are data, not settings: infotext leaves them out."""
    import dataclasses

    passes = tuple(dataclasses.replace(p, mask_image="") for p in recipe.passes)
    return dataclasses.replace(recipe, passes=passes)


@given(recipe_dicts())
def test_round_trip_through_the_webui_text(data):
    recipe = parse_recipe(data)
    params = recipe_to_params(recipe)
    # the host joins its own items and ours, quoting each value with its quote()
    text = (
        "a prompt, with commas\nNegative prompt: bad\n" + HOST_LINE + ", " + params_to_text(params)
    )
    parsed = parse_params_line(text.strip().split("\n")[-1])
    assert parsed["Steps"] == "20" and parsed["Size-1"] == "512"
    assert recipe_from_params(parsed) == without_mask_images(recipe)
    assert recipe_from_infotext(text) == without_mask_images(recipe)


def test_compact_only_non_defaults_with_version():
    recipe = parse_recipe({"passes": [{}, {"checkpoint": "photo", "denoising_strength": 0.3}]})
    assert recipe_to_params(recipe) == {
        "Multipass version": __version__,
        "Multipass passes": "2",
        "Multipass 2 checkpoint": "photo",
        "Multipass 2 denoising": "0.3",
    }


def test_lists_and_boxes_are_readable():
    recipe = parse_recipe(
        {
            "passes": [
                {
                    "schedule": "list",
                    "strengths": [0.8, 0.6],
                    "region": "crop",
                    "mask_source": "boxes",
                    "boxes": [[1, 2, 3, 4], [5, 6, 7, 8]],
                    "padding_sides": [1, 2, 3, 4],
                }
            ]
        }
    )
    params = recipe_to_params(recipe)
    assert params["Multipass 1 strengths"] == "0.8 0.6"
    assert params["Multipass 1 boxes"] == "1 2 3 4; 5 6 7 8"
    assert params["Multipass 1 padding sides"] == "1.0 2.0 3.0 4.0"


@pytest.mark.parametrize(
    "value",
    TRICKY.wrapped_strategy.elements if hasattr(TRICKY, "wrapped_strategy") else TRICKY.elements,
)
def test_tricky_strings_survive_host_quote_and_parse(value):
    line = f"Aa: 1, Key: {quote(protect(value))}, Bb: 2"
    parsed = parse_params_line(line)
    if value == "512x512":  # the host splits sizes; recipe_from_params joins them
        assert (parsed["Key-1"], parsed["Key-2"]) == ("512", "512")
    else:
        assert parsed["Key"] == value
    assert parsed["Aa"] == "1" and parsed["Bb"] == "2"


def test_quote_and_unquote_match_the_webui():
    assert quote("plain") == "plain"
    assert quote("a, b") == '"a, b"'
    assert quote('x: "y"') == '"x: \\"y\\""'
    assert unquote('"a, b"') == "a, b"
    assert unquote('"broken') == '"broken'


def test_text_without_recipe():
    assert recipe_from_infotext("prompt\n" + HOST_LINE) is None


def test_other_extensions_keys_are_ignored():
    params = parse_params_line(
        HOST_LINE + ", ADetailer model: face_yolov8n.pt, Multipass passes: 1, Multipass 1 steps: 12"
    )
    assert recipe_from_params(params).passes[0].steps == 12


@pytest.mark.parametrize(
    ("line", "key", "allowed"),
    [
        ("Multipass passes: many", "Multipass passes", "a whole number from 0 to 16"),
        ("Multipass passes: 17", "Multipass passes", "a whole number from 0 to 16"),
        (
            "Multipass passes: 1, Multipass 1 denoising: 2",
            "Multipass 1 denoising",
            "from 0.001 to 1",
        ),
        ("Multipass passes: 2, Multipass 2 curve: wiggly", "Multipass 2 curve", "one of 'linear'"),
        ("Multipass passes: 1, Multipass step mode: exact", "Multipass step mode", "one of"),
    ],
)
def test_bad_infotext_names_the_key(line, key, allowed):
    with pytest.raises(RecipeError) as info:
        recipe_from_params(parse_params_line(line))
    assert f"field '{key}'" in str(info.value) and allowed in str(info.value)


def test_every_infotext_field_is_written_when_changed():
    # a value different from each default for each field reaches the text
    for f in PASS_FIELDS:
        if f.infotext is None:
            continue
        assert f.infotext and not f.infotext.startswith(" ")
