"""Tasks of etcd-restore into a new hosted cluster: find and fetch the backup, read the target,
restore the encryption key, create the HostedCluster (with its one presigned restoreSnapshotURL) and
NodePools, wait for it, verify it, and remove what the operation created when it fails.

Creation is idempotent on the cluster itself, not on checkpoints: every object created carries the
label `hcp-runbooks/operation-id`, and a re-run of the operation finds its own objects and goes on
(never touching a created HostedCluster's restoreSnapshotURL, which is immutable). So a run that
removed what it created after a failure starts over cleanly when run again, with a fresh URL.
Secret contents never leave these tasks: results carry digests only.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prefect import task
from pydantic import BaseModel

from hcp import backup_catalog, cluster_objects, etcd_restore, restore_render, restore_verify, snapshot_source
from hcp.aws_access import AwsAccess
from hcp.backup_manifest import MANIFEST_FILENAME, BackupManifest
from hcp.cluster_objects import HostedClusterObjects
from hcp.etcd_member import list_members
from hcp.hosted_cluster import GROUP, VERSION
from hcp.naming import BackupLocation, HostedClusterRef
from hcp.restore_render import LABEL_OPERATION, Rendered, SecretState, TargetState
from hcp.run_target import RunTarget
from hcp.waits import WaitTimeout, wait_for_object
from tasks.aws import s3_client

__all__ = ["NewClusterError", "SourceBackup", "Created", "find_backup", "fetch_snapshot", "read_source_objects",
           "backup_key_digest", "inspect_target", "restore_encryption_key", "create_hosted_cluster",
           "create_node_pools", "wait_restored", "verify_restored_keys", "diagnose", "remove_created",
           "snapshot_work_path", "expected_members"]

_MAX_DOCUMENT = 16 << 20


class NewClusterError(RuntimeError):
    """A step of the restore failed; names the cluster, the step and what to do next."""


class SourceBackup(BaseModel):
    location_url: str
    manifest: BackupManifest

    @property
    def location(self) -> BackupLocation:
        return BackupLocation.parse(self.location_url)


class Created(BaseModel):
    created: list[str]  # what this run created (empty: found from an earlier run of the operation)
    existing: list[str]  # this operation's objects found from an earlier run
    url: str | None = None  # the restoreSnapshotURL, redacted
    url_expires_at: datetime | None = None


# -- the source -----------------------------------------------------------------------------------------

def _entries(s3: Any, bucket: str, prefix: str, management_cluster: str,
             cluster: HostedClusterRef) -> list[backup_catalog.BackupEntry]:
    try:
        return backup_catalog.list_backups(s3, bucket, prefix, management_cluster=management_cluster,
                                           hosted_cluster=cluster)
    except backup_catalog.BackupCatalogError as exc:
        raise NewClusterError(f"{exc}; nothing was created") from None


def _entry_at(s3: Any, location: BackupLocation) -> backup_catalog.BackupEntry:
    for entry in _entries(s3, location.bucket, location.prefix, location.management_cluster, location.hosted_cluster):
        if entry.location == location:
            if not entry.complete:
                raise NewClusterError(f"backup {location.url} is not complete ({entry.status}); choose a complete one "
                                      f"(`hcp-runbooks backups list --bucket {location.bucket}`); nothing was created")
            return entry
    raise NewClusterError(f"no backup at {location.url}: check the URL (`hcp-runbooks backups list --bucket "
                          f"{location.bucket}`); nothing was created")


@task(name="find-backup")
def find_backup(aws: AwsAccess, bucket: str, prefix: str, backup_url: str | None, source_cluster: str | None,
                source_management_cluster: str) -> SourceBackup:
    """The backup given (its manifest or prefix URL), else the newest complete backup of the cluster."""
    s3 = s3_client(aws)
    if backup_url:
        url = backup_url[:-len(MANIFEST_FILENAME)] if backup_url.endswith(MANIFEST_FILENAME) else backup_url
        entry = _entry_at(s3, BackupLocation.parse(url))
    else:
        assert source_cluster is not None
        ref = HostedClusterRef.parse(source_cluster)
        complete = [e for e in _entries(s3, bucket, prefix, source_management_cluster, ref) if e.complete]
        if not complete:
            raise NewClusterError(f"no complete backup of {ref} from {source_management_cluster} under s3://{bucket}/"
                                  f"{prefix}: take one (`hcp-runbooks run etcd-backup`) or name a backup; nothing was "
                                  "created")
        entry = max(complete, key=lambda e: (e.location.taken_at, e.location.operation_id))
    assert entry.manifest is not None
    return SourceBackup(location_url=entry.location.url, manifest=entry.manifest)


def snapshot_work_path(operation_id: str) -> Path:
    return Path(tempfile.gettempdir()) / "hcp-runbooks" / operation_id.lower() / "snapshot.db"


@task(name="fetch-snapshot", retries=1, retry_delay_seconds=3)
def fetch_snapshot(target: RunTarget, aws: AwsAccess, source: SourceBackup) -> snapshot_source.LocalSnapshot:
    """Download the snapshot to the runner: SHA-256 and `snapshot status` against the manifest."""
    s3 = s3_client(aws)
    return snapshot_source.fetch_backup(s3, _entry_at(s3, source.location), snapshot_work_path(target.operation_id))


def _read_object(aws: AwsAccess, bucket: str, key: str, what: str) -> bytes:
    try:
        body = s3_client(aws).get_object(Bucket=bucket, Key=key)["Body"]
        try:
            return body.read(_MAX_DOCUMENT + 1)[:_MAX_DOCUMENT]
        finally:
            body.close()
    except (ClientError, BotoCoreError) as exc:
        raise NewClusterError(f"cannot read the backup's {what} s3://{bucket}/{key}: {exc}; check the runner's S3 "
                              "access; nothing was created") from None


@task(name="read-cluster-objects")
def read_source_objects(aws: AwsAccess, source: SourceBackup, manifest_path: str | None,
                        manifest_content: str | None) -> HostedClusterObjects:
    """The HostedCluster (and NodePools) to re-create: the user's manifest, else the backup's copy.
    A manifest without NodePools takes the backup's."""
    backup_objects: HostedClusterObjects | None = None
    key = source.manifest.cluster_objects_key
    if key:
        text = _read_object(aws, source.location.bucket, key, "HostedCluster and NodePools")
        backup_objects = HostedClusterObjects.from_documents(cluster_objects.parse_documents(text, key), key)
    if manifest_path or manifest_content:
        what = manifest_path or "the hosted_cluster_manifest parameter"
        try:
            text_in = Path(manifest_path).read_text() if manifest_path else manifest_content or ""
        except OSError as exc:
            raise NewClusterError(f"cannot read the HostedCluster manifest {manifest_path}: {exc}; nothing was "
                                  "created") from None
        given = HostedClusterObjects.from_documents(cluster_objects.parse_documents(text_in, what), what)
        if given.node_pools or backup_objects is None:
            return given
        source_name = backup_objects.hosted_cluster["metadata"]["name"]
        given_name = given.hosted_cluster["metadata"]["name"]
        pools = [{**p, "spec": {**(p.get("spec") or {}), "clusterName": given_name},
                  "metadata": {**p["metadata"], "name": restore_render.rename_pool(p["metadata"]["name"], source_name,
                                                                                   given_name)}}
                 for p in backup_objects.node_pools]
        return HostedClusterObjects(hosted_cluster=given.hosted_cluster, node_pools=pools)
    if backup_objects is None:
        raise NewClusterError(f"backup {source.location_url} holds no copy of the HostedCluster (taken before backups "
                              "saved it): give the HostedCluster manifest (hosted_cluster_manifest, e.g. the file "
                              "`oc get hostedcluster NAME -o yaml` saved, or `hypershift create cluster ... --render`) "
                              "or choose a newer backup; nothing was created")
    return backup_objects


