"""`hcp-runbooks sim clusters`: prints the ready line, serves the clusters, and leaves nothing behind on
SIGTERM (no server, no pod process)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml
from kubernetes import client, config, watch


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_sim_clusters_serves_then_stops_everything_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "sim", "clusters", "--dir", str(tmp_path), "--names", "mgmt1,mgmt2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == f"ready kubeconfig={tmp_path / 'kubeconfig'}"
        doc = yaml.safe_load((tmp_path / "kubeconfig").read_text())
        assert [c["name"] for c in doc["contexts"]] == ["mgmt1", "mgmt2"]
        ports = [int(c["cluster"]["server"].rsplit(":", 1)[1]) for c in doc["clusters"]]

        api = config.new_client_from_config(config_file=str(tmp_path / "kubeconfig"), context="mgmt2")
        core = client.CoreV1Api(api)
        core.create_namespaced_pod("default", {"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "registry.access.redhat.com/ubi9/ubi:latest"}]}})
        for event in watch.Watch().stream(core.list_namespaced_pod, "default", timeout_seconds=20):
            if event["object"].status.phase == "Running":
                break
        from kubernetes.stream import stream
        # A long-running exec'd process must die with the simulator too.
        marker = f"hcpsim-test-{os.getpid()}-{time.monotonic_ns()}"
        stream(core.connect_get_namespaced_pod_exec, "p", "default",
               command=["sh", "-c", f"nohup bash -c 'exec -a {marker} sleep 600' >/dev/null 2>&1 &"],
               stdout=True, stderr=True, stdin=False, tty=False)
        api.close()
        deadline = time.monotonic() + 10
        while not subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        assert subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout, "the exec'd process did not start"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert not any(_port_open(p) for p in ports)
    survivors = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    for pid in survivors:  # clean up before failing, so one failure does not leak into other tests
        os.kill(int(pid), signal.SIGKILL)
    assert survivors == []
