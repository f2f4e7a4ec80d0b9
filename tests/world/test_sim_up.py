"""`hcp-runbooks sim up`: the world in the foreground; the ready line; SIGTERM stops everything it
started (API servers, etcd members, the S3/Route53 server), checked by process and port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _processes_mentioning(text: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", text], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out if int(p) != os.getpid()]


def test_sim_up_ready_line_and_clean_stop(tmp_path: Path) -> None:
    world_dir = tmp_path / "world"
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "sim", "up", "--dir", str(world_dir),
                             "--availability", "SingleReplica"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == f"ready kubeconfig={world_dir / 'kubeconfig'} aws-env={world_dir / 'aws.env'}", \
            proc.stderr.read() if not line and proc.stderr else line
        env = dict(l.split("=", 1) for l in (world_dir / "aws.env").read_text().splitlines() if "=" in l and not l.startswith("#"))
        for key in ("AWS_ENDPOINT_URL", "AWS_CA_BUNDLE", "HCP_BACKUP_BUCKET", "HCP_ROUTE53_ZONE_ID", "HCP_EXTERNAL_DNS_DOMAIN"):
            assert env.get(key), key
        doc = yaml.safe_load((world_dir / "kubeconfig").read_text())
        assert [c["name"] for c in doc["contexts"]] == ["mgmt1", "mgmt2"]
        ports = [int(c["cluster"]["server"].rsplit(":", 1)[1]) for c in doc["clusters"]]
        ports.append(int(env["AWS_ENDPOINT_URL"].rsplit(":", 1)[1].split("/")[0]))
        # Real etcd members run for the hosted cluster.
        assert any("etcd" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                   for pid in _processes_mentioning(str(world_dir)) if Path(f"/proc/{pid}").exists())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0
    assert not any(_port_open(p) for p in ports)
    deadline = time.monotonic() + 5
    while _processes_mentioning(str(world_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = _processes_mentioning(str(world_dir))
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert survivors == [], "processes of the world outlived it"
