"""Where a restore's snapshot comes from, fetched to a local file on the runner and checked before
anything is destroyed:

* a backup (its manifest): the object's SHA-256 must equal the manifest's, and `etcdutl snapshot
  status` must give the manifest's revision and hash;
* a fresh snapshot from a running member: `snapshot save` in the pod, streamed out, SHA-256 equal
  to the pod's file, status readable;
* a copy of a member's `member/snap/db` (when no member can take a snapshot): status readable; it
  has no integrity hash (restored with --skip-hash-check) and may miss the newest writes, which
  were only in the write-ahead log.

A backup or a fresh snapshot must also carry etcd's integrity hash, and it must match: the SHA-256
of the database that `snapshot save` appends, which `etcdutl snapshot restore` checks (etcdutl's
own test: the file's size is 32 bytes past a multiple of 512, and the SHA-256 of everything before
those 32 bytes equals them). It is checked here, in the same pass as the file's SHA-256, so a
damaged snapshot is refused before anything changes; the restore in the pod then runs with
--skip-hash-check on a copy proven byte for byte the same (its SHA-256 is compared in the pod).
"""

from __future__ import annotations

import hashlib
import queue
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

from kubernetes import client
from pydantic import BaseModel

from hcp import etcd_member, pod_exec
from hcp.backup_catalog import BackupEntry
from hcp.backup_manifest import BackupManifest
from hcp.etcd_member import DATA_DIR, EtcdMember
from hcp.s3_transfer import S3TransferError, download_stream
from hcp.snapshot_verify import SnapshotVerifyError, snapshot_file_status

__all__ = ["SnapshotSourceError", "LocalSnapshot", "SourceKind", "fetch_backup", "fetch_member_snapshot",
           "fetch_member_db", "check_local_copy"]

SourceKind = Literal["latest-backup", "backup", "snapshot", "member-db"]


class SnapshotSourceError(RuntimeError):
    """The snapshot could not be fetched or failed its checks; nothing was changed."""

    def __init__(self, message: str, *, source: str, step: str, next_step: str) -> None:
        super().__init__(f"snapshot from {source}, step {step}: {message}. Nothing was changed. Next: {next_step}")
        self.source = source
        self.step = step
        self.next_step = next_step


class LocalSnapshot(BaseModel):
    """A checked snapshot file on the runner."""

    path: str
    source: str  # e.g. "backup s3://b/p/.../" or "snapshot of clusters-x/etcd-1"
    kind: SourceKind
    sha256: str
    size_bytes: int
    revision: int
    hash: int
    total_keys: int
    taken_at: datetime | None  # when the data was read (None: unknown, e.g. a member-db copy's mtime is not it)
    skip_hash_check: bool = False  # a member-db copy has no integrity hash
    integrity_checked: bool = False  # etcd's integrity hash was verified on the runner (see the module docstring)

    @property
    def restore_skips_hash_check(self) -> bool:
        """Whether `etcdutl snapshot restore` gets --skip-hash-check: no hash to check (member-db), or
        checked already on the runner against the same bytes."""
        return self.skip_hash_check or self.integrity_checked
    manifest_url: str | None = None
    encryption_key_object: str | None = None
    # A backup's snapshot object, s3://BUCKET/KEY: the data pod can download it itself (a presigned
    # GET), checked there against `sha256`; None (fresh snapshot, member-db): only this file exists.
    snapshot_object: str | None = None


_INTEGRITY_HASH = 32  # bytes of SHA-256 that `snapshot save` appends
_READ_AHEAD = 8  # chunks a download may run ahead of the hashing and writing


