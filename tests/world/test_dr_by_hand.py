"""HyperShift's disaster-recovery procedure, done by hand on the simulated world: a hosted cluster
moves from mgmt1 to mgmt2 with its workloads running throughout.

The steps are those of docs/content/how-to/aws/disaster-recovery.md and of the script it points to
(contrib/migration/migrate-hcp.sh), with kubectl where the page runs `oc` and the official client
where it runs yq/sed on YAML files, and with the script's known bugs fixed (issue 6):
- each etcd member's own snapshot is uploaded under its name (the script runs `curl` in etcd-0 for
  every member, so all three objects hold etcd-0's file), and the restore uses the one with the
  highest revision;
- the HostedCluster gets ONE restoreSnapshotURL (the script writes one per member; the CRD allows
  one, and the test shows the script's list refused);
- objects are cleaned with hcp.cluster_objects instead of `sed -i ''` (BSD only);
- lookups the page gets wrong on today's clusters are done right: the AWSCluster and the
  AWSMachineTemplates are named after the infraID / `<nodepool>-<hash>`, not the HostedCluster or
  NodePool name; HC-namespace secrets are those named `<cluster>-*` (a bare `grep ^<name>` also
  takes other clusters' secrets whose names start the same).

What a migration must guarantee is asserted: every etcd key written before the backup is on the
destination; the hosted cluster's nodes stay Ready throughout (watched from the data plane, since
the hosted API itself is away for part of the move, and through the API whenever it answers);
the API hostname's Route53 record points at mgmt2 at the end; mgmt1 has nothing of the cluster
left; the HostedCluster on mgmt2 passes the real CRD validation with one restoreSnapshotURL; no
EC2 instance is launched or terminated; after the OVN pods are restarted new pods get a network.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from kubernetes import client, config

from hcp.cluster_objects import clean_for_recreate, policy_for
from hcpsim.etcd import etcd_binary
from hcpsim.hypershift.control_plane import router_hostname
from hcpsim.hypershift.etcd_writer import EtcdClient, client_for_namespace
from hcpsim.hypershift.hosted_api import OVN_NAMESPACE, WORKLOAD_NAME, WORKLOAD_NAMESPACE
from hcpsim.world import World
from tests.conftest import KUBECTL
from tests.world.conftest import wait_for

HS, HSV = "hypershift.openshift.io", "v1beta1"
CAPI, CAPIV = "cluster.x-k8s.io", "v1beta1"
CAPA, CAPAV = "infrastructure.cluster.x-k8s.io", "v1beta2"
NS = "clusters"
ETCDCTL = ["env", "ETCDCTL_API=3", "/usr/bin/etcdctl", "--cacert", "/etc/etcd/tls/etcd-ca/ca.crt",
           "--cert", "/etc/etcd/tls/client/etcd-client.crt", "--key", "/etc/etcd/tls/client/etcd-client.key",
           "--endpoints=localhost:2379"]
QUIESCED = ("kube-apiserver", "openshift-apiserver", "openshift-oauth-apiserver", "control-plane-operator")
NODE_POOL_REPLICAS = 2
# Kind, group, version, plural of what the page backs up from the control-plane namespace, in its
# restore order (the script: secrets, hcp, cl, awscl, awsmt, awsm, machinedeployment, machine, machineset).
CP_OBJECTS = (("HostedControlPlane", HS, HSV, "hostedcontrolplanes"), ("Cluster", CAPI, CAPIV, "clusters"),
              ("AWSCluster", CAPA, CAPAV, "awsclusters"), ("AWSMachineTemplate", CAPA, CAPAV, "awsmachinetemplates"),
              ("AWSMachine", CAPA, CAPAV, "awsmachines"), ("MachineDeployment", CAPI, CAPIV, "machinedeployments"),
              ("Machine", CAPI, CAPIV, "machines"), ("MachineSet", CAPI, CAPIV, "machinesets"))


def _kubectl(world: World, context: str | None, *args: str, kubeconfig: Path | None = None, check: bool = True) -> str:
    if KUBECTL is None:
        pytest.skip("kubectl is not on PATH")
    cmd = [KUBECTL, "--kubeconfig", str(kubeconfig or world.kubeconfig_path)]
    if context:
        cmd += ["--context", context]
    result = subprocess.run([*cmd, *args], capture_output=True, timeout=120)
    if result.returncode != 0 and check:
        raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr.decode()}")
    return result.stdout.decode()


def _condition(obj: dict, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True" for c in (obj.get("status") or {}).get("conditions") or [])


def _ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def _gone(read: Callable[[], Any]) -> bool:
    try:
        read()
        return False
    except client.ApiException as e:
        if e.status == 404:
            return True
        raise


class DataPlaneWatch:
    """The hosted cluster's nodes as their kubelets report them (the hosted store: it answers while
    the API does not) and as the API shows them whenever it answers; the API's unavailable window."""

    def __init__(self, world: World, cluster_id: str, hosted: client.ApiClient) -> None:
        self.api = world.hosted.get(cluster_id)
        self.problems: list[str] = []
        self.outages: list[tuple[float, float]] = []
        self._down_since: float | None = None
        self._stop = threading.Event()
        self._hosted = client.CoreV1Api(hosted)
        self._unsubscribe = self.api.cluster.backend.store.subscribe(self._on_event)
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _on_event(self, event: Any) -> None:
        if event.key != ("", "nodes"):
            return
        if event.type == "DELETED":
            self.problems.append(f"node {event.name} deleted")
        elif not any(c.get("type") == "Ready" and c.get("status") == "True"
                     for c in (event.obj.get("status") or {}).get("conditions") or []):
            self.problems.append(f"node {event.name} not Ready")

    def _poll(self) -> None:
        while not self._stop.wait(0.1):
            try:
                nodes = self._hosted.list_node(_request_timeout=2).items
            except client.ApiException as e:
                if e.status != 503:
                    self.problems.append(f"hosted API: {e.status} {e.reason}")
                if self._down_since is None:
                    self._down_since = time.monotonic()
                continue
            if self._down_since is not None:
                self.outages.append((self._down_since, time.monotonic()))
                self._down_since = None
            self.problems += [f"API shows node {n.metadata.name} not Ready" for n in nodes if not _ready(n)]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._unsubscribe()


