"""etcd backup (issue 4): the `etcd_backup` flow against the raw floor, each measured in the same run.

1. online backup of a hosted cluster whose etcd holds >= 256 MiB: the flow's end-to-end wall time
   against `etcdctl snapshot save` to a local file (host-side etcdctl, the member's client URL and
   the control plane's etcd client certificate) plus `s3.upload_file` of that file to the same S3.
   Target: at most 1.3x.
   Also printed: where the time goes, piece by piece without Prefect (the pod-side commands of the
   snapshot step, the exec `cat` stream alone, the product's `upload_stream` against `upload_file`).
2. peak RSS (the child's own VmHWM) of the process running the flow for a 1 GiB snapshot, against
   the same child process doing everything but the backup (a dry run: imports, Prefect, the
   clients, the read-only preflight). Target: under 300 MB.
3. quiesced backup (256 MiB): the API downtime against the `snapshot-etcd` step's own seconds.
   Target: downtime at most the snapshot time + 5 s.
4. fleet backup of 50 SingleReplica hosted clusters against 50 sequential raw floors, per-cluster
   overhead, and the mean seconds of each task over the subflows (from the Prefect API).

Every flow runs in a child process of its own (as a runner would: not sharing a GIL with the
simulated management cluster), against one `prefect server start` started for the bench; the floor
runs in a child process too. Never a test: nothing here fails a build.

    python -m bench backup                       # the issue's sizes (256 MiB and 1 GiB etcd, 50 clusters)
    python -m bench backup --quick               # 32 MiB / 128 MiB, one round, 5 clusters
    python -m bench backup --only single|fleet   # targets 1-3, or the fleet alone
    python -m bench backup --only online         # target 1 alone (with where the time goes)
    BENCH_BACKUP_MIB=64 BENCH_BACKUP_MEM_MIB=256 BENCH_BACKUP_FLEET=10 python -m bench backup

This module imports only the standard library at the top: the child processes (`--child MODE`)
must not carry the simulator's modules into the memory they measure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parent.parent
CP_NAMESPACE = "clusters-demo"
HOSTED_CLUSTER = "clusters/demo"
BASELINE_RATIO_TARGET = 1.3
PEAK_MB_TARGET = 300.0
DOWNTIME_MARGIN_S = 5.0
FLEET_FLOW = REPO / "flows" / "fleet_backup.py"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


# ---------------------------------------------------------------------------------------------
# The child processes: one flow run, one dry run, the imports alone, or the raw floor.


def _peak_rss_bytes() -> int:
    """This process's own peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries the parent's
    high-water mark across fork+exec into it, so a child of a big parent reports the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child_flow(spec: dict[str, Any]) -> dict[str, Any]:
    from cli.adhoc import run_here
    from flows.etcd_backup import EtcdBackupParams, etcd_backup

    params = EtcdBackupParams.model_validate(spec["params"])
    t, t_epoch = time.perf_counter(), time.time()
    report = run_here(etcd_backup, params).result()
    wall = time.perf_counter() - t
    peak = _peak_rss_bytes()  # before anything else this process does
    out: dict[str, Any] = {
        "wall_s": wall, "peak_rss": peak, "status": report.status, "error": report.error,
        "figures": dict(report.figures),
        "steps": [{"name": s.name, "seconds": s.seconds, "outcome": s.outcome,
                   "at": s.started_at.timestamp() - t_epoch} for s in report.steps],
    }
    location = report.figures.get("backup location", "")
    if report.status == "succeeded" and location.startswith("s3://") and not params.dry_run:
        import boto3

        bucket, _, prefix = location[len("s3://"):].partition("/")
        body = boto3.client("s3").get_object(Bucket=bucket, Key=prefix + "manifest.json")["Body"].read()
        manifest = json.loads(body)
        out["manifest"] = {k: manifest.get(k) for k in ("downtime_seconds", "size_bytes", "mode", "member")}
    return out


def _child_imports(spec: dict[str, Any]) -> dict[str, Any]:
    """Everything the flow's process loads before it runs, and its clients, but no flow run."""
    import boto3
    import flows.etcd_backup  # noqa: F401  (Prefect, kubernetes, pydantic, the product)
    from hcp.cluster_access import ClusterAccess

    api = ClusterAccess.model_validate(spec["params"]["management"]).api_client()
    boto3.client("s3").head_bucket(Bucket=spec["params"]["bucket"])
    api.close()
    return {"peak_rss": _peak_rss_bytes()}


