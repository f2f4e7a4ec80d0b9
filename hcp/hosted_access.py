"""Inside a hosted cluster, through its admin kubeconfig: nodes, OVN pods, the parent marker.

The management cluster holds the hosted cluster's admin kubeconfig in the Secret named by the
HostedCluster's `status.kubeconfig` (`<name>-admin-kubeconfig`); its server is the API's published
hostname, so the client reaches whichever management cluster serves the API at that moment.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from hcp.hosted_cluster import GROUP, VERSION, HostedClusterError
from hcp.naming import HostedClusterRef
from hcp.waits import WaitTimeout, wait_for_set

__all__ = ["hosted_api_client", "node_pool_replicas", "NodeReadiness", "node_readiness", "wait_nodes_ready",
           "record_parent_cluster", "restart_ovn", "OVN_NAMESPACE", "PARENT_CONFIGMAP"]

OVN_NAMESPACE = "openshift-ovn-kubernetes"
OVN_SELECTOR = "app=ovnkube-node"
# The DR procedure records where a hosted cluster came from in a ConfigMap of its own.
PARENT_CONFIGMAP = ("default", "mgmt-parent-cluster")


def hosted_api_client(api: client.ApiClient, ref: HostedClusterRef, *, timeout: float = 10) -> client.ApiClient:
    """A client of the hosted cluster's API, from the admin kubeconfig on this management cluster."""
    custom = client.CustomObjectsApi(api)
    try:
        hc = custom.get_namespaced_custom_object(GROUP, VERSION, ref.namespace, "hostedclusters", ref.name)
    except ApiException as exc:
        raise HostedClusterError(f"{ref}: cannot read the HostedCluster (HTTP {exc.status})") from None
    secret_name = ((hc.get("status") or {}).get("kubeconfig") or {}).get("name") or f"{ref.name}-admin-kubeconfig"
    try:
        secret = client.CoreV1Api(api).read_namespaced_secret(secret_name, ref.namespace, _request_timeout=timeout)
    except ApiException as exc:
        raise HostedClusterError(f"{ref}: no admin kubeconfig secret {ref.namespace}/{secret_name} (HTTP "
                                 f"{exc.status}); the operator writes it once the control plane runs") from None
    raw = (secret.data or {}).get("kubeconfig")
    if not raw:
        raise HostedClusterError(f"{ref}: secret {ref.namespace}/{secret_name} has no `kubeconfig` key")
    doc = yaml.safe_load(base64.b64decode(raw))
    return config.new_client_from_config_dict(doc)


def node_pool_replicas(api: client.ApiClient, ref: HostedClusterRef) -> int:
    """The nodes the hosted cluster's NodePools ask for (autoscaled pools: their minimum)."""
    pools = client.CustomObjectsApi(api).list_namespaced_custom_object(GROUP, VERSION, ref.namespace, "nodepools")
    total = 0
    for pool in pools.get("items") or []:
        spec = pool.get("spec") or {}
        if spec.get("clusterName") != ref.name:
            continue
        total += int(spec.get("replicas") or (spec.get("autoScaling") or {}).get("min") or 0)
    return total


def _ready_since(node: Any) -> str | None:
    """lastTransitionTime of a Ready=True condition, None when the node is not Ready."""
    for c in node.status.conditions or []:
        if c.type == "Ready":
            if c.status != "True":
                return None
            t = c.last_transition_time
            return t.isoformat() if hasattr(t, "isoformat") else str(t)
    return None


class NodeReadiness:
    """The hosted cluster's nodes as its API shows them: name -> Ready since (None: not Ready)."""

    def __init__(self, nodes: dict[str, str | None]) -> None:
        self.nodes = nodes

    @property
    def ready(self) -> list[str]:
        return sorted(n for n, since in self.nodes.items() if since is not None)

    def describe(self) -> str:
        return ", ".join(f"{n} {'Ready since ' + s if s else 'NOT Ready'}" for n, s in sorted(self.nodes.items())) \
            or "no nodes"


