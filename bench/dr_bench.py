"""dr-migrate (issue 6, section 5): the orchestration overhead of moving a hosted cluster from mgmt1
to mgmt2, on the simulated world with realistic delays off (WorldSettings defaults).

Each round makes a fresh hosted cluster on mgmt1 (Available, its records in Route53, its node Ready
through the hosted API), measures the raw floor of its data movement (host `etcdctl snapshot save`
+ boto3 `upload_file` of the member the flow restores from: bench/backup_bench.py's floor), then
runs `dr-migrate` to mgmt2, pre-approved, in a child process of its own (as a runner would: not
sharing a GIL with the simulator) against a Prefect server started for the bench.

An OBSERVER thread in the bench process, independent of the flow, reads the world's ground truth
every 20 ms (the management clusters' and the hosted cluster's object stores, the hosted API's
reachability through a listener, the Route53 zone at 50 ms while records are expected to go) and
records when each condition the flow waits for became true, and when the action that starts each
wait happened:

  wait                              from (action)                     to (condition)                 flow step
  reconciliation paused             HostedCluster pausedUntil set     ReconciliationActive=False     quiesce-control-plane
  API servers + CPO gone            first of the 4 scaled to 0        none of their pods left        quiesce-control-plane
  DNS records removed               the last Route gone               no A/CNAME/TXT of it in zone   dr-dns-released-by-source
  destination serves                HostedCluster created on mgmt2    Available=True, the API        wait-destination
                                                                      reached via mgmt2 with every
                                                                      node Ready, and every etcd
                                                                      member's /health true
  source control plane stopped      source etcd StatefulSet at 0      no pod left in the namespace   dr-teardown-source
  control-plane namespace deleted   deletionTimestamp set             namespace gone                 dr-teardown-source
  new OVN pods running              first old ovnkube-node deleted    a new one Running per node     dr-restart-ovn-on-destination

Detection lag of a wait: the flow's next observable move minus the condition's time; the next move
is the step's end for the last wait of a step, else the following action (the first scale-down after
the pause, the source's NodePools going after its pods, the source's HostedCluster going after the
namespace). Target: under 1 s each (the documented procedure polls every 10 to 30 s).

Unavoidable work: the union of the wait intervals above (the world working: etcd restore and
control-plane start are inside "destination serves") plus the raw floor of the backup step's data
movement (at most that step's own time). Overhead = total - unavoidable, where total is the flow
call's wall time in the child. Target: overhead under 10% of the total. Per step: step time minus the
unavoidable time inside it; "outside steps" is the flow's time between and around its steps.

API-unavailable window: the report's figure (from scaling the source down to the destination's API
answering with the nodes Ready) and the observer's own (the hosted API not reachable: serving
false -> true, reached via mgmt2).

    python -m bench dr [--rounds N] [--ha-rounds M]   (default 2 SingleReplica rounds, 1 HighlyAvailable)

The clusters' etcd holds only their own keys (a snapshot of ~20 kB): the data movement is small here.
(Filling a fresh cluster's etcd with BackupBench.fill_to failed TLS verification for clusters other
than `demo`: not done.)

Never a test: nothing here fails a build. Only the standard library is imported at the top.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable

from bench.backup_bench import REPO, BackupBench, _verdict

NS = "clusters"
HS = ("hypershift.openshift.io", "hostedclusters")
NODEPOOLS = ("hypershift.openshift.io", "nodepools")
QUIESCE = ("kube-apiserver", "openshift-apiserver", "openshift-oauth-apiserver", "control-plane-operator")
OVN_NS = "openshift-ovn-kubernetes"
OVERHEAD_TARGET = 0.10
LAG_TARGET_S = 1.0
POLL_S = 0.02
DNS_POLL_S = 0.05
ETCD_POLL_S = 0.05


# -- the child: one dr-migrate run -----------------------------------------------------------------------

def _child_flow(spec: dict[str, Any]) -> dict[str, Any]:
    from cli.adhoc import run_here
    from flows.dr_migrate import DrMigrateParams, dr_migrate

    params = DrMigrateParams.model_validate(spec["params"])
    t0 = time.time()
    report = run_here(dr_migrate, params).result()
    t1 = time.time()
    return {"status": report.status, "error": report.error, "t0": t0, "t1": t1, "figures": dict(report.figures),
            "steps": [{"name": s.name, "start": s.started_at.timestamp(), "seconds": s.seconds, "outcome": s.outcome}
                      for s in report.steps]}


def _child_main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    try:
        out = _child_flow(spec)
    except BaseException as e:  # the parent prints it with the child's log
        out = {"status": "crashed", "error": f"{type(e).__name__}: {e}"}
    Path(out_path).write_text(json.dumps(out, default=str))


# -- the observer ------------------------------------------------------------------------------------------

def _cond(obj: dict | None, ctype: str, status: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == status
               for c in ((obj or {}).get("status") or {}).get("conditions") or [])


def _rs_deployment(pod: dict) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "ReplicaSet":
            return ref["name"].rsplit("-", 1)[0]
    return None


class Observer:
    """Ground truth of one migration, read from the world (never from the flow): the first time
    (epoch seconds) each fact held, in `self.t`, and the hosted API's reachability changes."""

    def __init__(self, world: Any, name: str, cluster_id: str, hostnames: list[str], nodes: int) -> None:
        self.world, self.name, self.cluster_id, self.hostnames, self.nodes = world, name, cluster_id, hostnames, nodes
        self.cp = f"{NS}-{name}"
        self.src = world.cluster("mgmt1").backend.store
        self.dst = world.cluster("mgmt2").backend.store
        self.api = world.hosted.get(cluster_id)
        self.hosted = self.api.cluster.backend.store
        self.route53 = world.aws.client("route53")
        self.t: dict[str, float] = {}
        self.serving: list[tuple[float, bool, str | None]] = [(time.time(), self.api.serving, self.api.reached_via)]
        self.old_ovn = {p["metadata"]["uid"] for p in self.hosted.items(("", "pods"), OVN_NS)}
        self.dns_polls = 0
        self._stop = threading.Event()
        self._last_dns = 0.0
        self._last_etcd = 0.0
        self._etcd_tls: ssl.SSLContext | None = None
        self._remove_listener = world.hosted.add_listener(self._on_serving)
        self._thread = threading.Thread(target=self._loop, name="dr-observer", daemon=True)

    def start(self) -> Observer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._remove_listener()

    def _on_serving(self, cluster_id: str) -> None:
        if cluster_id == self.cluster_id:
            self.serving.append((time.time(), self.api.serving, self.api.reached_via))

    def _mark(self, what: str, now: float, holds: Callable[[], bool], after: str | None = None) -> None:
        if what not in self.t and (after is None or after in self.t) and holds():
            self.t[what] = now

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self._tick(time.time())
            except Exception as exc:  # a store read racing a write: the next tick reads again
                print(f"  observer: {type(exc).__name__}: {exc}")

    def _tick(self, now: float) -> None:
        src, dst, cp, m = self.src, self.dst, self.cp, self._mark
        hc = src.get(HS, NS, self.name)
        m("paused_set", now, lambda: (hc or {}).get("spec", {}).get("pausedUntil") == "true")
        m("paused_confirmed", now, lambda: _cond(hc, "ReconciliationActive", "False"), after="paused_set")
        deps = {d["metadata"]["name"]: d for d in src.items(("apps", "deployments"), cp)}
        m("scaled_first", now, lambda: any((deps.get(n) or {}).get("spec", {}).get("replicas") == 0 for n in QUIESCE))
        m("quiesced", now, lambda: not any(_rs_deployment(p) in QUIESCE for p in src.items(("", "pods"), cp)),
          after="scaled_first")
        routes = src.items(("route.openshift.io", "routes"), cp)
        if routes:
            self.t.setdefault("routes_seen", now)
        m("routes_gone", now, lambda: not routes, after="routes_seen")
        if "routes_gone" in self.t and "dns_gone" not in self.t and now - self._last_dns >= DNS_POLL_S:
            self._last_dns = now
            self.dns_polls += 1
            m("dns_gone", now, lambda: not self._records())
        dhc = dst.get(HS, NS, self.name)
        m("dst_created", now, lambda: dhc is not None)
        m("dst_available", now, lambda: _cond(dhc, "Available", "True"), after="dst_created")
        m("dst_nodes_ready", now, self._served_from_mgmt2, after="dst_created")
        if "dst_available" in self.t and "dst_etcd_healthy" not in self.t and now - self._last_etcd >= ETCD_POLL_S:
            self._last_etcd = now
            m("dst_etcd_healthy", now, self._etcd_healthy)
        sts = src.get(("apps", "statefulsets"), cp, "etcd")
        m("cp_scaled", now, lambda: sts is None or sts.get("spec", {}).get("replicas") == 0, after="dst_nodes_ready")
        m("cp_pods_gone", now, lambda: not src.items(("", "pods"), cp), after="cp_scaled")
        m("src_pools_going", now, lambda: not any(
            p["spec"].get("clusterName") == self.name and not p["metadata"].get("deletionTimestamp")
            for p in src.items(NODEPOOLS, NS)), after="dst_nodes_ready")
        ns = src.get(("", "namespaces"), "", cp)
        m("ns_deleting", now, lambda: ns is None or bool(ns["metadata"].get("deletionTimestamp")), after="dst_nodes_ready")
        m("ns_gone", now, lambda: ns is None, after="ns_deleting")
        m("src_hc_gone", now, lambda: hc is None, after="ns_gone")
        ovn = [p for p in self.hosted.items(("", "pods"), OVN_NS)]
        m("ovn_deleted", now, lambda: any(p["metadata"].get("deletionTimestamp") for p in ovn if
                                          p["metadata"]["uid"] in self.old_ovn)
          or len({p["metadata"]["uid"] for p in ovn} & self.old_ovn) < len(self.old_ovn), after="dst_nodes_ready")
        m("ovn_running", now, lambda: len({p["spec"].get("nodeName") for p in ovn
                                           if p["metadata"]["uid"] not in self.old_ovn
                                           and not p["metadata"].get("deletionTimestamp")
                                           and (p.get("status") or {}).get("phase") == "Running"}) >= self.nodes,
          after="ovn_deleted")

    def _served_from_mgmt2(self) -> bool:
        if self.api.reached_via != "mgmt2":
            return False
        ready = [n for n in self.hosted.items(("", "nodes")) if _cond(n, "Ready", "True")]
        return len(ready) >= self.nodes

    def _etcd_healthy(self) -> bool:
        """Every member of the destination's etcd answers /health true (a linearizable read in etcd 3.5,
        as `etcdctl endpoint health`), asked directly at its pod IP with the control plane's client
        certificate: what the flow checks through execs, without them."""
        sts = self.dst.get(("apps", "statefulsets"), self.cp, "etcd")
        replicas = (sts or {}).get("spec", {}).get("replicas") or 0
        pods = [p for p in self.dst.items(("", "pods"), self.cp) if p["metadata"]["name"].startswith("etcd-")
                and not p["metadata"].get("deletionTimestamp") and (p.get("status") or {}).get("podIP")]
        if not replicas or len(pods) < replicas:
            return False
        if self._etcd_tls is None:
            self._etcd_tls = self._tls_context()
        for pod in pods:
            try:
                with urllib.request.urlopen(f"https://{pod['status']['podIP']}:2379/health", timeout=1,
                                            context=self._etcd_tls) as r:
                    if json.loads(r.read()).get("health") != "true":
                        return False
            except (OSError, ValueError):
                return False
        return True

    def _tls_context(self) -> ssl.SSLContext:
        import base64

        secret = self.dst.get(("", "secrets"), self.cp, "etcd-client-tls")
        ca = self.dst.get(("", "configmaps"), self.cp, "etcd-ca")
        d = Path(tempfile.mkdtemp(prefix="dr-observer-tls-"))
        (d / "client.crt").write_bytes(base64.b64decode(secret["data"]["etcd-client.crt"]))
        (d / "client.key").write_bytes(base64.b64decode(secret["data"]["etcd-client.key"]))
        ctx = ssl.create_default_context(cadata=ca["data"]["ca.crt"])
        ctx.check_hostname = False  # the server certificate names the members, not their pod IPs
        ctx.load_cert_chain(str(d / "client.crt"), str(d / "client.key"))
        return ctx

    def _records(self) -> list[str]:
        """The cluster's records in the zone: A/AAAA/CNAME of its hostnames, TXT naming its Routes."""
        wanted = {h.rstrip(".").lower() for h in self.hostnames}
        marker = f"external-dns/resource=route/{self.cp}/"
        left = []
        for page in self.route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=self.world.aws.zone_id):
            for rr in page["ResourceRecordSets"]:
                name = rr["Name"].rstrip(".").lower()
                values = [r["Value"] for r in rr.get("ResourceRecords") or []]
                if (rr["Type"] in ("A", "AAAA", "CNAME") and name in wanted) or \
                        (rr["Type"] == "TXT" and any(marker in v for v in values)):
                    left.append(f"{name} {rr['Type']}")
        return left

    def unavailable_window(self, t0: float, t1: float) -> float | None:
        """Seconds from the hosted API becoming unreachable during [t0, t1] to reachable via mgmt2."""
        down = next((t for t, s, _ in self.serving if t0 <= t <= t1 and not s), None)
        if down is None:
            return None
        up = next((t for t, s, via in self.serving if t > down and s and via == "mgmt2"), None)
        return None if up is None else up - down