def _child_floor(spec: dict[str, Any]) -> dict[str, Any]:
    """The raw floor: `etcdctl snapshot save` to a local file, then `s3.upload_file` of it."""
    import boto3

    s3 = boto3.client("s3")
    t = time.perf_counter()
    done = subprocess.run(spec["etcdctl"], capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"},
                          timeout=1800)
    snapshot_s = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"etcdctl snapshot save failed: {done.stderr[-2000:]}")
    path = spec["path"]
    t2 = time.perf_counter()
    s3.upload_file(path, spec["bucket"], spec["key"], ExtraArgs={"ServerSideEncryption": "AES256"})
    upload_s = time.perf_counter() - t2
    size = os.path.getsize(path)
    if not spec.get("keep"):
        os.unlink(path)
    return {"snapshot_s": snapshot_s, "upload_s": upload_s, "wall_s": snapshot_s + upload_s, "size": size,
            "peak_rss": _peak_rss_bytes()}


def _child_floors(spec: dict[str, Any]) -> dict[str, Any]:
    """The fleet's floor: one raw floor after the other."""
    results = [_child_floor(item) for item in spec["items"]]
    return {"floors": results, "wall_s": sum(r["wall_s"] for r in results), "peak_rss": _peak_rss_bytes()}


def _child_fleet(spec: dict[str, Any]) -> dict[str, Any]:
    from flows.fleet_backup import FleetBackupParams, fleet_backup

    params = FleetBackupParams.model_validate(spec["params"])
    t = time.perf_counter()
    state = fleet_backup(params, return_state=True)
    wall = time.perf_counter() - t
    peak = _peak_rss_bytes()
    report = state.result(raise_on_failure=False)
    if isinstance(report, BaseException):
        raise report
    out = {"wall_s": wall, "peak_rss": peak, "status": report.status, "concurrency": params.concurrency,
           "clusters": [{"hosted_cluster": c.hosted_cluster, "status": c.status, "seconds": c.seconds,
                         "size_bytes": c.size_bytes, "error": c.error} for c in report.clusters]}
    try:
        out["task_seconds"] = _subflow_task_seconds(state.state_details.flow_run_id)
    except Exception as e:  # a diagnostic: never lose the figures over it
        out["task_seconds_error"] = f"{type(e).__name__}: {e}"
    return out