class _Hashes:
    """The file's SHA-256 and etcd's integrity check in one pass: the last 32 bytes seen are held
    back, so the digest of everything before them is at hand when the stream ends."""

    def __init__(self) -> None:
        self._body = hashlib.sha256()
        self._tail = b""
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if len(chunk) >= _INTEGRITY_HASH:
            view = memoryview(chunk)
            self._body.update(self._tail)
            self._body.update(view[:-_INTEGRITY_HASH])
            self._tail = bytes(view[-_INTEGRITY_HASH:])
        else:
            joined = self._tail + bytes(chunk)
            self._body.update(joined[:-_INTEGRITY_HASH])
            self._tail = joined[-_INTEGRITY_HASH:]

    def sha256(self) -> str:
        whole = self._body.copy()
        whole.update(self._tail)
        return whole.hexdigest()

    def integrity(self) -> bool | None:
        """True/False: etcd's integrity hash matches or not; None: the file carries none."""
        if self.size % 512 != _INTEGRITY_HASH or len(self._tail) != _INTEGRITY_HASH:
            return None
        return self._body.digest() == self._tail


def _write(chunks: Iterable[bytes], dest: Path) -> _Hashes:
    hashes = _Hashes()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with part.open("wb") as f:
        for chunk in chunks:
            hashes.update(chunk)
            f.write(chunk)
    part.replace(dest)
    return hashes


def _read_ahead(chunks: Iterable[bytes], depth: int = _READ_AHEAD) -> Iterator[bytes]:
    """`chunks` pulled by a thread of its own, up to `depth` ahead: receiving the next chunk (TLS,
    HTTP) overlaps hashing and writing the last one. The source's error is raised here; stopping
    early (an error while writing) stops the thread and closes the source."""
    items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pull() -> None:
        source = iter(chunks)
        try:
            for chunk in source:
                if not put(("chunk", chunk)):
                    return
            put(("end", None))
        except BaseException as e:  # handed to the consumer
            put(("error", e))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=pull, name="snapshot-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


def _integrity_error(hashes: _Hashes, dest: Path, source: str, next_step: str) -> SnapshotSourceError | None:
    integrity = hashes.integrity()
    if integrity:
        return None
    dest.unlink(missing_ok=True)
    what = ("it carries no integrity hash (not a `snapshot save` file: its size is not 32 bytes past a multiple "
            f"of 512, {hashes.size} bytes)" if integrity is None else
            "its integrity hash (the SHA-256 `snapshot save` appends) does not match its content")
    return SnapshotSourceError(what, source=source, step="integrity hash", next_step=next_step)


def _status(path: Path, source: str) -> dict[str, int]:
    try:
        return snapshot_file_status(path)
    except SnapshotVerifyError as e:
        raise SnapshotSourceError(str(e), source=source, step="snapshot status",
                                  next_step="this is not a usable etcd snapshot: choose another source") from e


def check_local_copy(snapshot: LocalSnapshot) -> bool:
    """Whether the file of an earlier fetch is still there, whole (a resumed run reuses it)."""
    path = Path(snapshot.path)
    if not path.is_file() or path.stat().st_size != snapshot.size_bytes:
        return False
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest() == snapshot.sha256


def fetch_backup(s3: Any, entry: BackupEntry, dest: Path) -> LocalSnapshot:
    manifest: BackupManifest | None = entry.manifest
    source = f"backup {entry.location.url}"
    if manifest is None or not entry.complete:
        raise SnapshotSourceError(f"not a complete backup ({entry.status})", source=source, step="manifest",
                                  next_step="choose a complete backup (`hcp-runbooks backups list --bucket B`)")
    try:
        hashes = _write(_read_ahead(download_stream(s3, entry.location.bucket, manifest.snapshot_key)), dest)
    except (S3TransferError, OSError) as e:
        raise SnapshotSourceError(str(e), source=source, step="download",
                                  next_step=f"check access to s3://{entry.location.bucket}/{manifest.snapshot_key} "
                                            f"and room in {dest.parent}") from e
    sha256, size = hashes.sha256(), hashes.size
    if sha256 != manifest.sha256 or size != manifest.size_bytes:
        dest.unlink(missing_ok=True)
        raise SnapshotSourceError(f"the object has SHA-256 {sha256} ({size} bytes), the manifest says {manifest.sha256} "
                                  f"({manifest.size_bytes} bytes)", source=source, step="sha256",
                                  next_step="the object is damaged or was replaced: restore from another backup")
    bad = _integrity_error(hashes, dest, source, "the backup's snapshot is damaged: restore from another backup")
    if bad:
        raise bad
    status = _status(dest, source)
    if status["revision"] != manifest.revision or status["hash"] != manifest.hash:
        dest.unlink(missing_ok=True)
        raise SnapshotSourceError(f"snapshot status gives revision {status['revision']} hash {status['hash']}, the "
                                  f"manifest revision {manifest.revision} hash {manifest.hash}", source=source,
                                  step="snapshot status", next_step="restore from another backup")
    return LocalSnapshot(path=str(dest), source=source, kind="backup", sha256=sha256, size_bytes=size,
                         revision=status["revision"], hash=status["hash"], total_keys=status["totalKey"],
                         taken_at=manifest.timings.snapshot_finished_at, manifest_url=entry.location.url,
                         encryption_key_object=manifest.encryption_key_object, integrity_checked=True,
                         snapshot_object=f"s3://{entry.location.bucket}/{manifest.snapshot_key}")


