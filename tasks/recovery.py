"""Tasks for `recover`: find what an operation left behind on a management cluster and put it back."""

from __future__ import annotations

from prefect import task

from hcp.cluster_access import ClusterAccess
from hcp.lease_lock import LeaseLock
from hcp.run_target import RunTarget
from hcp.undo_journal import UndoJournal, find_journals

__all__ = ["find_operation_clusters", "release_operation_lock", "journal_guard"]


@task(name="find-undo-journals")
def find_operation_clusters(access: ClusterAccess, operation_id: str) -> list[str]:
    """NAMESPACE/NAME of every hosted cluster with an undo journal of this operation."""
    api = access.api_client()
    return sorted(str(j.hosted_cluster) for j in find_journals(api, operation_id))


@task(name="release-lock")
def release_operation_lock(target: RunTarget) -> bool:
    """Give back the hosted cluster's lock if this operation still holds it (a dead run's lock)."""
    ref = target.ref
    lock = LeaseLock.for_hosted_cluster(target.api_client(), ref.namespace, ref.name, target.operation_id)
    info = lock.get()
    if info is None or info.holder != target.operation_id:
        return False
    lock.break_lock(target.operation_id, force=True)
    return True


@task(name="read-journal-guard")
def journal_guard(target: RunTarget) -> str | None:
    """Why `recover` must not unwind this operation's journal (and what to run instead), if it must not."""
    return UndoJournal(target.api_client(), target.ref, target.operation_id).guard_message()
