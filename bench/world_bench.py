"""The simulated HyperShift world (issue 3): how fast it starts, how much memory it takes, and how
fast it can fill a hosted cluster's etcd for the backup benchmarks — each against a baseline
measured in the same run.

    python -m bench.world_bench [--fill-mib 256] [--fill-gib]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from hcpsim.cluster import Simulator
from hcpsim.etcd import etcd_binary
from hcpsim.hypershift.etcd_writer import EtcdClient, WriterSettings, client_for_namespace
from hcpsim.world import World, WorldSettings


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
                ppid = int(stat[stat.rfind(b")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_rss() -> int:
    return sum(_rss_bytes(p) for p in _tree(os.getpid()))


def world_start(rounds: int = 2) -> dict[str, float]:
    starts, bare = [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            with Simulator(Path(tmp) / "bare") as sim:
                sim.add_cluster("mgmt1")
                sim.add_cluster("mgmt2")
                bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            world = World(Path(tmp) / "world", WorldSettings(hosted_clusters=1, availability="HighlyAvailable"))
            try:
                world.start()
                world.wait_available(timeout=120)
                starts.append(time.perf_counter() - t)
            finally:
                world.close()
    start, floor = min(starts), min(bare)
    print(f"world start to Available (2 management clusters, 1 HighlyAvailable hosted cluster): {start:.2f} s "
          f"(target < 5 s: {'met' if start < 5 else 'MISSED'}); two bare API clusters: {floor:.2f} s; ratio {start / floor:.1f}x")
    return {"world_start_s": start, "bare_start_s": floor}


def world_memory(hosted: int = 10) -> dict[str, float]:
    baseline = tree_rss()
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp), WorldSettings(hosted_clusters=hosted, availability="SingleReplica", node_pool_replicas=1,
                                               writer=WriterSettings(keys_per_second=5)))
        try:
            world.start()
            world.wait_available(timeout=300)
            time.sleep(2)
            total = tree_rss()
        finally:
            world.close()
    mb = total / 1e6
    print(f"memory of a world with {hosted} SingleReplica hosted clusters (this process and every process it started): "
          f"{mb:.0f} MB (target < 600 MB: {'met' if mb < 600 else 'MISSED'}); the process before the world: "
          f"{baseline / 1e6:.0f} MB; per hosted cluster beyond it: {(total - baseline) / hosted / 1e6:.1f} MB")
    return {"world_rss_mb": mb, "baseline_rss_mb": baseline / 1e6}


def _fill(client: EtcdClient, target_bytes: int, value_bytes: int = 32 * 1024, batch: int = 32) -> tuple[float, int]:
    # 1 MiB per transaction: under etcd's --max-request-bytes (1.5 MiB by default).
    value = os.urandom(value_bytes // 2).hex().encode()[:value_bytes]
    written, n = 0, 0
    t = time.perf_counter()
    while written < target_bytes:
        items = [(f"/registry/bench/fill-{n + i:08d}", value) for i in range(batch)]
        try:
            client.put_many(items)
        except ConnectionError as e:
            if "429" not in str(e):
                raise
            time.sleep(0.05)  # etcd's apply backlog is full ("too many requests"): let it catch up
            continue
        n += batch
        written += batch * value_bytes
    return time.perf_counter() - t, written


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def etcd_fill(target_mib: int) -> dict[str, float]:
    target = target_mib * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        # Baseline: the same writes into a standalone local etcd (no TLS, no simulator).
        cport, pport = _free_port(), _free_port()
        proc = subprocess.Popen([str(etcd_binary("etcd")), "--data-dir", f"{tmp}/local", "--quota-backend-bytes", str(8 << 30),
                                 "--listen-client-urls", f"http://127.0.0.1:{cport}", "--advertise-client-urls",
                                 f"http://127.0.0.1:{cport}", "--listen-peer-urls", f"http://127.0.0.1:{pport}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            local = _PlainClient(f"http://127.0.0.1:{cport}")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    local.put("/probe", b"x")
                    break
                except OSError:
                    time.sleep(0.1)
            local_s, local_bytes = _fill(local, target)  # type: ignore[arg-type]
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        world = World(Path(tmp) / "world", WorldSettings(hosted_clusters=1, availability="HighlyAvailable"))
        try:
            world.start()
            world.wait_available(timeout=120)
            client = client_for_namespace(world.cluster("mgmt1").backend, "clusters-demo")
            assert client is not None
            sim_s, sim_bytes = _fill(client, target)
        finally:
            world.close()
    sim_rate, local_rate = sim_bytes / sim_s / 1e6, local_bytes / local_s / 1e6
    print(f"fill a hosted cluster's etcd (3 members, TLS) to {target_mib} MiB: {sim_s:.1f} s ({sim_rate:.0f} MB/s); "
          f"a standalone local etcd: {local_s:.1f} s ({local_rate:.0f} MB/s); ratio {sim_s / local_s:.2f}x")
    return {"fill_s": sim_s, "local_fill_s": local_s}


class _PlainClient(EtcdClient):
    def __init__(self, endpoint: str) -> None:  # no TLS for the baseline etcd
        self.endpoints = [endpoint]
        self._ctx = None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fill-mib", type=int, default=256)
    ap.add_argument("--fill-gib", action="store_true", help="also fill to 1 GiB")
    a = ap.parse_args()
    world_start()
    world_memory()
    etcd_fill(a.fill_mib)
    if a.fill_gib:
        etcd_fill(1024)


if __name__ == "__main__":
    main()