def _subflow_task_seconds(fleet_run_id: Any) -> dict[str, Any]:
    """Mean seconds per task name over the fleet's etcd-backup subflow runs (from the Prefect API),
    and the subflows' own mean run time: where a fleet's per-cluster time goes."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as c:
        subflows = c.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[fleet_run_id])), limit=200)
        ids = [f.id for f in subflows]
        task_runs: list[Any] = []
        for i in range(0, len(ids), 10):
            offset = 0
            while True:
                page = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids[i:i + 10])),
                                        limit=200, offset=offset)
                task_runs += page
                offset += len(page)
                if len(page) < 200:
                    break
    sums: dict[str, list[float]] = {}
    for tr in task_runs:
        if tr.start_time and tr.end_time:
            name = tr.name.rsplit("-", 1)[0]
            sums.setdefault(name, []).append((tr.end_time - tr.start_time).total_seconds())
    per_task = {name: sum(v) / len(v) for name, v in sums.items()}
    runs = [(f.end_time - f.start_time).total_seconds() for f in subflows if f.start_time and f.end_time]
    return {"subflows": len(subflows), "subflow_run_mean_s": sum(runs) / len(runs) if runs else 0.0,
            "per_task_mean_s": per_task}


def _child_diag(spec: dict[str, Any]) -> dict[str, Any]:
    """Where an online backup's time goes, piece by piece, without Prefect: the pod-side commands
    of the snapshot-etcd step one by one, the exec `cat` stream alone and the product's hashed
    stream (cat beside the in-pod hasher) alone, the product's `upload_stream` of a local copy against
    boto3's `upload_file` of the same copy, the quiesced upload-snapshot step's pipeline (the hashed
    stream into upload_stream, checked: `upload_snapshot_file`), and the online step's: the snapshot
    streamed out while etcdctl writes it, drained alone and into upload_stream, checked
    (`save_and_upload_snapshot`)."""
    from hcp import pod_exec, s3_transfer
    from hcp.aws_access import AwsAccess
    from hcp.cluster_access import ClusterAccess
    from hcp.etcd_member import EtcdMember, etcdctl_argv, remove_snapshot, save_and_stream_snapshot, stream_hashed_snapshot
    from hcp.snapshot_upload import save_and_upload_snapshot, upload_snapshot_file

    api = ClusterAccess.model_validate(spec["management"]).api_client()
    s3 = AwsAccess().s3_client()
    ns, pod, path, local = spec["namespace"], spec["pod"], spec["pod_path"], spec["local_path"]
    bucket, prefix = spec["bucket"], spec["prefix"]
    member = EtcdMember(ns, pod)
    out: dict[str, Any] = {}

    def timed(name: str, fn: Any) -> Any:
        t = time.perf_counter()
        result = fn()
        out[name] = time.perf_counter() - t
        return result

    def run(argv: list[str]) -> Any:
        return pod_exec.run(api, ns, pod, "etcd", argv, timeout=1800)

    def local_chunks() -> Iterator[bytes]:
        with open(local, "rb") as f:
            while chunk := f.read(MiB):
                yield chunk

    def drain(chunks: Any) -> int:
        return sum(len(c) for c in chunks)

    try:
        timed("pod_snapshot_save", lambda: run(etcdctl_argv("snapshot", "save", path)))
        timed("pod_snapshot_status", lambda: run(etcdctl_argv("snapshot", "status", path, "-w", "json")))
        timed("pod_sha256sum", lambda: run(["sha256sum", path]))
        pod_size = int(timed("pod_small_exec", lambda: run(["stat", "-c", "%s", path])).text)
        out["exec_cat_bytes"] = timed("exec_cat", lambda: drain(pod_exec.stream_stdout(api, ns, pod, "etcd", ["cat", path])))
        timed("exec_hashed", lambda: drain(stream_hashed_snapshot(api, member, path)))
        sse = {"sse": "AES256"}
        timed("upload_stream_local", lambda: s3_transfer.upload_stream(s3, bucket, f"{prefix}/a.db", local_chunks(), **sse))
        timed("upload_file_local", lambda: s3.upload_file(local, bucket, f"{prefix}/b.db",
                                                          ExtraArgs={"ServerSideEncryption": "AES256"}))
        timed("hashed_stream_into_upload", lambda: upload_snapshot_file(api, member, path, s3, bucket, f"{prefix}/c.db",
                                                                        size_bytes=pod_size, **sse))
        live = save_and_stream_snapshot(api, member, path + ".live")
        timed("live_stream", lambda: (drain(live), live.info))  # the bytes, then the facts that follow them
        out["live_save_s"] = live.save_seconds
        saved = timed("live_into_upload", lambda: save_and_upload_snapshot(api, member, path + ".live", s3, bucket,
                                                                           f"{prefix}/d.db", concurrency=8, **sse))
        out["live_into_upload_save_s"] = saved.save_seconds
    finally:
        remove_snapshot(api, member, path + ".live")
        run(["rm", "-f", path])
        api.close()
    out["peak_rss"] = _peak_rss_bytes()
    return out


_CHILD_MODES = {"flow": _child_flow, "imports": _child_imports, "floor": _child_floor, "floors": _child_floors,
                "fleet": _child_fleet, "diag": _child_diag}


def _child_main(mode: str, spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    try:
        out = _CHILD_MODES[mode](spec)
    except BaseException as e:  # the parent prints it with the child's log
        out = {"status": "crashed", "error": f"{type(e).__name__}: {e}"}
    Path(out_path).write_text(json.dumps(out, default=str))


# ---------------------------------------------------------------------------------------------
# The parent: a Prefect server, the simulated world, the children.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrefectServer:
    """`prefect server start` in a process group of its own, with a home (SQLite) in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {"PREFECT_HOME": str(self.directory / "home"), "PREFECT_API_URL": self.url,
                "PREFECT_LOCAL_STORAGE_PATH": str(self.directory / "results"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false",
                "PREFECT_LOGGING_LEVEL": "WARNING"}

    def start(self, timeout: float = 120.0) -> PrefectServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | self.env()
        env.pop("PREFECT_API_URL")
        prefect = Path(sys.executable).with_name("prefect")
        with open(self.directory / "server.log", "ab") as log:
            self.proc = subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(self.port),
                                          "--no-ui", "--analytics-off"], env=env, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        tail = (self.directory / "server.log").read_text(errors="replace")[-3000:]
        self.close()
        raise RuntimeError(f"prefect server did not start on port {self.port}:\n{tail}")

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, 15)  # its own group (start_new_session): the server and its workers
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


class _Renamed:
    """world_bench's fill writes keys fill-00000000...; a second fill of the same etcd gets its own names."""

    def __init__(self, client: Any, tag: str) -> None:
        self.client, self.tag = client, tag

    def put_many(self, items: list[tuple[str, bytes]]) -> int:
        return self.client.put_many([(k.replace("/fill-", f"/fill-{self.tag}-"), v) for k, v in items])


