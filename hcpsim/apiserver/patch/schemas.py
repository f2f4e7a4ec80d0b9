"""Strategic-merge metadata of the built-in kinds: the `patchStrategy` / `patchMergeKey` Go struct
tags of k8s.io/api, as forkedjson.LookupPatchMetadata reads them.

Only fields that carry a tag, or lead to one, are listed. A field that is not listed behaves like a
Go field without tags: objects (structs and map[string]X alike) are merged key by key, lists are
replaced whole. `retainKeys` is not recorded: the server applies a `$retainKeys` directive wherever
the patch carries one (strategicpatch.applyRetainKeysDirective ignores the tag).

Sources (k8s.io/api, v1.30+): core/v1/types.go (ObjectMeta is in apimachinery meta/v1/types.go),
apps/v1/types.go, batch/v1/types.go. Lists that are deliberately atomic (no tag) include:
PodSpec.tolerations, NodeSpec.taints, Container.envFrom/args/command, Endpoints.subsets,
StatefulSetSpec.volumeClaimTemplates, Role/ClusterRole.rules, RoleBinding.subjects,
Service spec.externalIPs/ipFamilies, ConfigMap/Secret data are maps (merged per key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class FieldMeta:
    """Patch metadata of one JSON field.

    `schema` describes the field's value: for an object, its fields; for a list, its elements.
    `strategy` is "merge", "replace" or "" (no tag).
    """

    schema: Mapping[str, "FieldMeta"] = field(default_factory=dict)
    strategy: str = ""
    merge_key: str = ""


NO_META = FieldMeta()
Schema = Mapping[str, FieldMeta]


def obj(schema: Schema) -> FieldMeta:
    return FieldMeta(schema=schema)


def merge_list(merge_key: str = "", schema: Schema | None = None) -> FieldMeta:
    return FieldMeta(schema=schema or {}, strategy="merge", merge_key=merge_key)


def atomic_list(schema: Schema | None = None) -> FieldMeta:
    return FieldMeta(schema=schema or {})


# meta/v1 ObjectMeta: finalizers `patchStrategy:"merge"` (a set of strings),
# ownerReferences `patchStrategy:"merge" patchMergeKey:"uid"`.
OBJECT_META: Schema = {
    "finalizers": merge_list(),
    "ownerReferences": merge_list("uid"),
}

CONDITIONS = merge_list("type")

CONTAINER: Schema = {
    "ports": merge_list("containerPort"),
    "env": merge_list("name"),
    "volumeMounts": merge_list("mountPath"),
    "volumeDevices": merge_list("devicePath"),
}

POD_SPEC: Schema = {
    "volumes": merge_list("name"),  # `patchStrategy:"merge,retainKeys" patchMergeKey:"name"`
    "initContainers": merge_list("name", CONTAINER),
    "containers": merge_list("name", CONTAINER),
    "ephemeralContainers": merge_list("name", CONTAINER),  # EphemeralContainerCommon is inlined
    "imagePullSecrets": merge_list("name"),
    "hostAliases": merge_list("ip"),
    "topologySpreadConstraints": merge_list("topologyKey"),
    "resourceClaims": merge_list("name"),  # merge,retainKeys
    "schedulingGates": merge_list("name"),
}

POD_STATUS: Schema = {
    "conditions": CONDITIONS,
    "podIPs": merge_list("ip"),
    "hostIPs": merge_list("ip"),
    "resourceClaimStatuses": merge_list("name"),  # merge,retainKeys
}

POD: Schema = {"metadata": obj(OBJECT_META), "spec": obj(POD_SPEC), "status": obj(POD_STATUS)}

POD_TEMPLATE_SPEC: Schema = {"metadata": obj(OBJECT_META), "spec": obj(POD_SPEC)}

METADATA_ONLY: Schema = {"metadata": obj(OBJECT_META)}

WITH_STATUS_CONDITIONS: Schema = {"metadata": obj(OBJECT_META), "status": obj({"conditions": CONDITIONS})}

SERVICE: Schema = {
    "metadata": obj(OBJECT_META),
    # ServiceSpec.ports `patchStrategy:"merge" patchMergeKey:"port"` (listMapKey port+protocol is
    # server-side apply only; strategic merge uses the single key).
    "spec": obj({"ports": merge_list("port")}),
    "status": obj({"conditions": CONDITIONS}),
}

NODE: Schema = {
    "metadata": obj(OBJECT_META),
    "spec": obj({"podCIDRs": merge_list()}),  # taints: atomic
    "status": obj({"conditions": CONDITIONS, "addresses": merge_list("type")}),
}

SERVICE_ACCOUNT: Schema = {
    "metadata": obj(OBJECT_META),
    "secrets": merge_list("name"),  # imagePullSecrets: atomic here (unlike PodSpec)
}

PVC_SCHEMA: Schema = WITH_STATUS_CONDITIONS

WORKLOAD: Schema = {
    "metadata": obj(OBJECT_META),
    "spec": obj({"template": obj(POD_TEMPLATE_SPEC)}),
    "status": obj({"conditions": CONDITIONS}),
}

STATEFUL_SET: Schema = {
    "metadata": obj(OBJECT_META),
    "spec": obj(
        {
            "template": obj(POD_TEMPLATE_SPEC),
            # No patch tag: the list is replaced whole; its elements are PVCs.
            "volumeClaimTemplates": atomic_list(PVC_SCHEMA),
        }
    ),
    "status": obj({"conditions": CONDITIONS}),
}

JOB: Schema = WORKLOAD

CRON_JOB: Schema = {
    "metadata": obj(OBJECT_META),
    "spec": obj({"jobTemplate": obj({"metadata": obj(OBJECT_META), "spec": obj({"template": obj(POD_TEMPLATE_SPEC)})})}),
}

POD_TEMPLATE: Schema = {"metadata": obj(OBJECT_META), "template": obj(POD_TEMPLATE_SPEC)}

REPLICATION_CONTROLLER: Schema = WORKLOAD

# (group, kind) -> schema of the whole object.
KIND_SCHEMAS: dict[tuple[str, str], Schema] = {
    ("", "Pod"): POD,
    ("", "PodTemplate"): POD_TEMPLATE,
    ("", "ReplicationController"): REPLICATION_CONTROLLER,
    ("", "Service"): SERVICE,
    ("", "ConfigMap"): METADATA_ONLY,
    ("", "Secret"): METADATA_ONLY,
    ("", "Namespace"): WITH_STATUS_CONDITIONS,
    ("", "PersistentVolumeClaim"): PVC_SCHEMA,
    ("", "PersistentVolume"): METADATA_ONLY,
    ("", "ServiceAccount"): SERVICE_ACCOUNT,
    ("", "Node"): NODE,
    ("", "Endpoints"): METADATA_ONLY,
    ("", "Event"): METADATA_ONLY,
    ("", "LimitRange"): METADATA_ONLY,
    ("", "ResourceQuota"): METADATA_ONLY,
    ("apps", "Deployment"): WORKLOAD,
    ("apps", "ReplicaSet"): WORKLOAD,
    ("apps", "DaemonSet"): WORKLOAD,
    ("apps", "StatefulSet"): STATEFUL_SET,
    ("batch", "Job"): JOB,
    ("batch", "CronJob"): CRON_JOB,
    ("coordination.k8s.io", "Lease"): METADATA_ONLY,
    ("rbac.authorization.k8s.io", "Role"): METADATA_ONLY,
    ("rbac.authorization.k8s.io", "ClusterRole"): METADATA_ONLY,
    ("rbac.authorization.k8s.io", "RoleBinding"): METADATA_ONLY,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): METADATA_ONLY,
}

# API groups served by kube-apiserver itself (typed objects, so strategic merge is accepted).
# A kind in one of these groups without an entry above is patched with ObjectMeta metadata only.
BUILTIN_GROUPS: frozenset[str] = frozenset(
    {
        "",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "apps",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "autoscaling",
        "batch",
        "certificates.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "resource.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
    }
)


def schema_for(group: str, kind: str) -> Schema | None:
    """The kind's schema, or None when it is not a built-in kind (custom resources)."""
    found = KIND_SCHEMAS.get((group, kind))
    if found is not None:
        return found
    if group in BUILTIN_GROUPS:
        return METADATA_ONLY
    return None
