"""CustomResourceDefinitions: read them (a directory of manifests, `kubectl get crd -o yaml`
output, or a real cluster through a kubeconfig context) and turn one into a ResourceType.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import yaml

from hcpsim.apiserver.errors import ApiError, FieldError
from hcpsim.apiserver.resources import ResourceType, ScaleSpec

CRD_DIR_ENV = "HCPSIM_CRD_DIR"


def default_crd_dir() -> Path | None:
    """The upstream CRDs: $HCPSIM_CRD_DIR, else ../shared/crds beside the checkout when it exists."""
    configured = os.environ.get(CRD_DIR_ENV)
    if configured:
        return Path(configured)
    candidate = Path(__file__).resolve().parents[3] / "shared" / "crds"
    return candidate if candidate.is_dir() else None


def crds_from_documents(documents: Iterable[Any]) -> list[dict]:
    """Every CRD in a stream of YAML documents; `List` documents (kubectl -o yaml) are unpacked."""
    out: list[dict] = []
    for doc in documents:
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") == "List" or doc.get("kind", "").endswith("List") and "items" in doc:
            out.extend(crds_from_documents(doc.get("items") or []))
        elif doc.get("kind") == "CustomResourceDefinition":
            out.append(doc)
    return out


def load_crd_file(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        # libyaml's loader: the upstream CRDs are megabytes of YAML, the pure-Python parser takes seconds.
        return crds_from_documents(yaml.load_all(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


def load_crd_dir(directory: Path) -> list[dict]:
    """All CRDs in *.yaml / *.yml / *.json files of a directory, in name order."""
    out: list[dict] = []
    for path in sorted(directory.iterdir()):
        if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
            out.extend(load_crd_file(path))
    return out


def fetch_crds_from_cluster(kubeconfig: str | None, context: str | None, groups: Iterable[str] | None = None) -> list[dict]:
    """Read CRDs from a real (or simulated) cluster, optionally only some API groups."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
    try:
        raw = client.ApiextensionsV1Api(api_client).list_custom_resource_definition(_preload_content=False)
        import json

        items = json.loads(raw.data)["items"]
    finally:
        api_client.close()
    wanted = set(groups) if groups else None
    return [
        dict(crd, apiVersion="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
        for crd in items
        if wanted is None or crd["spec"]["group"] in wanted
    ]


def validate_crd(crd: dict) -> list[FieldError]:
    """The checks the real server makes that matter for serving the type."""
    errors: list[FieldError] = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group")
    if not group:
        errors.append(FieldError("FieldValueRequired", "spec.group", ""))
    for field in ("plural", "kind"):
        if not names.get(field):
            errors.append(FieldError("FieldValueRequired", f"spec.names.{field}", ""))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errors.append(FieldError("FieldValueNotSupported", "spec.scope", 'supported values: "Cluster", "Namespaced"',
                                 spec.get("scope"), True))
    versions = spec.get("versions") or []
    if not versions:
        errors.append(FieldError("FieldValueRequired", "spec.versions", "must have exactly one version marked as storage version"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        errors.append(FieldError("FieldValueInvalid", "spec.versions", "must have exactly one version marked as storage version",
                                 versions, True))
    if group and names.get("plural"):
        expected = f"{names['plural']}.{group}"
        name = (crd.get("metadata") or {}).get("name")
        if name != expected:
            errors.append(FieldError("FieldValueInvalid", "metadata.name", 'must be spec.names.plural+"."+spec.group',
                                     name, True))
    return errors


def resource_type_from_crd(crd: dict) -> ResourceType:
    """The ResourceType a CRD defines, with a compiled schema per served version."""
    from hcpsim.apiserver.validation import compile_schema

    errors = validate_crd(crd)
    if errors:
        raise ApiError.invalid("CustomResourceDefinition", "apiextensions.k8s.io",
                               (crd.get("metadata") or {}).get("name", ""), errors)
    spec = crd["spec"]
    names = spec["names"]
    served = [v for v in spec["versions"] if v.get("served", True)]
    # The storage version is the preferred one; the rest follow in the CRD's order.
    served.sort(key=lambda v: not v.get("storage"))
    schemas: dict[str, Any] = {}
    printer_columns: dict[str, list[dict[str, Any]]] = {}
    has_status = False
    scale: ScaleSpec | None = None
    for version in served:
        schema = ((version.get("schema") or {}).get("openAPIV3Schema")) or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        schemas[version["name"]] = compile_schema(schema)
        printer_columns[version["name"]] = version.get("additionalPrinterColumns") or []
        sub = version.get("subresources") or {}
        if "status" in sub:
            has_status = True
        if "scale" in sub:
            s = sub["scale"]
            scale = ScaleSpec(s["specReplicasPath"], s["statusReplicasPath"], s.get("labelSelectorPath"))
    return ResourceType(
        group=spec["group"],
        kind=names["kind"],
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        namespaced=spec["scope"] == "Namespaced",
        versions=[v["name"] for v in served],
        short_names=list(names.get("shortNames") or []),
        categories=list(names.get("categories") or []),
        has_status=has_status,
        scale=scale,
        builtin=False,
        schemas=schemas,
        printer_columns=printer_columns,
        crd_name=crd["metadata"]["name"],
    )


def established_status(crd: dict) -> dict:
    """The status the real apiextensions controller writes once the names are accepted."""
    from hcpsim.apiserver.clock import now_rfc3339

    ts = now_rfc3339()
    spec = crd["spec"]
    return {
        "acceptedNames": dict(spec["names"]),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": ts},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": ts},
        ],
        "storedVersions": [v["name"] for v in spec["versions"] if v.get("storage")],
    }
