"""Backup retention: which backups to keep and which to delete, and doing it.

`plan_retention` is pure: given the catalog (`hcp.backup_catalog.list_backups`), a policy and the
current time it decides per hosted cluster, with the reasons, so that a plan can be shown and
approved before `apply_retention` deletes anything. Rules, per hosted cluster:

- complete backups: keep the last `keep_last`, and the newest of each UTC day for the last
  `keep_daily_days` days (today included); always keep the newest complete backup, however old;
- orphans (no valid manifest): delete once their newest object is older than
  `orphan_min_age_hours`; a younger one may belong to a run that is still writing;
- anything dated after `now` is kept: the clocks disagree, and age cannot be judged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hcp.backup_catalog import BackupEntry, delete_backup

__all__ = [
    "RetentionPolicy",
    "RetentionDecision",
    "RetentionResult",
    "plan_retention",
    "apply_retention",
    "format_decisions",
]

REASON_NEWEST = "newest verified backup"
REASON_BEYOND = "beyond retention"


class RetentionPolicy(BaseModel):
    """How many backups to keep per hosted cluster, and when an orphan may go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_last: int = Field(default=7, ge=1)
    keep_daily_days: int = Field(default=14, ge=0)
    orphan_min_age_hours: float = Field(default=24, ge=0)


@dataclass(frozen=True)
class RetentionDecision:
    """Keep or delete one catalog entry, and why (for the report and the approval)."""

    entry: BackupEntry
    keep: bool
    reasons: tuple[str, ...]


@dataclass
class RetentionResult:
    """What `apply_retention` did; `errors` name each backup it could not delete."""

    deleted: list[BackupEntry] = field(default_factory=list)
    kept: list[BackupEntry] = field(default_factory=list)
    would_delete: list[BackupEntry] = field(default_factory=list)  # dry run only
    objects_deleted: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


ClusterKey = tuple[str, str, str, str, str]


def _cluster_key(entry: BackupEntry) -> ClusterKey:
    # bucket and prefix too: two backup sets of one cluster are retained independently
    loc = entry.location
    return loc.bucket, loc.prefix, loc.management_cluster, loc.namespace, loc.name


def _aware_utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError(f"now={now!r} has no time zone; pass an aware datetime, e.g. datetime.now(timezone.utc)")
    return now.astimezone(timezone.utc)


def _hours(hours: float) -> str:
    return f"{hours:g}h"


def _by_time(entry: BackupEntry) -> tuple[datetime, str]:
    return entry.location.taken_at, entry.location.operation_id


def _daily_days(now: datetime, days: int) -> set[date]:
    return {now.date() - timedelta(days=n) for n in range(days)}


def _plan_complete(complete: list[BackupEntry], policy: RetentionPolicy, now: datetime) -> dict[int, list[str]]:
    """Reasons to keep each complete backup (by id()), given oldest -> newest and none in the future."""
    reasons: dict[int, list[str]] = {id(e): [] for e in complete}
    for entry in complete[-policy.keep_last:]:
        reasons[id(entry)].append(f"one of the last {policy.keep_last}")
    days = _daily_days(now, policy.keep_daily_days)
    seen: set[date] = set()
    for entry in reversed(complete):
        day = entry.location.taken_at.date()
        if day in days and day not in seen:
            seen.add(day)
            reasons[id(entry)].append(f"daily {day.isoformat()}")
    if complete:
        reasons[id(complete[-1])].append(REASON_NEWEST)
    return reasons


def _plan_orphan(entry: BackupEntry, policy: RetentionPolicy, now: datetime) -> RetentionDecision:
    age = now - entry.last_modified
    limit = _hours(policy.orphan_min_age_hours)
    if age > timedelta(hours=policy.orphan_min_age_hours):
        return RetentionDecision(entry, False, (f"orphan older than {limit}",))
    return RetentionDecision(entry, True, (f"orphan younger than {limit}",))


