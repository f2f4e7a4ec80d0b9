"""Label and field selectors with the parsing rules, matching and error wording of kube-apiserver.

Sources:
* k8s.io/apimachinery pkg/labels/selector.go (lexer, parser, Requirement, String) and
  pkg/apis/meta/v1/helpers.go (LabelSelectorAsSelector, FormatLabelSelector);
* k8s.io/apimachinery pkg/fields/selector.go (splitTerms, splitTerm, UnescapeValue);
* k8s.io/kubernetes pkg/apis/core/v1/conversion.go (which field labels each kind accepts and the
  "field label not supported: X" wording) and runtime.DefaultMetaV1FieldSelectorConversion (the
  wording for kinds without their own conversion function).

A bad selector in a list/watch query is a 400 BadRequest whose message is the parser's error text
(ListResource wraps the DecodeParameters / Transform error with errors.NewBadRequest).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from hcpsim.apiserver.errors import ApiError
from hcpsim.apiserver.names import is_qualified_name, is_valid_label_value

# --------------------------------------------------------------------------- label selectors

# selection.Operator values
IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "in", "notin", "=", "==", "!="
GREATER_THAN, LESS_THAN, EXISTS, DOES_NOT_EXIST = "gt", "lt", "exists", "!"
_BINARY_OPERATORS = [IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN]


class SelectorParseError(ValueError):
    """A selector the apiserver would reject; str() is the server's message."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            if self.key not in labels or len(self.values) != 1:
                return False
            try:
                have, want = int(labels[self.key]), int(self.values[0])
            except ValueError:
                return False
            return have > want if op == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        out = ("!" if self.operator == DOES_NOT_EXIST else "") + self.key
        if self.operator in (EXISTS, DOES_NOT_EXIST):
            return out
        out += {
            EQUALS: "=",
            DOUBLE_EQUALS: "==",
            NOT_EQUALS: "!=",
            IN: " in ",
            NOT_IN: " notin ",
            GREATER_THAN: ">",
            LESS_THAN: "<",
        }[self.operator]
        values = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        return out + (f"({values})" if self.operator in (IN, NOT_IN) else values)


class LabelSelector:
    """labels.Selector: a conjunction of requirements, or Nothing() (matches no object)."""

    def __init__(self, requirements: list[Requirement] | None = None, *, nothing: bool = False) -> None:
        # internalSelector.Add / parse sort by key (sort.Sort; stable here for determinism).
        self.requirements: list[Requirement] = sorted(requirements or [], key=lambda r: r.key)
        self.nothing = nothing

    @classmethod
    def everything(cls) -> LabelSelector:
        return cls([])

    @classmethod
    def nothing_selector(cls) -> LabelSelector:
        return cls([], nothing=True)

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        have = labels or {}
        return all(r.matches(have) for r in self.requirements)

    def empty(self) -> bool:
        # nothingSelector.Empty() is false: it restricts the selection (to nothing).
        return not self.nothing and not self.requirements

    def requires_exact_match(self, key: str) -> str | None:
        for r in self.requirements:
            if r.key == key:
                if r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    def __str__(self) -> str:
        return "" if self.nothing else ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return f"LabelSelector({str(self)!r}{', nothing' if self.nothing else ''})"


def parse_label_selector(text: str) -> LabelSelector:
    """labels.Parse; a syntax or validation error is ApiError 400 with the server's message."""
    try:
        return LabelSelector(_LabelParser(text).parse())
    except SelectorParseError as exc:
        raise ApiError.bad_request(str(exc)) from exc


