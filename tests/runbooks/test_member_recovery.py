"""etcd-member-recovery end to end: one HighlyAvailable hosted cluster (three real etcd members) whose
members are broken the way disks break them (garbage in the member's database on its PVC, then a
restart: the member crash-loops), the runbook run against it, and the cluster checked afterwards
with the kubernetes client and etcdctl in the pods."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from flows.etcd_member_recovery import EtcdMemberRecoveryParams, etcd_member_recovery
from hcp import pod_exec
from hcp.cluster_access import ClusterAccess
from hcp.etcd_health import HealthTable, read_health
from hcp.etcd_member import etcdctl_argv
from hcp.naming import HostedClusterRef, new_operation_id
from hcpsim.world import World
from tests.conformance.util import wait_for
from tests.runbooks.children import start_flow

HS = ("hypershift.openshift.io", "v1beta1")
pytestmark = pytest.mark.timeout(600)


# -- the cluster and how members break -------------------------------------------------------------------

def _available(mgmt: client.ApiClient, name: str) -> bool:
    hc = client.CustomObjectsApi(mgmt).get_namespaced_custom_object(*HS, "clusters", "hostedclusters", name)
    return any(c["type"] == "Available" and c["status"] == "True" for c in (hc.get("status") or {}).get("conditions") or [])


def _all_healthy(mgmt: client.ApiClient, cluster: str, count: int = 3, timeout: float = 120) -> HealthTable:
    ns = HostedClusterRef.parse(cluster).control_plane_namespace

    def healthy() -> HealthTable | None:
        table = read_health(mgmt, ns)
        return table if len(table.rows) == count and all(r.verdict == "healthy" for r in table.rows) else None
    return wait_for(healthy, f"{count} healthy etcd members in {ns}", timeout=timeout, interval=0.5)


def _pod_logs(mgmt: client.ApiClient, namespace: str, pod: str, only: tuple[str, ...] = ()) -> str:
    """Every container's log of a pod, the previous run's too (only lines holding one of `only`, when
    given): what a failed member test shows."""
    core = client.CoreV1Api(mgmt)
    try:
        spec = core.read_namespaced_pod(pod, namespace).spec
    except client.ApiException as e:
        return f"pod/{pod}: {e.status}"
    parts = []
    for container in [c.name for c in (spec.init_containers or []) + spec.containers]:
        for previous in (True, False):
            try:
                text = core.read_namespaced_pod_log(pod, namespace, container=container, previous=previous,
                                                    _preload_content=False).data.decode(errors="replace")
            except client.ApiException as e:
                text = f"({e.status})"
            if only:
                text = "\n".join(line for line in text.splitlines() if any(o in line for o in only))
            parts.append(f"--- {pod}/{container}{' (previous)' if previous else ''}\n{text[-3000:]}")
    return "\n".join(parts)


def _delete_hosted_cluster(mgmt: client.ApiClient, name: str) -> None:
    try:
        client.CustomObjectsApi(mgmt).delete_namespaced_custom_object(*HS, "clusters", "hostedclusters", name)
    except client.ApiException as e:
        if e.status != 404:
            raise


@pytest.fixture(scope="module")
def ha(rb_world: World, mgmt: client.ApiClient) -> Iterator[str]:
    """A HighlyAvailable hosted cluster of this module's own (the shared world's are SingleReplica)."""
    name = f"ha{uuid.uuid4().hex[:6]}"
    availability = rb_world.settings.availability
    rb_world.settings.availability = "HighlyAvailable"
    try:
        rb_world.create_hosted_cluster(name)
    finally:
        rb_world.settings.availability = availability
    wait_for(lambda: _available(mgmt, name), f"hosted cluster {name} available", timeout=120)
    _all_healthy(mgmt, f"clusters/{name}")
    yield f"clusters/{name}"
    _delete_hosted_cluster(mgmt, name)  # its members may be left broken by the last test


def _ns(cluster: str) -> str:
    return HostedClusterRef.parse(cluster).control_plane_namespace


def break_member(world: World, mgmt: client.ApiClient, cluster: str, member: str) -> HealthTable:
    """Garbage where the member's bolt database is, then a restart: etcd cannot open it and crash-loops."""
    ns = _ns(cluster)
    db = world.cluster("mgmt1").kubelet.pvc_dir(ns, f"data-{member}") / "data" / "member" / "snap" / "db"
    wait_for(db.is_file, f"{db} (etcd creates it when it starts)", timeout=60, interval=0.2)
    db.write_bytes(os.urandom(64 * 1024))
    client.CoreV1Api(mgmt).delete_namespaced_pod(member, ns)

    def failing() -> HealthTable | None:
        table = read_health(mgmt, ns)
        row = table.row(member)
        return table if row is not None and row.verdict == "failing" and row.pod is not None and \
            row.pod.last_exit_code is not None else None
    return wait_for(failing, f"{member} of {ns} failing", timeout=60, interval=0.5)


