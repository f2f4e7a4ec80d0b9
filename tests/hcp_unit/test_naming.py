"""hcp.naming: hosted cluster references, operation ids, timestamps and the S3 backup layout."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from hcp.naming import (
    BackupLocation,
    HostedClusterRef,
    InvalidNameError,
    backups_prefix,
    control_plane_namespace,
    lease_name,
    new_operation_id,
    operation_id_time,
    parse_utc_timestamp,
    utc_timestamp,
    validate_operation_id,
)

WHEN = datetime(2024, 1, 31, 23, 59, 58, tzinfo=timezone.utc)
OP = "op-20240131T235958Z-0a1b2c"


@pytest.mark.parametrize("ref,ns,name", [
    ("clusters/my-cluster", "clusters", "my-cluster"),
    ("c/a.b", "c", "a.b"),
    ("1/2", "1", "2"),
])
def test_valid_refs(ref, ns, name):
    parsed = HostedClusterRef.parse(ref)
    assert (parsed.namespace, parsed.name) == (ns, name)
    assert str(parsed) == ref


@pytest.mark.parametrize("ref,message", [
    ("", "must not be empty"),
    ("my-cluster", "must have the form NAMESPACE/NAME"),
    ("a/b/c", "must have the form NAMESPACE/NAME"),
    ("/b", "must have the form NAMESPACE/NAME"),
    ("Clusters/x", "hosted cluster namespace 'Clusters' is not a valid DNS-1123 label"),
    ("clusters/-x", "hosted cluster name '-x' is not a valid DNS-1123 subdomain"),
    ("clusters/x_y", "hosted cluster name 'x_y' is not a valid DNS-1123 subdomain"),
    ("a.b/x", "hosted cluster namespace 'a.b' is not a valid DNS-1123 label"),
    ("n" * 64 + "/x", "must be no more than 63 characters"),
    ("clusters/" + "x" * 60, "control plane namespace"),
])
def test_invalid_refs(ref, message):
    with pytest.raises(InvalidNameError, match=re.escape(message)):
        HostedClusterRef.parse(ref)


def test_control_plane_namespace_and_lease_name():
    assert control_plane_namespace("clusters", "my.cluster") == "clusters-my-cluster"
    ref = HostedClusterRef("clusters", "hc.example")
    assert ref.control_plane_namespace == "clusters-hc-example"
    assert ref.lease_name == lease_name("hc.example") == "hcp-runbooks-lock-hc.example"


def test_timestamps():
    assert utc_timestamp(WHEN) == "20240131T235958Z"
    plus2 = WHEN.astimezone(timezone(timedelta(hours=2)))
    assert utc_timestamp(plus2) == "20240131T235958Z"
    assert parse_utc_timestamp("20240131T235958Z") == WHEN
    with pytest.raises(InvalidNameError, match="no time zone"):
        utc_timestamp(datetime(2024, 1, 1))
    for bad in ("2024-01-31T23:59:58Z", "20240131T235958", "20241331T000000Z"):
        with pytest.raises(InvalidNameError):
            parse_utc_timestamp(bad)


def test_operation_ids():
    op = new_operation_id(WHEN)
    assert re.fullmatch(r"op-20240131T235958Z-[0-9a-f]{6}", op)
    assert validate_operation_id(op) == op
    assert operation_id_time(op) == WHEN
    assert re.fullmatch(r"op-\d{8}T\d{6}Z-[0-9a-f]{6}", new_operation_id())
    for bad in ("", "op-20240131T235958Z-0A1B2C", "op-20240131T235958Z-0a1b2", "x-20240131T235958Z-0a1b2c",
                "op-20241331T235958Z-0a1b2c"):
        with pytest.raises(InvalidNameError, match="operation id|not a valid date"):
            validate_operation_id(bad)


def test_backup_location_round_trip():
    ref = HostedClusterRef.parse("clusters/hc.one")
    loc = BackupLocation.new("my-bucket", "/backups/etcd/", "mgmt-1", ref, OP, WHEN)
    assert loc.prefix == "backups/etcd"
    assert loc.key_prefix == f"backups/etcd/mgmt-1/clusters/hc.one/20240131T235958Z-{OP}/"
    assert loc.url == f"s3://my-bucket/backups/etcd/mgmt-1/clusters/hc.one/20240131T235958Z-{OP}/"
    assert loc.key("snapshot.db") == loc.key_prefix + "snapshot.db"
    assert BackupLocation.parse(loc.url) == loc
    assert BackupLocation.parse(loc.url.rstrip("/")) == loc
    assert BackupLocation.from_key_prefix("my-bucket", loc.key_prefix) == loc
    assert loc.hosted_cluster == ref and loc.taken_at == WHEN
    assert loc.key_prefix.startswith(backups_prefix("backups/etcd", "mgmt-1", ref))

    bare = BackupLocation.new("my-bucket", "", "mgmt-1", ref, OP, WHEN)
    assert bare.url == f"s3://my-bucket/mgmt-1/clusters/hc.one/20240131T235958Z-{OP}/"
    assert BackupLocation.parse(bare.url) == bare
    assert backups_prefix(None, "mgmt-1", ref) == "mgmt-1/clusters/hc.one/"


@pytest.mark.parametrize("url,message", [
    ("http://b/m/ns/n/20240131T235958Z-" + OP, "must start with s3://"),
    ("s3://b/m/ns/n/20240131T235958Z-" + OP, "S3 bucket name 'b'"),
    ("s3://bucket/ns/n/20240131T235958Z-" + OP, "must end in"),
    ("s3://bucket/m/ns/n/20240131T235958Z", "<UTC timestamp>-<operation id>"),
    ("s3://bucket/m/ns/n/20240131-" + OP, "timestamp '20240131'"),
    ("s3://bucket/m/ns/n/20240131T235958Z-op-1", "operation id 'op-1'"),
    ("s3://bucket/m/NS/n/20240131T235958Z-" + OP, "hosted cluster namespace 'NS'"),
    ("s3://bucket/M_1/ns/n/20240131T235958Z-" + OP, "management cluster name 'M_1'"),
    ("s3://bucket/a//m/ns/n/20240131T235958Z-" + OP, "empty, '.' or '..'"),
])
def test_backup_location_parse_errors(url, message):
    with pytest.raises(InvalidNameError, match=re.escape(message)):
        BackupLocation.parse(url)


def test_backup_object_names_stay_inside():
    loc = BackupLocation.new("my-bucket", "", "m", HostedClusterRef("ns", "n"), OP, WHEN)
    for bad in ("", "/abs", "../x", "a//b"):
        with pytest.raises(InvalidNameError):
            loc.key(bad)
