"""etcd-restore into a new hosted cluster end to end on the simulated world: a backup taken by
etcd-backup, the HostedCluster re-created with a presigned restoreSnapshotURL, real etcd members
restoring it in their etcd-init containers, and the keys checked in the members' pods."""

from __future__ import annotations

import json
import signal
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
from tests.runbooks.children import latest_report, start_flow
from flows.etcd_restore_new_cluster import RUNBOOK

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


# -- a shared backup, targets of the tests' own ---------------------------------------------------------

@pytest.fixture(scope="module")
def source(prefect_server: Path, rb_world: World, mgmt: client.ApiClient, access: ClusterAccess,
           bucket: str) -> tuple[str, str]:
    """A running cluster and a backup of it: NAMESPACE/NAME, prefix."""
    name = f"s{uuid.uuid4().hex[:6]}"
    rb_world.create_hosted_cluster(name)
    ref = HostedClusterRef("clusters", name)
    wait_for(lambda: ((_hc(mgmt, ref) or {}).get("status") or {}).get("conditions") and any(
        c["type"] == "Available" and c["status"] == "True" for c in _hc(mgmt, ref)["status"]["conditions"]),
        f"{ref} available", timeout=90)
    _put(mgmt, ref, "/hcp-test/source", "in-the-backup")
    prefix = f"t-{uuid.uuid4().hex[:6]}"
    _backup(access, bucket, str(ref), prefix)
    return str(ref), prefix


@pytest.fixture
def removed_afterwards(mgmt: client.ApiClient) -> Iterator[list[HostedClusterRef]]:
    """HostedClusters a test created: deleted at the end (their etcd members are processes)."""
    refs: list[HostedClusterRef] = []
    yield refs
    for ref in refs:
        try:
            client.CustomObjectsApi(mgmt).delete_namespaced_custom_object(*HS, ref.namespace, "hostedclusters", ref.name)
        except client.ApiException:
            pass


def _namespace_with_secrets(mgmt: client.ApiClient, source_name: str, *, key: bool = False) -> str:
    """A new namespace with the pull secret and SSH key the source's HostedCluster names (and, with
    `key`, its encryption key secret holding another AES key than the backup's)."""
    ns = f"r{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(mgmt)
    core.create_namespace({"metadata": {"name": ns}})
    for suffix in ("pull-secret", "ssh-key"):
        s = core.read_namespaced_secret(f"{source_name}-{suffix}", "clusters")
        core.create_namespaced_secret(ns, {"metadata": {"name": s.metadata.name}, "type": s.type, "data": s.data})
    if key:
        core.create_namespaced_secret(ns, {"metadata": {"name": f"{source_name}-etcd-encryption-key"},
                                           "data": {"key": "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktMDA="}})
    return ns


def _manifest_with_new_identity(s3: Any, bucket: str, prefix: str, **spec: Any) -> str:
    """The backup's HostedCluster and NodePools as a user would hand them in (`--render` gives a new
    clusterID and infraID), as YAML-compatible JSON text."""
    key = next(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
               if o["Key"].endswith("cluster-objects.json"))
    doc = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    hc = doc["items"][0]
    hc["spec"].update(clusterID=str(uuid.uuid4()), infraID=f"{hc['metadata']['name']}-{uuid.uuid4().hex[:5]}", **spec)
    return json.dumps(doc)


def _versions(mgmt: client.ApiClient, namespace: str) -> dict[str, str]:
    custom, core = client.CustomObjectsApi(mgmt), client.CoreV1Api(mgmt)
    out = {f"hc/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
           for o in custom.list_namespaced_custom_object(*HS, namespace, "hostedclusters")["items"]}
    out.update({f"np/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
                for o in custom.list_namespaced_custom_object(*HS, namespace, "nodepools")["items"]})
    out.update({f"secret/{s.metadata.name}": s.metadata.resource_version
                for s in core.list_namespaced_secret(namespace).items})
    return out


def _refused(state: Any, *problems: str) -> str:
    assert state.is_failed()
    with pytest.raises(Exception) as info:
        state.result()
    text = str(info.value)
    for problem in problems:
        assert problem in text, text
    return text


# -- refusals: nothing is created ------------------------------------------------------------------------

