"""What the disaster-recovery procedure relies on in the simulated world, observed through the API:
Cluster API objects restored on another management cluster are adopted (no new machine, instance
or node), the Cluster API controllers scaled down leave deleting machines to their finalizers, a
hosted API is reached through the management cluster its DNS record points at, and ovnkube-node
pods stay with the control plane they connected to until restarted.

Sources: cluster-api internal/controllers/machineset and machinedeployment (adoptOrphan: objects
matching the selector with no controller reference are adopted), cluster-api-provider-aws
AWSMachineReconciler.findInstance (an AWSMachine with a providerID gets that instance, never a
new one), cluster-api machine controller (paused Cluster or controllers down: nothing reconciles,
deletion included), HyperShift docs how-to/aws/disaster-recovery.md and
troubleshooting-disaster-recovery.md (Route53 records removed before the destination publishes;
OVN pods deleted after the move so new workloads get a network).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
from kubernetes import client, config

from hcp.cluster_objects import clean_for_recreate, policy_for
from hcpsim.apiserver import crds
from hcpsim.controllers.externaldns import ZoneView
from hcpsim.hypershift import kinds
from hcpsim.hypershift.hosted_api import OVN_NAMESPACE, DnsRouting
from hcpsim.hypershift.nodepool import NodePoolController
from tests.conformance.test_nodepools import CAPA, CAPI, HS, NS, World, pool_ready, ready_nodes, wait_for

CAPI_OBJECTS = (("awsmachinetemplates", CAPA, "v1beta2"), ("awsmachines", CAPA, "v1beta2"),
                ("machinedeployments", CAPI, "v1beta1"), ("machines", CAPI, "v1beta1"), ("machinesets", CAPI, "v1beta1"))


class TwoManagementClusters(World):
    """The NodePool world with a second management cluster whose NodePool controller shares the
    hosted APIs and the EC2 instances (as the world's mgmt1 and mgmt2 do)."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.mgmt2 = self.sim.add_cluster("mgmt2", load_crds=False)
        self.mgmt2.install_crds(kinds.builtin_definitions())
        if self.sim.crd_dir:
            self.mgmt2.install_crds(crds.load_crd_dir(self.sim.crd_dir))
        self.controller2 = NodePoolController(self.mgmt2, self.hosted, self.settings, instances=self.controller.instances)
        self.api2 = config.new_client_from_config(config_file=str(self.sim.kubeconfig()), context="mgmt2")
        self.custom2 = client.CustomObjectsApi(self.api2)
        self.core2 = client.CoreV1Api(self.api2)
        self.core2.create_namespace({"metadata": {"name": NS}})

    def close(self) -> None:
        self.controller2.close()
        self.api2.rest_client.pool_manager.clear()
        self.api2.close()
        super().close()

    def capi_down(self, cluster: str) -> None:
        """The Cluster API manager of this control plane scaled to 0, as the teardown does."""
        client.AppsV1Api(self.api).create_namespaced_deployment(f"{NS}-{cluster}", {
            "metadata": {"name": "cluster-api"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "cluster-api"}},
                     "template": {"metadata": {"labels": {"app": "cluster-api"}},
                                  "spec": {"containers": [{"name": "manager", "image": "quay.io/hypershift/capi:sim"}]}}}})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoManagementClusters]:
    w = TwoManagementClusters(tmp_path_factory.mktemp("dr-world"))
    yield w
    w.close()


def _uids(core: client.CoreV1Api, pool: str) -> dict[str, str]:
    return {n.metadata.name: n.metadata.uid for n in ready_nodes(core, pool)}


