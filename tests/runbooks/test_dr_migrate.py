"""dr-migrate end to end on the simulated world: a hosted cluster moves from mgmt1 to mgmt2.

Ground truth comes from the world, not from the runbook's report: the hosted API's own store (the
ConfigMap written through the API before the move is read back through the API after it), etcd's
keys on both sides, the nodes as their kubelets keep them, the EC2 instances, the Route53 zone.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from flows.dr_migrate import DrMigrateParams, dr_migrate
from hcp.backup_catalog import list_backups
from hcp.cluster_access import ClusterAccess
from hcp.hosted_access import hosted_api_client
from hcp.migration_objects import remove_hosted_cluster
from hcp.naming import HostedClusterRef, new_operation_id
from hcpsim.hypershift.etcd_writer import client_for_namespace
from hcpsim.world import World
from tests.conftest import KUBECTL
from tests.conformance.util import wait_for
from tests.runbooks.children import latest_report, run_flow_until_killed

pytestmark = pytest.mark.usefixtures("prefect_server")

HS, HSV = "hypershift.openshift.io", "v1beta1"
NS = "clusters"
QUIESCED = ("kube-apiserver", "openshift-apiserver", "openshift-oauth-apiserver", "control-plane-operator")


@pytest.fixture(scope="module")
def mgmt2(rb_world: World) -> Iterator[client.ApiClient]:
    """The destination, prepared as the README asks: the HostedCluster namespace exists there (with the
    runner's RoleBinding on a real cluster)."""
    api = ClusterAccess(kubeconfig=rb_world.kubeconfig_path, context="mgmt2").api_client()
    if not _exists(lambda: client.CoreV1Api(api).read_namespace(NS)):
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
    yield api
    api.close()


@pytest.fixture(autouse=True)
def _clear_mgmt2_faults(rb_world: World) -> Iterator[None]:
    yield
    rb_world.cluster("mgmt2").faults.clear()


@pytest.fixture(autouse=True)
def _destination_prepared(mgmt2: client.ApiClient) -> None:
    """Before each test, as the README asks of a destination: the HostedCluster namespace exists (a
    cleanup that removed the last cluster from mgmt2 removes its empty namespace too)."""
    core = client.CoreV1Api(mgmt2)

    def absent() -> bool:
        return not _exists(lambda: core.read_namespace(NS))
    if not _exists(lambda: core.read_namespace(NS)):
        core.create_namespace({"metadata": {"name": NS}})
        return
    if core.read_namespace(NS).metadata.deletion_timestamp is not None:
        wait_for(absent, f"namespace {NS} on mgmt2 gone before it is made again", timeout=60)
        core.create_namespace({"metadata": {"name": NS}})


def _available(custom: client.CustomObjectsApi, name: str) -> bool:
    try:
        hc = custom.get_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name)
    except ApiException:
        return False
    return any(c["type"] == "Available" and c["status"] == "True" for c in (hc.get("status") or {}).get("conditions") or [])


def _records(rb_world: World, name: str) -> dict[str, list[str]]:
    """A/CNAME records of this cluster's hostnames -> their targets."""
    r53 = rb_world.aws.client("route53")
    out = {}
    for page in r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=rb_world.aws.zone_id):
        for rr in page["ResourceRecordSets"]:
            if rr["Type"] in ("A", "CNAME") and f"-{name}." in rr["Name"]:
                out[rr["Name"]] = [r["Value"].rstrip(".") for r in rr.get("ResourceRecords") or []]
    return out


@pytest.fixture
def movable(rb_world: World, mgmt: client.ApiClient, mgmt2: client.ApiClient) -> Iterator[Callable[..., str]]:
    """A hosted cluster on mgmt1 (SingleReplica unless asked), Available, its API answering through its DNS record,
    a node Ready. Removed from both sides after the test (the teardown way)."""
    yield from _clusters(rb_world, mgmt, mgmt2)


@pytest.fixture(scope="module")
def resident(rb_world: World, mgmt: client.ApiClient, mgmt2: client.ApiClient) -> Iterator[str]:
    """One SingleReplica cluster for the tests that leave it on mgmt1 as they found it (refusals, rollbacks)."""
    for make in _clusters(rb_world, mgmt, mgmt2):
        yield make()


