"""dr-migrate's preflight: can this hosted cluster move to that management cluster at all?

Each check reads, never writes, and returns the problems it found as sentences that say what to do;
the runbook refuses to start while any is left.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from hcp.dns_records import hostnames_outside, published_hostnames
from hcp.hosted_cluster import GROUP, VERSION
from hcp.naming import HostedClusterRef
from hcp.undo_journal import LABEL_OPERATION

__all__ = ["SUPPORTED_VERSIONS", "external_dns_problems", "supported_version_problems", "destination_problems",
           "minor_version"]

# The hypershift operator's ConfigMap of the OpenShift minor versions it can run (hypershift/supportedversion).
SUPPORTED_VERSIONS = ("hypershift", "supported-versions")


def minor_version(version: str) -> str:
    parts = version.split(".")
    return ".".join(parts[:2])


def external_dns_problems(hosted_cluster: dict[str, Any], domain: str, where: str) -> list[str]:
    """The API must be published through a Route with a hostname inside the external DNS domain:
    the nodes reach the API by that name, which is what lets the control plane move (a cluster
    whose API is a LoadBalancer Service is reached at the old management cluster's address)."""
    hostnames = published_hostnames(hosted_cluster)
    if "APIServer" not in hostnames:
        return [f"{where}: its API is not published through a Route with a hostname (spec.services APIServer "
                "servicePublishingStrategy type Route with route.hostname): a cluster without external DNS cannot "
                "be moved to another management cluster"]
    outside = hostnames_outside(hostnames, domain)
    if outside:
        return [f"{where}: hostnames outside the external DNS domain {domain}: "
                + ", ".join(f"{s} {h}" for s, h in sorted(outside.items()))
                + "; give the domain the cluster was created with (`hypershift create cluster --external-dns-domain`)"]
    return []


def supported_version_problems(api: client.ApiClient, version: str, where: str) -> list[str]:
    """The management cluster's hypershift operator must support the cluster's OpenShift minor version."""
    namespace, name = SUPPORTED_VERSIONS
    try:
        cm = client.CoreV1Api(api).read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return [f"{where}: no ConfigMap {namespace}/{name}: is the hypershift operator installed there?"]
        return [f"{where}: cannot read ConfigMap {namespace}/{name} (HTTP {exc.status} {exc.reason}); grant the "
                "runner `get configmaps` in namespace hypershift"]
    try:
        versions = json.loads((cm.data or {}).get("supported-versions", "{}")).get("versions") or []
    except ValueError:
        versions = []
    if minor_version(version) not in versions:
        return [f"{where}: its hypershift operator supports OpenShift {', '.join(versions) or 'nothing'}, not "
                f"{version}; upgrade the operator there first"]
    return []


def destination_problems(api: client.ApiClient, ref: HostedClusterRef, *, ours: str | None, where: str) -> list[str]:
    """The destination must not hold this HostedCluster, its NodePools or its control-plane namespace
    (`ours`: this operation's label value; its own objects from an earlier run are fine)."""
    problems: list[str] = []
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)

    def foreign(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return ours is None or labels.get(LABEL_OPERATION) != ours

    try:
        hc = custom.get_namespaced_custom_object(GROUP, VERSION, ref.namespace, "hostedclusters", ref.name)
        if foreign(hc):
            problems.append(f"{where} already has HostedCluster {ref}: remove it there first (if it is a leftover "
                            "of an earlier attempt) or migrate to another management cluster")
    except ApiException as exc:
        if exc.status != 404:
            problems.append(f"{where}: cannot read HostedCluster {ref} (HTTP {exc.status} {exc.reason})")
    try:
        pools = custom.list_namespaced_custom_object(GROUP, VERSION, ref.namespace, "nodepools").get("items") or []
        taken = [p["metadata"]["name"] for p in pools if (p.get("spec") or {}).get("clusterName") == ref.name
                 and foreign(p)]
        if taken:
            problems.append(f"{where} already has NodePools of {ref.name}: {', '.join(taken)}; remove them first")
    except ApiException as exc:
        if exc.status != 404:
            problems.append(f"{where}: cannot list NodePools in {ref.namespace} (HTTP {exc.status} {exc.reason})")
    cp = ref.control_plane_namespace
    try:
        ns = core.read_namespace(cp)
        if foreign({"metadata": {"labels": ns.metadata.labels}}):
            problems.append(f"{where} already has the control-plane namespace {cp}: remove it first (`oc delete "
                            f"namespace {cp}`) if it is a leftover")
    except ApiException as exc:
        if exc.status != 404:
            problems.append(f"{where}: cannot read namespace {cp} (HTTP {exc.status} {exc.reason})")
    return problems