class BackupBench:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.prefect = PrefectServer(directory / "prefect")
        self.world: Any = None
        self.filled = 0
        self._children = 0
        self._fills = 0

    # The world.

    def start_world(self, availability: str = "HighlyAvailable", hosted_clusters: int = 1,
                    name: str = "world", timeout: float = 180) -> None:
        from hcpsim.hypershift.etcd_writer import WriterSettings
        from hcpsim.world import World, WorldSettings

        settings = WorldSettings(hosted_clusters=hosted_clusters, availability=availability,
                                 node_pool_replicas=1 if availability == "SingleReplica" else 2)
        if hosted_clusters > 1:
            settings.writer = WriterSettings(keys_per_second=5)
        self.world = World(self.directory / name, settings)
        self.world.start()
        self.world.wait_available(timeout=timeout)
        self.filled = 0

    def close_world(self) -> None:
        if self.world is not None:
            self.world.close()
            self.world = None

    def close(self) -> None:
        self.close_world()
        self.prefect.close()

    @property
    def backend(self) -> Any:
        return self.world.cluster("mgmt1").backend

    @property
    def bucket(self) -> str:
        return self.world.settings.bucket

    def fill_to(self, mib: int, namespace: str = CP_NAMESPACE) -> float:
        """Fill the control plane's etcd (world_bench's helper) until it holds `mib` MiB of values."""
        from bench.world_bench import _fill
        from hcpsim.hypershift.etcd_writer import client_for_namespace

        if self.filled >= mib * MiB:
            return 0.0
        client = client_for_namespace(self.backend, namespace)
        assert client is not None, f"no etcd client for {namespace}"
        self._fills += 1
        seconds, written = _fill(_Renamed(client, f"b{self._fills}"), mib * MiB - self.filled)  # type: ignore[arg-type]
        self.filled += written
        return seconds

    def etcd_tls(self, namespace: str = CP_NAMESPACE) -> tuple[str, str, str]:
        """The control plane's etcd CA and client certificate as files (what kube-apiserver mounts)."""
        import base64

        d = self.directory / "tls" / self.world.directory.name / namespace
        if not d.exists():
            d.mkdir(parents=True)
            secret = self.backend.store.get(("", "secrets"), namespace, "etcd-client-tls")
            ca = self.backend.store.get(("", "configmaps"), namespace, "etcd-ca")
            (d / "ca.crt").write_text(ca["data"]["ca.crt"])
            (d / "client.crt").write_bytes(base64.b64decode(secret["data"]["etcd-client.crt"]))
            (d / "client.key").write_bytes(base64.b64decode(secret["data"]["etcd-client.key"]))
            (d / "client.key").chmod(0o600)
        return str(d / "ca.crt"), str(d / "client.crt"), str(d / "client.key")

    def pod_ip(self, namespace: str, pod: str) -> str:
        obj = self.backend.store.get(("", "pods"), namespace, pod)
        assert obj is not None and (obj.get("status") or {}).get("podIP"), f"pod {namespace}/{pod} has no IP"
        return obj["status"]["podIP"]

    def delete_prefix(self, prefix: str) -> None:
        """Keep the S3 simulator lean: each backup is gone once measured."""
        s3 = self.world.aws.client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix + "/"):
            keys = [{"Key": o["Key"]} for o in page.get("Contents") or []]
            if keys:
                s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})

    # Children.

    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AWS_", "HCP_"))}
        env.update(self.world.aws.env())
        env.update(self.prefect.env())
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    def child(self, mode: str, spec: dict[str, Any]) -> dict[str, Any]:
        self._children += 1
        d = self.directory / "children"
        d.mkdir(exist_ok=True)
        stem = d / f"{self._children:03d}-{mode}"
        spec_path, out_path, log_path = stem.with_suffix(".spec.json"), stem.with_suffix(".out.json"), stem.with_suffix(".log")
        spec_path.write_text(json.dumps(spec))
        with open(log_path, "wb") as log:
            done = subprocess.run([sys.executable, "-m", "bench.backup_bench", "--child", mode, str(spec_path), str(out_path)],
                                  env=self._child_env(), cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT)
        out = json.loads(out_path.read_text()) if out_path.exists() else {"status": "crashed", "error": f"exit {done.returncode}"}
        if out.get("status") in ("crashed", "failed"):
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"child {mode} {out.get('status')}: {out.get('error')}\n--- {log_path} (tail)\n{tail}")
        return out

    def params(self, prefix: str, hosted_cluster: str = HOSTED_CLUSTER, **kw: Any) -> dict[str, Any]:
        return {"hosted_cluster": hosted_cluster, "bucket": self.bucket, "prefix": prefix,
                "management": {"kubeconfig": str(self.world.kubeconfig_path), "context": "mgmt1"},
                "approval": {"pre_approved_by": "backup-bench", "poll_interval_seconds": 1}, **kw}

    def flow(self, mode: str = "online", hosted_cluster: str = HOSTED_CLUSTER, **kw: Any) -> dict[str, Any]:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        try:
            return self.child("flow", {"params": self.params(prefix, hosted_cluster, mode=mode, **kw)})
        finally:
            self.delete_prefix(prefix)

    def floor_spec(self, member: str, namespace: str, prefix: str) -> dict[str, Any]:
        from hcpsim.etcd.binaries import etcd_binary

        ca, cert, key = self.etcd_tls(namespace)
        path = self.directory / f"floor-{uuid.uuid4().hex[:8]}.db"
        # The server certificate names the members (etcd-N.etcd-discovery...), not their pod IPs: the
        # client certificate is still presented and the traffic is TLS; only the name check is skipped.
        argv = [str(etcd_binary("etcdctl")), f"--endpoints=https://{self.pod_ip(namespace, member)}:2379", "--dial-timeout=10s",
                "--cacert", ca, "--cert", cert, "--key", key, "--insecure-skip-tls-verify", "snapshot", "save", str(path)]
        return {"etcdctl": argv, "path": str(path), "bucket": self.bucket, "key": f"{prefix}/{namespace}/snapshot.db"}

    def diag(self, member: str, namespace: str = CP_NAMESPACE) -> dict[str, Any]:
        """A floor whose file is kept, then the decomposition (`_child_diag`) against that file."""
        prefix = f"bench-diag-{uuid.uuid4().hex[:8]}"
        spec = self.floor_spec(member, namespace, prefix) | {"keep": True}
        try:
            floor = self.child("floor", spec)
            out = self.child("diag", {"management": {"kubeconfig": str(self.world.kubeconfig_path), "context": "mgmt1"},
                                      "namespace": namespace, "pod": member, "local_path": spec["path"],
                                      "pod_path": f"/var/lib/data/bench-diag-{uuid.uuid4().hex[:8]}.db",
                                      "bucket": self.bucket, "prefix": prefix})
        finally:
            Path(spec["path"]).unlink(missing_ok=True)
            self.delete_prefix(prefix)
        return out | {"floor_snapshot_s": floor["snapshot_s"], "floor_upload_s": floor["upload_s"], "size": floor["size"]}

    def floor(self, member: str, namespace: str = CP_NAMESPACE) -> dict[str, Any]:
        prefix = f"bench-floor-{uuid.uuid4().hex[:8]}"
        spec = self.floor_spec(member, namespace, prefix)
        try:
            return self.child("floor", spec)
        finally:
            Path(spec["path"]).unlink(missing_ok=True)
            self.delete_prefix(prefix)


