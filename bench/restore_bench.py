"""In-place etcd restore (issue 5, benchmark 1): the `etcd_restore` flow against the raw floor, both
measured in the same run.

A hosted cluster's etcd is filled to >= 256 MiB and backed up with the etcd-backup flow; then

* the flow: `etcd-restore` (source latest-backup, pre-approved) in a child process of its own, the
  way a runner runs it. "API back" is the end of its `restore-availability` step (the API servers
  ready again), counted from the flow call; the total (verification, Available, old data removed)
  is printed too, with every step's start and seconds;
* the raw floor, in a child process too: boto3 `download_file` of the same snapshot object, host
  `etcdutl snapshot restore` of it, a local `etcd` started on the result and polled until
  `/health` says true (the real etcd 3.5 binaries, hcp.etcd_tools). download_file runs twice, as
  configured by default (ranged GETs in threads) and with one GET; the faster counts. On the
  simulator's S3 (moto reads the whole object for every ranged GET) the default is several times
  slower than one GET, which would make the floor an artefact of the simulator; the ratio against
  that default floor is printed too. A floor runs before and after every flow run; the best of
  each is compared, and the spread is printed (the machine is shared).

Target: API back at most 1.5x the floor. The HighlyAvailable run (3 members, the production
default) is the benchmark; a SingleReplica run follows for comparison. Never a test: nothing here
fails a build.

    python -m bench restore                  # 256 MiB, 2 rounds, HighlyAvailable then SingleReplica
    python -m bench restore --quick          # 32 MiB, 1 round
    python -m bench restore --only ha        # HighlyAvailable only (sr: SingleReplica only)
    python -m bench restore --transfer both  # each round also with the exec copy into the data pod
    BENCH_RESTORE_MIB=512 BENCH_RESTORE_ROUNDS=3 python -m bench restore

Like bench/backup_bench.py (whose world, Prefect server and child-process plumbing it reuses), this
module imports only the standard library at the top: the children import what they use.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bench.backup_bench import _CHILD_MODES as _BACKUP_CHILD_MODES
from bench.backup_bench import CP_NAMESPACE, MiB, REPO, BackupBench, _env_int, _peak_rss_bytes, \
    _verdict

RATIO_TARGET = 1.5
AVAILABILITY_STEP = "restore-availability"
VERIFY_STEP = "verify-restore"


# ---------------------------------------------------------------------------------------------
# The children: one restore flow run, one raw floor.


def _loadavg() -> list[float]:
    return list(os.getloadavg())


def _child_restore(spec: dict[str, Any]) -> dict[str, Any]:
    from cli.adhoc import run_here
    from flows.etcd_restore import EtcdRestoreParams, etcd_restore

    params = EtcdRestoreParams.model_validate(spec["params"])
    load_before = _loadavg()
    t0_wall = time.time()
    t = time.perf_counter()
    report = run_here(etcd_restore, params).result()
    wall = time.perf_counter() - t
    steps = [{"name": s.name, "start_s": s.started_at.timestamp() - t0_wall, "seconds": s.seconds,
              "outcome": s.outcome} for s in report.steps]

    def end_of(name: str) -> float | None:
        ends = [s["start_s"] + s["seconds"] for s in steps if s["name"] == name]
        return max(ends) if ends else None

    return {"wall_s": wall, "status": report.status, "error": report.error, "figures": dict(report.figures),
            "steps": steps, "api_back_s": end_of(AVAILABILITY_STEP), "verified_s": end_of(VERIFY_STEP),
            "report_started_s": report.started_at.timestamp() - t0_wall,
            "load_before": load_before, "load_after": _loadavg(), "peak_rss": _peak_rss_bytes()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_restore_floor(spec: dict[str, Any]) -> dict[str, Any]:
    """download_file, etcdutl snapshot restore, etcd started and healthy: nothing checked, nothing else."""
    import boto3
    from boto3.s3.transfer import TransferConfig

    from hcp.etcd_tools import etcd_tool

    work = Path(spec["work_dir"]) / f"floor-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    path, data = work / "snapshot.db", work / "data"
    cport, pport = _free_port(), _free_port()
    peer, url = f"http://127.0.0.1:{pport}", f"http://127.0.0.1:{cport}"
    s3 = boto3.client("s3")
    load_before = _loadavg()
    proc: subprocess.Popen[bytes] | None = None
    try:
        # download_file as it comes (ranged GETs, 10 threads), then with one GET: the simulator's S3
        # (moto) reads the whole object for every ranged GET, so on loopback the single GET is several
        # times faster. The floor takes the faster of the two (both printed).
        t = time.perf_counter()
        s3.download_file(spec["bucket"], spec["key"], str(path))
        ranged_s = time.perf_counter() - t
        path.unlink()
        t = time.perf_counter()
        s3.download_file(spec["bucket"], spec["key"], str(path), Config=TransferConfig(multipart_threshold=1 << 62))
        single_s = time.perf_counter() - t
        download_s = min(ranged_s, single_s)
        t1 = time.perf_counter()
        subprocess.run([str(etcd_tool("etcdutl")), "snapshot", "restore", str(path), "--data-dir", str(data),
                        "--name", "floor", "--initial-cluster", f"floor={peer}", "--initial-advertise-peer-urls", peer,
                        "--initial-cluster-token", "floor"], check=True, capture_output=True, timeout=1800)
        t2 = time.perf_counter()
        with open(work / "etcd.log", "wb") as log:
            proc = subprocess.Popen([str(etcd_tool("etcd")), "--name", "floor", "--data-dir", str(data),
                                     "--listen-client-urls", url, "--advertise-client-urls", url,
                                     "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                                     "--initial-cluster", f"floor={peer}", "--initial-cluster-token", "floor",
                                     "--quota-backend-bytes", str(8 << 30)], stdout=log, stderr=log,
                                    stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if json.loads(r.read()).get("health") == "true":
                        break
            except (OSError, ValueError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"floor etcd not healthy (exit {proc.poll()}): "
                                   f"{(work / 'etcd.log').read_text(errors='replace')[-2000:]}")
            time.sleep(0.02)
        t3 = time.perf_counter()
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        size = path.stat().st_size if path.exists() else 0
        shutil.rmtree(work, ignore_errors=True)
    return {"download_s": download_s, "ranged_download_s": ranged_s, "single_get_s": single_s,
            "restore_s": t2 - t1, "start_s": t3 - t2, "wall_s": download_s + t3 - t1, "size": size,
            "load_before": load_before, "load_after": _loadavg()}


_CHILD_MODES = {**_BACKUP_CHILD_MODES, "restore": _child_restore, "restore-floor": _child_restore_floor}


def _child_main(mode: str, spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    try:
        out = _CHILD_MODES[mode](spec)
    except BaseException as e:  # the parent prints it with the child's log
        out = {"status": "crashed", "error": f"{type(e).__name__}: {e}"}
    Path(out_path).write_text(json.dumps(out, default=str))


# ---------------------------------------------------------------------------------------------
# The parent.


class RestoreBench(BackupBench):
    """BackupBench (world, Prefect server, fill, S3 clean-up) whose children run this module, so
    they know the restore modes as well as the backup's."""

    def child(self, mode: str, spec: dict[str, Any]) -> dict[str, Any]:
        # BackupBench.child with this module as the child's entry point.
        self._children += 1
        d = self.directory / "children"
        d.mkdir(exist_ok=True)
        stem = d / f"{self._children:03d}-{mode}"
        spec_path, out_path, log_path = stem.with_suffix(".spec.json"), stem.with_suffix(".out.json"), stem.with_suffix(".log")
        spec_path.write_text(json.dumps(spec))
        with open(log_path, "wb") as log:
            done = subprocess.run([sys.executable, "-m", "bench.restore_bench", "--child", mode, str(spec_path),
                                   str(out_path)], env=self._child_env(), cwd=str(REPO), stdout=log,
                                  stderr=subprocess.STDOUT)
        out = json.loads(out_path.read_text()) if out_path.exists() else {"status": "crashed", "error": f"exit {done.returncode}"}
        if out.get("status") in ("crashed", "failed"):
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"child {mode} {out.get('status')}: {out.get('error')}\n--- {log_path} (tail)\n{tail}")
        return out

    def wait_etcd_answers(self, namespace: str = CP_NAMESPACE, timeout: float = 120) -> None:
        """The world is Available before every member listens (under load, seconds later): the fill
        needs them, so wait until one answers a read through the fill's own client."""
        from hcpsim.hypershift.etcd_writer import client_for_namespace

        deadline = time.monotonic() + timeout
        while True:
            client = client_for_namespace(self.backend, namespace)
            try:
                if client is not None:
                    client.count("/")
                    return
            except ConnectionError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def backup(self, prefix: str) -> dict[str, Any]:
        """An online etcd-backup kept under `prefix`; returns its manifest."""
        res = self.child("flow", {"params": self.params(prefix, mode="online")})
        location = res["figures"]["backup location"]
        bucket, _, key_prefix = location[len("s3://"):].partition("/")
        body = self.world.aws.client("s3").get_object(Bucket=bucket, Key=key_prefix + "manifest.json")["Body"].read()
        return json.loads(body) | {"bucket": bucket, "flow_s": res["wall_s"]}

    def restore(self, prefix: str, timeout: float, pod_download: bool = True) -> dict[str, Any]:
        work = self.directory / f"restore-{uuid.uuid4().hex[:8]}"
        try:
            return self.child("restore", {"params": self.params(prefix, source="latest-backup", work_dir=str(work),
                                                                timeout_seconds=timeout, pod_download=pod_download)})
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def restore_floor(self, bucket: str, key: str) -> dict[str, Any]:
        return self.child("restore-floor", {"bucket": bucket, "key": key, "work_dir": str(self.directory)})


