"""fleet-backup end to end on the simulated world: several hosted clusters backed up concurrently as
etcd-backup subflows, a failing cluster that does not stop the others, and retention."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Sequence
from uuid import UUID

from hcpsim.world import World
from kubernetes import client
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId, \
    FlowRunFilterParentFlowRunId
from prefect.client.schemas.objects import Artifact, FlowRun

from flows.fleet_backup import FleetBackupParams, fleet_backup
from hcp import backup_manifest
from hcp.backup_catalog import BackupEntry, list_backups
from hcp.cluster_access import ClusterAccess
from hcp.naming import BackupLocation, HostedClusterRef, new_operation_id
from tasks.fleet import FleetReport
from tasks.runbook import artifact_key

HS = ("hypershift.openshift.io", "v1beta1")
LABEL = "hcp-runbooks.test/fleet"


def select(mgmt: client.ApiClient, clusters: list[str]) -> str:
    """Label these HostedClusters (and no others) with a fresh value; returns the selector."""
    value = uuid.uuid4().hex[:8]
    custom = client.CustomObjectsApi(mgmt)
    for cluster in clusters:
        ref = HostedClusterRef.parse(cluster)
        custom.patch_namespaced_custom_object(*HS, ref.namespace, "hostedclusters", ref.name,
                                              {"metadata": {"labels": {LABEL: value}}})
    return f"{LABEL}={value}"


def fleet_params(access: ClusterAccess, bucket: str, selector: str, **kw: Any) -> FleetBackupParams:
    kw.setdefault("approval", {"poll_interval_seconds": 1, "timeout_seconds": 30})
    return FleetBackupParams(management=access, bucket=bucket, prefix=kw.pop("prefix", f"f-{uuid.uuid4().hex[:6]}"),
                             label_selector=selector, **kw)


def subflow_runs(flow_run_id: UUID) -> list[FlowRun]:
    with get_client(sync_client=True) as c:
        return c.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))


def artifact(key: str, flow_run_id: UUID) -> Artifact:
    with get_client(sync_client=True) as c:
        found = c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                 flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    assert len(found) == 1, f"artifact {key} of flow run {flow_run_id}: {found}"
    return found[0]


def table(key: str, flow_run_id: UUID) -> list[dict[str, str]]:
    data = artifact(key, flow_run_id).data
    return json.loads(data) if isinstance(data, str) else data  # type: ignore[return-value]


def max_overlap(spans: Sequence[tuple[datetime, datetime]]) -> int:
    """The most of these (start, end) intervals that were open at one instant."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans],
                   key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def complete_by_cluster(entries: list[BackupEntry]) -> dict[str, list[BackupEntry]]:
    out: dict[str, list[BackupEntry]] = {}
    for e in entries:
        if e.complete:
            out.setdefault(str(e.location.hosted_cluster), []).append(e)
    return out


