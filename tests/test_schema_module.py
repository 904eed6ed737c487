"""vm/schema.py: parsing LLM replies, checking them against the JSON Schema the
compiler emits for `schema` declarations (spec 12), and provider normalisation."""

from __future__ import annotations

import copy
import json
import math
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from concerto.vm.schema import (
    MODES,
    SchemaIssue,
    describe_schema,
    fake_instance,
    normalize_for_anthropic,
    normalize_for_openai,
    openai_strict_supported,
    parse_json_reply,
    retry_prompt,
    unwrap_anthropic_input,
    validate,
)

INT_MIN, INT_MAX = -(2**63), 2**63 - 1

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
BOOLEAN = {"type": "boolean"}
NULL = {"type": "null"}
ANY: dict[str, Any] = {}
LABEL = {"type": "string", "enum": ["legal", "technical"]}


def option(s: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [s, {"type": "null"}]}


def array(s: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": s}


def mapping(s: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": s}


def record(title: str, props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "title": title,
        "properties": props,
        "required": list(props) if required is None else required,
    }


ADDRESS = record("Address", {"street": STRING, "city": STRING})
PERSON = record(
    "Person",
    {
        "name": STRING,
        "age": INTEGER,
        "address": ADDRESS,
        "tags": array(STRING),
        "nickname": option(STRING),
        "score": {"type": "number", "default": 0.5},
        "email": STRING,
    },
    required=["name", "age", "address", "tags"],
)
TEAM = record("Team", {"label": LABEL, "people": array(PERSON), "scores": mapping(INTEGER)})


def good_person(**changes: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "name": "Ada",
        "age": 36,
        "address": {"street": "1 Main St", "city": "London"},
        "tags": ["math"],
    }
    p.update(changes)
    return p


def issues_of(value: Any, schema: dict[str, Any], mode: str = "strict") -> list[SchemaIssue]:
    return validate(value, schema, mode)[1]


def kinds(issues: list[SchemaIssue]) -> list[tuple[str, str]]:
    return [(i.path, i.kind) for i in issues]


def schema_nodes(schema: Any, top: bool = True):
    """(node, is_root) for every sub-schema; property names are never taken for nodes."""
    if not isinstance(schema, dict):
        return
    yield schema, top
    for s in (schema.get("properties") or {}).values():
        yield from schema_nodes(s, False)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from schema_nodes(schema[key], False)
    for s in schema.get("anyOf") or []:
        yield from schema_nodes(s, False)


# ---------------------------------------------------------------------------
# parse_json_reply
# ---------------------------------------------------------------------------

class TestParseJsonReply:
    @pytest.mark.parametrize(
        "text, expected",
        [
            ('{"a": 1}', {"a": 1}),
            ('  \n{"a": [1, 2.5, null, true]}\n ', {"a": [1, 2.5, None, True]}),
            ("[1, 2]", [1, 2]),
            ("42", 42),
            ('"just a string"', "just a string"),
            ("null", None),
            ('\ufeff{"bom": true}', {"bom": True}),
        ],
    )
    def test_plain_json(self, text: str, expected: Any) -> None:
        assert parse_json_reply(text) == (expected, None)

    @pytest.mark.parametrize(
        "text",
        [
            '```json\n{"a": 1}\n```',
            '```JSON\n{"a": 1}\n```',
            '```\n{"a": 1}\n```',
            '``` json \n{"a": 1}\n```',
            '```{"a": 1}```',
            'Here you go:\n\n```json\n{"a": 1}\n```\n\nLet me know if you need more.',
            '```json\r\n{"a": 1}\r\n```',
        ],
    )
    def test_fenced_json(self, text: str) -> None:
        assert parse_json_reply(text) == ({"a": 1}, None)

    def test_first_parsable_fence_wins(self) -> None:
        text = "```python\nprint('hi')\n```\nand the answer:\n```json\n{\"ok\": true}\n```"
        assert parse_json_reply(text) == ({"ok": True}, None)

    def test_unclosed_fence_from_a_cut_off_reply(self) -> None:
        assert parse_json_reply('```json\n{"a": 1}\n') == ({"a": 1}, None)

    @pytest.mark.parametrize(
        "text, expected",
        [
            ('The answer is {"a": 1}. Hope this helps!', {"a": 1}),
            ("Result: [1, 2, 3] (three items)", [1, 2, 3]),
            ('Sure {not json} here: {"a": {"b": "}"}}', {"a": {"b": "}"}}),
            ('See [note 1]. {"x": "y"}', {"x": "y"}),
            ('{"a": 1} and some trailing words', {"a": 1}),
            ('{"a": 1}\n{"b": 2}', {"a": 1}),
        ],
    )
    def test_json_inside_prose(self, text: str, expected: Any) -> None:
        assert parse_json_reply(text) == (expected, None)

    @pytest.mark.parametrize(
        "text, detail",
        [
            ("", "empty"),
            ("   \n\t", "empty"),
            ("I cannot help with that.", "no JSON object or array found"),
            ('{"a": 1, "b": [1, 2', "Expecting"),
            ('{"a": NaN}', "NaN"),
            ('{"a": Infinity}', "Infinity"),
            ("{'a': 1}", "Expecting property name"),
            ('```json\n{"a": 1,\n```', "Expecting"),
        ],
    )
    def test_parse_errors(self, text: str, detail: str) -> None:
        value, issue = parse_json_reply(text)
        assert value is None
        assert issue is not None
        assert issue.kind == "parse_error"
        assert issue.path == ""
        assert issue.message.startswith("reply is not valid JSON")
        assert detail in issue.message
        assert "\n" not in issue.message
        assert issue.expected == "JSON"

    def test_parse_error_shows_the_start_of_the_reply_on_one_line(self) -> None:
        text = "no json here\n" + "x" * 500
        _, issue = parse_json_reply(text)
        assert issue is not None
        assert issue.actual.startswith("no json here x")
        assert issue.actual.endswith("...")
        assert len(issue.actual) <= 63
        assert "\n" not in issue.actual

    def test_non_text_is_a_parse_error_not_a_crash(self) -> None:
        value, issue = parse_json_reply(None)  # type: ignore[arg-type]
        assert value is None and issue is not None and issue.kind == "parse_error"

    @pytest.mark.parametrize(
        "text",
        [
            "[" * 100_000,
            "{" * 50_000 + "x",
            "[1, " * 20_000,
            "[" * 600 + '"' + '\\"' * 50_000,  # an unclosed string full of escapes
            '"\\"' * 20_000 + "[" * 600,
            '"' + "[" * 100_000,
            "[[" + "[]" * 50_000,
            "x[" * 100_000,
            'x["' * 100_000,
        ],
    )
    def test_pathological_replies_are_fast_and_safe(self, text: str) -> None:
        # conftest raises the recursion limit as the VM does; with it, an unchecked
        # C decoder overflows the C stack on deep nesting instead of raising.
        started = time.perf_counter()
        value, issue = parse_json_reply(text)
        assert time.perf_counter() - started < 2
        assert (value is None) == (issue is not None)

    def test_too_deep_nesting_is_a_parse_error(self) -> None:
        value, issue = parse_json_reply("[" * 5000 + "]" * 5000)
        assert value is None and issue is not None
        assert "nested more than 512 levels" in issue.message
        assert parse_json_reply("[" * 500 + "]" * 500)[1] is None

    def test_brackets_inside_strings_do_not_count(self) -> None:
        text = "[" * 600 + ' "' + "]" * 600 + '" then {"ok": 1}'
        assert parse_json_reply(text) == ({"ok": 1}, None)
        assert parse_json_reply('{"s": "' + "[" * 1000 + '"}') == ({"s": "[" * 1000}, None)

    def test_stray_quotes_in_prose(self) -> None:
        assert parse_json_reply('A 5" screen: {"size": 5}') == ({"size": 5}, None)


# ---------------------------------------------------------------------------
# validate: scalars
# ---------------------------------------------------------------------------

class TestScalars:
    @pytest.mark.parametrize(
        "schema, value, cleaned",
        [
            (STRING, "", ""),
            (STRING, "héllo", "héllo"),
            (INTEGER, 0, 0),
            (INTEGER, -7, -7),
            (INTEGER, 3.0, 3),
            (INTEGER, -0.0, 0),
            (INTEGER, INT_MAX, INT_MAX),
            (INTEGER, INT_MIN, INT_MIN),
            (NUMBER, 1.5, 1.5),
            (NUMBER, 2, 2.0),
            (NUMBER, 0, 0.0),
            (BOOLEAN, True, True),
            (BOOLEAN, False, False),
            (NULL, None, None),
        ],
    )
    def test_accepted_in_strict_mode(self, schema: dict[str, Any], value: Any, cleaned: Any) -> None:
        result, issues = validate(value, schema)
        assert issues == []
        assert result == cleaned
        assert type(result) is type(cleaned)

    @pytest.mark.parametrize(
        "schema, value",
        [
            (STRING, 42),
            (STRING, None),
            (STRING, ["a"]),
            (INTEGER, 3.5),
            (INTEGER, "3"),
            (INTEGER, True),
            (INTEGER, False),
            (INTEGER, None),
            (INTEGER, float("nan")),
            (INTEGER, float("inf")),
            (NUMBER, True),
            (NUMBER, "1.5"),
            (NUMBER, float("nan")),
            (NUMBER, float("-inf")),
            (NUMBER, 10**400),
            (BOOLEAN, 1),
            (BOOLEAN, "true"),
            (NULL, 0),
            (NULL, "null"),
        ],
    )
    def test_rejected_in_strict_mode(self, schema: dict[str, Any], value: Any) -> None:
        result, issues = validate(value, schema)
        assert kinds(issues) == [("", "type_mismatch")]
        assert issues[0].expected == schema["type"]
        assert result is value  # a failed part is returned as found

    def test_bool_is_never_a_number(self) -> None:
        for schema in (INTEGER, NUMBER):
            for mode in MODES:
                _, issues = validate(True, schema, mode)
                assert kinds(issues) == [("", "type_mismatch")], (schema, mode)

    @pytest.mark.parametrize("value", [INT_MAX + 1, INT_MIN - 1, 10**30, 1e30])
    def test_integers_must_fit_in_64_bits(self, value: Any) -> None:
        _, issues = validate(value, INTEGER)
        assert kinds(issues) == [("", "type_mismatch")]
        assert issues[0].expected == "64-bit integer"
        assert "out of range" in issues[0].message

    def test_any_accepts_everything_untouched(self) -> None:
        for value in (None, 1, "x", [1, {"a": None}], {"k": [True]}):
            result, issues = validate(value, ANY)
            assert issues == [] and result == value

    @pytest.mark.parametrize(
        "schema",
        [
            {"type": "date"},
            {"type": 7},
            {"type": []},
            {"type": {"nested": "nonsense"}},
            {"oneOf": [STRING]},
            {"$ref": "#/defs/X"},
            "not a dict",
            None,
        ],
    )
    def test_unknown_schemas_accept_any_value(self, schema: Any) -> None:
        for value in (None, 3, "x", [1], {"a": 1}):
            assert issues_of(value, schema) == []

    def test_bare_enum_without_type(self) -> None:
        schema = {"enum": ["a", 1, None]}
        assert issues_of("a", schema) == []
        assert issues_of(None, schema) == []
        assert issues_of(1, schema) == []
        assert kinds(issues_of(True, schema)) == [("", "enum_violation")]
        assert kinds(issues_of(1.5, schema)) == [("", "enum_violation")]


# ---------------------------------------------------------------------------
# validate: enums
# ---------------------------------------------------------------------------

class TestEnums:
    def test_member(self) -> None:
        assert validate("legal", LABEL) == ("legal", [])

    def test_violation_message(self) -> None:
        result, issues = validate({"label": "other", "people": [], "scores": {}}, TEAM)
        assert issues == [
            SchemaIssue(
                path="label",
                kind="enum_violation",
                message="field 'label': \"other\" is not one of legal, technical",
                expected="one of legal, technical",
                actual='"other"',
            )
        ]
        assert result["label"] == "other"

    @pytest.mark.parametrize("mode", ["strict", "partial"])
    def test_case_matters_outside_coerce_mode(self, mode: str) -> None:
        assert kinds(issues_of("Legal", LABEL, mode)) == [("", "enum_violation")]

    def test_awkward_options_are_quoted_and_long_lists_cut(self) -> None:
        schema = {"type": "string", "enum": ["a, b", "two words", "line\nbreak", 'say "hi"', ""]}
        issue = issues_of("x", schema)[0]
        assert issue.expected == 'one of "a, b", two words, "line\\nbreak", "say \\"hi\\"", ""'
        assert "\n" not in issue.message
        many = {"type": "string", "enum": [f"v{i}" for i in range(100)]}
        issue = issues_of("x", many)[0]
        assert issue.expected.endswith("v11, ... (100 in all)")

    def test_a_non_string_is_a_type_mismatch_not_an_enum_violation(self) -> None:
        issues = issues_of(3, LABEL)
        assert kinds(issues) == [("", "type_mismatch")]
        assert issues[0].expected == "one of legal, technical"
        assert issues[0].message == "top-level value: expected one of legal, technical, got integer 3"


# ---------------------------------------------------------------------------
# validate: records, arrays, maps
# ---------------------------------------------------------------------------

class TestObjects:
    def test_valid_person_is_cleaned(self) -> None:
        value = good_person(extra="dropped", nickname=None)
        result, issues = validate(value, PERSON)
        assert issues == []
        assert result == {
            "name": "Ada",
            "age": 36,
            "address": {"street": "1 Main St", "city": "London"},
            "tags": ["math"],
            "nickname": None,
            "score": 0.5,
        }
        assert list(result) == ["name", "age", "address", "tags", "nickname", "score"]

    def test_extra_fields_are_dropped_at_every_level(self) -> None:
        value = good_person(address={"street": "s", "city": "c", "zip": "123"}, junk={"a": 1})
        result, issues = validate(value, PERSON)
        assert issues == []
        assert "junk" not in result and "zip" not in result["address"]

    def test_missing_required_fields_nested(self) -> None:
        value = good_person(address={"street": "s"})
        del value["name"]
        result, issues = validate(value, PERSON)
        assert issues == [
            SchemaIssue("name", "missing_field", "missing required field 'name'", "string", ""),
            SchemaIssue("address.city", "missing_field", "missing required field 'address.city'", "string", ""),
        ]
        assert "name" not in result

    def test_type_mismatch_message(self) -> None:
        result, issues = validate(good_person(age="forty"), PERSON)
        assert issues == [
            SchemaIssue(
                path="age",
                kind="type_mismatch",
                message="field 'age': expected integer, got string \"forty\"",
                expected="integer",
                actual='"forty"',
            )
        ]
        assert result["age"] == "forty"

    def test_all_issues_are_collected(self) -> None:
        value = {
            "label": "nope",
            "people": [
                good_person(),
                {"name": 5, "age": 1.5, "address": "Paris", "tags": ["a", 2, None]},
                {"age": 3},
            ],
            "scores": {"alice": 1, "bob": "two", "my key": 2.5},
        }
        _, issues = validate(value, TEAM)
        assert kinds(issues) == [
            ("label", "enum_violation"),
            ("people[1].name", "type_mismatch"),
            ("people[1].age", "type_mismatch"),
            ("people[1].address", "type_mismatch"),
            ("people[1].tags[1]", "type_mismatch"),
            ("people[1].tags[2]", "type_mismatch"),
            ("people[2].name", "missing_field"),
            ("people[2].address", "missing_field"),
            ("people[2].tags", "missing_field"),
            ("scores.bob", "type_mismatch"),
            ('scores["my key"]', "type_mismatch"),
        ]
        address = next(i for i in issues if i.path == "people[1].address")
        assert address.expected == "object Address"
        assert address.message == "field 'people[1].address': expected object Address, got string \"Paris\""

    def test_root_paths(self) -> None:
        _, issues = validate([1, "x"], array(INTEGER))
        assert issues[0].path == "[1]"
        assert issues[0].message == "field '[1]': expected integer, got string \"x\""
        _, issues = validate("x", PERSON)
        assert issues[0].path == ""
        assert issues[0].message == 'top-level value: expected object Person, got string "x"'

    def test_arrays_of_objects_are_cleaned_item_by_item(self) -> None:
        schema = array(record("P", {"name": STRING, "n": {"type": "integer", "default": 7}}))
        result, issues = validate([{"name": "a", "x": 1}, {"name": "b", "n": 2.0}], schema)
        assert issues == []
        assert result == [{"name": "a", "n": 7}, {"name": "b", "n": 2}]

    def test_map_values_are_checked_and_keys_kept(self) -> None:
        schema = mapping(array(NUMBER))
        result, issues = validate({"a": [1, 2.5], "b": []}, schema)
        assert issues == [] and result == {"a": [1.0, 2.5], "b": []}
        assert kinds(issues_of({"a": [1, "x"]}, schema)) == [("a[1]", "type_mismatch")]
        assert kinds(issues_of([], schema)) == [("", "type_mismatch")]

    def test_plain_object_accepts_any_members(self) -> None:
        result, issues = validate({"a": 1, "b": [None]}, {"type": "object"})
        assert issues == [] and result == {"a": 1, "b": [None]}

    def test_record_with_additional_properties_schema_keeps_checked_extras(self) -> None:
        schema = {"type": "object", "properties": {"a": INTEGER}, "required": ["a"], "additionalProperties": STRING}
        result, issues = validate({"a": 1, "b": "x", "c": 2}, schema)
        assert result == {"a": 1, "b": "x", "c": 2}
        assert kinds(issues) == [("c", "type_mismatch")]

    def test_required_name_without_a_property_schema(self) -> None:
        schema = {"type": "object", "properties": {}, "required": ["x"]}
        assert kinds(issues_of({}, schema)) == [("x", "missing_field")]
        assert validate({"x": [1]}, schema) == ({"x": [1]}, [])

    def test_odd_property_names_render_as_brackets(self) -> None:
        schema = record("R", {"a b": INTEGER, "ok_1": {"type": "object", "properties": {"x.y": INTEGER}, "required": ["x.y"]}})
        _, issues = validate({"a b": "1", "ok_1": {}}, schema)
        assert [i.path for i in issues] == ['["a b"]', 'ok_1["x.y"]']

    def test_input_is_not_mutated(self) -> None:
        value = {"label": "legal", "people": [good_person(extra=1, age=2.0)], "scores": {"a": 1}}
        before = copy.deepcopy(value)
        schema_before = copy.deepcopy(TEAM)
        for mode in MODES:
            validate(value, TEAM, mode)
        assert value == before
        assert TEAM == schema_before

    def test_unknown_mode_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError, match="mode"):
            validate({}, PERSON, "lenient")


class TestDefaultsAndOptional:
    def test_default_filled_in_every_mode(self) -> None:
        for mode in MODES:
            result, issues = validate(good_person(), PERSON, mode)
            assert issues == [], mode
            assert result["score"] == 0.5

    def test_required_field_with_default_is_not_an_issue(self) -> None:
        schema = record("R", {"n": {"type": "integer", "default": 3}}, required=["n"])
        assert validate({}, schema) == ({"n": 3}, [])

    def test_default_is_copied(self) -> None:
        schema = record("R", {"xs": {"type": "array", "items": INTEGER, "default": [1]}}, required=[])
        result, _ = validate({}, schema)
        result["xs"].append(2)
        assert schema["properties"]["xs"]["default"] == [1]
        assert validate({}, schema)[0] == {"xs": [1]}

    def test_present_value_beats_default(self) -> None:
        assert validate(good_person(score=2), PERSON)[0]["score"] == 2.0

    def test_optional_field_may_be_absent(self) -> None:
        result, issues = validate(good_person(), PERSON)
        assert issues == [] and "email" not in result and "nickname" not in result

    def test_optional_field_may_be_null(self) -> None:
        result, issues = validate(good_person(email=None), PERSON)
        assert issues == [] and result["email"] is None

    def test_optional_null_takes_the_default(self) -> None:
        # OpenAI strict mode makes the model send null where it would omit a field.
        result, issues = validate(good_person(score=None), PERSON)
        assert issues == [] and result["score"] == 0.5

    def test_explicit_null_for_an_option_stays_null_even_with_a_default(self) -> None:
        schema = record("R", {"o": {**option(INTEGER), "default": 4}}, required=[])
        assert validate({"o": None}, schema) == ({"o": None}, [])
        assert validate({}, schema) == ({"o": 4}, [])

    def test_required_field_must_not_be_null(self) -> None:
        _, issues = validate(good_person(name=None), PERSON)
        assert issues == [
            SchemaIssue("name", "type_mismatch", "field 'name': expected string, got null", "string", "null")
        ]

    def test_required_option_may_be_null_but_not_absent(self) -> None:
        schema = record("R", {"o": option(INTEGER)})
        assert validate({"o": None}, schema) == ({"o": None}, [])
        assert validate({"o": 2}, schema) == ({"o": 2}, [])
        assert kinds(issues_of({}, schema)) == [("o", "missing_field")]
        assert issues_of({}, schema)[0].expected == "integer or null"
        assert kinds(issues_of({"o": "x"}, schema)) == [("o", "type_mismatch")]

    def test_option_of_record_reports_inner_paths(self) -> None:
        schema = record("R", {"a": option(ADDRESS)})
        assert kinds(issues_of({"a": {"street": "s"}}, schema)) == [("a.city", "missing_field")]

    def test_type_list_from_the_normalisers(self) -> None:
        schema = {"type": ["integer", "null"]}
        assert validate(None, schema) == (None, [])
        assert validate(2.0, schema) == (2, [])
        _, issues = validate("x", schema)
        assert kinds(issues) == [("", "type_mismatch")]
        assert issues[0].expected == "integer"


class TestPartialMode:
    def test_missing_required_fields_are_allowed(self) -> None:
        result, issues = validate({"name": "Ada", "address": {}}, PERSON, "partial")
        assert issues == []
        assert result == {"name": "Ada", "address": {}, "score": 0.5}

    def test_present_fields_are_still_checked(self) -> None:
        value = {"age": "x", "address": {"city": 3}, "tags": [1]}
        _, issues = validate(value, PERSON, "partial")
        assert kinds(issues) == [("age", "type_mismatch"), ("address.city", "type_mismatch"), ("tags[0]", "type_mismatch")]

    def test_null_for_a_required_field_is_still_a_mismatch(self) -> None:
        assert kinds(issues_of({"name": None}, PERSON, "partial")) == [("name", "type_mismatch")]


class TestCoerceMode:
    @pytest.mark.parametrize(
        "schema, value, cleaned",
        [
            (INTEGER, "42", 42),
            (INTEGER, " -7 ", -7),
            (INTEGER, "+3", 3),
            (INTEGER, "3.0", 3),
            (INTEGER, "1e3", 1000),
            (NUMBER, "3.14", 3.14),
            (NUMBER, "42", 42.0),
            (NUMBER, ".5", 0.5),
            (NUMBER, "-2.5e-3", -0.0025),
            (BOOLEAN, "true", True),
            (BOOLEAN, "FALSE", False),
            (BOOLEAN, " True ", True),
            (BOOLEAN, "yes", True),
            (BOOLEAN, "No", False),
            (BOOLEAN, 1, True),
            (BOOLEAN, 0, False),
            (BOOLEAN, 1.0, True),
            (STRING, 42, "42"),
            (STRING, 1.5, "1.5"),
            (LABEL, "LEGAL", "legal"),
            (LABEL, " Technical ", "technical"),
            (array(INTEGER), 5, [5]),
            (array(INTEGER), "5", [5]),
            (array(STRING), "solo", ["solo"]),
            (array(STRING), '["a", "b"]', ["a", "b"]),
            (array(record("P", {"n": INTEGER})), {"n": "1"}, [{"n": 1}]),
            (ADDRESS, '{"street": "s", "city": "c"}', {"street": "s", "city": "c"}),
            (mapping(BOOLEAN), {"a": "yes", "b": 0}, {"a": True, "b": False}),
            (option(INTEGER), "9", 9),
            (option(INTEGER), None, None),
        ],
    )
    def test_coercions(self, schema: dict[str, Any], value: Any, cleaned: Any) -> None:
        result, issues = validate(value, schema, "coerce")
        assert issues == []
        assert result == cleaned
        assert type(result) is type(cleaned)

    @pytest.mark.parametrize(
        "schema, value",
        [
            (INTEGER, "forty"),
            (INTEGER, "3.5"),
            (INTEGER, "1_000"),
            (INTEGER, "0x10"),
            (INTEGER, "٤٢"),  # Arabic-Indic digits: int() would take them, JSON would not
            (INTEGER, ""),
            (INTEGER, True),
            (INTEGER, "9" * 30),
            (INTEGER, "1" * 5000),
            (NUMBER, "nan"),
            (NUMBER, "inf"),
            (NUMBER, "1e999"),
            (NUMBER, "1,5"),
            (BOOLEAN, 2),
            (BOOLEAN, "maybe"),
            (BOOLEAN, None),
            (STRING, True),
            (STRING, None),
            (STRING, [1]),
            (STRING, float("nan")),
            (LABEL, "other"),
            (array(INTEGER), None),
            (ADDRESS, "not json"),
            (ADDRESS, "[1]"),
            (NULL, "null"),
        ],
    )
    def test_failed_coercions_are_issues(self, schema: dict[str, Any], value: Any) -> None:
        result, issues = validate(value, schema, "coerce")
        assert len(issues) == 1
        assert issues[0].kind in ("type_mismatch", "enum_violation", "missing_field")
        if schema is LABEL:
            assert issues[0].kind == "enum_violation"
        elif isinstance(value, str) and schema is ADDRESS:
            assert issues[0].kind == "type_mismatch"
        assert result is value

    def test_deeply_nested_text_is_not_decoded(self) -> None:
        deep = "[" * 100_000 + "]" * 100_000
        assert validate(deep, array(ANY), "coerce") == ([deep], [])
        assert kinds(issues_of("{" * 100_000, ADDRESS, "coerce")) == [("", "type_mismatch")]

    def test_huge_ints_do_not_break_string_coercion(self) -> None:
        assert kinds(issues_of(10**5000, STRING, "coerce")) == [("", "type_mismatch")]

    def test_coercion_applies_recursively(self) -> None:
        value = {
            "label": "Legal",
            "people": [
                {"name": 1, "age": "36", "address": {"street": 10, "city": "c"}, "tags": "solo", "score": "0.25"},
                {"name": "B", "age": "old", "address": {"street": "s", "city": "c"}, "tags": []},
            ],
            "scores": {"a": "3"},
        }
        result, issues = validate(value, TEAM, "coerce")
        assert kinds(issues) == [("people[1].age", "type_mismatch")]
        assert result["label"] == "legal"
        assert result["people"][0] == {
            "name": "1",
            "age": 36,
            "address": {"street": "10", "city": "c"},
            "tags": ["solo"],
            "score": 0.25,
        }
        assert result["scores"] == {"a": 3}

    def test_missing_fields_are_still_issues(self) -> None:
        assert kinds(issues_of({"name": "x"}, PERSON, "coerce")) == [
            ("age", "missing_field"),
            ("address", "missing_field"),
            ("tags", "missing_field"),
        ]

    def test_exact_branch_wins_in_a_multi_branch_union(self) -> None:
        schema = {"anyOf": [INTEGER, STRING]}
        assert validate("42", schema, "coerce") == ("42", [])
        assert validate(42, schema, "coerce") == (42, [])
        assert validate(True, {"anyOf": [INTEGER, BOOLEAN]}, "coerce") == (True, [])
        assert validate("7", {"anyOf": [INTEGER, BOOLEAN]}, "coerce") == (7, [])
        _, issues = validate([1], schema, "coerce")
        assert kinds(issues) == [("", "type_mismatch")]
        assert issues[0].expected == "integer or string"

    def test_multi_branch_union_without_coercion(self) -> None:
        schema = {"anyOf": [INTEGER, STRING, NULL]}
        for value in (1, "a", None):
            assert validate(value, schema) == (value, [])
        assert validate(1.0, schema) == (1, [])
        assert issues_of("1", {"anyOf": [INTEGER, BOOLEAN]})[0].expected == "integer or boolean"


class TestRendering:
    def test_long_values_are_truncated(self) -> None:
        _, issues = validate("x" * 1000, INTEGER)
        assert issues[0].actual.endswith("...")
        assert len(issues[0].actual) <= 63
        assert len(issues[0].message) < 120

    def test_huge_and_deep_values_render_cheaply(self) -> None:
        deep: Any = []
        for _ in range(100_000):
            deep = [deep]
        wide = list(range(1_000_000))
        started = time.perf_counter()
        for value in (deep, wide, {"k": wide}, 10**10_000):
            _, issues = validate(value, STRING)
            assert issues[0].kind == "type_mismatch"
            assert len(issues[0].actual) <= 63
        assert time.perf_counter() - started < 2

    @pytest.mark.parametrize(
        "value, text",
        [
            (None, "got null"),
            (True, "got boolean true"),
            (1.5, "got number 1.5"),
            ([1, "a"], 'got array [1, "a"]'),
            ({"a": None}, 'got object {"a": null}'),
        ],
    )
    def test_what_was_found(self, value: Any, text: str) -> None:
        assert issues_of(value, INTEGER)[0].message.endswith(text)


# ---------------------------------------------------------------------------
# normalize_for_openai / openai_strict_supported
# ---------------------------------------------------------------------------

class TestOpenAI:
    def test_person(self) -> None:
        before = copy.deepcopy(PERSON)
        out = normalize_for_openai(PERSON)
        assert PERSON == before
        assert out == {
            "type": "object",
            "title": "Person",
            "properties": {
                "name": STRING,
                "age": INTEGER,
                "address": {
                    "type": "object",
                    "properties": {"street": STRING, "city": STRING},
                    "required": ["street", "city"],
                    "additionalProperties": False,
                },
                "tags": array(STRING),
                "nickname": option(STRING),
                "score": {"type": ["number", "null"]},
                "email": {"type": ["string", "null"]},
            },
            "required": ["name", "age", "address", "tags", "nickname", "score", "email"],
            "additionalProperties": False,
        }
        assert openai_strict_supported(PERSON)

    def test_optional_enums_objects_and_arrays_become_nullable(self) -> None:
        schema = record("R", {"e": LABEL, "o": ADDRESS, "xs": array(INTEGER), "n": NULL, "a": ANY}, required=[])
        props = normalize_for_openai(schema)["properties"]
        assert props["e"] == option(LABEL)
        assert props["o"]["anyOf"][1] == NULL
        assert props["o"]["anyOf"][0]["additionalProperties"] is False
        assert props["xs"] == {"type": ["array", "null"], "items": INTEGER}
        assert props["n"] == NULL
        assert props["a"] == ANY

    def test_property_names_that_look_like_keywords_survive(self) -> None:
        schema = record("R", {"title": STRING, "default": {"type": "integer", "default": 1}})
        out = normalize_for_openai(schema)
        assert out["properties"] == {"title": STRING, "default": INTEGER}
        assert out["required"] == ["title", "default"]
        out = normalize_for_anthropic(schema)
        assert list(out["properties"]) == ["title", "default"]

    def test_nested_records_in_arrays_and_options(self) -> None:
        out = normalize_for_openai(TEAM)
        person = out["properties"]["people"]["items"]
        assert person["additionalProperties"] is False
        assert "title" not in person
        assert person["properties"]["address"]["additionalProperties"] is False

    @pytest.mark.parametrize(
        "schema, supported",
        [
            (PERSON, True),
            (record("R", {"o": option(ADDRESS), "xs": array(array(LABEL))}), True),
            (TEAM, False),  # scores is a Map
            (record("R", {"m": mapping(STRING)}), False),
            (record("R", {"xs": array(mapping(STRING))}), False),
            (record("R", {"a": ANY}), False),
            (record("R", {"o": {"type": "object"}}), False),
            (record("R", {"x": {"type": "date"}}), False),
            (array(PERSON), False),  # the root must be an object
            (STRING, False),
            (mapping(STRING), False),
            (option(PERSON), False),
        ],
    )
    def test_strict_supported(self, schema: dict[str, Any], supported: bool) -> None:
        assert openai_strict_supported(schema) is supported
        assert openai_strict_supported(normalize_for_openai(schema)) is supported

    def test_maps_pass_through_for_non_strict_use(self) -> None:
        out = normalize_for_openai(TEAM)
        assert out["properties"]["scores"] == mapping(INTEGER)

    def test_reply_to_the_normalised_schema_validates_against_the_original(self) -> None:
        reply = {**good_person(), "nickname": None, "score": None, "email": None}
        result, issues = validate(reply, PERSON)
        assert issues == []
        assert result["score"] == 0.5 and result["email"] is None


# ---------------------------------------------------------------------------
# normalize_for_anthropic
# ---------------------------------------------------------------------------

class TestAnthropic:
    def test_person(self) -> None:
        before = copy.deepcopy(PERSON)
        out = normalize_for_anthropic(PERSON)
        assert PERSON == before
        assert out["type"] == "object"
        assert "title" not in out and "title" not in out["properties"]["address"]
        assert out["properties"]["score"] == {"type": "number", "default": 0.5}
        assert out["required"] == PERSON["required"]
        assert "additionalProperties" not in out

    def test_maps_are_kept(self) -> None:
        assert normalize_for_anthropic(TEAM)["properties"]["scores"] == mapping(INTEGER)

    @pytest.mark.parametrize("schema", [array(PERSON), STRING, option(ADDRESS), ANY, LABEL])
    def test_non_object_roots_are_wrapped(self, schema: dict[str, Any]) -> None:
        out = normalize_for_anthropic(schema)
        assert out["type"] == "object"
        assert out["required"] == ["value"]
        value = fake_instance(schema)
        assert unwrap_anthropic_input(schema, {"value": value}) == value
        assert issues_of({"value": value}, out) == []

    def test_object_roots_are_not_unwrapped(self) -> None:
        tool_input = {"value": 1, "name": "x"}
        assert unwrap_anthropic_input(PERSON, tool_input) is tool_input
        assert unwrap_anthropic_input(mapping(INTEGER), tool_input) is tool_input


# ---------------------------------------------------------------------------
# fake_instance
# ---------------------------------------------------------------------------

class TestFakeInstance:
    def test_person(self) -> None:
        assert fake_instance(PERSON) == {
            "name": "name example",
            "age": 1,
            "address": {"street": "street example", "city": "city example"},
            "tags": ["tags example"],
            "nickname": "nickname example",
            "score": 1.5,
            "email": "email example",
        }

    def test_seed_is_deterministic(self) -> None:
        assert fake_instance(TEAM, "s1") == fake_instance(TEAM, "s1")
        assert fake_instance(TEAM, "s1") != fake_instance(TEAM, "s2")
        assert fake_instance(STRING, "abc") == "example-abc"

    @pytest.mark.parametrize(
        "schema, expected",
        [
            (STRING, "example"),
            (INTEGER, 1),
            (NUMBER, 1.5),
            (BOOLEAN, True),
            (NULL, None),
            (LABEL, "legal"),
            (array(INTEGER), [1]),
            (mapping(BOOLEAN), {"key": True}),
            (option(INTEGER), 1),
            (option(NULL), None),
            ({"type": ["null", "integer"]}, 1),
            ({"type": "object"}, {}),
        ],
    )
    def test_shapes(self, schema: dict[str, Any], expected: Any) -> None:
        assert fake_instance(schema) == expected

    def test_fakes_validate(self) -> None:
        for schema in (PERSON, TEAM, ADDRESS, array(PERSON), mapping(option(LABEL))):
            for mode in MODES:
                assert issues_of(fake_instance(schema, "x"), schema, mode) == []


# ---------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------

class TestPrompts:
    def test_describe_schema(self) -> None:
        text = describe_schema(PERSON)
        assert "only a JSON object" in text
        assert json.dumps(PERSON, separators=(",", ":")) in text
        assert "\n\n" not in text
        assert "JSON value" in describe_schema(array(STRING))

    def test_retry_after_schema_issues(self) -> None:
        value = good_person(age="forty", address={"street": "s"})
        _, issues = validate(value, PERSON)
        text = retry_prompt(issues, PERSON)
        assert "previous reply was invalid" in text
        assert '- age: expected integer, got string "forty"' in text
        assert "- address.city: missing required field" in text
        assert text.endswith(describe_schema(PERSON))
        assert "not valid JSON" not in text

    def test_retry_lists_enum_and_root_issues(self) -> None:
        _, issues = validate({"label": "x", "people": [], "scores": {}}, TEAM)
        assert "- label: \"x\" is not one of legal, technical" in retry_prompt(issues, TEAM)
        _, issues = validate([], TEAM)
        assert "- (top level): expected object Team, got array []" in retry_prompt(issues, TEAM)

    def test_retry_after_a_parse_error(self) -> None:
        _, issue = parse_json_reply("Sorry, I can't.")
        assert issue is not None
        text = retry_prompt([issue], PERSON)
        assert "not valid JSON" in text
        assert issue.message in text
        assert describe_schema(PERSON) in text

    def test_retry_caps_the_issue_list(self) -> None:
        _, issues = validate(["x"] * 100, array(INTEGER))
        text = retry_prompt(issues, array(INTEGER))
        assert "- [19]:" in text and "- [20]:" not in text
        assert "and 80 more" in text

    def test_retry_without_issues_still_asks_again(self) -> None:
        assert describe_schema(PERSON) in retry_prompt([], PERSON)


# ---------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------

NAMES = st.one_of(
    st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True),
    st.sampled_from(["title", "default", "type", "items", "my key", "a.b", "é"]),
)
LEAVES = st.one_of(
    st.sampled_from([STRING, INTEGER, NUMBER, BOOLEAN, NULL, ANY]),
    st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=4, unique=True).map(
        lambda xs: {"type": "string", "enum": xs}
    ),
)


