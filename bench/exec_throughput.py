"""Exec stdout throughput: `cat FILE` in a pod, read through the exec websocket, vs a local pipe.

    python bench/exec_throughput.py                      # own tiny server (a subprocess), 256 MiB file
    python bench/exec_throughput.py --size-mib 64
    python bench/exec_throughput.py --server https://127.0.0.1:6443 --token T --namespace ns \\
        --pod etcd-0 --container etcd --remote-file /var/lib/data/big --local-file /host/path/big

Readers, each measured against a local baseline in the same run:
  (a) official Python client: stream(..., binary=True, _preload_content=False), reading as it goes
  (b) kubectl exec ... -- cat FILE > /dev/null            (baseline: cat FILE > /dev/null)
  (c) bare websocket reader (`websockets` library) counting stdout bytes
Baseline for (a) and (c): a Python reader reading `cat FILE`'s pipe in 1 MiB chunks.
Target: (c) reaches at least half of its baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass
class Target:
    base_url: str          # http(s)://host:port of the API server
    token: str | None
    namespace: str
    pod: str
    container: str | None
    remote_file: str       # path inside the pod
    local_file: Path       # the same bytes on this machine, for the baselines
    insecure: bool = True


def _exec_path(t: Target, command: list[str]) -> str:
    q = "&".join(f"command={quote(c, safe='')}" for c in command) + "&stdout=true"
    if t.container:
        q += f"&container={quote(t.container)}"
    return f"/api/v1/namespaces/{t.namespace}/pods/{t.pod}/exec?{q}"


# --- readers ---------------------------------------------------------------------------------------

def local_pipe_python(path: Path) -> int:
    p = subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE)
    assert p.stdout is not None
    fd = p.stdout.fileno()
    n = 0
    while chunk := os.read(fd, 1 << 20):
        n += len(chunk)
    p.wait()
    return n


def local_pipe_shell(path: Path) -> int:
    subprocess.run(["sh", "-c", f"cat '{path}' > /dev/null"], check=True)
    return path.stat().st_size


def official_client(t: Target) -> int:
    from kubernetes import client as k8s
    from kubernetes.stream import stream

    cfg = k8s.Configuration(host=t.base_url)
    cfg.verify_ssl = not t.insecure
    if t.token:
        cfg.api_key = {"authorization": f"Bearer {t.token}"}
    api = k8s.CoreV1Api(k8s.ApiClient(cfg))
    kw: dict[str, Any] = {"container": t.container} if t.container else {}
    resp = stream(api.connect_get_namespaced_pod_exec, t.pod, t.namespace, command=["cat", t.remote_file],
                  stdout=True, stderr=False, stdin=False, tty=False, binary=True, _preload_content=False, **kw)
    n = 0
    while resp.is_open():
        resp.update(timeout=5)
        # Its capture_all buffer also keeps a copy (not switchable through stream()): part of its cost.
        n += len(resp.read_stdout(timeout=0))
    n += len(resp.read_stdout(timeout=0))
    if resp.returncode != 0:
        raise RuntimeError(f"exec failed: {resp.returncode}")
    return n


def bare_websocket(t: Target) -> int:
    import websockets.asyncio.client as wsc

    async def run() -> int:
        url = t.base_url.replace("http", "ws", 1) + _exec_path(t, ["cat", t.remote_file])
        headers = {"Authorization": f"Bearer {t.token}"} if t.token else {}
        ctx = None
        if url.startswith("wss") and t.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        n = 0
        async with wsc.connect(url, subprotocols=["v5.channel.k8s.io"], additional_headers=headers,  # type: ignore[list-item]
                               max_size=None, ssl=ctx, compression=None) as ws:
            async for msg in ws:
                if isinstance(msg, bytes) and msg[:1] == b"\x01":
                    n += len(msg) - 1
                elif isinstance(msg, bytes) and msg[:1] == b"\x03":
                    status = json.loads(msg[1:])
                    if status.get("status") != "Success":
                        raise RuntimeError(status)
        return n

    return asyncio.run(run())


def kubectl_exec(t: Target) -> int:
    args = ["kubectl", "--server", t.base_url, "--insecure-skip-tls-verify=true" if t.insecure else "",
            *(["--token", t.token] if t.token else []), "-n", t.namespace, "exec", t.pod,
            *(["-c", t.container] if t.container else []), "--", "cat", t.remote_file]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": tempfile.gettempdir(), "KUBECONFIG": "/dev/null"}
    with open(os.devnull, "wb") as null:
        subprocess.run([a for a in args if a], stdout=null, check=True, env=env)
    return t.local_file.stat().st_size


def measure(fn: Callable[[], int], expect: int, repeat: int) -> float:
    """Best-of-N MB/s (MB = 10^6 bytes)."""
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()
        dt = time.perf_counter() - t0
        if n != expect:
            raise RuntimeError(f"read {n} bytes, expected {expect}")
        best = max(best, n / dt / 1e6)
    return best


def run_bench(t: Target, repeat: int = 3) -> dict[str, float]:
    size = t.local_file.stat().st_size
    out: dict[str, float] = {}
    print(f"exec throughput: {size / (1 << 20):.0f} MiB file, best of {repeat}")
    base_py = measure(lambda: local_pipe_python(t.local_file), size, repeat)
    out["local_pipe_python"] = base_py
    print(f"  local pipe -> python reader        {base_py:9.1f} MB/s")
    for name, fn in (("official_client", lambda: official_client(t)), ("bare_websocket", lambda: bare_websocket(t))):
        v = measure(fn, size, repeat)
        out[name] = v
        print(f"  {name:<34} {v:9.1f} MB/s   ratio {v / base_py:.2f}")
    if shutil.which("kubectl"):
        base_sh = measure(lambda: local_pipe_shell(t.local_file), size, repeat)
        out["local_cat_devnull"] = base_sh
        print(f"  local cat > /dev/null              {base_sh:9.1f} MB/s")
        v = measure(lambda: kubectl_exec(t), size, repeat)
        out["kubectl"] = v
        print(f"  kubectl exec cat > /dev/null       {v:9.1f} MB/s   ratio {v / base_sh:.2f}")
    else:
        print("  kubectl: not on PATH, skipped")
    ratio = out["bare_websocket"] / base_py
    print(f"target bare websocket >= 0.5 x local pipe: {'met' if ratio >= 0.5 else 'NOT met'} ({ratio:.2f})")
    return out


# --- the simulator, in its own process so it does not share a GIL with the readers --------------

def start_simulator(tmp: Path, vol: Path, pod: str) -> tuple[subprocess.Popen[str], Target]:
    """`hcp-runbooks sim clusters` in a subprocess, and a pod whose /var/lib/data is the local directory `vol`."""
    import yaml
    from kubernetes import client, config, watch

    server = subprocess.Popen([sys.executable, "-m", "cli.main", "sim", "clusters", "--dir", str(tmp / "sim"),
                               "--names", "bench"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert server.stdout is not None
    line = server.stdout.readline()
    if not line.startswith("ready "):
        server.kill()
        raise RuntimeError(f"simulator did not start: {line!r}")
    kubeconfig = line.split("kubeconfig=", 1)[1].split()[0]
    doc = yaml.safe_load(Path(kubeconfig).read_text())
    api = config.new_client_from_config(config_file=kubeconfig, context="bench")
    core = client.CoreV1Api(api)
    core.create_namespaced_pod("default", {
        "metadata": {"name": pod},
        "spec": {"containers": [{"name": "main", "image": "registry.access.redhat.com/ubi9/ubi:latest",
                                 "volumeMounts": [{"name": "data", "mountPath": "/var/lib/data"}]}],
                 "volumes": [{"name": "data", "hostPath": {"path": str(vol)}}]}})
    for event in watch.Watch().stream(core.list_namespaced_pod, "default", field_selector=f"metadata.name={pod}",
                                      timeout_seconds=30):
        if event["object"].status.phase == "Running":
            break
    api.close()
    target = Target(doc["clusters"][0]["cluster"]["server"], doc["users"][0]["user"]["token"], "default", pod, None,
                    "/var/lib/data/big", vol / "big")
    return server, target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", help="API server base URL; default: start the simulator (hcp-runbooks sim clusters)")
    ap.add_argument("--token")
    ap.add_argument("--namespace", default="default")
    ap.add_argument("--pod", default="bench")
    ap.add_argument("--container")
    ap.add_argument("--remote-file", default="/var/lib/data/big")
    ap.add_argument("--local-file", type=Path)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if a.server:
        if a.local_file is None:
            ap.error("--local-file (the same bytes on this machine) is needed with --server")
        run_bench(Target(a.server, a.token, a.namespace, a.pod, a.container, a.remote_file, a.local_file), a.repeat)
        return
    with tempfile.TemporaryDirectory(prefix="exec-bench-") as tmp:
        vol = Path(tmp) / "vol"
        vol.mkdir()
        big = vol / "big"
        block = os.urandom(1 << 20)
        with open(big, "wb") as f:
            for _ in range(a.size_mib):
                f.write(block)
        server, target = start_simulator(Path(tmp), vol, a.pod)
        try:
            run_bench(target, a.repeat)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
