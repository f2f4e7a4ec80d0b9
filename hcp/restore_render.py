"""A new hosted cluster from a backup: the objects to create, the presigned snapshot URL, the
encryption key, and the checks that refuse a restore before anything is created.

HyperShift restores a managed etcd only when a HostedCluster is created: `spec.etcd.managed.
storage.restoreSnapshotURL` holds at most one URL (CEL `self.size() <= 1`), is immutable, and each
member's etcd-init container downloads it (curl, no credentials: a presigned URL) and restores it
when its volume is empty (docs/content/how-to/aws/etc-backup-restore.md, "Restoring an etcd
snapshot"; api/hypershift/v1beta1 ManagedEtcdStorageSpec). The secret behind
`spec.secretEncryption.aescbc.activeKey` must hold the same AES key as when the snapshot was taken,
or the API servers cannot read the secrets in it (same document). `aws s3 presign` signs for one
hour by default and SigV4 allows at most seven days.

Everything here is plain: the task layer reads the target cluster (`TargetState`) and S3, and this
module decides.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

from pydantic import BaseModel, Field

from hcp.cluster_objects import HostedClusterObjects, clean_for_recreate, describe
from hcp.naming import HostedClusterRef, validate_dns1123_subdomain

__all__ = [
    "PRESIGN_MIN_SECONDS", "PRESIGN_MAX_SECONDS", "PRESIGN_DEFAULT_SECONDS", "LABEL_OPERATION", "ANN_RESTORED_FROM",
    "ANN_SNAPSHOT_REVISION", "RestoreRenderError", "Rendered", "SecretState", "TargetState", "KeyDecision",
    "render", "with_snapshot_url", "snapshot_urls", "presign_snapshot", "redact_url", "presigned_expiry",
    "referenced_secrets", "encryption_key_name", "data_digest", "key_secret", "decide_key", "refusals",
    "created_by", "rename_pool",
]

PRESIGN_MIN_SECONDS = 60
PRESIGN_MAX_SECONDS = 7 * 24 * 3600  # SigV4's limit for a presigned URL
PRESIGN_DEFAULT_SECONDS = 3600  # what `aws s3 presign` gives

LABEL_OPERATION = "hcp-runbooks/operation-id"  # the undo journal's label: one label finds an operation's objects
ANN_RESTORED_FROM = "hcp-runbooks/restored-from"
ANN_SNAPSHOT_REVISION = "hcp-runbooks/restored-snapshot-revision"


class RestoreRenderError(ValueError):
    """The objects cannot make a restorable HostedCluster; the message says why and what to do."""


def created_by(obj: dict[str, Any] | None) -> str | None:
    """The operation id that created an object (our label), or None."""
    return (((obj or {}).get("metadata") or {}).get("labels") or {}).get(LABEL_OPERATION)


# -- the objects --------------------------------------------------------------------------------------

class Rendered(BaseModel):
    """What a restore creates (the HostedCluster without its URL: it is signed at creation)."""

    hosted_cluster: dict[str, Any]
    node_pools: list[dict[str, Any]]
    notes: list[str] = Field(default_factory=list)  # what was changed from the source, for the report

    @property
    def ref(self) -> HostedClusterRef:
        meta = self.hosted_cluster["metadata"]
        return HostedClusterRef(meta["namespace"], meta["name"])


def _storage(hc: dict[str, Any]) -> dict[str, Any]:
    etcd = (hc.get("spec") or {}).get("etcd") or {}
    if etcd.get("managementType", "Managed") != "Managed" or not isinstance(etcd.get("managed"), dict):
        raise RestoreRenderError(f"{describe(hc)}: spec.etcd is not Managed (managementType "
                                 f"{etcd.get('managementType')!r}); HyperShift restores a snapshot only into a managed "
                                 "etcd: restore an unmanaged etcd with its own tooling")
    return etcd["managed"].setdefault("storage", {"type": "PersistentVolume"})


def snapshot_urls(hc: dict[str, Any]) -> list[str]:
    etcd = ((hc.get("spec") or {}).get("etcd") or {}).get("managed") or {}
    return list((etcd.get("storage") or {}).get("restoreSnapshotURL") or [])


def with_snapshot_url(hc: dict[str, Any], url: str) -> dict[str, Any]:
    """A copy of the HostedCluster with exactly one restoreSnapshotURL: `url`."""
    if not url.startswith(("https://", "s3://")):
        raise RestoreRenderError("restoreSnapshotURL must be an https or s3 URL (the HostedCluster CRD refuses others)")
    out = copy.deepcopy(hc)
    _storage(out)["restoreSnapshotURL"] = [url]
    return out


def rename_pool(name: str, source: str, target: str) -> str:
    if source == target:
        return name
    if name == source:
        return target
    if name.startswith(source + "-"):
        return target + name[len(source):]
    return f"{target}-{name}"


def render(objects: HostedClusterObjects, target: HostedClusterRef, *, operation_id: str, backup_url: str,
           snapshot_revision: int) -> Rendered:
    """The HostedCluster and NodePools to create at `target`, from cleaned source objects.

    Dropped on purpose: spec.pausedUntil (a paused HostedCluster never reconciles, so its etcd would
    never restore) and any restoreSnapshotURL of the source (a restored cluster backed up again has
    one; a HostedCluster takes exactly one and only at creation). NodePools follow the target name
    when it differs (`<source>` and `<source>-x` become `<target>` and `<target>-x`)."""
    notes: list[str] = []
    source_hc = objects.hosted_cluster
    source_name = source_hc["metadata"]["name"]
    hc = clean_for_recreate(source_hc)
    _storage(hc)  # refuses an unmanaged etcd
    spec = hc.setdefault("spec", {})
    if spec.get("pausedUntil") is not None:
        notes.append(f"spec.pausedUntil {spec['pausedUntil']!r} of the source is not carried over (a paused "
                     "HostedCluster would never restore its etcd); pause it again afterwards if needed")
        spec.pop("pausedUntil")
    if snapshot_urls(hc):
        notes.append("the source's restoreSnapshotURL is replaced by this backup's (a HostedCluster takes one)")
        _storage(hc).pop("restoreSnapshotURL", None)
    labels = {LABEL_OPERATION: operation_id}
    annotations = {ANN_RESTORED_FROM: backup_url, ANN_SNAPSHOT_REVISION: str(snapshot_revision)}
    meta = hc["metadata"]
    if (meta.get("namespace"), meta["name"]) != (target.namespace, target.name):
        notes.append(f"HostedCluster {meta.get('namespace')}/{meta['name']} is created as {target}")
    meta.update(namespace=target.namespace, name=target.name)
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    pools = []
    for source_pool in objects.node_pools:
        pool = clean_for_recreate(source_pool)
        pool_spec = pool.setdefault("spec", {})
        if pool_spec.get("pausedUntil") is not None:
            notes.append(f"NodePool {pool['metadata']['name']}: spec.pausedUntil {pool_spec['pausedUntil']!r} is not "
                         "carried over")
            pool_spec.pop("pausedUntil")
        name = rename_pool(pool["metadata"]["name"], source_name, target.name)
        validate_dns1123_subdomain(name, "NodePool name")
        if name != pool["metadata"]["name"]:
            notes.append(f"NodePool {pool['metadata']['name']} is created as {name}")
        pool["metadata"].update(namespace=target.namespace, name=name)
        pool["metadata"]["labels"] = {**(pool["metadata"].get("labels") or {}), **labels}
        pool_spec["clusterName"] = target.name
        pools.append(pool)
    return Rendered(hosted_cluster=hc, node_pools=pools, notes=notes)


# -- the presigned URL --------------------------------------------------------------------------------

def presign_snapshot(s3: Any, bucket: str, key: str, expires_seconds: int) -> str:
    """A GET URL for the snapshot object that etcd-init's curl can use without credentials."""
    if not PRESIGN_MIN_SECONDS <= expires_seconds <= PRESIGN_MAX_SECONDS:
        raise RestoreRenderError(f"presign expiry {expires_seconds} s is outside {PRESIGN_MIN_SECONDS}.."
                                 f"{PRESIGN_MAX_SECONDS} s")
    url: str = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_seconds)
    return url