def objects(mgmt: client.ApiClient, cluster: str) -> dict[str, str]:
    """uid of every etcd pod and PVC."""
    ns, core = _ns(cluster), client.CoreV1Api(mgmt)
    out = {f"pod/{p.metadata.name}": p.metadata.uid for p in core.list_namespaced_pod(ns, label_selector="app=etcd").items}
    out |= {f"pvc/{c.metadata.name}": c.metadata.uid
            for c in core.list_namespaced_persistent_volume_claim(ns, label_selector="app=etcd").items}
    return out


def member_ids(mgmt: client.ApiClient, cluster: str, via: str = "etcd-0") -> dict[str, int]:
    import json
    out = pod_exec.run(mgmt, _ns(cluster), via, "etcd", etcdctl_argv("member", "list", "-w", "json")).text
    return {m.get("name") or m["peerURLs"][0]: int(m["ID"]) for m in json.loads(out)["members"]}


class Deletions:
    """Every etcd pod and PVC deleted in the namespace while it runs: (kind/name, uid)."""

    def __init__(self, mgmt: client.ApiClient, cluster: str) -> None:
        self.mgmt, self.ns = mgmt, _ns(cluster)
        self.seen: list[tuple[str, str]] = []
        self._watches: list[watch.Watch] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Deletions:
        core = client.CoreV1Api(self.mgmt)
        for kind, lister in (("pod", core.list_namespaced_pod), ("pvc", core.list_namespaced_persistent_volume_claim)):
            version = lister(self.ns, label_selector="app=etcd").metadata.resource_version
            w = watch.Watch()
            self._watches.append(w)
            thread = threading.Thread(target=self._follow, args=(w, lister, kind, version), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _follow(self, w: watch.Watch, lister: Any, kind: str, version: str) -> None:
        try:
            for event in w.stream(lister, self.ns, label_selector="app=etcd", resource_version=version,
                                  timeout_seconds=600):
                if event["type"] == "DELETED":
                    self.seen.append((f"{kind}/{event['object'].metadata.name}", event["object"].metadata.uid))
        except Exception:
            pass

    def __exit__(self, *exc: object) -> None:
        for w in self._watches:
            w.stop()

    def of(self, name: str) -> set[str]:
        return {uid for n, uid in self.seen if n == name}

    def only_the_failed_member(self, before: dict[str, str], member: str, changes: list[str]) -> None:
        """Deleted: the failed member's PVC and pod once each, and nothing else but replacements the
        run reports it replaced again because they never joined (reset-member's remove worked and its
        add did not: a race in HyperShift's script, see hcp.etcd_replace.needs_rejoin_repair)."""
        import re
        again = {m.group(2) for c in changes if (m := re.search(r"deleted the replacement's (PVC|pod) \S+ \(uid ([0-9a-f-]+)\)", c))}
        claim, pod = f"pvc/data-{member}", f"pod/{member}"
        assert before[claim] in self.of(claim) and before[pod] in self.of(pod), self.seen
        assert (self.of(claim) | self.of(pod)) - {before[claim], before[pod]} <= again, (self.seen, changes)
        assert {n for n, _ in self.seen} <= {claim, pod}, self.seen


def params(access: ClusterAccess, cluster: str, **kw: Any) -> EtcdMemberRecoveryParams:
    kw.setdefault("approval", {"poll_interval_seconds": 1, "timeout_seconds": 60})
    return EtcdMemberRecoveryParams(hosted_cluster=cluster, management=access, timeout_seconds=kw.pop("timeout", 180),
                                    **kw)


# -- healthy cluster: nothing to do, and a healthy member is never touched -----------------------------------

def test_healthy_cluster_nothing_to_do_and_healthy_members_are_refused(
        prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess, ha: str) -> None:
    before = objects(mgmt, ha)
    report = etcd_member_recovery(params(access, ha))
    assert report.status == "succeeded", report.error
    assert report.changes == [] and any("all 3 members are healthy" in v for v in report.verification)
    for member, problem in (("etcd-1", "etcd-1 is healthy"), ("etcd-7", "not a member of the etcd StatefulSet")):
        state = etcd_member_recovery(params(access, ha, member=member), return_state=True)
        assert state.is_failed()
        with pytest.raises(Exception, match=problem):
            state.result()
    assert objects(mgmt, ha) == before



# -- gates, plan mode, the lock, a kill at the gate: nothing destroyed; then the approved replacement ------------

def _find_paused(cluster: str, seen: set[Any]) -> Any:
    """A paused run of `cluster` not seen before (then it is seen), or None."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as c:
        runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
    run = next((r for r in runs if cluster in r.name and r.id not in seen), None)
    if run is not None:
        seen.add(run.id)
    return run


def _paused_run(cluster: str, seen: set[Any]) -> Any:
    return wait_for(lambda: _find_paused(cluster, seen), f"a paused etcd-member-recovery run of {cluster}",
                    timeout=90, interval=0.5)


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.setdefault("state", fn()), daemon=True)
    thread.start()
    return thread, out


def _kill(child: subprocess.Popen[bytes], when: Callable[[], Any], what: str) -> None:
    wait_for(lambda: child.poll() is not None or when(), what, timeout=180, interval=0.2)
    assert child.poll() is None, f"the child run ended (exit {child.returncode}) before {what}"
    child.send_signal(signal.SIGKILL)
    child.wait(60)


def _report_artifact(cluster: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    from tasks.runbook import artifact_key
    ref = HostedClusterRef.parse(cluster)
    with get_client(sync_client=True) as c:
        found = c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[
            artifact_key("etcd-member-recovery", ref.namespace, ref.name, "report")])), sort=ArtifactSort.CREATED_DESC,
            limit=1)
    return str(found[0].data) if found else ""


def _health_artifact(cluster: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    from hcp.run_target import RunTarget
    from tasks.member_recovery import health_artifact_key
    key = health_artifact_key(RunTarget(management=ClusterAccess(), management_cluster="x", hosted_cluster=cluster,
                                        operation_id=new_operation_id()))
    with get_client(sync_client=True) as c:
        found = c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                 sort=ArtifactSort.CREATED_DESC, limit=1)
    return str(found[0].data) if found else ""


def test_nothing_is_destroyed_until_approved_then_exactly_the_failed_member_is_replaced(
        prefect_server: Path, rb_world: World, mgmt: client.ApiClient, access: ClusterAccess, ha: str) -> None:
    from prefect.flow_runs import resume_flow_run

    from hcp.lease_lock import LeaseLock
    _all_healthy(mgmt, ha)
    ids_before = member_ids(mgmt, ha)
    break_member(rb_world, mgmt, ha, "etcd-2")
    before = objects(mgmt, ha)
    seen: set[Any] = set()
    with Deletions(mgmt, ha) as deleted:
        # plan mode: the plan, and nothing changed
        report = etcd_member_recovery(params(access, ha, dry_run=True))
        assert report.status == "planned" and report.figures["member"] == "etcd-2"
        steps = [s.step for s in report.plan]
        assert steps.index("approval") < steps.index("delete the PVC of etcd-2") < steps.index("delete the pod etcd-2")
        assert any("delete pvc/data-etcd-2 --wait=false" in s.command for s in report.plan)
        # a healthy member named: refused, the failing one named in the message
        state = etcd_member_recovery(params(access, ha, member="etcd-0"), return_state=True)
        with pytest.raises(Exception, match="etcd-0 is healthy; the failing member is etcd-2"):
            state.result()
        # the lock of another operation
        ref = HostedClusterRef.parse(ha)
        other = new_operation_id()
        lock = LeaseLock.for_hosted_cluster(mgmt, ref.namespace, ref.name, other, 600)
        lock.acquire()
        state = etcd_member_recovery(params(access, ha), return_state=True)
        with pytest.raises(Exception, match=f"locked by operation '{other}'"):
            state.result()
        lock.break_lock(other, force=True)
        # rejected at the gate
        thread, out = _in_thread(lambda: etcd_member_recovery(params(access, ha), return_state=True))
        run = _paused_run(ha, seen)
        resume_flow_run(run.id, run_input={"approved": False, "approver": "carol", "comment": "not now"})
        thread.join(120)
        with pytest.raises(Exception, match="rejected by carol"):
            out["state"].result()
        # nobody answers
        state = etcd_member_recovery(params(access, ha, approval={"poll_interval_seconds": 1, "timeout_seconds": 5}),
                                     return_state=True)
        assert state.is_failed()
        # a runner killed while it waits at the gate (it holds the lock)
        op = new_operation_id()
        child = start_flow("flows.etcd_member_recovery", "etcd_member_recovery", params(access, ha, operation_id=op), prefect_server)
        _kill(child, lambda: _find_paused(ha, seen), "the child run to wait at the gate")
        assert objects(mgmt, ha) == before and deleted.seen == []
        # the same operation again: approved through the pause form, the failed member is replaced
        thread, out = _in_thread(lambda: etcd_member_recovery(params(access, ha, operation_id=op), return_state=True))
        run = _paused_run(ha, seen)
        resume_flow_run(run.id, run_input={"approved": True, "approver": "bob", "comment": "INC-42"})
        thread.join(300)
        report = out["state"].result()
    assert report.status == "succeeded", report.error
    assert any(a.startswith(f"replace-etcd-2-{before['pod/etcd-2'][:8]}: approved by bob (INC-42)")
               for a in report.approvals), report.approvals
    after = objects(mgmt, ha)
    assert {k: v for k, v in after.items() if "etcd-2" not in k} == {k: v for k, v in before.items() if "etcd-2" not in k}
    assert after["pod/etcd-2"] != before["pod/etcd-2"] and after["pvc/data-etcd-2"] != before["pvc/data-etcd-2"]
    deleted.only_the_failed_member(before, "etcd-2", report.changes)
    ids_after = member_ids(mgmt, ha)
    assert ids_after["etcd-0"] == ids_before["etcd-0"] and ids_after["etcd-1"] == ids_before["etcd-1"]
    assert ids_after["etcd-2"] != ids_before["etcd-2"]
    _all_healthy(mgmt, ha, timeout=10)
    assert any(c.startswith("deleted PVC") for c in report.changes) and any(c.startswith("deleted pod") for c in report.changes)
    assert "etcd-2 healthy and caught up" in report.to_markdown()
    assert "| etcd-2 |" in _health_artifact(ha) and "intact" in _health_artifact(ha)


# -- as a deployment: the run suspends at the gate (no process held) and resumes after `approve` ------------------

def test_a_deployment_run_suspends_at_the_gate_deletes_nothing_and_replaces_after_approve(
        prefect_server: Path, rb_world: World, mgmt: client.ApiClient, access: ClusterAccess, ha: str) -> None:
    from prefect import Flow
    from prefect.client.orchestration import get_client
    from prefect.exceptions import Pause
    from prefect.flow_engine import run_flow
    from typer.testing import CliRunner

    from cli.main import app
    from deployments import ensure_work_pool
    from hcp.lease_lock import LeaseLock
    _all_healthy(mgmt, ha)
    break_member(rb_world, mgmt, ha, "etcd-2")
    before = objects(mgmt, ha)
    ensure_work_pool("hcp-test-pool")
    flow = Flow.from_source(source=str(Path(__file__).parents[2]),
                            entrypoint="flows/etcd_member_recovery.py:etcd_member_recovery")
    deployment = flow.deploy(name="etcd-member-recovery-test", work_pool_name="hcp-test-pool", build=False, push=False,
                             print_next_steps=False)
    p = {"hosted_cluster": ha, "management": access.model_dump(mode="json"), "approval": {"timeout_seconds": 600}}
    with get_client(sync_client=True) as c:
        flow_run = c.create_flow_run_from_deployment(deployment, parameters={"params": p})
    with Deletions(mgmt, ha) as deleted:
        try:  # what a worker does: the run suspends and the process is free to exit
            run_flow(etcd_member_recovery, flow_run=flow_run)
        except Pause:
            pass
        with get_client(sync_client=True) as c:
            suspended = c.read_flow_run(flow_run.id)
        assert suspended.state.is_paused() and suspended.state.name == "Suspended"
        assert objects(mgmt, ha) == before and deleted.seen == []
        ref = HostedClusterRef.parse(ha)
        lease = LeaseLock.for_hosted_cluster(mgmt, ref.namespace, ref.name, "x").get()
        assert lease is not None and lease.holder and lease.duration_seconds >= 600
        result = CliRunner().invoke(app, ["approve", str(flow_run.id), "--approver", "hana", "--comment", "CHG-7"])
        assert result.exit_code == 0, result.output
        with get_client(sync_client=True) as c:
            resumed = c.read_flow_run(flow_run.id)
        report = run_flow(etcd_member_recovery, flow_run=resumed)  # the worker picks the resumed run up again
    assert report.status == "succeeded", report.error
    assert any("approved by hana (CHG-7)" in a for a in report.approvals)
    deleted.only_the_failed_member(before, "etcd-2", report.changes)
    _all_healthy(mgmt, ha, timeout=10)


# -- killed after each destructive step, then re-run: ends correct, deletes nothing twice ----------------------

def test_killed_between_pvc_and_pod_and_while_waiting_reruns_finish_without_deleting_twice(
        prefect_server: Path, rb_world: World, mgmt: client.ApiClient, access: ClusterAccess, ha: str) -> None:
    _all_healthy(mgmt, ha)
    ns = _ns(ha)
    break_member(rb_world, mgmt, ha, "etcd-1")
    before = objects(mgmt, ha)
    core = client.CoreV1Api(mgmt)
    p = params(access, ha, operation_id=new_operation_id(), approval={"pre_approved_by": "erin"})
    faults = rb_world.cluster("mgmt1").faults
    with Deletions(mgmt, ha) as deleted:
        # 1. killed after deleting the PVC, before deleting the pod (the pod's DELETE is held by the API)
        faults.fail_next(1, code=0, delay=120, method="DELETE", path_contains=f"/namespaces/{ns}/pods/etcd-1")
        child = start_flow("flows.etcd_member_recovery", "etcd_member_recovery", p, prefect_server)
        _kill(child, lambda: core.read_namespaced_persistent_volume_claim("data-etcd-1", ns).metadata.deletion_timestamp,
              "the child run to delete the PVC")
        faults.clear()
        assert core.read_namespaced_pod("etcd-1", ns).metadata.uid == before["pod/etcd-1"]  # kept by the PVC's pod
        # 2. the same operation, killed while it waits for the new member
        child = start_flow("flows.etcd_member_recovery", "etcd_member_recovery", p, prefect_server)

        def replaced() -> bool:
            try:
                return core.read_namespaced_pod("etcd-1", ns).metadata.uid != before["pod/etcd-1"]
            except client.ApiException:
                return False
        _kill(child, replaced, "the new pod etcd-1")
        # 3. and once more: it finishes
        report = etcd_member_recovery(p)
    assert report.status == "succeeded", report.error
    deleted.only_the_failed_member(before, "etcd-1", report.changes)
    outcomes = {s.name: s.outcome for s in report.steps}
    assert outcomes["choose-failed-member"] == "skipped" and not report.approvals  # approved in the first run
    assert outcomes["replace-failed-member"] in ("resumed", "done")
    assert not [c for c in report.changes if c.startswith(("deleted PVC", "deleted pod"))]  # not the failed one again
    _all_healthy(mgmt, ha, timeout=10)
    # a finished operation run again: everything resumed, nothing deleted
    with Deletions(mgmt, ha) as again:
        report = etcd_member_recovery(p)
    assert report.status == "succeeded" and again.seen == []


# -- a member etcd no longer lists, and a failure after the deletion ---------------------------------------------

def test_etcd_refuses_a_peer_url_added_again_in_the_second_it_was_removed_and_add_member_waits_that_second_out(
        mgmt: client.ApiClient, ha: str) -> None:
    """What reset-member does to a member the runbook added (remove it, add its peer URL again) fails
    within the second of the runbook's add: etcd's member id is the peer URL hashed with the Unix
    second, so the new id is the one just removed ("member not found"). `add_member` returns only
    once that second has passed."""
    import shlex
    import time

    from hcp.etcd_health import peer_url
    from hcp.etcd_replace import add_member
    _all_healthy(mgmt, ha)
    ns = _ns(ha)
    time.sleep(6)  # the members' strict reconfiguration check (5 s connected)
    url = peer_url("etcd-9", ns)  # a member that never starts: listed, unstarted, then removed again
    add = shlex.join(etcdctl_argv("member", "add", "etcd-9", f"--peer-urls={url}"))
    dance = (f"id=$({shlex.join(etcdctl_argv('member', 'list'))} | grep etcd-9 | cut -d, -f1); "
             f"{shlex.join(etcdctl_argv('member', 'remove'))} $id >/dev/null && {add} >/dev/null")
    try:
        for _ in range(3):  # the raw add below must stay within one second; a loaded machine may not
            # at the start of a second: add, then reset-member's remove and add, all in that second
            script = (f"while [ $(date +%N | cut -c1) != 0 ]; do :; done; s=$(date +%s); "
                      f"{add} >/dev/null && "
                      f"( {dance} ); rc=$?; [ $(date +%s) = $s ] || rc=99; exit $rc")
            raw = pod_exec.run(mgmt, ns, "etcd-0", "etcd", ["sh", "-c", script], check=False)
            _remove_member_by_url(mgmt, ns, url)
            if raw.exit_code != 99:
                break
            time.sleep(6)
        said = raw.stderr.decode(errors="replace")
        assert raw.exit_code not in (0, 99) and "etcdserver: member not found" in said, (raw.exit_code, said)
        time.sleep(6)
        add_member(mgmt, ns, "etcd-0", "etcd-9")
        done = pod_exec.run(mgmt, ns, "etcd-0", "etcd", ["sh", "-c", dance], check=False)
        assert done.exit_code == 0, done.stderr.decode(errors="replace")
        assert "etcd-9" in _sh_out(mgmt, ns, etcdctl_argv("member", "list"))
    finally:
        _remove_member_by_url(mgmt, ns, url)
    _all_healthy(mgmt, ha, timeout=30)


def _sh_out(mgmt: client.ApiClient, ns: str, argv: list[str]) -> str:
    return pod_exec.run(mgmt, ns, "etcd-0", "etcd", argv).text


def _remove_member_by_url(mgmt: client.ApiClient, ns: str, url: str) -> None:
    for line in _sh_out(mgmt, ns, etcdctl_argv("member", "list")).splitlines():
        if url in line:
            pod_exec.run(mgmt, ns, "etcd-0", "etcd", etcdctl_argv("member", "remove", line.split(",")[0]))


def test_a_member_removed_by_hand_is_added_back_and_a_stopped_run_says_how_to_continue(
        prefect_server: Path, rb_world: World, mgmt: client.ApiClient, access: ClusterAccess, ha: str) -> None:
    """Someone did the etcd docs' first step by hand (member remove), then HyperShift's (delete PVC and
    pod): reset-member finds no member to replace, starts etcd-2 as a new cluster, the others reject it."""
    import time
    _all_healthy(mgmt, ha)
    ns = _ns(ha)
    time.sleep(6)  # the members' strict reconfiguration check (5 s connected), as for anyone removing by hand
    gone = member_ids(mgmt, ha)["etcd-2"]
    pod_exec.run(mgmt, ns, "etcd-0", "etcd", etcdctl_argv("member", "remove", f"{gone:x}"))
    subprocess.run(["kubectl", "--kubeconfig", str(access.kubeconfig), "--context", "mgmt1", "-n", ns, "delete",
                    "pvc/data-etcd-2", "pod/etcd-2", "--wait=false"], check=True, capture_output=True)

    def failing() -> HealthTable | None:
        table = read_health(mgmt, ns)
        row = table.row("etcd-2")
        return table if row and row.verdict == "failing" and row.entry is None and row.pod and \
            row.pod.uid not in objects_before.values() else None
    objects_before = objects(mgmt, ha)
    table = wait_for(failing, "etcd-2 failing, not in the member list", timeout=90, interval=0.5)
    assert "not in the member list" in table.markdown()
    before = objects(mgmt, ha)
    p = params(access, ha, operation_id=new_operation_id(), approval={"pre_approved_by": "frank"})
    # a run that stops right after deleting (its wait ends before the old pod can be gone): the state, and
    # the command that continues
    state = etcd_member_recovery(p.model_copy(update={"timeout_seconds": 0.001}), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception) as stopped:
        state.result()
    message = str(stopped.value)
    assert "replacing etcd-2 stopped" in message and "State now:" in message
    assert f"--cluster {ha} --member etcd-2 --operation-id {p.operation_id}" in message
    stopped_report = _report_artifact(ha)
    assert "## Where the cluster is now" in stopped_report and "| etcd-2 |" in stopped_report
    assert "## To continue or recover" in stopped_report and f"--operation-id {p.operation_id}" in stopped_report
    try:
        report = etcd_member_recovery(p)
    except Exception as e:
        membership = ("added member", "removed", "rejected")
        raise AssertionError(f"{e}\n{_pod_logs(mgmt, ns, 'etcd-2')}\n{_pod_logs(mgmt, ns, 'etcd-0', membership)}") from e
    assert report.status == "succeeded", report.error
    # the first run added it, before deleting; the re-run does not (a re-replacement of a replacement that never
    # joined adds it for its own reason, and says so)
    assert not any(c.startswith("added member etcd-2 (https://") for c in report.changes)
    assert any(c.startswith("(an earlier run of this operation) added member etcd-2 (https://") for c in report.changes)
    after = objects(mgmt, ha)
    assert after["pvc/data-etcd-2"] != before["pvc/data-etcd-2"] and after["pod/etcd-0"] == before["pod/etcd-0"]
    ids = member_ids(mgmt, ha)
    assert sorted(ids) == ["etcd-0", "etcd-1", "etcd-2"] and ids["etcd-2"] != gone
    _all_healthy(mgmt, ha, timeout=10)


# -- refusals: quorum lost ------------------------------------------------------------------------------------------

def test_single_replica_member_failing_is_refused_with_the_restore_command(
        prefect_server: Path, rb_world: World, mgmt: client.ApiClient, access: ClusterAccess, bucket: str,
        new_cluster: Callable[[], str]) -> None:
    cluster = new_cluster()
    try:
        break_member(rb_world, mgmt, cluster, "etcd-0")
        before = objects(mgmt, cluster)
        state = etcd_member_recovery(params(access, cluster, bucket=bucket), return_state=True)
        assert state.is_failed()
        with pytest.raises(Exception) as refused:
            state.result()
        expected = (f"hcp-runbooks run etcd-restore --kubeconfig {access.kubeconfig} --context mgmt1 --cluster "
                    f"{cluster} --bucket {bucket} --source latest-backup")
        assert "quorum is lost: 0 of 1" in str(refused.value) and expected in str(refused.value)
        report = _report_artifact(cluster)
        assert "## To continue or recover" in report and expected in report and "| etcd-0 | CrashLoopBackOff" in report
        assert objects(mgmt, cluster) == before
    finally:
        _delete_hosted_cluster(mgmt, HostedClusterRef.parse(cluster).name)


def test_two_failing_members_are_refused_and_never_touched(
        prefect_server: Path, rb_world: World, mgmt: client.ApiClient, access: ClusterAccess, bucket: str,
        ha: str) -> None:
    """Last in the module: it leaves the cluster without quorum (the fixture deletes it)."""
    _all_healthy(mgmt, ha)
    break_member(rb_world, mgmt, ha, "etcd-1")
    break_member(rb_world, mgmt, ha, "etcd-2")
    before = objects(mgmt, ha)
    with Deletions(mgmt, ha) as deleted:
        for member in (None, "etcd-2"):
            state = etcd_member_recovery(params(access, ha, member=member, bucket=bucket,
                                                approval={"pre_approved_by": "gina"}), return_state=True)
            assert state.is_failed()
            with pytest.raises(Exception) as refused:
                state.result()
            # etcd-0 still runs: the restore comes from the latest backup
            expected = (f"hcp-runbooks run etcd-restore --kubeconfig {access.kubeconfig} --context mgmt1 --cluster {ha} "
                        f"--bucket {bucket} --source latest-backup")
            assert "quorum is lost: 0 of 3" in str(refused.value) and expected in str(refused.value)
    assert objects(mgmt, ha) == before and deleted.seen == []
