"""etcd-restore in place, end to end on the simulated world: real etcd members, S3, Prefect."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

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
from tests.runbooks.children import latest_report, run_flow_until_killed

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


def undone(report: str) -> str:
    """The report's "What was undone" section."""
    return report.split("## What was undone", 1)[-1].split("\n## ", 1)[0] if "## What was undone" in report else ""


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
    assert any("downloaded the snapshot" in c and "SHA-256 equal" in c for c in report.changes), report.changes
    assert not any("X-Amz-Signature" in line for line in report.changes + [report.to_markdown()])
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
    # one data pod per member: the members' volumes lie in three zones (the simulator's management
    # cluster is zonal, as HA etcd's required zone anti-affinity spreads them); no pod could mount all three
    assert any("downloaded the snapshot" in c and all(f"etcd-data-etcd-{i}" in c for i in range(3))
               for c in report.changes), report.changes
    assert writers(mgmt, cluster) == before_writers
    no_leftovers(mgmt, cluster)
    client.CustomObjectsApi(mgmt).delete_namespaced_custom_object(*HS, "clusters", "hostedclusters", name)


def versions(mgmt: client.ApiClient, cluster: str) -> dict[str, str]:
    """resourceVersion of everything a restore could touch (the lock Lease aside)."""
    ref = HostedClusterRef.parse(cluster)
    apps, core, ns = client.AppsV1Api(mgmt), client.CoreV1Api(mgmt), _ns(cluster)
    out = {"hc": hc(mgmt, cluster)["metadata"]["resourceVersion"],
           "sts": apps.read_namespaced_stateful_set("etcd", ns).metadata.resource_version}
    out.update({f"deploy/{d.metadata.name}": d.metadata.resource_version for d in apps.list_namespaced_deployment(ns).items})
    out.update({f"pvc/{c.metadata.name}": c.metadata.resource_version
                for c in core.list_namespaced_persistent_volume_claim(ns).items})
    out.update({f"pod/{p.metadata.name}": p.metadata.uid for p in core.list_namespaced_pod(ns, label_selector="app=etcd").items})
    out.update({f"cm/{c.metadata.name}": c.metadata.resource_version for c in core.list_namespaced_config_map(ref.namespace).items})
    return out


@pytest.fixture(scope="module")
def shared_backup(prefect_server: Path, rb_world: World, mgmt: client.ApiClient, access: ClusterAccess,
                  bucket: str) -> Iterator[tuple[str, str, str]]:
    """One cluster and its backup for every test below that leaves the cluster either as it found it
    (refusals, rollbacks) or restored from this same backup: (cluster, prefix, tag), /t/<tag>/kept
    written before the backup. A restore puts the keyspace back to the backup, so each test starts from
    the same data plus its own /t/<tag>/lost (the `backed_up` fixture)."""
    custom = client.CustomObjectsApi(mgmt)
    name = f"r{uuid.uuid4().hex[:6]}"
    rb_world.create_hosted_cluster(name)
    cluster = f"clusters/{name}"
    try:
        wait_for(lambda: any(c["type"] == "Available" and c["status"] == "True"
                             for c in (hc(mgmt, cluster).get("status") or {}).get("conditions") or []),
                 f"hosted cluster {name} available", timeout=90)
        prefix, tag = f"r-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
        put(mgmt, cluster, f"/t/{tag}/kept", "before-backup")
        backup(access, bucket, prefix, cluster)
        yield cluster, prefix, tag
    finally:
        try:
            custom.delete_namespaced_custom_object(*HS, "clusters", "hostedclusters", name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture
def backed_up(shared_backup: tuple[str, str, str], mgmt: client.ApiClient) -> tuple[str, str, str]:
    """The shared cluster with its backup; /t/<tag>/lost written after it (a restore loses it)."""
    cluster, prefix, tag = shared_backup
    # the previous test may have just brought etcd back: wait until it takes the write
    wait_for(lambda: _put_ok(mgmt, cluster, f"/t/{tag}/lost", "after-backup"), "etcd takes writes", timeout=60)
    return cluster, prefix, tag


def _put_ok(mgmt: client.ApiClient, cluster: str, key: str, value: str) -> bool:
    try:
        put(mgmt, cluster, key, value)
        return True
    except pod_exec.ExecError:
        return False


def test_dry_run_checks_the_snapshot_and_changes_nothing(mgmt: client.ApiClient, access: ClusterAccess, bucket: str,
                                                         backed_up: tuple[str, str, str], tmp_path: Path) -> None:
    cluster, prefix, tag = backed_up
    before = versions(mgmt, cluster)
    report = etcd_restore(restore_params(access, bucket, prefix, cluster, tmp_path, dry_run=True))
    assert report.status == "planned"
    assert any(s.step.startswith("restore into every member") and s.destructive for s in report.plan)
    assert any("snapshot checked before any change" in v for v in report.verification)
    assert versions(mgmt, cluster) == before
    assert f"/t/{tag}/lost" in read_prefix(mgmt, cluster, f"/t/{tag}/", "etcd-0")


def test_a_damaged_or_foreign_snapshot_is_refused_before_any_change(
        mgmt: client.ApiClient, access: ClusterAccess, s3: Any, bucket: str, backed_up: tuple[str, str, str],
        new_cluster: Callable[[], str], tmp_path: Path) -> None:
    from hcp import backup_catalog
    cluster, prefix, tag = backed_up
    entry = backup_catalog.list_backups(s3, bucket, prefix)[0]
    assert entry.manifest is not None
    key = entry.manifest.snapshot_key
    good = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(damaged))
    before = versions(mgmt, cluster)
    state = etcd_restore(restore_params(access, bucket, prefix, cluster, tmp_path), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="the manifest says"):  # the runner's check
        state.result()
    # the data pods, started beside the runner's check, are gone again; nothing else was touched
    wait_for(lambda: versions(mgmt, cluster) == before, "every object as before the run", timeout=30)
    no_leftovers(mgmt, cluster)
    s3.put_object(Bucket=bucket, Key=key, Body=good)

    # another cluster's backup, given explicitly, is refused for this one
    other = new_cluster()
    before = versions(mgmt, other)
    state = etcd_restore(restore_params(access, None, prefix, other, tmp_path, source="backup",
                                        backup=entry.location.url), return_state=True)
    with pytest.raises(Exception, match="not of"):
        state.result()
    assert versions(mgmt, other) == before


