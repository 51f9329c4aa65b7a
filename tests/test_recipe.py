"""Parsing and validation: JSON files, API dicts, positional args; one clear error per bad input."""

import json
import math

import jsonschema
import pytest
from hypothesis import given
from strategies import pass_dicts, recipe_dicts

from lib_multipass.fields import PASS_FIELDS
from lib_multipass.recipe import (
    RecipeError,
    load_recipe,
    parse_pass,
    parse_recipe,
    recipe_from_positional,
    recipe_to_dict,
    recipe_to_positional,
)
from lib_multipass.schema import recipe_schema


def error_of(data, **kw) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        parse_recipe(data, **kw)
    return info.value


def ok_pass(**kw):
    return {"denoising_strength": 0.5, **kw}


@pytest.mark.parametrize(
    ("field", "bad", "allowed"),
    [
        ("denoising_strength", 1.5, "a finite number from 0.001 to 1, or 0 for no sampling"),
        ("denoising_strength", -0.1, "from 0.001 to 1"),
        ("denoising_strength", 1e-300, "from 0.001 to 1"),
        ("denoising_strength", math.nan, "a finite number"),
        ("denoising_strength", math.inf, "a finite number"),
        ("denoising_strength", "0.5", "a finite number"),
        ("denoising_strength", True, "a finite number"),
        ("steps", 20.5, "a whole number from 1 to 150, or 0"),
        ("steps", 151, "a whole number from 1 to 150"),
        ("steps", None, "a whole number"),
        ("enabled", 1, "true or false"),
        ("checkpoint", 3, "text of at most"),
        ("prompt_mode", "prepend", "one of 'keep', 'replace', 'append', 'template'"),
        ("schedule", "Curve", "one of 'single', 'list', 'curve'"),
        ("strengths", [0.5, 2.0], "a list of at most 64 numbers, each from 0.001 to 1"),
        ("strengths", 0.5, "a list"),
        ("boxes", [[10, 10, 5, 20]], "boxes [x1, y1, x2, y2]"),
        ("boxes", [[0, 0, 8]], "boxes [x1, y1, x2, y2]"),
        ("boxes", [[0.5, 0, 8, 8]], "whole pixels"),
        ("padding_sides", [1, 2, 3], "four numbers"),
        ("cfg_scale", 0.5, "from 1 to 30, or 0 for the base"),
        ("repeats", 0, "from 1 to 16"),
        ("upscale_by", 9, "from 0.25 to 8"),
        ("upscale_by", 0.2, "from 0.25 to 8"),
        ("seed", "fixed", "one of 'same', 'offset', 'random'"),
    ],
)
def test_bad_value_names_pass_field_value_and_allowed(field, bad, allowed):
    err = error_of({"passes": [ok_pass(), ok_pass(**{field: bad})]})
    assert len(err.problems) == 1
    msg = str(err)
    assert msg.startswith(f"pass 2, field '{field}': got {bad!r}")
    assert allowed in msg


def test_unknown_key_names_it_and_suggests():
    err = error_of({"passes": [{"denoise_strength": 0.4}]})
    msg = str(err)
    assert "pass 1, field 'denoise_strength'" in msg
    assert "no such field" in msg and "did you mean 'denoising_strength'" in msg


def test_every_problem_is_reported_at_once():
    err = error_of({"step_mode": "exact", "passes": [{"steps": -1}, {"curve": "cubic", "x": 1}]})
    fields = [(p.where, p.field) for p in err.problems]
    assert fields == [
        ("recipe", "step_mode"),
        ("pass 1", "steps"),
        ("pass 2", "curve"),
        ("pass 2", "x"),
    ]
    assert str(err).startswith("4 problems:")


@pytest.mark.parametrize(
    ("data", "where", "field"),
    [
        ([], "recipe", "(all)"),
        ({"passes": {"a": 1}}, "recipe", "passes"),
        ({"passes": [1]}, "pass 1", "(all)"),
        ({"passes": [{}] * 17}, "recipe", "passes"),
        ({"version": 2}, "recipe", "version"),
        ({"base": {"width": 500}}, "base", "width"),
        ({"base": {"width": 8}}, "base", "width"),
        ({"base": {"sampler": None}}, "base", "sampler"),
        ({"passes": [{"schedule": "list"}]}, "pass 1", "strengths"),
        ({"passes": [{"region": "crop", "mask_source": "boxes"}]}, "pass 1", "boxes"),
        ({"passes": [{"working_width": 512}]}, "pass 1", "working_height"),
    ],
)
def test_structural_and_cross_field_errors(data, where, field):
    err = error_of(data)
    assert (err.problems[0].where, err.problems[0].field) == (where, field)
    assert "allowed:" in str(err)