def fetch_member_snapshot(api: client.ApiClient, member: EtcdMember, pod_path: str, dest: Path) -> LocalSnapshot:
    """`etcdctl snapshot save` in the member's pod, streamed to `dest`, the pod's file removed."""
    source = f"snapshot of {member}"
    try:
        info = etcd_member.save_snapshot(api, member, pod_path)
        taken_at = datetime.now(timezone.utc)
        hashes = _write(etcd_member.stream_snapshot(api, member, pod_path), dest)
    except (etcd_member.EtcdMemberError, pod_exec.ExecError, OSError) as e:
        raise SnapshotSourceError(str(e), source=source, step="snapshot",
                                  next_step="choose another member, a backup, or member-db") from e
    finally:
        try:
            etcd_member.remove_snapshot(api, member, pod_path)
        except Exception:
            pass  # best effort: the file is on the member's volume, the report names it
    sha256, size = hashes.sha256(), hashes.size
    if (info.sha256 and sha256 != info.sha256) or size != info.size_bytes:
        dest.unlink(missing_ok=True)
        raise SnapshotSourceError(f"the copy has SHA-256 {sha256} ({size} bytes), the pod's file {info.sha256} "
                                  f"({info.size_bytes} bytes)", source=source, step="sha256",
                                  next_step="the stream was damaged: run again")
    bad = _integrity_error(hashes, dest, source, "run again, or choose another member")
    if bad:
        raise bad
    status = _status(dest, source)
    return LocalSnapshot(path=str(dest), source=source, kind="snapshot", sha256=sha256, size_bytes=size,
                         revision=status["revision"], hash=status["hash"], total_keys=status["totalKey"],
                         taken_at=taken_at, integrity_checked=True)


def fetch_member_db(api: client.ApiClient, member: EtcdMember, dest: Path) -> LocalSnapshot:
    """A copy of the member's `member/snap/db` (the documented fallback when no member can take a
    snapshot). Read while etcd may run: bolt writes pages in place, so a copy taken during a write
    can be torn; `snapshot status` below reads every page and refuses a torn file."""
    source = f"member/snap/db of {member}"
    path = f"{DATA_DIR}/member/snap/db"
    taken_at = datetime.now(timezone.utc)
    try:
        chunks = pod_exec.stream_stdout(api, member.namespace, member.pod, member.container, ["cat", path])
        hashes = _write(chunks, dest)
    except (pod_exec.ExecError, OSError) as e:
        raise SnapshotSourceError(str(e), source=source, step="copy",
                                  next_step="choose another member whose pod runs, or restore from a backup") from e
    status = _status(dest, source)
    return LocalSnapshot(path=str(dest), source=source, kind="member-db", sha256=hashes.sha256(),
                         size_bytes=hashes.size,
                         revision=status["revision"], hash=status["hash"], total_keys=status["totalKey"],
                         taken_at=taken_at, skip_hash_check=True)