def label_selector_from_spec(spec: dict | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector: None selects nothing, {} (no terms) selects everything.

    An invalid selector (bad key/value/operator) is ApiError 400 with the converter's message.
    """
    try:
        return _selector_from_spec(spec)
    except SelectorParseError as exc:
        raise ApiError.bad_request(str(exc)) from exc


def label_selector_to_string(spec: dict | None) -> str:
    """metav1.FormatLabelSelector: "<none>" for nil/empty selectors, "<error>" for invalid ones."""
    try:
        text = str(_selector_from_spec(spec))
    except SelectorParseError:
        return "<error>"
    return text or "<none>"


def label_selector_as_string(spec: dict | None) -> str:
    """LabelSelectorAsSelector(spec).String(): what the scale subresource puts in status.selector
    (apps registry scaleFromDeployment etc.); "" for nil or empty selectors."""
    try:
        return str(_selector_from_spec(spec))
    except SelectorParseError:
        return ""


_SPEC_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def _selector_from_spec(spec: dict | None) -> LabelSelector:
    if spec is None:
        return LabelSelector.nothing_selector()
    match_labels = spec.get("matchLabels") or {}
    expressions = spec.get("matchExpressions") or []
    if not match_labels and not expressions:
        return LabelSelector.everything()
    requirements: list[Requirement] = []
    for key, value in match_labels.items():
        requirements.append(new_requirement(key, EQUALS, [value]))
    for expr in expressions:
        op = _SPEC_OPERATORS.get(expr.get("operator", ""))
        if op is None:
            raise SelectorParseError(f"{_go_quote(expr.get('operator', ''))} is not a valid label selector operator")
        requirements.append(new_requirement(expr.get("key", ""), op, list(expr.get("values") or [])))
    return LabelSelector(requirements)


def _go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _go_value(value: Any) -> str:
    # field.Error value rendering: %q for strings, %#v for []string.
    if isinstance(value, str):
        return _go_quote(value)
    if isinstance(value, list):
        return "[]string{" + ", ".join(_go_quote(v) for v in value) + "}"
    return str(value)


def _invalid(path: str, value: Any, detail: str) -> str:
    return f"{path}: Invalid value: {_go_value(value)}: {detail}"


def new_requirement(key: str, op: str, values: list[str], path: str = "") -> Requirement:
    """labels.NewRequirement: validate and build; errors aggregate like field.ErrorList.ToAggregate."""
    errors: list[str] = []
    key_path = f"{path}.key" if path else "key"
    values_path = f"{path}.values" if path else "values"
    key_errs = is_qualified_name(key)
    if key_errs:
        errors.append(_invalid(key_path, key, "; ".join(key_errs)))
    if op in (IN, NOT_IN):
        if not values:
            errors.append(_invalid(values_path, values, "for 'in', 'notin' operators, values set can't be empty"))
    elif op in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(values) != 1:
            errors.append(_invalid(values_path, values, "exact-match compatibility requires one single value"))
    elif op in (EXISTS, DOES_NOT_EXIST):
        if values:
            errors.append(_invalid(values_path, values, "values set must be empty for exists and does not exist"))
    elif op in (GREATER_THAN, LESS_THAN):
        if len(values) != 1:
            errors.append(_invalid(values_path, values, "for 'Gt', 'Lt' operators, exactly one value is required"))
        for i, v in enumerate(values):
            try:
                int(v, 10)
            except ValueError:
                errors.append(_invalid(f"{values_path}[{i}]", v, "for 'Gt', 'Lt' operators, the value must be an integer"))
    for i, v in enumerate(values):
        value_errs = is_valid_label_value(v)
        if value_errs:
            errors.append(_invalid(f"{values_path}[{i}][{key}]", v, "; ".join(value_errs)))
    if errors:
        unique = list(dict.fromkeys(errors))  # utilerrors aggregate de-duplicates messages
        raise SelectorParseError(unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]")
    return Requirement(key, op, tuple(values))


# Lexer tokens
_ERROR, _EOS, _CLOSE_PAR, _COMMA, _NOT, _DEQ, _EQ, _GT, _IDENT, _IN, _LT, _NEQ, _NOTIN, _OPEN_PAR = range(14)
_STRING_TO_TOKEN = {
    ")": _CLOSE_PAR,
    ",": _COMMA,
    "!": _NOT,
    "==": _DEQ,
    "=": _EQ,
    ">": _GT,
    "in": _IN,
    "<": _LT,
    "!=": _NEQ,
    "notin": _NOTIN,
    "(": _OPEN_PAR,
}
_SPECIAL = set("=!(),><")
_WHITESPACE = set(" \t\r\n")


def _lex(text: str) -> Iterator[tuple[int, str]]:
    pos = 0
    n = len(text)
    while True:
        while pos < n and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= n:
            yield _EOS, ""
            return
        if text[pos] in _SPECIAL:
            # scanSpecialSymbol: longest run of special characters that is still a token.
            buffer = ""
            last: tuple[int, str] | None = None
            while pos < n and text[pos] in _SPECIAL:
                buffer += text[pos]
                if buffer in _STRING_TO_TOKEN:
                    last = (_STRING_TO_TOKEN[buffer], buffer)
                    pos += 1
                elif last is not None:
                    break
                else:
                    pos += 1
            if last is None:
                yield _ERROR, f"error expected: keyword found '{buffer}'"
            else:
                yield last
            continue
        start = pos
        while pos < n and text[pos] not in _SPECIAL and text[pos] not in _WHITESPACE:
            pos += 1
        word = text[start:pos]
        yield _STRING_TO_TOKEN.get(word, _IDENT), word


class _LabelParser:
    def __init__(self, text: str) -> None:
        self.items = list(_lex(text))
        self.position = 0

    def _lookahead(self, values_context: bool) -> tuple[int, str]:
        tok, lit = self.items[self.position]
        if values_context and tok in (_IN, _NOTIN):
            tok = _IDENT
        return tok, lit

    def _consume(self, values_context: bool) -> tuple[int, str]:
        tok, lit = self._lookahead(values_context)
        self.position += 1
        return tok, lit

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self._lookahead(True)
            if tok in (_IDENT, _NOT):
                try:
                    requirements.append(self._parse_requirement())
                except SelectorParseError as exc:
                    raise SelectorParseError(f"unable to parse requirement: {exc}") from exc
                t, l = self._consume(True)
                if t == _EOS:
                    return requirements
                if t == _COMMA:
                    t2, l2 = self._lookahead(True)
                    if t2 not in (_IDENT, _NOT):
                        raise SelectorParseError(f"found '{l2}', expected: identifier after ','")
                else:
                    raise SelectorParseError(f"found '{l}', expected: ',' or 'end of string'")
            elif tok == _EOS:
                return requirements
            else:
                raise SelectorParseError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def _parse_requirement(self) -> Requirement:
        key, operator = self._parse_key_and_infer_operator()
        if operator in (EXISTS, DOES_NOT_EXIST):
            return new_requirement(key, operator, [])
        operator = self._parse_operator()
        if operator in (IN, NOT_IN):
            values = self._parse_values()
        else:
            values = self._parse_exact_value()
        return new_requirement(key, operator, sorted(values))

    def _parse_key_and_infer_operator(self) -> tuple[str, str]:
        operator = ""
        tok, literal = self._consume(True)
        if tok == _NOT:
            operator = DOES_NOT_EXIST
            tok, literal = self._consume(True)
        if tok != _IDENT:
            raise SelectorParseError(f"found '{literal}', expected: identifier")
        errs = is_qualified_name(literal)
        if errs:
            # validateLabelKey with the parser's nil path, which prints as "<nil>".
            raise SelectorParseError(_invalid("<nil>", literal, "; ".join(errs)))
        t, _ = self._lookahead(True)
        if t in (_EOS, _COMMA) and operator != DOES_NOT_EXIST:
            operator = EXISTS
        return literal, operator

    def _parse_operator(self) -> str:
        tok, lit = self._consume(False)
        ops = {_IN: IN, _EQ: EQUALS, _DEQ: DOUBLE_EQUALS, _GT: GREATER_THAN, _LT: LESS_THAN, _NOTIN: NOT_IN, _NEQ: NOT_EQUALS}
        if tok not in ops:
            raise SelectorParseError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        return ops[tok]

    def _parse_values(self) -> set[str]:
        tok, lit = self._consume(True)
        if tok != _OPEN_PAR:
            raise SelectorParseError(f"found '{lit}' expected: '('")
        tok, lit = self._lookahead(True)
        if tok in (_IDENT, _COMMA):
            values = self._parse_identifiers_list()
            if self._consume(True)[0] != _CLOSE_PAR:
                raise SelectorParseError(f"found '{lit}', expected: ')'")
            return values
        if tok == _CLOSE_PAR:
            self._consume(True)
            return {""}
        raise SelectorParseError(f"found '{lit}', expected: ',', ')' or identifier")

    def _parse_identifiers_list(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self._consume(True)
            if tok == _IDENT:
                values.add(lit)
                tok2, lit2 = self._lookahead(True)
                if tok2 == _COMMA:
                    continue
                if tok2 == _CLOSE_PAR:
                    return values
                raise SelectorParseError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _COMMA:
                if not values:
                    values.add("")
                tok2, _ = self._lookahead(True)
                if tok2 == _CLOSE_PAR:
                    values.add("")
                    return values
                if tok2 == _COMMA:
                    self._consume(True)
                    values.add("")
                continue
            raise SelectorParseError(f"found '{lit}', expected: ',', or identifier")

    def _parse_exact_value(self) -> set[str]:
        tok, _ = self._lookahead(True)
        if tok in (_EOS, _COMMA):
            return {""}
        tok, lit = self._consume(True)
        if tok == _IDENT:
            return {lit}
        raise SelectorParseError(f"found '{lit}', expected: identifier")


# --------------------------------------------------------------------------- field selectors

FieldGetter = Callable[[dict], "str | None"]


class FieldTable(Mapping[str, FieldGetter]):
    """The field labels one kind supports, with the message its conversion function returns for
    any other label, and label aliases (pods accept the legacy `spec.host` for `spec.nodeName`)."""

    def __init__(
        self,
        getters: Mapping[str, FieldGetter],
        unsupported: Callable[[str], str],
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        self._getters = dict(getters)
        self._unsupported = unsupported
        self.aliases = dict(aliases or {})

    def __getitem__(self, label: str) -> FieldGetter:
        return self._getters[label]

    def __iter__(self) -> Iterator[str]:
        return iter(self._getters)

    def __len__(self) -> int:
        return len(self._getters)

    def unsupported_message(self, label: str) -> str:
        return self._unsupported(label)

    def extend(self, getters: Mapping[str, FieldGetter], aliases: Mapping[str, str] | None = None) -> FieldTable:
        """A table with more labels, worded as kinds with their own conversion function."""
        return FieldTable({**self._getters, **getters}, _not_supported, {**self.aliases, **(aliases or {})})


def _not_supported(label: str) -> str:
    return f"field label not supported: {label}"


def _not_known(label: str) -> str:
    return f'{_go_quote(label)} is not a known field selector: only "metadata.name", "metadata.namespace"'


def _path(*keys: str) -> FieldGetter:
    def get(obj: dict) -> str | None:
        node: Any = obj
        for key in keys:
            if not isinstance(node, dict):
                return None
            node = node.get(key)
        if node is None:
            return None
        if isinstance(node, bool):
            return "true" if node else "false"  # strconv.FormatBool
        return str(node)

    return get


def _bool_path(*keys: str) -> FieldGetter:
    inner = _path(*keys)
    # The registries format bools of unset fields as "false" (the Go zero value).
    return lambda obj: inner(obj) or "false"


_META_NAME = _path("metadata", "name")
_META_NAMESPACE = _path("metadata", "namespace")

# runtime.DefaultMetaV1FieldSelectorConversion: every kind without its own conversion function.
DEFAULT_FIELDS = FieldTable({"metadata.name": _META_NAME, "metadata.namespace": _META_NAMESPACE}, _not_known)

# core/v1 conversion.go, Pod; values as pod strategy PodToSelectableFields formats them.
POD_FIELDS = DEFAULT_FIELDS.extend(
    {
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "spec.hostNetwork": _bool_path("spec", "hostNetwork"),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    aliases={"spec.host": "spec.nodeName"},
)

# Node has no namespace, and its conversion function does not accept metadata.namespace.
NODE_FIELDS = FieldTable(
    {"metadata.name": _META_NAME, "spec.unschedulable": _bool_path("spec", "unschedulable")}, _not_supported
)

NAMESPACE_FIELDS = FieldTable({"metadata.name": _META_NAME, "status.phase": _path("status", "phase")}, _not_supported)

SECRET_FIELDS = DEFAULT_FIELDS.extend({"type": _path("type")})

SERVICE_FIELDS = DEFAULT_FIELDS.extend({"spec.clusterIP": _path("spec", "clusterIP"), "spec.type": _path("spec", "type")})

REPLICATION_CONTROLLER_FIELDS = DEFAULT_FIELDS.extend({"status.replicas": _path("status", "replicas")})

EVENT_FIELDS = DEFAULT_FIELDS.extend(
    {
        "involvedObject.kind": _path("involvedObject", "kind"),
        "involvedObject.namespace": _path("involvedObject", "namespace"),
        "involvedObject.name": _path("involvedObject", "name"),
        "involvedObject.uid": _path("involvedObject", "uid"),
        "involvedObject.apiVersion": _path("involvedObject", "apiVersion"),
        "involvedObject.resourceVersion": _path("involvedObject", "resourceVersion"),
        "involvedObject.fieldPath": _path("involvedObject", "fieldPath"),
        "reason": _path("reason"),
        "reportingComponent": _path("reportingComponent"),
        "source": _path("source", "component"),
        "type": _path("type"),
    }
)

# (group, kind) -> field table; kinds not listed use DEFAULT_FIELDS.
KIND_FIELDS: dict[tuple[str, str], FieldTable] = {
    ("", "Pod"): POD_FIELDS,
    ("", "Node"): NODE_FIELDS,
    ("", "Namespace"): NAMESPACE_FIELDS,
    ("", "Secret"): SECRET_FIELDS,
    ("", "Service"): SERVICE_FIELDS,
    ("", "ReplicationController"): REPLICATION_CONTROLLER_FIELDS,
    ("", "Event"): EVENT_FIELDS,
}


def fields_for_kind(group: str, kind: str) -> FieldTable:
    return KIND_FIELDS.get((group, kind), DEFAULT_FIELDS)


@dataclass(frozen=True)
class FieldTerm:
    field: str
    value: str
    negated: bool

    def __str__(self) -> str:
        return f"{self.field}{'!=' if self.negated else '='}{escape_field_value(self.value)}"


class FieldSelector:
    def __init__(self, terms: list[FieldTerm], getters: Mapping[str, FieldGetter]) -> None:
        self.terms = terms
        self._getters = getters

    def matches(self, obj: dict) -> bool:
        # hasTerm: Get(field) == value; notHasTerm: Get(field) != value; a missing field reads "".
        for term in self.terms:
            value = self._getters[term.field](obj) or ""
            if (value == term.value) == term.negated:
                return False
        return True

    def empty(self) -> bool:
        return not self.terms

    def requires_exact_match(self, field: str) -> str | None:
        for term in self.terms:
            if term.field == field and not term.negated:
                return term.value
        return None

    def __str__(self) -> str:
        return ",".join(str(t) for t in self.terms)


def parse_field_selector(text: str, supported: Mapping[str, FieldGetter]) -> FieldSelector:
    """fields.ParseSelector followed by the kind's field label conversion (Transform).

    Syntax errors and unsupported labels are ApiError 400 with the server's wording.
    """
    try:
        terms = _parse_field_terms(text)
    except SelectorParseError as exc:
        raise ApiError.bad_request(str(exc)) from exc
    aliases: Mapping[str, str] = getattr(supported, "aliases", {})
    converted: list[FieldTerm] = []
    for term in terms:
        label = aliases.get(term.field, term.field)
        if label not in supported:
            if isinstance(supported, FieldTable):
                raise ApiError.bad_request(supported.unsupported_message(term.field))
            raise ApiError.bad_request(_not_supported(term.field))
        converted.append(FieldTerm(label, term.value, term.negated))
    return FieldSelector(converted, supported)


def _split_terms(text: str) -> list[str]:
    if not text:
        return []
    terms: list[str] = []
    start = 0
    in_slash = False
    for i, c in enumerate(text):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


def _parse_field_terms(text: str) -> list[FieldTerm]:
    terms: list[FieldTerm] = []
    for part in sorted(_split_terms(text)):
        if part == "":
            continue
        split = _split_term(part)
        if split is None:
            raise SelectorParseError(f"invalid selector: '{text}'; can't understand '{part}'")
        lhs, op, rhs = split
        terms.append(FieldTerm(lhs, unescape_field_value(rhs), op == "!="))
    return terms


def escape_field_value(value: str) -> str:
    """fields.EscapeValue: backslash-escape `\\`, `,` and `=`."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def unescape_field_value(value: str) -> str:
    """fields.UnescapeValue: only `\\\\`, `\\,` and `\\=` are escapes; a bare `,` or `=` is an error."""
    if "\\" not in value and "," not in value and "=" not in value:
        return value
    out: list[str] = []
    in_slash = False
    for c in value:
        if in_slash:
            if c in ("\\", ",", "="):
                out.append(c)
                in_slash = False
                continue
            raise SelectorParseError(f"invalid field selector: invalid escape sequence: \\{c}")
        if c == "\\":
            in_slash = True
        elif c in (",", "="):
            # UnescapedRune.Error prints the rune with %v, i.e. its code point.
            raise SelectorParseError(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if in_slash:
        raise SelectorParseError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)