def _load(before: list[float], after: list[float]) -> str:
    return f"load {before[0]:.1f} -> {after[0]:.1f}"


def _floor_line(fl: dict[str, Any]) -> str:
    return (f"  floor: {fl['wall_s']:.2f} s = download_file {fl['download_s']:.2f} (one GET {fl['single_get_s']:.2f}, "
            f"ranged as configured by default {fl['ranged_download_s']:.2f}) + etcdutl snapshot restore "
            f"{fl['restore_s']:.2f} + etcd start until healthy {fl['start_s']:.2f}; "
            f"{_load(fl['load_before'], fl['load_after'])}")


def _breakdown(res: dict[str, Any]) -> list[str]:
    lines = [f"      {'step':<32} {'start':>7} {'seconds':>8}"]
    for s in res["steps"]:
        if s["seconds"] >= 0.01 or s["outcome"] != "done":
            lines.append(f"      {s['name']:<32} {s['start_s']:7.2f} {s['seconds']:8.2f}"
                         + ("" if s["outcome"] == "done" else f"  ({s['outcome']})"))
    # Steps may overlap (reads side by side): what no step covers is the union's complement.
    covered, reach = 0.0, 0.0
    for start, end in sorted((s["start_s"], s["start_s"] + s["seconds"]) for s in res["steps"]):
        covered += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    lines.append(f"      (in no step: {res['wall_s'] - covered:.2f} s, of which before the report started "
                 f"{res['report_started_s']:.2f} s)")
    return lines


