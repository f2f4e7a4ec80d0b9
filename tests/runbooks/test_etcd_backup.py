"""etcd-backup end to end on the simulated world: real etcd members, S3 over HTTPS, Prefect."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from kubernetes import client

from flows.etcd_backup import EtcdBackupParams, etcd_backup
from hcp import backup_catalog, pod_exec
from hcp.backup_manifest import load
from hcp.cluster_access import ClusterAccess
from hcp.etcd_member import etcdctl_argv
from hcp.naming import HostedClusterRef, new_operation_id
from tests.runbooks.etcd_local import keys_in_snapshot

HS = ("hypershift.openshift.io", "v1beta1")


def params(access: ClusterAccess, bucket: str, cluster: str, **kw: Any) -> EtcdBackupParams:
    kw.setdefault("approval", {"poll_interval_seconds": 1, "timeout_seconds": 30})
    return EtcdBackupParams(hosted_cluster=cluster, bucket=bucket, prefix=kw.pop("prefix", f"t-{uuid.uuid4().hex[:6]}"),
                            management=access, **kw)


def put_marker(mgmt: client.ApiClient, cluster: str, key: str, value: str) -> None:
    ns = HostedClusterRef.parse(cluster).control_plane_namespace
    pod_exec.run(mgmt, ns, "etcd-0", "etcd", etcdctl_argv("put", key, value))


def test_online_backup_end_to_end(prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess, s3: Any,
                                  bucket: str, tmp_path: Path) -> None:
    cluster = "clusters/demo"
    marker = f"/hcp-test/marker-{uuid.uuid4().hex[:8]}"
    put_marker(mgmt, cluster, marker, "before-the-snapshot")
    p = params(access, bucket, cluster, verify="full")
    report = etcd_backup(p)
    assert report.status == "succeeded", report.error
    entries = backup_catalog.list_backups(s3, bucket, p.prefix)
    assert len(entries) == 1 and entries[0].complete
    manifest = entries[0].manifest
    assert manifest is not None and manifest.mode == "online" and manifest.downtime_seconds == 0
    assert manifest.verification == "full" and manifest.verified_total_keys and manifest.verified_total_keys > 0
    assert manifest.encryption_key_object and manifest.encryption_key_object.endswith("etcd-encryption-key.json")
    # The snapshot in S3 holds the key written before it, restored independently of the product.
    snapshot = tmp_path / "snap.db"
    s3.download_file(bucket, manifest.snapshot_key, str(snapshot))
    assert keys_in_snapshot(snapshot, tmp_path, "/hcp-test/")[marker] == "before-the-snapshot"
    head = s3.head_object(Bucket=bucket, Key=manifest.snapshot_key)
    assert head["ServerSideEncryption"] == "AES256"
    # The snapshot file is gone from the pod.
    ns = HostedClusterRef.parse(cluster).control_plane_namespace
    listing = pod_exec.run(mgmt, ns, "etcd-0", "etcd", ["ls", "/var/lib/data"]).text
    assert "hcp-runbooks-" not in listing
    # The encryption key is saved (the same bytes as the secret), never in the report.
    key_doc = json.loads(s3.get_object(Bucket=bucket, Key=manifest.encryption_key_object)["Body"].read())
    secret = client.CoreV1Api(mgmt).read_namespaced_secret("demo-etcd-encryption-key", "clusters")
    assert key_doc["data"] == secret.data
    assert secret.data["key"] not in report.to_markdown()
    assert "Timeline" in report.to_markdown() and manifest.sha256 in report.to_markdown()