@st.composite
def records(draw: st.DrawFn, children: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    fields = draw(st.dictionaries(NAMES, st.tuples(children, st.booleans(), st.booleans()), max_size=5))
    props: dict[str, Any] = {}
    required: list[str] = []
    for name, (child, is_required, has_default) in fields.items():
        props[name] = {**child, "default": fake_instance(child, "d")} if has_default and "anyOf" not in child else child
        if is_required:
            required.append(name)
    title = draw(st.sampled_from(["Thing", "Person", "Outer_Inner"]))
    return {"type": "object", "title": title, "properties": props, "required": required}


def extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        children.map(array),
        children.map(mapping),
        children.map(option),
        records(children),
    )


SCHEMAS = st.recursive(LEAVES, extend, max_leaves=12)
RECORD_SCHEMAS = records(SCHEMAS)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    st.text(max_size=10),
    st.sampled_from(["42", "3.5", "true", "No", "legal", "[1]", '{"a": 1}', ""]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.one_of(NAMES, st.text(max_size=4)), inner, max_size=4)),
    max_leaves=20,
)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def instances(schema: Any) -> st.SearchStrategy[Any]:
    """Values that conform (strict) to `schema`, drawn at random."""
    if not isinstance(schema, dict) or not {"type", "enum", "anyOf"} & schema.keys():
        return JSON_VALUES.filter(lambda v: not _has_nonfinite(v))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of(*(instances(b) for b in schema["anyOf"]))
    t = schema["type"]
    if t == "string":
        return st.text(max_size=8)
    if t == "integer":
        return st.integers(INT_MIN, INT_MAX)
    if t == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if t == "boolean":
        return st.booleans()
    if t == "null":
        return st.none()
    if t == "array":
        return st.lists(instances(schema["items"]), max_size=3)
    if "additionalProperties" in schema:
        return st.dictionaries(st.text(max_size=4), instances(schema["additionalProperties"]), max_size=3)
    required = {n: instances(s) for n, s in schema["properties"].items() if n in schema["required"]}
    optional = {n: st.one_of(st.none(), instances(s)) for n, s in schema["properties"].items() if n not in schema["required"]}
    return st.fixed_dictionaries(required, optional=optional)


