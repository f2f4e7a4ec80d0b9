"""Kubernetes objects as a backup keeps them: cleaned for re-creation, and read back.

An object read from an API server carries what that server and its controllers wrote: status,
server-set metadata (uid, resourceVersion, creationTimestamp, generation, managedFields...),
ownerReferences (uids of objects that will not exist on the target), finalizers (added again by the
controllers that own them) and annotations the operators keep for their own bookkeeping. None of it
may be sent back in a create: the API server refuses a resourceVersion, and a stale finalizer or
ownerReference would tie the new object to something that is gone. What remains is what a user
wrote: `oc get -o yaml` minus what `oc create` cannot take, as HyperShift's disaster-recovery
procedure prepares its HostedCluster and NodePool files (docs/content/how-to/aws/disaster-recovery.md:
status removed, pausedUntil dropped before re-creation).

`clean_for_recreate` works for any kind (issue 6 backs up many); `policy_for` adds what is known of
each kind's operator bookkeeping. Documents are a `v1 List` (what `oc get -o json` prints for
several objects, and `oc create -f` takes back).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml
from kubernetes import client

from hcp.hosted_cluster import GROUP, VERSION

__all__ = [
    "SERVER_SET_METADATA", "OPERATOR_ANNOTATIONS", "CleanPolicy", "ClusterObjectsError", "clean_for_recreate",
    "policy_for", "object_list", "parse_documents", "group_of", "describe", "to_json", "HostedClusterObjects",
    "read_hosted_cluster_objects", "cleaned_for_backup",
]

# Written by the API server on every object; a create must not carry them (resourceVersion is refused).
SERVER_SET_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink",
                       "deletionTimestamp", "deletionGracePeriodSeconds")

_HS = "hypershift.openshift.io"

# Annotations an operator writes on objects a user owns, for its own bookkeeping (kind -> keys).
# NodePool: hypershift-operator/controllers/nodepool (nodePoolAnnotationCurrentConfig and friends);
# copied to a new NodePool they would claim a rollout that never happened there.
OPERATOR_ANNOTATIONS: dict[tuple[str, str], frozenset[str]] = {
    (_HS, "NodePool"): frozenset({
        f"{_HS}/nodePoolCurrentConfig", f"{_HS}/nodePoolCurrentConfigVersion", f"{_HS}/nodePoolCurrentProviderConfig",
        f"{_HS}/nodePoolTargetConfigVersion", f"{_HS}/nodePoolUpgradeInProgressTrue",
        f"{_HS}/nodePoolUpgradeInProgressFalse", f"{_HS}/nodePoolPlatformMachineTemplate",
    }),
    (_HS, "HostedCluster"): frozenset(),
}

# Labels and annotations of this tool (e.g. the operation that created an object): a backup of a
# restored cluster must not claim that operation's objects for the next restore.
OWN_PREFIX = "hcp-runbooks/"


class ClusterObjectsError(ValueError):
    """A document that does not hold the objects it should; the message says which and why."""


@dataclass(frozen=True)
class CleanPolicy:
    """What `clean_for_recreate` removes besides the server-set metadata."""

    status: bool = True
    owner_references: bool = True
    finalizers: bool = True
    annotations: frozenset[str] = frozenset()
    annotation_prefixes: tuple[str, ...] = (OWN_PREFIX,)
    label_prefixes: tuple[str, ...] = (OWN_PREFIX,)
    # dotted spec paths set to a value (None: removed), e.g. {"spec.pausedUntil": None}
    overrides: dict[str, Any] = field(default_factory=dict)


def group_of(obj: dict[str, Any]) -> str:
    api_version = str(obj.get("apiVersion") or "")
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind', '?')} {where}{meta.get('name', '?')}"


def policy_for(obj: dict[str, Any], **overrides: Any) -> CleanPolicy:
    """The default policy for this object's kind (its operator's annotations), with `overrides`."""
    known = OPERATOR_ANNOTATIONS.get((group_of(obj), str(obj.get("kind"))), frozenset())
    extra = frozenset(overrides.pop("annotations", frozenset()))
    return CleanPolicy(annotations=known | extra, **overrides)


def _set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = obj
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            if value is None:
                return  # nothing to remove
            child = node[part] = {}
        node = child
    if value is None:
        node.pop(last, None)
    else:
        node[last] = copy.deepcopy(value)


def clean_for_recreate(obj: dict[str, Any], policy: CleanPolicy | None = None) -> dict[str, Any]:
    """A copy of `obj` that a create on another (or the same) cluster accepts and that carries only
    what its owner wrote. The input is not changed."""
    policy = policy if policy is not None else policy_for(obj)
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    if not isinstance(meta, dict) or not meta.get("name"):
        raise ClusterObjectsError(f"{describe(obj)}: an object needs metadata.name")
    for key in SERVER_SET_METADATA:
        meta.pop(key, None)
    if policy.owner_references:
        meta.pop("ownerReferences", None)
    if policy.finalizers:
        meta.pop("finalizers", None)
    for key, prefixes, named in (("annotations", policy.annotation_prefixes, policy.annotations),
                                 ("labels", policy.label_prefixes, frozenset())):
        values = meta.get(key)
        if values:
            kept = {k: v for k, v in values.items() if k not in named and not k.startswith(prefixes)}
            if kept:
                meta[key] = kept
            else:
                meta.pop(key)
    if policy.status:
        out.pop("status", None)
    for path, value in policy.overrides.items():
        _set_path(out, path, value)
    return out


def object_list(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A `v1 List` of the objects (`oc create -f` takes it)."""
    return {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": list(items)}


def parse_documents(text: str | bytes, what: str = "manifest") -> list[dict[str, Any]]:
    """The objects in JSON or (multi-document) YAML; `List` kinds are flattened."""
    try:
        docs = list(yaml.safe_load_all(text))  # YAML 1.1 reads JSON too
    except yaml.YAMLError as exc:
        raise ClusterObjectsError(f"{what} is neither JSON nor YAML: {exc}") from None
    out: list[dict[str, Any]] = []

    def add(doc: Any, where: str) -> None:
        if doc is None:
            return
        if not isinstance(doc, dict) or "kind" not in doc:
            raise ClusterObjectsError(f"{what}: {where} is not a Kubernetes object (no kind)")
        if doc["kind"] == "List" or (str(doc["kind"]).endswith("List") and isinstance(doc.get("items"), list)):
            for i, item in enumerate(doc.get("items") or []):
                add(item, f"{where} item {i}")
            return
        if not isinstance(doc.get("metadata"), dict) or not doc["metadata"].get("name"):
            raise ClusterObjectsError(f"{what}: {where} ({doc['kind']}) has no metadata.name")
        out.append(doc)

    for i, doc in enumerate(docs):
        add(doc, f"document {i + 1}")
    return out


def to_json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, sort_keys=True).encode()