def _clusters(rb_world: World, mgmt: client.ApiClient, mgmt2: client.ApiClient) -> Iterator[Callable[..., str]]:
    made: list[str] = []
    custom = client.CustomObjectsApi(mgmt)

    def make(availability: str | None = None) -> str:
        name = f"m{uuid.uuid4().hex[:6]}"
        rb_world.create_hosted_cluster(name, availability=availability)
        made.append(name)
        wait_for(lambda: _available(custom, name), f"{name} Available on mgmt1", timeout=120)
        wait_for(lambda: len(_records(rb_world, name)) >= 1, f"{name}'s records published", timeout=60)
        hosted = hosted_api_client(mgmt, HostedClusterRef(NS, name))
        try:
            wait_for(lambda: _ready_nodes(hosted), f"{name}'s node Ready", timeout=90)
        finally:
            hosted.close()
        return name

    yield make
    for name in made:
        for api in (mgmt, mgmt2):
            try:
                remove_hosted_cluster(api, NS, name, timeout=60)
            except Exception as exc:  # a cleanup: never hide the test's own failure behind it
                print(f"cleanup of {name}: {exc}")


def _ready_nodes(hosted: client.ApiClient) -> dict[str, str]:
    try:
        nodes = client.CoreV1Api(hosted).list_node(_request_timeout=5).items
    except Exception:
        return {}
    return {n.metadata.name: n.metadata.uid for n in nodes
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])}


def params(rb_world: World, name: str, **kw: Any) -> DrMigrateParams:
    base: dict[str, Any] = dict(
        source={"management": {"kubeconfig": str(rb_world.kubeconfig_path), "context": "mgmt1"}},
        destination={"management": {"kubeconfig": str(rb_world.kubeconfig_path), "context": "mgmt2"}},
        hosted_cluster=f"{NS}/{name}", bucket=rb_world.settings.bucket, prefix=f"dr-{uuid.uuid4().hex[:6]}",
        route53_zone_id=rb_world.aws.zone_id, external_dns_domain=rb_world.settings.external_dns_domain,
        approval={"pre_approved_by": "alice"}, timeout_seconds=120, dns_timeout_seconds=60)
    base.update(kw)
    return DrMigrateParams.model_validate(base)


def source_state(mgmt: client.ApiClient, name: str) -> dict[str, Any]:
    """What a rollback must give back on the source: pauses and replica counts."""
    custom, apps = client.CustomObjectsApi(mgmt), client.AppsV1Api(mgmt)
    hc = custom.get_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name)
    pools = {p["metadata"]["name"]: p["spec"].get("pausedUntil")
             for p in custom.list_namespaced_custom_object(HS, HSV, NS, "nodepools")["items"]
             if p["spec"]["clusterName"] == name}
    replicas = {d: apps.read_namespaced_deployment_scale(d, f"{NS}-{name}").spec.replicas for d in QUIESCED}
    return {"pausedUntil": hc["spec"].get("pausedUntil"), "nodepools": pools, "replicas": replicas}


def nothing_on(api: client.ApiClient, name: str) -> list[str]:
    """What of the cluster is on a management cluster (empty: nothing)."""
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    found = []
    try:
        custom.get_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name)
        found.append("HostedCluster")
    except ApiException as exc:
        assert exc.status == 404
    try:
        core.read_namespace(f"{NS}-{name}")
        found.append("control-plane namespace")
    except ApiException as exc:
        assert exc.status == 404
    try:
        pools = custom.list_namespaced_custom_object(HS, HSV, NS, "nodepools")["items"]
        found += [f"NodePool {p['metadata']['name']}" for p in pools if p["spec"]["clusterName"] == name]
        found += [f"Secret {s.metadata.name}" for s in core.list_namespaced_secret(NS).items
                  if s.metadata.name.startswith(f"{name}-")]
    except ApiException as exc:
        assert exc.status == 404
    return found


def _hosted_marker(mgmt: client.ApiClient, name: str, value: str | None = None) -> str | None:
    """Write (value given) or read a ConfigMap in the hosted cluster, through its API."""
    hosted = hosted_api_client(mgmt, HostedClusterRef(NS, name))
    core = client.CoreV1Api(hosted)
    try:
        if value is not None:
            core.create_namespaced_config_map("default", {"metadata": {"name": "dr-marker"}, "data": {"v": value}})
            return value
        return (core.read_namespaced_config_map("dr-marker", "default").data or {}).get("v")
    finally:
        hosted.close()