def test_refusals_before_anything_is_created(prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess,
                                             s3: Any, bucket: str, source: tuple[str, str]) -> None:
    cluster, prefix = source
    name = HostedClusterRef.parse(cluster).name
    before = _versions(mgmt, "clusters")
    # the HostedCluster is still there: restoreSnapshotURL can only be set on a new one
    _refused(etcd_restore_new_cluster(params(access, bucket, source_cluster=cluster, prefix=prefix), return_state=True),
             f"HostedCluster {cluster} already exists", "nothing was created")
    # a copy beside it would share its clusterID and infraID
    _refused(etcd_restore_new_cluster(params(access, bucket, source_cluster=cluster, prefix=prefix, name=f"{name}-copy"),
                                      return_state=True), "the same clusterID", "and infraID")
    # no such namespace
    _refused(etcd_restore_new_cluster(params(access, bucket, source_cluster=cluster, prefix=prefix,
                                             namespace="no-such-ns"), return_state=True),
             "namespace no-such-ns does not exist", "oc create namespace no-such-ns")
    assert _versions(mgmt, "clusters") == before
    # a namespace whose encryption key secret holds another key; one without the pull secret
    manifest = _manifest_with_new_identity(s3, bucket, prefix)
    other_key = _namespace_with_secrets(mgmt, name, key=True)
    _refused(etcd_restore_new_cluster(params(access, bucket, source_cluster=cluster, prefix=prefix, namespace=other_key,
                                             hosted_cluster_manifest_content=manifest), return_state=True),
             "holds another AES key")
    empty = f"r{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(mgmt).create_namespace({"metadata": {"name": empty}})
    _refused(etcd_restore_new_cluster(params(access, bucket, source_cluster=cluster, prefix=prefix, namespace=empty,
                                             hosted_cluster_manifest_content=manifest), return_state=True),
             f"secret {empty}/{name}-pull-secret (pull secret (spec.pullSecret)) does not exist")
    for ns in (other_key, empty):
        assert _labelled(mgmt, ns, "") == [] and set(_versions(mgmt, ns)) <= {
            f"secret/{name}-pull-secret", f"secret/{name}-ssh-key", f"secret/{name}-etcd-encryption-key"}


def test_a_corrupt_or_wrong_snapshot_is_caught_before_anything_is_created(
        prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess, s3: Any, bucket: str,
        source: tuple[str, str]) -> None:
    cluster, good_prefix = source
    prefix = f"t-{uuid.uuid4().hex[:6]}"
    _backup(access, bucket, cluster, prefix)
    snapshot = next(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
                    if o["Key"].endswith("etcd-snapshot.db"))
    other = next(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=good_prefix)["Contents"]
                 if o["Key"].endswith("etcd-snapshot.db"))
    manifest = _manifest_with_new_identity(s3, bucket, prefix)
    ns = _namespace_with_secrets(mgmt, HostedClusterRef.parse(cluster).name)
    body = s3.get_object(Bucket=bucket, Key=snapshot)["Body"].read()
    for wrong in (s3.get_object(Bucket=bucket, Key=other)["Body"].read(),  # another backup's snapshot
                  body[:4096] + bytes(b ^ 0xFF for b in body[4096:8192]) + body[8192:]):  # damaged in place
        s3.put_object(Bucket=bucket, Key=snapshot, Body=wrong)
        _refused(etcd_restore_new_cluster(params(access, bucket, source_cluster=cluster, prefix=prefix, namespace=ns,
                                                 hosted_cluster_manifest_content=manifest), return_state=True),
                 "step sha256", "Nothing was changed")
        assert set(_versions(mgmt, ns)) == {f"secret/{HostedClusterRef.parse(cluster).name}-{s}"
                                            for s in ("pull-secret", "ssh-key")}


