"""The undo journal: how to put back what a runbook lowered, kept on the management cluster.

A step that lowers availability records the original state (replica counts, pausedUntil) here
BEFORE it changes anything. The journal is a ConfigMap in the hosted cluster's namespace, so it
outlives the process: a run that is killed, or suspended and then timed out, runs no in-process
hook, and the next run with the same operation id (or `hcp-runbooks recover OPERATION_ID`) finds
the journal and puts everything back. Unwinding applies pending actions newest first, marks each
done as it goes, and is idempotent: setting a replica count or pausedUntil twice is harmless.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Literal

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, TypeAdapter

from hcp import hosted_cluster as hc
from hcp.naming import HostedClusterRef, validate_operation_id

__all__ = ["UndoAction", "UndoJournal", "UndoJournalError", "JOURNAL_PREFIX", "LABEL_OPERATION", "GUARD_ANNOTATION",
           "find_journals"]

JOURNAL_PREFIX = "hcp-runbooks-undo-"
LABEL_OPERATION = "hcp-runbooks/operation-id"
LABEL_HOSTED_CLUSTER = "hcp-runbooks/hosted-cluster"
_KEY = "actions.json"
# Set by a runbook whose undo is not this journal alone (dr-migrate: the destination's copy must go
# first): `recover` refuses such a journal and prints the message, which names the right command.
GUARD_ANNOTATION = "hcp-runbooks/recover-refused"
_ATTEMPTS = 8


class UndoJournalError(RuntimeError):
    """The journal could not be read, written or unwound."""


class UndoAction(BaseModel):
    """One thing to put back. `id` names what it restores, so recording it again is a no-op."""

    id: str
    kind: Literal["scale-deployment", "scale-statefulset", "set-paused-until", "set-nodepool-paused-until",
                  "delete-deployment"]
    namespace: str
    name: str
    replicas: int | None = None  # scale-*: the original count
    paused_until: str | None = None  # set-paused-until: the original value (None: not paused)
    state: Literal["pending", "done", "dropped"] = "pending"  # dropped: past a point of no return, never undone
    recorded_at: str = ""
    done_at: str | None = None

    @classmethod
    def scale(cls, namespace: str, name: str, replicas: int) -> UndoAction:
        return cls(id=f"scale:{namespace}/{name}", kind="scale-deployment", namespace=namespace, name=name,
                   replicas=replicas)

    @classmethod
    def scale_statefulset(cls, namespace: str, name: str, replicas: int) -> UndoAction:
        return cls(id=f"scale-statefulset:{namespace}/{name}", kind="scale-statefulset", namespace=namespace,
                   name=name, replicas=replicas)

    @classmethod
    def delete_deployment(cls, namespace: str, name: str) -> UndoAction:
        """For a temporary Deployment this operation creates (e.g. a data pod holding volumes)."""
        return cls(id=f"delete-deployment:{namespace}/{name}", kind="delete-deployment", namespace=namespace,
                   name=name)

    @classmethod
    def paused_until_of(cls, ref: HostedClusterRef, original: str | None) -> UndoAction:
        return cls(id=f"paused-until:{ref}", kind="set-paused-until", namespace=ref.namespace, name=ref.name,
                   paused_until=original)

    @classmethod
    def node_pool_paused_until(cls, namespace: str, name: str, original: str | None) -> UndoAction:
        return cls(id=f"nodepool-paused-until:{namespace}/{name}", kind="set-nodepool-paused-until",
                   namespace=namespace, name=name, paused_until=original)

    @property
    def description(self) -> str:
        if self.kind in ("scale-deployment", "scale-statefulset"):
            return f"scale {self.kind.removeprefix('scale-')} {self.namespace}/{self.name} back to {self.replicas}"
        if self.kind == "delete-deployment":
            return f"delete the temporary deployment {self.namespace}/{self.name}"
        value = "unset (reconciliation active)" if self.paused_until is None else repr(self.paused_until)
        return f"set pausedUntil of {self._resource} {self.namespace}/{self.name} back to {value}"

    @property
    def _resource(self) -> str:
        return "nodepool" if self.kind == "set-nodepool-paused-until" else "hostedcluster"

    @property
    def command(self) -> str:
        if self.kind in ("scale-deployment", "scale-statefulset"):
            return f"oc -n {self.namespace} scale {self.kind.removeprefix('scale-')}/{self.name} --replicas={self.replicas}"
        if self.kind == "delete-deployment":
            return f"oc -n {self.namespace} delete deployment/{self.name} --ignore-not-found"
        value = "null" if self.paused_until is None else json.dumps(self.paused_until)
        return (f"oc -n {self.namespace} patch {self._resource}/{self.name} --type=merge "
                f"-p '{{\"spec\":{{\"pausedUntil\":{value}}}}}'")

    def apply(self, api: client.ApiClient) -> None:
        if self.kind == "scale-deployment":
            assert self.replicas is not None
            if hc.deployment_replicas(api, self.namespace, self.name) is None:
                return  # deleted since (e.g. the hosted cluster went away): nothing to put back
            hc.scale_deployment(api, self.namespace, self.name, self.replicas)
        elif self.kind == "delete-deployment":
            try:
                client.AppsV1Api(api).delete_namespaced_deployment(self.name, self.namespace,
                                                                   propagation_policy="Foreground")
            except ApiException as exc:
                if exc.status != 404:
                    raise
        elif self.kind == "scale-statefulset":
            assert self.replicas is not None
            if hc.statefulset_replicas(api, self.namespace, self.name) is None:
                return
            hc.scale_statefulset(api, self.namespace, self.name, self.replicas)
        elif self.kind == "set-nodepool-paused-until":
            try:
                hc.set_node_pool_paused_until(api, self.namespace, self.name, self.paused_until)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        else:
            try:
                hc.set_paused_until(api, HostedClusterRef(self.namespace, self.name), self.paused_until)
            except ApiException as exc:
                if exc.status != 404:
                    raise


_ACTIONS = TypeAdapter(list[UndoAction])


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # sub-second: downtime is measured from it


class UndoJournal:
    """The journal of one operation on one hosted cluster (ConfigMap `hcp-runbooks-undo-<op>`)."""

    def __init__(self, api: client.ApiClient, hosted_cluster: HostedClusterRef, operation_id: str) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.hosted_cluster = hosted_cluster
        self.operation_id = validate_operation_id(operation_id)
        self.namespace = hosted_cluster.namespace
        # object names are lowercase (ids carry T and Z); one journal per hosted cluster and operation
        self.name = f"{JOURNAL_PREFIX}{hosted_cluster.name}-{operation_id.lower()}"[:253]

    def _read(self) -> tuple[client.V1ConfigMap | None, list[UndoAction]]:
        try:
            cm = self.core.read_namespaced_config_map(self.name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None, []
            raise UndoJournalError(f"cannot read undo journal {self.namespace}/{self.name}: HTTP {exc.status}") from None
        return cm, _ACTIONS.validate_json((cm.data or {}).get(_KEY, "[]"))

    def actions(self) -> list[UndoAction]:
        return self._read()[1]

    def pending(self) -> list[UndoAction]:
        return [a for a in self.actions() if a.state == "pending"]

    def _write(self, cm: client.V1ConfigMap | None, actions: list[UndoAction]) -> bool:
        """Create or replace (optimistic concurrency); False when someone else wrote first."""
        data = {_KEY: _ACTIONS.dump_json(actions).decode()}
        try:
            if cm is None:
                self.core.create_namespaced_config_map(self.namespace, client.V1ConfigMap(
                    metadata=client.V1ObjectMeta(name=self.name, labels={
                        LABEL_OPERATION: self.operation_id, LABEL_HOSTED_CLUSTER: self.hosted_cluster.name,
                        "app.kubernetes.io/managed-by": "hcp-runbooks"}),
                    data=data))
            else:
                cm.data = data
                self.core.replace_namespaced_config_map(self.name, self.namespace, cm)
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise UndoJournalError(f"cannot write undo journal {self.namespace}/{self.name}: HTTP {exc.status} "
                                   f"{exc.reason}; nothing was changed yet") from None
        return True

    def record(self, action: UndoAction) -> UndoAction:
        """Record how to undo a change, before making it. If the same thing is already pending
        (a re-run after a kill), the first record wins: it holds the true original state."""
        for _ in range(_ATTEMPTS):
            cm, actions = self._read()
            existing = next((a for a in actions if a.id == action.id and a.state == "pending"), None)
            if existing is not None:
                return existing
            entry = action.model_copy(update={"state": "pending", "recorded_at": _now(), "done_at": None})
            if self._write(cm, actions + [entry]):
                return entry
            time.sleep(0.05)
        raise UndoJournalError(f"undo journal {self.namespace}/{self.name} changed under us {_ATTEMPTS} times")

    def unwind(self) -> list[UndoAction]:
        """Apply every pending action, newest first; returns what was applied."""
        applied: list[UndoAction] = []
        while True:
            cm, actions = self._read()
            index = next((i for i in range(len(actions) - 1, -1, -1) if actions[i].state == "pending"), None)
            if index is None:
                return applied
            action = actions[index]
            try:
                action.apply(self.api)
            except ApiException as exc:
                raise UndoJournalError(
                    f"could not {action.description} (HTTP {exc.status} {exc.reason}); do it by hand: "
                    f"{action.command}, then `hcp-runbooks recover {self.operation_id}`") from None
            actions[index] = action.model_copy(update={"state": "done", "done_at": _now()})
            if self._write(cm, actions):
                applied.append(actions[index])
            # on a conflict the action is applied again after a re-read: harmless, it is idempotent

    def guard(self, message: str) -> None:
        """Make `recover` refuse this journal with `message` (creates the journal if needed)."""
        for _ in range(_ATTEMPTS):
            cm, actions = self._read()
            if cm is None:
                if not self._write(None, actions):
                    continue
                cm, actions = self._read()
                if cm is None:
                    continue
            annotations = dict(cm.metadata.annotations or {})
            if annotations.get(GUARD_ANNOTATION) == message:
                return
            annotations[GUARD_ANNOTATION] = message
            cm.metadata.annotations = annotations
            if self._write(cm, actions):
                return
            time.sleep(0.05)
        raise UndoJournalError(f"undo journal {self.namespace}/{self.name} changed under us {_ATTEMPTS} times")

    def guard_message(self) -> str | None:
        cm, _ = self._read()
        return None if cm is None else (cm.metadata.annotations or {}).get(GUARD_ANNOTATION)

    def drop_pending(self) -> list[UndoAction]:
        """Past a point of no return (dr-migrate's teardown): nothing pending is ever undone. Returns
        what was dropped; the journal then closes like a fully unwound one."""
        for _ in range(_ATTEMPTS):
            cm, actions = self._read()
            dropped = [a for a in actions if a.state == "pending"]
            if not dropped:
                return []
            updated = [a.model_copy(update={"state": "dropped", "done_at": _now()}) if a.state == "pending" else a
                       for a in actions]
            if self._write(cm, updated):
                return dropped
            time.sleep(0.05)
        raise UndoJournalError(f"undo journal {self.namespace}/{self.name} changed under us {_ATTEMPTS} times")

    def close(self) -> bool:
        """Delete the journal when nothing is pending; True when it is gone."""
        cm, actions = self._read()
        if cm is None:
            return True
        if any(a.state == "pending" for a in actions):
            return False
        try:
            self.core.delete_namespaced_config_map(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
        return True


def find_journals(api: client.ApiClient, operation_id: str) -> list[UndoJournal]:
    """Every journal of an operation on this management cluster (any namespace)."""
    validate_operation_id(operation_id)
    listing = client.CoreV1Api(api).list_config_map_for_all_namespaces(label_selector=f"{LABEL_OPERATION}={operation_id}")
    return [UndoJournal(api, HostedClusterRef(cm.metadata.namespace, cm.metadata.labels[LABEL_HOSTED_CLUSTER]),
                        operation_id) for cm in listing.items]
