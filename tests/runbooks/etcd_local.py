"""Test helper, independent of the product's verify: restore a snapshot file with etcdutl, start
a throwaway etcd on it, and read keys with etcdctl."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from hcpsim.etcd.binaries import etcd_binary


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keys_in_snapshot(snapshot: Path, work: Path, prefix: str) -> dict[str, str]:
    data = work / "restored"
    subprocess.run([str(etcd_binary("etcdutl")), "snapshot", "restore", str(snapshot), "--data-dir", str(data)],
                   check=True, capture_output=True)
    client_url, peer_url = f"http://127.0.0.1:{_port()}", f"http://127.0.0.1:{_port()}"
    proc = subprocess.Popen([str(etcd_binary("etcd")), "--data-dir", str(data), "--listen-client-urls", client_url,
                             "--advertise-client-urls", client_url, "--listen-peer-urls", peer_url,
                             "--initial-advertise-peer-urls", peer_url, "--initial-cluster", f"default={peer_url}"],
                            stdout=subprocess.DEVNULL, stderr=(work / "etcd.log").open("wb"))
    try:
        deadline = time.monotonic() + 30
        while True:
            out = subprocess.run([str(etcd_binary("etcdctl")), "--endpoints", client_url, "get", prefix, "--prefix"],
                                 capture_output=True, text=True)
            if out.returncode == 0:
                lines = out.stdout.splitlines()
                return dict(zip(lines[0::2], lines[1::2]))
            if time.monotonic() > deadline:
                raise AssertionError(f"restored etcd did not answer: {out.stderr}")
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(10)