def test_an_old_backup_without_the_hosted_cluster_needs_a_manifest(
        prefect_server: Path, access: ClusterAccess, s3: Any, bucket: str, source: tuple[str, str]) -> None:
    from hcp.backup_manifest import load
    cluster, _ = source
    prefix = f"t-{uuid.uuid4().hex[:6]}"
    _backup(access, bucket, cluster, prefix)
    key = next(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
               if o["Key"].endswith("manifest.json"))
    manifest = load(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert manifest.cluster_objects_key is not None
    old = manifest.model_copy(update={"cluster_objects_key": None, "object_keys": [
        k for k in manifest.object_keys if k != manifest.cluster_objects_key]})
    s3.put_object(Bucket=bucket, Key=key, Body=old.to_json())
    s3.delete_object(Bucket=bucket, Key=manifest.cluster_objects_key)
    _refused(etcd_restore_new_cluster(params(access, bucket, source_cluster=cluster, prefix=prefix, name="x",
                                             namespace="clusters"), return_state=True),
             "holds no copy of the HostedCluster", "hosted_cluster_manifest")


def test_dry_run_rejection_and_timeout_create_nothing(prefect_server: Path, mgmt: client.ApiClient,
                                                       access: ClusterAccess, s3: Any, bucket: str,
                                                       source: tuple[str, str]) -> None:
    import threading

    from prefect.flow_runs import resume_flow_run
    from tests.runbooks.test_etcd_backup import _paused_run_of
    cluster, prefix = source
    ns = _namespace_with_secrets(mgmt, HostedClusterRef.parse(cluster).name)
    manifest = _manifest_with_new_identity(s3, bucket, prefix)
    before = _versions(mgmt, ns)
    kw = dict(source_cluster=cluster, prefix=prefix, namespace=ns, hosted_cluster_manifest_content=manifest)
    plan = etcd_restore_new_cluster(params(access, bucket, dry_run=True, **kw))
    assert plan.status == "planned"
    steps = [s.step for s in plan.plan]
    assert steps.index("approval") < steps.index("restore the etcd encryption key") < \
        steps.index("create the HostedCluster with one restoreSnapshotURL") < steps.index("create the NodePools")
    assert any("aws s3 presign s3://" in s.command for s in plan.plan)
    # timeout: nobody answers
    timed_out = etcd_restore_new_cluster(params(access, bucket, approval={"timeout_seconds": 5,
                                                                          "poll_interval_seconds": 1}, **kw),
                                         return_state=True)
    assert timed_out.is_failed()
    # rejected
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.setdefault("state", etcd_restore_new_cluster(
        params(access, bucket, approval={"timeout_seconds": 120, "poll_interval_seconds": 1}, **kw),
        return_state=True)), daemon=True)
    thread.start()
    run = _paused_run_of(ns)
    resume_flow_run(run.id, run_input={"approved": False, "approver": "carol", "comment": "not now"})
    thread.join(120)
    _refused(out["state"], "rejected by carol")
    assert _versions(mgmt, ns) == before


# -- failures, kills, HA ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kill_after", ["secret", "nodepool"])
def test_a_run_killed_after_a_step_is_continued_by_a_rerun(
        prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess, s3: Any, bucket: str,
        source: tuple[str, str], removed_afterwards: list[HostedClusterRef], kill_after: str) -> None:
    cluster, prefix = source
    name = HostedClusterRef.parse(cluster).name
    ns = _namespace_with_secrets(mgmt, name)
    op = new_operation_id()
    kw = dict(source_cluster=cluster, prefix=prefix, namespace=ns, operation_id=op,
              hosted_cluster_manifest_content=_manifest_with_new_identity(s3, bucket, prefix))
    child = start_flow("flows.etcd_restore_new_cluster", "etcd_restore_new_cluster", params(access, bucket, **kw), prefect_server)
    removed_afterwards.append(HostedClusterRef(ns, name))
    wait_for(lambda: child.poll() is not None or any(o.startswith(kill_after) for o in _labelled(mgmt, ns, op)),
             f"the child run to create its {kill_after}", timeout=120)
    child.send_signal(signal.SIGKILL)
    child.wait(60)
    # a second approval would time out: the re-run must not ask (its objects say it was approved)
    report = etcd_restore_new_cluster(params(access, bucket, approval={"timeout_seconds": 5,
                                                                       "poll_interval_seconds": 1}, **kw))
    assert report.status == "succeeded", report.error
    assert not report.approvals and any("continuing operation" in v for v in report.verification)
    assert _labelled(mgmt, ns, op) == sorted([f"hostedcluster/{name}", f"nodepool/{name}",
                                              f"secret/{name}-etcd-encryption-key"])
    ref = HostedClusterRef(ns, name)
    hc = _hc(mgmt, ref)
    assert hc is not None and len(hc["spec"]["etcd"]["managed"]["storage"]["restoreSnapshotURL"]) == 1
    assert _get(mgmt, ref, "etcd-0", "/hcp-test/source") == "in-the-backup"


def _fails_after_approval(world: World, namespace: str, p: EtcdRestoreNewClusterParams) -> Any:
    import threading

    from prefect.flow_runs import resume_flow_run
    from tests.runbooks.test_etcd_backup import _paused_run_of
    assert world.aws is not None and world.aws.faults is not None
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.setdefault("state", etcd_restore_new_cluster(p, return_state=True)),
                              daemon=True)
    thread.start()
    run = _paused_run_of(namespace)
    world.aws.faults.fail_next(1_000_000, 500, method="GET", path=r"etcd-snapshot\.db")
    try:
        resume_flow_run(run.id, run_input={"approved": True, "approver": "alice"})
        thread.join(300)
    finally:
        world.aws.faults.clear()
    return out["state"]