@task(name="read-backup-key")
def backup_key_digest(aws: AwsAccess, source: SourceBackup) -> str | None:
    """A digest of the backup's copy of the encryption key (None: it has none)."""
    key = source.manifest.encryption_key_object
    if not key:
        return None
    doc = json.loads(_read_object(aws, source.location.bucket, key, "encryption key"))
    return restore_render.data_digest(doc.get("data"))


# -- the target -----------------------------------------------------------------------------------------

def _custom(target: RunTarget) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(target.api_client())


def _get_hc(custom: client.CustomObjectsApi, ref: HostedClusterRef) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, ref.namespace, "hostedclusters",
                                                                  ref.name)
        return obj
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _secret(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Secret | None:
    try:
        return core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


@task(name="inspect-target")
def inspect_target(target: RunTarget, rendered: Rendered) -> TargetState:
    """What is already on the target management cluster (read-only)."""
    api = target.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = rendered.ref.namespace
    try:
        core.read_namespace(ns)
    except ApiException as exc:
        if exc.status == 404:
            return TargetState(namespace_exists=False)
        raise
    pools = custom.list_namespaced_custom_object(GROUP, VERSION, ns, "nodepools").get("items") or []
    secrets: dict[str, SecretState] = {}
    for name in restore_render.referenced_secrets(rendered.hosted_cluster).values():
        secret = _secret(core, ns, name)
        secrets[name] = SecretState(exists=False) if secret is None else SecretState(
            exists=True, digest=restore_render.data_digest(secret.data),
            created_by=(secret.metadata.labels or {}).get(LABEL_OPERATION))
    identities = {f"{h['metadata']['namespace']}/{h['metadata']['name']}":
                  ((h.get("spec") or {}).get("clusterID"), (h.get("spec") or {}).get("infraID"))
                  for h in custom.list_cluster_custom_object(GROUP, VERSION, "hostedclusters").get("items") or []}
    existing = _get_hc(custom, rendered.ref)
    return TargetState(namespace_exists=True, node_pools={p["metadata"]["name"]: restore_render.created_by(p) for p in pools},
                       hosted_cluster=None if existing is None else {"metadata": existing["metadata"],
                                                                     "status": existing.get("status") or {}},
                       secrets=secrets, identities=identities)


def _create(what: str, create: Any, read: Any, operation_id: str) -> bool:
    """Create; on 409 the existing object must be this operation's (a re-run). True when created."""
    try:
        create()
        return True
    except ApiException as exc:
        if exc.status != 409:
            raise NewClusterError(f"creating {what} failed: HTTP {exc.status} {exc.reason}: "
                                  f"{(exc.body or '')[:300]}") from None
    owner = restore_render.created_by(read())
    if owner != operation_id:
        raise NewClusterError(f"{what} appeared while this run was creating it (created by {owner or 'someone else'}); "
                              "it was not changed. Find out who made it before running again")
    return False


@task(name="restore-encryption-key", retries=2, retry_delay_seconds=2)
def restore_encryption_key(target: RunTarget, aws: AwsAccess, source: SourceBackup, name: str) -> bool:
    """The encryption-key secret with the backup's AES key: created when missing (True), else
    checked to hold that key. Its content is never returned or logged."""
    core = client.CoreV1Api(target.api_client())
    ns = target.ref.namespace
    key = source.manifest.encryption_key_object
    doc = json.loads(_read_object(aws, source.location.bucket, key, "encryption key")) if key else None
    existing = _secret(core, ns, name)
    if existing is not None:
        if doc is not None and restore_render.data_digest(existing.data) != restore_render.data_digest(doc.get("data")):
            raise NewClusterError(f"secret {ns}/{name} holds another AES key than the backup; it was not changed. "
                                  "Delete it if no HostedCluster uses it, then run again")
        return False
    if doc is None:
        raise NewClusterError(f"secret {ns}/{name} is missing and the backup holds no copy of the key; create it with "
                              "the key the cluster had at backup time, then run again")
    body = restore_render.key_secret(doc, name, ns, target.operation_id)
    return _create(f"secret {ns}/{name}", lambda: core.create_namespaced_secret(ns, body),
                   lambda: _as_dict(_secret(core, ns, name)), target.operation_id)


def _as_dict(secret: client.V1Secret | None) -> dict[str, Any] | None:
    return None if secret is None else {"metadata": {"labels": secret.metadata.labels or {}}}


def _condition(obj: dict[str, Any] | None, ctype: str) -> str:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return str(c.get("status"))
    return "Unknown"


@task(name="create-hosted-cluster", retries=2, retry_delay_seconds=2)
def create_hosted_cluster(target: RunTarget, aws: AwsAccess, source: SourceBackup, rendered: Rendered,
                          expires_seconds: int) -> Created:
    """Create the HostedCluster with one freshly presigned restoreSnapshotURL; a re-run finds the one
    this operation created and leaves it as it is (the URL cannot change after creation)."""
    custom = _custom(target)
    ref = rendered.ref
    existing = _get_hc(custom, ref)
    if existing is None:
        loc = source.location
        url = restore_render.presign_snapshot(s3_client(aws), loc.bucket, source.manifest.snapshot_key, expires_seconds)
        body = restore_render.with_snapshot_url(rendered.hosted_cluster, url)
        created = _create(f"HostedCluster {ref}", lambda: custom.create_namespaced_custom_object(
            GROUP, VERSION, ref.namespace, "hostedclusters", body), lambda: _get_hc(custom, ref), target.operation_id)
        if created:
            return Created(created=[f"HostedCluster {ref}"], existing=[], url=restore_render.redact_url(url),
                           url_expires_at=restore_render.presigned_expiry(url))
        existing = _get_hc(custom, ref)
    owner = restore_render.created_by(existing)
    if owner != target.operation_id:
        by = owner or "no hcp-runbooks label"
        raise NewClusterError(f"HostedCluster {ref} exists and was not created by this operation ({by}); it was not "
                              "changed")
    urls = restore_render.snapshot_urls(existing or {})
    if len(urls) != 1:
        raise NewClusterError(f"HostedCluster {ref} (this operation's) has {len(urls)} restoreSnapshotURLs; it cannot "
                              "be repaired in place: let the run remove it and run again")
    expires = restore_render.presigned_expiry(urls[0])
    if expires is not None and expires <= datetime.now(timezone.utc) and _condition(existing, "EtcdAvailable") != "True":
        raise NewClusterError(f"HostedCluster {ref} was created by this operation, but its presigned snapshot URL "
                              f"expired at {expires:%Y-%m-%d %H:%M:%S} UTC before etcd became available, and "
                              "restoreSnapshotURL cannot change after creation: the run removes what it created; run "
                              "again with the same operation id to create it anew with a fresh URL")
    return Created(created=[], existing=[f"HostedCluster {ref}"], url=restore_render.redact_url(urls[0]),
                   url_expires_at=expires)


@task(name="create-nodepools", retries=2, retry_delay_seconds=2)
def create_node_pools(target: RunTarget, rendered: Rendered) -> Created:
    custom = _custom(target)
    ns = rendered.ref.namespace
    created, existing = [], []
    for pool in rendered.node_pools:
        name = pool["metadata"]["name"]

        def read(name: str = name) -> dict[str, Any] | None:
            try:
                obj: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "nodepools", name)
                return obj
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
        if _create(f"NodePool {ns}/{name}", lambda pool=pool: custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, "nodepools", pool), read, target.operation_id):
            created.append(f"NodePool {ns}/{name}")
        else:
            existing.append(f"NodePool {ns}/{name}")
    return Created(created=created, existing=existing)