def _steps(result: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in result["steps"]:
        out[s["name"]] = out.get(s["name"], 0.0) + s["seconds"]
    return out


def _step_line(result: dict[str, Any]) -> str:
    steps = _steps(result)
    accounted = sum(steps.values())
    parts = [f"{name} {sec:.2f}" for name, sec in steps.items() if sec >= 0.05]
    if not all("at" in s for s in result["steps"]):
        return f"steps (s): {', '.join(parts)}; outside steps {result['wall_s'] - accounted:.2f}"
    # Steps may overlap (the preflight reads run side by side): the time outside them is the wall
    # time no step covers, shown as the gaps before each step (and after the last).
    gaps, end, outside = [], 0.0, 0.0
    for s in sorted(result["steps"], key=lambda s: s["at"]):
        if s["at"] - end >= 0.05:
            gaps.append(f"before {s['name']} {s['at'] - end:.2f}")
        outside += max(0.0, s["at"] - end)
        end = max(end, s["at"] + s["seconds"])
    if result["wall_s"] - end >= 0.05:
        gaps.append(f"after the last {result['wall_s'] - end:.2f}")
    outside += max(0.0, result["wall_s"] - end)
    return f"steps (s): {', '.join(parts)}; outside steps {outside:.2f}" + (f" ({', '.join(gaps)})" if gaps else "")


def _print_diag(d: dict[str, Any]) -> dict[str, float]:
    mb = d["size"] / 1e6
    print(f"  where the time goes ({mb:.0f} MB, the same member, no Prefect):")
    print(f"    snapshot: in-pod etcdctl snapshot save {d['pod_snapshot_save']:.2f} s (host etcdctl "
          f"{d['floor_snapshot_s']:.2f} s); then in the pod: snapshot status {d['pod_snapshot_status']:.2f} s, "
          f"a trivial exec (stat) {d['pod_small_exec']:.2f} s; (sha256sum of the file {d['pod_sha256sum']:.2f} s: "
          "no longer a step of its own)")
    print(f"    upload: exec cat alone {d['exec_cat']:.2f} s ({mb / d['exec_cat']:.0f} MB/s); the hashed stream (cat beside the "
          f"in-pod hasher) alone {d['exec_hashed']:.2f} s; the product's upload_stream of a local copy "
          f"{d['upload_stream_local']:.2f} s ({mb / d['upload_stream_local']:.0f} MB/s); boto3 upload_file of it "
          f"{d['upload_file_local']:.2f} s ({mb / d['upload_file_local']:.0f} MB/s); the hashed stream into "
          f"upload_stream, checked (the quiesced upload-snapshot step) {d['hashed_stream_into_upload']:.2f} s")
    print(f"    online, saved and streamed at once: drained alone {d['live_stream']:.2f} s (etcdctl {d['live_save_s']:.2f} s "
          f"of it); into upload_stream, checked (the snapshot-and-upload step) {d['live_into_upload']:.2f} s "
          f"(etcdctl {d['live_into_upload_save_s']:.2f} s of it)")
    return {k: float(v) for k, v in d.items() if isinstance(v, (int, float))}


def _load() -> str:
    """The 1-minute load average: other work on the same cores moves every figure."""
    return f"{os.getloadavg()[0]:.1f}"


def _mb(n: float) -> float:
    return n / 1e6


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def run(mib: int | None = None, mem_mib: int | None = None, rounds: int | None = None,
        fleet: int | None = None, only: str | None = None) -> dict[str, float]:
    """Targets 1-3 on one HighlyAvailable hosted cluster, then the fleet (`only`: "single" or "fleet")."""
    mib = mib or _env_int("BENCH_BACKUP_MIB", 256)
    mem_mib = mem_mib or _env_int("BENCH_BACKUP_MEM_MIB", 1024)
    rounds = rounds or _env_int("BENCH_BACKUP_ROUNDS", 2)
    fleet = fleet if fleet is not None else _env_int("BENCH_BACKUP_FLEET", 50)
    figures: dict[str, float] = {}
    rows: list[tuple[str, str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="hcp-backup-bench-") as tmp:
        bench = BackupBench(Path(tmp))
        try:
            t = time.perf_counter()
            bench.prefect.start()
            print(f"prefect server (own process) up in {time.perf_counter() - t:.1f} s")
            if only != "fleet":
                _single_cluster(bench, mib, mem_mib, rounds, figures, rows, online_only=only == "online")
            if fleet > 0 and only not in ("single", "online"):
                rows += fleet_bench(bench, fleet, figures)
        finally:
            bench.close()
    print("\nbackup bench results (each against a baseline measured in the same run):")
    widths = [max(len(r[i]) for r in rows + [("what", "value", "baseline", "ratio", "target")]) for i in range(5)]
    for row in [("what", "value", "baseline", "ratio", "target")] + rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)))
    return figures


