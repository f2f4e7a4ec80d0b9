"""hcp.backup_catalog and hcp.retention against the simulated S3 (boto3 over HTTPS to moto): listing
complete and broken backups, paging, deletion order, retention dry run and real run, clear errors."""

from __future__ import annotations

import itertools
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from hcp.backup_catalog import (
    BackupCatalogError,
    BackupEntry,
    delete_backup,
    format_table,
    human_size,
    list_backups,
)
from hcp.backup_manifest import BackupManifest, Timings, build, dump, manifest_key
from hcp.naming import BackupLocation, HostedClusterRef
from hcp.retention import RetentionPolicy, apply_retention, plan_retention

HC1 = HostedClusterRef("clusters", "hc1")
HC2 = HostedClusterRef("clusters", "hc2")
DAY0 = datetime(2026, 11, 1, 3, 0, 0, tzinfo=timezone.utc)
_serial = itertools.count()


@pytest.fixture
def prefix() -> str:
    return f"cat-{uuid.uuid4().hex[:8]}"


def _location(bucket: str, prefix: str, when: datetime, *, mgmt: str = "mgmt1",
              cluster: HostedClusterRef = HC1) -> BackupLocation:
    op = f"op-{when.strftime('%Y%m%dT%H%M%SZ')}-{next(_serial) % 0xFFFFFF:06x}"
    return BackupLocation.new(bucket, prefix, mgmt, cluster, op, when)


def _manifest(loc: BackupLocation, files: list[str]) -> BackupManifest:
    t = loc.taken_at
    return build(loc, uid="u-1", release_image="quay.io/x:4.15.0", release_version="4.15.0", member="etcd-0",
                 revision=4242, hash=7, total_keys=321, size_bytes=5, sha256="b" * 64,
                 snapshot_key=loc.key(files[0]), object_keys=[loc.key(f) for f in files],
                 encryption_key_object=None, mode="quiesced", downtime_seconds=3.0,
                 timings=Timings(started_at=t, snapshot_started_at=t, snapshot_finished_at=t, upload_finished_at=t,
                                 finished_at=t + timedelta(seconds=20)),
                 tool_versions={"etcdctl": "3.5.12"})


def _put_backup(s3: Any, loc: BackupLocation, *, files: tuple[str, ...] = ("snapshot.db",),
                manifest: bytes | None | bool = True) -> BackupLocation:
    """Upload `files` (5 bytes each) and then the manifest: True builds a valid one, bytes are
    written as they are, False/None writes none (an orphan)."""
    for f in files:
        s3.put_object(Bucket=loc.bucket, Key=loc.key(f), Body=b"12345")
    if manifest is True:
        manifest = dump(_manifest(loc, list(files)))
    if manifest:
        s3.put_object(Bucket=loc.bucket, Key=manifest_key(loc), Body=manifest)
    return loc


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_lists_complete_orphan_corrupt_and_mismatched(s3, bucket, prefix) -> None:  # type: ignore[no-untyped-def]
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    complete = _put_backup(s3, _location(bucket, prefix, DAY0), files=("snapshot.db", "encryption-key.json"))
    orphan = _put_backup(s3, _location(bucket, prefix, DAY0 + timedelta(hours=1)), manifest=False)
    corrupt = _put_backup(s3, _location(bucket, prefix, DAY0 + timedelta(hours=2)), manifest=b"{not json")
    elsewhere = _location(bucket, prefix, DAY0 + timedelta(hours=3), cluster=HC2)
    mismatched = _put_backup(s3, _location(bucket, prefix, DAY0 + timedelta(hours=4)),
                             manifest=dump(_manifest(elsewhere, ["snapshot.db"])))
    missing_part = _location(bucket, prefix, DAY0 + timedelta(hours=5))
    s3.put_object(Bucket=bucket, Key=manifest_key(missing_part), Body=dump(_manifest(missing_part, ["snapshot.db"])))
    other_cluster = _put_backup(s3, _location(bucket, prefix, DAY0 - timedelta(days=1), cluster=HC2))
    other_mgmt = _put_backup(s3, _location(bucket, prefix, DAY0, mgmt="mgmt2"))
    # not backups: ignored, not errors
    for key in ("README.txt", "mgmt1/clusters/hc1/not-a-backup/x", "mgmt1/clusters/hc1/stray.txt",
                "mgmt1/clusters/hc1/20261101T030000Z-op-bad/snapshot.db"):
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=b"x")

    entries = list_backups(s3, bucket, prefix)
    by_loc = {e.location: e for e in entries}
    assert [e.location for e in entries] == [complete, orphan, corrupt, mismatched, missing_part, other_cluster,
                                             other_mgmt]
    good = by_loc[complete]
    assert good.complete and good.problem is None and good.status == "complete"
    assert good.manifest is not None and good.manifest.revision == 4242
    assert good.objects == 3 and good.size_bytes == 10 + len(dump(good.manifest))
    assert before <= good.last_modified <= datetime.now(timezone.utc) + timedelta(seconds=5)
    assert by_loc[orphan].manifest is None and "no manifest.json" in (by_loc[orphan].problem or "")
    assert by_loc[orphan].objects == 1 and by_loc[orphan].size_bytes == 5
    assert by_loc[corrupt].manifest is None and "not valid JSON" in (by_loc[corrupt].problem or "")
    bad = by_loc[mismatched]
    assert not bad.complete and bad.manifest is not None and "manifest does not match" in (bad.problem or "")
    assert "name is 'hc2'" in (bad.problem or "")
    assert "missing" in (by_loc[missing_part].problem or "") and not by_loc[missing_part].complete
    assert by_loc[other_cluster].complete and by_loc[other_mgmt].complete

    one = list_backups(s3, bucket, prefix, management_cluster="mgmt1", hosted_cluster=HC1)
    assert [e.location for e in one] == [complete, orphan, corrupt, mismatched, missing_part]
    assert [e.location for e in list_backups(s3, bucket, prefix, hosted_cluster=HC1)] == \
        [complete, orphan, corrupt, mismatched, missing_part, other_mgmt]
    assert [e.location for e in list_backups(s3, bucket, prefix, management_cluster="mgmt2")] == [other_mgmt]
    assert list_backups(s3, bucket, f"{prefix}/nothing-here") == []

    table = format_table(entries).splitlines()
    assert table[0].split() == ["CLUSTER", "TAKEN", "(UTC)", "MODE", "REVISION", "KEYS", "SIZE", "VERIFIED", "STATUS",
                                "LOCATION"]
    assert len(table) == 1 + len(entries)
    assert table[1].split()[:9] == ["clusters/hc1", "2026-11-01", "03:00:00", "quiesced", "4242", "321",
                                    *human_size(good.size_bytes).split(), "sha256"]
    assert "complete" in table[1] and complete.url in table[1]
    assert "incomplete: no manifest.json" in table[2] and orphan.url in table[2]