def redact_url(url: str) -> str:
    """The URL without its query: a presigned URL's signature grants access until it expires."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) + ("?<signature>" if parts.query else "")


def presigned_expiry(url: str) -> datetime | None:
    """When a presigned URL stops working (SigV4 X-Amz-Date + X-Amz-Expires, or SigV2 Expires)."""
    query = parse_qs(urlsplit(url).query)
    try:
        if "X-Amz-Date" in query and "X-Amz-Expires" in query:
            signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
            return signed + timedelta(seconds=int(query["X-Amz-Expires"][0]))
        if "Expires" in query:
            return datetime.fromtimestamp(int(query["Expires"][0]), tz=timezone.utc)
    except (ValueError, IndexError):
        return None
    return None


# -- secrets ---------------------------------------------------------------------------------------------

def encryption_key_name(hc: dict[str, Any]) -> str | None:
    aescbc = (((hc.get("spec") or {}).get("secretEncryption") or {}).get("aescbc") or {})
    return (aescbc.get("activeKey") or {}).get("name")


def referenced_secrets(hc: dict[str, Any]) -> dict[str, str]:
    """Secrets in the HostedCluster's namespace that its spec names (what -> secret name)."""
    spec = hc.get("spec") or {}
    aescbc = ((spec.get("secretEncryption") or {}).get("aescbc") or {})
    found = {"pull secret (spec.pullSecret)": (spec.get("pullSecret") or {}).get("name"),
             "SSH key (spec.sshKey)": (spec.get("sshKey") or {}).get("name"),
             "etcd encryption key (spec.secretEncryption.aescbc.activeKey)": (aescbc.get("activeKey") or {}).get("name"),
             "previous etcd encryption key (spec.secretEncryption.aescbc.backupKey)":
                 (aescbc.get("backupKey") or {}).get("name")}
    return {what: name for what, name in found.items() if name}