def test_restored_capi_objects_are_adopted_not_replaced(world: TwoManagementClusters) -> None:
    hc = world.hosted_cluster("iota")
    cluster_id = hc["spec"]["clusterID"]
    core = world.hosted_client(hc)
    world.nodepool("iota-workers", "iota", 2)
    wait_for(lambda: pool_ready(world, "iota", core, "iota-workers", 2), what="the pool on mgmt")
    nodes = _uids(core, "iota-workers")
    instances = {i.instance_id for i in world.controller.instances.running(cluster_id)}
    assert len(instances) == 2
    cp = f"{NS}-iota"

    # The source stops (paused pool), the backup is restored on mgmt2 without status, owners or finalizers.
    world.patch_np("iota-workers", {"spec": {"pausedUntil": "true"}})
    saved = {plural: [clean_for_recreate(o) for o in world.custom.list_namespaced_custom_object(group, version, cp, plural)["items"]]
             for plural, group, version in CAPI_OBJECTS}
    world.core2.create_namespace({"metadata": {"name": cp}})
    for secret in world.core.list_namespaced_secret(cp).items:
        if secret.type == "kubernetes.io/service-account-token":
            continue
        body = clean_for_recreate(world.api.sanitize_for_serialization(secret) | {"apiVersion": "v1", "kind": "Secret"})
        world.core2.create_namespaced_secret(cp, body)
    for plural, group, version in CAPI_OBJECTS:
        for obj in saved[plural]:
            world.custom2.create_namespaced_custom_object(group, version, cp, plural, obj)
    source_hc = world.custom.get_namespaced_custom_object(HS, "v1beta1", NS, "hostedclusters", "iota")
    restored = world.custom2.create_namespaced_custom_object(HS, "v1beta1", NS, "hostedclusters", clean_for_recreate(source_hc))
    restored["status"] = source_hc["status"]
    world.custom2.replace_namespaced_custom_object_status(HS, "v1beta1", NS, "hostedclusters", "iota", restored)
    pool = world.get_np("iota-workers")
    world.custom2.create_namespaced_custom_object(HS, "v1beta1", NS, "nodepools",
                                                  clean_for_recreate(pool, policy_for(pool, overrides={"spec.pausedUntil": None})))

    def settled() -> bool:
        machines = world.custom2.list_namespaced_custom_object(CAPI, "v1beta1", cp, "machines")["items"]
        np2 = world.custom2.get_namespaced_custom_object(HS, "v1beta1", NS, "nodepools", "iota-workers")
        return len(machines) == 2 and (np2.get("status") or {}).get("replicas") == 2 and all(
            (m.get("status") or {}).get("phase") == "Running" for m in machines)
    wait_for(settled, what="the restored pool Running on mgmt2")

    machines = world.custom2.list_namespaced_custom_object(CAPI, "v1beta1", cp, "machines")["items"]
    sets = world.custom2.list_namespaced_custom_object(CAPI, "v1beta1", cp, "machinesets")["items"]
    deployment = world.custom2.get_namespaced_custom_object(CAPI, "v1beta1", cp, "machinedeployments", "iota-workers")
    aws = world.custom2.list_namespaced_custom_object(CAPA, "v1beta2", cp, "awsmachines")["items"]
    assert {m["metadata"]["name"] for m in machines} == {m["metadata"]["name"] for m in saved["machines"]}
    assert {m["status"]["nodeRef"]["name"] for m in machines} == set(nodes)
    assert {ms["metadata"]["name"] for ms in sets} == {ms["metadata"]["name"] for ms in saved["machinesets"]}
    assert all(r["uid"] == deployment["metadata"]["uid"] for ms in sets for r in ms["metadata"]["ownerReferences"] if r.get("controller"))
    set_uids = {ms["metadata"]["uid"] for ms in sets}
    assert all(any(r.get("controller") and r["uid"] in set_uids for r in m["metadata"]["ownerReferences"]) for m in machines)
    assert all("machine.cluster.x-k8s.io" in m["metadata"]["finalizers"] for m in machines)
    assert {a["spec"]["instanceID"] for a in aws} == instances
    assert all(a["status"]["ready"] and "awsmachine.infrastructure.cluster.x-k8s.io" in a["metadata"]["finalizers"] for a in aws)
    assert {i.instance_id for i in world.controller.instances.running(cluster_id)} == instances
    assert _uids(core, "iota-workers") == nodes

    # The source's teardown with its Cluster API down: finalizers removed by hand, nothing drained.
    world.capi_down("iota")
    world.patch_np("iota-workers", {"metadata": {"finalizers": None}})
    world.custom.delete_namespaced_custom_object(HS, "v1beta1", NS, "nodepools", "iota-workers")
    for m in world.machines("iota"):
        world.custom.patch_namespaced_custom_object(CAPI, "v1beta1", cp, "machines", m["metadata"]["name"],
                                                    {"metadata": {"finalizers": None}})
    for plural, group, version in CAPI_OBJECTS:
        for obj in world.custom.list_namespaced_custom_object(group, version, cp, plural)["items"]:
            try:  # an object the garbage collector marked deleted goes with its finalizer
                world.custom.patch_namespaced_custom_object(group, version, cp, plural, obj["metadata"]["name"],
                                                            {"metadata": {"finalizers": None}})
                world.custom.delete_namespaced_custom_object(group, version, cp, plural, obj["metadata"]["name"])
            except client.ApiException as e:
                assert e.status == 404
    wait_for(lambda: not world.machines("iota"), what="the source's machines gone")
    time.sleep(0.3)
    assert _uids(core, "iota-workers") == nodes
    assert {i.instance_id for i in world.controller.instances.running(cluster_id)} == instances


