"""hcp.snapshot_source's one-pass hashing: the file's SHA-256 and etcd's integrity hash, judged
against etcd itself (`etcdutl snapshot restore` without --skip-hash-check) on a real snapshot."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hcp.etcd_tools import etcd_tool
from hcp.snapshot_source import _read_ahead, _write


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """`etcdctl snapshot save` of a throwaway etcd holding a few hundred keys."""
    work = tmp_path_factory.mktemp("integrity")
    url, peer = f"http://127.0.0.1:{_port()}", f"http://127.0.0.1:{_port()}"
    proc = subprocess.Popen([str(etcd_tool("etcd")), "--data-dir", str(work / "data"), "--listen-client-urls", url,
                             "--advertise-client-urls", url, "--listen-peer-urls", peer,
                             "--initial-advertise-peer-urls", peer, "--initial-cluster", f"default={peer}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    etcdctl = [str(etcd_tool("etcdctl")), f"--endpoints={url}"]
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(etcdctl + ["put", "/probe", "x"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "etcd did not start"
            time.sleep(0.1)
        for i in range(300):
            subprocess.run(etcdctl + ["put", f"/k/{i:04d}", "v" * (i * 7 % 900)], check=True, capture_output=True)
        subprocess.run(etcdctl + ["snapshot", "save", str(work / "snap.db")], check=True, capture_output=True)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return (work / "snap.db").read_bytes()


def _chunks(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """`data` in chunks cycling through `sizes` (chunks shorter than the 32-byte hash included)."""
    at, i = 0, 0
    while at < len(data):
        n = sizes[i % len(sizes)]
        yield data[at:at + n]
        at, i = at + n, i + 1


def _etcd_accepts(data: bytes, work: Path) -> subprocess.CompletedProcess[str]:
    path = work / "candidate.db"
    path.write_bytes(data)
    return subprocess.run([str(etcd_tool("etcdutl")), "snapshot", "restore", str(path), "--data-dir",
                           str(work / f"restored-{time.monotonic_ns()}")], capture_output=True, text=True)


@pytest.mark.parametrize("sizes", [[1 << 20], [5, 31, 32, 33, 4096, 1]])
def test_a_whole_snapshot_passes_as_etcd_says(snapshot: bytes, tmp_path: Path, sizes: list[int]) -> None:
    hashes = _write(_read_ahead(_chunks(snapshot, sizes)), tmp_path / "out.db")
    assert (tmp_path / "out.db").read_bytes() == snapshot
    assert hashes.sha256() == hashlib.sha256(snapshot).hexdigest()
    assert hashes.size == len(snapshot)
    assert hashes.integrity() is True
    assert _etcd_accepts(snapshot, tmp_path).returncode == 0


def test_a_changed_byte_fails_the_integrity_hash_as_etcd_says(snapshot: bytes, tmp_path: Path) -> None:
    damaged = bytearray(snapshot)
    damaged[len(damaged) // 3] ^= 0x01
    hashes = _write(_chunks(bytes(damaged), [4096]), tmp_path / "out.db")
    assert hashes.integrity() is False
    refused = _etcd_accepts(bytes(damaged), tmp_path)
    assert refused.returncode != 0 and "expected sha256" in refused.stderr


def test_a_file_without_the_hash_has_none_as_etcd_says(snapshot: bytes, tmp_path: Path) -> None:
    bare = snapshot[:-32]
    hashes = _write(_chunks(bare, [1000]), tmp_path / "out.db")
    assert hashes.integrity() is None
    refused = _etcd_accepts(bare, tmp_path)
    assert refused.returncode != 0 and "snapshot missing hash" in refused.stderr


def test_read_ahead_raises_the_source_error_and_closes_the_source_when_stopped() -> None:
    def cut() -> Iterator[bytes]:
        yield b"x" * 10
        raise OSError("connection reset")

    with pytest.raises(OSError, match="connection reset"):
        list(_read_ahead(cut()))

    closed = []

    def endless() -> Iterator[bytes]:
        try:
            while True:
                yield b"y" * 10
        finally:
            closed.append(True)

    reader = _read_ahead(endless(), depth=2)
    assert next(reader) == b"y" * 10
    reader.close()  # the consumer stops (e.g. the disk is full): the thread stops and closes the source
    assert closed == [True]