class _Recording:
    """The S3 client, with the deleting calls recorded (and DeleteObjects answers replaceable)."""

    def __init__(self, s3: Any, delete_objects_answer: dict | None = None) -> None:
        self._s3 = s3
        self._answer = delete_objects_answer
        self.calls: list[tuple[str, Any]] = []

    def delete_object(self, **kw: Any) -> Any:
        self.calls.append(("delete_object", kw["Key"]))
        return self._s3.delete_object(**kw)

    def delete_objects(self, **kw: Any) -> Any:
        self.calls.append(("delete_objects", [o["Key"] for o in kw["Delete"]["Objects"]]))
        return self._answer if self._answer is not None else self._s3.delete_objects(**kw)

    def get_paginator(self, name: str) -> Any:
        paginator = self._s3.get_paginator(name)
        calls = self.calls

        class _Paginator:
            def paginate(self, **kw: Any) -> Any:
                calls.append((name, kw["Prefix"]))
                return paginator.paginate(**kw)

        return _Paginator()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)


def test_pages_over_1000_objects_and_deletes_manifest_first(s3, bucket, prefix) -> None:  # type: ignore[no-untyped-def]
    loc = _location(bucket, prefix, DAY0)
    names = [f"parts/{i:04d}" for i in range(1001)]
    # just over one page: each PUT costs the simulated S3 several ms of CPU, so no more than needed
    with ThreadPoolExecutor(max_workers=10) as pool:  # botocore's connection pool holds 10
        list(pool.map(lambda n: s3.put_object(Bucket=bucket, Key=loc.key(n), Body=b"."), names))
    _put_backup(s3, loc, files=("snapshot.db",))
    neighbour = _put_backup(s3, _location(bucket, prefix, DAY0 + timedelta(seconds=1)))

    listing = _Recording(s3)
    [entry, _] = list_backups(listing, bucket, prefix, management_cluster="mgmt1", hosted_cluster=HC1)
    assert listing.calls == [("list_objects_v2", f"{prefix}/mgmt1/clusters/hc1/")]  # the narrowest prefix
    assert entry.location == loc and entry.complete and entry.objects == 1003

    recording = _Recording(s3)
    assert delete_backup(recording, entry) == 1003
    assert recording.calls[:2] == [("list_objects_v2", loc.key_prefix), ("delete_object", manifest_key(loc))]
    batches = [keys for call, keys in recording.calls[2:]]
    assert [call for call, _ in recording.calls[2:]] == ["delete_objects", "delete_objects"]
    assert [len(b) for b in batches] == [1000, 2] and manifest_key(loc) not in batches[0] + batches[1]
    assert [e.location for e in list_backups(s3, bucket, prefix)] == [neighbour]
    assert delete_backup(s3, loc) == 0  # already gone


