"""The field table is the one source of truth: everything derived from it stays in sync."""

import dataclasses
import json
import re

import jsonschema
import pytest

from lib_multipass.fields import BASE_FIELDS, PASS_FIELDS, RECIPE_FIELDS
from lib_multipass.infotext import RE_PARAM, pass_key, recipe_key
from lib_multipass.recipe import (
    Base,
    Pass,
    Recipe,
    coerce,
    parse_recipe,
    positional_names,
    recipe_to_dict,
)
from lib_multipass.schema import recipe_schema

TABLES = {"pass": (Pass, PASS_FIELDS), "base": (Base, BASE_FIELDS)}


@pytest.mark.parametrize("name", TABLES)
def test_records_have_exactly_the_table_fields_in_order(name):
    cls, table = TABLES[name]
    assert [f.name for f in dataclasses.fields(cls)] == [f.name for f in table]
    assert [f.default for f in dataclasses.fields(cls)] == [f.default for f in table]


def test_recipe_record_is_table_plus_base_and_passes():
    names = [f.name for f in dataclasses.fields(Recipe)]
    assert names == [f.name for f in RECIPE_FIELDS] + ["base", "passes"]


@pytest.mark.parametrize("table", [PASS_FIELDS, BASE_FIELDS, RECIPE_FIELDS])
def test_names_labels_and_keys_are_unique(table):
    for attr in ("name", "label"):
        values = [getattr(f, attr) for f in table]
        assert len(values) == len(set(values)), attr
    keys = [f.infotext for f in table if f.infotext]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("table", [PASS_FIELDS, BASE_FIELDS, RECIPE_FIELDS])
def test_defaults_are_valid_values(table):
    for f in table:
        assert coerce(f, f.default) == f.default, f.name
        assert f.allowed()


def test_infotext_keys_match_the_webui_key_pattern():
    # the WebUI only parses keys of the form \w[\w \-/]+ followed by ':'
    for f in PASS_FIELDS:
        if f.infotext:
            key = pass_key(15, f)
            ((k, v),) = RE_PARAM.findall(f"{key}: 1")
            assert (k, v) == (key, "1")
    for f in RECIPE_FIELDS:
        if f.infotext:
            assert re.fullmatch(r"\w[\w \-/]+", recipe_key(f))


def test_schema_properties_are_the_table():
    schema = recipe_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    props = schema["properties"]
    assert list(props["passes"]["items"]["properties"]) == [f.name for f in PASS_FIELDS]
    assert list(props["base"]["properties"]) == [f.name for f in BASE_FIELDS]
    assert set(props) == {f.name for f in RECIPE_FIELDS} | {"base", "passes"}
    for f in PASS_FIELDS:
        assert props["passes"]["items"]["properties"][f.name]["title"] == f.label


def test_examples_validate_against_schema_and_parser(examples_dir):
    schema = recipe_schema()
    files = sorted(examples_dir.glob("*.json"))
    assert len(files) >= 3
    for path in files:
        data = json.loads(path.read_text())
        jsonschema.validate(data, schema)
        recipe = parse_recipe(data)
        jsonschema.validate(recipe_to_dict(recipe), schema)


def test_positional_names_follow_the_table():
    names = positional_names(2)
    assert len(names) == 2 * len(PASS_FIELDS)
    assert names[0] == "pass1.enabled" and names[len(PASS_FIELDS)] == "pass2.enabled"
