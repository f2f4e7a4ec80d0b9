"""Structural pruning of unknown fields, as apiextensions-apiserver pkg/apiserver/schema/pruning/algorithm.go.

- fields not in `properties` (and not covered by `additionalProperties`) are dropped;
- x-kubernetes-preserve-unknown-fields keeps unknown fields at that node (known ones are still pruned
  inside, skipPrune);
- x-kubernetes-embedded-resource nodes, and the resource root, keep apiVersion/kind/metadata.
Returns the pruned paths (`spec.foo`, `spec.list[0].bar`) so the caller can warn or, under
fieldValidation=Strict, reject with `unknown field "spec.foo"` like the real server.
"""

from __future__ import annotations

from typing import Any

from hcpsim.apiserver.validation.nodes import SchemaNode

_META_FIELDS = ("apiVersion", "kind", "metadata")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def prune(x: Any, n: SchemaNode | None, path: str, pruned: list[str], resource_root: bool = False) -> None:
    if n is not None and n.preserve_unknown:
        _skip_prune(x, n, path, pruned, resource_root)
        return
    if isinstance(x, dict):
        if n is None:
            for k in list(x):
                pruned.append(_join(path, k))
                del x[k]
            return
        embedded = resource_root or n.embedded
        addl = n.additional if isinstance(n.additional, SchemaNode) else None
        for k in list(x):
            v = x[k]
            if embedded and k in _META_FIELDS and (k == "metadata" and isinstance(v, dict) or isinstance(v, str)):
                continue
            prop = n.properties.get(k)
            if prop is not None:
                prune(v, prop, _join(path, k), pruned, prop.embedded)
            elif addl is not None:
                prune(v, addl, _join(path, k), pruned, addl.embedded)
            elif n.additional is True:
                continue  # additionalProperties: true keeps any value (not allowed in structural schemas, but harmless)
            else:
                pruned.append(_join(path, k))
                del x[k]
    elif isinstance(x, list):
        for i, v in enumerate(x):
            prune(v, n.items if n is not None else None, f"{path}[{i}]", pruned, bool(n and n.items and n.items.embedded))


def _skip_prune(x: Any, n: SchemaNode, path: str, pruned: list[str], resource_root: bool) -> None:
    if isinstance(x, dict):
        embedded = resource_root or n.embedded
        addl = n.additional if isinstance(n.additional, SchemaNode) else None
        for k, v in x.items():
            if embedded and k in _META_FIELDS:
                continue
            prop = n.properties.get(k)
            if prop is not None:
                prune(v, prop, _join(path, k), pruned, prop.embedded)
            elif addl is not None:
                prune(v, addl, _join(path, k), pruned, addl.embedded)
    elif isinstance(x, list) and n.items is not None:
        for i, v in enumerate(x):
            _skip_prune(v, n.items, f"{path}[{i}]", pruned, n.items.embedded)