def _has_nonfinite(v: Any) -> bool:
    if isinstance(v, float):
        return not math.isfinite(v)
    if isinstance(v, list):
        return any(_has_nonfinite(x) for x in v)
    if isinstance(v, dict):
        return any(_has_nonfinite(x) for x in v.values())
    return False


@PROPERTY
@given(SCHEMAS, st.text(max_size=5))
def test_fake_instance_always_validates(schema: dict[str, Any], seed: str) -> None:
    fake = fake_instance(schema, seed)
    assert fake == fake_instance(schema, seed)
    for mode in MODES:
        result, issues = validate(fake, schema, mode)
        assert issues == [], (mode, issues)
        assert result == fake
    # What the mock provider sends goes through the same text path as a real reply.
    parsed, issue = parse_json_reply(json.dumps(fake))
    assert issue is None and parsed == fake


@PROPERTY
@given(SCHEMAS, JSON_VALUES, st.sampled_from(MODES))
def test_validate_never_raises(schema: dict[str, Any], value: Any, mode: str) -> None:
    before = copy.deepcopy(value)
    result, issues = validate(value, schema, mode)
    assert all(isinstance(i, SchemaIssue) for i in issues)
    assert all("\n" not in i.message and len(i.actual) <= 63 for i in issues)
    assert _same(value, before)  # never mutated
    if mode != "partial":
        assert all(i.kind != "missing_field" or i.path for i in issues)
    del result