def _etcd_keys(rb_world: World, mgmt_name: str, name: str) -> set[str]:
    etcd = wait_for(lambda: client_for_namespace(rb_world.cluster(mgmt_name).backend, f"{NS}-{name}"),
                    f"etcd client on {mgmt_name}", timeout=60)
    return wait_for(lambda: _keys_or_none(etcd), f"etcd on {mgmt_name} answering", timeout=60)


def _keys_or_none(etcd: Any) -> set[str] | None:
    try:
        return etcd.keys("/registry/")[0]
    except ConnectionError:
        return None


def assert_moved(rb_world: World, mgmt: client.ApiClient, mgmt2: client.ApiClient, name: str, *, marker: str,
                 keys_before: set[str], nodes_before: dict[str, str], instances_before: set[str]) -> None:
    custom2 = client.CustomObjectsApi(mgmt2)
    hc = custom2.get_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name)
    cluster_id = hc["spec"]["clusterID"]
    urls = hc["spec"]["etcd"]["managed"]["storage"]["restoreSnapshotURL"]
    assert len(urls) == 1 and "X-Amz-Signature" in urls[0]
    assert "pausedUntil" not in hc["spec"]
    assert _available(custom2, name)
    # every key of etcd before the move is on the destination; the marker reads back through the API
    keys_after = _etcd_keys(rb_world, "mgmt2", name)
    assert keys_before <= keys_after, sorted(keys_before - keys_after)[:5]
    assert _hosted_marker(mgmt2, name) == marker
    # the same nodes, Ready; the same instances, none launched or terminated
    hosted = hosted_api_client(mgmt2, HostedClusterRef(NS, name))
    try:
        assert _ready_nodes(hosted) == nodes_before
    finally:
        hosted.close()
    assert {i.instance_id for i in rb_world.instances.running(cluster_id)} == instances_before
    api = rb_world.hosted.get(cluster_id)
    assert api.reached_via == "mgmt2"
    assert set(api.ovn_connections().values()) == {"mgmt2"}
    targets = [t for ts in _records(rb_world, name).values() for t in ts]
    assert targets and all("mgmt2" in t for t in targets), targets
    assert nothing_on(mgmt, name) == []


def before_move(rb_world: World, mgmt: client.ApiClient, name: str) -> dict[str, Any]:
    marker = uuid.uuid4().hex
    _hosted_marker(mgmt, name, marker)
    cluster_id = client.CustomObjectsApi(mgmt).get_namespaced_custom_object(
        HS, HSV, NS, "hostedclusters", name)["spec"]["clusterID"]
    hosted = hosted_api_client(mgmt, HostedClusterRef(NS, name))
    try:
        nodes = _ready_nodes(hosted)
    finally:
        hosted.close()
    return {"marker": marker, "keys_before": _etcd_keys(rb_world, "mgmt1", name), "nodes_before": nodes,
            "instances_before": {i.instance_id for i in rb_world.instances.running(cluster_id)}}


def test_a_migration_moves_the_cluster_with_every_key_and_its_nodes(
        rb_world: World, mgmt: client.ApiClient, mgmt2: client.ApiClient, movable: Callable[..., str], s3: Any) -> None:
    name = movable("HighlyAvailable")  # three members: each one's own snapshot
    facts = before_move(rb_world, mgmt, name)
    p = params(rb_world, name)
    report = dr_migrate(p)
    assert report.status == "succeeded", report.error
    assert_moved(rb_world, mgmt, mgmt2, name, **facts)

    figures = report.figures
    assert figures["cluster now on"] == "mgmt2"
    assert figures["nodes Ready throughout"].startswith("yes"), figures
    assert float(figures["hosted API unavailable"].split()[0]) > 0
    assert any("teardown: approved by alice" in a for a in report.approvals)
    # the backup stays, listed like any backup, with each member's own snapshot under the manifest
    entries = [e for e in list_backups(s3, p.bucket, p.prefix) if e.complete and e.manifest.name == name]
    assert len(entries) == 1
    manifest = entries[0].manifest
    assert manifest.migration_objects_key
    assert set(manifest.member_snapshot_keys) == {"etcd-0", "etcd-1", "etcd-2"}
    for member, key in manifest.member_snapshot_keys.items():  # each member's own file, not etcd-0's three times
        head = s3.head_object(Bucket=p.bucket, Key=key)
        assert head["ContentLength"] > 0 and member in key
    assert manifest.snapshot_key in manifest.member_snapshot_keys.values()
    assert manifest.mode == "quiesced"
    # the hosted cluster knows where it came from
    hosted = hosted_api_client(mgmt2, HostedClusterRef(NS, name))
    try:
        cm = client.CoreV1Api(hosted).read_namespaced_config_map("mgmt-parent-cluster", "default")
    finally:
        hosted.close()
    assert cm.data == {"from": "mgmt1"}
    if KUBECTL:  # a second, independent client: the restored HostedCluster as kubectl sees it on mgmt2
        out = subprocess.run([KUBECTL, "--kubeconfig", str(rb_world.kubeconfig_path), "--context", "mgmt2", "-n", NS,
                              "get", "hostedcluster", name, "-o", "json"], capture_output=True, check=True, timeout=60)
        assert len(json.loads(out.stdout)["spec"]["etcd"]["managed"]["storage"]["restoreSnapshotURL"]) == 1