def test_rejection_destroys_nothing(mgmt: client.ApiClient, access: ClusterAccess, bucket: str,
                                   backed_up: tuple[str, str, str], tmp_path: Path) -> None:
    from prefect.flow_runs import resume_flow_run

    from tests.runbooks.test_etcd_backup import _in_thread, _paused_run_of
    cluster, prefix, tag = backed_up
    before, before_writers = versions(mgmt, cluster), writers(mgmt, cluster)
    p = restore_params(access, bucket, prefix, cluster, tmp_path,
                       approval={"poll_interval_seconds": 1, "timeout_seconds": 120})
    thread, out = _in_thread(lambda: etcd_restore(p, return_state=True))
    run = _paused_run_of(cluster)
    # Waiting for the approval: each member's data pod runs on that member's node, with the verified
    # snapshot already in it; etcd and its writers still run.
    ns = _ns(cluster)
    core = client.CoreV1Api(mgmt)
    nodes = {pod.metadata.name: pod.spec.node_name
             for pod in core.list_namespaced_pod(ns, label_selector="app=etcd").items}
    data_pods = core.list_namespaced_pod(ns, label_selector="app=hcp-runbooks-etcd-data").items
    assert sorted(pod.metadata.labels["hcp-runbooks/etcd-member"] for pod in data_pods) == sorted(nodes)
    for pod in data_pods:
        terms = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
        member_node = nodes[pod.metadata.labels["hcp-runbooks/etcd-member"]]
        assert [f.values for t in terms for f in t.match_fields] == [[member_node]]
        assert pod.spec.node_name == member_node
        # the members' tolerations (HyperShift's control plane isolation taints)
        assert {t.key for t in pod.spec.tolerations or []} >= {"hypershift.openshift.io/control-plane",
                                                               "hypershift.openshift.io/cluster"}
        pod_exec.run(mgmt, ns, pod.metadata.name, "access", ["test", "-s", "/var/lib/etcd-restore/snapshot/restored.snap.db"])
    assert writers(mgmt, cluster) == before_writers
    resume_flow_run(run.id, run_input={"approved": False, "approver": "carol"})
    thread.join(120)
    with pytest.raises(Exception, match="rejected by carol"):
        out["state"].result()
    # the data pods go (the undo); nothing else was touched
    wait_for(lambda: versions(mgmt, cluster) == before, "every object as before the run", timeout=30)
    assert f"/t/{tag}/lost" in read_prefix(mgmt, cluster, f"/t/{tag}/", "etcd-0")
    no_leftovers(mgmt, cluster)


