"""Tasks of dr-migrate: a hosted cluster moves from one management cluster (source) to another
(destination). Each task acts on one side, named by its RunTarget (same hosted cluster and
operation id, the side's management cluster); the checkpointed ones carry the side in their name,
so the two sides' checkpoints never mix."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from pydantic import BaseModel

from hcp import dr_checks, hosted_access
from hcp import hosted_cluster as hc
from hcp.aws_access import AwsAccess
from hcp.cluster_objects import clean_for_recreate, policy_for
from hcp.dns_records import ClusterRecord, DnsError, published_hostnames, wait_records_gone
from hcp.etcd_member import MemberStatus, list_members
from hcp.etcd_restore import read_layout, wait_members_healthy
from hcp.member_snapshots import MemberSnapshot, member_object_name, snapshot_members
from hcp.migration_objects import MigrationObjects, collect_migration_objects, remove_hosted_cluster, \
    restore_migration_objects
from hcp.naming import BackupLocation, HostedClusterRef
from hcp.restore_render import with_snapshot_url
from hcp.run_target import RunTarget
from hcp.undo_journal import UndoAction, UndoJournal
from hcp.waits import WaitTimeout, wait_for_object
from tasks.aws import route53_client, s3_client
from tasks.checkpoint import checkpointed
from tasks.etcd import snapshot_path
from tasks.events import emit_change
from tasks.runbook import side_by_side
from tasks.storage import Encryption

__all__ = ["DrPreflight", "dr_preflight", "record_parent", "pause_node_pools", "backup_members", "save_objects",
           "delete_routes", "wait_dns_released", "restore_on_destination", "DestinationHealth", "wait_destination",
           "point_of_no_return", "teardown_source", "guard_journal", "remove_from_destination", "restart_ovn_pods",
           "MIGRATION_OBJECTS_FILE", "RUNBOOK", "QUIESCE"]

RUNBOOK = "dr-migrate"
MIGRATION_OBJECTS_FILE = "migration-objects.json"
# The documented procedure also stops the control-plane-operator: it would recreate the Routes
# (and so the DNS records) the migration deletes.
QUIESCE = (*hc.QUIESCE_DEPLOYMENTS, "control-plane-operator")
_ROUTES = ("route.openshift.io", "v1", "routes")


class DrPreflight(BaseModel):
    cluster: hc.HostedClusterInfo
    hostnames: dict[str, str]  # service -> published hostname
    node_replicas: int
    nodes: dict[str, str | None] | None  # node -> Ready since, as the hosted API shows them (None: unreachable)
    problems: list[str]


@task(name="dr-preflight")
def dr_preflight(source: RunTarget, destination: RunTarget, domain: str, zone_id: str, aws: AwsAccess) -> DrPreflight:
    """Everything read-only that must hold before the first change, on both sides and in Route53.
    The reads are independent of one another: they run at once (no exec among them, so the two
    ApiClients may be shared by the threads)."""
    src, dst = source.api_client(), destination.api_client()
    ref = source.ref
    with ThreadPoolExecutor(max_workers=6, thread_name_prefix="dr-preflight") as pool:
        info_f = pool.submit(hc.read_hosted_cluster, src, ref, management=source.management_cluster)
        obj_f = pool.submit(_hosted_cluster_object, src, ref)
        occupied_f = pool.submit(dr_checks.destination_problems, dst, ref, ours=source.operation_id,
                                 where=destination.management_cluster)
        zone_f = pool.submit(_zone_problems, aws, zone_id, domain)
        nodes_f = pool.submit(_node_readiness, src, ref)
        replicas_f = pool.submit(hosted_access.node_pool_replicas, src, ref)
        info, obj = info_f.result(), obj_f.result()
        version_f = pool.submit(dr_checks.supported_version_problems, dst, info.release_version,
                                destination.management_cluster)
        writes_f = pool.submit(_destination_write_problems, dst, destination, obj)
        problems = (dr_checks.external_dns_problems(obj, domain, f"HostedCluster {ref} on {source.management_cluster}")
                    + version_f.result() + occupied_f.result() + writes_f.result() + zone_f.result())
        return DrPreflight(cluster=info, hostnames=published_hostnames(obj), node_replicas=replicas_f.result(),
                           nodes=nodes_f.result(), problems=problems)


def _hosted_cluster_object(api: client.ApiClient, ref: HostedClusterRef) -> dict:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(hc.GROUP, hc.VERSION, ref.namespace,
                                                                     "hostedclusters", ref.name)


def _zone_problems(aws: AwsAccess, zone_id: str, domain: str) -> list[str]:
    try:
        route53_client(aws).get_hosted_zone(Id=zone_id)
    except Exception as exc:  # botocore's errors say what is wrong (no such zone, access denied)
        return [f"Route53 zone {zone_id} cannot be read ({exc}); give the public zone of {domain} and let the runner "
                "route53:GetHostedZone and route53:ListResourceRecordSets"]
    return []


def _node_readiness(api: client.ApiClient, ref: HostedClusterRef) -> dict[str, str | None] | None:
    """The nodes as the hosted API shows them, or None when it does not answer (a re-run after the
    quiesce): informational, compared after the move."""
    try:
        hosted = hosted_access.hosted_api_client(api, ref)
        try:
            return hosted_access.node_readiness(hosted, timeout=5).nodes
        finally:
            hosted.close()
    except Exception:
        return None


def _destination_write_problems(api: client.ApiClient, target: RunTarget, hosted_cluster: dict) -> list[str]:
    """The destination takes what the restore creates, proven without creating anything: server-side
    dry runs of the first create (the control-plane namespace) and of the HostedCluster as it will be
    created (the real CRD's validation, one restoreSnapshotURL). The HostedCluster's namespace must
    exist there already: the runner's namespace-scoped role is bound in it (infra/rbac.yaml), which
    a namespace it created itself would lack."""
    ref = target.ref
    where = target.management_cluster
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    problems: list[str] = []
    try:
        core.create_namespace({"metadata": {"name": ref.control_plane_namespace}}, dry_run="All")
    except ApiException as exc:
        if exc.status != 409:  # exists: destination_problems says whether it is ours
            problems.append(f"{where}: the runner may not create namespace {ref.control_plane_namespace} (HTTP "
                            f"{exc.status} {exc.reason}); bind it the hcp-runbooks ClusterRole there (infra/rbac.yaml)")
    try:
        core.read_namespace(ref.namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        return problems + [f"{where} has no namespace {ref.namespace}: create it and the RoleBinding of "
                           f"infra/rbac.yaml there first (`oc create namespace {ref.namespace}`), then run again"]
    body = clean_for_recreate(hosted_cluster, policy_for(hosted_cluster))
    body["spec"].pop("pausedUntil", None)
    body = with_snapshot_url(body, "https://s3.amazonaws.com/hcp-runbooks-preflight/snapshot.db")
    try:
        custom.create_namespaced_custom_object(hc.GROUP, hc.VERSION, ref.namespace, "hostedclusters", body,
                                               dry_run="All")
    except ApiException as exc:
        if exc.status == 409:
            return problems  # exists: destination_problems says whether it is ours
        detail = exc.body if isinstance(exc.body, str) else ""
        problems.append(f"{where}: a dry run of creating HostedCluster {ref} there was refused (HTTP {exc.status} "
                        f"{exc.reason}: {detail[:300]}); " + ("bind the runner the roles of infra/rbac.yaml there"
                                                              if exc.status == 403 else "fix what it names first"))
    return problems


@task(name="guard-undo-journal")
def guard_journal(target: RunTarget, message: str) -> None:
    """`recover` alone must not bring the source back (the destination's copy must go first)."""
    UndoJournal(target.api_client(), target.ref, target.operation_id).guard(message)


@checkpointed(name="dr-record-parent-on-source")
def record_parent(target: RunTarget) -> bool:
    """`default/mgmt-parent-cluster` in the hosted cluster names the management cluster it came from
    (written while its API still runs, so it travels in etcd)."""
    api = target.api_client()
    hosted = hosted_access.hosted_api_client(api, target.ref)
    try:
        return hosted_access.record_parent_cluster(hosted, target.management_cluster)
    finally:
        hosted.close()


@task(name="pause-node-pools")
def pause_node_pools(target: RunTarget) -> list[str]:
    """pausedUntil 'true' on the hosted cluster's NodePools, each original recorded in the undo journal first."""
    api = target.api_client()
    ref = target.ref
    journal = UndoJournal(api, ref, target.operation_id)
    already = {a.id for a in journal.pending()}
    pools = client.CustomObjectsApi(api).list_namespaced_custom_object(hc.GROUP, hc.VERSION, ref.namespace, "nodepools")
    changes = []
    for pool in pools.get("items") or []:
        if (pool.get("spec") or {}).get("clusterName") != ref.name:
            continue
        name = pool["metadata"]["name"]
        original = (pool.get("spec") or {}).get("pausedUntil")
        action = journal.record(UndoAction.node_pool_paused_until(ref.namespace, name, original))
        hc.set_node_pool_paused_until(api, ref.namespace, name, "true")
        if action.id not in already:
            changes.append(f"paused NodePool {ref.namespace}/{name} (pausedUntil was {original!r})")
            emit_change(target, RUNBOOK, "paused", node_pool=name, paused_until_before=original)
    return changes


class Backup(BaseModel):
    members: list[MemberSnapshot]
    started_at: datetime
    finished_at: datetime


@checkpointed(name="dr-backup-etcd-on-source", retries=1, retry_delay_seconds=3)
def backup_members(target: RunTarget, aws: AwsAccess, location: str, encryption: Encryption) -> Backup:
    """Every member's own snapshot into the backup's prefix, each checked on the way."""
    loc = BackupLocation.parse(location)
    namespace = target.ref.control_plane_namespace
    started = datetime.now(timezone.utc)
    api = target.api_client()
    try:
        members = list_members(api, namespace)
    finally:
        api.close()
    if not members:
        raise hc.HostedClusterError(f"{target}: no etcd member pods in {namespace}; nothing to back up")
    snapshots = snapshot_members(target.api_client, namespace, members, snapshot_path(target.operation_id),
                                 s3_client(aws), loc.bucket, lambda m: loc.key(member_object_name(m)),
                                 metadata={"hcp-runbooks-operation": target.operation_id}, part_attempts=2,
                                 **encryption.args())
    return Backup(members=snapshots, started_at=started, finished_at=datetime.now(timezone.utc))


class SavedObjects(BaseModel):
    key: str
    counts: dict[str, int]
    secrets: list[str]  # the HostedCluster namespace's secrets that move with the cluster


@checkpointed(name="dr-save-objects-from-source", retries=2, retry_delay_seconds=3)
def save_objects(target: RunTarget, aws: AwsAccess, location: str, encryption: Encryption) -> SavedObjects:
    loc = BackupLocation.parse(location)
    objects = collect_migration_objects(target.api_client(), target.ref.namespace, target.ref.name)
    key = loc.key(MIGRATION_OBJECTS_FILE)
    s3_client(aws).put_object(Bucket=loc.bucket, Key=key, Body=objects.model_dump_json().encode(),
                              ContentType="application/json", **encryption.put_args())
    return SavedObjects(key=key, counts=objects.counts(), secrets=objects.own_secret_names())


@checkpointed(name="dr-delete-routes-on-source")
def delete_routes(target: RunTarget) -> list[str]:
    """Delete the control plane's Routes: the source's external-dns then removes their records."""
    custom = client.CustomObjectsApi(target.api_client())
    namespace = target.ref.control_plane_namespace
    routes = custom.list_namespaced_custom_object(*_ROUTES[:2], namespace, _ROUTES[2]).get("items") or []
    deleted = []
    for route in routes:
        name = route["metadata"]["name"]
        try:
            custom.delete_namespaced_custom_object(*_ROUTES[:2], namespace, _ROUTES[2], name)
            deleted.append(f"route {namespace}/{name} ({(route.get('spec') or {}).get('host', 'no host')})")
        except ApiException as exc:
            if exc.status != 404:
                raise
    return deleted


@checkpointed(name="dr-dns-released-by-source")
def wait_dns_released(target: RunTarget, aws: AwsAccess, zone_id: str, hostnames: list[str],
                      timeout_seconds: float) -> float:
    """Until the source's external-dns removed the cluster's records (Route53 has no watch: a short
    poll, with a progress artifact). Records are changed only by their owner, so the destination's
    external-dns can publish the hostnames only after this."""
    artifact = create_progress_artifact(0.0, description=f"DNS records of {target.ref} removed from zone {zone_id}")
    first: list[int] = []

    def progress(left: list[ClusterRecord], elapsed: float) -> None:
        if not first:
            first.append(len(left))
        update_progress_artifact(artifact, 100.0 * (1 - len(left) / max(first[0], 1)))

    try:
        waited = wait_records_gone(route53_client(aws), zone_id, hostnames, target.ref.control_plane_namespace,
                                   timeout=timeout_seconds, interval=0.25, progress=progress)
    except DnsError as exc:
        raise DnsError(f"{target}: {exc}") from None
    update_progress_artifact(artifact, 100.0)
    return waited


@checkpointed(name="dr-restore-on-destination")
def restore_on_destination(target: RunTarget, aws: AwsAccess, objects_url: str, snapshot_url: str,
                           url_expires_seconds: int) -> list[str]:
    """Recreate the hosted cluster on the destination from the backup (objects read back from S3,
    so a restore can run from another machine), with one presigned restoreSnapshotURL."""
    bucket, _, key = objects_url.removeprefix("s3://").partition("/")
    s3 = s3_client(aws)
    objects = MigrationObjects.model_validate_json(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    snap_bucket, _, snap_key = snapshot_url.removeprefix("s3://").partition("/")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": snap_bucket, "Key": snap_key},
                                    ExpiresIn=url_expires_seconds)
    return restore_migration_objects(target.api_client(), objects, url, operation_id=target.operation_id,
                                     on_created=lambda what: emit_change(target, RUNBOOK, "created", object=what))


class DestinationHealth(BaseModel):
    available_at: datetime
    api_back_at: datetime  # the hosted API answered (through its published name) with the nodes Ready
    nodes: dict[str, str | None]
    etcd: list[str]
    revision: int  # the highest member revision on the destination

    def describe(self) -> str:
        ready = sum(1 for v in self.nodes.values() if v)
        return (f"HostedCluster Available; {ready}/{len(self.nodes)} nodes Ready; etcd: " + "; ".join(self.etcd))


def _available(obj: dict | None) -> bool:
    return any(c.get("type") == "Available" and c.get("status") == "True"
               for c in ((obj or {}).get("status") or {}).get("conditions") or [])


@task(name="wait-destination")
def wait_destination(target: RunTarget, node_replicas: int, min_revision: int, timeout_seconds: float) -> DestinationHealth:
    """Until the HostedCluster is Available on the destination and its API shows the NodePools' nodes
    Ready; then every etcd member's status (each must hold at least the backup's revision)."""
    api = target.api_client()
    ref = target.ref
    deadline = time.monotonic() + timeout_seconds
    try:
        wait_for_object(client.CustomObjectsApi(api).list_namespaced_custom_object, ref.name, _available,
                        timeout=timeout_seconds, what=f"HostedCluster {ref} Available on {target.management_cluster}",
                        group=hc.GROUP, version=hc.VERSION, namespace=ref.namespace, plural="hostedclusters")
    except WaitTimeout as exc:
        conditions = {c["type"]: c["status"] for c in ((exc.last or {}).get("status") or {}).get("conditions") or []}
        raise hc.HostedClusterError(f"{target}: {exc} (conditions: {conditions or 'none'}); check the operator and "
                                    f"the control plane pods (`oc -n {ref.control_plane_namespace} get pods`)") from None
    available_at = datetime.now(timezone.utc)

    def nodes_ready() -> tuple[hosted_access.NodeReadiness, datetime]:
        hosted = hosted_access.hosted_api_client(api, ref)
        try:
            return (hosted_access.wait_nodes_ready(hosted, node_replicas, timeout=max(1.0, deadline - time.monotonic())),
                    datetime.now(timezone.utc))
        finally:
            hosted.close()

    def members_healthy() -> list[MemberStatus]:
        # Available needs a quorum, not every member: the last one may still be joining.
        layout = read_layout(api, ref.control_plane_namespace)
        return wait_members_healthy(api, layout, max(1.0, deadline - time.monotonic()), new_api=target.api_client)

    # Independent: the nodes come back through the hosted API while etcd's last member joins.
    (nodes, api_back_at), statuses = side_by_side(nodes_ready, members_healthy)
    revision = max((s.revision or 0 for s in statuses), default=0)
    if revision < min_revision:
        raise hc.HostedClusterError(f"{target}: etcd on the destination is at revision {revision}, below the backup's "
                                    f"{min_revision}: it did not start from the backup; look at the etcd-init "
                                    f"container's log (`oc -n {ref.control_plane_namespace} logs etcd-0 -c etcd-init`)")
    return DestinationHealth(available_at=available_at, api_back_at=api_back_at, nodes=nodes.nodes, etcd=[s.describe() for s in statuses],
                             revision=revision)


@checkpointed(name="dr-point-of-no-return")
def point_of_no_return(target: RunTarget) -> datetime:
    """The source's undo (scale back, unpause) is dropped for good: from here the run only goes forward."""
    journal = UndoJournal(target.api_client(), target.ref, target.operation_id)
    journal.drop_pending()
    return datetime.now(timezone.utc)


OPERATOR = ("hypershift", "operator")


@checkpointed(name="dr-teardown-source")
def teardown_source(target: RunTarget, secrets: list[str], timeout_seconds: float) -> list[str]:
    """Remove the hosted cluster from the source the teardown way. The hypershift operator re-adds
    its finalizer to a paused HostedCluster (upstream adds it before checking the pause), so the
    removal may stop the operator for a moment: its replicas are journalled first, and put back
    after (also by a re-run, should this process die while the operator is down)."""
    api = target.api_client()
    journal = UndoJournal(api, target.ref, target.operation_id)
    replicas = hc.deployment_replicas(api, *OPERATOR)
    if replicas is not None:
        journal.record(UndoAction.scale(*OPERATOR, replicas))
    done = remove_hosted_cluster(api, target.ref.namespace, target.ref.name, timeout=timeout_seconds, secrets=secrets,
                                 operator_deployment="/".join(OPERATOR))
    journal.unwind()
    return done


@task(name="remove-from-destination")
def remove_from_destination(target: RunTarget, secrets: list[str], timeout_seconds: float) -> list[str]:
    """The way back: what this operation created on the destination goes, the teardown way (paused,
    scaled to 0, finalizers removed), so the machines' instances are never terminated. `secrets`:
    the HostedCluster namespace's secrets the move copies (only those this operation created go)."""
    return remove_hosted_cluster(target.api_client(), target.ref.namespace, target.ref.name, timeout=timeout_seconds,
                                 only_operation=target.operation_id, secrets=secrets)


@checkpointed(name="dr-restart-ovn-on-destination")
def restart_ovn_pods(target: RunTarget, timeout_seconds: float) -> list[str]:
    """Delete the ovnkube-node pods and wait for new ones on every Ready node."""
    hosted = hosted_access.hosted_api_client(target.api_client(), target.ref)
    try:
        nodes = len(hosted_access.node_readiness(hosted).ready)
        return hosted_access.restart_ovn(hosted, nodes, timeout=timeout_seconds)
    finally:
        hosted.close()