def test_dry_run_and_preflight_refusals_change_nothing(
        rb_world: World, mgmt: client.ApiClient, mgmt2: client.ApiClient, resident: str, tmp_path: Path) -> None:
    name = resident
    before = source_state(mgmt, name)
    rv = client.CustomObjectsApi(mgmt).get_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name)[
        "metadata"]["resourceVersion"]

    report = dr_migrate(params(rb_world, name, dry_run=True))
    assert report.status == "planned"
    assert [s.step for s in report.plan][-2:] == ["tear down the source", "restart the OVN pods in the hosted cluster"]
    assert any(s.destructive for s in report.plan)

    def refused(match: str, **kw: Any) -> None:
        state = dr_migrate(params(rb_world, name, **kw), return_state=True)
        with pytest.raises(Exception, match=match):
            state.result()

    # the API hostname is not in the given external DNS domain (as for a cluster without external DNS)
    refused("outside the external DNS domain", external_dns_domain="other.example.org")
    # the destination is occupied: its control-plane namespace exists there
    client.CoreV1Api(mgmt2).create_namespace({"metadata": {"name": f"{NS}-{name}"}})
    try:
        refused("already has the control-plane namespace")
    finally:
        client.CoreV1Api(mgmt2).delete_namespace(f"{NS}-{name}")
    wait_for(lambda: not _exists(lambda: client.CoreV1Api(mgmt2).read_namespace(f"{NS}-{name}")), "namespace gone")
    # the destination lacks the HostedCluster's namespace (so the runner's RoleBinding there too)
    elsewhere, other = f"t{uuid.uuid4().hex[:5]}", f"m{uuid.uuid4().hex[:6]}"
    rb_world.create_hosted_cluster(other, namespace=elsewhere)
    try:
        state = dr_migrate(params(rb_world, other, hosted_cluster=f"{elsewhere}/{other}", dry_run=True),
                           return_state=True)
        with pytest.raises(Exception, match=f"mgmt2 has no namespace {elsewhere}"):
            state.result()
        assert not _exists(lambda: client.CoreV1Api(mgmt2).read_namespace(elsewhere))
    finally:
        remove_hosted_cluster(mgmt, elsewhere, other, timeout=60)
    # the destination cannot be reached
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "gone",
                                "clusters": [{"name": "gone", "cluster": {"server": "https://127.0.0.1:9"}}],
                                "users": [{"name": "u", "user": {"token": "x"}}],
                                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}]}))
    refused("gone|127.0.0.1:9|refused|reach", destination={"management": {"kubeconfig": str(dead), "context": "gone"}})
    # a source and destination that are the same cluster are refused when the parameters are made
    with pytest.raises(ValueError, match="another management cluster"):
        params(rb_world, name, destination={"management": {"kubeconfig": str(rb_world.kubeconfig_path),
                                                           "context": "mgmt1"}})

    assert source_state(mgmt, name) == before
    assert client.CustomObjectsApi(mgmt).get_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name)[
        "metadata"]["resourceVersion"] == rv
    assert nothing_on(mgmt2, name) == []


def _exists(read: Callable[[], Any]) -> bool:
    try:
        read()
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def _back_on_source(rb_world: World, mgmt: client.ApiClient, name: str, before: dict[str, Any]) -> None:
    wait_for(lambda: source_state(mgmt, name) == before, "the source's pauses and replicas back", timeout=60)
    wait_for(lambda: _available(client.CustomObjectsApi(mgmt), name), "Available on mgmt1 again", timeout=90)
    wait_for(lambda: _records(rb_world, name) and all("mgmt1" in t for ts in _records(rb_world, name).values()
                                                      for t in ts), "the records back at mgmt1", timeout=60)