def _same(a: Any, b: Any) -> bool:
    # NaN != NaN, so compare through a rendering that keeps it.
    return repr(a) == repr(b)


@PROPERTY
@given(SCHEMAS.flatmap(lambda s: st.tuples(st.just(s), instances(s))))
def test_conforming_values_validate_unchanged(pair: tuple[dict[str, Any], Any]) -> None:
    schema, value = pair
    result, issues = validate(value, schema)
    assert issues == []
    result_again, issues_again = validate(result, schema)
    assert issues_again == [] and result_again == result


@PROPERTY
@given(SCHEMAS, JSON_VALUES)
def test_coerced_results_are_strictly_valid(schema: dict[str, Any], value: Any) -> None:
    result, issues = validate(value, schema, "coerce")
    if not issues:
        again, strict_issues = validate(result, schema, "strict")
        assert strict_issues == []
        assert again == result


@PROPERTY
@given(RECORD_SCHEMAS.flatmap(lambda s: st.tuples(st.just(s), instances(s))))
def test_dropping_a_required_field(pair: tuple[dict[str, Any], Any]) -> None:
    schema, value = pair
    for name in schema["required"]:
        if name in value and "default" not in schema["properties"][name]:
            smaller = {k: v for k, v in value.items() if k != name}
            expected_path = validate(smaller, schema)[1]
            assert [(i.kind, i.message) for i in expected_path] == [
                ("missing_field", f"missing required field '{_path_of(name)}'")
            ]
            assert validate(smaller, schema, "partial")[1] == []