def data_digest(data: dict[str, str] | None) -> str:
    """A digest of a secret's data, to compare keys without carrying them around."""
    return hashlib.sha256(json.dumps(data or {}, sort_keys=True).encode()).hexdigest()


def key_secret(backup_doc: dict[str, Any], name: str, namespace: str, operation_id: str) -> dict[str, Any]:
    """The encryption-key Secret to create from the backup's copy (tasks.storage.save_encryption_key)."""
    data = backup_doc.get("data")
    if backup_doc.get("kind") != "Secret" or not isinstance(data, dict) or not data:
        raise RestoreRenderError("the backup's encryption key object is not a Secret with data")
    return {"apiVersion": "v1", "kind": "Secret", "type": backup_doc.get("type") or "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": {LABEL_OPERATION: operation_id}},
            "data": dict(data)}


class SecretState(BaseModel):
    exists: bool
    digest: str | None = None  # data_digest of its data
    created_by: str | None = None  # our operation label


class TargetState(BaseModel):
    """The target management cluster, read before anything is created."""

    namespace_exists: bool
    hosted_cluster: dict[str, Any] | None = None  # the existing HostedCluster at the target (metadata, spec.etcd)
    node_pools: dict[str, str | None] = Field(default_factory=dict)  # existing NodePool name -> created_by
    secrets: dict[str, SecretState] = Field(default_factory=dict)  # name -> state, for every referenced secret
    # other HostedClusters on the management cluster: "ns/name" -> (clusterID, infraID)
    identities: dict[str, tuple[str | None, str | None]] = Field(default_factory=dict)


KeyDecision = Literal["create", "reuse", "none"]


