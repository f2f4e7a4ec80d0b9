"""Replacing the one failed member of a hosted control plane's etcd, as HyperShift's etcd recovery
procedure does it: delete the member's PVC (data-etcd-N) and pod (etcd-N). The StatefulSet creates
both again; the new pod's `reset-member` init container finds an empty data directory and a
functional cluster, removes the old member and adds it back (`etcdctl member remove` / `member add`),
and etcd starts with `--initial-cluster-state existing` and receives the leader's data.

What a careful SRE adds, and this module does:
  * the objects deleted are exactly the failed member's: each delete carries the uid read when the
    member was chosen as a precondition, so a re-run never deletes the replacement;
  * the PVC first, then the pod: pvc-protection keeps the PVC until its pod is gone, and the
    StatefulSet controller waits for the old claim to go before it creates pod and claim again;
  * etcd's strict reconfiguration check refuses `member add` unless the member asked has been
    connected to every voting peer for HealthInterval (5 s): the healthy members must have been up
    that long, or reset-member removes the member and fails to add it back;
  * a member missing from the member list (removed, never added back) is added first: reset-member
    only replaces a member it finds, and starts one it does not find as a new cluster; and the pod
    is deleted in a later second than that add (see `add_member`: reset-member adds the same peer
    URL again, and etcd's member id is the peer URL hashed with the second);
  * done means healthy and caught up: listed as started under a new member id, its endpoint healthy,
    its revision at least the leader's when it first answered, its applied raft index close to the
    leader's.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel

from hcp import pod_exec
from hcp.etcd_health import ETCD_CONTAINER, HealthTable, MemberRow, decide, etcdctl_command, peer_url, \
    read_health
from hcp.etcd_member import EtcdMemberError
from hcp.pod_exec import ExecError
from hcp.waits import WaitTimeout, wait_for_object

__all__ = ["HEALTH_INTERVAL", "RAFT_INDEX_GAP", "MemberChoice", "Replaced", "CaughtUp", "choose", "replace_member",
           "wait_replacement", "wait_caught_up", "needs_rejoin_repair", "add_member", "delete_exactly"]

HEALTH_INTERVAL = 5.0  # etcdserver.HealthInterval: what the strict reconfiguration check measures connections by
RAFT_INDEX_GAP = 50  # entries a caught-up member's applied index may trail the leader's index
_PEER_MARGIN = 1.0
_CLOCK_MARGIN = 0.25  # seconds: the etcd members' clocks against the runner's (NTP keeps them closer)
_REPAIRS = 2  # per run: re-replacing a replacement that never joined

OnChange = Callable[[str, str, dict[str, Any]], None]  # (event, text, payload)


class MemberChoice(BaseModel):
    """The failed member an operation replaces, and exactly which objects are its (by uid)."""

    member: str
    namespace: str
    pod_uid: str
    claim: str
    claim_uid: str
    member_id: int | None  # its etcd member id; None when etcd no longer lists it
    peer_url: str
    reasons: list[str]
    chosen_at: datetime

    @property
    def member_hex(self) -> str:
        return f"{self.member_id:x}" if self.member_id is not None else "none"


class Replaced(BaseModel):
    choice: MemberChoice
    changes: list[str]  # what this execution did ([] when an earlier run of the operation had done it)
    added_member_id: int | None = None
    finished_at: datetime


class CaughtUp(BaseModel):
    member: str
    member_id: int
    revision: int
    leader: str
    leader_revision: int  # the leader's revision when the new member first answered healthy
    raft_index_gap: int
    healthy_at: datetime
    repairs: list[str]  # replacements of a replacement that never joined (see needs_rejoin_repair)


def choose(table: HealthTable, member: str) -> MemberChoice:
    row = table.row(member)
    if row is None or row.pod is None or row.claim is None:
        raise EtcdMemberError(f"{member} has no pod or no PVC in the health table", namespace=table.namespace,
                              pod=member, step="choose member", next_step="run again once the StatefulSet settled")
    return MemberChoice(member=member, namespace=table.namespace, pod_uid=row.pod.uid, claim=row.claim.name,
                        claim_uid=row.claim.uid, member_id=row.entry.id if row.entry else None,
                        peer_url=peer_url(member, table.namespace), reasons=list(row.reasons),
                        chosen_at=datetime.now(timezone.utc))


def add_member(api: client.ApiClient, namespace: str, via: str, member: str) -> int:
    """`etcdctl member add <member> --peer-urls=<its peer URL>` from a healthy member; the new id.

    Returns no earlier than the next Unix second (plus a margin for the members' clocks): etcd derives
    a new member's id from its peer URLs and the Unix second of the add (membership.NewMember), and
    the replacement's reset-member removes the member added here and adds the same peer URL again. In
    the same second that add gets the id just removed, which etcd refuses as "member not found"
    (ErrIDRemoved), and the replacement starts etcd as a new cluster that the others reject. The
    simulated world recreates a pod within that second; a real management cluster seldom does."""
    argv = ["sh", "-c", etcdctl_command("member", "add", member, f"--peer-urls={peer_url(member, namespace)}",
                                        "-w", "json")]
    try:
        out = pod_exec.run(api, namespace, via, ETCD_CONTAINER, argv, timeout=60).text
        added = int(json.loads(out)["member"]["ID"])
    except (ExecError, ValueError, KeyError, TypeError) as e:
        raise EtcdMemberError(f"member add {member} failed: {e}", namespace=namespace, pod=via, step="member add",
                              next_step="etcd refuses it unless every voting member has been connected for 5 s "
                                        "(strict reconfiguration check): run again with the same operation id") from e
    time.sleep(max(0.0, math.floor(time.time()) + 1 + _CLOCK_MARGIN - time.time()))
    return added


def delete_exactly(api: client.ApiClient, kind: str, namespace: str, name: str, uid: str) -> bool:
    """Delete the object `name` only if it is still the one with `uid`; True if this call deleted it,
    False if it is gone or another object (a replacement) now has that name."""
    core = client.CoreV1Api(api)
    body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid), propagation_policy="Background")
    try:
        if kind == "pvc":
            core.delete_namespaced_persistent_volume_claim(name, namespace, body=body)
        else:
            core.delete_namespaced_pod(name, namespace, body=body)
    except ApiException as e:
        if e.status in (404, 409):  # gone; or the uid precondition failed: not the object we chose
            return False
        raise
    return True


def _peer_uptime_wait(table: HealthTable, member: str) -> float:
    """Seconds until every healthy member has run its etcd for HealthInterval (plus a margin)."""
    waits = [HEALTH_INTERVAL + _PEER_MARGIN - up for r in table.rows
             if r.name != member and r.verdict == "healthy" and r.pod is not None
             and (up := r.pod.uptime(table.read_at)) is not None]
    return max([0.0, *waits])


def _healthy_peer(table: HealthTable, member: str) -> str:
    peers = [r for r in table.rows if r.name != member and r.verdict == "healthy" and r.pod is not None]
    if not peers:
        raise EtcdMemberError("no healthy member to run etcdctl in", namespace=table.namespace, step="member add",
                              next_step="quorum is gone: use etcd-restore")
    leader = table.leader
    return min(peers, key=lambda r: (r.name != leader, r.name)).name  # the leader: no forwarding


def replace_member(api: client.ApiClient, choice: MemberChoice, *, restore: list[str], on_change: OnChange,
                   cluster: str | None = None) -> Replaced:
    """Delete the chosen member's PVC then pod, after checking right before that they are still the
    failed member's and quorum holds. Idempotent: what is already gone is not deleted again, and a
    replacement (another uid) is never touched."""
    ns, member = choice.namespace, choice.member
    changes: list[str] = []
    added: int | None = None
    for _ in range(3):
        table = read_health(api, ns, cluster=cluster)
        row = table.row(member)
        pod, claim = (row.pod, row.claim) if row else (None, None)
        claim_ours = claim is not None and claim.uid == choice.claim_uid and not claim.deleting
        pod_ours = pod is not None and pod.uid == choice.pod_uid and not pod.deleting
        if not claim_ours:
            break  # the PVC is gone or going: an earlier run of this operation deleted it; the pod follows
        if not pod_ours:
            raise EtcdMemberError(
                f"the pod {member} is no longer the one chosen at {choice.chosen_at:%H:%M:%S} (uid {choice.pod_uid}) "
                "while its PVC is: someone else replaced the pod. Nothing was deleted", namespace=ns, pod=member,
                step="re-check before deleting", cluster=cluster,
                next_step="read the health table again and start a new operation if a member is still failing")
        decision = decide(table, member, restore)
        if decision.kind != "replace" or decision.member != member:
            raise EtcdMemberError(f"re-checked right before deleting: {decision.message}", namespace=ns, pod=member,
                                  step="re-check before deleting", cluster=cluster,
                                  next_step="nothing was deleted; read the report's health table")
        wait = _peer_uptime_wait(table, member)
        if wait > 0:
            time.sleep(wait)  # etcd's check is against a fixed instant: each peer's start + HealthInterval
            continue  # and read everything again: the wait may have changed the picture
        if row is not None and row.entry is None:
            via = _healthy_peer(table, member)
            added = add_member(api, ns, via, member)
            text = (f"added member {member} ({peer_url(member, ns)}) back to etcd as {added:x}: it was missing from "
                    "the member list, and reset-member only replaces a member it finds")
            changes.append(text)
            on_change("member-added", text, {"member": member, "member_id": f"{added:x}"})
        if delete_exactly(api, "pvc", ns, choice.claim, choice.claim_uid):
            text = (f"deleted PVC {ns}/{choice.claim} (uid {choice.claim_uid}) of the failed member {member}: "
                    "Terminating until its pod is gone")
            changes.append(text)
            on_change("pvc-deleted", text, {"pvc": f"{ns}/{choice.claim}", "uid": choice.claim_uid})
        break
    else:
        raise EtcdMemberError("the healthy members kept restarting while waiting for them to stay up 6 s",
                              namespace=ns, pod=member, step="re-check before deleting", cluster=cluster,
                              next_step="nothing was deleted; find out why the members restart")
    if delete_exactly(api, "pod", ns, member, choice.pod_uid):
        text = f"deleted pod {ns}/{member} (uid {choice.pod_uid}): the StatefulSet recreates it with a new, empty PVC"
        changes.append(text)
        on_change("pod-deleted", text, {"pod": f"{ns}/{member}", "uid": choice.pod_uid})
    return Replaced(choice=choice, changes=changes, added_member_id=added, finished_at=datetime.now(timezone.utc))


def _bound_new(old_uid: str) -> Callable[[Any], bool]:
    def check(pvc: client.V1PersistentVolumeClaim | None) -> bool:
        return pvc is not None and pvc.metadata.uid != old_uid and pvc.metadata.deletion_timestamp is None and \
            (pvc.status.phase if pvc.status else None) == "Bound"
    return check


def _running_new(old_uid: str) -> Callable[[Any], bool]:
    def check(pod: client.V1Pod | None) -> bool:
        return pod is not None and pod.metadata.uid != old_uid and pod.metadata.deletion_timestamp is None and \
            (pod.status.phase if pod.status else None) == "Running"
    return check


def wait_replacement(api: client.ApiClient, choice: MemberChoice, *, timeout: float) -> tuple[str, str]:
    """Until the StatefulSet has a new PVC (Bound) and a new pod (Running: its init containers,
    reset-member among them, have completed); returns their uids."""
    core = client.CoreV1Api(api)
    ns, deadline = choice.namespace, time.monotonic() + timeout
    try:
        pvc = wait_for_object(core.list_namespaced_persistent_volume_claim, choice.claim, _bound_new(choice.claim_uid),
                              timeout=timeout, what=f"a new PVC {ns}/{choice.claim}, Bound", namespace=ns)
        pod = wait_for_object(core.list_namespaced_pod, choice.member, _running_new(choice.pod_uid),
                              timeout=max(1.0, deadline - time.monotonic()),
                              what=f"a new pod {ns}/{choice.member}, Running", namespace=ns)
    except WaitTimeout as exc:
        last = exc.last
        seen = "missing" if last is None else (f"uid {last.metadata.uid}, "
                                               f"{'Terminating, ' if last.metadata.deletion_timestamp else ''}"
                                               f"{(last.status.phase if last.status else None) or 'no status'}")
        raise EtcdMemberError(f"{exc} (last seen: {seen})", namespace=ns, pod=choice.member,
                              step="wait for the new PVC and pod",
                              next_step=f"check `oc -n {ns} get pvc,pods -l app=etcd` and `oc -n {ns} get events`; "
                                        "a PVC stays Terminating while a pod uses it") from None
    return pvc.metadata.uid, pod.metadata.uid


def needs_rejoin_repair(row: MemberRow | None, choice: MemberChoice, members_known: bool) -> bool:
    """The replacement's etcd will never join: its pod is not the one replaced and has initialized
    (reset-member has run), and etcd lists no member for it, or lists it unstarted while the
    replacement's etcd has already exited. That is what reset-member leaves when its `member remove`
    worked and `member add` did not: the retried init container finds no member and starts etcd as a
    new cluster, which the others reject. Its data is not the cluster's: replacing it again is safe."""
    if row is None or row.pod is None or not members_known:
        return False
    pod = row.pod
    if pod.uid == choice.pod_uid or pod.deleting or not pod.initialized:
        return False
    if row.entry is None:
        return True
    return not row.entry.started and (pod.last_exit_code is not None or pod.etcd == "terminated")


def wait_caught_up(api: client.ApiClient, choice: MemberChoice, *, timeout: float, on_change: OnChange,
                   cluster: str | None = None, interval: float = 0.2) -> CaughtUp:
    """Until the replacement is healthy and caught up (see the module docstring). etcd's state has no
    watch: the table is read again at growing intervals (0.2 s to 3 s; each read is itself a few
    round trips), and at once after the member first answers healthy (it usually has the leader's
    revision by the next read). A replacement that never joins is replaced once more (at most twice
    a run), adding its member back first if needed."""
    ns, member = choice.namespace, choice.member
    deadline = time.monotonic() + timeout
    target: tuple[str, int] | None = None  # (leader, its revision) when the new member first answered
    repairs: list[str] = []
    repaired: set[str] = set()  # pod uids of replacements replaced again
    while True:
        catching_up = False
        table = read_health(api, ns, cluster=cluster)
        row = table.row(member)
        leader = table.row(table.leader) if table.leader else None
        if row is not None and row.verdict == "healthy" and row.entry is not None and row.status is not None and \
                row.entry.id != choice.member_id and leader is not None and leader.status is not None:
            if target is None or target[0] != leader.name:
                target = (leader.name, leader.status.revision)
            gap = max(0, leader.status.raft_index - row.status.raft_applied_index)
            if row.status.revision >= target[1] and gap <= RAFT_INDEX_GAP:
                return CaughtUp(member=member, member_id=row.entry.id, revision=row.status.revision,
                                leader=leader.name, leader_revision=target[1], raft_index_gap=gap,
                                healthy_at=datetime.now(timezone.utc), repairs=repairs)
            catching_up = True  # healthy, not yet at the leader's revision: read again at once
        elif needs_rejoin_repair(row, choice, table.members is not None) and row is not None and row.pod and \
                row.claim and row.pod.uid not in repaired and len(repaired) < _REPAIRS:
            repaired.add(row.pod.uid)
            repairs += _repair(api, table, row, on_change)
        if time.monotonic() >= deadline:
            raise EtcdMemberError(f"{member} is not healthy and caught up after {timeout:.0f} s: {table.summary()}",
                                  namespace=ns, pod=member, step="wait for the member to catch up", cluster=cluster,
                                  next_step=f"check `oc -n {ns} logs {member} -c etcd` and `-c reset-member`")
        if not catching_up:
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(interval * 1.5, 3.0)


def _init_log(api: client.ApiClient, namespace: str, pod: str) -> str:
    """The last lines reset-member printed (why the member was not added back), its failed run's
    first when it ran twice (`logs --previous`: the retry only says there is nothing to do), or why
    they cannot be read."""
    core = client.CoreV1Api(api)
    said = []
    for previous in (True, False):
        try:
            text = core.read_namespaced_pod_log(pod, namespace, container="reset-member", tail_lines=4,
                                                previous=previous, _preload_content=False).data.decode(errors="replace")
        except ApiException as e:
            if previous:
                continue  # it ran once
            return f"(its reset-member log cannot be read: {e.status} {e.reason})"
        lines = " / ".join(line.strip() for line in text.splitlines() if line.strip())
        said.append(f"{'(failed run) ' if previous else ''}{lines[-600:]}")
    return " // then: ".join(said)


def _repair(api: client.ApiClient, table: HealthTable, row: MemberRow, on_change: OnChange) -> list[str]:
    ns, member = table.namespace, row.name
    assert row.pod is not None and row.claim is not None
    done = [f"the replacement {member} (pod uid {row.pod.uid}) will never join: "
            f"{'etcd lists no member for it' if row.entry is None else 'its member is unstarted and its etcd exited'}"
            f"; reset-member said: {_init_log(api, ns, member)}"]
    if row.entry is None:
        added = add_member(api, ns, _healthy_peer(table, member), member)
        done.append(f"added member {member} back to etcd as {added:x}: reset-member had removed it and not added it")
        on_change("member-added", done[-1], {"member": member, "member_id": f"{added:x}"})
    for kind, name, uid in (("pvc", row.claim.name, row.claim.uid), ("pod", member, row.pod.uid)):
        if delete_exactly(api, kind, ns, name, uid):
            done.append(f"deleted the replacement's {'PVC' if kind == 'pvc' else 'pod'} {ns}/{name} (uid {uid}): "
                        "its etcd never joined the cluster")
            on_change(f"{kind}-deleted", done[-1], {kind: f"{ns}/{name}", "uid": uid})
    return done