# -- waits against the flow's steps ------------------------------------------------------------------------

# name, the action that starts it, the condition, the flow step that waits for it, the flow's next move
# after the condition ("end:<step>": that step's end, else an observed action).
WAITS = [
    ("reconciliation paused", "paused_set", "paused_confirmed", "quiesce-control-plane", "scaled_first"),
    ("API servers + CPO gone", "scaled_first", "quiesced", "quiesce-control-plane", "end:quiesce-control-plane"),
    ("DNS records removed", "routes_gone", "dns_gone", "dr-dns-released-by-source", "end:dr-dns-released-by-source"),
    ("destination serves", "dst_created", "dst_ready", "wait-destination", "end:wait-destination"),
    ("source control plane stopped", "cp_scaled", "cp_pods_gone", "dr-teardown-source", "src_pools_going"),
    ("control-plane namespace deleted", "ns_deleting", "ns_gone", "dr-teardown-source", "src_hc_gone"),
    ("new OVN pods running", "ovn_deleted", "ovn_running", "dr-restart-ovn-on-destination",
     "end:dr-restart-ovn-on-destination"),
]
BACKUP_STEP = "dr-backup-etcd-on-source"


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _inside(intervals: list[tuple[float, float]], a: float, b: float) -> float:
    return sum(max(0.0, min(y, b) - max(x, a)) for x, y in intervals)


