"""What a simulated cluster serves: resource types (built-in and from CRDs) and their registry.

A ResourceType is one group/plural with its served versions. All versions share one storage
(no conversion, as the CRD README allows for Cluster API v1beta1/v1beta2); an object read through
a version gets that version's apiVersion.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from hcpsim.apiserver.errors import ApiError

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ScaleSpec:
    """Where the scale subresource reads and writes, as in a CRD's subresources.scale."""

    spec_replicas_path: str = ".spec.replicas"
    status_replicas_path: str = ".status.replicas"
    label_selector_path: str | None = ".status.selector"
    # Built-in workloads keep a metav1.LabelSelector in spec.selector; CRDs point at a string.
    selector_is_spec: bool = False


@dataclass
class ResourceType:
    group: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    versions: list[str]  # served versions; the first is the preferred (storage) one
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    has_status: bool = False
    scale: ScaleSpec | None = None
    builtin: bool = True
    # A CompiledSchema (hcpsim.apiserver.validation) per served version, for custom resources.
    schemas: dict[str, Any] = field(default_factory=dict)
    printer_columns: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Subresources served through other machinery (pods/exec, pods/log): names only.
    extra_subresources: list[str] = field(default_factory=list)
    # Field selectors this kind supports beyond metadata.name and metadata.namespace.
    field_labels: tuple[str, ...] = ()
    # The CRD object this type was created from, when it was.
    crd_name: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    def api_version(self, version: str | None = None) -> str:
        version = version or self.versions[0]
        return f"{self.group}/{version}" if self.group else version

    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _b(group: str, version: str, kind: str, plural: str, namespaced: bool, **kw: Any) -> ResourceType:
    return ResourceType(
        group=group,
        kind=kind,
        plural=plural,
        singular=kw.pop("singular", kind.lower()),
        namespaced=namespaced,
        versions=[version],
        **kw,
    )


_WORKLOAD_SCALE = ScaleSpec(".spec.replicas", ".status.replicas", ".spec.selector", selector_is_spec=True)


def builtin_types() -> list[ResourceType]:
    """The built-in kinds every simulated cluster serves (core, apps, coordination, rbac, apiextensions)."""
    return [
        _b("", "v1", "Namespace", "namespaces", False, short_names=["ns"], has_status=True,
           field_labels=("status.phase",)),
        _b("", "v1", "Pod", "pods", True, short_names=["po"], categories=["all"], has_status=True,
           extra_subresources=["log", "exec"],
           field_labels=("status.phase", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                         "spec.serviceAccountName", "status.podIP", "status.nominatedNodeName")),
        _b("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, short_names=["pvc"], has_status=True),
        _b("", "v1", "PersistentVolume", "persistentvolumes", False, short_names=["pv"], has_status=True),
        _b("", "v1", "Secret", "secrets", True, field_labels=("type",)),
        _b("", "v1", "ConfigMap", "configmaps", True, short_names=["cm"]),
        _b("", "v1", "Service", "services", True, short_names=["svc"], categories=["all"], has_status=True),
        _b("", "v1", "Endpoints", "endpoints", True, singular="endpoints", short_names=["ep"]),
        _b("", "v1", "Event", "events", True, short_names=["ev"],
           field_labels=("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                         "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                         "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type")),
        _b("", "v1", "Node", "nodes", False, short_names=["no"], has_status=True, field_labels=("spec.unschedulable",)),
        _b("", "v1", "ServiceAccount", "serviceaccounts", True, short_names=["sa"]),
        _b("apps", "v1", "Deployment", "deployments", True, short_names=["deploy"], categories=["all"],
           has_status=True, scale=_WORKLOAD_SCALE),
        _b("apps", "v1", "StatefulSet", "statefulsets", True, short_names=["sts"], categories=["all"],
           has_status=True, scale=_WORKLOAD_SCALE),
        _b("apps", "v1", "ReplicaSet", "replicasets", True, short_names=["rs"], categories=["all"],
           has_status=True, scale=_WORKLOAD_SCALE),
        _b("coordination.k8s.io", "v1", "Lease", "leases", True),
        _b("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
        _b("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
        _b("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
        _b("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
        _b("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False,
           short_names=["crd", "crds"], categories=["api-extensions"], has_status=True),
    ]


class Registry:
    """The resource types one cluster serves. Thread-safe: CRDs come and go at run time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._types: dict[tuple[str, str], ResourceType] = {}
        self.generation = 0  # bumped on every change, so discovery caches know when to rebuild
        for rt in builtin_types():
            self._types[rt.key] = rt

    def add(self, rt: ResourceType) -> None:
        with self._lock:
            self._types[rt.key] = rt
            self.generation += 1

    def remove(self, group: str, plural: str) -> ResourceType | None:
        with self._lock:
            self.generation += 1
            return self._types.pop((group, plural), None)

    def get(self, group: str, plural: str) -> ResourceType | None:
        return self._types.get((group, plural))

    def require(self, group: str, plural: str) -> ResourceType:
        rt = self._types.get((group, plural))
        if rt is None:
            raise ApiError.path_not_found()
        return rt

    def lookup(self, group: str, version: str, plural: str) -> ResourceType:
        """The type served at /apis/<group>/<version>/<plural>, or 404 as the real server answers."""
        rt = self._types.get((group, plural))
        if rt is None or version not in rt.versions:
            raise ApiError.path_not_found()
        return rt

    def by_kind(self, group: str, kind: str) -> ResourceType | None:
        for rt in list(self._types.values()):
            if rt.group == group and rt.kind == kind:
                return rt
        return None

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def group_versions(self) -> dict[str, list[str]]:
        """group -> served versions, preferred first (core group "" included)."""
        out: dict[str, list[str]] = {}
        for rt in self.all():
            versions = out.setdefault(rt.group, [])
            for v in rt.versions:
                if v not in versions:
                    versions.append(v)
        for group, versions in out.items():
            versions.sort(key=_version_priority)
        return out


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version ordering: GA before beta before alpha, higher numbers first."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0)
    major = int(m.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor)