def test_disaster_recovery_by_hand_moves_the_cluster_to_mgmt2(world: World, mgmt1: client.ApiClient,
                                                               mgmt2: client.ApiClient, tmp_path: Path) -> None:
    name = f"dr{uuid.uuid4().hex[:5]}"
    cp = f"{NS}-{name}"
    s3 = world.aws.client("s3")
    r53 = world.aws.client("route53")
    src_custom, src_core, src_apps = client.CustomObjectsApi(mgmt1), client.CoreV1Api(mgmt1), client.AppsV1Api(mgmt1)
    dst_custom, dst_core = client.CustomObjectsApi(mgmt2), client.CoreV1Api(mgmt2)

    # A HighlyAvailable cluster (three etcd members) with two nodes, on mgmt1.
    world.create_hosted_cluster(name, availability="HighlyAvailable")
    src_custom.patch_namespaced_custom_object(HS, HSV, NS, "nodepools", name, {"spec": {"replicas": NODE_POOL_REPLICAS}})
    hc = wait_for(lambda: (lambda h: h if _condition(h, "Available") else None)(
        src_custom.get_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name)), "cluster Available on mgmt1", timeout=120)
    cluster_id = hc["spec"]["clusterID"]
    hosted_api = world.hosted.get(cluster_id)
    secret = wait_for(lambda: _secret(src_core, f"{name}-admin-kubeconfig"), "admin kubeconfig", timeout=60)
    hc_kubeconfig = tmp_path / "hosted.kubeconfig"
    hc_kubeconfig.write_bytes(base64.b64decode(secret.data["kubeconfig"]))
    hosted = config.new_client_from_config(config_file=str(hc_kubeconfig))
    hosted_core = client.CoreV1Api(hosted)

    def ready_nodes() -> list[Any]:
        try:
            return [n for n in hosted_core.list_node(_request_timeout=5).items if _ready(n)]
        except client.ApiException:
            return []

    wait_for(lambda: len(ready_nodes()) == NODE_POOL_REPLICAS, "two Ready nodes", timeout=90)
    wait_for(lambda: (src_custom.get_namespaced_custom_object(HS, HSV, NS, "nodepools", name).get("status") or {}).get("version"),
             "the node pool settled", timeout=60)
    nodes_before = {n.metadata.name: n.metadata.uid for n in ready_nodes()}
    instances_before = {i.instance_id for i in world.instances.running(cluster_id)}
    assert len(instances_before) == NODE_POOL_REPLICAS
    src_etcd = wait_for(lambda: client_for_namespace(world.cluster("mgmt1").backend, cp), "etcd client", timeout=60)
    wait_for(lambda: _count(src_etcd) >= 20, "the API servers writing keys", timeout=60)
    assert hosted_api.reached_via == "mgmt1"

    # Preflight the page takes for granted: both management clusters run the operator with a
    # supported-versions that covers the cluster's version; the API is published through external DNS.
    version = hc["status"]["version"]["desired"]["version"]
    for core in (src_core, dst_core):
        supported = json.loads(core.read_namespaced_config_map("supported-versions", "hypershift").data["supported-versions"])
        assert version.rsplit(".", 1)[0] in supported["versions"]
    api_host = f"api-{name}.{world.settings.external_dns_domain}"
    assert _records(r53, world, name)[api_host + "."]["targets"] == [router_hostname("mgmt1")]

    # Nodes whose kubelets cannot post status for longer than this turn Ready=Unknown (the
    # Kubernetes node-monitor-grace-period, 40 s): the move must keep the API's outage shorter.
    grace = world.settings.nodepools.api_unreachable_grace_seconds
    world.settings.nodepools.api_unreachable_grace_seconds = 40.0
    watch = DataPlaneWatch(world, cluster_id, hosted)
    try:
        # ---- Backup (on mgmt1) ------------------------------------------------------------------
        # 1. Mark the hosted cluster with the management cluster it comes from.
        client.CoreV1Api(hosted).create_namespaced_config_map("default", {
            "metadata": {"name": "mgmt-parent-cluster"}, "data": {"from": "mgmt1"}})
        # 2. Pause the HostedCluster and its NodePools; scale the API servers and the CPO to 0.
        nodepools = [p["metadata"]["name"] for p in src_custom.list_namespaced_custom_object(HS, HSV, NS, "nodepools")["items"]
                     if p["spec"]["clusterName"] == name]
        assert nodepools == [name]
        src_custom.patch_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name, {"spec": {"pausedUntil": "true"}})
        for pool in nodepools:
            src_custom.patch_namespaced_custom_object(HS, HSV, NS, "nodepools", pool, {"spec": {"pausedUntil": "true"}})
        _kubectl(world, "mgmt1", "scale", "deployment", "-n", cp, "--replicas=0", *QUIESCED)
        wait_for(lambda: all(not (src_apps.read_namespaced_deployment(d, cp).status.ready_replicas or 0) for d in QUIESCED),
                 "API servers and CPO down")
        wait_for(lambda: not hosted_api.serving, "the hosted API away")
        keys_at_backup, revision_at_backup = src_etcd.keys("/registry/")
        time.sleep(0.3)
        assert src_etcd.keys("/registry/")[1] == revision_at_backup, "etcd written to with the API servers scaled to 0"
        assert len(keys_at_backup) >= 20

        # 3. Each member's own snapshot, checked and uploaded under its own name (script bug fixed).
        members = sorted(p.metadata.name for p in src_core.list_namespaced_pod(cp, label_selector="app=etcd").items)
        assert members == ["etcd-0", "etcd-1", "etcd-2"]
        revisions: dict[str, int] = {}
        for pod in members:
            _kubectl(world, "mgmt1", "exec", pod, "-n", cp, "-c", "etcd", "--", *ETCDCTL, "snapshot", "save",
                     "/var/lib/data/snapshot.db")
            local = tmp_path / f"{name}-{pod}-snapshot.db"
            _kubectl(world, "mgmt1", "cp", "-c", "etcd", f"{cp}/{pod}:/var/lib/data/snapshot.db", str(local))
            status = json.loads(subprocess.run([str(etcd_binary("etcdutl")), "snapshot", "status", str(local), "-w", "json"],
                                               capture_output=True, check=True, text=True).stdout)
            revisions[pod] = int(status["revision"])
            s3.upload_file(str(local), world.aws.bucket, f"{name}-{pod}-snapshot.db")
        assert min(revisions.values()) >= revision_at_backup - 1
        newest = max(revisions, key=lambda p: revisions[p])

        # 4. The objects, cleaned for re-creation (status and server-set metadata removed).
        backup = tmp_path / "backup"
        saved: dict[str, list[dict]] = {"hc-ns-secrets": [], "cp-secrets": []}
        hc_obj = src_custom.get_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name)
        saved["hc"] = [clean_for_recreate(hc_obj, policy_for(hc_obj, overrides={"spec.pausedUntil": None}))]
        saved["np"] = [clean_for_recreate(np, policy_for(np, overrides={"spec.pausedUntil": None}))
                       for np in (src_custom.get_namespaced_custom_object(HS, HSV, NS, "nodepools", p) for p in nodepools)]
        for s in src_core.list_namespaced_secret(NS).items:
            if s.metadata.name.startswith(f"{name}-"):
                saved["hc-ns-secrets"].append(clean_for_recreate(mgmt1.sanitize_for_serialization(s) | _kind("Secret")))
        for s in src_core.list_namespaced_secret(cp).items:
            if "docker" in (s.type or "") or s.type == "kubernetes.io/service-account-token" \
                    or "oauth-openshift" in s.metadata.name or s.metadata.name.startswith(f"token-{name}"):
                continue
            saved["cp-secrets"].append(clean_for_recreate(mgmt1.sanitize_for_serialization(s) | _kind("Secret")))
        hcp = src_custom.get_namespaced_custom_object(HS, HSV, cp, "hostedcontrolplanes", name)
        cluster_name = next(v for v in hcp["metadata"]["labels"].values() if name in v)  # the page's jsonpath | grep
        for kind, group, version_, plural in CP_OBJECTS:
            items = src_custom.list_namespaced_custom_object(group, version_, cp, plural)["items"]
            if kind == "Cluster":
                items = [i for i in items if i["metadata"]["name"] == cluster_name]
            saved[kind] = [clean_for_recreate(i) for i in items]
        assert [len(saved[k]) for k in ("HostedControlPlane", "Cluster", "AWSCluster", "MachineDeployment")] == [1, 1, 1, 1]
        assert len(saved["Machine"]) == len(saved["AWSMachine"]) == NODE_POOL_REPLICAS
        assert all("status" not in o and "resourceVersion" not in o["metadata"] and "uid" not in o["metadata"]
                   for objs in saved.values() for o in objs)
        backup.mkdir()
        for key, objs in saved.items():
            (backup / f"{key}.yaml").write_text(yaml.safe_dump_all(objs))

        # 5. Delete the control-plane Routes; wait until external-dns removed the Route53 records.
        assert _records(r53, world, name), "records before the Routes go"
        _kubectl(world, "mgmt1", "delete", "route", "-n", cp, "--all")
        wait_for(lambda: not _records(r53, world, name), "mgmt1's external-dns removing the records", timeout=30)
        time.sleep(3 * world.settings.dns_interval)
        assert not _records(r53, world, name), "records came back while the source is paused"

        # ---- Restore (on mgmt2) -----------------------------------------------------------------
        # The page deletes and recreates both namespaces "just in case"; here mgmt2 has neither.
        assert not _namespace_exists(dst_core, cp)
        for ns in (NS, cp):
            if not _namespace_exists(dst_core, ns):
                dst_core.create_namespace({"metadata": {"name": ns}})
        for obj in saved["hc-ns-secrets"]:
            dst_core.create_namespaced_secret(NS, obj)
        for obj in saved["cp-secrets"]:
            dst_core.create_namespaced_secret(cp, obj)
        # ONE presigned restoreSnapshotURL (the newest member's). The HostedControlPlane restored
        # before the HostedCluster must carry it too: the CRDs refuse adding restoreSnapshotURL to
        # an existing object, so the operator could never copy it from the HostedCluster (the page
        # predates that rule and restores the HostedControlPlane without it).
        url = s3.generate_presigned_url("get_object", Params={"Bucket": world.aws.bucket,
                                                              "Key": f"{name}-{newest}-snapshot.db"}, ExpiresIn=3600)
        saved["HostedControlPlane"][0]["spec"]["etcd"]["managed"]["storage"]["restoreSnapshotURL"] = [url]
        for kind, group, version_, plural in CP_OBJECTS:
            for obj in saved[kind]:
                dst_custom.create_namespaced_custom_object(group, version_, cp, plural, obj)

        # The HostedCluster with that URL and no pause.
        new_hc = json.loads(json.dumps(saved["hc"][0]))
        assert "pausedUntil" not in new_hc["spec"]
        # What the script writes (one URL per member) is refused by the real CRD (maxItems 1).
        per_member = json.loads(json.dumps(new_hc))
        per_member["spec"]["etcd"]["managed"]["storage"]["restoreSnapshotURL"] = [url, url, url]
        with pytest.raises(client.ApiException) as refused:
            dst_custom.create_namespaced_custom_object(HS, HSV, NS, "hostedclusters", per_member, dry_run="All")
        assert refused.value.status == 422 and "restoreSnapshotURL" in refused.value.body
        new_hc["spec"]["etcd"]["managed"]["storage"]["restoreSnapshotURL"] = [url]
        created = dst_custom.create_namespaced_custom_object(HS, HSV, NS, "hostedclusters", new_hc)
        assert created["spec"]["etcd"]["managed"]["storage"]["restoreSnapshotURL"] == [url]
        assert created["spec"]["clusterID"] == cluster_id
        for obj in saved["np"]:
            dst_custom.create_namespaced_custom_object(HS, HSV, NS, "nodepools", obj)

        # Wait: Available on mgmt2, the API answering through mgmt2, the nodes Ready through it.
        wait_for(lambda: _condition(dst_custom.get_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name), "Available"),
                 "cluster Available on mgmt2", timeout=180)
        wait_for(lambda: hosted_api.reached_via == "mgmt2", "the hosted API reached through mgmt2", timeout=60)
        wait_for(lambda: len(ready_nodes()) == NODE_POOL_REPLICAS, "the nodes Ready through the admin kubeconfig", timeout=60)
        assert {n.metadata.name: n.metadata.uid for n in ready_nodes()} == nodes_before

        # The same machines, adopted: no new Machine, AWSMachine or EC2 instance.
        def adopted() -> bool:
            machines = dst_custom.list_namespaced_custom_object(CAPI, CAPIV, cp, "machines")["items"]
            return len(machines) == NODE_POOL_REPLICAS and all(
                (m.get("status") or {}).get("phase") == "Running" and m["status"].get("nodeRef") for m in machines)
        wait_for(adopted, "machines Running on mgmt2 with their nodes", timeout=60)
        dst_machines = dst_custom.list_namespaced_custom_object(CAPI, CAPIV, cp, "machines")["items"]
        assert {m["metadata"]["name"] for m in dst_machines} == {m["metadata"]["name"] for m in saved["Machine"]}
        assert {m["status"]["nodeRef"]["name"] for m in dst_machines} == set(nodes_before)
        dst_aws = dst_custom.list_namespaced_custom_object(CAPA, CAPAV, cp, "awsmachines")["items"]
        assert {a["spec"]["instanceID"] for a in dst_aws} == instances_before
        machinesets = dst_custom.list_namespaced_custom_object(CAPI, CAPIV, cp, "machinesets")["items"]
        assert {ms["metadata"]["name"] for ms in machinesets} == {ms["metadata"]["name"] for ms in saved["MachineSet"]}

        # Every key written before the backup is on the destination's etcd.
        dst_etcd = wait_for(lambda: client_for_namespace(world.cluster("mgmt2").backend, cp), "mgmt2 etcd client", timeout=60)
        keys_after, revision_after = wait_for(lambda: _keys(dst_etcd), "mgmt2 etcd answering", timeout=60)
        assert keys_at_backup <= keys_after, f"missing on mgmt2: {sorted(keys_at_backup - keys_after)[:5]}"
        assert revision_after >= revision_at_backup

        # ---- Teardown (on mgmt1), in the documented order ---------------------------------------
        _kubectl(world, "mgmt1", "scale", "deployment", "-n", cp, "--replicas=0", "--all")
        _kubectl(world, "mgmt1", "scale", "statefulset.apps", "-n", cp, "--replicas=0", "--all")
        wait_for(lambda: not src_core.list_namespaced_pod(cp).items, "every control-plane pod on mgmt1 gone", timeout=60)
        remove_finalizers = ["--type=json", '--patch=[{"op":"remove","path":"/metadata/finalizers"}]']
        _kubectl(world, "mgmt1", "patch", "-n", NS, "nodepool", *nodepools, *remove_finalizers)
        _kubectl(world, "mgmt1", "delete", "np", "-n", NS, *nodepools)
        # The Cluster API controllers are down: nothing drains or terminates the machines.
        # Cluster API objects through v1beta1, the version they were written in: the simulator
        # serves CAPI's v1beta2 without the conversion webhook, so a v1beta1 object patched through
        # v1beta2 (kubectl's preferred version) fails v1beta2 validation there.
        machines = _names(_kubectl(world, "mgmt1", "get", "machines.v1beta1.cluster.x-k8s.io", "-n", cp, "-o", "name"))
        assert len(machines) == NODE_POOL_REPLICAS
        for m in machines:
            ref = "machines.v1beta1.cluster.x-k8s.io/" + m.rsplit("/", 1)[1]
            # `|| true` as on the page: a Machine the garbage collector marked deleted (its
            # MachineSet went with the NodePool) is gone once its finalizer is.
            _kubectl(world, "mgmt1", "patch", "-n", cp, ref, *remove_finalizers, check=False)
            _kubectl(world, "mgmt1", "delete", "-n", cp, ref, check=False)
        _kubectl(world, "mgmt1", "delete", "machinesets.v1beta1.cluster.x-k8s.io", "-n", cp, "--all")
        for c in _names(_kubectl(world, "mgmt1", "get", "clusters.v1beta1.cluster.x-k8s.io", "-n", cp, "-o", "name")):
            _kubectl(world, "mgmt1", "patch", "-n", cp, "clusters.v1beta1.cluster.x-k8s.io/" + c.rsplit("/", 1)[1],
                     *remove_finalizers)
        _kubectl(world, "mgmt1", "delete", "clusters.v1beta1.cluster.x-k8s.io", "-n", cp, "--all")
        for m in _names(_kubectl(world, "mgmt1", "get", "awsmachine.infrastructure.cluster.x-k8s.io", "-n", cp, "-o", "name")):
            _remove_finalizers_and_delete(world, cp, m, check=False)  # `|| true` as on the page
        # The garbage collector marked it deleted with the Cluster (its owner); the finalizer held it.
        _kubectl(world, "mgmt1", "patch", "-n", cp, f"hostedcontrolplane.hypershift.openshift.io/{name}", *remove_finalizers)
        _kubectl(world, "mgmt1", "delete", "hostedcontrolplane.hypershift.openshift.io", "-n", cp, "--all")
        _kubectl(world, "mgmt1", "delete", "ns", cp)
        _kubectl(world, "mgmt1", "patch", "-n", NS, "hostedclusters", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        _kubectl(world, "mgmt1", "delete", "hc", "-n", NS, name)
        # (The page then deletes the HostedCluster namespace; mgmt1's `clusters` holds other clusters here.)

        # ---- Restart the OVN pods in the hosted cluster -----------------------------------------
        # Before: ovnkube-node still talks to the control plane on mgmt1; a new pod gets no network.
        assert set(hosted_api.ovn_connections().values()) == {"mgmt1"}
        apps = client.AppsV1Api(hosted)
        replicas = apps.read_namespaced_deployment(WORKLOAD_NAME, WORKLOAD_NAMESPACE).spec.replicas
        apps.patch_namespaced_deployment_scale(WORKLOAD_NAME, WORKLOAD_NAMESPACE, {"spec": {"replicas": replicas + 1}})

        def waiting_for_network() -> list[Any]:
            pods = hosted_core.list_namespaced_pod(WORKLOAD_NAMESPACE, label_selector=f"app={WORKLOAD_NAME}").items
            return [p for p in pods if p.status.container_statuses and p.status.container_statuses[0].state.waiting
                    and p.status.container_statuses[0].state.waiting.reason == "ContainerCreating"]
        stuck = wait_for(waiting_for_network, "the new pod stuck without a network")
        assert "ovn-kubernetes" in stuck[0].status.container_statuses[0].state.waiting.message
        _kubectl(world, None, "delete", "pod", "-n", OVN_NAMESPACE, "--all", kubeconfig=hc_kubeconfig)
        wait_for(lambda: set(hosted_api.ovn_connections().values()) == {"mgmt2"}
                 and len(hosted_api.ovn_connections()) == NODE_POOL_REPLICAS, "ovnkube-node reconnected to mgmt2")
        wait_for(lambda: len([p for p in hosted_core.list_namespaced_pod(
            WORKLOAD_NAMESPACE, label_selector=f"app={WORKLOAD_NAME}").items if p.status.phase == "Running"]) == replicas + 1,
            "every workload pod Running")
    finally:
        watch.stop()
        world.settings.nodepools.api_unreachable_grace_seconds = grace

    # ---- What the migration guarantees ----------------------------------------------------------
    assert watch.problems == [], watch.problems
    assert watch.outages, "the hosted API was never seen away (the watch did not watch)"
    outage = max(end - start for start, end in watch.outages)
    print(f"\nhosted API unavailable for {outage:.1f} s; nodes Ready throughout")
    assert {n.metadata.name: n.metadata.uid for n in ready_nodes()} == nodes_before
    assert {i.instance_id for i in world.instances.running(cluster_id)} == instances_before
    records = _records(r53, world, name)
    assert records[api_host + "."]["targets"] == [router_hostname("mgmt2")]
    assert records[f"cname-api-{name}-external-dns.{world.settings.external_dns_domain}."]["owner"] == "mgmt2"
    # mgmt1 has nothing of the cluster left.
    assert _gone(lambda: src_custom.get_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name))
    assert not [p for p in src_custom.list_namespaced_custom_object(HS, HSV, NS, "nodepools")["items"]
                if p["spec"]["clusterName"] == name]
    assert wait_for(lambda: _gone(lambda: src_core.read_namespace(cp)), "mgmt1's control-plane namespace gone", timeout=60)
    assert not [s for s in src_core.list_namespaced_secret(NS).items if s.metadata.name.startswith(f"{name}-admin")]
    # The hosted cluster knows where it came from.
    cm = client.CoreV1Api(hosted).read_namespaced_config_map("mgmt-parent-cluster", "default")
    assert cm.data == {"from": "mgmt1"}
    hosted.close()