# -- waiting and verifying -------------------------------------------------------------------------------

@task(name="wait-restored")
def wait_restored(target: RunTarget, timeout_seconds: float) -> list[str]:
    """Until the HostedCluster is Available and EtcdAvailable and every etcd member answers a quorum
    read (Available follows the pods; the members' own health is asked in them)."""
    api = target.api_client()
    ref = target.ref
    deadline = time.monotonic() + timeout_seconds

    def ready(obj: dict[str, Any] | None) -> bool:
        return _condition(obj, "Available") == "True" and _condition(obj, "EtcdAvailable") == "True"
    try:
        wait_for_object(client.CustomObjectsApi(api).list_namespaced_custom_object, ref.name, ready,
                        timeout=timeout_seconds, what=f"HostedCluster {ref} Available and EtcdAvailable", group=GROUP,
                        version=VERSION, namespace=ref.namespace, plural="hostedclusters")
    except WaitTimeout as exc:
        seen = {c: _condition(exc.last, c) for c in ("Available", "EtcdAvailable", "KubeAPIServerAvailable")}
        raise NewClusterError(f"{target}: {exc} (last seen: {seen}); the etcd-init containers restore the snapshot: "
                              f"look at `oc -n {ref.control_plane_namespace} logs etcd-0 -c etcd-init`") from None
    cp = ref.control_plane_namespace
    layout = etcd_restore.read_layout(api, cp)
    statuses = etcd_restore.wait_members_healthy(api, layout, max(1.0, deadline - time.monotonic()))
    return [s.describe() for s in statuses]


