"""Names the runbooks depend on: hosted cluster references, operation ids, the control-plane
namespace rule, UTC timestamps and the S3 backup layout.

Everything here is pure and validates eagerly, so that a bad argument fails with a clear message
before any runbook changes anything.

Backup layout::

    s3://BUCKET/PREFIX/<mgmt>/<namespace>/<name>/<UTC timestamp>-<operation id>/

PREFIX may be empty or span several path segments.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = [
    "InvalidNameError",
    "HostedClusterRef",
    "BackupLocation",
    "validate_dns1123_label",
    "validate_dns1123_subdomain",
    "validate_management_cluster",
    "validate_bucket",
    "normalize_prefix",
    "control_plane_namespace",
    "lease_name",
    "new_operation_id",
    "validate_operation_id",
    "operation_id_time",
    "utc_timestamp",
    "parse_utc_timestamp",
    "backups_prefix",
]


class InvalidNameError(ValueError):
    """A name, reference, id or location that does not follow the rules; the message says why."""


_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253

LEASE_NAME_PREFIX = "hcp-runbooks-lock-"

TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_TIMESTAMP = re.compile(r"^\d{8}T\d{6}Z$")
_OPERATION_ID = re.compile(r"^op-(\d{8}T\d{6}Z)-([0-9a-f]{6})$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def validate_dns1123_label(value: str, what: str = "name") -> str:
    if not isinstance(value, str) or not value:
        raise InvalidNameError(f"{what} must not be empty")
    if len(value) > DNS1123_LABEL_MAX:
        raise InvalidNameError(f"{what} {value!r} is {len(value)} characters long; it must be no more than "
                               f"{DNS1123_LABEL_MAX} characters (a DNS-1123 label)")
    if not _DNS1123_LABEL.match(value):
        raise InvalidNameError(f"{what} {value!r} is not a valid DNS-1123 label: it must consist of lower case "
                               "alphanumeric characters or '-', and must start and end with an alphanumeric "
                               "character (e.g. 'my-name' or '123-abc')")
    return value


def validate_dns1123_subdomain(value: str, what: str = "name") -> str:
    if not isinstance(value, str) or not value:
        raise InvalidNameError(f"{what} must not be empty")
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        raise InvalidNameError(f"{what} {value!r} is {len(value)} characters long; it must be no more than "
                               f"{DNS1123_SUBDOMAIN_MAX} characters (a DNS-1123 subdomain)")
    if not _DNS1123_SUBDOMAIN.match(value):
        raise InvalidNameError(f"{what} {value!r} is not a valid DNS-1123 subdomain: it must consist of lower case "
                               "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                               "character (e.g. 'example.com')")
    return value


def validate_management_cluster(value: str) -> str:
    """Management cluster names are path segments of the backup layout and kubeconfig context names;
    we hold them to the DNS-1123 subdomain rule so that they are unambiguous in both."""
    return validate_dns1123_subdomain(value, "management cluster name")


def control_plane_namespace(namespace: str, name: str) -> str:
    """The hosted control plane namespace HyperShift uses: `<namespace>-<name>` with dots in the name
    replaced by dashes (manifests.HostedControlPlaneNamespace)."""
    result = f"{namespace}-{name.replace('.', '-')}"
    if len(result) > DNS1123_LABEL_MAX:
        raise InvalidNameError(f"hosted cluster {namespace}/{name}: its control plane namespace {result!r} would be "
                               f"{len(result)} characters long; it must be no more than {DNS1123_LABEL_MAX}")
    return result


def lease_name(hosted_cluster_name: str) -> str:
    """The name of the Lease that serialises runbooks on one hosted cluster."""
    result = LEASE_NAME_PREFIX + hosted_cluster_name
    if len(result) > DNS1123_SUBDOMAIN_MAX:
        raise InvalidNameError(f"lease name {result!r} is too long ({len(result)} > {DNS1123_SUBDOMAIN_MAX})")
    return result


@dataclass(frozen=True)
class HostedClusterRef:
    """A hosted cluster, `NAMESPACE/NAME`, validated on construction."""

    namespace: str
    name: str

    def __post_init__(self) -> None:
        validate_dns1123_label(self.namespace, "hosted cluster namespace")
        validate_dns1123_subdomain(self.name, "hosted cluster name")
        control_plane_namespace(self.namespace, self.name)  # raises when too long

    @classmethod
    def parse(cls, ref: str) -> HostedClusterRef:
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidNameError("hosted cluster reference must not be empty; expected NAMESPACE/NAME")
        parts = ref.split("/")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise InvalidNameError(f"hosted cluster reference {ref!r} must have the form NAMESPACE/NAME "
                                   "(e.g. 'clusters/my-cluster')")
        return cls(parts[0], parts[1])

    @property
    def control_plane_namespace(self) -> str:
        return control_plane_namespace(self.namespace, self.name)

    @property
    def lease_name(self) -> str:
        return lease_name(self.name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


# -- time and operation ids -----------------------------------------------------------------------

def _as_utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise InvalidNameError(f"timestamp {when!r} has no time zone; use an aware datetime (UTC)")
    return when.astimezone(timezone.utc)


def utc_timestamp(when: datetime | None = None) -> str:
    """`yyyymmddThhmmssZ` in UTC (now when `when` is None)."""
    when = datetime.now(timezone.utc) if when is None else _as_utc(when)
    return when.strftime(TIMESTAMP_FORMAT)


def parse_utc_timestamp(value: str) -> datetime:
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        raise InvalidNameError(f"timestamp {value!r} must have the form yyyymmddThhmmssZ (UTC), e.g. 20240131T235959Z")
    try:
        return datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError as exc:
        raise InvalidNameError(f"timestamp {value!r} is not a valid date and time: {exc}") from None


def new_operation_id(when: datetime | None = None) -> str:
    """`op-<yyyymmddThhmmssZ>-<6 hex>`: sortable by start time, unique enough to hold a lock."""
    return f"op-{utc_timestamp(when)}-{secrets.token_hex(3)}"


def validate_operation_id(value: str) -> str:
    if not isinstance(value, str) or not _OPERATION_ID.match(value):
        raise InvalidNameError(f"operation id {value!r} must have the form op-<yyyymmddThhmmssZ>-<6 lower-case hex>, "
                               "e.g. op-20240131T235959Z-0a1b2c")
    parse_utc_timestamp(value[3:19])
    return value


def operation_id_time(value: str) -> datetime:
    """When the operation started, from its id."""
    validate_operation_id(value)
    return parse_utc_timestamp(value[3:19])


# -- S3 layout ----------------------------------------------------------------------------------

def validate_bucket(bucket: str) -> str:
    if not isinstance(bucket, str) or not _BUCKET.match(bucket) or ".." in bucket:
        raise InvalidNameError(f"S3 bucket name {bucket!r} is not valid: 3-63 characters of lower case letters, "
                               "digits, '.' and '-', starting and ending with a letter or digit")
    return bucket


def normalize_prefix(prefix: str | None) -> str:
    """`PREFIX` without leading/trailing slashes ('' for none); rejects empty, '.' and '..' segments."""
    if prefix is None:
        return ""
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    for segment in stripped.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidNameError(f"S3 prefix {prefix!r} has an empty, '.' or '..' path segment")
    return stripped


def backups_prefix(prefix: str | None, management_cluster: str, hosted_cluster: HostedClusterRef) -> str:
    """The key prefix (ending in '/') under which all backups of one hosted cluster live."""
    validate_management_cluster(management_cluster)
    head = normalize_prefix(prefix)
    parts = [p for p in (head, management_cluster, hosted_cluster.namespace, hosted_cluster.name) if p]
    return "/".join(parts) + "/"


@dataclass(frozen=True)
class BackupLocation:
    """One backup's place in S3: `s3://bucket/prefix/<mgmt>/<namespace>/<name>/<timestamp>-<operation id>/`."""

    bucket: str
    prefix: str
    management_cluster: str
    namespace: str
    name: str
    timestamp: str
    operation_id: str

    def __post_init__(self) -> None:
        validate_bucket(self.bucket)
        object.__setattr__(self, "prefix", normalize_prefix(self.prefix))
        validate_management_cluster(self.management_cluster)
        HostedClusterRef(self.namespace, self.name)
        parse_utc_timestamp(self.timestamp)
        validate_operation_id(self.operation_id)

    @classmethod
    def new(cls, bucket: str, prefix: str | None, management_cluster: str, hosted_cluster: HostedClusterRef,
            operation_id: str, when: datetime | None = None) -> BackupLocation:
        return cls(bucket, prefix or "", management_cluster, hosted_cluster.namespace, hosted_cluster.name,
                   utc_timestamp(when), operation_id)

    @property
    def hosted_cluster(self) -> HostedClusterRef:
        return HostedClusterRef(self.namespace, self.name)

    @property
    def taken_at(self) -> datetime:
        return parse_utc_timestamp(self.timestamp)

    @property
    def key_prefix(self) -> str:
        """The key prefix of this backup inside the bucket, ending in '/'."""
        return (backups_prefix(self.prefix, self.management_cluster, self.hosted_cluster)
                + f"{self.timestamp}-{self.operation_id}/")

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key_prefix}"

    def key(self, filename: str) -> str:
        """The object key of a file of this backup."""
        if not filename or filename.startswith("/") or any(s in ("", ".", "..") for s in filename.split("/")):
            raise InvalidNameError(f"backup object name {filename!r} must be a relative path without empty, '.' or "
                                   "'..' segments")
        return self.key_prefix + filename

    @classmethod
    def from_key_prefix(cls, bucket: str, key_prefix: str) -> BackupLocation:
        """Parse a backup's key prefix (with or without its trailing '/'); not a key of a file in it."""
        stripped = key_prefix.strip("/")
        segments = stripped.split("/") if stripped else []
        if any(s in ("", ".", "..") for s in segments):
            raise InvalidNameError(f"backup key prefix {key_prefix!r} has an empty, '.' or '..' path segment")
        if len(segments) < 4:
            raise InvalidNameError(f"backup key prefix {key_prefix!r} must end in "
                                   "<mgmt>/<namespace>/<name>/<UTC timestamp>-<operation id>")
        *head, mgmt, namespace, name, last = segments
        timestamp, sep, operation_id = last.partition("-")
        if not sep:
            raise InvalidNameError(f"backup directory {last!r} must have the form <UTC timestamp>-<operation id>, "
                                   "e.g. 20240131T235959Z-op-20240131T235959Z-0a1b2c")
        return cls(bucket, "/".join(head), mgmt, namespace, name, timestamp, operation_id)

    @classmethod
    def parse(cls, url: str) -> BackupLocation:
        """Parse `s3://bucket/prefix/<mgmt>/<namespace>/<name>/<timestamp>-<operation id>/`."""
        if not isinstance(url, str) or not url.startswith("s3://"):
            raise InvalidNameError(f"backup location {url!r} must start with s3://")
        bucket, _, rest = url[len("s3://"):].partition("/")
        return cls.from_key_prefix(bucket, rest)

    def __str__(self) -> str:
        return self.url
