"""CompiledSchema: one CRD version's openAPIV3Schema, ready to default, prune and validate objects.

Validation order mirrors apiextensions-apiserver pkg/registry/customresource/strategy.go Validate:
OpenAPI schema errors, then list-type set/map uniqueness errors, then CEL rules — unless a schema
error is "blocking" (NotSupported, Required, TooLong, TooMany, TypeInvalid; hasBlockingErr), in which
case CEL is not run and the server appends
`<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; ...`.
Not implemented: validation ratcheting (CRDValidationRatcheting), CEL cost budgets, ObjectMeta
validation (the HTTP layer owns metadata).
"""

from __future__ import annotations

from typing import Any

from hcpsim.apiserver.errors import FieldError
from hcpsim.apiserver.validation import cel as _cel
from hcpsim.apiserver.validation.defaults import apply_defaults, prune_non_nullable_nulls
from hcpsim.apiserver.validation.nodes import Rule, SchemaNode, build
from hcpsim.apiserver.validation.openapi import NIL_PATH, validate_value
from hcpsim.apiserver.validation.prune import prune

_BLOCKING = frozenset(
    {"FieldValueNotSupported", "FieldValueRequired", "FieldValueTooLong", "FieldValueTooMany", "FieldValueTypeInvalid"}
)
BLOCKING_MESSAGE = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)


class CompiledSchema:
    """Compiled once per CRD version. CEL rules are parsed lazily on first use (and cached by text
    across schemas), which keeps compile_schema for all HyperShift/CAPI CRDs in a few ms."""

    def __init__(self, open_api_v3_schema: dict[str, Any]) -> None:
        self.raw = open_api_v3_schema
        self.rules: list[Rule] = []
        self.root: SchemaNode = build(open_api_v3_schema or {}, "", self.rules)

    # --- rule bookkeeping

    @property
    def cel_rules_total(self) -> int:
        return len(self.rules)

    @property
    def cel_rules_skipped(self) -> list[tuple[str, str, str]]:
        """(schema field path, rule, reason) for every rule this evaluator cannot run.
        Accessing this compiles every rule (≈ a few hundred ms for all HyperShift CRDs, once)."""
        out: list[tuple[str, str, str]] = []
        for r in self.rules:
            if not _cel.ensure_compiled(r):
                out.append((r.schema_path, r.rule, r.skip_reason or "unsupported"))
        return out

    def compile_all_rules(self) -> None:
        """Eagerly compile every rule (e.g. at CRD registration, to fail fast or pre-warm)."""
        for r in self.rules:
            _cel.ensure_compiled(r)

    # --- the public operations

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        prune_non_nullable_nulls(obj, self.root)
        apply_defaults(obj, self.root)

    def prune(self, obj: dict[str, Any]) -> list[str]:
        """Drop unknown fields in place; returns their paths (for warnings / strict field validation)."""
        pruned: list[str] = []
        prune(obj, self.root, "", pruned, resource_root=True)
        return pruned

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[FieldError]:
        errs: list[FieldError] = []
        dups: list[FieldError] = []
        validate_value(self.root, obj, "", errs, dups)
        errs.extend(dups)
        if not self.root.rules_below:
            return errs
        if any(e.type in _BLOCKING for e in errs):
            errs.append(FieldError("FieldValueInvalid", NIL_PATH, BLOCKING_MESSAGE, "null", True))
            return errs
        walker = _cel.CelWalker()
        walker.walk(self.root, obj, old, "")
        errs.extend(walker.errors)
        return errs


def compile_schema(open_api_v3_schema: dict[str, Any]) -> CompiledSchema:
    return CompiledSchema(open_api_v3_schema)
