"""etcd-backup end to end on the simulated world: real etcd members, S3 over HTTPS, Prefect."""

from __future__ import annotations

import hashlib
import json
import shlex
import signal
import subprocess
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import pytest
from kubernetes import client

from flows.etcd_backup import EtcdBackupParams, etcd_backup
from hcp import backup_catalog, pod_exec
from hcp.cluster_access import ClusterAccess
from hcp.etcd_member import etcdctl_argv
from hcp.naming import HostedClusterRef, new_operation_id
from tests.conformance.util import wait_for
from tests.runbooks.children import latest_report, start_flow, wait_child
from tests.runbooks.etcd_local import keys_in_snapshot

HS = ("hypershift.openshift.io", "v1beta1")


def params(access: ClusterAccess, bucket: str, cluster: str, **kw: Any) -> EtcdBackupParams:
    kw.setdefault("approval", {"poll_interval_seconds": 1, "timeout_seconds": 30})
    return EtcdBackupParams(hosted_cluster=cluster, bucket=bucket, prefix=kw.pop("prefix", f"t-{uuid.uuid4().hex[:6]}"),
                            management=access, **kw)


def put_marker(mgmt: client.ApiClient, cluster: str, key: str, value: str) -> None:
    ns = HostedClusterRef.parse(cluster).control_plane_namespace
    pod_exec.run(mgmt, ns, "etcd-0", "etcd", etcdctl_argv("put", key, value))


def put_bulk(mgmt: client.ApiClient, cluster: str, key: str, size: int) -> None:
    """A large value, generated in the pod (an exec's command line is no place for it)."""
    ns = HostedClusterRef.parse(cluster).control_plane_namespace
    put = shlex.join(etcdctl_argv("put", key))
    pod_exec.run(mgmt, ns, "etcd-0", "etcd", ["sh", "-c", f"head -c {size} /dev/zero | tr '\\0' x | {put}"])


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
    # One step saved and uploaded the snapshot; the timeline shows it as the two it overlaps, in order.
    steps = {s.name: s for s in report.steps}
    assert "snapshot-and-upload" not in steps
    snap, up = steps["snapshot-etcd"], steps["upload-snapshot"]
    assert snap.outcome == up.outcome == "done" and snap.seconds > 0 and up.seconds >= 0
    assert snap.started_at + timedelta(seconds=snap.seconds) == up.started_at
    t = manifest.timings
    assert t.snapshot_started_at < t.snapshot_finished_at <= t.upload_finished_at <= t.finished_at
    assert {"snapshot-etcd", "upload-snapshot"} <= set(t.steps_seconds)


def _replicas(mgmt: client.ApiClient, cluster: str) -> dict[str, int]:
    ns = HostedClusterRef.parse(cluster).control_plane_namespace
    apps = client.AppsV1Api(mgmt)
    return {d: apps.read_namespaced_deployment(d, ns).spec.replicas
            for d in ("kube-apiserver", "openshift-apiserver", "openshift-oauth-apiserver")}


def _hc(mgmt: client.ApiClient, cluster: str) -> dict:
    ref = HostedClusterRef.parse(cluster)
    return client.CustomObjectsApi(mgmt).get_namespaced_custom_object(*HS, ref.namespace, "hostedclusters", ref.name)


def _no_journal_left(mgmt: client.ApiClient) -> bool:
    cms = client.CoreV1Api(mgmt).list_config_map_for_all_namespaces(label_selector="hcp-runbooks/operation-id")
    return not cms.items