def test_a_failure_at_each_step_before_the_teardown_leaves_the_cluster_on_the_source(
        rb_world: World, mgmt: client.ApiClient, mgmt2: client.ApiClient, resident: str) -> None:
    name = resident
    before = source_state(mgmt, name)
    cluster_id = client.CustomObjectsApi(mgmt).get_namespaced_custom_object(
        HS, HSV, NS, "hostedclusters", name)["spec"]["clusterID"]
    instances = {i.instance_id for i in rb_world.instances.running(cluster_id)}
    mgmt1, m2 = rb_world.cluster("mgmt1").faults, rb_world.cluster("mgmt2").faults
    apps = client.AppsV1Api(mgmt)

    def scale_external_dns(replicas: int) -> None:
        apps.patch_namespaced_deployment_scale("external-dns", "hypershift", {"spec": {"replicas": replicas}})

    def operator2(replicas: int) -> None:
        client.AppsV1Api(mgmt2).patch_namespaced_deployment_scale("operator", "hypershift",
                                                                  {"spec": {"replicas": replicas}})

    # (step, how it fails, what to say it failed with, how to heal, extra parameters)
    faults: list[tuple[str, Callable[[], None], str, Callable[[], None], dict[str, Any]]] = [
        ("quiesce", lambda: mgmt1.fail_next(1, code=500, method="PATCH", path_contains="control-plane-operator/scale"),
         "500|Internal", lambda: None, {}),
        ("backup", lambda: rb_world.aws.faults.fail_next(50, code=500, method="PUT", path="etcd-0-snapshot"),
         "500|InternalError|S3|upload", lambda: rb_world.aws.faults.clear(), {}),
        ("routes", lambda: mgmt1.fail_next(1, code=500, method="DELETE", path_contains="/routes/"),
         "500|Internal", lambda: None, {}),
        ("dns", lambda: scale_external_dns(0), "still in Route53", lambda: scale_external_dns(1),
         {"dns_timeout_seconds": 3}),
        ("restore", lambda: m2.fail_next(1, code=500, method="POST", path_contains="/hostedclusters"),
         "500|Internal", lambda: None, {}),
        ("wait", lambda: operator2(0), "timed out|Available", lambda: operator2(1), {"timeout_seconds": 8}),
    ]
    for step, inject, error, heal, extra in faults:
        inject()
        try:
            state = dr_migrate(params(rb_world, name, operation_id=new_operation_id(), **extra), return_state=True)
        finally:
            heal()
            mgmt1.clear()
            m2.clear()
        assert state.is_failed(), f"{step}: the run did not fail"
        report = latest_report("dr-migrate", f"{NS}/{name}")
        assert any(w in report for w in error.split("|")), f"{step}: {report[:3000]}"
        assert nothing_on(mgmt2, name) == [], f"{step}: left on mgmt2"
        _back_on_source(rb_world, mgmt, name, before)
        assert {i.instance_id for i in rb_world.instances.running(cluster_id)} == instances, step


def test_killed_after_each_step_and_run_again_it_finishes(
        rb_world: World, mgmt: client.ApiClient, mgmt2: client.ApiClient, movable: Callable[[], str],
        prefect_server: Path) -> None:
    name = movable()
    facts = before_move(rb_world, mgmt, name)
    p = params(rb_world, name, operation_id=new_operation_id())
    for step in ("dr-record-parent-on-source", "quiesce-control-plane", "dr-backup-etcd-on-source", "write-manifest",
                 "dr-delete-routes-on-source", "dr-dns-released-by-source", "dr-restore-on-destination",
                 "wait-destination", "dr-point-of-no-return", "dr-teardown-source"):
        run_flow_until_killed("flows.dr_migrate", "dr_migrate", p, prefect_server, step)
    report = dr_migrate(p)
    assert report.status == "succeeded", report.error
    assert_moved(rb_world, mgmt, mgmt2, name, **facts)
    # the last kill came after the teardown: the final run only went forward from there
    assert {s.name for s in report.steps if s.outcome == "resumed"} == {"dr-teardown-source"}
    assert [s.name for s in report.steps if s.outcome == "skipped"] == ["preflight"]