def _single_cluster(bench: BackupBench, mib: int, mem_mib: int, rounds: int, figures: dict[str, float],
                    rows: list[tuple[str, str, str, str, str]], online_only: bool = False) -> None:
    bench.start_world()
    fill_s = bench.fill_to(mib)
    print(f"filled {CP_NAMESPACE}'s etcd (3 members) with {bench.filled / MiB:.0f} MiB in {fill_s:.1f} s")

    # 1. online backup against etcdctl snapshot save + s3.upload_file.
    flows, floors = [], []
    for r in range(rounds):
        res = bench.flow("online")
        flows.append(res)
        member = res["figures"]["member"]
        fl = bench.floor(member)
        floors.append(fl)
        print(f"  round {r + 1} (load {_load()}): flow {res['wall_s']:.2f} s (snapshot {res['manifest']['size_bytes'] / MiB:.0f} MiB "
              f"from {member}, child peak {_mb(res['peak_rss']):.0f} MB); floor {fl['wall_s']:.2f} s "
              f"(etcdctl snapshot save {fl['snapshot_s']:.2f} + upload_file {fl['upload_s']:.2f})")
        print(f"    {_step_line(res)}")
    best, floor = min(flows, key=lambda x: x["wall_s"]), min(floors, key=lambda x: x["wall_s"])
    ratio = best["wall_s"] / floor["wall_s"]
    print(f"online etcd-backup of a {mib} MiB etcd: {best['wall_s']:.2f} s; raw floor (host etcdctl snapshot save "
          f"{floor['snapshot_s']:.2f} s + boto3 upload_file {floor['upload_s']:.2f} s): {floor['wall_s']:.2f} s; "
          f"ratio {ratio:.2f}x (target <= {BASELINE_RATIO_TARGET}x: {_verdict(ratio <= BASELINE_RATIO_TARGET)})")
    # Best against best is the figure (the least disturbed run of each); each round's own ratio shows the spread.
    per_round = [f["wall_s"] / fl["wall_s"] for f, fl in zip(flows, floors)]
    print(f"  each round's flow / its own floor: {', '.join(f'{x:.2f}x' for x in per_round)} "
          f"(median {statistics.median(per_round):.2f}x)")
    figures.update({"online_s": best["wall_s"], "online_floor_s": floor["wall_s"], "online_ratio": ratio,
                    "floor_snapshot_s": floor["snapshot_s"], "floor_upload_s": floor["upload_s"],
                    "snapshot_mib": best["manifest"]["size_bytes"] / MiB})
    figures.update({f"online_step_{k}_s": v for k, v in _steps(best).items()})
    rows.append((f"online backup, {mib} MiB", f"{best['wall_s']:.1f} s", f"{floor['wall_s']:.1f} s (etcdctl+upload_file)",
                 f"{ratio:.2f}x", f"<= {BASELINE_RATIO_TARGET}x {_verdict(ratio <= BASELINE_RATIO_TARGET)}"))
    figures.update({f"diag_{k}": v for k, v in _print_diag(bench.diag(member)).items()})
    if online_only:
        bench.close_world()
        return

    # 3. quiesced: API downtime against the snapshot step alone.
    margins = []
    for r in range(rounds):
        res = bench.flow("quiesced")
        downtime = float(res["manifest"]["downtime_seconds"])
        snap = _steps(res).get("snapshot-etcd", float("nan"))
        margins.append((downtime - snap, downtime, snap, res))
        print(f"  round {r + 1}: quiesced flow {res['wall_s']:.2f} s; API downtime {downtime:.2f} s; "
              f"snapshot-etcd step {snap:.2f} s")
        print(f"    {_step_line(res)}")
    margin, downtime, snap, worst = max(margins, key=lambda m: m[0])
    ok = margin <= DOWNTIME_MARGIN_S
    print(f"quiesced etcd-backup of a {mib} MiB etcd: API downtime {downtime:.2f} s; snapshot-etcd step {snap:.2f} s; "
          f"downtime - snapshot = {margin:.2f} s (target <= {DOWNTIME_MARGIN_S:.0f} s: {_verdict(ok)}; worst of {rounds})")
    figures.update({"quiesced_downtime_s": downtime, "quiesced_snapshot_s": snap, "quiesced_margin_s": margin,
                    "quiesced_s": worst["wall_s"]})
    rows.append((f"quiesced API downtime, {mib} MiB", f"{downtime:.1f} s", f"{snap:.1f} s (snapshot-etcd step)",
                 f"+{margin:.1f} s", f"<= +{DOWNTIME_MARGIN_S:.0f} s {_verdict(ok)}"))

    # 2. peak memory of the flow's process for a 1 GiB snapshot.
    fill_s = bench.fill_to(mem_mib)
    print(f"filled the same etcd on to {bench.filled / MiB:.0f} MiB (+{fill_s:.1f} s)")
    imports = bench.child("imports", {"params": bench.params("bench-imports")})
    dry = bench.flow("online", dry_run=True)
    big = bench.flow("online")
    big_floor = bench.floor(big["figures"]["member"])
    peak, base = _mb(big["peak_rss"]), _mb(dry["peak_rss"])
    ok = peak < PEAK_MB_TARGET
    size_mib = big["manifest"]["size_bytes"] / MiB
    print(f"peak RSS of the process running etcd-backup of a {size_mib:.0f} MiB snapshot: {peak:.0f} MB "
          f"(target < {PEAK_MB_TARGET:.0f} MB: {_verdict(ok)}); the same process for a dry run (imports, Prefect, "
          f"clients, preflight; no backup): {base:.0f} MB; imports and clients alone: {_mb(imports['peak_rss']):.0f} MB; "
          f"the backup itself adds {peak - base:.0f} MB")
    big_ratio = big["wall_s"] / big_floor["wall_s"]
    print(f"  the same {size_mib:.0f} MiB backup took {big['wall_s']:.2f} s; raw floor {big_floor['wall_s']:.2f} s "
          f"(etcdctl {big_floor['snapshot_s']:.2f} + upload_file {big_floor['upload_s']:.2f}, peak "
          f"{_mb(big_floor['peak_rss']):.0f} MB); ratio {big_ratio:.2f}x")
    print(f"    {_step_line(big)}")
    figures.update({"peak_rss_mb": peak, "dry_run_rss_mb": base, "imports_rss_mb": _mb(imports["peak_rss"]),
                    "big_snapshot_mib": size_mib, "big_s": big["wall_s"], "big_floor_s": big_floor["wall_s"],
                    "big_ratio": big_ratio})
    rows.append((f"peak RSS, {size_mib:.0f} MiB snapshot", f"{peak:.0f} MB", f"{base:.0f} MB (dry run)",
                 f"+{peak - base:.0f} MB", f"< {PEAK_MB_TARGET:.0f} MB {_verdict(ok)}"))
    rows.append((f"online backup, {size_mib:.0f} MiB", f"{big['wall_s']:.1f} s", f"{big_floor['wall_s']:.1f} s",
                 f"{big_ratio:.2f}x", "(informational)"))
    bench.close_world()


