"""NodePools of a simulated management cluster and the hosted clusters' own API servers, observed
through the API only (the official client; kubectl where present). Setup helpers stand in for the
lead's HostedCluster controller: they create the control-plane namespace, the hosted API
(`HostedApis.ensure`), mark it served, and write the HostedCluster's status.version.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from kubernetes import client, config

from hcpsim import manifests
from hcpsim.apiserver import crds
from hcpsim.cluster import Simulator
from hcpsim.hypershift import kinds
from hcpsim.hypershift.hosted_api import OVN_APP, OVN_NAMESPACE, WORKLOAD_NAME, WORKLOAD_NAMESPACE, HostedApis
from hcpsim.hypershift.nodepool import NodePoolController, NodePoolSettings, release_version, validate_version_skew

HS = "hypershift.openshift.io"
CAPI = "cluster.x-k8s.io"
CAPA = "infrastructure.cluster.x-k8s.io"
NS = "clusters"
V4179 = "quay.io/openshift-release-dev/ocp-release:4.17.9-x86_64"
V4181 = "quay.io/openshift-release-dev/ocp-release:4.18.1-x86_64"
KUBECTL = shutil.which("kubectl")


# ----------------------------------------------------------------------------- the world


class World:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sim = Simulator(tmp / "sim", crd_dir="default")
        self.mgmt = self.sim.add_cluster("mgmt", load_crds=False)
        self.mgmt.install_crds(kinds.builtin_definitions())
        self.upstream = bool(self.sim.crd_dir)
        if self.sim.crd_dir:
            self.mgmt.install_crds(crds.load_crd_dir(self.sim.crd_dir))
        self.kubeconfig = self.sim.kubeconfig()
        self.api = config.new_client_from_config(config_file=str(self.kubeconfig), context="mgmt")
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.core.create_namespace({"metadata": {"name": NS}})
        self.hosted = HostedApis(self.sim)
        self.settings = NodePoolSettings(machine_boot_seconds=0.05, node_join_seconds=0.02, node_ready_seconds=0.02,
                                         node_drain_step_seconds=0.02, machine_terminate_seconds=0.02,
                                         inplace_update_seconds=0.05, resync_seconds=0.2)
        self.controller = NodePoolController(self.mgmt, self.hosted, self.settings)
        self._clients: list[client.ApiClient] = []

    def close(self) -> None:
        self.controller.close()
        for c in [*self._clients, self.api]:
            # Drop idle keep-alive connections first: a server shutting down waits for them.
            c.rest_client.pool_manager.clear()
            c.close()
        self.hosted.close()
        self.sim.close()

    # Stand-in for the lead's HostedCluster controller.

    def hosted_cluster(self, name: str, release: str = V4179, cp_version: str = "4.17.9") -> dict:
        cluster_id = str(uuid.uuid4())
        body = manifests.hosted_cluster(name, NS, release_image=release)
        body["spec"]["clusterID"] = cluster_id
        body["spec"]["infraID"] = f"{name}-x7k2p"
        hc = self.custom.create_namespaced_custom_object(HS, "v1beta1", NS, "hostedclusters", body)
        self.core.create_namespace({"metadata": {"name": f"{NS}-{name}"}})
        self.hosted.ensure(cluster_id, name)
        self.hosted.set_serving(cluster_id, "mgmt", True)
        self.set_cp_version(name, cp_version, release)
        return hc

    def set_cp_version(self, name: str, version: str, image: str) -> None:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        hc = self.custom.get_namespaced_custom_object(HS, "v1beta1", NS, "hostedclusters", name)
        history = [{"state": "Completed", "version": version, "image": image, "startedTime": now, "completionTime": now,
                    "verified": False}] + ((hc.get("status") or {}).get("version") or {}).get("history", [])
        # availableUpdates is required and nullable: a merge patch cannot send null, so replace the status.
        hc.setdefault("status", {})["version"] = {"desired": {"version": version, "image": image}, "history": history,
                                                  "observedGeneration": 1, "availableUpdates": None}
        self.custom.replace_namespaced_custom_object_status(HS, "v1beta1", NS, "hostedclusters", name, hc)

    def hosted_api(self, hc: dict):  # noqa: ANN201
        return self.hosted.get(hc["spec"]["clusterID"])

    def hosted_client(self, hc: dict) -> client.CoreV1Api:
        path = self.tmp / f"{hc['metadata']['name']}-admin.kubeconfig"
        path.write_text(self.hosted_api(hc).admin_kubeconfig())
        api = config.new_client_from_config(config_file=str(path))
        self._clients.append(api)
        return client.CoreV1Api(api)

    # NodePools through the API.

    def nodepool(self, name: str, cluster: str, replicas: int, *, upgrade: str = "Replace", release: str = V4179,
                 paused: str | None = None, drain_timeout: str | None = None) -> dict:
        management: dict[str, Any] = {"upgradeType": upgrade, "autoRepair": False}
        if upgrade == "Replace":
            management["replace"] = {"strategy": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        else:
            management["inPlace"] = {"maxUnavailable": 1}
        spec: dict[str, Any] = {
            "clusterName": cluster, "replicas": replicas, "management": management,
            "platform": {"type": "AWS", "aws": {"instanceType": "m5.xlarge", "instanceProfile": f"{cluster}-worker",
                                                 "subnet": {"id": "subnet-0a1b2c"}, "rootVolume": {"size": 120, "type": "gp3"}}},
            "release": {"image": release},
        }
        if paused:
            spec["pausedUntil"] = paused
        if drain_timeout:
            spec["nodeDrainTimeout"] = drain_timeout
        return self.custom.create_namespaced_custom_object(HS, "v1beta1", NS, "nodepools", {
            "apiVersion": f"{HS}/v1beta1", "kind": "NodePool", "metadata": {"name": name, "namespace": NS}, "spec": spec})

    def get_np(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(HS, "v1beta1", NS, "nodepools", name)

    def patch_np(self, name: str, patch: dict) -> dict:
        return self.custom.patch_namespaced_custom_object(HS, "v1beta1", NS, "nodepools", name, patch)

    def machines(self, cluster: str, np: str | None = None) -> list[dict]:
        items = self.custom.list_namespaced_custom_object(CAPI, "v1beta1", f"{NS}-{cluster}", "machines")["items"]
        return [m for m in items if np is None or (m["metadata"].get("annotations") or {}).get(f"{HS}/nodePool") == f"{NS}/{np}"]

    def capi(self, cluster: str, plural: str, group: str = CAPI, version: str = "v1beta1") -> list[dict]:
        return self.custom.list_namespaced_custom_object(group, version, f"{NS}-{cluster}", plural)["items"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("nodepools"))
    yield w
    w.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except client.ApiException as e:
            last = e
            if e.status not in (404, 409, 503):
                raise
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def condition(obj: dict, ctype: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), {})


def ready_nodes(core: client.CoreV1Api, np: str) -> list[Any]:
    nodes = core.list_node(label_selector=f"{HS}/nodePool={np}").items
    return [n for n in nodes if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])]


def pool_ready(world: World, cluster: str, core: client.CoreV1Api, np: str, n: int, version: str | None = None) -> bool:
    pool = world.get_np(np)
    status = pool.get("status") or {}
    return (len(ready_nodes(core, np)) == n and status.get("replicas") == n
            and len([m for m in world.machines(cluster, np) if (m.get("status") or {}).get("phase") == "Running"]) == n
            and len(world.machines(cluster, np)) == n
            and (version is None or status.get("version") == version))


# ----------------------------------------------------------------------------- pure functions


def test_release_version_and_skew_rules() -> None:
    assert release_version(V4179) == "4.17.9"
    assert release_version("quay.io/openshift-release-dev/ocp-release:4.18.0-rc.1-multi") == "4.18.0-rc.1"
    assert release_version("quay.io/openshift-release-dev/ocp-release@sha256:abc") is None
    assert validate_version_skew("4.18.5", "4.18.5") is None
    assert validate_version_skew("4.18.0", "4.15.0") is None  # n-3
    assert validate_version_skew("4.18.5", "4.19.0") == "NodePool version 4.19.0 cannot be higher than the HostedCluster version 4.18.5"
    assert validate_version_skew("4.18.0", "4.14.0") == ("NodePool minor version 4.14 is less than 4.15, which is the minimum "
                                                         "NodePool version compatible with the 4.18 HostedCluster")


# ----------------------------------------------------------------------------- scenarios


def test_replicas_machines_nodes_and_scale(world: World) -> None:
    hc = world.hosted_cluster("alpha")
    core = world.hosted_client(hc)
    world.nodepool("alpha-workers", "alpha", 2)
    wait_for(lambda: pool_ready(world, "alpha", core, "alpha-workers", 2, "4.17.9"), what="2 running machines and Ready nodes")

    # CAPI objects as HyperShift renders them.
    md = world.capi("alpha", "machinedeployments")[0]
    assert md["metadata"]["name"] == "alpha-workers"
    assert md["metadata"]["labels"]["cluster.x-k8s.io/cluster-name"] == "alpha-x7k2p"
    assert md["metadata"]["annotations"][f"{HS}/nodePool"] == f"{NS}/alpha-workers"
    assert md["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert md["spec"]["template"]["spec"]["version"] == "4.17.9"
    assert md["spec"]["template"]["spec"]["infrastructureRef"]["kind"] == "AWSMachineTemplate"
    templates = world.capi("alpha", "awsmachinetemplates", CAPA, "v1beta2")
    assert [t["metadata"]["name"] for t in templates] == [md["spec"]["template"]["spec"]["infrastructureRef"]["name"]]
    assert templates[0]["spec"]["template"]["spec"]["instanceType"] == "m5.xlarge"
    machines = world.machines("alpha", "alpha-workers")
    for m in machines:
        assert "machine.cluster.x-k8s.io" in m["metadata"]["finalizers"]
        assert m["metadata"]["labels"]["cluster.x-k8s.io/cluster-name"] == "alpha-x7k2p"
        assert m["metadata"]["ownerReferences"][0]["kind"] == "MachineSet"
        assert m["status"]["phase"] == "Running" and m["status"]["nodeRef"]["kind"] == "Node"
        assert m["spec"]["providerID"].startswith("aws:///us-east-1a/i-")
    aws_machines = world.capi("alpha", "awsmachines", CAPA, "v1beta2")
    assert sorted(a["metadata"]["name"] for a in aws_machines) == sorted(m["metadata"]["name"] for m in machines)
    assert all(a["status"]["ready"] and a["status"]["instanceState"] == "running" for a in aws_machines)

    # Nodes in the hosted cluster, reached through its admin kubeconfig.
    nodes = ready_nodes(core, "alpha-workers")
    assert sorted(n.metadata.name for n in nodes) == sorted(m["status"]["nodeRef"]["name"] for m in machines)
    for n in nodes:
        assert n.metadata.name.startswith("ip-10-0-") and n.metadata.name.endswith(".ec2.internal")
        assert n.metadata.labels["node.kubernetes.io/instance-type"] == "m5.xlarge"
        assert n.status.node_info.kubelet_version == "v1.30.6"

    # ovnkube-node: one pod per node.
    def ovn_per_node() -> bool:
        pods = core.list_namespaced_pod(OVN_NAMESPACE, label_selector=f"app={OVN_APP}").items
        live = [p for p in pods if p.metadata.deletion_timestamp is None]
        return sorted(p.spec.node_name for p in live) == sorted(n.metadata.name for n in ready_nodes(core, "alpha-workers"))
    wait_for(ovn_per_node, what="one ovnkube-node pod per node")

    pool = world.get_np("alpha-workers")
    for ctype, status in (("Ready", "True"), ("AllNodesHealthy", "True"), ("AllMachinesReady", "True"),
                          ("ReconciliationActive", "True"), ("SupportedVersionSkew", "True"), ("UpdatingVersion", "False")):
        assert condition(pool, ctype).get("status") == status, (ctype, condition(pool, ctype))
    assert f"{HS}/finalizer" in pool["metadata"]["finalizers"]

    # Scale to 0 through the scale subresource, then back to 2 (kubectl where present).
    world.custom.patch_namespaced_custom_object_scale(HS, "v1beta1", NS, "nodepools", "alpha-workers", {"spec": {"replicas": 0}})
    wait_for(lambda: pool_ready(world, "alpha", core, "alpha-workers", 0) and not core.list_node().items, what="scale to 0")
    wait_for(lambda: not core.list_namespaced_pod(OVN_NAMESPACE).items, what="ovnkube pods gone with their nodes")
    assert world.capi("alpha", "awsmachines", CAPA, "v1beta2") == []
    if KUBECTL:
        env = dict(os.environ, KUBECACHEDIR=str(world.tmp / "kubecache"))
        subprocess.run([KUBECTL, "--kubeconfig", str(world.kubeconfig), "--context", "mgmt", "-n", NS, "scale", "nodepool/alpha-workers",
                        "--replicas=2"], check=True, capture_output=True, env=env, timeout=30)
    else:
        world.patch_np("alpha-workers", {"spec": {"replicas": 2}})
    wait_for(lambda: pool_ready(world, "alpha", core, "alpha-workers", 2), what="scale back to 2")
    wait_for(ovn_per_node, what="ovnkube pods back")


def test_workload_deployment_runs_on_nodes(world: World) -> None:
    try:
        from hcpsim.controllers import workloads
        hc = world.hosted_cluster("wl")
        backend = world.hosted_api(hc).cluster.backend
        already = workloads._RUNNING.get(id(backend))  # the world may start them in every SimCluster
        controllers = workloads.start_workload_controllers(world.hosted_api(hc).cluster)
    except ImportError as e:
        pytest.skip(f"the Deployment/ReplicaSet controllers are not available yet ({e})")
    try:
        core = world.hosted_client(hc)
        world.nodepool("wl-workers", "wl", 2)
        wait_for(lambda: pool_ready(world, "wl", core, "wl-workers", 2), what="nodes")

        def running() -> bool:
            pods = core.list_namespaced_pod(WORKLOAD_NAMESPACE, label_selector=f"app={WORKLOAD_NAME}").items
            return len([p for p in pods if p.status.phase == "Running" and p.spec.node_name]) == 2
        wait_for(running, what="hello pods running")
    finally:
        if already is None:
            controllers.close()


def test_replace_upgrade_surges_and_keeps_capacity(world: World) -> None:
    hc = world.hosted_cluster("beta")
    core = world.hosted_client(hc)
    world.nodepool("beta-workers", "beta", 2)
    wait_for(lambda: pool_ready(world, "beta", core, "beta-workers", 2, "4.17.9"), what="initial pool")
    old_machines = {m["metadata"]["name"] for m in world.machines("beta", "beta-workers")}
    world.set_cp_version("beta", "4.18.1", V4181)  # the control plane went first
    world.patch_np("beta-workers", {"spec": {"release": {"image": V4181}}})

    min_ready, max_machines, saw_updating, versions = 99, 0, False, set()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pool = world.get_np("beta-workers")
        machines = world.machines("beta", "beta-workers")
        min_ready = min(min_ready, len(ready_nodes(core, "beta-workers")))
        max_machines = max(max_machines, len(machines))
        saw_updating |= condition(pool, "UpdatingVersion").get("status") == "True"
        versions.add((pool.get("status") or {}).get("version"))
        names_now = {m["metadata"]["name"] for m in machines}
        if (pool.get("status") or {}).get("version") == "4.18.1":
            assert not (names_now & old_machines), "status.version flipped before every machine was replaced"
            break
        time.sleep(0.01)
    else:
        raise AssertionError("the Replace upgrade did not complete")
    assert saw_updating
    assert versions <= {"4.17.9", "4.18.1"}
    assert min_ready >= 2, f"ready nodes dropped to {min_ready} (maxUnavailable 0)"
    assert max_machines <= 3, f"{max_machines} machines at once (maxSurge 1)"
    wait_for(lambda: pool_ready(world, "beta", core, "beta-workers", 2, "4.18.1"), what="upgraded pool")
    machines = world.machines("beta", "beta-workers")
    assert all(m["spec"]["version"] == "4.18.1" for m in machines)
    assert all(n.status.node_info.kubelet_version == "v1.31.6" for n in ready_nodes(core, "beta-workers"))
    assert len(world.capi("beta", "machinesets")) == 1  # the old MachineSet went away
    assert len(world.capi("beta", "awsmachinetemplates", CAPA, "v1beta2")) == 1
    pool = world.get_np("beta-workers")
    assert condition(pool, "UpdatingVersion")["status"] == "False"


def test_inplace_upgrade_one_node_at_a_time(world: World) -> None:
    hc = world.hosted_cluster("gamma")
    core = world.hosted_client(hc)
    world.nodepool("gamma-workers", "gamma", 2, upgrade="InPlace")
    wait_for(lambda: pool_ready(world, "gamma", core, "gamma-workers", 2, "4.17.9"), what="initial pool")
    assert world.capi("gamma", "machinedeployments") == []
    ms = world.capi("gamma", "machinesets")[0]
    assert ms["metadata"]["name"] == "gamma-workers"
    machines_before = sorted(m["metadata"]["name"] for m in world.machines("gamma", "gamma-workers"))
    nodes_before = sorted(n.metadata.name for n in ready_nodes(core, "gamma-workers"))
    world.set_cp_version("gamma", "4.18.1", V4181)
    world.patch_np("gamma-workers", {"spec": {"release": {"image": V4181}}})

    max_cordoned, saw_updating = 0, False
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pool = world.get_np("gamma-workers")
        nodes = core.list_node(label_selector=f"{HS}/nodePool=gamma-workers").items
        max_cordoned = max(max_cordoned, sum(1 for n in nodes if n.spec.unschedulable))
        saw_updating |= condition(pool, "UpdatingVersion").get("status") == "True"
        if (pool.get("status") or {}).get("version") == "4.18.1":
            break
        time.sleep(0.005)
    else:
        raise AssertionError("the InPlace upgrade did not complete")
    assert saw_updating
    assert max_cordoned == 1, f"{max_cordoned} nodes updated at once (maxUnavailable 1)"
    wait_for(lambda: pool_ready(world, "gamma", core, "gamma-workers", 2, "4.18.1"), what="upgraded pool")
    assert sorted(m["metadata"]["name"] for m in world.machines("gamma", "gamma-workers")) == machines_before
    nodes = core.list_node(label_selector=f"{HS}/nodePool=gamma-workers").items
    assert sorted(n.metadata.name for n in nodes) == nodes_before
    assert all(n.status.node_info.kubelet_version == "v1.31.6" and not n.spec.unschedulable for n in nodes)
    ms = world.capi("gamma", "machinesets")[0]
    ann = ms["metadata"]["annotations"]
    assert ann[f"{HS}/nodePoolCurrentConfigVersion"] == ann[f"{HS}/nodePoolTargetConfigVersion"]


def test_version_skew_refused(world: World) -> None:
    hc = world.hosted_cluster("delta")
    core = world.hosted_client(hc)
    world.nodepool("delta-workers", "delta", 1)
    wait_for(lambda: pool_ready(world, "delta", core, "delta-workers", 1, "4.17.9"), what="initial pool")
    machines = sorted(m["metadata"]["name"] for m in world.machines("delta", "delta-workers"))
    world.patch_np("delta-workers", {"spec": {"release": {"image": V4181}}})  # newer than the 4.17.9 control plane

    def refused() -> dict | None:
        c = condition(world.get_np("delta-workers"), "SupportedVersionSkew")
        return c if c.get("status") == "False" else None
    c = wait_for(refused, what="SupportedVersionSkew=False")
    assert c["reason"] == "UnsupportedSkew"
    assert c["message"] == "NodePool version 4.18.1 cannot be higher than the HostedCluster version 4.17.9"
    time.sleep(0.5)
    assert sorted(m["metadata"]["name"] for m in world.machines("delta", "delta-workers")) == machines
    md = world.capi("delta", "machinedeployments")[0]
    assert md["spec"]["template"]["spec"]["version"] == "4.17.9"
    pool = world.get_np("delta-workers")
    assert pool["status"]["version"] == "4.17.9"
    assert condition(pool, "UpdatingVersion")["status"] == "False"
    # Once the control plane is at 4.18.1 the pool follows.
    world.set_cp_version("delta", "4.18.1", V4181)
    wait_for(lambda: pool_ready(world, "delta", core, "delta-workers", 1, "4.18.1"), what="rollout after the control plane")
    assert condition(world.get_np("delta-workers"), "SupportedVersionSkew")["status"] == "True"


def test_paused_nodepool_and_hosted_cluster(world: World) -> None:
    hc = world.hosted_cluster("eps")
    core = world.hosted_client(hc)
    world.nodepool("eps-workers", "eps", 1, paused="true")

    def paused_condition() -> dict | None:
        c = condition(world.get_np("eps-workers"), "ReconciliationActive")
        return c if c.get("status") == "False" else None
    c = wait_for(paused_condition, what="ReconciliationActive=False")
    assert c["reason"] == "ReconciliationPaused" and c["message"] == "Reconciliation paused until field removed"
    time.sleep(0.4)
    assert world.machines("eps", "eps-workers") == [] and world.capi("eps", "machinedeployments") == []
    world.patch_np("eps-workers", {"spec": {"pausedUntil": None}})
    wait_for(lambda: pool_ready(world, "eps", core, "eps-workers", 1), what="pool after unpause")

    # The HostedCluster's pausedUntil (a time in the future) pauses all its pools.
    until = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    world.custom.patch_namespaced_custom_object(HS, "v1beta1", NS, "hostedclusters", "eps", {"spec": {"pausedUntil": until}})
    wait_for(lambda: condition(world.get_np("eps-workers"), "ReconciliationActive").get("message") ==
             f"Reconciliation paused until: {until}", what="paused by the HostedCluster")
    md = world.capi("eps", "machinedeployments")[0]
    assert md["metadata"]["annotations"].get("cluster.x-k8s.io/paused") == "true"
    world.patch_np("eps-workers", {"spec": {"replicas": 2}})
    time.sleep(0.5)
    assert len(world.machines("eps", "eps-workers")) == 1
    world.custom.patch_namespaced_custom_object(HS, "v1beta1", NS, "hostedclusters", "eps", {"spec": {"pausedUntil": None}})
    wait_for(lambda: pool_ready(world, "eps", core, "eps-workers", 2), what="scaled after the HostedCluster is unpaused")
    assert "cluster.x-k8s.io/paused" not in world.capi("eps", "machinedeployments")[0]["metadata"].get("annotations", {})


def test_hosted_api_unavailable_keeps_nodes_and_pods(world: World) -> None:
    hc = world.hosted_cluster("zeta")
    core = world.hosted_client(hc)
    cluster_id = hc["spec"]["clusterID"]
    world.nodepool("zeta-workers", "zeta", 2)
    wait_for(lambda: pool_ready(world, "zeta", core, "zeta-workers", 2), what="initial pool")
    nodes = sorted(n.metadata.name for n in ready_nodes(core, "zeta-workers"))
    wait_for(lambda: len(core.list_namespaced_pod(OVN_NAMESPACE).items) == 2, what="ovnkube pods")
    pods = sorted(p.metadata.name for p in core.list_namespaced_pod(OVN_NAMESPACE).items)

    world.hosted.set_serving(cluster_id, "mgmt", False)  # the control plane went away
    with pytest.raises(client.ApiException) as err:
        core.list_node()
    assert err.value.status == 503
    # Scaling up meanwhile: the machine boots, but its node cannot register yet.
    world.patch_np("zeta-workers", {"spec": {"replicas": 3}})
    wait_for(lambda: any((m.get("status") or {}).get("phase") == "Provisioned" for m in world.machines("zeta", "zeta-workers")),
             what="a provisioned machine")
    time.sleep(0.3)
    assert sum(1 for m in world.machines("zeta", "zeta-workers") if (m.get("status") or {}).get("phase") == "Running") == 2

    world.hosted.set_serving(cluster_id, "mgmt-2", True)  # served again (from another management cluster)
    assert sorted(n.metadata.name for n in core.list_node(label_selector=f"{HS}/nodePool=zeta-workers").items
                  if n.metadata.name in nodes) == nodes
    assert all(n.metadata.name not in nodes or any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
               for n in core.list_node().items)
    assert set(pods) <= {p.metadata.name for p in core.list_namespaced_pod(OVN_NAMESPACE).items}
    wait_for(lambda: pool_ready(world, "zeta", core, "zeta-workers", 3), what="the third node after the API came back")
    world.hosted.set_serving(cluster_id, "mgmt-2", False)
    world.hosted.set_serving(cluster_id, "mgmt", True)


def test_outage_longer_than_grace_marks_nodes_unknown(world: World) -> None:
    hc = world.hosted_cluster("eta")
    core = world.hosted_client(hc)
    cluster_id = hc["spec"]["clusterID"]
    world.nodepool("eta-workers", "eta", 1)
    wait_for(lambda: pool_ready(world, "eta", core, "eta-workers", 1), what="initial pool")
    world.controller.settings.api_unreachable_grace_seconds = 0.2
    try:
        world.hosted.set_serving(cluster_id, "mgmt", False)
        time.sleep(0.6)
        world.controller.settings.node_ready_seconds = 0.5
        world.hosted.set_serving(cluster_id, "mgmt", True)
        node = core.list_node(label_selector=f"{HS}/nodePool=eta-workers").items[0]
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        assert ready.status == "Unknown" and ready.reason == "NodeStatusUnknown"
        wait_for(lambda: len(ready_nodes(core, "eta-workers")) == 1, what="node Ready again")
    finally:
        world.controller.settings.api_unreachable_grace_seconds = 3600.0
        world.controller.settings.node_ready_seconds = 0.02


def test_deleting_nodepool_drains_and_cleans_up(world: World) -> None:
    hc = world.hosted_cluster("theta")
    core = world.hosted_client(hc)
    world.nodepool("theta-workers", "theta", 2, drain_timeout="2s")
    wait_for(lambda: pool_ready(world, "theta", core, "theta-workers", 2), what="initial pool")
    world.custom.delete_namespaced_custom_object(HS, "v1beta1", NS, "nodepools", "theta-workers")

    def gone() -> bool:
        try:
            world.get_np("theta-workers")
            return False
        except client.ApiException as e:
            return e.status == 404
    wait_for(gone, what="NodePool gone")
    assert world.machines("theta") == []
    assert world.capi("theta", "awsmachines", CAPA, "v1beta2") == []
    assert world.capi("theta", "awsmachinetemplates", CAPA, "v1beta2") == []
    assert core.list_node().items == []


def test_settings_realistic() -> None:
    real = NodePoolSettings.realistic()
    assert real.machine_boot_seconds >= 60 and real.inplace_update_seconds >= 60
    assert json.dumps(real.__dict__)
