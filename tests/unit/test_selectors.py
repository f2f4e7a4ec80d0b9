"""Label and field selectors. Parse cases mirror k8s.io/apimachinery pkg/labels/selector_test.go
(TestSelectorParse / TestLexer / TestRequirementConstructor) and pkg/fields/selector_test.go."""

from __future__ import annotations

import pytest

from hcpsim.apiserver.errors import ApiError
from hcpsim.apiserver.selectors import (
    DEFAULT_FIELDS,
    EVENT_FIELDS,
    NODE_FIELDS,
    POD_FIELDS,
    escape_field_value,
    fields_for_kind,
    label_selector_as_string,
    label_selector_from_spec,
    label_selector_to_string,
    parse_field_selector,
    parse_label_selector,
)

# ------------------------------------------------------------------------------ label selectors


@pytest.mark.parametrize(
    "text,normalized",
    [
        ("", ""),
        ("x=a,y=b,z=c", "x=a,y=b,z=c"),
        ("x!=a,y=b", "x!=a,y=b"),
        ("x=,z= ", "x=,z="),
        ("x= ,z= ", "x=,z="),
        ("!x", "!x"),
        ("x>1", "x>1"),
        ("x<7", "x<7"),
        ("x in (b,a),w notin (c)", "w notin (c),x in (a,b)"),
        ("x in (in,notin)", "x in (in,notin)"),  # in/notin are plain values inside ( )
        ("x in (,a)", "x in (,a)"),
        ("x notin ()", "x notin ()"),
        ("example.com/key==v", "example.com/key==v"),
    ],
)
def test_parse_valid(text: str, normalized: str) -> None:
    assert str(parse_label_selector(text)) == normalized


