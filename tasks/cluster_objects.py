"""The backup's copy of the HostedCluster and its NodePools: what a restore into a new hosted
cluster re-creates them from (one JSON `v1 List` beside the snapshot)."""

from __future__ import annotations

from kubernetes.client.exceptions import ApiException

from hcp import cluster_objects
from hcp.aws_access import AwsAccess
from hcp.hosted_cluster import HostedClusterError
from hcp.naming import BackupLocation
from hcp.run_target import RunTarget
from hcp.undo_journal import UndoJournal
from tasks.aws import s3_client
from tasks.checkpoint import checkpointed
from tasks.storage import Encryption

__all__ = ["CLUSTER_OBJECTS_FILE", "save_cluster_objects"]

CLUSTER_OBJECTS_FILE = "cluster-objects.json"


@checkpointed(name="save-cluster-objects", retries=2, retry_delay_seconds=3)
def save_cluster_objects(target: RunTarget, aws: AwsAccess, location: str, encryption: Encryption) -> str:
    """Save the HostedCluster and its NodePools, cleaned for re-creation; returns the object key.
    If this operation paused the cluster (a quiesced backup whose undo is still pending), the
    pausedUntil saved is the one from before, as the undo journal recorded it."""
    api = target.api_client()
    ref = target.ref
    try:
        objects = cluster_objects.read_hosted_cluster_objects(api, ref.namespace, ref.name)
    except ApiException as exc:
        raise HostedClusterError(f"{target}: cannot read the HostedCluster and its NodePools to save them: HTTP "
                                 f"{exc.status} {exc.reason}; check that the runner may get hostedclusters and list "
                                 "nodepools.hypershift.openshift.io, then run again with the same operation id") from None
    pause = next((a for a in UndoJournal(api, ref, target.operation_id).pending()
                  if a.kind == "set-paused-until" and a.namespace == ref.namespace and a.name == ref.name), None)
    cleaned = (cluster_objects.cleaned_for_backup(objects, pause.paused_until) if pause is not None
               else cluster_objects.cleaned_for_backup(objects))
    loc = BackupLocation.parse(location)
    key = loc.key(CLUSTER_OBJECTS_FILE)
    s3_client(aws).put_object(Bucket=loc.bucket, Key=key, Body=cluster_objects.to_json(cleaned.to_document()),
                              ContentType="application/json", **encryption.put_args())
    return key
