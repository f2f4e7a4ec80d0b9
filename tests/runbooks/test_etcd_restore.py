"""etcd-restore in place, end to end on the simulated world: real etcd members, S3, Prefect."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from kubernetes import client

from flows.etcd_backup import EtcdBackupParams, etcd_backup
from flows.etcd_restore import EtcdRestoreParams, etcd_restore
from hcp import pod_exec
from hcp.cluster_access import ClusterAccess
from hcp.etcd_member import etcdctl_argv
from hcp.naming import HostedClusterRef
from hcpsim.world import World
from tests.conformance.util import wait_for

HS = ("hypershift.openshift.io", "v1beta1")
WRITERS = ("kube-apiserver", "openshift-apiserver", "openshift-oauth-apiserver")


def _ns(cluster: str) -> str:
    return HostedClusterRef.parse(cluster).control_plane_namespace


def put(mgmt: client.ApiClient, cluster: str, key: str, value: str, pod: str = "etcd-0") -> None:
    pod_exec.run(mgmt, _ns(cluster), pod, "etcd", etcdctl_argv("put", key, value))


def read_prefix(mgmt: client.ApiClient, cluster: str, prefix: str, pod: str) -> dict[str, str]:
    """What one member serves (a linearizable read through that member), independent of the product."""
    out = pod_exec.run(mgmt, _ns(cluster), pod, "etcd", etcdctl_argv("get", prefix, "--prefix")).text
    lines = out.splitlines()
    return dict(zip(lines[0::2], lines[1::2]))


def writers(mgmt: client.ApiClient, cluster: str) -> dict[str, int]:
    apps = client.AppsV1Api(mgmt)
    return {d: apps.read_namespaced_deployment(d, _ns(cluster)).spec.replicas for d in WRITERS}


def hc(mgmt: client.ApiClient, cluster: str) -> dict:
    ref = HostedClusterRef.parse(cluster)
    return client.CustomObjectsApi(mgmt).get_namespaced_custom_object(*HS, ref.namespace, "hostedclusters", ref.name)


def backup(access: ClusterAccess, bucket: str, prefix: str, cluster: str) -> None:
    report = etcd_backup(EtcdBackupParams(hosted_cluster=cluster, bucket=bucket, prefix=prefix, management=access))
    assert report.status == "succeeded", report.error


def restore_params(access: ClusterAccess, bucket: str, prefix: str, cluster: str, tmp_path: Path,
                   **kw: Any) -> EtcdRestoreParams:
    kw.setdefault("approval", {"pre_approved_by": "alice", "poll_interval_seconds": 1, "timeout_seconds": 30})
    return EtcdRestoreParams(hosted_cluster=cluster, bucket=bucket, prefix=prefix, management=access,
                             work_dir=str(tmp_path), timeout_seconds=180, **kw)


def no_leftovers(mgmt: client.ApiClient, cluster: str) -> None:
    ns = _ns(cluster)
    assert not client.AppsV1Api(mgmt).list_namespaced_deployment(ns, label_selector="app=hcp-runbooks-etcd-data").items
    cms = client.CoreV1Api(mgmt).list_config_map_for_all_namespaces(label_selector="hcp-runbooks/operation-id")
    assert not [c.metadata.name for c in cms.items if cluster.split("/")[1] in c.metadata.name]
    for pod in client.CoreV1Api(mgmt).list_namespaced_pod(ns, label_selector="app=etcd").items:
        listing = pod_exec.run(mgmt, ns, pod.metadata.name, "etcd", ["ls", "-a", "/var/lib"]).text.split()
        assert not [f for f in listing if f.startswith("data.before-") or f.startswith("restored.snap")], listing


def test_restore_latest_backup_in_place(prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess,
                                        s3: Any, bucket: str, new_cluster: Callable[[], str], tmp_path: Path) -> None:
    cluster = new_cluster()
    prefix = f"r-{uuid.uuid4().hex[:6]}"
    tag = uuid.uuid4().hex[:6]
    put(mgmt, cluster, f"/t/{tag}/kept", "before-backup")
    put(mgmt, cluster, f"/t/{tag}/changed", "old-value")
    backup(access, bucket, prefix, cluster)
    put(mgmt, cluster, f"/t/{tag}/lost", "after-backup")
    put(mgmt, cluster, f"/t/{tag}/changed", "new-value")
    before_writers, before_paused = writers(mgmt, cluster), hc(mgmt, cluster)["spec"].get("pausedUntil")

    report = etcd_restore(restore_params(access, bucket, prefix, cluster, tmp_path))
    assert report.status == "succeeded", report.error + "\n" + report.to_markdown()
    assert read_prefix(mgmt, cluster, f"/t/{tag}/", "etcd-0") == {f"/t/{tag}/kept": "before-backup",
                                                                 f"/t/{tag}/changed": "old-value"}
    assert writers(mgmt, cluster) == before_writers
    assert hc(mgmt, cluster)["spec"].get("pausedUntil") == before_paused
    assert float(report.figures["API downtime"].split()[0]) > 0
    assert "revisions of writes" in report.figures["data lost"]
    assert any("same keyspace hash" in line for line in report.verification)
    assert any("approved by alice" in a for a in report.approvals)
    no_leftovers(mgmt, cluster)


def test_restore_of_a_highly_available_etcd_every_member_agrees(
        prefect_server: Path, rb_world: World, mgmt: client.ApiClient, access: ClusterAccess, s3: Any, bucket: str,
        tmp_path: Path) -> None:
    name = f"ha{uuid.uuid4().hex[:5]}"
    rb_world.create_hosted_cluster(name, availability="HighlyAvailable")
    cluster = f"clusters/{name}"
    wait_for(lambda: any(c["type"] == "Available" and c["status"] == "True"
                         for c in (hc(mgmt, cluster).get("status") or {}).get("conditions") or []),
             f"HA cluster {name} available", timeout=180)
    prefix = f"r-{uuid.uuid4().hex[:6]}"
    put(mgmt, cluster, "/t/ha/kept", "v1", pod="etcd-1")
    backup(access, bucket, prefix, cluster)
    put(mgmt, cluster, "/t/ha/lost", "v2", pod="etcd-2")
    before_writers = writers(mgmt, cluster)

    report = etcd_restore(restore_params(access, bucket, prefix, cluster, tmp_path))
    assert report.status == "succeeded", report.to_markdown()
    for pod in ("etcd-0", "etcd-1", "etcd-2"):
        assert read_prefix(mgmt, cluster, "/t/ha/", pod) == {"/t/ha/kept": "v1"}, pod
    assert sum("same keyspace hash" in line for line in report.verification) == 3
    assert any("data-etcd-0, data-etcd-1, data-etcd-2" in c for c in report.changes)
    assert writers(mgmt, cluster) == before_writers
    no_leftovers(mgmt, cluster)
    client.CustomObjectsApi(mgmt).delete_namespaced_custom_object(*HS, "clusters", "hostedclusters", name)