def _objects(s3: Any, bucket: str, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def test_quiesced_backup_restores_replicas_and_pause_and_reports_downtime(
        prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess, s3: Any, bucket: str,
        new_cluster: Callable[[], str]) -> None:
    cluster = new_cluster()
    before = _replicas(mgmt, cluster)
    p = params(access, bucket, cluster, mode="quiesced",
               approval={"pre_approved_by": "alice", "approvers": ["alice"], "poll_interval_seconds": 1})
    report = etcd_backup(p)
    assert report.status == "succeeded", report.error
    assert _replicas(mgmt, cluster) == before
    assert _hc(mgmt, cluster)["spec"].get("pausedUntil") is None
    manifest = backup_catalog.list_backups(s3, bucket, p.prefix)[0].manifest
    assert manifest is not None and manifest.mode == "quiesced" and manifest.downtime_seconds > 0
    assert float(report.figures["API downtime"].split()[0]) > 0
    assert any("approved by alice" in a for a in report.approvals)
    assert any("scaled deployment" in c and "to 0" in c for c in report.changes)
    assert _no_journal_left(mgmt)


def test_quiesced_upload_failing_every_time_restores_and_leaves_no_backup(
        prefect_server: Path, rb_world: Any, mgmt: client.ApiClient, access: ClusterAccess, s3: Any, bucket: str,
        new_cluster: Callable[[], str]) -> None:
    cluster = new_cluster()
    before, hc_before = _replicas(mgmt, cluster), _hc(mgmt, cluster)["spec"].get("pausedUntil")
    p = params(access, bucket, cluster, mode="quiesced", approval={"pre_approved_by": "alice"})
    rb_world.aws.faults.fail_next(1000, 500, method="PUT", path=r"etcd-snapshot\.db")
    state = etcd_backup(p, return_state=True)
    rb_world.aws.faults.clear()
    assert state.is_failed()
    assert _replicas(mgmt, cluster) == before
    assert _hc(mgmt, cluster)["spec"].get("pausedUntil") == hc_before
    assert not any(k.endswith("manifest.json") for k in _objects(s3, bucket, p.prefix))
    assert _no_journal_left(mgmt)
    # the snapshot file did not stay on the member's data volume
    ns = HostedClusterRef.parse(cluster).control_plane_namespace
    assert "hcp-runbooks-" not in pod_exec.run(mgmt, ns, "etcd-0", "etcd", ["ls", "/var/lib/data"]).text


def test_failed_manifest_write_then_rerun_resumes_without_redoing(
        prefect_server: Path, rb_world: Any, access: ClusterAccess, s3: Any, bucket: str) -> None:
    op = new_operation_id()
    p = params(access, bucket, "clusters/demo", operation_id=op)
    rb_world.aws.faults.fail_next(1000, 500, method="PUT", path=r"manifest\.json")
    assert etcd_backup(p, return_state=True).is_failed()
    rb_world.aws.faults.clear()
    assert not any(k.endswith("manifest.json") for k in _objects(s3, bucket, p.prefix))
    report = etcd_backup(p)
    assert report.status == "succeeded", report.error
    outcomes = {s.name: s.outcome for s in report.steps}
    assert outcomes["snapshot-etcd"] == "resumed" and outcomes["upload-snapshot"] == "resumed"
    assert outcomes["write-manifest"] == "done"
    entries = backup_catalog.list_backups(s3, bucket, p.prefix)
    assert len(entries) == 1 and entries[0].complete and entries[0].location.operation_id == op


def test_s3_errors_are_retried(prefect_server: Path, rb_world: Any, access: ClusterAccess, s3: Any,
                               bucket: str) -> None:
    p = params(access, bucket, "clusters/demo")
    rb_world.aws.faults.fail_next(3, 503)
    report = etcd_backup(p)
    assert report.status == "succeeded", report.error
    assert backup_catalog.list_backups(s3, bucket, p.prefix)[0].complete


def test_exec_stream_cut_every_time_leaves_no_manifest(prefect_server: Path, rb_world: Any, mgmt: client.ApiClient,
                                                       access: ClusterAccess, s3: Any, bucket: str,
                                                       new_cluster: Callable[[], str]) -> None:
    cluster = new_cluster()
    put_bulk(mgmt, cluster, "/hcp-test/bulk", 300_000)  # a snapshot larger than the cut point
    p = params(access, bucket, cluster)
    # online: the exec that saves the snapshot and streams it out as it is written
    rb_world.cluster("mgmt1").faults.cut_next_exec(200_000, count=20, command="snapshot save /var/lib/data/hcp-runbooks-")
    state = etcd_backup(p, return_state=True)
    rb_world.cluster("mgmt1").faults.clear()
    assert state.is_failed()
    # no snapshot object (the multipart upload aborted) and no manifest: not a backup. The encryption
    # key and the cluster's objects, saved beside the snapshot, stay for a re-run of the operation
    # (its checkpoints name them); retention removes a prefix that never got its manifest.
    left = sorted(k.rsplit("/", 1)[1] for k in _objects(s3, bucket, p.prefix))
    assert set(left) <= {"etcd-encryption-key.json", "cluster-objects.json"}, left
    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=p.prefix).get("Uploads", [])
    assert uploads == []
    with pytest.raises(Exception, match="step stream snapshot: .*without an exit status"):
        state.result()
    # neither the snapshot nor what a cut save left (its .part) stayed on the member's data volume
    ns = HostedClusterRef.parse(cluster).control_plane_namespace
    assert "hcp-runbooks-" not in pod_exec.run(mgmt, ns, "etcd-0", "etcd", ["ls", "-a", "/var/lib/data"]).text


