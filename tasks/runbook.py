"""What every runbook run shares: the timeline of its steps, the per-hosted-cluster lock, the
undo journal, events, and the report artifact.

A flow opens `with Runbook(...) as rb:` and calls its steps through `rb.step(task, ...)`. If a
step fails or the run is cancelled, everything the journal holds is undone (newest first) and
the report says so; a suspension for approval keeps the lock and the journal for the resumed run.
"""

from __future__ import annotations

import contextvars
import logging
import time
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime, timezone
from functools import partial
from types import TracebackType
from typing import Any, Callable, Iterable, Literal
from uuid import UUID

from kubernetes import client
from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import MissingContextError, Pause
from prefect.runtime import flow_run
from pydantic import BaseModel

from hcp.lease_lock import LeaseLock, LockHeldError, LockInfo
from hcp.naming import new_operation_id, utc_timestamp
from hcp.report import RunReport, StepRecord
from hcp.run_target import RunTarget
from hcp.undo_journal import UndoAction, UndoJournal
from tasks.events import emit_change

__all__ = ["Runbook", "RunbookError", "LockBusy", "operation_id_for_run", "artifact_key", "describe_error",
           "run_parameters", "side_by_side"]

LOCK_SECONDS = 60


class RunbookError(RuntimeError):
    """A runbook stopped on purpose (bad input, a failed check); the message says what to do."""


class LockBusy(RunbookError):
    """Another operation holds the hosted cluster's lock."""


def operation_id_for_run(given: str | None) -> str:
    """The operation id: the one given, else one derived from the flow run, so that a retry of the
    same flow run (UI, `prefect flow-run retry`) continues the same operation."""
    if given:
        return given
    run_id = flow_run.id
    if not run_id:
        return new_operation_id()
    # The run's creation time, not its scheduled time: a retry reschedules the same run. The engine's
    # context holds the run as the server returned it (no round trip); read it only without one.
    context = FlowRunContext.get()
    created = context.flow_run.created if context is not None and context.flow_run is not None else None
    if created is None:
        with get_client(sync_client=True) as c:
            created = c.read_flow_run(UUID(str(run_id))).created
    when = created.astimezone(timezone.utc) if created else datetime.now(timezone.utc)
    return f"op-{utc_timestamp(when)}-{str(run_id).replace('-', '')[:6]}"


def run_parameters() -> tuple[dict[str, Any], str, str]:
    """For run names: the running flow's `params` as a dict, its management cluster's name, and
    " (dry run)" when it is one."""
    params: Any = flow_run.parameters.get("params") or {}
    if isinstance(params, BaseModel):
        params = params.model_dump()
    mgmt = params.get("management_cluster") or (params.get("management") or {}).get("context") or "?"
    return params, mgmt, " (dry run)" if params.get("dry_run") else ""


def side_by_side(*calls: Callable[[], Any]) -> list[Any]:
    """Run independent lines of steps at once and return their results in order. Each runs in a
    thread with a copy of the caller's context (as Prefect's own thread pool runs tasks), so its
    steps are task runs of the flow, each recorded in the timeline with its own start and duration;
    every task makes its own ApiClient (execs that overlap must not share one). All are waited for;
    then the first failure, in the order given, is raised."""
    with ThreadPoolExecutor(max_workers=max(1, len(calls)), thread_name_prefix="side-by-side") as pool:
        futures = [pool.submit(contextvars.copy_context().run, call) for call in calls]
        wait(futures)
    return [f.result() for f in futures]


def each_with_own_client(target: RunTarget, work: Callable[[client.ApiClient, Any], Any], items: Iterable[Any]) -> list[Any]:
    """`work(api, item)` for every item side by side, each with an ApiClient of its own, closed
    after (the client's exec swaps its ApiClient's request method while it runs: execs that overlap
    must not share one)."""
    def one(item: Any) -> Any:
        api = target.api_client()
        try:
            return work(api, item)
        finally:
            api.close()

    return side_by_side(*[partial(one, item) for item in items])


def artifact_key(*parts: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    raw = "-".join(parts).lower()
    return "".join(c if c.isalnum() and c.isascii() else "-" for c in raw).strip("-")[:200]


def describe_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, RunbookError) else f"{type(exc).__name__}: {text}"