@task(name="verify-restored-keys")
def verify_restored_keys(target: RunTarget, snapshot: snapshot_source.LocalSnapshot,
                         expected_members: int | None) -> list[str]:
    """Every member healthy, at a revision >= the snapshot's, with the snapshot's keys and values at
    the snapshot's revision (hcp.restore_verify)."""
    facts = restore_verify.snapshot_keyspace(Path(snapshot.path), snapshot.revision)
    check = restore_verify.verify_restored(target.api_client(), target.ref.control_plane_namespace, facts,
                                           snapshot.revision, expected_members=expected_members)
    return check.lines()


@task(name="diagnose")
def diagnose(target: RunTarget) -> list[str]:
    """What an SRE looks at first when a new cluster does not come up: its conditions, the etcd pods
    and the end of each etcd-init log (read before anything is removed)."""
    api = target.api_client()
    ref = target.ref
    out: list[str] = []
    hc = _get_hc(client.CustomObjectsApi(api), ref)
    if hc is None:
        return [f"HostedCluster {ref} does not exist"]
    for c in (hc.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Available", "EtcdAvailable", "KubeAPIServerAvailable", "Degraded"):
            out.append(f"HostedCluster {c['type']}={c.get('status')} ({c.get('reason', '')}: {c.get('message', '')})")
    core = client.CoreV1Api(api)
    cp = ref.control_plane_namespace
    try:
        pods = list_members(api, cp)
    except Exception as exc:  # diagnostics must not hide the failure they describe
        return out + [f"etcd pods of {cp} could not be listed: {exc}"]
    for pod in pods:
        try:
            obj = core.read_namespaced_pod(pod, cp)
            inits = {s.name: s for s in obj.status.init_container_statuses or []}
            init = inits.get("etcd-init")
            state = "no etcd-init container" if init is None else (
                f"etcd-init {'running' if init.state.running else 'waiting' if init.state.waiting else 'terminated'}"
                + (f" (exit {init.state.terminated.exit_code})" if init.state.terminated else "")
                + f", restarts {init.restart_count}")
            out.append(f"pod {cp}/{pod}: {obj.status.phase}, {state}")
            if init is not None:
                # raw: the client's str deserialization turns a log into the repr of its bytes
                raw = core.read_namespaced_pod_log(pod, cp, container="etcd-init", tail_lines=8, _preload_content=False)
                log = raw.data.decode("utf-8", "replace")
                out += [f"  {pod} etcd-init: {line}" for line in log.replace("\r", "\n").splitlines()[-8:]
                        if line.strip()]
        except ApiException as exc:
            out.append(f"pod {cp}/{pod}: cannot read ({exc.status} {exc.reason})")
    return out


@task(name="remove-created")
def remove_created(target: RunTarget, timeout_seconds: float) -> list[str]:
    """Delete what this operation created on the target (labelled with its id): the HostedCluster
    first, waited for until the operator has removed its control plane, then NodePools and Secrets."""
    api = target.api_client()
    ref = target.ref
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    selector = f"{LABEL_OPERATION}={target.operation_id}"
    removed: list[str] = []
    hc = _get_hc(custom, ref)
    if hc is not None and restore_render.created_by(hc) == target.operation_id:
        try:
            custom.delete_namespaced_custom_object(GROUP, VERSION, ref.namespace, "hostedclusters", ref.name)
        except ApiException as exc:
            if exc.status != 404:
                raise
        try:
            wait_for_object(custom.list_namespaced_custom_object, ref.name, lambda obj: obj is None,
                            timeout=timeout_seconds, what=f"HostedCluster {ref} deleted", group=GROUP, version=VERSION,
                            namespace=ref.namespace, plural="hostedclusters")
        except WaitTimeout:
            raise NewClusterError(f"{target}: HostedCluster {ref} was deleted but is still there after "
                                  f"{timeout_seconds:.0f}s (its finalizer waits for the operator): check "
                                  f"`oc -n {ref.namespace} get hostedcluster {ref.name} -o yaml`, then run "
                                  f"`oc -n {ref.namespace} delete nodepool,secret -l {selector}`") from None
        removed.append(f"deleted HostedCluster {ref} (and its control plane namespace {ref.control_plane_namespace})")
    for pool in custom.list_namespaced_custom_object(GROUP, VERSION, ref.namespace, "nodepools",
                                                     label_selector=selector).get("items") or []:
        name = pool["metadata"]["name"]
        try:
            custom.delete_namespaced_custom_object(GROUP, VERSION, ref.namespace, "nodepools", name)
            removed.append(f"deleted NodePool {ref.namespace}/{name}")
        except ApiException as exc:
            if exc.status != 404:
                raise
    for secret in core.list_namespaced_secret(ref.namespace, label_selector=selector).items:
        try:
            core.delete_namespaced_secret(secret.metadata.name, ref.namespace)
            removed.append(f"deleted secret {ref.namespace}/{secret.metadata.name}")
        except ApiException as exc:
            if exc.status != 404:
                raise
    return removed


def expected_members(rendered: Rendered) -> int:
    """etcd members of a managed etcd: 3 HighlyAvailable, 1 SingleReplica (etcd/statefulset.go)."""
    policy = (rendered.hosted_cluster.get("spec") or {}).get("controllerAvailabilityPolicy", "HighlyAvailable")
    return 3 if policy == "HighlyAvailable" else 1