def test_base_rejected_where_not_allowed():
    err = error_of({"base": {}, "passes": []}, allow_base=False)
    assert err.problems[0].field == "base"


def test_parse_pass_alone():
    p = parse_pass({"checkpoint": "photo", "denoising_strength": 0.3}, 2)
    assert (p.checkpoint, p.denoising_strength, p.enabled) == ("photo", 0.3, True)
    with pytest.raises(RecipeError, match="pass 3, field 'steps'"):
        parse_pass({"steps": "many"}, 2)


def test_json_file_errors_give_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "passes": [\n    {"steps": 20,}\n  ]\n}\n')
    with pytest.raises(RecipeError, match=r"valid JSON \(line 3"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="a readable file"):
        load_recipe(tmp_path / "missing.json")


def test_integral_floats_are_accepted_for_whole_numbers():
    r = parse_recipe({"passes": [{"steps": 20.0, "boxes": [[0.0, 0, 8, 8]]}]})
    assert r.passes[0].steps == 20 and isinstance(r.passes[0].steps, int)
    assert r.passes[0].boxes == ((0, 0, 8, 8),)


@given(recipe_dicts())
def test_json_round_trip(data):
    recipe = parse_recipe(data)
    text = json.dumps(recipe_to_dict(recipe))
    assert parse_recipe(json.loads(text)) == recipe
    compact = json.dumps(recipe_to_dict(recipe, compact=True))
    assert parse_recipe(json.loads(compact)) == recipe
    jsonschema.validate(json.loads(text), recipe_schema())


@given(pass_dicts(), pass_dicts())
def test_positional_round_trip(a, b):
    recipe = parse_recipe({"passes": [a, b]})
    values = recipe_to_positional(recipe)
    assert len(values) == 2 * len(PASS_FIELDS)
    assert recipe_from_positional(values, 2) == recipe


def test_positional_takes_widget_types():
    values = recipe_to_positional(parse_recipe({"passes": [{}]}))
    names = [f.name for f in PASS_FIELDS]
    values[names.index("steps")] = 25.0  # gradio Number / Slider
    values[names.index("strengths")] = "0.8, 0.7 0.6"  # a textbox
    values[names.index("boxes")] = "0 0 64 64; 10 10 20 20"
    values[names.index("schedule")] = "LIST"
    p = recipe_from_positional(values, 1).passes[0]
    assert p.steps == 25 and p.strengths == (0.8, 0.7, 0.6) and p.schedule == "list"
    assert p.boxes == ((0, 0, 64, 64), (10, 10, 20, 20))


def test_positional_wrong_count():
    with pytest.raises(RecipeError, match=f"{2 * len(PASS_FIELDS)} values"):
        recipe_from_positional([True], 2)


# -- fuzzing: whatever JSON arrives, the parser returns a recipe or a RecipeError ----------------

from hypothesis import strategies as st  # noqa: E402

from lib_multipass.fields import BASE_FIELDS, RECIPE_FIELDS  # noqa: E402
from lib_multipass.recipe import check_recipe, read_recipe_file  # noqa: E402

NAMES = sorted({f.name for f in (*PASS_FIELDS, *BASE_FIELDS, *RECIPE_FIELDS)} | {"passes", "base"})
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**40, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=30,
)
RECIPE_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "passes": st.lists(
            st.dictionaries(st.sampled_from(NAMES), JSON_VALUES, max_size=6), max_size=4
        )
        | JSON_VALUES,
        "base": st.dictionaries(st.sampled_from(NAMES), JSON_VALUES, max_size=6) | JSON_VALUES,
        "version": JSON_VALUES,
        "step_mode": JSON_VALUES,
    },
)


@given(st.one_of(JSON_VALUES, RECIPE_LIKE), st.booleans(), st.booleans())
def test_any_json_value_gives_a_recipe_or_a_recipe_error(data, lenient, allow_base):
    try:
        parse_recipe(data, lenient=lenient, allow_base=allow_base)
    except RecipeError as e:
        assert e.problems and all(str(p) for p in e.problems)
    recipe, problems = check_recipe(data, lenient=lenient, allow_base=allow_base)
    assert recipe is not None or problems


@given(st.binary(max_size=300))
def test_any_bytes_as_a_recipe_file_give_a_recipe_or_a_recipe_error(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "r.json"
    path.write_bytes(raw)
    try:
        parse_recipe(read_recipe_file(path))
    except RecipeError as e:
        assert str(e)


def test_deeply_nested_and_huge_values_are_shown_short():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    err = error_of({"passes": [{"boxes": deep, "prompt": "x" * 100_000, "steps": 10**500}]})
    text = str(err)
    assert "field 'boxes'" in text and "field 'prompt'" in text and "field 'steps'" in text
    assert len(text) < 2000
