"""etcd-restore into a new hosted cluster end to end on the simulated world: a backup taken by
etcd-backup, the HostedCluster re-created with a presigned restoreSnapshotURL, real etcd members
restoring it in their etcd-init containers, and the keys checked in the members' pods."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from kubernetes import client

from flows.etcd_backup import EtcdBackupParams, etcd_backup
from flows.etcd_restore_new_cluster import EtcdRestoreNewClusterParams, etcd_restore_new_cluster
from hcp import pod_exec
from hcp.cluster_access import ClusterAccess
from hcp.etcd_member import etcdctl_argv
from hcp.naming import HostedClusterRef, new_operation_id
from hcp.restore_render import LABEL_OPERATION, presigned_expiry
from hcpsim.world import World
from tests.conformance.util import wait_for

HS = ("hypershift.openshift.io", "v1beta1")
LABEL = LABEL_OPERATION


# -- helpers ------------------------------------------------------------------------------------------

def _hc(mgmt: client.ApiClient, ref: HostedClusterRef) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(mgmt).get_namespaced_custom_object(*HS, ref.namespace, "hostedclusters",
                                                                          ref.name)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _put(mgmt: client.ApiClient, ref: HostedClusterRef, key: str, value: str) -> None:
    pod_exec.run(mgmt, ref.control_plane_namespace, "etcd-0", "etcd", etcdctl_argv("put", key, value))


def _get(mgmt: client.ApiClient, ref: HostedClusterRef, pod: str, key: str) -> str | None:
    out = pod_exec.run(mgmt, ref.control_plane_namespace, pod, "etcd", etcdctl_argv("get", key, "--print-value-only"))
    return out.text.rstrip("\n") or None


def _delete_cluster(mgmt: client.ApiClient, ref: HostedClusterRef) -> None:
    """The disaster: the HostedCluster and its control plane are gone (its namespace's secrets stay)."""
    client.CustomObjectsApi(mgmt).delete_namespaced_custom_object(*HS, ref.namespace, "hostedclusters", ref.name)
    wait_for(lambda: _hc(mgmt, ref) is None, f"{ref} deleted", timeout=90)
    core = client.CoreV1Api(mgmt)
    wait_for(lambda: ref.control_plane_namespace not in [n.metadata.name for n in core.list_namespace().items],
             "control plane namespace gone", timeout=90)


def _labelled(mgmt: client.ApiClient, namespace: str, op: str) -> list[str]:
    """Every object of an operation in a namespace (what a restore creates)."""
    selector = f"{LABEL}={op}"
    custom, core = client.CustomObjectsApi(mgmt), client.CoreV1Api(mgmt)
    found = [f"hostedcluster/{o['metadata']['name']}" for o in custom.list_namespaced_custom_object(
        *HS, namespace, "hostedclusters", label_selector=selector)["items"]]
    found += [f"nodepool/{o['metadata']['name']}" for o in custom.list_namespaced_custom_object(
        *HS, namespace, "nodepools", label_selector=selector)["items"]]
    found += [f"secret/{s.metadata.name}" for s in core.list_namespaced_secret(namespace, label_selector=selector).items]
    return sorted(found)


def _backup(access: ClusterAccess, bucket: str, cluster: str, prefix: str) -> Any:
    report = etcd_backup(EtcdBackupParams(hosted_cluster=cluster, bucket=bucket, prefix=prefix, management=access))
    assert report.status == "succeeded", report.error
    return report


def params(access: ClusterAccess, bucket: str, **kw: Any) -> EtcdRestoreNewClusterParams:
    kw.setdefault("approval", {"pre_approved_by": "alice"})
    kw.setdefault("timeout_seconds", 180)
    return EtcdRestoreNewClusterParams(management=access, bucket=bucket, **kw)


# -- the disaster-recovery path -------------------------------------------------------------------------

def test_restore_after_the_cluster_is_gone_brings_back_the_keys_of_the_backup(
        prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess, s3: Any, bucket: str,
        new_cluster: Callable[[], str]) -> None:
    cluster = new_cluster()
    ref = HostedClusterRef.parse(cluster)
    prefix = f"t-{uuid.uuid4().hex[:6]}"
    _put(mgmt, ref, "/hcp-test/before", "written-before-the-backup")
    _backup(access, bucket, cluster, prefix)
    _put(mgmt, ref, "/hcp-test/after", "written-after-the-backup")
    core = client.CoreV1Api(mgmt)
    original_key = core.read_namespaced_secret(f"{ref.name}-etcd-encryption-key", ref.namespace).data
    _delete_cluster(mgmt, ref)
    core.delete_namespaced_secret(f"{ref.name}-etcd-encryption-key", ref.namespace)  # lost with the cluster

    op = new_operation_id()
    report = etcd_restore_new_cluster(params(access, bucket, source_cluster=cluster, prefix=prefix, operation_id=op))
    assert report.status == "succeeded", report.error

    hc = _hc(mgmt, ref)
    assert hc is not None and hc["metadata"]["labels"][LABEL] == op
    urls = hc["spec"]["etcd"]["managed"]["storage"]["restoreSnapshotURL"]
    assert len(urls) == 1 and urls[0].startswith("https://") and "X-Amz-Signature=" in urls[0]
    expires = presigned_expiry(urls[0])
    assert expires is not None
    assert "pausedUntil" not in hc["spec"]
    # the AES key is the one the cluster had, restored from the backup, and never shown
    assert core.read_namespaced_secret(f"{ref.name}-etcd-encryption-key", ref.namespace).data == original_key
    assert original_key["key"] not in report.to_markdown() and "X-Amz-Signature" not in report.to_markdown()
    # keys written before the backup are back with their values; the one written after it is not
    assert _get(mgmt, ref, "etcd-0", "/hcp-test/before") == "written-before-the-backup"
    assert _get(mgmt, ref, "etcd-0", "/hcp-test/after") is None
    assert any("same keyspace hash" in line for line in report.verification), report.verification
    assert _labelled(mgmt, ref.namespace, op) == sorted([f"hostedcluster/{ref.name}", f"nodepool/{ref.name}",
                                                         f"secret/{ref.name}-etcd-encryption-key"])

    # the same operation again: it finds its cluster and never writes a second restoreSnapshotURL
    again = etcd_restore_new_cluster(params(access, bucket, source_cluster=cluster, prefix=prefix, operation_id=op,
                                            approval={"timeout_seconds": 5, "poll_interval_seconds": 1}))
    assert again.status == "succeeded", again.error
    assert again.changes == [] and not again.approvals
    hc_after = _hc(mgmt, ref)
    assert hc_after is not None
    assert hc_after["spec"]["etcd"]["managed"]["storage"]["restoreSnapshotURL"] == urls
