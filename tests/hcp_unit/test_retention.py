"""hcp.retention: the retention policy on synthetic catalog entries (no S3)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from hcp.backup_catalog import BackupEntry
from hcp.backup_manifest import Timings, build
from hcp.naming import BackupLocation, HostedClusterRef
from hcp.retention import (
    RetentionDecision,
    RetentionPolicy,
    apply_retention,
    format_decisions,
    plan_retention,
)

NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=timezone.utc)
_serial = itertools.count()


def entry(taken: datetime, *, complete: bool = True, mgmt: str = "mgmt1", cluster: str = "clusters/hc1",
          last_modified: datetime | None = None, verification: str = "sha256") -> BackupEntry:
    op = f"op-{taken.strftime('%Y%m%dT%H%M%SZ')}-{next(_serial):06x}"
    loc = BackupLocation.new("bucket-1", "etcd", mgmt, HostedClusterRef.parse(cluster), op, taken)
    manifest = None
    if complete:
        t = taken
        manifest = build(loc, uid="u-1", release_image="quay.io/x:4.15.0", release_version="4.15.0", member="etcd-0",
                         revision=10, hash=1, total_keys=100, size_bytes=4096, sha256="a" * 64,
                         snapshot_key=loc.key("snapshot.db"), object_keys=[loc.key("snapshot.db")],
                         encryption_key_object=None, mode="online", downtime_seconds=0.0,
                         verification=verification, verified_total_keys=100 if verification == "full" else None,
                         timings=Timings(started_at=t, snapshot_started_at=t, snapshot_finished_at=t,
                                         upload_finished_at=t, finished_at=t + timedelta(seconds=30)),
                         tool_versions={"etcdctl": "3.5.12"})
    return BackupEntry(location=loc, manifest=manifest, problem=None if complete else "no manifest.json",
                       objects=2 if complete else 1, size_bytes=4096,
                       last_modified=last_modified or taken + timedelta(seconds=30))


def kept(decisions: list[RetentionDecision]) -> list[BackupEntry]:
    return [d.entry for d in decisions if d.keep]


def by_entry(decisions: list[RetentionDecision]) -> dict[BackupLocation, RetentionDecision]:
    return {d.entry.location: d for d in decisions}


def hourly(count: int, start: datetime, **kw: Any) -> list[BackupEntry]:
    return [entry(start + timedelta(hours=h), **kw) for h in range(count)]


def test_policy_defaults_and_validation() -> None:
    policy = RetentionPolicy()
    assert (policy.keep_last, policy.keep_daily_days, policy.orphan_min_age_hours) == (7, 14, 24)
    RetentionPolicy(keep_last=1, keep_daily_days=0, orphan_min_age_hours=0)
    for bad in ({"keep_last": 0}, {"keep_daily_days": -1}, {"orphan_min_age_hours": -0.5}, {"keep_every": 3}):
        with pytest.raises(ValidationError):
            RetentionPolicy(**bad)


def test_keep_last_n() -> None:
    entries = hourly(10, NOW - timedelta(days=60))
    decisions = plan_retention(entries, RetentionPolicy(keep_last=3, keep_daily_days=0), NOW)
    assert [d.entry for d in decisions] == entries  # in the order given
    assert kept(decisions) == entries[-3:]
    assert all(d.reasons == ("beyond retention",) for d in decisions[:-3])
    assert all("one of the last 3" in d.reasons for d in decisions[-3:])
    assert decisions[-1].reasons == ("one of the last 3", "newest verified backup")


def test_daily_keeps_newest_of_each_day_today_included() -> None:
    # two backups a day (03:00 and 09:00) for 20 days up to and including today
    first_day = NOW.replace(hour=0) - timedelta(days=19)
    entries = [entry(first_day + timedelta(days=d, hours=h)) for d in range(20) for h in (3, 9)]
    decisions = plan_retention(entries, RetentionPolicy(keep_last=1, keep_daily_days=14), NOW)
    keep = kept(decisions)
    assert [e.location.taken_at for e in keep] == [first_day + timedelta(days=d, hours=9) for d in range(6, 20)]
    newest = by_entry(decisions)[entries[-1].location]
    assert newest.reasons == ("one of the last 1", "daily 2026-11-20", "newest verified backup")
    assert by_entry(decisions)[entries[-3].location].reasons == ("daily 2026-11-19",)
    assert all(d.reasons == ("beyond retention",) for d in decisions if not d.keep)


def test_keep_daily_days_zero_keeps_no_dailies() -> None:
    entries = [entry(NOW - timedelta(days=d)) for d in range(5, 0, -1)]
    decisions = plan_retention(entries, RetentionPolicy(keep_last=2, keep_daily_days=0), NOW)
    assert kept(decisions) == entries[-2:]
    assert not any(r.startswith("daily") for d in decisions for r in d.reasons)


def test_newest_verified_kept_even_when_older_than_everything_else() -> None:
    old = entry(NOW - timedelta(days=400), verification="full")
    orphans = hourly(5, NOW - timedelta(days=3), complete=False)
    decisions = plan_retention([*orphans, old], RetentionPolicy(keep_last=1, keep_daily_days=14), NOW)
    assert kept(decisions) == [old]
    assert "newest verified backup" in by_entry(decisions)[old.location].reasons
    assert all(d.reasons == ("orphan older than 24h",) for d in decisions if not d.keep)


def test_future_dated_kept_and_does_not_displace_the_newest() -> None:
    past = hourly(3, NOW - timedelta(days=30))
    future = entry(NOW + timedelta(hours=2))
    future_orphan = entry(NOW + timedelta(minutes=5), complete=False, last_modified=NOW - timedelta(days=9))
    decisions = by_entry(plan_retention([*past, future, future_orphan],
                                        RetentionPolicy(keep_last=1, keep_daily_days=0), NOW))
    for e in (future, future_orphan):
        assert decisions[e.location].keep
        assert decisions[e.location].reasons[0].startswith("dated in the future")
    # the future one is not counted: the newest backup dated in the past is still kept
    assert decisions[past[-1].location].reasons == ("one of the last 1", "newest verified backup")
    assert not decisions[past[0].location].keep and not decisions[past[1].location].keep


@pytest.mark.parametrize("age,keep", [
    (timedelta(hours=24), True),
    (timedelta(hours=24, seconds=1), False),
    (timedelta(hours=23, minutes=59), True),
    (timedelta(days=30), False),
])
def test_orphan_age_boundary(age: timedelta, keep: bool) -> None:
    orphan = entry(NOW - timedelta(days=40), complete=False, last_modified=NOW - age)
    [decision] = plan_retention([orphan], RetentionPolicy(), NOW)
    assert decision.keep is keep
    assert decision.reasons == (("orphan younger than 24h",) if keep else ("orphan older than 24h",))


def test_orphan_min_age_zero_and_fractional() -> None:
    fresh = entry(NOW - timedelta(minutes=1), complete=False, last_modified=NOW)
    stale = entry(NOW - timedelta(minutes=2), complete=False, last_modified=NOW - timedelta(seconds=1))
    decisions = by_entry(plan_retention([fresh, stale], RetentionPolicy(orphan_min_age_hours=0), NOW))
    assert decisions[fresh.location].keep and not decisions[stale.location].keep
    [d] = plan_retention([stale], RetentionPolicy(orphan_min_age_hours=1.5), NOW)
    assert d.keep and d.reasons == ("orphan younger than 1.5h",)


def test_clusters_are_independent() -> None:
    a = hourly(5, NOW - timedelta(days=50), cluster="clusters/a")
    b = hourly(2, NOW - timedelta(days=90), cluster="clusters/b")
    a_other_mgmt = hourly(3, NOW - timedelta(days=70), cluster="clusters/a", mgmt="mgmt2")
    mixed = [x for group in itertools.zip_longest(a, b, a_other_mgmt) for x in group if x is not None]
    decisions = plan_retention(mixed, RetentionPolicy(keep_last=2, keep_daily_days=0), NOW)
    keep = set(e.location for e in kept(decisions))
    assert keep == {e.location for e in (*a[-2:], *b, *a_other_mgmt[-2:])}
    newest = {d.entry.location for d in decisions if "newest verified backup" in d.reasons}
    assert newest == {a[-1].location, b[-1].location, a_other_mgmt[-1].location}


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        plan_retention([], RetentionPolicy(), datetime(2026, 1, 1))


class _NoS3:
    """Any S3 call is a test failure."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected S3 call: {name}")


