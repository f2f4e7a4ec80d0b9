"""Evaluation of x-kubernetes-validations rules over a custom resource, as the kube-apiserver does it.

Follows apiextensions-apiserver pkg/apiserver/schema/cel/validation.go (Validator.validate,
validateExpressions, validateMap, validateArray):
- rules at a node see `self` = the value there (null values are not validated);
- transition rules (referencing `oldSelf`) run only on update and only when the old object has a
  correlated value: object fields by name, map values by key, list-type=map entries by their key
  fields; entries of other lists never correlate. With optionalOldSelf the rule always runs and
  `oldSelf` is an optional;
- a false result yields fieldErrorForReason(path[+fieldPath], value, message, reason) where the
  value is omitted for objects/arrays; a runtime error yields
  field.Invalid(path, <schema type>, "<err> evaluating rule: <rule or message>");
- values are converted like k8s.io/apiserver/pkg/cel/common UnstructuredToVal: list-type set/map
  lists compare order-insensitively, `number` fields are doubles, date-time/date strings are
  timestamps, duration strings durations, byte strings bytes.
"""

from __future__ import annotations

import base64
import datetime as _dt
from typing import Any

from hcpsim.apiserver.errors import FieldError
from hcpsim.apiserver.validation.cel_eval import (
    CelError,
    MapList,
    Optional_,
    SetList,
    UnsupportedCel,
    compile_cel,
)
from hcpsim.apiserver.validation.k8s_cel_ext import K8S_FUNCTIONS, parse_go_duration, parse_rfc3339
from hcpsim.apiserver.validation.nodes import Rule, SchemaNode
from hcpsim.apiserver.validation.openapi import NIL_PATH

_RULE_VARS = frozenset({"self", "oldSelf"})


def ensure_compiled(rule: Rule) -> bool:
    """Compile the rule (once). Returns False, with rule.skip_reason set, if it cannot be evaluated."""
    if rule.attempted:
        return rule.compiled is not None
    rule.attempted = True
    try:
        prog = compile_cel(rule.rule, K8S_FUNCTIONS, _RULE_VARS)
    except UnsupportedCel as ex:
        rule.skip_reason = str(ex)
        return False
    except RecursionError:
        rule.skip_reason = "expression too deeply nested"
        return False
    rule.compiled = prog
    rule.uses_old_self = "oldSelf" in prog.variables_used
    if rule.message_expression:
        try:
            rule.message_program = compile_cel(rule.message_expression, K8S_FUNCTIONS, _RULE_VARS)
        except UnsupportedCel:
            rule.message_program = None  # falls back to `message`, as the server does on failure
    return True


# ---------------------------------------------------------------------------------------------
# value conversion


def to_cel(n: SchemaNode | None, v: Any) -> Any:
    if n is None or not n.needs_cel_conversion or v is None:
        return v
    if isinstance(v, dict):
        out: dict[str, Any] = {}
        for k, x in v.items():
            out[k] = to_cel(n.child_for_key(k), x)
        return out
    if isinstance(v, list):
        items = [to_cel(n.items, x) for x in v]
        if n.list_type == "set":
            return SetList(items)
        if n.list_type == "map":
            ml = MapList(items)
            ml.keys = tuple(n.list_map_keys)
            return ml
        return items
    if n.type == "number" and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str) and n.type == "string":
        try:
            if n.format == "date-time":
                return parse_rfc3339(v)
            if n.format == "date":
                return _dt.datetime.fromisoformat(v).replace(tzinfo=_dt.timezone.utc)
            if n.format == "duration":
                return parse_go_duration(v)
            if n.format == "byte":
                return base64.b64decode(v)
        except (CelError, ValueError):
            return v
    return v


# ---------------------------------------------------------------------------------------------
# the walk


def _rule_error_string(rule: Rule) -> str:
    return rule.message.strip() if rule.message else rule.rule.strip()


def _message(rule: Rule, act: dict[str, Any]) -> str:
    if rule.message_program is not None:
        try:
            msg = rule.message_program.evaluate(act)
            if isinstance(msg, str):
                msg = msg.strip()
                if msg and "\n" not in msg and len(msg) <= 5 * 1024:
                    return msg
        except CelError:
            pass
    if rule.message:
        return rule.message.strip()
    return f"failed rule: {_rule_error_string(rule)}"