def _path_of(name: str) -> str:
    import re

    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else f"[{json.dumps(name, ensure_ascii=False)}]"


@PROPERTY
@given(SCHEMAS)
def test_normalizers_do_not_mutate(schema: dict[str, Any]) -> None:
    before = copy.deepcopy(schema)
    normalize_for_openai(schema)
    normalize_for_anthropic(schema)
    openai_strict_supported(schema)
    fake_instance(schema)
    describe_schema(schema)
    assert schema == before


def _has_map_or_any(schema: Any) -> bool:
    for node, _ in schema_nodes(schema):
        is_any = not {"type", "anyOf", "enum"} & node.keys()
        if is_any or isinstance(node.get("additionalProperties"), dict):
            return True
    return False


@PROPERTY
@given(RECORD_SCHEMAS)
def test_openai_normalisation(schema: dict[str, Any]) -> None:
    out = normalize_for_openai(schema)
    assert openai_strict_supported(schema) is (not _has_map_or_any(schema))
    for node, is_root in schema_nodes(out):
        assert "default" not in node
        assert is_root or "title" not in node
        if isinstance(node.get("properties"), dict):
            assert node["additionalProperties"] is False
            assert node["required"] == list(node["properties"])
    assert out["title"] == schema["title"]
    # A reply for the normalised schema (optional fields null) is valid for the original.
    fake = fake_instance(out)
    assert issues_of(fake, schema) == []
    nulls = {k: (None if k not in schema["required"] else v) for k, v in fake.items()}
    assert issues_of(nulls, schema) == []