# -- a HostedCluster and its NodePools -------------------------------------------------------------

_NOT_SET = object()


@dataclass(frozen=True)
class HostedClusterObjects:
    """A HostedCluster and the NodePools whose spec.clusterName names it, as plain objects."""

    hosted_cluster: dict[str, Any]
    node_pools: list[dict[str, Any]]

    def to_document(self) -> dict[str, Any]:
        return object_list([self.hosted_cluster, *self.node_pools])

    @classmethod
    def from_documents(cls, docs: list[dict[str, Any]], what: str = "document") -> HostedClusterObjects:
        """Exactly one HostedCluster; its NodePools (other kinds are the caller's business)."""
        hcs = [d for d in docs if d.get("kind") == "HostedCluster" and group_of(d) == _HS]
        if len(hcs) != 1:
            raise ClusterObjectsError(f"{what} must hold exactly one HostedCluster ({_HS}), not {len(hcs)}")
        name = hcs[0]["metadata"]["name"]
        pools = [d for d in docs if d.get("kind") == "NodePool" and group_of(d) == _HS]
        strangers = [p["metadata"]["name"] for p in pools if (p.get("spec") or {}).get("clusterName") != name]
        if strangers:
            raise ClusterObjectsError(f"{what}: NodePools {strangers} do not belong to HostedCluster {name} "
                                      "(spec.clusterName differs)")
        return cls(hosted_cluster=hcs[0], node_pools=pools)


def read_hosted_cluster_objects(api: client.ApiClient, namespace: str, name: str) -> HostedClusterObjects:
    """The HostedCluster and its NodePools as the management cluster has them (not cleaned)."""
    custom = client.CustomObjectsApi(api)
    hc = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "hostedclusters", name)
    pools = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "nodepools").get("items") or []
    mine = sorted((p for p in pools if (p.get("spec") or {}).get("clusterName") == name),
                  key=lambda p: p["metadata"]["name"])
    return HostedClusterObjects(hosted_cluster=hc, node_pools=mine)


def cleaned_for_backup(objects: HostedClusterObjects, original_paused_until: Any = _NOT_SET) -> HostedClusterObjects:
    """The objects cleaned for re-creation. `original_paused_until`: the HostedCluster's pausedUntil
    before this backup paused it (None: it was not paused), so a quiesced backup does not keep its
    own pause; left out, the current value is kept."""
    overrides = {} if original_paused_until is _NOT_SET else {"spec.pausedUntil": original_paused_until}
    hc = clean_for_recreate(objects.hosted_cluster, policy_for(objects.hosted_cluster, overrides=overrides))
    return HostedClusterObjects(hosted_cluster=hc, node_pools=[clean_for_recreate(p) for p in objects.node_pools])
