"""etcd member recovery (issue 5): time from approval to a healthy member, the etcd-member-recovery flow
against deleting the member's PVC and pod by hand and waiting, measured in the same run on the same
HighlyAvailable hosted cluster (three real etcd members).

Each round breaks etcd-2 the way a disk does (garbage in its bolt database, then a restart: etcd
cannot open it and crash-loops), then measures one of:
  flow      the flow in a child process of its own, pre-approved; its report's "approval to healthy
            member": from the approval to the member healthy and caught up (the re-check right before
            deleting, the deletes, the waits);
  baseline  what a person does, in a child process too: `kubectl delete pvc/data-etcd-2 pod/etcd-2
            --wait=false` (without kubectl on PATH: the same two deletes with the kubernetes client),
            then waiting as one watching `kubectl get pods -w` would (a watch: no polling) for the new
            pod Running, then `etcdctl endpoint health --cluster` and `endpoint status --cluster` in
            etcd-0 (kubectl exec, or the client's exec) until every member is healthy and the new
            one's revision has reached the leader's: the flow's own definition of done.
Rounds alternate flow and baseline. Printed: each round, the medians, the ratio flow / baseline, and
where the flow's time goes (its steps). Never a test: nothing here fails a build.

    python -m bench.member_recovery_bench [--rounds N]      (default 3 rounds of each)

Only the standard library is imported at the top: the children load what they need.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NAME = "demo"
CLUSTER = f"clusters/{NAME}"
NAMESPACE = f"clusters-{NAME}"
MEMBER = "etcd-2"


# -- the children --------------------------------------------------------------------------------------------

def _child_flow(spec: dict[str, Any]) -> dict[str, Any]:
    from cli.adhoc import run_here
    from flows.etcd_member_recovery import EtcdMemberRecoveryParams, etcd_member_recovery

    t = time.perf_counter()
    report = run_here(etcd_member_recovery, EtcdMemberRecoveryParams.model_validate(spec["params"])).result()
    wall = time.perf_counter() - t
    figure = report.figures.get("approval to healthy member", "nan s").split()[0]
    return {"status": report.status, "error": report.error, "wall_s": wall, "approval_to_healthy_s": float(figure),
            "steps": {s.name: s.seconds for s in report.steps}}


def _done(health: list[dict[str, Any]], status: list[dict[str, Any]], member_url: str) -> bool:
    """Every member healthy, and the new member's revision at least the leader's."""
    if not health or not all(h.get("health") is True for h in health):
        return False
    by_url = {s["Endpoint"]: s["Status"] for s in status}
    mine = by_url.get(member_url)
    leader = next((s for s in by_url.values() if s.get("leader") == s["header"]["member_id"]), None)
    return mine is not None and leader is not None and mine["header"]["revision"] >= leader["header"]["revision"]


def _child_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    from kubernetes import client, watch

    from hcp import pod_exec
    from hcp.cluster_access import ClusterAccess
    from hcp.etcd_member import etcdctl_argv

    api = ClusterAccess(kubeconfig=spec["kubeconfig"], context=spec["context"]).api_client()
    core = client.CoreV1Api(api)
    ns, member = spec["namespace"], spec["member"]
    kubectl = shutil.which("kubectl")
    base = [kubectl, "--kubeconfig", spec["kubeconfig"], "--context", spec["context"], "-n", ns] if kubectl else []
    old = core.read_namespaced_pod(member, ns).metadata.uid
    version = core.list_namespaced_pod(ns, field_selector=f"metadata.name={member}").metadata.resource_version
    check = ["sh", "-c", " ".join(etcdctl_argv("endpoint", "health", "--cluster", "-w", "json")) + "; echo '#@@'; "
             + " ".join(etcdctl_argv("endpoint", "status", "--cluster", "-w", "json"))]
    member_url = f"https://{member}.etcd-discovery.{ns}.svc:2379"

    t0 = time.perf_counter()
    if kubectl:
        subprocess.run(base + ["delete", f"pvc/data-{member}", f"pod/{member}", "--wait=false"], check=True,
                       capture_output=True)
    else:
        core.delete_namespaced_persistent_volume_claim(f"data-{member}", ns)
        core.delete_namespaced_pod(member, ns)
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_pod, ns, field_selector=f"metadata.name={member}",
                          resource_version=version, timeout_seconds=600):
        pod = event["object"]
        if event["type"] != "DELETED" and pod.metadata.uid != old and (pod.status.phase if pod.status else "") == "Running":
            w.stop()
            break
    running = time.perf_counter() - t0
    checks = 0
    while True:
        checks += 1
        if kubectl:
            out = subprocess.run(base + ["exec", "etcd-0", "-c", "etcd", "--", *check], capture_output=True,
                                 text=True).stdout
        else:
            out = pod_exec.run(api, ns, "etcd-0", "etcd", check, check=False).text
        health_text, _, status_text = out.partition("#@@")
        try:
            if _done(json.loads(health_text or "[]"), json.loads(status_text or "[]"), member_url):
                break
        except ValueError:
            pass
        if time.perf_counter() - t0 > 600:
            raise TimeoutError("the member did not become healthy in 600 s")
    return {"status": "succeeded", "seconds": time.perf_counter() - t0, "pod_running_s": running, "checks": checks,
            "tool": "kubectl" if kubectl else "kubernetes client"}


_CHILDREN = {"flow": _child_flow, "baseline": _child_baseline}


def _child_main(mode: str, spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    try:
        out = _CHILDREN[mode](spec)
    except BaseException as e:
        out = {"status": "crashed", "error": f"{type(e).__name__}: {e}"}
    Path(out_path).write_text(json.dumps(out, default=str))


# -- the parent ----------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, directory: Path) -> None:
        from bench.backup_bench import PrefectServer

        self.directory = directory
        self.prefect = PrefectServer(directory / "prefect")
        self.world: Any = None
        self.api: Any = None
        self._children = 0

    def start(self) -> None:
        from hcpsim.world import World, WorldSettings

        self.prefect.start()
        self.world = World(self.directory / "world", WorldSettings(hosted_clusters=1, availability="HighlyAvailable",
                                                                   node_pool_replicas=1))
        self.world.start()
        self.world.wait_available(timeout=180)
        from hcp.cluster_access import ClusterAccess
        self.api = ClusterAccess(kubeconfig=self.world.kubeconfig_path, context="mgmt1").api_client()

    def close(self) -> None:
        if self.api is not None:
            self.api.close()
        if self.world is not None:
            self.world.close()
        self.prefect.close()

    def _until(self, what: str, predicate: Any, timeout: float = 180) -> Any:
        deadline = time.monotonic() + timeout
        while (value := predicate()) is None or value is False:
            if time.monotonic() > deadline:
                raise TimeoutError(f"bench: timed out waiting for {what}")
            time.sleep(0.5)
        return value

    def healthy(self) -> None:
        from hcp.etcd_health import read_health

        self._until("three healthy members", lambda: all(
            r.verdict == "healthy" for r in read_health(self.api, NAMESPACE).rows) or None)

    def break_member(self) -> None:
        """Garbage in the member's database, then a restart: CrashLoopBackOff (as the tests do)."""
        from kubernetes import client

        from hcp.etcd_health import read_health

        db = self.world.cluster("mgmt1").kubelet.pvc_dir(NAMESPACE, f"data-{MEMBER}") / "data" / "member" / "snap" / "db"
        self._until(f"{db}", db.is_file)
        db.write_bytes(os.urandom(64 * 1024))
        client.CoreV1Api(self.api).delete_namespaced_pod(MEMBER, NAMESPACE)

        def failing() -> bool | None:
            row = read_health(self.api, NAMESPACE).row(MEMBER)
            return row is not None and row.verdict == "failing" and row.pod is not None and \
                row.pod.last_exit_code is not None or None
        self._until(f"{MEMBER} failing", failing)

    def child(self, mode: str, spec: dict[str, Any]) -> dict[str, Any]:
        self._children += 1
        d = self.directory / "children"
        d.mkdir(exist_ok=True)
        stem = d / f"{self._children:03d}-{mode}"
        spec_path, out_path, log_path = (stem.with_suffix(s) for s in (".spec.json", ".out.json", ".log"))
        spec_path.write_text(json.dumps(spec))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | self.prefect.env()
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(log_path, "wb") as log:
            subprocess.run([sys.executable, "-m", "bench.member_recovery_bench", "--child", mode, str(spec_path),
                            str(out_path)], env=env, cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT)
        out = json.loads(out_path.read_text()) if out_path.exists() else {"status": "crashed", "error": "no output"}
        if out.get("status") != "succeeded":
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"child {mode} {out.get('status')}: {out.get('error')}\n--- {log_path}\n{tail}")
        return out

    def access(self) -> dict[str, str]:
        return {"kubeconfig": str(self.world.kubeconfig_path), "context": "mgmt1"}

    def flow(self) -> dict[str, Any]:
        params = {"hosted_cluster": CLUSTER, "management": self.access(), "member": MEMBER,
                  "approval": {"pre_approved_by": "member-recovery-bench"}}
        return self.child("flow", {"params": params})

    def baseline(self) -> dict[str, Any]:
        return self.child("baseline", {**self.access(), "namespace": NAMESPACE, "member": MEMBER})