def test_a_failure_after_creation_removes_it_and_the_same_operation_then_starts_over(
        prefect_server: Path, rb_world: World, mgmt: client.ApiClient, access: ClusterAccess, s3: Any, bucket: str,
        source: tuple[str, str], removed_afterwards: list[HostedClusterRef]) -> None:
    cluster, prefix = source
    name = HostedClusterRef.parse(cluster).name
    ns = _namespace_with_secrets(mgmt, name)
    ref = HostedClusterRef(ns, name)
    removed_afterwards.append(ref)
    op = new_operation_id()
    kw = dict(source_cluster=cluster, prefix=prefix, namespace=ns, operation_id=op,
              hosted_cluster_manifest_content=_manifest_with_new_identity(s3, bucket, prefix))
    # S3 fails the snapshot's download once the run is approved (it fetched it already): etcd-init
    # cannot restore, the cluster never becomes available, the wait fails after the objects were created
    failed = _fails_after_approval(rb_world, ns, params(access, bucket, timeout_seconds=8, approval={
        "timeout_seconds": 120, "poll_interval_seconds": 1}, **kw))
    _refused(failed, f"HostedCluster {ref} Available and EtcdAvailable", "logs etcd-0 -c etcd-init")
    text = latest_report(RUNBOOK, ref)
    assert "at failure: HostedCluster Available=False" in text and f"at failure: pod {ns}-{name}/etcd-0:" in text
    assert "etcd-0 etcd-init: <?xml" in text or "etcd-0 etcd-init: <Error>" in text, text  # S3's answer, from its log
    assert f"deleted HostedCluster {ref}" in text and f"deleted secret {ns}/{name}-etcd-encryption-key" in text
    assert "state now: nothing this operation created remains" in text
    assert _labelled(mgmt, ns, op) == [] and _hc(mgmt, ref) is None
    # kept for inspection, then removed with `remove`
    op2 = new_operation_id()
    kept = _fails_after_approval(rb_world, ns, params(access, bucket, timeout_seconds=8, keep_on_failure=True, approval={
        "timeout_seconds": 120, "poll_interval_seconds": 1}, **{**kw, "operation_id": op2}))
    assert kept.is_failed()
    assert "kept for inspection" in latest_report(RUNBOOK, ref) and "--remove" in latest_report(RUNBOOK, ref)
    assert len(_labelled(mgmt, ns, op2)) == 3
    removal = etcd_restore_new_cluster(params(access, bucket, remove=True, **{**kw, "operation_id": op2}))
    assert removal.status == "succeeded", removal.error
    assert any(c.startswith("deleted HostedCluster") for c in removal.changes)
    assert _labelled(mgmt, ns, op2) == [] and _hc(mgmt, ref) is None
    # the first operation again: a fresh start, a fresh URL, the backup's keys
    report = etcd_restore_new_cluster(params(access, bucket, **kw))
    assert report.status == "succeeded", report.error
    assert _get(mgmt, ref, "etcd-0", "/hcp-test/source") == "in-the-backup"


def test_ha_restore_from_a_manifest_file_under_another_name_members_agree(
        prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess, s3: Any, bucket: str,
        source: tuple[str, str], removed_afterwards: list[HostedClusterRef], tmp_path: Path) -> None:
    cluster, prefix = source
    ns = _namespace_with_secrets(mgmt, HostedClusterRef.parse(cluster).name)
    ref = HostedClusterRef(ns, "ha-restored")
    removed_afterwards.append(ref)
    manifest = tmp_path / "hostedcluster.yaml"
    manifest.write_text(_manifest_with_new_identity(s3, bucket, prefix, controllerAvailabilityPolicy="HighlyAvailable"))
    report = etcd_restore_new_cluster(params(access, bucket, source_cluster=cluster, prefix=prefix, namespace=ns,
                                             name=ref.name, hosted_cluster_manifest=str(manifest), timeout_seconds=240))
    assert report.status == "succeeded", report.error
    agreeing = [v for v in report.verification if "same keyspace hash" in v]
    assert sorted(v.split(":")[0] for v in agreeing) == ["etcd-0", "etcd-1", "etcd-2"], report.verification
    for pod in ("etcd-0", "etcd-1", "etcd-2"):
        assert _get(mgmt, ref, pod, "/hcp-test/source") == "in-the-backup"
    pools = client.CustomObjectsApi(mgmt).list_namespaced_custom_object(*HS, ns, "nodepools")["items"]
    assert [(p["metadata"]["name"], p["spec"]["clusterName"]) for p in pools] == [("ha-restored", "ha-restored")]
    assert any("is created as ha-restored" in v for v in report.verification)