def test_delete_objects_errors_raise(s3, bucket, prefix) -> None:  # type: ignore[no-untyped-def]
    loc = _put_backup(s3, _location(bucket, prefix, DAY0), files=("snapshot.db", "encryption-key.json"))
    refusing = _Recording(s3, {"Errors": [{"Key": loc.key("snapshot.db"), "Code": "AccessDenied",
                                           "Message": "Access Denied"}]})
    with pytest.raises(BackupCatalogError, match=r"refused to delete 1 object.*snapshot.db: AccessDenied"):
        delete_backup(refusing, loc)
    [left] = list_backups(s3, bucket, prefix)
    assert not left.complete and "no manifest.json" in (left.problem or "")  # an orphan now, not a backup


def test_apply_retention_dry_run_then_real(s3, bucket, prefix, hcp_world) -> None:  # type: ignore[no-untyped-def]
    backups = [_put_backup(s3, _location(bucket, prefix, DAY0 + timedelta(days=d))) for d in range(4)]
    orphan = _put_backup(s3, _location(bucket, prefix, DAY0 + timedelta(days=1, hours=1)), manifest=False)
    other = [_put_backup(s3, _location(bucket, prefix, DAY0 + timedelta(days=d), cluster=HC2)) for d in range(2)]
    entries = list_backups(s3, bucket, prefix)
    # two days from now, the orphan (written just now) is old enough to go
    decisions = plan_retention(entries, RetentionPolicy(keep_last=2, keep_daily_days=0, orphan_min_age_hours=24),
                               datetime.now(timezone.utc) + timedelta(days=2))
    planned = {d.entry.location for d in decisions if not d.keep}
    assert planned == {backups[0], backups[1], orphan}
    all_keys = sorted(_keys(s3, bucket, prefix))

    dry = apply_retention(s3, decisions, dry_run=True)
    assert {e.location for e in dry.would_delete} == planned and dry.deleted == [] and dry.objects_deleted == 0
    assert sorted(_keys(s3, bucket, prefix)) == all_keys

    # one prefix fails (its manifest cannot be deleted); the others carry on
    assert hcp_world.aws.faults is not None
    hcp_world.aws.faults.fail_next(1, 403, method="DELETE", path=f"{backups[0].timestamp}-{backups[0].operation_id}")
    real = apply_retention(s3, decisions, dry_run=False)
    assert {e.location for e in real.deleted} == {backups[1], orphan} and real.would_delete == []
    assert real.objects_deleted == 2 + 1
    assert len(real.errors) == 1 and backups[0].url in real.errors[0] and "access denied" in real.errors[0].lower()
    assert {e.location for e in real.kept} == {backups[2], backups[3], *other}
    assert {e.location for e in list_backups(s3, bucket, prefix)} == {backups[0], backups[2], backups[3], *other}

    again = apply_retention(s3, decisions, dry_run=False)  # the failed one again; the gone ones are no-ops
    assert again.ok and again.objects_deleted == 2
    assert {e.location for e in list_backups(s3, bucket, prefix)} == {backups[2], backups[3], *other}


def test_missing_bucket_and_access_denied(s3, bucket, prefix, hcp_world) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BackupCatalogError, match=r"s3://no-such-bucket-0f3a/.*bucket 'no-such-bucket-0f3a' does "
                                                 r"not exist: check the bucket name"):
        list_backups(s3, "no-such-bucket-0f3a", prefix)
    hcp_world.aws.faults.fail_next(1, 403, method="GET", path=bucket)
    with pytest.raises(BackupCatalogError, match=rf"listing s3://{bucket}/{prefix}/ failed: access denied "
                                                 r"\(AccessDenied\).*s3:ListBucket"):
        list_backups(s3, bucket, prefix)


def test_entry_is_a_frozen_value(s3, bucket, prefix) -> None:  # type: ignore[no-untyped-def]
    _put_backup(s3, _location(bucket, prefix, DAY0))
    [entry] = list_backups(s3, bucket, prefix)
    assert isinstance(entry, BackupEntry)
    with pytest.raises(AttributeError):
        entry.problem = "x"  # type: ignore[misc]