def _child_path(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _normalize_field_path(field_path: str) -> str:
    """`.spec.foo['bar']` -> `spec.foo.bar` (validation.go ValidFieldPath -> field.Path.Child)."""
    out: list[str] = []
    i, s = 0, field_path
    while i < len(s):
        if s[i] == ".":
            j = i + 1
            while j < len(s) and s[j] not in ".[":
                j += 1
            out.append(s[i + 1 : j])
            i = j
        elif s.startswith("['", i):
            j = s.find("']", i + 2)
            if j < 0:
                break
            out.append(s[i + 2 : j])
            i = j + 2
        else:
            i += 1
    return ".".join(out)


def _error_for(rule: Rule, path: str, n: SchemaNode, value: Any, detail: str) -> FieldError:
    if rule.field_path:
        extra = _normalize_field_path(rule.field_path)
        if extra:
            path = f"{path}.{extra}" if path != NIL_PATH else extra
    scalar = n.type not in ("object", "array") and not isinstance(value, (dict, list))
    reason = rule.reason
    if reason == "FieldValueForbidden":
        return FieldError("FieldValueForbidden", path, detail, None, False)
    if reason == "FieldValueRequired":
        return FieldError("FieldValueRequired", path, detail, None, False)
    if reason == "FieldValueDuplicate":
        return FieldError("FieldValueDuplicate", path, "", value if scalar else None, scalar)
    return FieldError("FieldValueInvalid", path, detail, value if scalar else None, scalar)


class CelWalker:
    """One validation pass; caches converted values so each subtree is converted once."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self._conv: dict[tuple[int, int], Any] = {}

    def _to_cel(self, n: SchemaNode, v: Any) -> Any:
        if not n.needs_cel_conversion or not isinstance(v, (dict, list, str, int)):
            return v
        key = (id(v), id(n))
        hit = self._conv.get(key)
        if hit is None:
            hit = (v, to_cel(n, v))  # keep v alive so its id stays unique for this pass
            self._conv[key] = hit
        return hit[1]

    def walk(self, n: SchemaNode, v: Any, old: Any, path: str) -> None:
        if v is None or not n.rules_below:
            return
        if n.rules:
            self._rules(n, v, old, path)
        for sub in n.all_of:
            if sub.rules_below:
                self.walk(sub, v, old, path)
        if isinstance(v, dict):
            correlatable = n.map_type in (None, "granular", "atomic")
            old_map = old if isinstance(old, dict) and correlatable else None
            for k, x in v.items():
                prop = n.properties.get(k)
                if prop is not None:
                    if prop.rules_below:
                        self.walk(prop, x, old_map.get(k) if old_map is not None else None, _child_path(path, k))
                elif isinstance(n.additional, SchemaNode) and n.additional.rules_below:
                    self.walk(n.additional, x, old_map.get(k) if old_map is not None else None, f"{path}[{k}]")
        elif isinstance(v, list) and n.items is not None and n.items.rules_below:
            old_lookup = _map_list_lookup(n, old)
            base = path if path != NIL_PATH else ""
            for i, x in enumerate(v):
                self.walk(n.items, x, old_lookup(x), f"{base}[{i}]")

    def _rules(self, n: SchemaNode, v: Any, old: Any, path: str) -> None:
        self_val = self._to_cel(n, v)
        old_val: Any = None
        for rule in n.rules:
            if not ensure_compiled(rule):
                continue
            act: dict[str, Any] = {"self": self_val}
            if rule.uses_old_self:
                if old is None and not rule.optional_old_self:
                    continue  # transition rules need a correlated old value
                if old is not None and old_val is None:
                    old_val = self._to_cel(n, old)
                act["oldSelf"] = Optional_(old is not None, old_val) if rule.optional_old_self else old_val
            err_path = path or NIL_PATH
            try:
                result = rule.compiled.evaluate(act)
            except CelError as ex:
                self.errors.append(
                    FieldError("FieldValueInvalid", err_path, f"{ex} evaluating rule: {_rule_error_string(rule)}", n.type or "", True)
                )
                continue
            except RecursionError:
                continue
            if result is True:
                continue
            self.errors.append(_error_for(rule, err_path, n, v, _message(rule, act)))


def _map_list_lookup(n: SchemaNode, old: Any) -> Any:
    """Correlate list entries with the old list: only list-type=map lists correlate (by key fields)."""
    if n.list_type != "map" or not isinstance(old, list) or not n.list_map_keys:
        return lambda x: None
    keys = n.list_map_keys
    index: dict[tuple[Any, ...], Any] = {}
    for e in old:
        if isinstance(e, dict):
            index[tuple(repr(e.get(k)) for k in keys)] = e

    def lookup(x: Any) -> Any:
        if not isinstance(x, dict):
            return None
        return index.get(tuple(repr(x.get(k)) for k in keys))

    return lookup
