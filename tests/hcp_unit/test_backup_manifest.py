"""hcp.backup_manifest: the commit-point manifest of a backup."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from hcp.backup_manifest import (
    MANIFEST_FILENAME,
    BackupManifest,
    ManifestError,
    Timings,
    build,
    dump,
    load,
    manifest_key,
)
from hcp.naming import BackupLocation, HostedClusterRef

T = datetime(2024, 1, 31, 23, 59, 58, 250000, tzinfo=timezone.utc)
OP = "op-20240131T235958Z-0a1b2c"
LOC = BackupLocation.new("bucket-1", "etcd", "mgmt-1", HostedClusterRef("clusters", "hc1"), OP, T)


def fields(**over):
    base = dict(
        uid="5f0c7a3e-1111-2222-3333-444455556666",
        release_image="quay.io/openshift-release-dev/ocp-release:4.15.0-x86_64",
        release_version="4.15.0",
        member="etcd-0",
        revision=12345,
        hash=987654321,
        total_keys=2048,
        size_bytes=10_485_760,
        sha256="a" * 64,
        snapshot_key=LOC.key("snapshot.db"),
        object_keys=[LOC.key("snapshot.db"), LOC.key("encryption-key.json")],
        encryption_key_object=LOC.key("encryption-key.json"),
        mode="quiesced",
        timings=Timings(started_at=T, snapshot_started_at=T + timedelta(seconds=5),
                        snapshot_finished_at=T + timedelta(seconds=8), upload_finished_at=T + timedelta(seconds=12),
                        finished_at=T + timedelta(seconds=20), steps_seconds={"quiesce": 4.5, "snapshot": 3.0}),
        downtime_seconds=14.5,
        tool_versions={"etcdctl": "3.5.12", "hcp-runbooks": "0.1.0"},
    )
    base.update(over)
    return base


def test_round_trip():
    manifest = build(LOC, **fields())
    assert manifest.schema_version == "1"
    data = dump(manifest)
    raw = json.loads(data)
    assert raw["schema_version"] == "1" and raw["management_cluster"] == "mgmt-1" and raw["operation_id"] == OP
    assert raw["timings"]["started_at"] == "2024-01-31T23:59:58.250000Z"
    again = load(data)
    assert again == manifest
    assert load(manifest.model_dump_json()) == manifest
    again.check_location(LOC)
    assert manifest_key(LOC) == LOC.key_prefix + MANIFEST_FILENAME == "etcd/mgmt-1/clusters/hc1/" \
        f"20240131T235958Z-{OP}/manifest.json"


def test_online_without_encryption_key():
    manifest = build(LOC, **fields(mode="online", downtime_seconds=0.0, encryption_key_object=None,
                                   object_keys=[LOC.key("snapshot.db")]))
    assert load(dump(manifest)).encryption_key_object is None
    with pytest.raises(ManifestError, match="online backup has no downtime"):
        build(LOC, **fields(mode="online"))


def test_schema_version_check():
    raw = json.loads(dump(build(LOC, **fields())))
    raw["schema_version"] = "2"
    with pytest.raises(ManifestError, match="schema_version '2' is not supported"):
        load(json.dumps(raw).encode())
    raw["schema_version"] = 1
    with pytest.raises(ManifestError, match="schema_version 1 is not supported"):
        load(json.dumps(raw))
    del raw["schema_version"]
    with pytest.raises(ManifestError, match="no schema_version"):
        load(json.dumps(raw))


@pytest.mark.parametrize("missing", ["uid", "sha256", "revision", "mode", "timings", "encryption_key_object",
                                     "tool_versions", "management_cluster"])
def test_missing_field(missing):
    raw = json.loads(dump(build(LOC, **fields())))
    del raw[missing]
    with pytest.raises(ManifestError, match=rf"{missing}: Field required"):
        load(json.dumps(raw).encode())


@pytest.mark.parametrize("field,value,message", [
    ("revision", "12345", "revision: Input should be a valid integer"),   # strict: no str -> int coercion
    ("revision", -1, "revision: Input should be greater than or equal to 0"),
    ("sha256", "ABC", "sha256: String should match pattern"),
    ("mode", "hot", "mode: Input should be 'online' or 'quiesced'"),
    ("unexpected", 1, "unexpected: Extra inputs are not permitted"),
    ("operation_id", "op-1", "operation id 'op-1' must have the form"),
    ("snapshot_key", "elsewhere/snapshot.db", "snapshot_key 'elsewhere/snapshot.db' must be one of object_keys"),
])
def test_invalid_fields(field, value, message):
    raw = json.loads(dump(build(LOC, **fields())))
    raw[field] = value
    with pytest.raises(ManifestError, match=message):
        load(json.dumps(raw))


def test_timings_must_be_ordered_and_aware():
    raw = json.loads(dump(build(LOC, **fields())))
    raw["timings"]["finished_at"] = "2024-01-01T00:00:00Z"
    with pytest.raises(ManifestError, match="timings must be in order"):
        load(json.dumps(raw))
    raw = json.loads(dump(build(LOC, **fields())))
    raw["timings"]["started_at"] = "2024-01-31T23:59:58"
    with pytest.raises(ManifestError, match="timings.started_at: Input should have timezone info"):
        load(json.dumps(raw))


def test_not_json():
    for data in (b"", b"{", b"[]", b"\xff"):
        with pytest.raises(ManifestError):
            load(data)


def test_location_mismatch():
    other = BackupLocation.new("bucket-1", "etcd", "mgmt-1", HostedClusterRef("clusters", "hc2"), OP, T)
    manifest = build(LOC, **fields())
    with pytest.raises(ManifestError, match="name is 'hc1', the location says 'hc2'"):
        manifest.check_location(other)
    with pytest.raises(ManifestError, match="object keys outside"):
        build(LOC, **fields(snapshot_key="x/snapshot.db", object_keys=["x/snapshot.db"], encryption_key_object=None))
    with pytest.raises(ManifestError, match="must not list the manifest"):
        build(LOC, **fields(object_keys=[LOC.key("snapshot.db"), LOC.key("encryption-key.json"),
                                         manifest_key(LOC)]))


def test_frozen():
    manifest = build(LOC, **fields())
    with pytest.raises(Exception):
        manifest.revision = 1  # type: ignore[misc]
    assert isinstance(manifest, BackupManifest)