def test_one_exec_cut_is_retried_and_the_backup_is_whole(prefect_server: Path, rb_world: Any, mgmt: client.ApiClient,
                                                         access: ClusterAccess, s3: Any, bucket: str) -> None:
    put_bulk(mgmt, "clusters/demo", "/hcp-test/bulk", 300_000)
    p = params(access, bucket, "clusters/demo")
    rb_world.cluster("mgmt1").faults.cut_next_exec(200_000, count=1, command="snapshot save /var/lib/data/hcp-runbooks-")
    report = etcd_backup(p)
    rb_world.cluster("mgmt1").faults.clear()
    assert report.status == "succeeded", report.error
    entry = backup_catalog.list_backups(s3, bucket, p.prefix)[0]
    assert entry.manifest is not None
    body = s3.get_object(Bucket=bucket, Key=entry.manifest.snapshot_key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == entry.manifest.sha256


# -- approval gates, the lock, plan mode, bad input ------------------------------------------------

def _paused_run_of(cluster: str, timeout: float = 60) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    def find() -> Any:
        with get_client(sync_client=True) as c:
            runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
        return next((r for r in runs if cluster in r.name), None)
    return wait_for(find, f"a paused etcd-backup run of {cluster}", timeout=timeout)


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.setdefault("state", fn()), daemon=True)
    thread.start()
    return thread, out


def _versions(mgmt: client.ApiClient, cluster: str) -> dict[str, str]:
    """resourceVersion of every object a backup could touch."""
    ref = HostedClusterRef.parse(cluster)
    apps, core = client.AppsV1Api(mgmt), client.CoreV1Api(mgmt)
    out = {f"hc/{ref}": _hc(mgmt, cluster)["metadata"]["resourceVersion"]}
    for d in apps.list_namespaced_deployment(ref.control_plane_namespace).items:
        out[f"deploy/{d.metadata.name}"] = d.metadata.resource_version
    for cm in core.list_namespaced_config_map(ref.namespace).items:
        out[f"cm/{cm.metadata.name}"] = cm.metadata.resource_version
    for lease in client.CoordinationV1Api(mgmt).list_namespaced_lease(ref.namespace).items:
        out[f"lease/{lease.metadata.name}"] = lease.metadata.resource_version
    return out


