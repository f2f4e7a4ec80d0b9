"""The HostedCluster as the runbooks see it, and the changes they make to its control plane.

Everything here goes through the management cluster's API: reading HostedClusters, pausing
their reconciliation (`spec.pausedUntil`), scaling control-plane Deployments through the scale
subresource, and waiting (watch-based) until a Deployment has reached its replica count.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, ConfigDict

from hcp.naming import HostedClusterRef
from hcp.waits import WaitTimeout, wait_for_object

__all__ = [
    "GROUP", "VERSION", "QUIESCE_DEPLOYMENTS", "HostedClusterError", "HostedClusterInfo", "read_hosted_cluster",
    "list_hosted_clusters", "set_paused_until", "set_node_pool_paused_until", "deployment_replicas", "scale_deployment", "wait_deployment_settled",
    "read_secret",
]

GROUP, VERSION, PLURAL = "hypershift.openshift.io", "v1beta1", "hostedclusters"

# The API servers the documented quiesced backup scales to 0 so that nothing writes to etcd.
QUIESCE_DEPLOYMENTS = ("kube-apiserver", "openshift-apiserver", "openshift-oauth-apiserver")


class HostedClusterError(RuntimeError):
    """A hosted cluster is missing, unreadable or in a state a runbook cannot act on."""


class HostedClusterInfo(BaseModel):
    """What a runbook needs to know about one HostedCluster, read from the management cluster."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str
    uid: str
    resource_version: str
    release_image: str
    release_version: str
    paused_until: str | None
    available: bool
    conditions: dict[str, str]  # type -> status
    encryption_key_secret: str | None  # spec.secretEncryption.aescbc.activeKey.name

    @property
    def ref(self) -> HostedClusterRef:
        return HostedClusterRef(self.namespace, self.name)

    @property
    def control_plane_namespace(self) -> str:
        return self.ref.control_plane_namespace

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> HostedClusterInfo:
        meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
        history = (status.get("version") or {}).get("history") or []
        completed = next((h for h in history if h.get("state") == "Completed"), None)
        desired = (status.get("version") or {}).get("desired") or {}
        encryption = (spec.get("secretEncryption") or {}).get("aescbc") or {}
        return cls(
            namespace=meta["namespace"], name=meta["name"], uid=meta["uid"], resource_version=meta["resourceVersion"],
            release_image=(spec.get("release") or {}).get("image", ""),
            release_version=(completed or {}).get("version") or desired.get("version") or "unknown",
            paused_until=spec.get("pausedUntil"), available=conditions.get("Available") == "True",
            conditions=conditions, encryption_key_secret=(encryption.get("activeKey") or {}).get("name"),
        )


def read_hosted_cluster(api: client.ApiClient, ref: HostedClusterRef, *, management: str = "") -> HostedClusterInfo:
    where = f" on management cluster {management}" if management else ""
    try:
        obj = client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, ref.namespace, PLURAL, ref.name)
    except ApiException as exc:
        if exc.status == 404:
            raise HostedClusterError(
                f"hosted cluster {ref}{where} not found: check the name with `oc get hostedclusters -A`") from None
        raise HostedClusterError(f"cannot read hosted cluster {ref}{where}: HTTP {exc.status} {exc.reason}; check "
                                 "that the runner's identity may get hostedclusters.hypershift.openshift.io") from None
    return HostedClusterInfo.from_object(obj)


def list_hosted_clusters(api: client.ApiClient, namespace: str | None = None,
                         label_selector: str | None = None) -> list[HostedClusterInfo]:
    custom = client.CustomObjectsApi(api)
    kwargs: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
    if namespace:
        listing = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, **kwargs)
    else:
        listing = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs)
    infos = [HostedClusterInfo.from_object(o) for o in listing.get("items", [])]
    return sorted(infos, key=lambda i: (i.namespace, i.name))


def set_paused_until(api: client.ApiClient, ref: HostedClusterRef, value: str | None) -> None:
    """Set (or, with None, remove) spec.pausedUntil; "true" pauses until unpaused."""
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, ref.namespace, PLURAL, ref.name, {"spec": {"pausedUntil": value}})


def set_node_pool_paused_until(api: client.ApiClient, namespace: str, name: str, value: str | None) -> None:
    """spec.pausedUntil of a NodePool (the DR procedure pauses them with their HostedCluster)."""
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "nodepools", name, {"spec": {"pausedUntil": value}})


def deployment_replicas(api: client.ApiClient, namespace: str, name: str) -> int | None:
    """spec.replicas of a Deployment, or None when it does not exist."""
    try:
        scale = client.AppsV1Api(api).read_namespaced_deployment_scale(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return scale.spec.replicas or 0


def scale_deployment(api: client.ApiClient, namespace: str, name: str, replicas: int) -> None:
    client.AppsV1Api(api).patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": replicas}})


def statefulset_replicas(api: client.ApiClient, namespace: str, name: str) -> int | None:
    """spec.replicas of a StatefulSet, or None when it does not exist."""
    try:
        scale = client.AppsV1Api(api).read_namespaced_stateful_set_scale(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return scale.spec.replicas or 0


def scale_statefulset(api: client.ApiClient, namespace: str, name: str, replicas: int) -> None:
    client.AppsV1Api(api).patch_namespaced_stateful_set_scale(name, namespace, {"spec": {"replicas": replicas}})


def _settled(replicas: int) -> Any:
    def check(dep: client.V1Deployment | None) -> bool:
        if dep is None:
            return False
        status = dep.status
        if (dep.spec.replicas or 0) != replicas or (status.observed_generation or 0) < (dep.metadata.generation or 0):
            return False
        if replicas == 0:
            return (status.replicas or 0) == 0  # every pod gone, not only marked for deletion
        return (status.ready_replicas or 0) >= replicas and (status.updated_replicas or 0) >= replicas
    return check


def wait_deployment_settled(api: client.ApiClient, namespace: str, name: str, replicas: int, *, timeout: float) -> None:
    """Until the Deployment runs exactly `replicas` ready pods (0: until its pods are gone)."""
    try:
        wait_for_object(client.AppsV1Api(api).list_namespaced_deployment, name, _settled(replicas), timeout=timeout,
                        what=f"deployment {namespace}/{name} at {replicas} ready replicas", namespace=namespace)
    except WaitTimeout as exc:
        dep = exc.last
        seen = "missing" if dep is None else (f"spec {dep.spec.replicas}, pods {dep.status.replicas or 0}, "
                                              f"ready {dep.status.ready_replicas or 0}")
        raise HostedClusterError(f"{exc} (last seen: {seen}); check its pods with `oc -n {namespace} get pods` "
                                 f"and events with `oc -n {namespace} get events`") from None


def read_secret(api: client.ApiClient, namespace: str, name: str) -> client.V1Secret:
    try:
        return client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise HostedClusterError(f"secret {namespace}/{name} not found") from None
        raise