def test_a_failure_before_the_restore_puts_the_cluster_back_on_its_data_then_the_rerun_finishes(
        rb_world: World, mgmt: client.ApiClient, access: ClusterAccess, bucket: str, backed_up: tuple[str, str, str],
        tmp_path: Path) -> None:
    from hcp.naming import new_operation_id
    cluster, prefix, tag = backed_up
    before = versions(mgmt, cluster)
    before_writers, before_paused = writers(mgmt, cluster), hc(mgmt, cluster)["spec"].get("pausedUntil")
    # the copy over exec (the data pod's own download turned off, as for a pod without a way to S3),
    # cut, and its retry cut too
    p = restore_params(access, bucket, prefix, cluster, tmp_path, operation_id=new_operation_id(), pod_download=False)
    # Every exec on the copy's file is cut (the copy, the look for a copy already there, and again for
    # the retry): the cut comes at the copy's first output, its end, so without the look cut too a
    # retry could find the copy whole and go on.
    faults = rb_world.cluster("mgmt1").faults
    faults.cut_next_exec(10, count=4, command="restored.snap.db")
    state = etcd_restore(p, return_state=True)
    faults.clear()
    assert state.is_failed()
    # before the approval: only the data pods were made, and they are gone again
    report = latest_report("etcd-restore", cluster)
    assert "delete the temporary deployment" in undone(report) and "scale" not in undone(report), report
    wait_for(lambda: versions(mgmt, cluster) == before, "every object as before the run", timeout=30)

    # The same operation again, now failing once the cluster is down: etcd's stop is refused
    faults.fail_next(1, code=500, method="PATCH", path_contains="/statefulsets/etcd/scale")
    state = etcd_restore(p, return_state=True)
    faults.clear()
    assert state.is_failed()
    report = latest_report("etcd-restore", cluster)
    assert "Where the cluster is now" in report and f"--operation-id {p.operation_id}" in report
    assert "scale deployment" in undone(report) and "delete the temporary deployment" in undone(report), report
    # back where it was, on its own data: the write after the backup is still there
    assert writers(mgmt, cluster) == before_writers
    assert hc(mgmt, cluster)["spec"].get("pausedUntil") == before_paused
    wait_for(lambda: f"/t/{tag}/lost" in read_prefix(mgmt, cluster, f"/t/{tag}/", "etcd-0"), "etcd back", timeout=60)

    final = etcd_restore(p)
    assert final.status == "succeeded", final.to_markdown()
    assert any("copied the snapshot" in c and "turned off" in c for c in final.changes), final.changes
    assert read_prefix(mgmt, cluster, f"/t/{tag}/", "etcd-0") == {f"/t/{tag}/kept": "before-backup"}
    no_leftovers(mgmt, cluster)


