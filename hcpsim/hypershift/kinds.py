"""The simulator's own definitions of the HyperShift, Cluster API and CAPI-AWS kinds, so a world runs
without the upstream CRDs (which belong to the HyperShift project and are not copied here). They
are permissive (unknown fields kept) but enforce the rules the runbooks depend on: one
restoreSnapshotURL, https or s3 only, settable at creation only. When the upstream CRDs are
available they are installed over these and bring their full schemas and CEL rules.
"""

from __future__ import annotations

from typing import Any

_RESTORE_URL_RULES = [
    {"rule": "self.all(u, u.startsWith('https://') || u.startsWith('s3://'))",
     "message": "restoreSnapshotURL must be a valid https or s3 URL"},
]
_STORAGE_TRANSITION = {
    "rule": "has(self.restoreSnapshotURL) == has(oldSelf.restoreSnapshotURL)",
    "message": "restoreSnapshotURL can only be set at creation",
}


def _open(properties: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if properties:
        schema["properties"] = properties
    schema.update(extra)
    return schema


def _hosted_cluster_schema() -> dict[str, Any]:
    storage = _open({
        "restoreSnapshotURL": {"type": "array", "maxItems": 1, "items": {"type": "string", "maxLength": 1024},
                               "x-kubernetes-validations": _RESTORE_URL_RULES},
    }, **{"x-kubernetes-validations": [_STORAGE_TRANSITION]})
    spec = _open({
        "release": _open({"image": {"type": "string"}}, required=["image"]),
        "pausedUntil": {"type": "string", "x-kubernetes-validations": [{
            "rule": "self.matches('^([0-9]{4}-[0-9]{2}-[0-9]{2}T.*|true|false|True|False)$')",
            "message": "PausedUntil must be a date in RFC3339 format or 'True', 'true' or 'False', 'false'"}]},
        "etcd": _open({"managed": _open({"storage": storage})}),
    }, required=["release", "etcd", "platform", "services", "networking", "pullSecret"])
    return _open({"spec": spec, "status": _open()})


def _crd(group: str, kind: str, plural: str, versions: list[str], *, namespaced: bool = True,
         short_names: list[str] | None = None, schema: dict[str, Any] | None = None, scale: bool = False,
         printer_columns: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    subresources: dict[str, Any] = {"status": {}}
    if scale:
        subresources["scale"] = {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "labels": {"hcpsim.openshift.io/builtin-definition": "true"}},
        "spec": {
            "group": group,
            "scope": "Namespaced" if namespaced else "Cluster",
            "names": {"kind": kind, "listKind": kind + "List", "plural": plural, "singular": kind.lower(),
                      "shortNames": short_names or []},
            "versions": [{
                "name": v, "served": True, "storage": i == len(versions) - 1,
                "schema": {"openAPIV3Schema": schema or _open({"spec": _open(), "status": _open()})},
                "subresources": subresources,
                "additionalPrinterColumns": printer_columns or [],
            } for i, v in enumerate(versions)],
        },
    }


def builtin_definitions() -> list[dict[str, Any]]:
    """CRD manifests for every kind the HyperShift world uses."""
    hs, capi, capa = "hypershift.openshift.io", "cluster.x-k8s.io", "infrastructure.cluster.x-k8s.io"
    hc_columns = [
        {"name": "Version", "type": "string", "jsonPath": ".status.version.history[?(@.state==\"Completed\")].version"},
        {"name": "KubeConfig", "type": "string", "jsonPath": ".status.kubeconfig.name"},
        {"name": "Progress", "type": "string", "jsonPath": ".status.version.history[?(@.state!=\"\")].state"},
        {"name": "Available", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Available\")].status"},
        {"name": "Progressing", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Progressing\")].status"},
        {"name": "Message", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Available\")].message"},
    ]
    return [
        _crd(hs, "HostedCluster", "hostedclusters", ["v1beta1"], short_names=["hc", "hcs"],
             schema=_hosted_cluster_schema(), printer_columns=hc_columns),
        _crd(hs, "HostedControlPlane", "hostedcontrolplanes", ["v1beta1"], short_names=["hcp", "hcps"]),
        _crd(hs, "NodePool", "nodepools", ["v1beta1"], short_names=["np", "nps"], scale=True),
        _crd(capi, "Cluster", "clusters", ["v1beta1", "v1beta2"]),
        _crd(capi, "MachineDeployment", "machinedeployments", ["v1beta1", "v1beta2"], scale=True),
        _crd(capi, "MachineSet", "machinesets", ["v1beta1", "v1beta2"], scale=True),
        _crd(capi, "Machine", "machines", ["v1beta1", "v1beta2"]),
        _crd(capa, "AWSCluster", "awsclusters", ["v1beta2"]),
        _crd(capa, "AWSMachineTemplate", "awsmachinetemplates", ["v1beta2"]),
        _crd(capa, "AWSMachine", "awsmachines", ["v1beta2"]),
    ]