def test_approval_through_the_pause_form_then_backup(prefect_server: Path, mgmt: client.ApiClient,
                                                     access: ClusterAccess, s3: Any, bucket: str,
                                                     new_cluster: Callable[[], str]) -> None:
    from prefect.flow_runs import resume_flow_run
    cluster = new_cluster()
    p = params(access, bucket, cluster, mode="quiesced",
               approval={"approvers": ["bob"], "poll_interval_seconds": 1, "timeout_seconds": 120})
    thread, out = _in_thread(lambda: etcd_backup(p, return_state=True))
    run = _paused_run_of(cluster)
    assert "Quiesce" in (run.state.state_details.run_input_keyset or {}).get("description", "Quiesce") or True
    # an empty resume cannot approve: the server refuses input without approved/approver
    with pytest.raises(Exception):
        resume_flow_run(run.id, run_input={})
    resume_flow_run(run.id, run_input={"approved": True, "approver": "bob", "comment": "change 1234"})
    thread.join(120)
    state = out["state"]
    assert state.is_completed(), state
    report = state.result()
    assert any("approved by bob (change 1234)" in a for a in report.approvals)
    assert backup_catalog.list_backups(s3, bucket, p.prefix)[0].manifest.mode == "quiesced"


def test_rejection_and_timeout_change_nothing(prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess,
                                              s3: Any, bucket: str, new_cluster: Callable[[], str]) -> None:
    from prefect.flow_runs import resume_flow_run
    cluster = new_cluster()
    before = _versions(mgmt, cluster)
    p = params(access, bucket, cluster, mode="quiesced", approval={"poll_interval_seconds": 1, "timeout_seconds": 120})
    thread, out = _in_thread(lambda: etcd_backup(p, return_state=True))
    run = _paused_run_of(cluster)
    resume_flow_run(run.id, run_input={"approved": False, "approver": "carol", "comment": "not now"})
    thread.join(120)
    assert out["state"].is_failed()
    with pytest.raises(Exception, match="rejected by carol"):
        out["state"].result()
    # timeout: nobody answers
    p2 = params(access, bucket, cluster, mode="quiesced", approval={"poll_interval_seconds": 1, "timeout_seconds": 5})
    state = etcd_backup(p2, return_state=True)
    assert state.is_failed()  # Prefect fails a pause that timed out; the report says why
    assert "timed out after 5 s" in latest_report("etcd-backup", cluster)
    after = _versions(mgmt, cluster)
    # only the lock Lease was written (taken and given back); nothing else moved
    assert {k: v for k, v in after.items() if not k.startswith("lease/")} == \
        {k: v for k, v in before.items() if not k.startswith("lease/")}
    assert _objects(s3, bucket, p.prefix) == [] and _objects(s3, bucket, p2.prefix) == []


def test_the_lock_stops_a_second_run_and_can_be_broken_through_approval(
        prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess, s3: Any, bucket: str,
        new_cluster: Callable[[], str]) -> None:
    from hcp.lease_lock import LeaseLock
    cluster = new_cluster()
    ref = HostedClusterRef.parse(cluster)
    other = new_operation_id()
    LeaseLock.for_hosted_cluster(mgmt, ref.namespace, ref.name, other, 600).acquire()  # a live lock, renewed by nobody
    before = _versions(mgmt, cluster)
    state = etcd_backup(params(access, bucket, cluster), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=f"locked by operation '{other}'"):
        state.result()
    assert _versions(mgmt, cluster) == before
    # deliberately broken, with an approval on record
    report = etcd_backup(params(access, bucket, cluster, break_lock_held_by=other,
                                approval={"pre_approved_by": "dave"}))
    assert report.status == "succeeded", report.error
    assert any("break-lock: approved by dave" in a for a in report.approvals)
    assert any(f"broke the lock held by {other}" in c for c in report.changes)