def test_deleting_machines_wait_while_capi_is_down(world: TwoManagementClusters) -> None:
    hc = world.hosted_cluster("kappa")
    cluster_id = hc["spec"]["clusterID"]
    core = world.hosted_client(hc)
    world.nodepool("kappa-workers", "kappa", 1)
    wait_for(lambda: pool_ready(world, "kappa", core, "kappa-workers", 1), what="the pool")
    (node,) = _uids(core, "kappa-workers")
    (instance,) = [i.instance_id for i in world.controller.instances.running(cluster_id)]
    world.capi_down("kappa")
    (machine,) = world.machines("kappa", "kappa-workers")
    world.custom.delete_namespaced_custom_object(CAPI, "v1beta1", "clusters-kappa", "machines", machine["metadata"]["name"])
    time.sleep(0.3)  # several drain/terminate periods of these settings: nothing happens
    (held,) = world.machines("kappa", "kappa-workers")
    assert held["metadata"]["deletionTimestamp"] and held["metadata"]["finalizers"] == ["machine.cluster.x-k8s.io"]
    assert set(_uids(core, "kappa-workers")) == {node}
    assert [i.instance_id for i in world.controller.instances.running(cluster_id)] == [instance]

    # The controllers come back: the machine is drained, its instance terminated, and replaced.
    client.AppsV1Api(world.api).patch_namespaced_deployment_scale("cluster-api", "clusters-kappa", {"spec": {"replicas": 1}})
    wait_for(lambda: machine["metadata"]["name"] not in {m["metadata"]["name"] for m in world.machines("kappa")},
             what="the machine gone")
    wait_for(lambda: pool_ready(world, "kappa", core, "kappa-workers", 1), what="a replacement")
    assert node not in _uids(core, "kappa-workers")
    assert instance not in {i.instance_id for i in world.controller.instances.running(cluster_id)}


def test_hosted_api_is_reached_through_its_dns_record_and_ovn_stays_connected(world: TwoManagementClusters) -> None:
    hc = world.hosted_cluster("lambda")
    cluster_id = hc["spec"]["clusterID"]
    core = world.hosted_client(hc)
    api = world.hosted_api(hc)
    world.nodepool("lambda-workers", "lambda", 1)
    wait_for(lambda: pool_ready(world, "lambda", core, "lambda-workers", 1), what="the pool")
    wait_for(lambda: api.ovn_connections(), what="an ovnkube-node pod")
    assert set(api.ovn_connections().values()) == {"mgmt"}
    zone = ZoneView("zone.test")

    def point(router: str | None) -> None:
        record = {"Name": "api-lambda.zone.test.", "Type": "CNAME", "ResourceRecords": [{"Value": router or "x"}]}
        zone.apply([("DELETE" if router is None else "UPSERT", record)])

    def status() -> int:
        try:
            core.list_node(_request_timeout=2)
            return 200
        except client.ApiException as e:
            return e.status

    world.hosted.set_routing(DnsRouting(zone, {"router.mgmt.test": "mgmt", "router.mgmt2.test": "mgmt2"}))
    try:
        api.set_hostname("api-lambda.zone.test")
        assert status() == 503 and api.reached_via is None  # no record yet
        point("router.mgmt.test")
        assert status() == 200 and api.reached_via == "mgmt"
        point("router.mgmt2.test")  # the record moved, mgmt2 does not serve yet
        assert status() == 503
        world.hosted.set_serving(cluster_id, "mgmt2", True)
        assert status() == 200 and api.reached_via == "mgmt2"
        point(None)
        assert status() == 503
        point("router.mgmt2.test")
        world.hosted.set_serving(cluster_id, "mgmt", False)  # the source's control plane goes
        assert status() == 200

        # ovnkube-node is still connected to mgmt: a new pod gets no network; running pods run on.
        running = {p.metadata.name for p in core.list_namespaced_pod("demo-workload").items if p.status.phase == "Running"}
        core.create_namespaced_pod("default", {"metadata": {"name": "after-move"},
                                               "spec": {"containers": [{"name": "c", "image": "quay.io/sim/app:1"}]}})

        def waiting() -> str | None:
            pod = core.read_namespaced_pod("after-move", "default")
            states = pod.status.container_statuses or []
            return states[0].state.waiting.message if states and states[0].state.waiting else None
        assert "ovn-kubernetes" in wait_for(waiting, what="the new pod waiting for its network")
        assert core.read_namespaced_pod("after-move", "default").status.phase == "Pending"
        assert running <= {p.metadata.name for p in core.list_namespaced_pod("demo-workload").items if p.status.phase == "Running"}
        core.delete_collection_namespaced_pod(OVN_NAMESPACE)
        wait_for(lambda: set(api.ovn_connections().values()) == {"mgmt2"}, what="ovnkube-node reconnected to mgmt2")
        wait_for(lambda: core.read_namespaced_pod("after-move", "default").status.phase == "Running", what="the pod Running")

        # A hostname outside the zone external-dns manages: any serving management cluster answers.
        api.set_hostname("api.elsewhere.test")
        point(None)
        assert status() == 200
    finally:
        world.hosted.set_routing(None)
        api.set_hostname(None)
        world.hosted.set_serving(cluster_id, "mgmt", True)
        world.hosted.set_serving(cluster_id, "mgmt2", False)
