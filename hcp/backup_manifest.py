"""The backup manifest: the JSON object written LAST into a backup's prefix, as its commit point.

A prefix without a manifest is not a backup. The schema is versioned (`schema_version`); this
module reads and writes version "1" only and refuses anything else with a clear `ManifestError`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from hcp.naming import BackupLocation, InvalidNameError, validate_operation_id

__all__ = [
    "SCHEMA_VERSION",
    "MANIFEST_FILENAME",
    "ManifestError",
    "Timings",
    "BackupManifest",
    "load",
    "dump",
    "manifest_key",
    "build",
]

SCHEMA_VERSION = "1"
MANIFEST_FILENAME = "manifest.json"


class ManifestError(ValueError):
    """A manifest that cannot be parsed, has another schema version, or fails validation."""


NonEmpty = Annotated[str, StringConstraints(min_length=1)]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
NonNegInt = Annotated[int, Field(ge=0)]
NonNegFloat = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Timings(_Strict):
    """When the backup ran (timezone-aware, UTC when written by us) and how long its steps took."""

    started_at: AwareDatetime
    snapshot_started_at: AwareDatetime
    snapshot_finished_at: AwareDatetime
    upload_finished_at: AwareDatetime
    finished_at: AwareDatetime
    # free-form per-step durations, e.g. {"quiesce": 12.5, "snapshot": 3.1, "upload": 8.0}
    steps_seconds: dict[str, NonNegFloat] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ordered(self) -> Timings:
        order = [self.started_at, self.snapshot_started_at, self.snapshot_finished_at, self.upload_finished_at,
                 self.finished_at]
        if any(a > b for a, b in zip(order, order[1:])):
            raise ValueError("timings must be in order: started_at <= snapshot_started_at <= snapshot_finished_at "
                             "<= upload_finished_at <= finished_at")
        return self


class BackupManifest(_Strict):
    schema_version: Literal["1"] = SCHEMA_VERSION
    operation_id: NonEmpty

    # what was backed up
    management_cluster: NonEmpty
    namespace: NonEmpty
    name: NonEmpty
    uid: NonEmpty
    release_image: NonEmpty
    release_version: NonEmpty

    # the etcd snapshot
    member: NonEmpty  # the etcd member (pod) the snapshot was taken from
    revision: NonNegInt
    hash: NonNegInt
    total_keys: NonNegInt
    size_bytes: NonNegInt
    sha256: Sha256Hex

    # where its parts are (full object keys in the bucket, all under the backup's prefix)
    snapshot_key: NonEmpty
    object_keys: list[NonEmpty] = Field(min_length=1)
    encryption_key_object: NonEmpty | None  # required; None when the hosted cluster has no secret encryption key
    # the HostedCluster and its NodePools, cleaned for re-creation (hcp.cluster_objects); optional:
    # backups written before it existed have none
    cluster_objects_key: NonEmpty | None = None
    # dr-migrate: every object the move restores (hcp.migration_objects) and each member's own
    # snapshot (member -> key; snapshot_key is the one restored); optional, absent in plain backups
    migration_objects_key: NonEmpty | None = None
    member_snapshot_keys: dict[NonEmpty, NonEmpty] = Field(default_factory=dict)

    # how the backup was checked before the manifest was written: "sha256" (the object's SHA-256
    # equals the one computed in the pod) or "full" (also restored and started; keys counted)
    verification: Literal["sha256", "full"] = "sha256"
    verified_total_keys: NonNegInt | None = None

    mode: Literal["online", "quiesced"]
    timings: Timings
    downtime_seconds: NonNegFloat
    tool_versions: dict[NonEmpty, NonEmpty]

    @model_validator(mode="after")
    def _consistent(self) -> BackupManifest:
        try:
            validate_operation_id(self.operation_id)
        except InvalidNameError as exc:
            raise ValueError(str(exc)) from None
        if self.snapshot_key not in self.object_keys:
            raise ValueError(f"snapshot_key {self.snapshot_key!r} must be one of object_keys")
        if self.encryption_key_object is not None and self.encryption_key_object not in self.object_keys:
            raise ValueError(f"encryption_key_object {self.encryption_key_object!r} must be one of object_keys")
        if self.cluster_objects_key is not None and self.cluster_objects_key not in self.object_keys:
            raise ValueError(f"cluster_objects_key {self.cluster_objects_key!r} must be one of object_keys")
        if self.migration_objects_key is not None and self.migration_objects_key not in self.object_keys:
            raise ValueError(f"migration_objects_key {self.migration_objects_key!r} must be one of object_keys")
        strays = [k for k in self.member_snapshot_keys.values() if k not in self.object_keys]
        if strays:
            raise ValueError(f"member_snapshot_keys {strays} must be among object_keys")
        if len(set(self.object_keys)) != len(self.object_keys):
            raise ValueError("object_keys must not repeat")
        if (self.verification == "full") != (self.verified_total_keys is not None):
            raise ValueError("verified_total_keys is set exactly when verification is 'full'")
        if self.mode == "online" and self.downtime_seconds != 0:
            raise ValueError("an online backup has no downtime: downtime_seconds must be 0")
        return self

    def check_location(self, location: BackupLocation) -> None:
        """Raise ManifestError unless this manifest describes the backup at `location`."""
        problems = []
        for field, expected in (("management_cluster", location.management_cluster),
                                ("namespace", location.namespace), ("name", location.name),
                                ("operation_id", location.operation_id)):
            if getattr(self, field) != expected:
                problems.append(f"{field} is {getattr(self, field)!r}, the location says {expected!r}")
        outside = [k for k in self.object_keys if not k.startswith(location.key_prefix)]
        if outside:
            problems.append(f"object keys outside {location.key_prefix!r}: {outside}")
        if manifest_key(location) in self.object_keys:
            problems.append("object_keys must not list the manifest itself")
        if problems:
            raise ManifestError(f"manifest does not match {location.url}: " + "; ".join(problems))

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()


def dump(manifest: BackupManifest) -> bytes:
    return manifest.to_json()


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(manifest)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def load(data: bytes | str) -> BackupManifest:
    """Parse and validate a manifest; ManifestError says what is wrong."""
    try:
        raw: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"manifest must be a JSON object, not {type(raw).__name__}")
    if "schema_version" not in raw:
        raise ManifestError("manifest has no schema_version")
    version = raw["schema_version"]
    if version != SCHEMA_VERSION:
        raise ManifestError(f"manifest schema_version {version!r} is not supported (this version reads "
                            f"{SCHEMA_VERSION!r})")
    try:
        return BackupManifest.model_validate_json(data)
    except ValidationError as exc:
        raise ManifestError(f"invalid manifest: {_describe(exc)}") from None


def manifest_key(location: BackupLocation) -> str:
    """The object key of a backup's manifest (its commit point)."""
    return location.key(MANIFEST_FILENAME)


def build(location: BackupLocation, **fields: Any) -> BackupManifest:
    """A manifest for the backup at `location` (identity fields from the location), checked against it."""
    try:
        manifest = BackupManifest(management_cluster=location.management_cluster, namespace=location.namespace,
                                  name=location.name, operation_id=location.operation_id, **fields)
    except ValidationError as exc:
        raise ManifestError(f"invalid manifest: {_describe(exc)}") from None
    manifest.check_location(location)
    return manifest