def _kind(kind: str) -> dict[str, str]:
    return {"apiVersion": "v1", "kind": kind}


def _names(output: str) -> list[str]:
    return [line for line in output.split() if line]


def _remove_finalizers_and_delete(world: World, namespace: str, ref: str, check: bool = True) -> None:
    _kubectl(world, "mgmt1", "patch", "-n", namespace, ref, "--type=json",
             '--patch=[{"op":"remove","path":"/metadata/finalizers"}]', check=check)
    _kubectl(world, "mgmt1", "delete", "-n", namespace, ref, check=check)


def _namespace_exists(core: client.CoreV1Api, name: str) -> bool:
    return not _gone(lambda: core.read_namespace(name))


def _secret(core: client.CoreV1Api, name: str) -> client.V1Secret | None:
    try:
        return core.read_namespaced_secret(name, NS)
    except client.ApiException:
        return None


def _count(etcd: EtcdClient) -> int:
    try:
        return etcd.count("/registry/")
    except ConnectionError:
        return -1


def _keys(etcd: EtcdClient) -> tuple[set[str], int] | None:
    try:
        return etcd.keys("/registry/")
    except ConnectionError:
        return None


def _records(r53: Any, world: World, name: str) -> dict[str, dict]:
    """The zone's records for this cluster's hostnames: name -> {targets} or {owner} (TXT)."""
    pages = r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=world.aws.zone_id,
                                                                     PaginationConfig={"PageSize": 300})
    out: dict[str, dict] = {}
    for page in pages:
        for rrset in page["ResourceRecordSets"]:
            if f"-{name}." not in rrset["Name"] and f"-{name}-external-dns." not in rrset["Name"]:
                continue
            values = [r["Value"] for r in rrset.get("ResourceRecords") or []]
            if rrset["Type"] == "TXT":
                owner = next((p.split("=", 1)[1] for v in values for p in v.strip('"').split(",")
                              if p.startswith("external-dns/owner=")), None)
                out[rrset["Name"]] = {"owner": owner}
            else:
                out[rrset["Name"]] = {"targets": [v.rstrip(".") for v in values]}
    return out