def node_readiness(hosted: client.ApiClient, *, timeout: float = 10) -> NodeReadiness:
    nodes = client.CoreV1Api(hosted).list_node(_request_timeout=timeout).items
    return NodeReadiness({n.metadata.name: _ready_since(n) for n in nodes})


def wait_nodes_ready(hosted: client.ApiClient, count: int, *, timeout: float) -> NodeReadiness:
    """Until the hosted API answers and shows at least `count` Ready nodes. The API may still be
    coming up (503s, connection refused): those are waited through, up to the timeout."""
    deadline = time.monotonic() + timeout
    last: str = "the hosted API did not answer"
    while True:
        remaining = deadline - time.monotonic()
        try:
            items = wait_for_set(client.CoreV1Api(hosted).list_node,
                                 lambda nodes: sum(_ready_since(n) is not None for n in nodes) >= count,
                                 timeout=max(0.5, remaining), what=f"{count} Ready node(s) in the hosted cluster")
            return NodeReadiness({n.metadata.name: _ready_since(n) for n in items})
        except WaitTimeout as exc:
            last = NodeReadiness({n.metadata.name: _ready_since(n) for n in exc.last or []}).describe()
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:  # while the API comes up
            if isinstance(exc, ApiException) and exc.status not in (429, 500, 502, 503, 504):
                raise
            last = f"the hosted API: {type(exc).__name__} {getattr(exc, 'status', '')}".strip()
            time.sleep(0.2)
        if time.monotonic() >= deadline:
            raise HostedClusterError(f"timed out after {timeout:.0f}s waiting for {count} Ready node(s) in the hosted "
                                     f"cluster (last seen: {last}); check the nodes with the admin kubeconfig "
                                     "(`oc get nodes`)")


def record_parent_cluster(hosted: client.ApiClient, management_cluster: str) -> bool:
    """The documented marker `default/mgmt-parent-cluster` {from: <management cluster>} in the hosted
    cluster (it travels in etcd). True when it was created or changed."""
    core = client.CoreV1Api(hosted)
    namespace, name = PARENT_CONFIGMAP
    body = {"metadata": {"name": name, "namespace": namespace}, "data": {"from": management_cluster}}
    try:
        current = core.read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_config_map(namespace, body)
        return True
    if (current.data or {}) == body["data"]:
        return False
    core.patch_namespaced_config_map(name, namespace, {"data": body["data"]})
    return True


def restart_ovn(hosted: client.ApiClient, nodes: int, *, timeout: float) -> list[str]:
    """Delete the ovnkube-node pods (they connected to the old control plane) and wait until each of
    `nodes` nodes runs a new, ready one. Returns the pods deleted."""
    core = client.CoreV1Api(hosted)
    old = core.list_namespaced_pod(OVN_NAMESPACE, label_selector=OVN_SELECTOR).items
    old_uids = {p.metadata.uid for p in old}
    for pod in old:
        try:
            core.delete_namespaced_pod(pod.metadata.name, OVN_NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def restarted(pods: list[Any]) -> bool:
        fresh = [p for p in pods if p.metadata.uid not in old_uids and not p.metadata.deletion_timestamp
                 and p.status.phase == "Running"
                 and all(cs.ready for cs in p.status.container_statuses or [])]
        return len({p.spec.node_name for p in fresh}) >= nodes

    try:
        wait_for_set(core.list_namespaced_pod, restarted, timeout=timeout, what="new ovnkube-node pods on every node",
                     namespace=OVN_NAMESPACE, label_selector=OVN_SELECTOR)
    except WaitTimeout as exc:
        raise HostedClusterError(f"{exc}; check `oc -n {OVN_NAMESPACE} get pods -o wide` in the hosted cluster") from None
    return sorted(p.metadata.name for p in old)