@PROPERTY
@given(SCHEMAS)
def test_anthropic_normalisation(schema: dict[str, Any]) -> None:
    out = normalize_for_anthropic(schema)
    assert out["type"] == "object"
    for node, _ in schema_nodes(out):
        assert "title" not in node
    tool_input = fake_instance(out)
    assert issues_of(tool_input, out) == []
    value = unwrap_anthropic_input(schema, tool_input)
    assert issues_of(value, schema) == []
    if schema.get("type") == "object":
        assert out.get("properties", {}).keys() == schema.get("properties", {}).keys()
        assert value is tool_input
    else:
        assert out["properties"].keys() == {"value"}
        assert value is tool_input["value"]


@PROPERTY
@given(st.text(max_size=200))
def test_parse_never_raises(text: str) -> None:
    value, issue = parse_json_reply(text)
    assert issue is None or (value is None and issue.kind == "parse_error" and "\n" not in issue.message)


@PROPERTY
@given(JSON_VALUES.filter(lambda v: not _has_nonfinite(v)), st.sampled_from(["plain", "fence", "prose"]))
def test_parse_reads_back_what_was_written(value: Any, wrapping: str) -> None:
    text = json.dumps(value, ensure_ascii=False)
    if wrapping == "fence":
        text = f"Here it is:\n```json\n{json.dumps(value, indent=2)}\n```\nAnything else?"
    elif wrapping == "prose":
        if not isinstance(value, (dict, list)):
            return
        text = f"Sure! The answer is {text} -- hope that helps."
    assert parse_json_reply(text) == (value, None)