def test_rejected_teardown_holds_both_sides_then_rollback_brings_the_source_back(
        rb_world: World, mgmt: client.ApiClient, mgmt2: client.ApiClient, resident: str) -> None:
    from prefect.flow_runs import resume_flow_run

    from tests.runbooks.test_etcd_backup import _in_thread, _paused_run_of
    name = resident
    before = source_state(mgmt, name)
    p = params(rb_world, name, operation_id=new_operation_id(),
               approval={"poll_interval_seconds": 1, "timeout_seconds": 300})
    thread, out = _in_thread(lambda: dr_migrate(p, return_state=True))
    run = _paused_run_of(f"{NS}/{name}", timeout=240)
    held = {"source": source_state(mgmt, name), "destination_hc": _exists(lambda: client.CustomObjectsApi(
        mgmt2).get_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name))}
    resume_flow_run(run.id, run_input={"approved": False, "approver": "carol"})
    thread.join(120)
    with pytest.raises(Exception, match="rejected by carol"):
        out["state"].result()
    # held: the destination serves the cluster, the source stays paused and scaled down, nothing deleted
    assert held["destination_hc"] and _available(client.CustomObjectsApi(mgmt2), name)
    assert source_state(mgmt, name) == held["source"]
    assert held["source"]["pausedUntil"] == "true" and set(held["source"]["replicas"].values()) == {0}
    report = latest_report("dr-migrate", f"{NS}/{name}")
    assert "NOTHING UNDONE" in report and "--rollback" in report
    # the generic recover refuses (it would bring the source back beside the running copy)
    from flows.recover import RecoverParams, recover
    state = recover(RecoverParams(management=p.source.management, management_cluster="mgmt1",
                                  operation_id=p.operation_id), return_state=True)
    with pytest.raises(Exception, match="recover cannot put this operation back"):
        state.result()
    assert source_state(mgmt, name) == held["source"]
    # the deliberate way back
    back = dr_migrate(p.model_copy(update={"rollback": True}))
    assert back.status == "succeeded", back.error
    assert nothing_on(mgmt2, name) == []
    _back_on_source(rb_world, mgmt, name, before)
    hosted = hosted_api_client(mgmt, HostedClusterRef(NS, name))
    try:
        wait_for(lambda: _ready_nodes(hosted), "the node Ready through mgmt1", timeout=60)
    finally:
        hosted.close()


def test_a_deployment_run_suspends_at_the_teardown_gate_and_finishes_after_approve(
        prefect_server: Path, rb_world: World, mgmt: client.ApiClient, mgmt2: client.ApiClient,
        movable: Callable[..., str]) -> None:
    """On a deployment the gate suspends the run (no process held while it waits); the resumed run
    starts the flow again from the top, so everything before the gate must be safe to pass again."""
    from prefect import Flow
    from prefect.client.orchestration import get_client
    from prefect.exceptions import Pause
    from prefect.flow_engine import run_flow
    from typer.testing import CliRunner

    from cli.main import app
    from deployments import ensure_work_pool
    name = movable()
    facts = before_move(rb_world, mgmt, name)
    ensure_work_pool("hcp-test-pool")
    flow = Flow.from_source(source=str(Path(__file__).parents[2]), entrypoint="flows/dr_migrate.py:dr_migrate")
    deployment = flow.deploy(name="dr-migrate-test", work_pool_name="hcp-test-pool", build=False, push=False,
                             print_next_steps=False)
    p = params(rb_world, name, approval={"timeout_seconds": 600}).model_dump(mode="json")
    with get_client(sync_client=True) as c:
        flow_run = c.create_flow_run_from_deployment(deployment, parameters={"params": p})
    try:  # what a worker does: the run suspends and the process is free to exit
        run_flow(dr_migrate, flow_run=flow_run)
    except Pause:
        pass
    with get_client(sync_client=True) as c:
        suspended = c.read_flow_run(flow_run.id)
    assert suspended.state.is_paused() and suspended.state.name == "Suspended"
    # suspended: the destination serves, the source is paused and intact
    assert _available(client.CustomObjectsApi(mgmt2), name)
    assert source_state(mgmt, name)["pausedUntil"] == "true"
    result = CliRunner().invoke(app, ["approve", str(flow_run.id), "--approver", "hana", "--comment", "CHG-42"])
    assert result.exit_code == 0, result.output
    with get_client(sync_client=True) as c:
        resumed = c.read_flow_run(flow_run.id)
    report = run_flow(dr_migrate, flow_run=resumed)  # the worker picks the resumed run up again
    assert report.status == "succeeded", report.error
    assert any("approved by hana (CHG-42)" in a for a in report.approvals)
    assert_moved(rb_world, mgmt, mgmt2, name, **facts)
