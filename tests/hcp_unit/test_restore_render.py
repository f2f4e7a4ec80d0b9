"""hcp.restore_render: the objects a restore creates, the presigned URL, and the refusals."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest

from hcp import restore_render as rr
from hcp.cluster_objects import HostedClusterObjects
from hcp.naming import HostedClusterRef

OP = "op-20260101T000000Z-0a1b2c"
OTHER_OP = "op-20260101T000000Z-ffffff"


def _hc(**spec: Any) -> dict[str, Any]:
    base = {"release": {"image": "img"}, "clusterID": "cid", "infraID": "prod-x1",
            "pullSecret": {"name": "prod-pull-secret"}, "sshKey": {"name": "prod-ssh-key"},
            "secretEncryption": {"type": "aescbc", "aescbc": {"activeKey": {"name": "prod-etcd-encryption-key"}}},
            "etcd": {"managementType": "Managed", "managed": {"storage": {"type": "PersistentVolume"}}}}
    base.update(spec)
    return {"apiVersion": "hypershift.openshift.io/v1beta1", "kind": "HostedCluster",
            "metadata": {"name": "prod", "namespace": "clusters"}, "spec": base}


def _np(name: str = "prod") -> dict[str, Any]:
    return {"apiVersion": "hypershift.openshift.io/v1beta1", "kind": "NodePool",
            "metadata": {"name": name, "namespace": "clusters"}, "spec": {"clusterName": "prod", "replicas": 2}}


def _render(hc: dict[str, Any] | None = None, target: str = "clusters/prod", pools: list[dict] | None = None) -> rr.Rendered:
    objects = HostedClusterObjects(hc or _hc(), [_np()] if pools is None else pools)
    return rr.render(objects, HostedClusterRef.parse(target), operation_id=OP, backup_url="s3://b/p/", snapshot_revision=7)


def test_render_labels_the_objects_and_drops_the_pause_and_any_old_url() -> None:
    storage = {"type": "PersistentVolume", "restoreSnapshotURL": ["https://old.example/expired"]}
    rendered = _render(_hc(pausedUntil="true", etcd={"managementType": "Managed", "managed": {"storage": storage}}))
    hc = rendered.hosted_cluster
    assert hc["metadata"]["labels"] == {rr.LABEL_OPERATION: OP}
    assert hc["metadata"]["annotations"] == {rr.ANN_RESTORED_FROM: "s3://b/p/", rr.ANN_SNAPSHOT_REVISION: "7"}
    assert "pausedUntil" not in hc["spec"] and rr.snapshot_urls(hc) == []
    assert any("pausedUntil" in n for n in rendered.notes) and any("replaced" in n for n in rendered.notes)
    assert rendered.node_pools[0]["metadata"]["labels"] == {rr.LABEL_OPERATION: OP}
    assert storage["restoreSnapshotURL"] == ["https://old.example/expired"]  # the input is untouched


def test_exactly_one_restore_url_whatever_was_there() -> None:
    hc = _render().hosted_cluster
    once = rr.with_snapshot_url(hc, "https://s3.example/b/k?X-Amz-Signature=1")
    twice = rr.with_snapshot_url(once, "https://s3.example/b/k?X-Amz-Signature=2")
    assert rr.snapshot_urls(once) == ["https://s3.example/b/k?X-Amz-Signature=1"]
    assert rr.snapshot_urls(twice) == ["https://s3.example/b/k?X-Amz-Signature=2"]
    assert rr.snapshot_urls(hc) == []
    with pytest.raises(rr.RestoreRenderError, match="https or s3"):
        rr.with_snapshot_url(hc, "http://plain.example/k")


def test_an_unmanaged_etcd_is_refused() -> None:
    with pytest.raises(rr.RestoreRenderError, match="not Managed"):
        _render(_hc(etcd={"managementType": "Unmanaged", "unmanaged": {"endpoint": "https://e:2379"}}))


def test_a_new_name_renames_the_nodepools_after_it() -> None:
    rendered = _render(target="other/copy", pools=[_np("prod"), _np("prod-infra"), _np("workers")])
    assert rendered.ref == HostedClusterRef("other", "copy")
    assert [(p["metadata"]["namespace"], p["metadata"]["name"], p["spec"]["clusterName"]) for p in rendered.node_pools] \
        == [("other", "copy", "copy"), ("other", "copy-infra", "copy"), ("other", "copy-workers", "copy")]


def test_presigned_urls_are_bounded_redacted_and_their_expiry_is_read() -> None:
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="secret",
                      endpoint_url="https://s3.example.com")
    before = datetime.now(timezone.utc).replace(microsecond=0)
    url = rr.presign_snapshot(s3, "bucket", "p/etcd-snapshot.db", 3600)
    expires = rr.presigned_expiry(url)
    assert expires is not None and 3599 <= (expires - before).total_seconds() <= 3602
    assert rr.redact_url(url) == "https://s3.example.com/bucket/p/etcd-snapshot.db?<signature>"
    assert rr.presigned_expiry("https://b.s3.amazonaws.com/k?Expires=1700000000&Signature=x") == \
        datetime.fromtimestamp(1700000000, tz=timezone.utc)
    assert rr.presigned_expiry("https://example.com/k") is None
    for bad in (59, 7 * 24 * 3600 + 1):
        with pytest.raises(rr.RestoreRenderError, match="outside"):
            rr.presign_snapshot(s3, "bucket", "k", bad)


def _state(**kw: Any) -> rr.TargetState:
    secrets = {"prod-pull-secret": rr.SecretState(exists=True), "prod-ssh-key": rr.SecretState(exists=True)}
    secrets.update(kw.pop("secrets", {}))
    return rr.TargetState(namespace_exists=kw.pop("namespace_exists", True), secrets=secrets, **kw)


KEY = rr.data_digest({"key": "a2V5"})


def _refusals(state: rr.TargetState, digest: str | None = KEY, rendered: rr.Rendered | None = None) -> list[str]:
    return rr.refusals(rendered or _render(), state, operation_id=OP, backup_key_digest=digest, management_cluster="m1")


def test_a_free_target_is_accepted_and_the_key_is_created_or_reused() -> None:
    assert _refusals(_state()) == []
    assert rr.decide_key(_render(), _state(), KEY) == "create"
    same = _state(secrets={"prod-etcd-encryption-key": rr.SecretState(exists=True, digest=KEY)})
    assert _refusals(same) == [] and rr.decide_key(_render(), same, KEY) == "reuse"
    plain = _render(_hc(secretEncryption=None))
    assert rr.decide_key(plain, _state(), None) == "none" and _refusals(_state(), None, plain) == []


@pytest.mark.parametrize("state, digest, problem", [
    (_state(namespace_exists=False), KEY, "namespace clusters does not exist"),
    (_state(hosted_cluster={"metadata": {"name": "prod", "labels": {}}}), KEY, "already exists"),
    (_state(hosted_cluster={"metadata": {"name": "prod", "labels": {rr.LABEL_OPERATION: OTHER_OP}}}), KEY,
     "already exists"),
    (_state(node_pools={"prod": None}), KEY, "NodePool clusters/prod already exists"),
    (_state(identities={"clusters/old": ("cid", "other")}), KEY, "same clusterID cid"),
    (_state(identities={"elsewhere/x": ("other", "prod-x1")}), KEY, "same infraID prod-x1"),
    (_state(secrets={"prod-etcd-encryption-key": rr.SecretState(exists=True, digest="different")}), KEY,
     "holds another AES key"),
    (_state(), None, "the backup holds no copy of the encryption key"),
    (_state(secrets={"prod-pull-secret": rr.SecretState(exists=False)}), KEY, "prod-pull-secret (pull secret"),
])
def test_refusals_name_the_problem_and_what_to_do(state: rr.TargetState, digest: str | None, problem: str) -> None:
    found = _refusals(state, digest)
    assert len(found) == 1 and problem in found[0], found


def test_this_operations_own_objects_are_not_refused() -> None:
    mine = {"metadata": {"name": "prod", "labels": {rr.LABEL_OPERATION: OP}}}
    state = _state(hosted_cluster=mine, node_pools={"prod": OP}, identities={"clusters/prod": ("cid", "prod-x1")},
                   secrets={"prod-etcd-encryption-key": rr.SecretState(exists=True, digest=KEY, created_by=OP)})
    assert _refusals(state) == []


def test_a_backup_key_secret_must_exist_already() -> None:
    hc = _hc()
    hc["spec"]["secretEncryption"]["aescbc"]["backupKey"] = {"name": "prod-old-key"}
    found = _refusals(_state(), KEY, _render(copy.deepcopy(hc)))
    assert len(found) == 1 and "prod-old-key" in found[0] and "previous key" in found[0]


def test_the_key_secret_carries_the_backups_data_and_our_label() -> None:
    doc = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "x", "namespace": "y"},
           "data": {"key": "a2V5"}}
    secret = rr.key_secret(doc, "prod-etcd-encryption-key", "dr", OP)
    assert secret["metadata"] == {"name": "prod-etcd-encryption-key", "namespace": "dr",
                                  "labels": {rr.LABEL_OPERATION: OP}}
    assert secret["data"] == {"key": "a2V5"} and rr.data_digest(secret["data"]) == KEY
    with pytest.raises(rr.RestoreRenderError):
        rr.key_secret({"kind": "Secret", "data": {}}, "n", "ns", OP)