TRANSFERS = {"download": True, "copy": False}  # how the snapshot gets into the data pod -> pod_download


def run_one(bench: RestoreBench, availability: str, mib: int, rounds: int, figures: dict[str, float],
            rows: list[tuple[str, ...]], transfers: tuple[str, ...] = ("download",)) -> None:
    label = "HA" if availability == "HighlyAvailable" else "SR"
    t = time.perf_counter()
    bench.start_world(availability, name=f"world-{label.lower()}")  # a directory each: no PVC of the other
    print(f"[{label}] world with one {availability} hosted cluster Available in {time.perf_counter() - t:.1f} s")
    bench.wait_etcd_answers()
    fill_s = bench.fill_to(mib)
    print(f"[{label}] filled {CP_NAMESPACE}'s etcd with {bench.filled / MiB:.0f} MiB in {fill_s:.1f} s")
    prefix = f"bench-restore-{uuid.uuid4().hex[:8]}"
    try:
        manifest = bench.backup(prefix)
        size_mib = manifest["size_bytes"] / MiB
        print(f"[{label}] etcd-backup: {manifest['flow_s']:.1f} s, snapshot {size_mib:.0f} MiB at revision "
              f"{manifest['revision']}")
        runs: dict[str, list[dict[str, Any]]] = {t: [] for t in transfers}
        floors = [bench.restore_floor(manifest["bucket"], manifest["snapshot_key"])]
        for r in range(rounds):
            for transfer in transfers:
                print(_floor_line(floors[-1]))
                res = bench.restore(prefix, timeout=900, pod_download=TRANSFERS[transfer])
                runs[transfer].append(res)
                print(f"  round {r + 1} ({transfer}): etcd-restore flow: API back {res['api_back_s']:.2f} s, verified "
                      f"{res['verified_s']:.2f} s, total {res['wall_s']:.2f} s (API downtime "
                      f"{res['figures'].get('API downtime', '?')}; {_load(res['load_before'], res['load_after'])})")
                print("\n".join(_breakdown(res)))
                floors.append(bench.restore_floor(manifest["bucket"], manifest["snapshot_key"]))
        print(_floor_line(floors[-1]))
    finally:
        bench.delete_prefix(prefix)
        bench.close_world()
    floor = min(floors, key=lambda x: x["wall_s"])
    for transfer in transfers[1:]:  # the others against the same floor, for comparison
        other = min(runs[transfer], key=lambda x: x["api_back_s"])
        print(f"[{label}] with the snapshot put in by {transfer}: API back after {other['api_back_s']:.2f} s "
              f"({other['api_back_s'] / floor['wall_s']:.2f}x the floor); total {other['wall_s']:.2f} s")
        figures[f"{label.lower()}_{transfer}_api_back_s"] = other["api_back_s"]
        rows.append((f"{label} restore, {transfer} into the data pod: API back", f"{other['api_back_s']:.1f} s",
                     f"{floor['wall_s']:.1f} s", f"{other['api_back_s'] / floor['wall_s']:.2f}x", "(comparison)"))
    flows = runs[transfers[0]]
    best = min(flows, key=lambda x: x["api_back_s"])
    ratio = best["api_back_s"] / floor["wall_s"]
    total_ratio = best["wall_s"] / floor["wall_s"]
    # Against the default download_file too: what the floor would be if moto's ranged GETs counted.
    letter = floor["wall_s"] - floor["download_s"] + floor["ranged_download_s"]
    print(f"[{label}] in-place etcd-restore of a {size_mib:.0f} MiB snapshot ({availability}): API back after "
          f"{best['api_back_s']:.2f} s; raw floor (download_file {floor['download_s']:.2f} + etcdutl snapshot restore "
          f"{floor['restore_s']:.2f} + etcd healthy {floor['start_s']:.2f}): {floor['wall_s']:.2f} s; ratio "
          f"{ratio:.2f}x (target <= {RATIO_TARGET}x: {_verdict(ratio <= RATIO_TARGET)}); with verification, "
          f"Available and clean-up: {best['wall_s']:.2f} s ({total_ratio:.2f}x). (Against the floor with "
          f"download_file's default ranged GETs, {letter:.2f} s: {best['api_back_s'] / letter:.2f}x)")
    # The machine is shared: the spread says how much of a ratio is noise.
    med_flow = statistics.median(f["api_back_s"] for f in flows)
    med_floor = statistics.median(f["wall_s"] for f in floors)
    backs = ", ".join(f"{f['api_back_s']:.2f}" for f in flows)
    print(f"[{label}] spread: API back {backs} s over {len(flows)} round(s); floors "
          f"{', '.join(f'{x:.2f}' for x in (f['wall_s'] for f in floors))} s; median against median "
          f"{med_flow / med_floor:.2f}x")
    key = label.lower()
    figures.update({f"{key}_api_back_s": best["api_back_s"], f"{key}_total_s": best["wall_s"],
                    f"{key}_verified_s": best["verified_s"], f"{key}_floor_s": floor["wall_s"],
                    f"{key}_ratio": ratio, f"{key}_floor_ranged_s": letter, f"{key}_median_ratio": med_flow / med_floor, f"{key}_total_ratio": total_ratio, f"{key}_snapshot_mib": size_mib})
    rows.append((f"{label} restore, {size_mib:.0f} MiB: API back", f"{best['api_back_s']:.1f} s",
                 f"{floor['wall_s']:.1f} s (download+restore+start)", f"{ratio:.2f}x",
                 f"<= {RATIO_TARGET}x {_verdict(ratio <= RATIO_TARGET)}"))
    rows.append((f"{label} restore, {size_mib:.0f} MiB: total", f"{best['wall_s']:.1f} s", f"{floor['wall_s']:.1f} s",
                 f"{total_ratio:.2f}x", "(informational)"))
    # What the SREs' users see: the API down, from the quiesce to the API servers back (the report's figure).
    downtimes = [float(f["figures"]["API downtime"].split()[0]) for f in flows if "API downtime" in f["figures"]]
    if downtimes:
        down = min(downtimes)
        print(f"[{label}] API downtime {', '.join(f'{d:.1f}' for d in downtimes)} s: best {down:.1f} s, "
              f"{down / floor['wall_s']:.2f}x the floor")
        figures[f"{key}_downtime_s"] = down
        rows.append((f"{label} restore, {size_mib:.0f} MiB: API downtime", f"{down:.1f} s", f"{floor['wall_s']:.1f} s",
                     f"{down / floor['wall_s']:.2f}x", "(informational)"))