def analyse(obs: Observer, run: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    t = dict(obs.t)
    if "dst_available" in t and "dst_nodes_ready" in t and "dst_etcd_healthy" in t:
        t["dst_ready"] = max(t["dst_available"], t["dst_nodes_ready"], t["dst_etcd_healthy"])
    steps = run["steps"]
    ends = {}
    for s in steps:
        ends[s["name"]] = s["start"] + s["seconds"]  # the last of a repeated step
    waits, intervals = [], []
    for name, start, cond, step, nxt in WAITS:
        a, b = t.get(start), t.get(cond)
        move = ends.get(nxt[4:]) if nxt.startswith("end:") else t.get(nxt)
        lag = None if b is None or move is None else move - b
        waits.append({"wait": name, "step": step, "seconds": None if a is None or b is None else b - a,
                      "lag": lag, "next": nxt})
        if a is not None and b is not None:
            intervals.append((a, b))
    merged = _union(intervals)
    total = run["t1"] - run["t0"]
    backup = next((s for s in steps if s["name"] == BACKUP_STEP), None)
    floor_s = floor["snapshot_s"] + floor["upload_s"]
    backup_unavoidable = min(floor_s, backup["seconds"]) if backup else 0.0
    unavoidable = _inside(merged, run["t0"], run["t1"]) + backup_unavoidable
    per_step: dict[str, list[float]] = {}
    for s in steps:
        a, b = s["start"], s["start"] + s["seconds"]
        inside = _inside(merged, a, b) + (backup_unavoidable if s["name"] == BACKUP_STEP else 0.0)
        row = per_step.setdefault(s["name"], [0.0, 0.0])
        row[0] += s["seconds"]
        row[1] += inside
    in_steps = _union([(s["start"], s["start"] + s["seconds"]) for s in steps])
    outside = total - _inside(in_steps, run["t0"], run["t1"])
    before = (in_steps[0][0] - run["t0"]) if in_steps else total
    after = (run["t1"] - in_steps[-1][1]) if in_steps else 0.0
    report_down = run["figures"].get("hosted API unavailable", "nan s").split()[0]
    for w in waits:
        if w["step"] == "wait-destination" and all(k in t for k in ("dst_created", "dst_available", "dst_nodes_ready",
                                                                        "dst_etcd_healthy")):
            w["split"] = {k: t[k] - t["dst_created"] for k in ("dst_available", "dst_nodes_ready", "dst_etcd_healthy")}
    outside_waits = [sec - unav for sec, unav in per_step.values()]
    return {"total": total, "unavoidable": unavoidable, "overhead": total - unavoidable,
            "ratio": (total - unavoidable) / total, "waits": waits, "per_step": per_step, "outside_steps": outside,
            "before_steps": before, "after_steps": after, "step_count": len(steps),
            "step_floor": statistics.median(outside_waits) if outside_waits else 0.0,
            "floor_s": floor_s, "backup_unavoidable": backup_unavoidable,
            "report_unavailable": float(report_down), "observed_unavailable": obs.unavailable_window(run["t0"], run["t1"]),
            "dns_polls": obs.dns_polls, "missing": [k for _, a, c, _, _ in WAITS for k in (a, c) if k not in t]}


# -- the parent --------------------------------------------------------------------------------------------

class DrBench:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.backup = BackupBench(directory)  # the Prefect server, the world, the floor, the children's env
        self._children = 0
        self.mgmt: Any = None
        self.mgmt2: Any = None

    @property
    def world(self) -> Any:
        return self.backup.world

    def start(self) -> None:
        from hcp.cluster_access import ClusterAccess

        self.backup.prefect.start()
        self.backup.start_world(availability="SingleReplica", hosted_clusters=0)
        self.mgmt = ClusterAccess(kubeconfig=self.world.kubeconfig_path, context="mgmt1").api_client()
        self.mgmt2 = ClusterAccess(kubeconfig=self.world.kubeconfig_path, context="mgmt2").api_client()

    def close(self) -> None:
        for api in (self.mgmt, self.mgmt2):
            if api is not None:
                api.close()
        self.backup.close()

    def _until(self, what: str, predicate: Callable[[], Any], timeout: float = 180) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"bench: timed out waiting for {what}")
            time.sleep(0.1)
        return value

    def movable(self, availability: str) -> tuple[str, str, list[str]]:
        """A fresh hosted cluster on mgmt1, Available, published, its nodes Ready, its API answering."""
        from hcp.dns_records import published_hostnames

        name = f"dr{uuid.uuid4().hex[:6]}"
        self.world.create_hosted_cluster(name, availability=availability)
        store = self.world.cluster("mgmt1").backend.store
        hc = self._until(f"{name} Available on mgmt1", lambda: (lambda o: o if _cond(o, "Available", "True") else None)(
            store.get(HS, NS, name)))
        cluster_id = hc["spec"]["clusterID"]
        api = self._until(f"{name}'s hosted API serving", lambda: (lambda a: a if a is not None and a.serving else None)(
            self.world.hosted.get(cluster_id)))
        nodes = self.world.settings.node_pool_replicas
        self._until(f"{name}'s nodes Ready", lambda: len([n for n in api.cluster.backend.store.items(("", "nodes"))
                                                           if _cond(n, "Ready", "True")]) >= nodes)
        self._until(f"{name}'s OVN pods", lambda: len(api.cluster.backend.store.items(("", "pods"), OVN_NS)) >= nodes)
        hostnames = sorted(published_hostnames(hc).values())
        probe = Observer.__new__(Observer)  # only its zone reader
        probe.world, probe.hostnames, probe.cp, probe.route53 = self.world, hostnames, f"{NS}-{name}", \
            self.world.aws.client("route53")
        self._until(f"{name}'s records in Route53", lambda: len(probe._records()) >= len(hostnames))
        return name, cluster_id, hostnames

    def remove(self, name: str) -> None:
        from hcp.migration_objects import remove_hosted_cluster

        for api in (self.mgmt, self.mgmt2):
            try:
                remove_hosted_cluster(api, NS, name, timeout=120)
            except Exception as exc:  # keep the bench going; say so
                print(f"  cleanup of {name}: {exc}")

    def flow(self, name: str, prefix: str) -> dict[str, Any]:
        kubeconfig = str(self.world.kubeconfig_path)
        params = {"source": {"management": {"kubeconfig": kubeconfig, "context": "mgmt1"}},
                  "destination": {"management": {"kubeconfig": kubeconfig, "context": "mgmt2"}},
                  "hosted_cluster": f"{NS}/{name}", "bucket": self.world.settings.bucket, "prefix": prefix,
                  "route53_zone_id": self.world.aws.zone_id,
                  "external_dns_domain": self.world.settings.external_dns_domain,
                  "approval": {"pre_approved_by": "dr-bench"}, "timeout_seconds": 300, "dns_timeout_seconds": 120}
        self._children += 1
        d = self.directory / "children"
        d.mkdir(exist_ok=True)
        stem = d / f"{self._children:03d}-dr"
        spec_path, out_path, log_path = (stem.with_suffix(s) for s in (".spec.json", ".out.json", ".log"))
        spec_path.write_text(json.dumps({"params": params}))
        with open(log_path, "wb") as log:
            subprocess.run([sys.executable, "-m", "bench.dr_bench", "--child", str(spec_path), str(out_path)],
                           env=self.backup._child_env(), cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT)
        out = json.loads(out_path.read_text()) if out_path.exists() else {"status": "crashed", "error": "no output"}
        if out.get("status") != "succeeded":
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"dr-migrate {out.get('status')}: {out.get('error')}\n--- {log_path}\n{tail}")
        return out

    def destination_namespace(self) -> None:
        """The destination prepared as the README asks: the HostedCluster namespace exists on mgmt2."""
        store = self.world.cluster("mgmt2").backend.store

        def ready() -> bool:
            ns = store.get(("", "namespaces"), "", NS)
            if ns is None:
                backend = self.world.cluster("mgmt2").backend
                backend.create(backend.type_for("", "namespaces"), None, {"metadata": {"name": NS}})
                return True
            return not ns["metadata"].get("deletionTimestamp")  # a cleanup's delete: wait until it is gone
        self._until(f"namespace {NS} on mgmt2", ready, timeout=60)

    def round(self, availability: str) -> dict[str, Any]:
        self.destination_namespace()
        name, cluster_id, hostnames = self.movable(availability)
        prefix = f"dr-bench-{uuid.uuid4().hex[:6]}"
        try:
            floor = self.backup.floor("etcd-0", f"{NS}-{name}")
            obs = Observer(self.world, name, cluster_id, hostnames, self.world.settings.node_pool_replicas).start()
            try:
                run = self.flow(name, prefix)
                deadline = time.monotonic() + 5  # the last conditions are already true when the flow returns
                while "ovn_running" not in obs.t and time.monotonic() < deadline:
                    time.sleep(POLL_S)
            finally:
                obs.stop()
            return analyse(obs, run, floor) | {"name": name, "floor": floor, "load": os.getloadavg()[0],
                                               "steps": run["steps"]}
        finally:
            self.remove(name)
            self.backup.delete_prefix(prefix)