def test_operator_and_external_dns_stop_with_their_deployments(world: World, mgmt1: client.ApiClient, fresh_cluster) -> None:
    """The hypershift-operator and external-dns of a management cluster are pods: scaled to 0 (the
    migration script scales the operator down; a broken external-dns is what keeps the records
    from going), they reconcile nothing until they run again."""
    name = fresh_cluster()
    cp = f"{NS}-{name}"
    custom, apps = client.CustomObjectsApi(mgmt1), client.AppsV1Api(mgmt1)
    r53 = world.aws.client("route53")

    def hc() -> dict:
        return custom.get_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name)

    def reconciling() -> bool:
        return any(c["type"] == "ReconciliationActive" and c["status"] == "True" for c in hc()["status"]["conditions"])

    wait_for(lambda: _condition(hc(), "Available") and len(_records(r53, world, name)) == 8, "cluster up, records published",
             timeout=90)
    apps.patch_namespaced_deployment_scale("operator", "hypershift", {"spec": {"replicas": 0}})
    try:
        wait_for(lambda: not (apps.read_namespaced_deployment("operator", "hypershift").status.ready_replicas or 0), "operator down")
        custom.patch_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name, {"spec": {"pausedUntil": "true"}})
        time.sleep(0.5)
        assert reconciling(), "the operator reconciled while scaled to 0"
    finally:
        apps.patch_namespaced_deployment_scale("operator", "hypershift", {"spec": {"replicas": 1}})
    wait_for(lambda: not reconciling(), "the operator back, the cluster paused")

    apps.patch_namespaced_deployment_scale("control-plane-operator", cp, {"spec": {"replicas": 0}})
    apps.patch_namespaced_deployment_scale("external-dns", "hypershift", {"spec": {"replicas": 0}})
    try:
        wait_for(lambda: not (apps.read_namespaced_deployment("external-dns", "hypershift").status.ready_replicas or 0)
                 and not (apps.read_namespaced_deployment("control-plane-operator", cp).status.ready_replicas or 0),
                 "external-dns and the CPO down")
        _kubectl(world, "mgmt1", "delete", "route", "-n", cp, "--all")
        time.sleep(world.settings.dns_removal_delay + 3 * world.settings.dns_interval)
        assert len(_records(r53, world, name)) == 8, "records removed with external-dns scaled to 0"
    finally:
        apps.patch_namespaced_deployment_scale("external-dns", "hypershift", {"spec": {"replicas": 1}})
    wait_for(lambda: not _records(r53, world, name), "external-dns back, the records removed", timeout=30)
    apps.patch_namespaced_deployment_scale("control-plane-operator", cp, {"spec": {"replicas": 1}})
    custom.patch_namespaced_custom_object(HS, HSV, NS, "hostedclusters", name, {"spec": {"pausedUntil": None}})
    wait_for(lambda: len(_records(r53, world, name)) == 8, "the Routes and their records back", timeout=30)