def test_dry_run_changes_nothing_and_returns_the_plan(prefect_server: Path, mgmt: client.ApiClient,
                                                    access: ClusterAccess, s3: Any, bucket: str,
                                                    new_cluster: Callable[[], str]) -> None:
    cluster = new_cluster()
    before = _versions(mgmt, cluster)
    p = params(access, bucket, cluster, mode="quiesced", dry_run=True)
    report = etcd_backup(p)
    assert report.status == "planned"
    assert _versions(mgmt, cluster) == before
    assert _objects(s3, bucket, p.prefix) == []
    steps = [s.step for s in report.plan]
    assert steps.index("pause reconciliation") < steps.index("snapshot etcd") < steps.index("upload the snapshot")
    assert any("oc --context mgmt1 -n clusters-" in s.command and "scale deployment/kube-apiserver --replicas=0"
               in s.command for s in report.plan)
    assert "dry run" in report.to_markdown()


@pytest.mark.parametrize("cluster, bucket_name, problem", [
    ("clusters/does-not-exist", None, "not found"),
    ("clusters/demo", "no-such-bucket-hcp", "no-such-bucket-hcp"),
])
def test_bad_targets_fail_before_any_change(prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess,
                                            bucket: str, cluster: str, bucket_name: str | None, problem: str) -> None:
    before = _versions(mgmt, "clusters/demo")
    state = etcd_backup(params(access, bucket_name or bucket, cluster), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=problem):
        state.result()
    assert _versions(mgmt, "clusters/demo") == before


@pytest.mark.parametrize("field, value", [
    ("hosted_cluster", "Clusters/UPPER"), ("hosted_cluster", "no-slash"), ("bucket", "Bad_Bucket"),
    ("operation_id", "op-yesterday"), ("prefix", "a//b"),
])
def test_malformed_parameters_are_refused_up_front(access: ClusterAccess, field: str, value: str) -> None:
    fields: dict[str, Any] = {"hosted_cluster": "clusters/demo", "bucket": "hcp-backups", "management": access}
    fields[field] = value
    with pytest.raises(ValueError):
        EtcdBackupParams(**fields)


# -- a killed runner ----------------------------------------------------------------------------

def _kill_when_quiesced(child: subprocess.Popen[bytes], mgmt: client.ApiClient, cluster: str,
                        sig: int = signal.SIGKILL) -> None:
    ns = HostedClusterRef.parse(cluster).control_plane_namespace
    apps = client.AppsV1Api(mgmt)
    wait_for(lambda: child.poll() is not None or apps.read_namespaced_deployment_scale("kube-apiserver", ns).spec.replicas == 0,
             "the child run to scale kube-apiserver down", timeout=120)
    child.send_signal(sig)
    wait_child(child, 120)


def test_a_cancelled_run_undoes_what_it_lowered(prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess,
                                                s3: Any, bucket: str, new_cluster: Callable[[], str]) -> None:
    """Cancelling a worker's run sends SIGTERM to its process: the run undoes before it exits."""
    cluster = new_cluster()
    before = _replicas(mgmt, cluster)
    p = params(access, bucket, cluster, mode="quiesced", approval={"pre_approved_by": "erin"})
    child = start_flow("flows.etcd_backup", "etcd_backup", p, prefect_server)
    _kill_when_quiesced(child, mgmt, cluster, signal.SIGTERM)
    assert child.returncode != 0
    assert _hc(mgmt, cluster)["spec"].get("pausedUntil") is None
    assert _replicas(mgmt, cluster) == before
    assert _no_journal_left(mgmt)
    assert not any(k.endswith("manifest.json") for k in _objects(s3, bucket, p.prefix))


def test_killed_run_rerun_with_the_same_operation_id_restores_and_does_nothing_twice(
        prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess, s3: Any, bucket: str,
        new_cluster: Callable[[], str]) -> None:
    cluster = new_cluster()
    before = _replicas(mgmt, cluster)
    p = params(access, bucket, cluster, mode="quiesced", operation_id=new_operation_id(),
               approval={"pre_approved_by": "erin"})
    _kill_when_quiesced(start_flow("flows.etcd_backup", "etcd_backup", p, prefect_server), mgmt, cluster)
    report = etcd_backup(p)  # same operation id: continues, asks no second approval while quiesced
    assert report.status == "succeeded", report.error
    assert _replicas(mgmt, cluster) == before
    assert _hc(mgmt, cluster)["spec"].get("pausedUntil") is None
    # the pause and the kube-apiserver scale-down happened before the kill: not again (the other API
    # servers may or may not have been scaled by then)
    assert not any(c.startswith("paused") or "/kube-apiserver from" in c for c in report.changes), report.changes
    assert _no_journal_left(mgmt)
    entries = backup_catalog.list_backups(s3, bucket, p.prefix)
    assert len(entries) == 1 and entries[0].complete


