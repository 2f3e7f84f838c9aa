"""core.expect: every operator on a present value, a missing field, a wrong type and null; parsing and its errors."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from core.expect import MISSING, Expectation, describe, lookup, parse_all

BIG = "1000000000000000000000000000000"
LONG = "the quick brown fox jumps over the lazy dog " * 3
# Parsed from text, as a response body is, so its values are never the objects an expectation parses.
DOC = json.loads(f"""{{
    "n": 5, "one": 1, "one_float": 1.0, "s": "5", "word": "healthy", "t": true, "f": false, "z": null,
    "arr": [1, 2], "ones": [1], "obj": {{"k": 1}}, "big": {BIG}, "long": "{LONG}"
}}""")


def case(text: str, holds: bool, why: str = "", *, id: str) -> Any:
    return pytest.param(text, holds, why, id=id)


EQUALS = [
    case("n == 5", True, id="eq-number-holds"),
    case("n == 4", False, "found 5", id="eq-number-differs-does-not-hold"),
    case("one == 1.0", True, id="eq-int-equals-float"),
    case("one_float == 1", True, id="eq-float-equals-int"),
    case('word == "healthy"', True, id="eq-string-holds"),
    case('word == "Healthy"', False, 'found "healthy"', id="eq-string-differs-does-not-hold"),
    case("t == true", True, id="eq-boolean-holds"),
    case("f == true", False, "found false", id="eq-boolean-differs-does-not-hold"),
    case("nope == 5", False, "no such field", id="eq-on-missing-does-not-hold"),
    case("nope == null", False, "no such field", id="eq-null-on-missing-does-not-hold"),
    case("s == 5", False, 'found string "5", not a number', id="eq-string-vs-number-does-not-hold"),
    case('n == "5"', False, "found number 5, not a string", id="eq-number-vs-string-does-not-hold"),
    case("t == 1", False, "found boolean true, not a number", id="eq-true-is-not-1"),
    case("f == 0", False, "found boolean false, not a number", id="eq-false-is-not-0"),
    case("one == true", False, "found number 1, not a boolean", id="eq-1-is-not-true"),
    case("z == null", True, id="eq-null-on-null-holds"),
    case("z == 5", False, "found null, not a number", id="eq-on-null-does-not-hold"),
    case('z == ""', False, "found null, not a string", id="eq-null-is-not-empty-string"),
    case("n == null", False, "found number 5, not null", id="eq-null-on-number-does-not-hold"),
    case("arr == [1, 2]", True, id="eq-array-holds"),
    case("arr == [2, 1]", False, "found [1, 2]", id="eq-array-order-matters"),
    case("ones == [true]", False, "found [1]", id="eq-array-is-type-strict-inside"),
    case("ones == [1, 1]", False, "found [1]", id="eq-array-shorter-does-not-hold"),
    case("arr == [1]", False, "found [1, 2]", id="eq-array-longer-does-not-hold"),
    case("obj == [1]", False, 'found object {"k": 1}, not an array', id="eq-object-vs-array-does-not-hold"),
    case('obj == {"k": 1}', True, id="eq-object-holds"),
    case('obj == {"k": true}', False, 'found {"k": 1}', id="eq-object-is-type-strict-inside"),
    case('obj == {"k": 1, "j": 2}', False, 'found {"k": 1}', id="eq-object-with-fewer-keys-does-not-hold"),
    case("obj == {}", False, 'found {"k": 1}', id="eq-object-with-more-keys-does-not-hold"),
    case('obj == {"j": 1}', False, 'found {"k": 1}', id="eq-object-other-key-does-not-hold"),
    case("arr == {}", False, "found array [1, 2], not an object", id="eq-array-vs-object-does-not-hold"),
    case(f"big == {BIG}", True, id="eq-big-int-by-value"),
    case(f'long == "{LONG}"', True, id="eq-long-string-by-value"),
]

NOT_EQUALS = [
    case("n != 4", True, id="ne-number-differs-holds"),
    case("n != 5", False, "found 5", id="ne-number-equal-does-not-hold"),
    case("one_float != 1", False, "found 1.0", id="ne-float-equal-to-int-does-not-hold"),
    case('word != "down"', True, id="ne-string-differs-holds"),
    case('word != "healthy"', False, 'found "healthy"', id="ne-string-equal-does-not-hold"),
    case("nope != 5", False, "no such field", id="ne-on-missing-does-not-hold"),
    case("nope != null", False, "no such field", id="ne-null-on-missing-does-not-hold"),
    case('n != "down"', True, id="ne-other-type-holds"),
    case("s != 5", True, id="ne-string-vs-number-holds"),
    case("t != 1", True, id="ne-true-vs-1-holds"),
    case("t != true", False, "found true", id="ne-boolean-equal-does-not-hold"),
    case("z != 5", True, id="ne-on-null-holds"),
    case("n != null", True, id="ne-null-on-number-holds"),
    case("z != null", False, "found null", id="ne-null-on-null-does-not-hold"),
    case("ones != [true]", True, id="ne-array-is-type-strict-inside"),
    case("arr != [1, 2]", False, "found [1, 2]", id="ne-array-equal-does-not-hold"),
    case('obj != {"k": 1}', False, 'found {"k": 1}', id="ne-object-equal-does-not-hold"),
    case(f"big != {BIG}", False, f"found {BIG}", id="ne-big-int-by-value"),
    case(f'long != "{LONG}"', False, f'found "{LONG}"', id="ne-long-string-by-value"),
]

ORDERING = [
    case("n < 6", True, id="lt-holds"),
    case("n < 5", False, "found 5", id="lt-equal-does-not-hold"),
    case("n < 4", False, "found 5", id="lt-greater-does-not-hold"),
    case("n <= 5", True, id="le-equal-holds"),
    case("n <= 6", True, id="le-smaller-holds"),
    case("n <= 4", False, "found 5", id="le-greater-does-not-hold"),
    case("n > 4", True, id="gt-holds"),
    case("n > 5", False, "found 5", id="gt-equal-does-not-hold"),
    case("n > 6", False, "found 5", id="gt-smaller-does-not-hold"),
    case("n >= 5", True, id="ge-equal-holds"),
    case("n >= 4", True, id="ge-greater-holds"),
    case("n >= 6", False, "found 5", id="ge-smaller-does-not-hold"),
    case("one_float < 1.5", True, id="lt-float-holds"),
    case("one_float >= 1", True, id="ge-float-against-int-holds"),
    case('word < "i"', True, id="lt-string-holds"),
    case('word > "i"', False, 'found "healthy"', id="gt-string-does-not-hold"),
    case('word >= "healthy"', True, id="ge-string-equal-holds"),
    case('word > "Z"', True, id="gt-string-by-code-point"),
    case("nope < 5", False, "no such field", id="lt-on-missing-does-not-hold"),
    case("nope <= 5", False, "no such field", id="le-on-missing-does-not-hold"),
    case("nope > 5", False, "no such field", id="gt-on-missing-does-not-hold"),
    case("nope >= 5", False, "no such field", id="ge-on-missing-does-not-hold"),
    case("s < 6", False, 'found string "5", cannot compare with number 6', id="lt-string-vs-number-does-not-hold"),
    case('n >= "4"', False, 'found number 5, cannot compare with string "4"', id="ge-number-vs-string-does-not-hold"),
    case("t > 0", False, "found boolean true, cannot compare with number 0", id="gt-boolean-is-not-a-number"),
    case("one <= true", False, "found number 1, cannot compare with boolean true", id="le-number-vs-boolean-does-not-hold"),
    case("z < 5", False, "found null, cannot compare with number 5", id="lt-on-null-does-not-hold"),
    case("z >= 0", False, "found null, cannot compare with number 0", id="ge-on-null-does-not-hold"),
    case("n > null", False, "found number 5, cannot compare with null", id="gt-null-on-number-does-not-hold"),
    case("z <= null", False, "found null, only numbers and strings have an order", id="le-null-on-null-does-not-hold"),
    case("t > false", False, "found boolean true, only numbers and strings have an order", id="gt-booleans-have-no-order"),
    case("arr < [3]", False, "found array [1, 2], only numbers and strings have an order", id="lt-arrays-have-no-order"),
    case("obj >= {}", False, 'found object {"k": 1}, only numbers and strings have an order', id="ge-objects-have-no-order"),
]

PRESENCE = [
    case("n exists", True, id="exists-on-present-holds"),
    case("f exists", True, id="exists-on-false-holds"),
    case("z exists", True, id="exists-on-null-holds"),
    case("nope exists", False, "no such field", id="exists-on-missing-does-not-hold"),
    case("n.k exists", False, "no such field", id="exists-through-a-number-does-not-hold"),
    case("z.k exists", False, "no such field", id="exists-through-null-does-not-hold"),
    case("nope not exists", True, id="not-exists-on-missing-holds"),
    case("n.k not exists", True, id="not-exists-through-a-number-holds"),
    case("n not exists", False, "found 5", id="not-exists-on-present-does-not-hold"),
    case("f not exists", False, "found false", id="not-exists-on-false-does-not-hold"),
    case("z not exists", False, "found null", id="not-exists-on-null-does-not-hold"),
]

MATCHES = [
    case('word matches "^heal"', True, id="matches-holds"),
    case("word matches thy$", True, id="matches-bare-regex-holds"),
    case("word matches alt", True, id="matches-is-a-search"),
    case('word matches "^healthy$"', True, id="matches-anchored-whole-string-holds"),
    case('word matches "^alt"', False, 'found "healthy"', id="matches-anchored-does-not-hold"),
    case('word matches "^healthy.$"', False, 'found "healthy"', id="matches-too-long-does-not-hold"),
    case('s matches "^5$"', True, id="matches-numeric-string-holds"),
    case("nope matches x", False, "no such field", id="matches-on-missing-does-not-hold"),
    case("n matches 5", False, "found number 5, not a string", id="matches-on-number-does-not-hold"),
    case("t matches true", False, "found boolean true, not a string", id="matches-on-boolean-does-not-hold"),
    case("arr matches 1", False, "found array [1, 2], not a string", id="matches-on-array-does-not-hold"),
    case("z matches null", False, "found null, not a string", id="matches-on-null-does-not-hold"),
]


@pytest.mark.parametrize(("text", "holds", "why"), EQUALS + NOT_EQUALS + ORDERING + PRESENCE + MATCHES)
def test_every_operator(text: str, holds: bool, why: str) -> None:
    exp = Expectation.parse(text)
    verdict = exp.evaluate(DOC)
    assert (verdict.holds, verdict.why) == (holds, why)
    assert verdict.found == lookup(DOC, exp.path)
    assert exp.holds(DOC) == (holds, verdict.found)


def test_equality_is_by_value_not_identity() -> None:
    for text in (f"big == {BIG}", f'long == "{LONG}"'):
        exp = Expectation.parse(text)
        found = lookup(DOC, exp.path)
        assert found == exp.value
        assert found is not exp.value


def test_a_value_json_cannot_hold_has_its_own_type() -> None:
    verdict = Expectation.parse("pair == [1, 2]").evaluate({"pair": (1, 2)})
    assert (verdict.holds, verdict.found, verdict.why) == (False, (1, 2), "found tuple [1, 2], not an array")


def test_a_missing_field_is_found_as_missing() -> None:
    assert Expectation.parse("nope == 1").holds(DOC) == (False, MISSING)
    assert Expectation.parse("nope != 1").holds(None) == (False, MISSING)
    assert Expectation.parse("nope not exists").evaluate(MISSING).holds


@pytest.mark.parametrize(
    ("text", "path", "op", "value"),
    [
        pytest.param("a.b == 1", "a.b", "==", 1, id="number"),
        pytest.param('  status   !=   "down"  ', "status", "!=", "down", id="spaces-around"),
        pytest.param("a<=-2.5", "a", "<=", -2.5, id="no-spaces"),
        pytest.param("a >= 1e3", "a", ">=", 1000.0, id="exponent"),
        pytest.param("a < true", "a", "<", True, id="true"),
        pytest.param("a > false", "a", ">", False, id="false"),
        pytest.param("a == null", "a", "==", None, id="null"),
        pytest.param('a == [1, "x", null]', "a", "==", [1, "x", None], id="array"),
        pytest.param('a == {"k": [true]}', "a", "==", {"k": [True]}, id="object"),
        pytest.param("items.-1.id exists", "items.-1.id", "exists", None, id="exists"),
        pytest.param("a not exists", "a", "not exists", None, id="not-exists"),
        pytest.param("a  not \t exists ", "a", "not exists", None, id="not-exists-spaced"),
        pytest.param("not exists", "not", "exists", None, id="path-named-not"),
        pytest.param("a-b_c.d1 matches x", "a-b_c.d1", "matches", None, id="path-characters"),
    ],
)
def test_parse(text: str, path: str, op: str, value: Any) -> None:
    exp = Expectation.parse(text)
    assert (exp.text, exp.path, exp.op, exp.value) == (text, path, op, value)


@pytest.mark.parametrize(
    ("text", "regex"),
    [
        pytest.param('a matches "^x$"', "^x$", id="json-string"),
        pytest.param('a matches "\\\\d+ \\"q\\""', '\\d+ "q"', id="json-string-escapes"),
        pytest.param("a matches ^a b$  ", "^a b$", id="rest-of-line"),
        pytest.param("a matches x\"y", 'x"y', id="quote-inside-rest-of-line"),
    ],
)
def test_parse_regex(text: str, regex: str) -> None:
    exp = Expectation.parse(text)
    assert exp.pattern is not None
    assert (exp.op, exp.pattern.pattern) == ("matches", regex)


GRAMMAR_ERROR = "expected '<path> <op> <value>', '<path> exists', '<path> not exists' or '<path> matches <regex>', found "


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("status == healthy",
                     "expected a JSON literal after '==', found bare word healthy in 'status == healthy'; "
                     'quote strings: "healthy"', id="bare-word"),
        pytest.param("v != v1.2-rc_1", "expected a JSON literal after '!=', found bare word v1.2-rc_1 in 'v != v1.2-rc_1'; "
                     'quote strings: "v1.2-rc_1"', id="bare-word-with-dots"),
        pytest.param("a == True", "expected a JSON literal after '==', found bare word True in 'a == True'; "
                     'quote strings: "True"', id="python-true-is-a-bare-word"),
        pytest.param("a == NaN", "expected a JSON literal after '==', found bare word NaN in 'a == NaN'; "
                     'quote strings: "NaN"', id="nan-is-not-json"),
        pytest.param("a < -Infinity", "expected a JSON literal after '<', found '-Infinity' in 'a < -Infinity'",
                     id="infinity-is-not-json"),
        pytest.param("a == 1 2", "expected a JSON literal after '==', found '1 2' in 'a == 1 2'", id="two-values"),
        pytest.param('a == "x', "expected a JSON literal after '==', found '\"x' in 'a == \"x'", id="unclosed-string"),
        pytest.param("status = ok", GRAMMAR_ERROR + "'status = ok'", id="single-equals"),
        pytest.param("== 1", GRAMMAR_ERROR + "'== 1'", id="no-path"),
        pytest.param("a ==", GRAMMAR_ERROR + "'a =='", id="no-value"),
        pytest.param("a not", GRAMMAR_ERROR + "'a not'", id="not-without-exists"),
        pytest.param("", GRAMMAR_ERROR + "''", id="empty"),
        pytest.param("a exists now", "expected nothing after 'exists', found 'now' in 'a exists now'", id="text-after-exists"),
        pytest.param("a not exists now", "expected nothing after 'not exists', found 'now' in 'a not exists now'",
                     id="text-after-not-exists"),
        pytest.param("a matches", "expected a regex after 'matches', found nothing in 'a matches'", id="matches-nothing"),
        pytest.param('a matches "abc', "expected a JSON string after 'matches', found '\"abc' in 'a matches \"abc'",
                     id="matches-unclosed-string"),
        pytest.param('a matches "("', "expected a valid regex after 'matches', found '(' (missing ), unterminated subpattern "
                     "at position 0) in 'a matches \"(\"'", id="matches-bad-regex"),
    ],
)
def test_parse_errors_say_what_was_expected_and_found(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        Expectation.parse(text)
    assert str(caught.value) == message


def test_parse_all_keeps_the_order() -> None:
    parsed = parse_all(['a == "ok"', "b exists", "c matches x"])
    assert [(e.path, e.op) for e in parsed] == [("a", "=="), ("b", "exists"), ("c", "matches")]


def test_parse_all_rejects_a_bare_word() -> None:
    with pytest.raises(ValueError) as caught:
        parse_all(["a == ok"])
    assert str(caught.value) == "[0] expected a JSON literal after '==', found bare word ok in 'a == ok'; quote strings: \"ok\""


def test_parse_all_names_every_bad_line_by_index() -> None:
    with pytest.raises(ValueError) as caught:
        parse_all(["a == ok", "b exists", "c = 1"])
    assert str(caught.value) == ("[0] expected a JSON literal after '==', found bare word ok in 'a == ok'; quote strings: \"ok\"; "
                                 f"[2] {GRAMMAR_ERROR}'c = 1'")


@pytest.mark.parametrize(
    ("path", "found"),
    [
        pytest.param("a", {"b": [10, 20, 30]}, id="key"),
        pytest.param("a.b.0", 10, id="first-index"),
        pytest.param("a.b.2", 30, id="last-index"),
        pytest.param("a.b.3", MISSING, id="index-past-the-end"),
        pytest.param("a.b.-1", 30, id="negative-index"),
        pytest.param("a.b.-3", 10, id="negative-index-first"),
        pytest.param("a.b.-4", MISSING, id="negative-index-past-the-start"),
        pytest.param("a.b.x", MISSING, id="word-on-a-list"),
        pytest.param("a.b.1x", MISSING, id="not-quite-an-index"),
        pytest.param("a.b.length", 3, id="list-length"),
        pytest.param("a.length", 1, id="object-length"),
        pytest.param("s.length", 5, id="string-length"),
        pytest.param("n.length", MISSING, id="number-has-no-length"),
        pytest.param("own.length", "own", id="own-length-key-wins"),
        pytest.param("nope", MISSING, id="missing-key"),
        pytest.param("n.k", MISSING, id="through-a-number"),
        pytest.param("z", None, id="null"),
        pytest.param("z.k", MISSING, id="through-null"),
        pytest.param("0", "zero", id="digit-key-on-an-object"),
    ],
)
def test_lookup(path: str, found: Any) -> None:
    doc = {"a": {"b": [10, 20, 30]}, "s": "hello", "n": 5, "own": {"length": "own"}, "z": None, "0": "zero"}
    assert lookup(doc, path) == found
    assert (lookup(doc, path) is MISSING) is (found is MISSING)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param(MISSING, "no such field", id="missing"),
        pytest.param(None, "null", id="null"),
        pytest.param({"a": [1, True]}, '{"a": [1, true]}', id="json"),
        pytest.param("été", '"été"', id="not-ascii-escaped"),
        pytest.param(Decimal("1.5"), '"1.5"', id="not-json-as-text"),
        pytest.param("x" * 198, '"' + "x" * 198 + '"', id="200-chars-whole"),
        pytest.param("x" * 199, '"' + "x" * 199 + "…", id="201-chars-capped"),
    ],
)
def test_describe(value: Any, shown: str) -> None:
    assert describe(value) == shown


def test_missing_reads_as_missing() -> None:
    assert repr(MISSING) == "MISSING"