def run(rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hcp-member-bench-") as tmp:
        bench = Bench(Path(tmp))
        try:
            t = time.perf_counter()
            bench.start()
            print(f"world up (HighlyAvailable {CLUSTER}, three etcd members) and a Prefect server in "
                  f"{time.perf_counter() - t:.1f} s")
            flows: list[dict[str, Any]] = []
            baselines: list[dict[str, Any]] = []
            for i in range(rounds):
                for kind in ("flow", "baseline"):
                    bench.healthy()
                    bench.break_member()
                    out = bench.flow() if kind == "flow" else bench.baseline()
                    (flows if kind == "flow" else baselines).append(out)
                    if kind == "flow":
                        print(f"round {i + 1} flow:     approval to healthy member {out['approval_to_healthy_s']:.1f} s "
                              f"(run {out['wall_s']:.1f} s)")
                    else:
                        print(f"round {i + 1} baseline: delete to healthy member {out['seconds']:.1f} s (new pod Running "
                              f"after {out['pod_running_s']:.1f} s, {out['checks']} etcdctl checks, {out['tool']})")
            flow_s = statistics.median(f["approval_to_healthy_s"] for f in flows)
            base_s = statistics.median(b["seconds"] for b in baselines)
            print(f"median: flow {flow_s:.1f} s, baseline ({baselines[0]['tool']}) {base_s:.1f} s: "
                  f"ratio {flow_s / base_s:.2f}x")
            print("flow steps, median seconds: " + ", ".join(
                f"{s} {statistics.median(f['steps'].get(s, 0.0) for f in flows):.2f}" for s in flows[0]["steps"]))
            return {"flow_s": flow_s, "baseline_s": base_s, "ratio": flow_s / base_s}
        finally:
            bench.close()


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(prog="python -m bench.member_recovery_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each (default 3)")
    return run(ap.parse_args(argv).rounds)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child_main(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
