"""Checkpoints: a step that changes something persists its result under operation id + cluster +
step, so a retried flow run, or a new run with the same operation id, skips the steps that
completed and continues at the one that failed (Prefect reports them as Cached).

The key is ours (never Prefect's default INPUTS policy, which hashes arguments such as API
clients and silently stops persisting when it cannot). Where results go is Prefect's own result
storage setting: `PREFECT_LOCAL_STORAGE_PATH` (a local path; the default ~/.prefect/storage) or
`PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK` (e.g. an `s3-bucket/<name>` block from prefect-aws).
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from prefect import task
from prefect.context import TaskRunContext
from prefect.results import get_result_store

from hcp.run_target import RunTarget

__all__ = ["checkpointed", "checkpoint_key", "completed_result"]

F = TypeVar("F", bound=Callable[..., Any])


def _key(target: RunTarget, task_name: str) -> str:
    ref = target.ref
    return f"{target.operation_id}--{ref.namespace}--{ref.name}--{task_name}"


def checkpoint_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    target = parameters.get("target")
    if not isinstance(target, RunTarget):
        raise TypeError(f"checkpointed task {context.task.name} needs a `target: RunTarget` parameter")
    return _key(target, context.task.name)


def checkpointed(**task_options: Any) -> Callable[[F], Any]:
    """@checkpointed(name=...): a Prefect task whose first parameter is `target: RunTarget`."""
    def wrap(fn: F) -> Any:
        return task(cache_key_fn=checkpoint_key, persist_result=True, result_serializer="json", **task_options)(fn)
    return wrap


def completed_result(step: Any, target: RunTarget) -> Any | None:
    """The persisted result of `step` for this operation, or None when it has not completed.

    Flows use it to decide whether steps around a checkpoint are needed at all (e.g. no need to
    quiesce again when the quiesced snapshot was already taken)."""
    store = get_result_store().update_for_task(step)
    key = _key(target, step.name)
    if not store.exists(key):
        return None
    return store.read(key).result