def run(mib: int | None = None, rounds: int | None = None, only: str | None = None,
        transfers: tuple[str, ...] = ("download",)) -> dict[str, float]:
    mib = mib or _env_int("BENCH_RESTORE_MIB", 256)
    rounds = rounds or _env_int("BENCH_RESTORE_ROUNDS", 2)
    figures: dict[str, float] = {}
    rows: list[tuple[str, ...]] = []
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="hcp-restore-bench-") as tmp:
        bench = RestoreBench(Path(tmp))
        try:
            t = time.perf_counter()
            bench.prefect.start()
            print(f"prefect server (own process) up in {time.perf_counter() - t:.1f} s")
            if only in (None, "ha"):
                run_one(bench, "HighlyAvailable", mib, rounds, figures, rows, transfers)
            if only in (None, "sr"):
                run_one(bench, "SingleReplica", mib, rounds, figures, rows, transfers)
        finally:
            bench.close()
    print(f"\nrestore bench results (each against a floor measured in the same run; load average at the end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}):")
    header = ("what", "value", "baseline", "ratio", "target")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(5)]
    for row in [header] + rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)))
    return figures


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(prog="python -m bench restore", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, help="etcd size (default 256, env BENCH_RESTORE_MIB)")
    ap.add_argument("--rounds", type=int, help="restore rounds per availability (default 2, env BENCH_RESTORE_ROUNDS)")
    ap.add_argument("--quick", action="store_true", help="32 MiB, one round")
    ap.add_argument("--only", choices=["ha", "sr"], help="ha: HighlyAvailable only; sr: SingleReplica only")
    ap.add_argument("--transfer", choices=["download", "copy", "both"], default="download",
                    help="how the snapshot gets into the data pod: download (the pod's own presigned GET, the "
                         "default), copy (streamed in from the runner over exec, the fallback), both (each round "
                         "runs both; the ratio is the download's)")
    a = ap.parse_args(argv)
    if a.quick:
        a.mib, a.rounds = a.mib or 32, a.rounds or 1
    transfers = ("download", "copy") if a.transfer == "both" else (a.transfer,)
    return run(a.mib, a.rounds, a.only, transfers)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child_main(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