def test_fleet_backs_up_each_selected_cluster_with_bounded_concurrency(
        prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess, s3: Any, bucket: str,
        new_cluster: Callable[[], str]) -> None:
    clusters = sorted(["clusters/demo", new_cluster(), new_cluster()])
    p = fleet_params(access, bucket, select(mgmt, clusters), concurrency=2)
    state = fleet_backup(p, return_state=True)
    assert state.is_completed(), state.message
    report: FleetReport = state.result()
    run_id = state.state_details.flow_run_id
    assert run_id is not None

    assert [c.hosted_cluster for c in report.clusters] == clusters  # only the labelled ones, sorted
    assert [c.status for c in report.clusters] == ["succeeded"] * 3, [c.error for c in report.clusters]
    # Every cluster has a complete backup (manifest written last, all objects present), all under
    # the fleet's operation id, where the report says.
    entries = list_backups(s3, bucket, p.prefix, management_cluster="mgmt1")
    by_cluster = complete_by_cluster(entries)
    assert sorted(by_cluster) == clusters and len(entries) == 3
    for row in report.clusters:
        [entry] = by_cluster[row.hosted_cluster]
        assert entry.location.operation_id == report.operation_id
        assert row.location == entry.location.url
        assert entry.manifest is not None and row.size_bytes == entry.manifest.size_bytes
        assert entry.manifest.mode == "online"

    # Two at a time: the first two ran together, the third only after one of them ended.
    spans = [(c.started_at, c.finished_at) for c in report.clusters]
    assert max_overlap(spans) == 2, spans

    # Each backup is an etcd-backup subflow run of the fleet's run, with its own report artifact.
    subs = [r for r in subflow_runs(run_id) if r.name.startswith("etcd-backup/")]
    assert sorted(str(r.id) for r in subs) == sorted(str(c.flow_run_id) for c in report.clusters)
    assert all(r.state is not None and r.state.is_completed() for r in subs)
    # ... and never more than two at once by the server's clock either (the server's start is when a
    # subflow reached Running, which a loaded machine can delay past the other's end: no lower bound here)
    sub_spans = [(r.start_time, r.end_time) for r in subs if r.start_time and r.end_time]
    assert len(sub_spans) == 3 and max_overlap(sub_spans) <= 2, sub_spans
    for sub in subs:
        ref = HostedClusterRef.parse(sub.name.split("/", 1)[1].split("@")[0])
        assert "succeeded" in str(artifact(artifact_key("etcd-backup", ref.namespace, ref.name, "report"), sub.id).data)

    rows = table(artifact_key("fleet-backup", "mgmt1"), run_id)
    assert [(r["cluster"], r["status"]) for r in rows] == [(c, "succeeded") for c in clusters]
    # Retention ran after the backups with the default policy: tonight's backups are all kept.
    assert report.retention is not None and report.retention.deleted == [] and len(report.retention.kept) == 3
    markdown = str(artifact(artifact_key("fleet-backup", "mgmt1", "report"), run_id).data)
    assert "fleet-backup on mgmt1: succeeded" in markdown and "## Retention" in markdown


def test_a_failing_cluster_does_not_stop_the_others(
        prefect_server: Path, rb_world: World, mgmt: client.ApiClient, access: ClusterAccess, s3: Any, bucket: str,
        new_cluster: Callable[[], str]) -> None:
    broken = new_cluster()
    clusters = sorted(["clusters/demo", broken])
    # Its etcd pods cannot be read (cleared after the test): no healthy member to snapshot.
    rb_world.cluster("mgmt1").faults.fail_next(
        1000, path_contains=f"/namespaces/{HostedClusterRef.parse(broken).control_plane_namespace}/pods/")
    p = fleet_params(access, bucket, select(mgmt, clusters), concurrency=2)
    state = fleet_backup(p, return_state=True)
    assert state.is_failed()
    assert state.message is not None and broken in state.message and "no healthy etcd member" in state.message
    assert "1 of 2 hosted cluster(s) failed" in state.message and "clusters/demo:" not in state.message
    run_id = state.state_details.flow_run_id
    assert run_id is not None

    # demo was backed up anyway.
    by_cluster = complete_by_cluster(list_backups(s3, bucket, p.prefix, management_cluster="mgmt1"))
    assert list(by_cluster) == ["clusters/demo"]
    subs = {r.name.split("@")[0]: r for r in subflow_runs(run_id)}
    assert subs["etcd-backup/clusters/demo"].state.is_completed()  # type: ignore[union-attr]
    assert subs[f"etcd-backup/{broken}"].state.is_failed()  # type: ignore[union-attr]

    # The table and the report were written, and retention ran, before the run failed.
    rows = {r["cluster"]: r for r in table(artifact_key("fleet-backup", "mgmt1"), run_id)}
    assert rows["clusters/demo"]["status"] == "succeeded"
    assert rows[broken]["status"] == "failed" and "no healthy etcd member" in rows[broken]["error"]
    markdown = str(artifact(artifact_key("fleet-backup", "mgmt1", "report"), run_id).data)
    assert "fleet-backup on mgmt1: failed" in markdown and "1 backup prefix(es)" in markdown


