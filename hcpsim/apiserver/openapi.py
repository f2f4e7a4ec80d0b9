"""A minimal OpenAPI v3 surface: enough for kubectl to learn that the server validates fields itself.

kubectl (cli-runtime queryParamVerifierV3.HasSupport) reads /openapi/v3, then the group-version
document, and looks for a PATCH operation tagged with the kind's x-kubernetes-group-version-kind
that takes a `fieldValidation` parameter. Found: it sends fieldValidation=Strict and leaves
validation to the server (no client-side schema download). Kinds are served without schemas.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hcpsim.apiserver.errors import ApiError
from hcpsim.apiserver.resources import Registry

_PATCH_PARAMETERS = [
    {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    for name in ("dryRun", "fieldManager", "fieldValidation", "force")
]


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def root(registry: Registry) -> dict[str, Any]:
    paths = {}
    generation = str(registry.generation).encode()
    for group, versions in registry.group_versions().items():
        for version in versions:
            gv = _gv_path(group, version)
            digest = hashlib.sha256(gv.encode() + b"@" + generation).hexdigest()[:32].upper()
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
    return {"paths": paths}


def group_version(registry: Registry, gv_path: str) -> dict[str, Any]:
    parts = gv_path.strip("/").split("/")
    if parts[:1] == ["api"] and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[:1] == ["apis"] and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        raise ApiError.path_not_found()
    types = [rt for rt in registry.all() if rt.group == group and version in rt.versions]
    if not types:
        raise ApiError.path_not_found()
    paths: dict[str, Any] = {}
    prefix = f"/{gv_path.strip('/')}"
    for rt in types:
        item = f"{prefix}/namespaces/{{namespace}}/{rt.plural}/{{name}}" if rt.namespaced else f"{prefix}/{rt.plural}/{{name}}"
        paths[item] = {
            "patch": {
                "operationId": f"patch{rt.kind}",
                "parameters": _PATCH_PARAMETERS,
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": rt.group, "version": version, "kind": rt.kind},
                "responses": {"200": {"description": "OK"}},
            }
        }
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.31.4+hcpsim"}, "paths": paths,
            "components": {"schemas": {}}}