def _plan_cluster(entries: list[BackupEntry], policy: RetentionPolicy, now: datetime) -> dict[int, RetentionDecision]:
    decisions: dict[int, RetentionDecision] = {}
    complete = []
    for entry in entries:
        if entry.location.taken_at > now:
            decisions[id(entry)] = RetentionDecision(entry, True, (
                f"dated in the future ({entry.location.timestamp} is after now; clock skew?)",))
        elif entry.complete:
            complete.append(entry)
        else:
            decisions[id(entry)] = _plan_orphan(entry, policy, now)
    complete.sort(key=_by_time)
    keep_reasons = _plan_complete(complete, policy, now)
    for entry in complete:
        reasons = keep_reasons[id(entry)]
        decisions[id(entry)] = RetentionDecision(entry, bool(reasons), tuple(reasons) if reasons else (REASON_BEYOND,))
    return decisions


def plan_retention(entries: Iterable[BackupEntry], policy: RetentionPolicy, now: datetime) -> list[RetentionDecision]:
    """One decision per entry, in the order given (pure: reads nothing, deletes nothing)."""
    now = _aware_utc(now)
    entries = list(entries)
    clusters: dict[ClusterKey, list[BackupEntry]] = defaultdict(list)
    for entry in entries:
        clusters[_cluster_key(entry)].append(entry)
    decisions: dict[int, RetentionDecision] = {}
    for members in clusters.values():
        decisions.update(_plan_cluster(members, policy, now))
    return [decisions[id(e)] for e in entries]


def _clusters_losing_everything(decisions: list[RetentionDecision]) -> set[ClusterKey]:
    """Clusters whose every complete backup would be deleted: never what a plan from
    `plan_retention` does, so a hand-made or edited plan that does is refused."""
    has_complete: set[ClusterKey] = set()
    keeps_complete: set[ClusterKey] = set()
    for d in decisions:
        if d.entry.complete:
            has_complete.add(_cluster_key(d.entry))
            if d.keep:
                keeps_complete.add(_cluster_key(d.entry))
    return has_complete - keeps_complete


def apply_retention(s3: Any, decisions: Iterable[RetentionDecision], *, dry_run: bool) -> RetentionResult:
    """Delete the backups the decisions do not keep (nothing when `dry_run`); one failure is
    recorded in `errors` and the rest carry on."""
    decisions = list(decisions)
    result = RetentionResult()
    refused = _clusters_losing_everything(decisions)
    for cluster in sorted(refused):
        result.errors.append(f"{'/'.join(p for p in cluster if p)}: the plan deletes every complete backup of this "
                             "hosted cluster; refusing to delete its complete backups (make a plan with "
                             "plan_retention, which always keeps the newest)")
    for decision in decisions:
        entry = decision.entry
        if decision.keep or (entry.complete and _cluster_key(entry) in refused):
            result.kept.append(entry)
        elif dry_run:
            result.would_delete.append(entry)
        else:
            _delete(s3, entry, result)
    return result


def _delete(s3: Any, entry: BackupEntry, result: RetentionResult) -> None:
    try:
        result.objects_deleted += delete_backup(s3, entry)
    except Exception as exc:  # one prefix failing must not stop the others; the error is reported
        result.errors.append(f"{entry.location.url}: not deleted: {exc}")
        return
    result.deleted.append(entry)


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def format_decisions(decisions: Iterable[RetentionDecision]) -> str:
    """A markdown table of the decisions, for a run report."""
    lines = ["| Cluster | Taken (UTC) | Status | Decision | Reasons | Location |",
             "|---|---|---|---|---|---|"]
    for d in decisions:
        loc = d.entry.location
        cells = (f"{loc.management_cluster}/{loc.hosted_cluster}", loc.taken_at.strftime("%Y-%m-%d %H:%M:%S"),
                 d.entry.status, "keep" if d.keep else "delete", "; ".join(d.reasons), loc.url)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)