def decide_key(rendered: Rendered, state: TargetState, backup_key_digest: str | None) -> KeyDecision:
    """How the encryption key gets to the target: `create` the secret from the backup, `reuse` one
    that holds the same key, or `none` (no aescbc key). Refusals are `refusals`' business."""
    name = encryption_key_name(rendered.hosted_cluster)
    if not name:
        return "none"
    secret = state.secrets.get(name)
    if secret is not None and secret.exists:
        return "reuse"
    return "create" if backup_key_digest else "none"


def refusals(rendered: Rendered, state: TargetState, *, operation_id: str, backup_key_digest: str | None,
             management_cluster: str) -> list[str]:
    """Why this restore must not start, each with what to do instead (empty: go ahead)."""
    ref = rendered.ref
    ns = ref.namespace
    hc = rendered.hosted_cluster
    out: list[str] = []
    if not state.namespace_exists:
        return [f"namespace {ns} does not exist on {management_cluster}: create it (`oc create namespace {ns}`) and the "
                f"secrets the HostedCluster names ({', '.join(referenced_secrets(hc).values()) or 'none'}), then run "
                "again"]
    existing = state.hosted_cluster
    if existing is not None and created_by(existing) != operation_id:
        out.append(f"HostedCluster {ref} already exists on {management_cluster} (created "
                   f"{existing['metadata'].get('creationTimestamp', '?')}): restoreSnapshotURL can only be set when a "
                   "HostedCluster is created. Restore under another name or namespace (name=/namespace=), or delete "
                   f"it first (`oc -n {ns} delete hostedcluster {ref.name}`) if it is the broken cluster this backup "
                   "replaces")
    for pool in rendered.node_pools:
        name = pool["metadata"]["name"]
        if name in state.node_pools and state.node_pools[name] != operation_id:
            out.append(f"NodePool {ns}/{name} already exists: delete it (`oc -n {ns} delete nodepool {name}`) or "
                       "restore under another name")
    spec = hc.get("spec") or {}
    for other, (cluster_id, infra_id) in sorted(state.identities.items()):
        if other == str(ref):
            continue
        same = [f"{field} {value}" for field, value, mine in (("clusterID", cluster_id, spec.get("clusterID")),
                                                              ("infraID", infra_id, spec.get("infraID")))
                if value and value == mine]
        if same:
            out.append(f"HostedCluster {other} on {management_cluster} has the same {' and '.join(same)}: two clusters "
                       "with one identity share (and, when one is deleted, destroy) each other's cloud resources and "
                       "DNS. Retire that cluster first, restore on another management cluster, or give a HostedCluster "
                       "manifest with its own clusterID and infraID (`hypershift create cluster ... --render`)")
    key_name = encryption_key_name(hc)
    for what, name in referenced_secrets(hc).items():
        secret = state.secrets.get(name) or SecretState(exists=False)
        if name == key_name:
            if secret.exists and backup_key_digest and secret.digest != backup_key_digest:
                out.append(f"secret {ns}/{name} ({what}) holds another AES key than the cluster had at backup time: "
                           "the restored API servers could not read the secrets in etcd. If no HostedCluster uses it, "
                           f"delete it (`oc -n {ns} delete secret {name}`) and run again (the backup's key is restored "
                           "under that name); else restore into another namespace")
            elif not secret.exists and not backup_key_digest:
                out.append(f"the backup holds no copy of the encryption key and secret {ns}/{name} ({what}) does not "
                           "exist: the restored API servers could not read the secrets in etcd. Create the secret with "
                           "the key the cluster had at backup time (`oc get secret ... -o jsonpath={.data.key}` was "
                           "the documented way to save it), then run again")
            continue
        if not secret.exists:
            hint = (" (the backup saved only the active key: create it from your copy of the previous key)"
                    if "backupKey" in what else "")
            out.append(f"secret {ns}/{name} ({what}) does not exist on {management_cluster}: create it first{hint}, "
                       "then run again")
    return out
