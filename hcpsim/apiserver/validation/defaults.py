"""Structural defaulting, as apiextensions-apiserver pkg/apiserver/schema/defaulting/algorithm.go.

The CR handler first drops nulls of non-nullable fields that have no default
(PruneNonNullableNullsWithoutDefaults), then applies `default` values (Default): a property that is
absent, or null while non-nullable, gets a deep copy of its default; recursion then descends into
every present value, including values that were just defaulted.
"""

from __future__ import annotations

import copy
from typing import Any

from hcpsim.apiserver.validation.nodes import SchemaNode


def _non_nullable_null(v: Any, n: SchemaNode | None) -> bool:
    return v is None and n is not None and not n.nullable


def prune_non_nullable_nulls(x: Any, n: SchemaNode | None) -> None:
    if n is None:
        return
    if isinstance(x, dict):
        for k in list(x):
            sub = n.child_for_key(k)
            if sub is None:
                continue
            v = x[k]
            if v is None and not sub.nullable and not sub.has_default:
                del x[k]
            else:
                prune_non_nullable_nulls(v, sub)
    elif isinstance(x, list) and n.items is not None:
        for v in x:
            prune_non_nullable_nulls(v, n.items)


def apply_defaults(x: Any, n: SchemaNode | None) -> None:
    if n is None:
        return
    if isinstance(x, dict):
        for k, prop in n.properties.items():
            if prop.has_default and (k not in x or _non_nullable_null(x[k], prop)):
                x[k] = copy.deepcopy(prop.default)
        if not n.defaults_below:
            return
        addl = n.additional if isinstance(n.additional, SchemaNode) else None
        for k, v in x.items():
            prop = n.properties.get(k)
            if prop is not None:
                apply_defaults(v, prop)
            elif addl is not None:
                if _non_nullable_null(v, addl) and addl.has_default:
                    x[k] = v = copy.deepcopy(addl.default)
                apply_defaults(v, addl)
    elif isinstance(x, list) and n.items is not None:
        items = n.items
        for i, v in enumerate(x):
            if _non_nullable_null(v, items) and items.has_default:
                x[i] = v = copy.deepcopy(items.default)
            apply_defaults(v, items)