class Runbook:
    def __init__(self, runbook: str, target: RunTarget, *, dry_run: bool = False) -> None:
        self.runbook = runbook
        self.target = target
        self.dry_run = dry_run
        self.report = RunReport(runbook=runbook, operation_id=target.operation_id,
                                management_cluster=target.management_cluster, hosted_cluster=target.hosted_cluster,
                                dry_run=dry_run)
        self._api: client.ApiClient | None = None
        self.lock: LeaseLock | None = None
        self.journal: UndoJournal | None = None
        self.outcome: Literal["succeeded", "failed", "suspended", "planned"] | None = None
        self._cleanups: list[tuple[str, Callable[[], Any]]] = []
        try:
            self.log: logging.Logger | logging.LoggerAdapter[logging.Logger] = get_run_logger()
        except MissingContextError:
            self.log = logging.getLogger(f"hcp_runbooks.{runbook}")

    # -- access --------------------------------------------------------------------------------

    @property
    def api(self) -> client.ApiClient:
        if self._api is None:
            self._api = self.target.api_client()
        return self._api

    # -- steps -----------------------------------------------------------------------------------

    def step(self, task: Any, *args: Any, detail: str = "", **kwargs: Any) -> Any:
        """Run a Prefect task as a step of the timeline; checkpointed steps that completed in an
        earlier run of this operation come back as 'resumed'. Raises what the task raised."""
        if self.lock is not None:
            self.lock.check()  # never act on a cluster whose lock we lost
        started, t0 = datetime.now(timezone.utc), time.monotonic()
        try:
            state = task(*args, return_state=True, **kwargs)
            result = state.result()
        except BaseException as exc:
            self.report.steps.append(StepRecord(name=task.name, started_at=started, seconds=time.monotonic() - t0,
                                                outcome="failed", detail=describe_error(exc)[:300]))
            raise
        outcome = "resumed" if state.name == "Cached" else "done"
        self.report.steps.append(StepRecord(name=task.name, started_at=started, seconds=time.monotonic() - t0,
                                            outcome=outcome, detail=detail or ("from the checkpoint of an earlier run"
                                                                               if outcome == "resumed" else "")))
        return result

    def skipped(self, name: str, why: str) -> None:
        self.report.steps.append(StepRecord(name=name, started_at=datetime.now(timezone.utc), seconds=0.0,
                                            outcome="skipped", detail=why))

    def event(self, what: str, **payload: Any) -> None:
        try:
            emit_change(self.target, self.runbook, what, **payload)
        except Exception as exc:  # events are for observers; never fail a runbook over one
            self.log.warning("could not emit event %s: %s", what, exc)

    def changed(self, what: str, text: str, **payload: Any) -> None:
        """Record a change in the report and as an event."""
        self.report.changes.append(text)
        self.event(what, change=text, **payload)

    # -- lock ------------------------------------------------------------------------------------

    def lock_state(self) -> LockInfo | None:
        """Who holds the hosted cluster's lock (read-only; dry runs report it)."""
        ref = self.target.ref
        return LeaseLock.for_hosted_cluster(self.api, ref.namespace, ref.name, self.target.operation_id).get()

    def acquire_lock(self, *, break_held_by: str | None = None, approve_break: Any = None) -> None:
        """Take the hosted cluster's lock, or fail fast naming its holder. With `break_held_by`
        (the holder of a lock left by a dead run), `approve_break(info)` is asked first."""
        ref = self.target.ref
        lock = LeaseLock.for_hosted_cluster(self.api, ref.namespace, ref.name, self.target.operation_id, LOCK_SECONDS)
        try:
            info = lock.acquire()
        except LockHeldError as exc:
            if not break_held_by or exc.holder != break_held_by or approve_break is None:
                hint = (f"; if that run is dead, start this one with break_lock_held_by={exc.holder!r} (asks for "
                        "approval)" if exc.holder != break_held_by else "")
                expires = f"{exc.expires_at:%H:%M:%S} UTC" if exc.expires_at else "unknown"
                raise LockBusy(f"{self.target} is locked by operation {exc.holder!r} (expires {expires} unless "
                               f"renewed){hint}. Nothing was changed.") from None
            approve_break(exc.info)
            lock.break_lock(break_held_by, force=True)
            self.changed("lock-broken", f"broke the lock held by {break_held_by}")
            info = lock.acquire()
        self.lock = lock
        self.report.steps.append(StepRecord(name="take-lock", started_at=datetime.now(timezone.utc), seconds=0.0,
                                            outcome="done", detail=f"Lease {info.namespace}/{info.name}"))
        lock.start_renewing()
        self.attach_journal()
        self.event("lock-acquired", lease=f"{info.namespace}/{info.name}")

    def hold_lock_while_suspended(self, seconds: int) -> None:
        """A suspended run renews nothing: make the Lease outlive the wait (and expire with it)."""
        if self.lock is not None:
            self.lock.duration_seconds = seconds + LOCK_SECONDS
            self.lock.renew()

    def resumed_after_gate(self) -> None:
        if self.lock is not None and self.lock.duration_seconds != LOCK_SECONDS:
            self.lock.duration_seconds = LOCK_SECONDS
            self.lock.renew()

    # -- undo ------------------------------------------------------------------------------------

    def attach_journal(self) -> UndoJournal:
        """The operation's undo journal on this hosted cluster (closed when the run ends)."""
        if self.journal is None:
            self.journal = UndoJournal(self.api, self.target.ref, self.target.operation_id)
        return self.journal

    def record_undo(self, action: UndoAction) -> UndoAction:
        if self.journal is None:
            raise RunbookError("internal: record_undo before acquire_lock")
        return self.journal.record(action)

    def unwind(self, why: Literal["restore", "undo"]) -> list[UndoAction]:
        """Apply the journal newest first: as the planned restore step, or as the undo of a failure."""
        if self.journal is None:
            return []
        applied = self.journal.unwind()
        for action in applied:
            if why == "undo":
                self.report.undone.append(action.description)
                self.event("undone", action=action.description)
            else:
                self.changed("restored", action.description)
        return applied

    def cleanup_on_failure(self, description: str, fn: Callable[[], Any]) -> None:
        """Run `fn` if the run fails (before the undo), e.g. remove a temporary file from a pod."""
        self._cleanups.append((description, fn))

    def drop_cleanups(self) -> None:
        """Past a point of no return: a later failure must not run the cleanups registered before it."""
        self._cleanups.clear()

    def hold(self, why: str) -> None:
        """End without undoing anything (the journal stays, pending, for a deliberate decision): when
        undoing would be worse than stopping, e.g. dr-migrate's source must not come back while its
        copy on the destination may still run."""
        self._cleanups.clear()
        self.journal = None
        self.report.undone.append(f"NOTHING UNDONE, on purpose: {why}")

    def _run_cleanups(self) -> None:
        for description, fn in reversed(self._cleanups):
            try:
                fn()
                self.report.undone.append(description)
            except BaseException as exc:
                self.report.undone.append(f"cleanup failed: {description}: {describe_error(exc)}")

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Runbook:
        self.event("started", dry_run=self.dry_run)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        if isinstance(exc, Pause):
            # Suspended for approval: the lock (extended) and the journal wait for the resumed run.
            self.outcome = "suspended"
            if self.lock is not None:
                self.lock.stop_renewing()
            return False
        if exc is not None:
            # Temporary things first (a helper pod may hold a volume the undo gives back), then the undo.
            self._run_cleanups()
            try:
                self.unwind("undo")
            except BaseException as undo_exc:  # keep the original error; say the undo needs a hand
                self.report.undone.append(f"UNDO FAILED: {describe_error(undo_exc)}; run `hcp-runbooks recover "
                                          f"{self.target.operation_id}` once the cause is fixed")
            self.report.finish("failed", describe_error(exc))
            self.outcome = "failed"
        else:
            self.outcome = "planned" if self.dry_run else "succeeded"
            self.report.finish(self.outcome)
        try:
            if self.journal is not None and not self.journal.close():
                self.report.undone.append("the undo journal still has pending actions: run `hcp-runbooks recover "
                                          f"{self.target.operation_id}`")
        finally:
            if self.lock is not None:
                self.lock.release()
            self.event(self.outcome, error=self.report.error or "")
            self.publish()
        return False

    def publish(self) -> None:
        """The report as a markdown artifact (and in the log, for terminals)."""
        markdown = self.report.to_markdown()
        self.log.info("report:\n%s", markdown)
        try:
            create_markdown_artifact(markdown, key=artifact_key(self.runbook, self.target.ref.namespace,
                                                                self.target.ref.name, "report"),
                                     description=f"{self.runbook} {self.target.operation_id}: {self.report.status}")
        except Exception as exc:
            self.log.warning("could not write the report artifact: %s", exc)