def test_a_snapshot_object_changed_after_the_check_is_refused_in_the_data_pod_before_any_change(
        mgmt: client.ApiClient, access: ClusterAccess, s3: Any, bucket: str, backed_up: tuple[str, str, str],
        tmp_path: Path) -> None:
    """The runner verified the object (a dry run of the operation: the run of the same operation id
    uses its verified file); then it is replaced (same size, one byte differs): the data pods'
    download does not match the verified SHA-256, the run fails before the approval, the data pods
    go, and nothing else was touched."""
    from hcp import backup_catalog
    from hcp.naming import new_operation_id
    cluster, prefix, tag = backed_up
    entry = backup_catalog.list_backups(s3, bucket, prefix)[0]
    assert entry.manifest is not None
    key = entry.manifest.snapshot_key
    good = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    before = versions(mgmt, cluster)
    p = restore_params(access, bucket, prefix, cluster, tmp_path, operation_id=new_operation_id())
    assert etcd_restore(p.model_copy(update={"dry_run": True})).status == "planned"
    try:
        damaged = bytearray(good)
        damaged[len(damaged) // 2] ^= 0xFF
        s3.put_object(Bucket=bucket, Key=key, Body=bytes(damaged))
        state = etcd_restore(p, return_state=True)
    finally:
        s3.put_object(Bucket=bucket, Key=key, Body=good)
    with pytest.raises(Exception, match="not the verified snapshot"):
        state.result()
    report = latest_report("etcd-restore", cluster)
    assert "download-snapshot-in-pods" in report and "restore-data" not in report, report
    assert "delete the temporary deployment" in undone(report) and "scale" not in undone(report), report
    wait_for(lambda: versions(mgmt, cluster) == before, "every object as before the run", timeout=30)
    assert f"/t/{tag}/lost" in read_prefix(mgmt, cluster, f"/t/{tag}/", "etcd-0")
    no_leftovers(mgmt, cluster)


def test_restore_from_a_fresh_snapshot_and_from_a_member_db_copy(
        prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess, new_cluster: Callable[[], str],
        tmp_path: Path) -> None:
    cluster = new_cluster()
    put(mgmt, cluster, "/t/src/a", "1")
    report = etcd_restore(restore_params(access, None, "hcp-backups", cluster, tmp_path / "a", source="snapshot"))
    assert report.status == "succeeded", report.to_markdown()
    assert read_prefix(mgmt, cluster, "/t/src/", "etcd-0") == {"/t/src/a": "1"}
    assert "snapshot of" in report.figures["snapshot"]

    put(mgmt, cluster, "/t/src/b", "2")
    report = etcd_restore(restore_params(access, None, "hcp-backups", cluster, tmp_path / "b", source="member-db",
                                         member="etcd-0"))
    assert report.status == "succeeded", report.to_markdown()
    assert "--skip-hash-check" in report.to_markdown()
    # a db copy holds what etcd flushed to its backend: the keys written well before it (etcd commits
    # its backend every 100 ms; the copy is taken seconds later)
    assert read_prefix(mgmt, cluster, "/t/src/", "etcd-0") == {"/t/src/a": "1", "/t/src/b": "2"}


# -- a killed runner ----------------------------------------------------------------------------

@pytest.mark.parametrize("killed_after", ["download-snapshot-in-pods", "quiesce-control-plane", "stop-etcd", "restore-data",
                                          "start-etcd", "verify-restore"])
def test_a_run_killed_after_a_step_and_rerun_ends_restored_without_restoring_twice(
        prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess, bucket: str,
        backed_up: tuple[str, str, str], tmp_path: Path, killed_after: str) -> None:
    from hcp.naming import new_operation_id
    cluster, prefix, tag = backed_up
    before_writers, before_paused = writers(mgmt, cluster), hc(mgmt, cluster)["spec"].get("pausedUntil")
    p = restore_params(access, bucket, prefix, cluster, tmp_path, operation_id=new_operation_id())
    run_flow_until_killed("flows.etcd_restore", "etcd_restore", p, prefect_server, killed_after)
    restored_already = killed_after in ("restore-data", "start-etcd", "verify-restore")
    if killed_after in ("start-etcd", "verify-restore"):
        put(mgmt, cluster, f"/t/{tag}/after-restore", "kept")  # a second restore would lose it

    report = etcd_restore(p)
    assert report.status == "succeeded", report.to_markdown()
    want = {f"/t/{tag}/kept": "before-backup"}
    if killed_after in ("start-etcd", "verify-restore"):
        want[f"/t/{tag}/after-restore"] = "kept"
    assert read_prefix(mgmt, cluster, f"/t/{tag}/", "etcd-0") == want
    assert writers(mgmt, cluster) == before_writers
    assert hc(mgmt, cluster)["spec"].get("pausedUntil") == before_paused
    restores = [s.outcome for s in report.steps if s.name in ("restore-data", "restore")]
    assert restores == (["skipped"] if restored_already else ["done"]), report.steps
    if killed_after == "download-snapshot-in-pods":  # killed before the approval: the re-run asks for it
        assert [a for a in report.approvals if "approved by alice" in a], report.approvals
    else:  # approved in the killed run; the cluster is already down: not asked again
        assert report.approvals == []
    no_leftovers(mgmt, cluster)


def test_recover_after_a_kill_mid_restore_removes_the_data_pod_and_brings_etcd_back_on_its_data(
        prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess, bucket: str,
        backed_up: tuple[str, str, str], tmp_path: Path) -> None:
    from flows.recover import RecoverParams, recover
    from hcp.naming import new_operation_id
    cluster, prefix, tag = backed_up
    before_writers = writers(mgmt, cluster)
    p = restore_params(access, bucket, prefix, cluster, tmp_path, operation_id=new_operation_id())
    run_flow_until_killed("flows.etcd_restore", "etcd_restore", p, prefect_server, "stop-etcd")
    reports = recover(RecoverParams(operation_id=p.operation_id, management=access))
    assert any("delete the temporary deployment" in line for r in reports for line in r.changes + r.undone), \
        [r.to_markdown() for r in reports]
    assert writers(mgmt, cluster) == before_writers
    assert hc(mgmt, cluster)["spec"].get("pausedUntil") is None
    wait_for(lambda: f"/t/{tag}/lost" in read_prefix(mgmt, cluster, f"/t/{tag}/", "etcd-0"), "etcd back on its data",
             timeout=120)
    no_leftovers(mgmt, cluster)