@pytest.mark.parametrize(
    "text,message",
    [
        ("x=a||y=b", 'unable to parse requirement: values[0][x]: Invalid value: "a||y": a valid label must be'),
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("x=a,", "found '', expected: identifier after ','"),
        ("x in a", "unable to parse requirement: found 'a' expected: '('"),
        ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("=a", "found '=', expected: !, identifier, or 'end of string'"),
        ("x=a b", "found 'b', expected: ',' or 'end of string'"),
    ],
)
def test_parse_errors_are_400_with_parser_wording(text: str, message: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_label_selector(text)
    assert err.value.code == 400 and err.value.reason == "BadRequest"
    assert err.value.message.startswith(message)


def test_parse_invalid_key_and_value_wording() -> None:
    with pytest.raises(ApiError) as err:
        parse_label_selector("Bad_=x")
    assert err.value.message == (
        'unable to parse requirement: <nil>: Invalid value: "Bad_": name part must consist of alphanumeric '
        "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  "
        "or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    )
    with pytest.raises(ApiError) as err:
        parse_label_selector("app=-bad")
    assert err.value.message.startswith('unable to parse requirement: values[0][app]: Invalid value: "-bad": a valid label must be')


@pytest.mark.parametrize(
    "text,labels,expected",
    [
        ("", {"a": "b"}, True),
        ("x=y", {"x": "y"}, True),
        ("x=y", {"x": "z"}, False),
        ("x=y", {}, False),
        ("x!=y", {}, True),  # != matches a missing key
        ("x notin (a,b)", {}, True),
        ("x notin (a,b)", {"x": "a"}, False),
        ("x in (a,b)", {"x": "b"}, True),
        ("x", {"x": ""}, True),
        ("!x", {"x": ""}, False),
        ("x>1", {"x": "2"}, True),
        ("x>1", {"x": "abc"}, False),
        ("x=a,y=b", {"x": "a"}, False),
    ],
)
def test_matches(text: str, labels: dict, expected: bool) -> None:
    assert parse_label_selector(text).matches(labels) is expected


def test_label_selector_from_spec_nil_and_empty() -> None:
    nothing = label_selector_from_spec(None)
    everything = label_selector_from_spec({})
    assert not nothing.matches({"a": "b"}) and not nothing.empty()
    assert everything.matches({"a": "b"}) and everything.matches(None) and everything.empty()


def test_label_selector_from_spec_and_formatting() -> None:
    spec = {
        "matchLabels": {"b": "1", "a": "2"},
        "matchExpressions": [{"key": "c", "operator": "NotIn", "values": ["y", "x"]}, {"key": "d", "operator": "Exists"}],
    }
    selector = label_selector_from_spec(spec)
    assert selector.matches({"a": "2", "b": "1", "d": ""})
    assert not selector.matches({"a": "2", "b": "1", "c": "x", "d": ""})
    assert label_selector_to_string(spec) == "a=2,b=1,c notin (x,y),d"
    assert label_selector_to_string(None) == "<none>"
    assert label_selector_to_string({}) == "<none>"
    assert label_selector_as_string({}) == ""
    assert label_selector_to_string({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}) == "<error>"


def test_label_selector_from_spec_errors() -> None:
    with pytest.raises(ApiError) as err:
        label_selector_from_spec({"matchExpressions": [{"key": "a", "operator": "Bogus"}]})
    assert err.value.message == '"Bogus" is not a valid label selector operator'
    with pytest.raises(ApiError) as err:
        label_selector_from_spec({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})
    assert err.value.message == "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"


# ------------------------------------------------------------------------------ field selectors


POD = {"metadata": {"name": "p1", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", True),
        ("status.phase=Running", True),
        ("status.phase==Running", True),
        ("status.phase!=Running", False),
        ("spec.nodeName=n1,metadata.namespace=ns", True),
        ("spec.nodeName=", False),
        ("status.podIP=", True),  # a missing field reads as ""
        ("spec.host=n1", True),  # legacy alias of spec.nodeName
        ("spec.hostNetwork=false", True),
        ("metadata.name=p1,", True),
    ],
)
def test_pod_field_selector(text: str, expected: bool) -> None:
    assert parse_field_selector(text, POD_FIELDS).matches(POD) is expected


def test_field_selector_escaping() -> None:
    obj = {"metadata": {"name": "a,b=c\\d", "namespace": "x"}}
    text = "metadata.name=" + escape_field_value("a,b=c\\d")
    assert text == "metadata.name=a\\,b\\=c\\\\d"
    assert parse_field_selector(text, DEFAULT_FIELDS).matches(obj)


@pytest.mark.parametrize(
    "text,supported,message",
    [
        ("spec.foo=x", POD_FIELDS, "field label not supported: spec.foo"),
        ("spec.foo=x", DEFAULT_FIELDS, '"spec.foo" is not a known field selector: only "metadata.name", "metadata.namespace"'),
        ("metadata.namespace=x", NODE_FIELDS, "field label not supported: metadata.namespace"),
        ("spec.foo=x", {"metadata.name": lambda o: None}, "field label not supported: spec.foo"),
        ("foo", DEFAULT_FIELDS, "invalid selector: 'foo'; can't understand 'foo'"),
        ("metadata.name=a=b", DEFAULT_FIELDS, "invalid field selector: unescaped character in value: 61"),
        ("metadata.name=a\\x", DEFAULT_FIELDS, "invalid field selector: invalid escape sequence: \\x"),
        ("metadata.name=a\\", DEFAULT_FIELDS, "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_field_selector_errors(text: str, supported: object, message: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_field_selector(text, supported)  # type: ignore[arg-type]
    assert (err.value.code, err.value.reason, err.value.message) == (400, "BadRequest", message)


def test_event_and_kind_tables() -> None:
    event = {"involvedObject": {"kind": "Pod", "name": "p1"}, "reason": "Started", "source": {"component": "kubelet"}}
    assert parse_field_selector("involvedObject.kind=Pod,involvedObject.name=p1,source=kubelet", EVENT_FIELDS).matches(event)
    assert fields_for_kind("", "Pod") is POD_FIELDS
    assert fields_for_kind("apps", "Deployment") is DEFAULT_FIELDS
    selector = parse_field_selector("metadata.name=p1", POD_FIELDS)
    assert selector.requires_exact_match("metadata.name") == "p1"