def put_backup(s3: Any, bucket: str, prefix: str, cluster: str, when: datetime, *, complete: bool = True) -> str:
    """A backup as etcd-backup leaves it, taken at `when`; without its manifest it is an orphan."""
    location = BackupLocation.new(bucket, prefix, "mgmt1", HostedClusterRef.parse(cluster), new_operation_id(when),
                                  when=when)
    snapshot = b"not really an etcd snapshot"
    snapshot_key = location.key("etcd-snapshot.db")
    s3.put_object(Bucket=bucket, Key=snapshot_key, Body=snapshot)
    if complete:
        manifest = backup_manifest.build(
            location, uid="uid-1", release_image="quay.io/openshift-release-dev/ocp-release:4.16.0-x86_64",
            release_version="4.16.0", member="etcd-0", revision=10, hash=1, total_keys=5, size_bytes=len(snapshot),
            sha256=hashlib.sha256(snapshot).hexdigest(), snapshot_key=snapshot_key, object_keys=[snapshot_key],
            encryption_key_object=None, mode="online", downtime_seconds=0, tool_versions={"hcp-runbooks": "test"},
            timings=backup_manifest.Timings(started_at=when, snapshot_started_at=when, snapshot_finished_at=when,
                                            upload_finished_at=when, finished_at=when))
        s3.put_object(Bucket=bucket, Key=backup_manifest.manifest_key(location), Body=manifest.to_json())
    return location.url


def test_retention_dry_run_lists_what_the_real_run_deletes_and_keeps_each_newest(
        prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess, s3: Any, bucket: str) -> None:
    prefix = f"f-{uuid.uuid4().hex[:6]}"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    gone = f"clusters/gone-{uuid.uuid4().hex[:4]}"  # deleted since: not discovered, its backups still retained
    yesterday = put_backup(s3, bucket, prefix, "clusters/demo", now - timedelta(days=1))
    old = [put_backup(s3, bucket, prefix, "clusters/demo", now - timedelta(days=d)) for d in (5, 10)]
    orphan = put_backup(s3, bucket, prefix, "clusters/demo", now - timedelta(days=3), complete=False)
    gone_newest = put_backup(s3, bucket, prefix, gone, now - timedelta(days=15))
    gone_old = put_backup(s3, bucket, prefix, gone, now - timedelta(days=20))
    expected = sorted([*old, orphan, gone_old])
    # LastModified cannot be set in the simulated S3: the orphan is "old" at any age here.
    policy = {"keep_last": 1, "keep_daily_days": 2, "orphan_min_age_hours": 0}
    selector = select(mgmt, ["clusters/demo"])

    def keys() -> set[str]:
        return {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for o in page.get("Contents", [])}

    before = keys()
    dry = fleet_backup(fleet_params(access, bucket, selector, prefix=prefix, retention=policy, dry_run=True))
    assert [(c.hosted_cluster, c.status) for c in dry.clusters] == [("clusters/demo", "planned")]
    assert dry.retention is not None and sorted(dry.retention.would_delete) == expected
    assert dry.retention.deleted == [] and keys() == before  # nothing written, nothing deleted

    real = fleet_backup(fleet_params(access, bucket, selector, prefix=prefix, retention=policy))
    assert real.retention is not None and not real.retention.errors, real.retention
    assert sorted(real.retention.deleted) == expected and real.retention.would_delete == []
    # Kept: tonight's backup (newest) and yesterday's (daily) of demo; the newest of the deleted
    # cluster, however old.
    remaining = {e.location.url: e for e in list_backups(s3, bucket, prefix, management_cluster="mgmt1")}
    assert sorted(remaining) == sorted([real.clusters[0].location or "", yesterday, gone_newest])
    assert all(e.complete for e in remaining.values())
