"""The backup catalog: which backups are in S3, which of them are complete, and deleting one.

Backups live at `s3://BUCKET/PREFIX/<mgmt>/<namespace>/<name>/<UTC timestamp>-<operation id>/`
(`hcp.naming.BackupLocation`). A backup is complete when its `manifest.json` (the commit point,
written last) is there, parses, matches its location and every object it lists exists. Anything
else under a backup prefix is an "orphan": a run that died mid-upload, or one still writing.

Only a missing or invalid manifest makes an entry incomplete; an S3 error while reading one raises,
because an entry wrongly marked incomplete is what retention deletes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hcp.backup_manifest import BackupManifest, ManifestError, load, manifest_key
from hcp.naming import (
    BackupLocation,
    HostedClusterRef,
    InvalidNameError,
    backups_prefix,
    normalize_prefix,
    validate_bucket,
    validate_management_cluster,
)

__all__ = [
    "BackupCatalogError",
    "BackupEntry",
    "list_backups",
    "delete_backup",
    "format_table",
    "human_size",
]

DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys per request
MAX_MANIFEST_BYTES = 16 * 1024 * 1024  # far beyond any real manifest; refuse to read a runaway object

_NOT_FOUND = {"NoSuchBucket"}
_DENIED = {"AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403",
           "ExpiredToken", "InvalidToken"}


class BackupCatalogError(RuntimeError):
    """Listing, reading or deleting backups failed; the message names the bucket/prefix and what to do."""


@dataclass(frozen=True)
class BackupEntry:
    """One backup prefix as found in S3, complete or not."""

    location: BackupLocation
    manifest: BackupManifest | None
    problem: str | None  # why this is not a complete backup (None when it is)
    objects: int
    size_bytes: int  # all objects under the prefix, manifest included
    last_modified: datetime  # the newest object's LastModified

    @property
    def complete(self) -> bool:
        return self.manifest is not None and self.problem is None

    @property
    def status(self) -> str:
        return "complete" if self.complete else f"incomplete: {self.problem}"


@dataclass
class _Group:
    """The objects seen under one backup prefix while listing."""

    location: BackupLocation
    sizes: dict[str, int] = field(default_factory=dict)
    last_modified: datetime | None = None

    def add(self, key: str, size: int, modified: datetime) -> None:
        self.sizes[key] = size
        if self.last_modified is None or modified > self.last_modified:
            self.last_modified = modified


# -- errors -------------------------------------------------------------------------------------

def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code or (str(status) if status else "")


def _catalog_error(exc: Exception, action: str, bucket: str, prefix: str) -> BackupCatalogError:
    where = f"s3://{bucket}/{prefix}"
    code = _error_code(exc)
    if code in _NOT_FOUND:
        hint = (f"bucket {bucket!r} does not exist: check the bucket name (--bucket / HCP_BACKUP_BUCKET) and that "
                "the AWS endpoint and region point at the account that holds it")
    elif code in _DENIED:
        hint = (f"access denied ({code}): the credentials in use need s3:ListBucket on bucket {bucket!r} and "
                "s3:GetObject/s3:DeleteObject on its objects; check AWS_PROFILE or the role and the bucket policy")
    else:
        hint = f"{exc}; check the AWS endpoint and credentials, then retry"
    return BackupCatalogError(f"{action} {where} failed: {hint}")


def _client_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return ClientError, BotoCoreError


# -- listing ------------------------------------------------------------------------------------

def _list_prefix(prefix: str | None, management_cluster: str | None,
                 hosted_cluster: HostedClusterRef | None) -> str:
    """The narrowest key prefix that holds every backup asked for ('' or ending in '/')."""
    head = normalize_prefix(prefix)
    if management_cluster is not None and hosted_cluster is not None:
        return backups_prefix(head, management_cluster, hosted_cluster)
    if management_cluster is not None:
        validate_management_cluster(management_cluster)
        return "/".join(p for p in (head, management_cluster) if p) + "/"
    return head + "/" if head else ""


def _list_objects(s3: Any, bucket: str, list_prefix: str) -> Iterator[dict[str, Any]]:
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=list_prefix):
            yield from page.get("Contents", [])
    except _client_errors() as exc:
        raise _catalog_error(exc, "listing", bucket, list_prefix) from exc


def _backup_key_prefix(head: str, key: str) -> str | None:
    """The `<head>/<mgmt>/<ns>/<name>/<timestamp>-<op>/` a key sits under, if it has enough segments."""
    base = head + "/" if head else ""
    if not key.startswith(base):
        return None
    segments = key[len(base):].split("/", 4)
    if len(segments) < 5:  # a key directly in a cluster's directory is not inside any backup
        return None
    return base + "/".join(segments[:4]) + "/"


def _group_objects(s3: Any, bucket: str, head: str, list_prefix: str) -> list[_Group]:
    groups: dict[str, _Group | None] = {}  # None: the prefix does not parse as a backup location
    for obj in _list_objects(s3, bucket, list_prefix):
        key_prefix = _backup_key_prefix(head, obj["Key"])
        if key_prefix is None:
            continue
        if key_prefix not in groups:
            groups[key_prefix] = _parse_location(bucket, key_prefix)
        group = groups[key_prefix]
        if group is not None:
            group.add(obj["Key"], int(obj.get("Size", 0)), obj["LastModified"])
    return [g for g in groups.values() if g is not None]


def _parse_location(bucket: str, key_prefix: str) -> _Group | None:
    try:
        return _Group(BackupLocation.from_key_prefix(bucket, key_prefix))
    except InvalidNameError:
        return None  # other data in the bucket, not ours to judge


def _read_manifest(s3: Any, group: _Group) -> tuple[BackupManifest | None, str | None]:
    location = group.location
    key = manifest_key(location)
    if key not in group.sizes:
        return None, "no manifest.json (the run did not finish, or is still writing)"
    if group.sizes[key] > MAX_MANIFEST_BYTES:
        return None, f"manifest.json is {human_size(group.sizes[key])}, too large to be a manifest"
    try:
        body = s3.get_object(Bucket=location.bucket, Key=key)["Body"]
        try:
            data = body.read()
        finally:
            body.close()
    except _client_errors() as exc:
        if _error_code(exc) in ("NoSuchKey", "404"):
            return None, "manifest.json disappeared while listing (being deleted?)"
        raise _catalog_error(exc, "reading the manifest", location.bucket, key) from exc
    try:
        manifest = load(data)
    except ManifestError as exc:
        return None, f"unreadable manifest.json: {exc}"
    return manifest, _manifest_problem(manifest, group)


def _manifest_problem(manifest: BackupManifest, group: _Group) -> str | None:
    try:
        manifest.check_location(group.location)
    except ManifestError as exc:
        return str(exc)
    missing = [k for k in manifest.object_keys if k not in group.sizes]
    if missing:
        return f"objects listed in manifest.json are missing: {', '.join(missing)}"
    return None


def _entry(s3: Any, group: _Group) -> BackupEntry:
    manifest, problem = _read_manifest(s3, group)
    assert group.last_modified is not None  # a group exists because an object was seen
    return BackupEntry(location=group.location, manifest=manifest, problem=problem, objects=len(group.sizes),
                       size_bytes=sum(group.sizes.values()), last_modified=group.last_modified)


def _sort_key(entry: BackupEntry) -> tuple[str, ...]:
    loc = entry.location
    return (loc.bucket, loc.prefix, loc.management_cluster, loc.namespace, loc.name, loc.timestamp,
            loc.operation_id)


def list_backups(s3: Any, bucket: str, prefix: str | None = None, *, management_cluster: str | None = None,
                 hosted_cluster: HostedClusterRef | None = None) -> list[BackupEntry]:
    """Every backup prefix under `s3://bucket/prefix/` (optionally of one management cluster and/or
    hosted cluster), complete or not, sorted per cluster from oldest to newest."""
    validate_bucket(bucket)
    head = normalize_prefix(prefix)
    list_prefix = _list_prefix(head, management_cluster, hosted_cluster)
    entries = []
    for group in _group_objects(s3, bucket, head, list_prefix):
        loc = group.location
        if management_cluster is not None and loc.management_cluster != management_cluster:
            continue
        if hosted_cluster is not None and loc.hosted_cluster != hosted_cluster:
            continue
        entries.append(_entry(s3, group))
    return sorted(entries, key=_sort_key)


# -- deleting -----------------------------------------------------------------------------------

def _keys_under(s3: Any, bucket: str, key_prefix: str) -> list[str]:
    return [obj["Key"] for obj in _list_objects(s3, bucket, key_prefix)]


def _batches(keys: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(keys), size):
        yield keys[start:start + size]


def _delete_batch(s3: Any, bucket: str, keys: list[str]) -> None:
    try:
        response = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
    except _client_errors() as exc:
        raise _catalog_error(exc, "deleting objects under", bucket, keys[0]) from exc
    errors = response.get("Errors", [])
    if errors:
        shown = "; ".join(f"{e.get('Key')}: {e.get('Code')} {e.get('Message', '')}".strip() for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise BackupCatalogError(f"S3 refused to delete {len(errors)} object(s) in s3://{bucket}: {shown}{more}; "
                                 "check s3:DeleteObject permission and object locks, then run the deletion again")


def delete_backup(s3: Any, entry_or_location: BackupEntry | BackupLocation) -> int:
    """Delete every object under the backup's key prefix and return how many were deleted.

    The manifest goes first: if the deletion stops half-way, what remains is an orphan (which
    retention cleans up later), never something that looks like a complete backup."""
    location = entry_or_location.location if isinstance(entry_or_location, BackupEntry) else entry_or_location
    bucket = location.bucket
    keys = _keys_under(s3, bucket, location.key_prefix)
    manifest = manifest_key(location)
    deleted = 0
    if manifest in keys:
        try:
            s3.delete_object(Bucket=bucket, Key=manifest)
        except _client_errors() as exc:
            raise _catalog_error(exc, "deleting the manifest", bucket, manifest) from exc
        deleted += 1
    rest = [k for k in keys if k != manifest]
    for batch in _batches(rest, DELETE_BATCH):
        _delete_batch(s3, bucket, batch)
        deleted += len(batch)
    return deleted


# -- presentation -------------------------------------------------------------------------------

def human_size(size: int) -> str:
    """Bytes in binary units, e.g. '512 B', '1.5 KiB', '10.0 MiB'."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


_COLUMNS = ("CLUSTER", "TAKEN (UTC)", "MODE", "REVISION", "KEYS", "SIZE", "VERIFIED", "STATUS", "LOCATION")


def _row(entry: BackupEntry) -> tuple[str, ...]:
    m = entry.manifest
    return (str(entry.location.hosted_cluster), entry.location.taken_at.strftime("%Y-%m-%d %H:%M:%S"),
            m.mode if m else "-", str(m.revision) if m else "-", str(m.total_keys) if m else "-",
            human_size(entry.size_bytes), m.verification if m else "-", entry.status, entry.location.url)


def format_table(entries: Iterable[BackupEntry]) -> str:
    """A plain text table, one backup per line (for `hcp-runbooks backups list`)."""
    rows = [_COLUMNS] + [_row(e) for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
