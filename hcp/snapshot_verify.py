"""`verify: full` of a backup, on the runner: the snapshot object is read back from S3, restored
with etcdutl and served by a throwaway etcd, whose keys are counted.

What is checked, and why these relations:

* the object's SHA-256 equals the one sha256sum computed in the pod (the bytes are the snapshot);
* `etcdutl snapshot status` of the downloaded file (a bolt integrity check) gives the same revision,
  totalKey and hash as in the pod, when those are given;
* `snapshot restore` succeeds: it also checks the SHA-256 that `etcdctl snapshot save` appends;
* the restored etcd starts, is healthy, serves exactly the snapshot's revision, and its live key
  count is at most the snapshot's totalKey. totalKey is not a key count: etcd 3.5's status counts
  every entry of every bolt bucket (one `key` entry per revision of each key, tombstones of deleted
  keys, plus the meta, members, lease, auth... buckets), so it only bounds the live count from above.
  Measured on the simulated world (keys created and updated, never deleted, no compaction): a
  snapshot at revision 2271 had totalKey 2276 and 1514 live keys (the same count `etcdctl get ""
  --prefix --count-only --rev=2271` gave on the live member); totalKey = revision + 5 there (one
  `key` entry per revision 2..R, six entries in the other buckets), and live keys can only reach
  totalKey minus the other buckets' entries, for a database that never updated or deleted a key. The live count is the useful number (what a restore
  gives back); it is what `verified_total_keys` of the manifest records.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hcp.etcd_tools import etcd_tool
from hcp.s3_transfer import S3TransferError, download_stream

__all__ = ["SnapshotVerifyError", "VerifyResult", "verify_snapshot", "snapshot_file_status", "served_snapshot"]

log = logging.getLogger("hcp.snapshot_verify")

_LOG_TAIL = 2000
_START_ATTEMPTS = 3  # a port picked free can be taken before etcd binds it


class SnapshotVerifyError(RuntimeError):
    """The snapshot at s3://bucket/key (or a local file: bucket "") failed verification; says which
    check and what to do."""

    def __init__(self, message: str, *, bucket: str, key: str, step: str, next_step: str) -> None:
        where = f"s3://{bucket}/{key}" if bucket else key
        super().__init__(f"verify {where}, step {step}: {message}. Next: {next_step}")
        self.bucket = bucket
        self.key = key
        self.step = step
        self.next_step = next_step


@dataclass(frozen=True)
class VerifyResult:
    """`total_keys`: live keys counted in the restored etcd (what a restore gives back).
    `revision`: the revision the restored etcd serves. `hash`, `snapshot_total_keys`: `snapshot
    status` of the downloaded file (bolt-level hash, entries of all buckets and revisions)."""

    total_keys: int
    revision: int
    hash: int
    seconds: float
    sha256: str
    size_bytes: int
    snapshot_total_keys: int


def verify_snapshot(s3: Any, bucket: str, key: str, *, expected_sha256: str, expected_total_keys: int | None = None,
                    expected_revision: int | None = None, expected_hash: int | None = None,
                    work_dir: str | os.PathLike[str] | None = None, start_timeout: float = 60.0,
                    tool_timeout: float = 600.0) -> VerifyResult:
    """Verify the snapshot object (see the module docstring). `expected_*` come from the pod's
    `snapshot status` (SnapshotInfo); `work_dir` needs room for the snapshot twice (the file and the
    restored data directory). Everything it starts and writes is gone when it returns or raises."""
    started = time.monotonic()
    ctx = _Context(bucket, key)
    try:
        scratch = Path(tempfile.mkdtemp(prefix="hcp-verify-", dir=work_dir))
    except OSError as e:
        raise ctx.error("work dir", f"cannot create a scratch directory in {work_dir or tempfile.gettempdir()}: {e}",
                        "pass a writable work_dir with room for twice the snapshot") from e
    try:
        snapshot = scratch / "snapshot.db"
        sha256, size = _download(s3, ctx, snapshot)
        if sha256 != expected_sha256.lower():
            raise ctx.error("sha256", f"the object's SHA-256 is {sha256}, the snapshot's was {expected_sha256}",
                            "the object is not the snapshot that was taken (corrupted or overwritten): "
                            "do not use it; take a new backup")
        status = _snapshot_status(ctx, snapshot, tool_timeout)
        mismatches = [f"{name} is {status[field]}, expected {want}"
                      for name, field, want in (("revision", "revision", expected_revision),
                                                ("totalKey", "totalKey", expected_total_keys),
                                                ("hash", "hash", expected_hash))
                      if want is not None and status[field] != want]
        if mismatches:
            raise ctx.error("snapshot status", "; ".join(mismatches),
                            "the object differs from the snapshot taken in the pod: take a new backup")
        data_dir = scratch / "data"
        live_keys, revision = _restore_and_count(ctx, snapshot, data_dir, size, start_timeout, tool_timeout)
        if revision != status["revision"]:
            raise ctx.error("restored revision", f"the restored etcd serves revision {revision}, the snapshot "
                            f"is at revision {status['revision']}",
                            "the snapshot does not restore to its own state: do not use it; take a new backup")
        if live_keys > status["totalKey"]:
            raise ctx.error("key count", f"the restored etcd has {live_keys} keys, more than the snapshot's "
                            f"{status['totalKey']} database entries", "do not use this snapshot; take a new backup")
        seconds = time.monotonic() - started
        log.info("s3://%s/%s verified: %d keys at revision %d (%.1fs)", bucket, key, live_keys, revision, seconds)
        return VerifyResult(total_keys=live_keys, revision=revision, hash=status["hash"], seconds=seconds,
                            sha256=sha256, size_bytes=size, snapshot_total_keys=status["totalKey"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass(frozen=True)
class _Context:
    bucket: str
    key: str

    def error(self, step: str, message: str, next_step: str) -> SnapshotVerifyError:
        return SnapshotVerifyError(message, bucket=self.bucket, key=self.key, step=step, next_step=next_step)


def _download(s3: Any, ctx: _Context, dest: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    try:
        with dest.open("wb") as f:
            for chunk in download_stream(s3, ctx.bucket, ctx.key):
                digest.update(chunk)
                size += len(chunk)
                f.write(chunk)
    except S3TransferError as e:
        raise ctx.error("download", str(e), "check that the object exists and the runner may read it") from e
    except OSError as e:
        raise ctx.error("download", f"writing {dest}: {e}",
                        f"give the verification a work_dir with room for twice the snapshot ({dest.parent})") from e
    except Exception as e:  # botocore errors mid-body (connection reset, incomplete read)
        raise ctx.error("download", f"{type(e).__name__}: {e}", "retry the verification") from e
    return digest.hexdigest(), size


def _tool(ctx: _Context, step: str, argv: list[str], timeout: float, next_step: str) -> str:
    what = f"{Path(argv[0]).name} {step}"
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise ctx.error(step, f"{what} did not finish in {timeout:.0f}s", next_step) from e
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip())[-_LOG_TAIL:]
        raise ctx.error(step, f"{what} exited {proc.returncode}: {_log_summary(detail)}", next_step)
    return proc.stdout


def _snapshot_status(ctx: _Context, snapshot: Path, timeout: float) -> dict[str, int]:
    out = _tool(ctx, "snapshot status", [str(etcd_tool("etcdutl")), "snapshot", "status", str(snapshot), "-w", "json"],
                timeout, "the object is not a readable etcd snapshot: do not use it; take a new backup")
    try:
        data = json.loads(out)
        return {k: int(data[k]) for k in ("hash", "revision", "totalKey", "totalSize")}
    except (ValueError, KeyError, TypeError) as e:
        raise ctx.error("snapshot status", f"unexpected etcdutl output {out[:200]!r}",
                        "check the etcd tools on the runner (hcp.etcd_tools.tool_versions())") from e


def _restore_and_count(ctx: _Context, snapshot: Path, data_dir: Path, size: int, start_timeout: float,
                       tool_timeout: float) -> tuple[int, int]:
    """Restore into data_dir, serve it with a throwaway etcd, return (live keys, revision)."""
    with _served(ctx, snapshot, data_dir, size, start_timeout, tool_timeout) as client_url:
        out = _tool(ctx, "count keys",
                    [str(etcd_tool("etcdctl")), f"--endpoints={client_url}", "--command-timeout", f"{tool_timeout:.0f}s",
                     "get", "", "--prefix", "--count-only", "-w", "fields"],
                    tool_timeout + 10, "retry the verification; if it fails again, restore the snapshot by hand "
                                       "and inspect it")
        fields = _fields(out)
        if "Count" not in fields or "Revision" not in fields:
            raise ctx.error("count keys", f"unexpected etcdctl output {out[:300]!r}",
                            "check the etcd tools on the runner (hcp.etcd_tools.tool_versions())")
        return fields["Count"], fields["Revision"]


def snapshot_file_status(snapshot: Path, *, tool_timeout: float = 600.0) -> dict[str, int]:
    """`etcdutl snapshot status` of a local snapshot file: hash, revision, totalKey, totalSize."""
    return _snapshot_status(_Context("", str(snapshot)), snapshot, tool_timeout)


@contextmanager
def served_snapshot(snapshot: Path, *, work_dir: str | os.PathLike[str] | None = None, start_timeout: float = 60.0,
                    tool_timeout: float = 600.0, skip_hash_check: bool = False) -> Iterator[str]:
    """A local snapshot file restored into a scratch directory and served by a throwaway etcd;
    yields its client URL (plain http on 127.0.0.1). Everything is gone afterwards.
    `skip_hash_check`: for a copy of member/snap/db, which has no integrity hash."""
    ctx = _Context("", str(snapshot))
    scratch = Path(tempfile.mkdtemp(prefix="hcp-serve-", dir=work_dir))
    try:
        with _served(ctx, snapshot, scratch / "data", snapshot.stat().st_size, start_timeout, tool_timeout,
                     skip_hash_check) as url:
            yield url
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def _served(ctx: _Context, snapshot: Path, data_dir: Path, size: int, start_timeout: float,
            tool_timeout: float, skip_hash_check: bool = False) -> Iterator[str]:
    last_error: SnapshotVerifyError | None = None
    for attempt in range(1, _START_ATTEMPTS + 1):
        client_port, peer_port = _free_ports(2)
        name = f"hcp-verify-{uuid.uuid4().hex[:12]}"
        peer_url, client_url = f"http://127.0.0.1:{peer_port}", f"http://127.0.0.1:{client_port}"
        shutil.rmtree(data_dir, ignore_errors=True)
        # The member's name and peer URL are written into the restored membership; etcd must start
        # with the same ones, so both come from the ports picked for this attempt.
        _tool(ctx, "snapshot restore",
              [str(etcd_tool("etcdutl")), "snapshot", "restore", str(snapshot), "--data-dir", str(data_dir),
               "--name", name, "--initial-cluster", f"{name}={peer_url}", "--initial-advertise-peer-urls", peer_url,
               "--initial-cluster-token", name] + (["--skip-hash-check"] if skip_hash_check else []),
              tool_timeout, "the snapshot does not restore (its integrity hash or database is bad): do not use it; "
                            "take a new backup")
        try:
            proc = _start(ctx, name, data_dir, client_url, peer_url, size, start_timeout)
        except _PortTaken as e:
            last_error = ctx.error("start etcd", str(e), "retry the verification")
            log.info("verify %s/%s: port taken (attempt %d), retrying: %s", ctx.bucket, ctx.key, attempt, e)
            continue
        try:
            yield client_url
        finally:
            _stop(proc)
        return
    assert last_error is not None
    raise last_error


class _PortTaken(Exception):
    pass


def _start(ctx: _Context, name: str, data_dir: Path, client_url: str, peer_url: str, size: int,
           start_timeout: float) -> subprocess.Popen[bytes]:
    """Start etcd on data_dir and wait until it is healthy (stopped again if it is not)."""
    log_path = data_dir.parent / f"{name}.log"
    argv = [str(etcd_tool("etcd")), "--name", name, "--data-dir", str(data_dir),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{name}={peer_url}", "--initial-cluster-token", name,
            # A snapshot larger than the default 2 GiB quota would start with a NOSPACE alarm.
            "--quota-backend-bytes", str(max(8 << 30, 2 * size)),
            # Nothing written here is kept: fsync would only slow the start on a busy disk.
            "--unsafe-no-fsync", "--log-level", "warn"]
    try:
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise ctx.error("start etcd", f"{argv[0]} did not start: {e}",
                        "check the etcd tools on the runner (hcp.etcd_tools.tool_versions())") from e
    try:
        _wait_healthy(ctx, proc, client_url, log_path, start_timeout)
    except BaseException:
        _stop(proc)
        raise
    return proc


def _wait_healthy(ctx: _Context, proc: subprocess.Popen[bytes], client_url: str, log_path: Path,
                  timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        code = proc.poll()
        if code is not None:
            tail = _tail(log_path)
            if "address already in use" in tail:
                raise _PortTaken(f"etcd could not bind its port: {_log_error(tail, 'address already in use')}")
            raise ctx.error("start etcd", f"the restored etcd exited {code}: {_log_summary(tail)}",
                            "the snapshot restores but does not serve: do not use it; take a new backup")
        try:
            # Short: whatever else might hold the port would not answer, and the loop checks the process.
            with urllib.request.urlopen(f"{client_url}/health", timeout=1) as response:
                body = json.loads(response.read() or b"{}")
            if body.get("health") == "true":
                return
            last = f"health {body}"
        except (urllib.error.URLError, OSError, ValueError) as e:
            last = str(e)
        if time.monotonic() > deadline:
            raise ctx.error("start etcd", f"the restored etcd was not healthy after {timeout:.0f}s ({last}); "
                            f"log: {_log_summary(_tail(log_path))}", "retry with a longer start_timeout on a less busy runner")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


def _fields(text: str) -> dict[str, int]:
    """`-w fields` output: one `"Name" : value` per line."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r'^"(\w+)"\s*:\s*(\d+)\s*$', line.strip())
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def _free_ports(n: int) -> list[int]:
    # Held open together so the n ports differ; etcd binds them right after (a race there is retried).
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _log_error(text: str, needle: str) -> str:
    """The message and error of etcd's JSON log line containing `needle` (not its stack trace)."""
    for line in text.splitlines():
        if needle in line:
            try:
                entry = json.loads(line)
                return f"{entry.get('msg', '')}: {entry.get('error', '')}"
            except ValueError:
                return line[:300]
    return text[-300:]


def _log_summary(text: str) -> str:
    """The tools' final `Error: ...` line, else etcd's last error-level JSON log line (message and
    error, without the stack trace), else the tail."""
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and lines[-1].startswith("Error:"):
        return lines[-1][:500]
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal", "panic"):
            return f"{entry.get('msg', '')}: {entry.get('error', '')}".strip(": ")
    return text[-500:] or "(no log output)"


def _tail(path: Path) -> str:
    try:
        return path.read_bytes()[-_LOG_TAIL:].decode("utf-8", "replace").strip()
    except OSError:
        return ""