def _f(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _print_round(i: int, kind: str, r: dict[str, Any]) -> None:
    fl = r["floor"]
    print(f"round {i} ({kind}, {r['name']}, load {r['load']:.1f}): total {r['total']:.2f} s; unavoidable "
          f"{r['unavoidable']:.2f} s; overhead {r['overhead']:.2f} s = {100 * r['ratio']:.1f}% (target < "
          f"{100 * OVERHEAD_TARGET:.0f}%: {_verdict(r['ratio'] < OVERHEAD_TARGET)})")
    print(f"  data movement floor: etcdctl snapshot save {fl['snapshot_s']:.2f} s + upload_file {fl['upload_s']:.2f} s "
          f"({fl['size'] / 1e6:.2f} MB); counted {r['backup_unavoidable']:.2f} s of the backup step")
    print("  waits (observer):  seconds  detection lag (next move)")
    for w in r["waits"]:
        ok = w["lag"] is not None and w["lag"] < LAG_TARGET_S
        print(f"    {w['wait']:<32} {_f(w['seconds']):>7}  {_f(w['lag']):>6} s ({w['next']}) "
              f"{_verdict(ok) if w['lag'] is not None else 'NOT OBSERVED'}")
        if w.get("split"):
            sp = w["split"]
            print(f"      from the HostedCluster's creation: Available at {sp['dst_available']:.2f} s, the API with the "
                  f"nodes Ready at {sp['dst_nodes_ready']:.2f} s, every etcd member healthy at {sp['dst_etcd_healthy']:.2f} s")
    if r["missing"]:
        print(f"  not observed: {', '.join(r['missing'])}")
    print(f"  API unavailable: report {r['report_unavailable']:.2f} s; observer (serving false -> true via mgmt2) "
          f"{_f(r['observed_unavailable'])} s")
    print("  where the overhead goes (step seconds - unavoidable inside it):")
    rows = sorted(r["per_step"].items(), key=lambda kv: kv[1][0] - kv[1][1], reverse=True)
    for name, (sec, unav) in rows:
        if sec > 0.005:
            print(f"    {name:<36} {sec:6.2f} s - {unav:6.2f} s = {sec - unav:6.2f} s")
    print(f"    ({r['step_count']} steps; the median step spends {r['step_floor']:.2f} s outside the waits: a Prefect "
          "task's round trips and the step's own API calls)")
    print(f"    {'(outside steps: flow start, gates, report)':<36} {r['outside_steps']:6.2f} s: before the first step "
          f"{r['before_steps']:.2f} s, between steps {r['outside_steps'] - r['before_steps'] - r['after_steps']:.2f} s, "
          f"after the last {r['after_steps']:.2f} s")


def run(rounds: int, ha_rounds: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="hcp-dr-bench-") as tmp:
        bench = DrBench(Path(tmp))
        try:
            t = time.perf_counter()
            bench.start()
            print(f"world (delays off) and a Prefect server up in {time.perf_counter() - t:.1f} s")
            for kind, count, availability in (("sr", rounds, "SingleReplica"), ("ha", ha_rounds, "HighlyAvailable")):
                results = []
                for i in range(count):
                    r = bench.round(availability)
                    _print_round(i + 1, availability, r)
                    results.append(r)
                if not results:
                    continue
                med = {k: statistics.median(r[k] for r in results) for k in ("total", "unavoidable", "overhead", "ratio",
                                                                             "report_unavailable")}
                lags = [w["lag"] for r in results for w in r["waits"] if w["lag"] is not None]
                obs_down = [r["observed_unavailable"] for r in results if r["observed_unavailable"] is not None]
                worst_lag = max(lags) if lags else float("nan")
                print(f"{availability} median of {len(results)}: total {med['total']:.2f} s, unavoidable "
                      f"{med['unavoidable']:.2f} s, overhead {med['overhead']:.2f} s = {100 * med['ratio']:.1f}% "
                      f"(target < {100 * OVERHEAD_TARGET:.0f}%: {_verdict(med['ratio'] < OVERHEAD_TARGET)}); worst "
                      f"detection lag {worst_lag:.2f} s (target < {LAG_TARGET_S:.0f} s: "
                      f"{_verdict(worst_lag < LAG_TARGET_S)}); API unavailable {med['report_unavailable']:.2f} s "
                      f"(report), {_f(statistics.median(obs_down) if obs_down else None)} s (observer)")
                figures.update({f"{kind}_{k}": v for k, v in med.items()} | {f"{kind}_worst_lag": worst_lag})
        finally:
            bench.close()
    return figures


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(prog="python -m bench dr", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2, help="SingleReplica rounds (default 2)")
    ap.add_argument("--ha-rounds", type=int, default=1, help="HighlyAvailable rounds (default 1)")
    a = ap.parse_args(argv)
    return run(a.rounds, a.ha_rounds)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child_main(sys.argv[2], sys.argv[3])
    else:
        main()