def test_dry_run_touches_nothing() -> None:
    entries = hourly(4, NOW - timedelta(days=30))
    decisions = plan_retention(entries, RetentionPolicy(keep_last=1, keep_daily_days=0), NOW)
    result = apply_retention(_NoS3(), decisions, dry_run=True)
    assert result.would_delete == entries[:3] and result.kept == entries[3:]
    assert result.deleted == [] and result.objects_deleted == 0 and result.ok


def test_apply_refuses_a_plan_that_deletes_every_complete_backup() -> None:
    entries = hourly(2, NOW - timedelta(days=30))
    bad = [RetentionDecision(e, False, ("hand-made",)) for e in entries]
    result = apply_retention(_NoS3(), bad, dry_run=False)
    assert result.kept == entries and result.deleted == []
    assert len(result.errors) == 1 and "refusing" in result.errors[0]


def test_format_decisions_markdown() -> None:
    orphan = entry(NOW - timedelta(days=3), complete=False)
    orphan = BackupEntry(orphan.location, None, "bad | pipe", orphan.objects, orphan.size_bytes,
                         orphan.last_modified)
    table = format_decisions(plan_retention([entry(NOW - timedelta(days=1)), orphan], RetentionPolicy(), NOW))
    lines = table.splitlines()
    assert lines[0].startswith("| Cluster | Taken (UTC) |") and len(lines) == 4
    assert "| keep | one of the last 7; daily 2026-11-19; newest verified backup |" in lines[2]
    assert "incomplete: bad \\| pipe | delete | orphan older than 24h |" in lines[3]
    assert "mgmt1/clusters/hc1" in lines[2] and "s3://bucket-1/etcd/mgmt1/clusters/hc1/" in lines[2]
