"""The compiled form of an openAPIV3Schema: one SchemaNode per schema object, built once per CRD version.

Only what validation, defaulting, pruning and CEL need is kept; everything is read from the raw dict
once so the per-request walks touch attributes, not dict lookups with defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_MISSING: Any = object()


@dataclass(eq=False)
class Rule:
    """One x-kubernetes-validations entry, as declared at `schema_path`."""

    rule: str
    message: str
    message_expression: str
    reason: str
    field_path: str
    optional_old_self: bool
    schema_path: str
    uses_old_self: bool
    # filled lazily by cel.py: compiled program (or None) and skip reason
    compiled: Any = None
    skip_reason: str | None = None
    message_program: Any = None
    attempted: bool = False


@dataclass(eq=False)
class SchemaNode:
    type: str | None = None
    nullable: bool = False
    format: str | None = None
    properties: dict[str, SchemaNode] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)
    additional: SchemaNode | bool | None = None
    items: SchemaNode | None = None
    enum: list[Any] | None = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    multiple_of: float | None = None
    min_items: int | None = None
    max_items: int | None = None
    unique_items: bool = False
    min_properties: int | None = None
    max_properties: int | None = None
    any_of: list[SchemaNode] = field(default_factory=list)
    all_of: list[SchemaNode] = field(default_factory=list)
    one_of: list[SchemaNode] = field(default_factory=list)
    not_: SchemaNode | None = None
    int_or_string: bool = False
    preserve_unknown: bool = False
    embedded: bool = False
    list_type: str | None = None
    list_map_keys: list[str] = field(default_factory=list)
    map_type: str | None = None
    default: Any = _MISSING
    rules: list[Rule] = field(default_factory=list)
    # summaries of the subtree, so walks can skip branches with nothing to do
    rules_below: bool = False
    defaults_below: bool = False
    needs_cel_conversion: bool = False

    @property
    def has_default(self) -> bool:
        return self.default is not _MISSING

    @property
    def value_props(self) -> dict[str, SchemaNode]:
        return self.properties

    def child_for_key(self, key: str) -> SchemaNode | None:
        node = self.properties.get(key)
        if node is not None:
            return node
        return self.additional if isinstance(self.additional, SchemaNode) else None


_OLD_SELF_RE = re.compile(r"\boldSelf\b")


def build(raw: dict[str, Any], path: str, rules: list[Rule]) -> SchemaNode:
    """Build the node for `raw` (at schema path `path`, used only in reports), appending every CEL
    rule found to `rules` in document order."""
    n = SchemaNode()
    t = raw.get("type")
    n.type = t if isinstance(t, str) else None
    n.nullable = bool(raw.get("nullable", False))
    n.format = raw.get("format")
    n.required = list(raw.get("required") or [])
    n.enum = raw.get("enum")
    n.pattern = raw.get("pattern")
    n.min_length = raw.get("minLength")
    n.max_length = raw.get("maxLength")
    n.minimum = raw.get("minimum")
    n.maximum = raw.get("maximum")
    n.exclusive_minimum = bool(raw.get("exclusiveMinimum", False))
    n.exclusive_maximum = bool(raw.get("exclusiveMaximum", False))
    n.multiple_of = raw.get("multipleOf")
    n.min_items = raw.get("minItems")
    n.max_items = raw.get("maxItems")
    n.unique_items = bool(raw.get("uniqueItems", False))
    n.min_properties = raw.get("minProperties")
    n.max_properties = raw.get("maxProperties")
    n.int_or_string = bool(raw.get("x-kubernetes-int-or-string", False))
    n.preserve_unknown = bool(raw.get("x-kubernetes-preserve-unknown-fields", False))
    n.embedded = bool(raw.get("x-kubernetes-embedded-resource", False))
    n.list_type = raw.get("x-kubernetes-list-type")
    n.list_map_keys = list(raw.get("x-kubernetes-list-map-keys") or [])
    n.map_type = raw.get("x-kubernetes-map-type")
    if "default" in raw:
        n.default = raw["default"]

    for r in raw.get("x-kubernetes-validations") or []:
        text = str(r.get("rule", ""))
        rule = Rule(
            rule=text,
            message=str(r.get("message") or ""),
            message_expression=str(r.get("messageExpression") or ""),
            reason=str(r.get("reason") or "FieldValueInvalid"),
            field_path=str(r.get("fieldPath") or ""),
            optional_old_self=bool(r.get("optionalOldSelf", False)),
            schema_path=path or "<root>",
            uses_old_self=bool(_OLD_SELF_RE.search(text)),
        )
        n.rules.append(rule)
        rules.append(rule)

    for k, sub in (raw.get("properties") or {}).items():
        n.properties[k] = build(sub, f"{path}.{k}" if path else k, rules)
    addl = raw.get("additionalProperties")
    if isinstance(addl, dict):
        n.additional = build(addl, f"{path}[*]", rules)
    elif isinstance(addl, bool):
        n.additional = addl
    items = raw.get("items")
    if isinstance(items, dict):
        n.items = build(items, f"{path}[*]", rules)
    # value validations: rules inside them are evaluated like the real server's AllOfValidators only
    # for allOf; anyOf/oneOf/not never carry CEL rules in structural schemas.
    n.any_of = [build(s, path, []) for s in raw.get("anyOf") or []]
    n.one_of = [build(s, path, []) for s in raw.get("oneOf") or []]
    n.all_of = [build(s, path, rules) for s in raw.get("allOf") or []]
    if isinstance(raw.get("not"), dict):
        n.not_ = build(raw["not"], path, [])

    children = list(n.properties.values()) + [c for c in (n.items, n.additional) if isinstance(c, SchemaNode)]
    n.rules_below = bool(n.rules) or any(c.rules_below for c in children) or any(c.rules_below for c in n.all_of)
    n.defaults_below = any(c.has_default or c.defaults_below for c in children)
    n.needs_cel_conversion = (
        n.type == "number"
        or n.list_type in ("set", "map")
        or (n.type == "string" and n.format in ("date-time", "date", "duration", "byte"))
        or any(c.needs_cel_conversion for c in children)
    )
    return n