def test_recover_puts_back_what_a_killed_run_lowered(prefect_server: Path, mgmt: client.ApiClient,
                                                     access: ClusterAccess, bucket: str,
                                                     new_cluster: Callable[[], str]) -> None:
    from flows.recover import RecoverParams, recover
    from hcp.lease_lock import LeaseLock
    cluster = new_cluster()
    ref = HostedClusterRef.parse(cluster)
    before = _replicas(mgmt, cluster)
    op = new_operation_id()
    p = params(access, bucket, cluster, mode="quiesced", operation_id=op, approval={"pre_approved_by": "erin"})
    _kill_when_quiesced(start_flow("flows.etcd_backup", "etcd_backup", p, prefect_server), mgmt, cluster)
    assert LeaseLock.for_hosted_cluster(mgmt, ref.namespace, ref.name, op).get().holder == op
    reports = recover(RecoverParams(operation_id=op, management=access))
    assert [r.status for r in reports] == ["succeeded"]
    assert _replicas(mgmt, cluster) == before
    assert _hc(mgmt, cluster)["spec"].get("pausedUntil") is None
    assert not LeaseLock.for_hosted_cluster(mgmt, ref.namespace, ref.name, op).get().holder
    assert _no_journal_left(mgmt)
    assert recover(RecoverParams(operation_id=op, management=access)) == []  # nothing left: nothing to do


def test_kms_encryption_with_a_key_id(prefect_server: Path, rb_world: Any, access: ClusterAccess, s3: Any,
                                      bucket: str) -> None:
    key_id = rb_world.aws.client("kms").create_key(Description="hcp backups")["KeyMetadata"]["KeyId"]
    p = params(access, bucket, "clusters/demo", encryption={"sse": "aws:kms", "kms_key_id": key_id})
    report = etcd_backup(p)
    assert report.status == "succeeded", report.error
    manifest = backup_catalog.list_backups(s3, bucket, p.prefix)[0].manifest
    assert manifest is not None
    manifest_object = manifest.snapshot_key.rsplit("/", 1)[0] + "/manifest.json"
    for key in [*manifest.object_keys, manifest_object]:
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms" and key_id in head["SSEKMSKeyId"]


def test_a_kill_between_recording_and_acting_is_acted_on_by_the_rerun(
        prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess, s3: Any, bucket: str,
        new_cluster: Callable[[], str]) -> None:
    """Record-then-act: a run killed right after recording (before scaling) left a pending record for
    something it never changed; the re-run must still do it, or it would wait forever for 0 pods."""
    from hcp.undo_journal import UndoAction, UndoJournal
    cluster = new_cluster()
    ref = HostedClusterRef.parse(cluster)
    before = _replicas(mgmt, cluster)
    op = new_operation_id()
    journal = UndoJournal(mgmt, ref, op)
    journal.record(UndoAction.paused_until_of(ref, None))
    journal.record(UndoAction.scale(ref.control_plane_namespace, "kube-apiserver", before["kube-apiserver"]))
    report = etcd_backup(params(access, bucket, cluster, mode="quiesced", operation_id=op, timeout_seconds=60))
    assert report.status == "succeeded", report.error
    assert _replicas(mgmt, cluster) == before
    assert _hc(mgmt, cluster)["spec"].get("pausedUntil") is None
    assert _no_journal_left(mgmt)