def fleet_bench(bench: BackupBench, count: int, figures: dict[str, float]) -> list[tuple[str, str, str, str, str]]:
    if not FLEET_FLOW.exists():
        print("fleet bench: flows/fleet_backup.py not available  (TODO: measure the fleet backup of "
              f"{count} SingleReplica hosted clusters against {count} sequential raw floors once it exists)")
        return [(f"fleet backup, {count} HCs", "-", "-", "-", "TODO: flows/fleet_backup.py not available")]
    from hcp.naming import HostedClusterRef

    t = time.perf_counter()
    bench.start_world("SingleReplica", hosted_clusters=count, name="fleet-world", timeout=120 + 6 * count)
    print(f"world with {count} SingleReplica hosted clusters Available in {time.perf_counter() - t:.1f} s")
    prefix = f"bench-fleet-{uuid.uuid4().hex[:8]}"
    try:
        fleet = bench.child("fleet", {"params": {
            "management": {"kubeconfig": str(bench.world.kubeconfig_path), "context": "mgmt1"},
            "namespace": "clusters", "bucket": bench.bucket, "prefix": prefix}})
    finally:
        bench.delete_prefix(prefix)
    failed = [c for c in fleet["clusters"] if c["status"] != "succeeded"]
    if failed:
        print(f"  {len(failed)} cluster(s) failed, e.g. {failed[0]['hosted_cluster']}: {failed[0]['error']}")
    names = [c["hosted_cluster"] for c in fleet["clusters"]]
    prefix = f"bench-fleet-floor-{uuid.uuid4().hex[:8]}"
    items = [bench.floor_spec("etcd-0", HostedClusterRef.parse(n).control_plane_namespace, prefix) for n in names]
    try:
        floors = bench.child("floors", {"items": items})
    finally:
        for item in items:
            Path(item["path"]).unlink(missing_ok=True)
        bench.delete_prefix(prefix)
    bench.close_world()
    n = len(names)
    total, floor_total = fleet["wall_s"], floors["wall_s"]
    per_cluster = [c["seconds"] for c in fleet["clusters"]]
    floor_each = [f["wall_s"] for f in floors["floors"]]
    mean_size = sum(f["size"] for f in floors["floors"]) / max(n, 1) / MiB
    overhead = (total - floor_total) / max(n, 1)
    print(f"fleet-backup of {n} SingleReplica hosted clusters (concurrency {fleet['concurrency']}, snapshots "
          f"~{mean_size:.1f} MiB): {total:.1f} s, {total / n:.2f} s per cluster; {n} sequential raw floors: "
          f"{floor_total:.1f} s ({floor_total / n:.2f} s each); ratio {total / floor_total:.1f}x; overhead "
          f"{overhead:+.2f} s per cluster")
    print(f"  each cluster's etcd-backup subflow: mean {sum(per_cluster) / n:.2f} s, max {max(per_cluster):.2f} s "
          f"(raw floor mean {sum(floor_each) / n:.2f} s); peak RSS of the fleet's process "
          f"{_mb(fleet['peak_rss']):.0f} MB; {len(failed)} failed")
    ts = fleet.get("task_seconds")
    if ts:
        tasks = ", ".join(f"{k} {v:.2f}" for k, v in sorted(ts["per_task_mean_s"].items(), key=lambda kv: -kv[1])
                          if v >= 0.05)
        print(f"  per subflow (mean of {ts['subflows']}, Prefect's timestamps): run {ts['subflow_run_mean_s']:.2f} s; "
              f"tasks (s): {tasks}")
    elif fleet.get("task_seconds_error"):
        print(f"  (no per-task breakdown: {fleet['task_seconds_error']})")
    figures.update({"fleet_s": total, "fleet_floor_s": floor_total, "fleet_ratio": total / floor_total,
                    "fleet_overhead_per_cluster_s": overhead, "fleet_subflow_mean_s": sum(per_cluster) / n,
                    "fleet_peak_rss_mb": _mb(fleet["peak_rss"]), "fleet_failed": float(len(failed))})
    return [(f"fleet backup, {n} HCs", f"{total:.1f} s", f"{floor_total:.1f} s ({n} floors)",
             f"{total / floor_total:.1f}x", f"{overhead:+.2f} s/cluster")]


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(prog="python -m bench backup", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, help="etcd size for the online and quiesced backups (default 256, "
                    "env BENCH_BACKUP_MIB)")
    ap.add_argument("--mem-mib", type=int, help="etcd size for the memory figure (default 1024, env BENCH_BACKUP_MEM_MIB)")
    ap.add_argument("--rounds", type=int, help="rounds of the online and quiesced backups (default 2)")
    ap.add_argument("--fleet", type=int, help="hosted clusters of the fleet backup (default 50; 0: skip)")
    ap.add_argument("--quick", action="store_true", help="32 MiB / 128 MiB, one round, 5 clusters")
    ap.add_argument("--only", choices=["single", "online", "fleet"],
                    help="single: targets 1-3 only; online: target 1 only; fleet: the fleet only")
    a = ap.parse_args(argv)
    if a.quick:
        a.mib, a.mem_mib, a.rounds = a.mib or 32, a.mem_mib or 128, a.rounds or 1
        a.fleet = 5 if a.fleet is None else a.fleet
    return run(a.mib, a.mem_mib, a.rounds, a.fleet, a.only)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child_main(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
