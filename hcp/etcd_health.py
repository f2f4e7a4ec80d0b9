"""The health of a hosted control plane's etcd, as an SRE reads it before touching a member.

Two sources, as in HyperShift's etcd recovery procedure: the pods (`oc get pods -l app=etcd`: phase,
CrashLoopBackOff, Error, restarts) and etcd itself, asked from inside one running member with the
mounted client certificate (`etcdctl member list`, `endpoint health --cluster`, `endpoint status
--cluster`). `read_health` joins them into a `HealthTable`: one row per member of the StatefulSet
(plus any member etcd lists that has no pod), a verdict per row (healthy, failing, starting) and the
quorum math over the voting members etcd lists. `decide` turns a table into what the member
recovery runbook may do: replace exactly one failing member while quorum holds, or refuse.

etcd 3.5's `member list` is linearizable: without quorum it times out, and so do the `--cluster`
commands built on it. Then each running member is asked for its own `endpoint status` (served
without quorum) so the table still says which members run and what revision each holds.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from hcp import pod_exec
from hcp.etcd_member import MEMBER_LABEL, EtcdMemberError, etcdctl_argv
from hcp.hosted_cluster import statefulset_replicas
from hcp.pod_exec import ExecError

__all__ = [
    "STATEFULSET", "DISCOVERY_SERVICE", "CLAIM_TEMPLATE", "SETTLE_SECONDS",
    "PodState", "ClaimState", "MemberEntry", "EndpointHealth", "EndpointStatus", "MemberRow", "HealthTable",
    "Decision", "Verdict", "quorum_size", "fault_tolerance", "member_name", "member_ordinal", "claim_name",
    "peer_url", "pod_state", "claim_state", "classify", "build_table", "read_health", "decide",
    "restore_commands", "restore_advice", "etcdctl_command", "parse_member_list", "parse_endpoint_health",
    "parse_endpoint_status",
]

# HyperShift's etcd StatefulSet (control-plane-operator v2/assets/etcd/statefulset.yaml).
STATEFULSET = "etcd"
DISCOVERY_SERVICE = "etcd-discovery"
CLAIM_TEMPLATE = "data"  # PVCs data-etcd-N
ETCD_CONTAINER = "etcd"
# A member that runs but is not healthy yet is "starting" for this long after its etcd started
# (joining, replaying its WAL); after that it is failing.
SETTLE_SECONDS = 30.0
# Every etcdctl call here is bounded: the dial (etcdctl's default 2 s) and then the request. A
# healthy member answers in milliseconds; a dead one costs the whole timeout.
_DIAL_TIMEOUT = "2s"
_COMMAND_TIMEOUT = "3s"
_EXEC_TIMEOUT = 60.0
_SEPARATOR = "#hcp-runbooks@@"
_MEMBER_NAME = re.compile(r"^etcd-(0|[1-9][0-9]{0,3})$")

Verdict = Literal["healthy", "failing", "starting"]


def quorum_size(voting_members: int) -> int:
    """Members that must agree for etcd to make progress: a majority."""
    return voting_members // 2 + 1


def fault_tolerance(voting_members: int) -> int:
    """Members that can fail while the rest keep quorum."""
    return max(0, (voting_members - 1) // 2)


def member_name(ordinal: int) -> str:
    return f"{STATEFULSET}-{ordinal}"


def member_ordinal(name: str) -> int | None:
    """N of `etcd-N`, None for anything else."""
    m = _MEMBER_NAME.match(name or "")
    return int(m.group(1)) if m else None


def claim_name(member: str) -> str:
    return f"{CLAIM_TEMPLATE}-{member}"


def peer_url(member: str, namespace: str) -> str:
    """The peer URL HyperShift's reset-member registers for a member (`member add --peer-urls`)."""
    return f"https://{member}.{DISCOVERY_SERVICE}.{namespace}.svc:2380"


# -- what Kubernetes says ------------------------------------------------------------------------------

@dataclass(frozen=True)
class PodState:
    """One etcd pod as `oc get pod` shows it, reduced to what decides whether its member is failing."""

    name: str
    uid: str
    phase: str
    deleting: bool
    etcd: Literal["running", "waiting", "terminated", "absent"]
    reason: str | None  # the etcd container's waiting/terminated reason (CrashLoopBackOff, Error, ...)
    restarts: int
    last_exit_code: int | None  # lastState.terminated of the etcd container (why it restarted)
    started_at: datetime | None  # when the running etcd container started
    initialized: bool
    init_problem: str | None  # an init container crash-looping or failed
    claim: str | None  # the PVC mounted as `data`

    @property
    def status(self) -> str:
        """The STATUS column of `oc get pods`."""
        if self.deleting:
            return "Terminating"
        if self.init_problem:
            return "Init:" + self.init_problem.split(":", 1)[-1].strip().split(" ")[0]
        if not self.initialized:
            return "Init" if self.phase == "Pending" else self.phase
        if self.etcd in ("waiting", "terminated") and self.reason:
            return self.reason
        return self.phase

    def uptime(self, now: datetime) -> float | None:
        return (now - self.started_at).total_seconds() if self.started_at else None


@dataclass(frozen=True)
class ClaimState:
    name: str
    uid: str
    phase: str
    deleting: bool


def _container_state(status: Any) -> tuple[str, str | None, datetime | None, int | None]:
    """(running|waiting|terminated|absent, reason, running since, exit code) of a V1ContainerStatus."""
    state = status.state if status is not None else None
    if state is None:
        return "absent", None, None, None
    if state.running is not None:
        return "running", None, state.running.started_at, None
    if state.terminated is not None:
        t = state.terminated
        return "terminated", t.reason or ("Completed" if t.exit_code == 0 else "Error"), None, t.exit_code
    if state.waiting is not None:
        return "waiting", state.waiting.reason, None, None
    return "absent", None, None, None


def pod_state(pod: client.V1Pod) -> PodState:
    status = pod.status or client.V1PodStatus()
    spec = pod.spec or client.V1PodSpec(containers=[])
    etcd_status = next((c for c in status.container_statuses or [] if c.name == ETCD_CONTAINER), None)
    etcd, reason, started, _ = _container_state(etcd_status)
    last = etcd_status.last_state.terminated if etcd_status and etcd_status.last_state else None
    init_problem = None
    inits = status.init_container_statuses or []
    for init in inits:
        kind, why, _, code = _container_state(init)
        if kind == "waiting" and why == "CrashLoopBackOff" or kind == "terminated" and code not in (0, None):
            init_problem = f"init container {init.name}: {why} (restarts {init.restart_count or 0})"
            break
    done = sum(1 for i in inits if _container_state(i)[0] == "terminated" and _container_state(i)[3] == 0)
    initialized = done >= len(spec.init_containers or [])
    claim = next((v.persistent_volume_claim.claim_name for v in spec.volumes or []
                  if v.name == CLAIM_TEMPLATE and v.persistent_volume_claim is not None), None)
    return PodState(name=pod.metadata.name, uid=pod.metadata.uid, phase=status.phase or "Unknown",
                    deleting=pod.metadata.deletion_timestamp is not None, etcd=etcd,  # type: ignore[arg-type]
                    reason=reason, restarts=etcd_status.restart_count or 0 if etcd_status else 0,
                    last_exit_code=last.exit_code if last is not None else None, started_at=started,
                    initialized=initialized, init_problem=init_problem, claim=claim)


def claim_state(pvc: client.V1PersistentVolumeClaim) -> ClaimState:
    return ClaimState(name=pvc.metadata.name, uid=pvc.metadata.uid,
                      phase=(pvc.status.phase if pvc.status else None) or "Pending",
                      deleting=pvc.metadata.deletion_timestamp is not None)


# -- what etcd says --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemberEntry:
    """One entry of `etcdctl member list`; an added member that has not started yet has no name."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False

    @property
    def hex_id(self) -> str:
        return f"{self.id:x}"

    @property
    def started(self) -> bool:
        return bool(self.name)

    @property
    def member(self) -> str | None:
        """The StatefulSet member (etcd-N) this entry stands for: by name, or for an unstarted
        member by the first label of its peer URL's host (etcd-N.etcd-discovery...)."""
        if member_ordinal(self.name) is not None:
            return self.name
        for url in self.peer_urls:
            host = url.split("://", 1)[-1].split(":", 1)[0]
            first = host.split(".", 1)[0]
            if member_ordinal(first) is not None:
                return first
        return None


@dataclass(frozen=True)
class EndpointHealth:
    endpoint: str
    healthy: bool
    error: str | None = None


@dataclass(frozen=True)
class EndpointStatus:
    endpoint: str
    member_id: int
    revision: int
    raft_index: int
    raft_applied_index: int
    raft_term: int
    leader: int
    db_size: int
    version: str | None
    errors: tuple[str, ...] = ()
    is_learner: bool = False


def parse_member_list(text: str) -> list[MemberEntry]:
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("members"), list):
        raise ValueError(f"unexpected member list output: {text[:200]!r}")
    return [MemberEntry(id=int(m["ID"]), name=m.get("name") or "", peer_urls=tuple(m.get("peerURLs") or ()),
                        client_urls=tuple(m.get("clientURLs") or ()), is_learner=bool(m.get("isLearner")))
            for m in data["members"]]


def parse_endpoint_health(text: str) -> list[EndpointHealth]:
    """`endpoint health -w json`: it prints every endpoint (errors included) even when it exits 1."""
    data = json.loads(text) if text.strip() else []
    if not isinstance(data, list):
        raise ValueError(f"unexpected endpoint health output: {text[:200]!r}")
    return [EndpointHealth(endpoint=e["endpoint"], healthy=e.get("health") is True, error=e.get("error") or None)
            for e in data]


def parse_endpoint_status(text: str) -> list[EndpointStatus]:
    """`endpoint status -w json`: only the endpoints that answered (the others go to stderr)."""
    data = json.loads(text) if text.strip() else []
    if not isinstance(data, list):
        raise ValueError(f"unexpected endpoint status output: {text[:200]!r}")
    out = []
    for e in data:
        s = e.get("Status") or {}
        header = s.get("header") or {}
        out.append(EndpointStatus(
            endpoint=e.get("Endpoint", ""), member_id=int(header.get("member_id", 0)),
            revision=int(header.get("revision", 0)), raft_index=int(s.get("raftIndex", 0)),
            raft_applied_index=int(s.get("raftAppliedIndex", 0)), raft_term=int(s.get("raftTerm", 0)),
            leader=int(s.get("leader", 0)), db_size=int(s.get("dbSize", 0)), version=s.get("version") or None,
            errors=tuple(str(x) for x in s.get("errors") or ()), is_learner=bool(s.get("isLearner"))))
    return out


# -- the table -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemberRow:
    name: str  # etcd-N, or the member's name/id when no StatefulSet pod stands for it
    ordinal: int | None  # None: a member etcd lists that is not a pod of the StatefulSet
    pod: PodState | None
    claim: ClaimState | None
    entry: MemberEntry | None
    health: EndpointHealth | None
    status: EndpointStatus | None
    verdict: Verdict
    reasons: tuple[str, ...]

    @property
    def answers(self) -> bool:
        """Its etcd process answers `endpoint status` (it could take a snapshot)."""
        return self.status is not None


@dataclass(frozen=True)
class HealthTable:
    namespace: str
    replicas: int  # spec.replicas of the etcd StatefulSet
    rows: tuple[MemberRow, ...]
    members: tuple[MemberEntry, ...] | None  # None: no member could list them (no quorum, or none running)
    asked: str | None  # the pod whose etcdctl answered the member list
    etcd_error: str | None  # why etcd could not be asked, when it could not
    read_at: datetime

    # quorum math over the voting members etcd lists (the StatefulSet's size when it lists none)

    @property
    def voting(self) -> int:
        if self.members is None:
            return self.replicas
        return sum(1 for m in self.members if not m.is_learner)

    @property
    def healthy_voting(self) -> int:
        return sum(1 for r in self.rows if r.verdict == "healthy" and r.entry is not None and not r.entry.is_learner)

    @property
    def quorum(self) -> int:
        return quorum_size(self.voting)

    @property
    def quorum_intact(self) -> bool:
        return self.members is not None and self.healthy_voting >= self.quorum

    @property
    def leader(self) -> str | None:
        leaders = {s.leader for r in self.rows if (s := r.status) is not None and s.leader}
        for r in self.rows:
            if r.entry is not None and r.entry.id in leaders:
                return r.name
        return None

    def with_verdict(self, verdict: Verdict) -> list[MemberRow]:
        return [r for r in self.rows if r.verdict == verdict]

    @property
    def failing(self) -> list[MemberRow]:
        return self.with_verdict("failing")

    @property
    def starting(self) -> list[MemberRow]:
        return self.with_verdict("starting")

    def row(self, name: str) -> MemberRow | None:
        return next((r for r in self.rows if r.name == name), None)

    def summary(self) -> str:
        parts = [f"{r.name} {r.verdict}" + (f" ({'; '.join(r.reasons)})" if r.reasons and r.verdict != "healthy"
                                            else "") for r in self.rows]
        quorum = (f"quorum {'intact' if self.quorum_intact else 'LOST'}: {self.healthy_voting} of {self.voting} "
                  f"voting members healthy, {self.quorum} needed")
        return f"{quorum}; " + "; ".join(parts)

    def markdown(self) -> str:
        lines = [f"etcd of `{self.namespace}` at {self.read_at:%Y-%m-%d %H:%M:%S} UTC: StatefulSet `etcd` "
                 f"replicas {self.replicas}; " + (f"members as listed by `{self.asked}`" if self.asked
                                                   else f"etcd could not list its members ({self.etcd_error})"),
                 "", "| member | pod status | restarts | member id | endpoint health | revision | raft index | "
                 "leader | verdict |", "|---|---|---|---|---|---|---|---|---|"]
        leader = self.leader
        for r in self.rows:
            pod = f"{r.pod.status}" if r.pod else "no pod"
            restarts = str(r.pod.restarts) if r.pod else "-"
            ident = "-" if r.entry is None else r.entry.hex_id + ("" if r.entry.started else " (unstarted)") + \
                (" (learner)" if r.entry.is_learner else "")
            if r.entry is None and self.members is not None:
                ident = "not in the member list"
            health = "-" if r.health is None else ("true" if r.health.healthy else f"false: {r.health.error or ''}")
            revision = str(r.status.revision) if r.status else "-"
            index = f"{r.status.raft_index} (applied {r.status.raft_applied_index})" if r.status else "-"
            verdict = r.verdict if not r.reasons else f"**{r.verdict}**: {'; '.join(r.reasons)}"
            cells = [r.name, pod, restarts, ident, health, revision, index, "yes" if r.name == leader else "",
                     verdict]
            lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") or "-" for c in cells) + " |")
        lines += ["", f"Quorum: {self.healthy_voting} of {self.voting} voting members healthy, {self.quorum} needed "
                      f"(tolerates {fault_tolerance(self.voting)} failure(s)): "
                      f"**{'intact' if self.quorum_intact else 'LOST'}**."]
        return "\n".join(lines)


def classify(pod: PodState | None, entry: MemberEntry | None, health: EndpointHealth | None, *,
             members_known: bool, now: datetime, in_statefulset: bool = True) -> tuple[Verdict, tuple[str, ...]]:
    """Healthy: the pod runs etcd, etcd lists the member as started and its endpoint is healthy.
    Failing: CrashLoopBackOff, Error, an init container crash-looping, not in the member list, or
    running but unhealthy past SETTLE_SECONDS (or after a crash). Starting: on its way (being
    created, initializing, just started) or being deleted: not something to act on."""
    if pod is None:
        if entry is not None and not in_statefulset:
            return "failing", (f"etcd lists member {entry.hex_id} ({entry.name or 'unstarted'}) but no pod of "
                               "the StatefulSet stands for it",)
        return "starting", ("no pod yet (the StatefulSet controller creates it)",)
    if pod.deleting:
        return "starting", ("the pod is being deleted",)
    if pod.init_problem:
        return "failing", (pod.init_problem,)
    if not pod.initialized:
        return "starting", (f"pod {pod.status}: init containers running",)
    crashed = pod.last_exit_code is not None  # etcd never exits on its own: any earlier exit is a crash
    crash = f"restarts {pod.restarts}" + (f", last exit code {pod.last_exit_code}" if crashed else "")
    if pod.etcd == "waiting" and pod.reason == "CrashLoopBackOff":
        return "failing", (f"etcd container CrashLoopBackOff ({crash})",)
    if pod.etcd == "terminated":
        return "failing", (f"etcd container exited: {pod.reason} ({crash})",)
    if pod.etcd != "running":
        return "starting", (f"etcd container {pod.etcd}" + (f" ({pod.reason})" if pod.reason else ""),)
    if members_known and entry is None:
        return "failing", ("not in the etcd member list (removed, never added back)",)
    if health is not None and health.healthy and entry is not None and entry.started:
        return "healthy", ()
    why = ("endpoint unhealthy: " + (health.error or "health false")) if health is not None and not health.healthy \
        else "member not started in etcd (unstarted)" if entry is not None and not entry.started \
        else "endpoint health unknown" if members_known else "etcd could not list its members (no quorum?)"
    uptime = pod.uptime(now)
    if crashed:
        return "failing", (f"{why}; crash-looping ({crash})",)
    if uptime is not None and uptime < SETTLE_SECONDS:
        return "starting", (f"{why}; etcd started {uptime:.0f} s ago",)
    return "failing", (why,)


def build_table(namespace: str, replicas: int, pods: Sequence[PodState], claims: Sequence[ClaimState],
                members: Sequence[MemberEntry] | None, health: Sequence[EndpointHealth],
                statuses: Sequence[EndpointStatus], *, asked: str | None = None, etcd_error: str | None = None,
                now: datetime | None = None) -> HealthTable:
    """Join the pods, claims and etcd's answers into rows: the StatefulSet's members etcd-0..N-1 first,
    then members etcd lists that no pod in range stands for."""
    now = now or datetime.now(timezone.utc)
    by_pod = {p.name: p for p in pods}
    by_claim = {c.name: c for c in claims}
    entries = list(members or [])
    by_member = {e.member: e for e in entries if e.member is not None}
    health_by_url = {h.endpoint: h for h in health}
    status_by_id = {s.member_id: s for s in statuses}
    status_by_url = {s.endpoint: s for s in statuses}

    def etcd_side(entry: MemberEntry | None, name: str) -> tuple[EndpointHealth | None, EndpointStatus | None]:
        if entry is None:
            # no member list: what the member's own pod said about itself (local status)
            return None, status_by_url.get(name)
        h = next((health_by_url[u] for u in entry.client_urls if u in health_by_url), None)
        s = status_by_id.get(entry.id) or next((status_by_url[u] for u in entry.client_urls if u in status_by_url),
                                               None)
        return h, s

    rows: list[MemberRow] = []
    placed: set[int] = set()
    for ordinal in range(replicas):
        name = member_name(ordinal)
        pod = by_pod.get(name)
        entry = by_member.get(name)
        if entry is not None:
            placed.add(entry.id)
        h, s = etcd_side(entry, name)
        verdict, reasons = classify(pod, entry, h, members_known=members is not None, now=now)
        rows.append(MemberRow(name=name, ordinal=ordinal, pod=pod, claim=by_claim.get(claim_name(name)),
                              entry=entry, health=h, status=s, verdict=verdict, reasons=reasons))
    for entry in entries:
        if entry.id in placed:
            continue
        # a member outside the StatefulSet (a scaled-down ordinal, an odd name): healthy or failing
        h, s = etcd_side(entry, entry.name)
        verdict, reasons = ("healthy", ()) if h is not None and h.healthy and entry.started else classify(
            None, entry, h, members_known=True, now=now, in_statefulset=False)
        rows.append(MemberRow(name=entry.name or entry.hex_id, ordinal=None, pod=None, claim=None, entry=entry,
                              health=h, status=s, verdict=verdict, reasons=reasons))
    return HealthTable(namespace=namespace, replicas=replicas, rows=tuple(rows),
                       members=tuple(members) if members is not None else None, asked=asked,
                       etcd_error=etcd_error, read_at=now)


# -- reading it from a cluster --------------------------------------------------------------------------

def etcdctl_command(*args: str, endpoints: Sequence[str] | None = None) -> str:
    """An etcdctl command line (for `sh -c`) against the local member (or `endpoints`), bounded by the
    dial and command timeouts."""
    argv = etcdctl_argv(f"--dial-timeout={_DIAL_TIMEOUT}", f"--command-timeout={_COMMAND_TIMEOUT}", *args)
    if endpoints is not None:  # a repeated --endpoints would add to the local one, not replace it
        argv = [f"--endpoints={','.join(endpoints)}" if a.startswith("--endpoints=") else a for a in argv]
    return shlex.join(argv)


def _health_and_status_script(endpoints: Sequence[str]) -> list[str]:
    """`endpoint health` and `endpoint status` of the members' client URLs, side by side (each
    unreachable endpoint costs each command a dial timeout). stderr keeps per-endpoint failures."""
    sep = shlex.quote(_SEPARATOR)
    script = ('d=$(mktemp -d) || exit 4; '
              f"{etcdctl_command('endpoint', 'health', '-w', 'json', endpoints=endpoints)} > $d/health & "
              f"{etcdctl_command('endpoint', 'status', '-w', 'json', endpoints=endpoints)} > $d/status & "
              f"wait; cat $d/health; echo; echo {sep}; cat $d/status; rm -rf $d; exit 0")
    return ["sh", "-c", script]


@dataclass
class _EtcdView:
    members: list[MemberEntry] | None = None
    health: list[EndpointHealth] = field(default_factory=list)
    statuses: list[EndpointStatus] = field(default_factory=list)
    asked: str | None = None
    error: str | None = None


def _short(e: Exception) -> str:
    if isinstance(e, ExecError):
        tail = e.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = next((line for line in reversed(tail) if line.startswith("Error:")), tail[-1] if tail else "")
        return (f"exit {e.exit_code}: " if e.exit_code is not None else "") + (reason or str(e))[-300:]
    return str(e)[-300:]


def _ask_etcd(api: client.ApiClient, namespace: str, pods: Sequence[PodState], now: datetime) -> _EtcdView:
    """`endpoint health --cluster` and `endpoint status --cluster`, asked from the first running member
    that lists the members. What --cluster would ask a member whose etcd container is not running
    (crash-looping, being recreated) is answered here without dialing it (nothing listens: its health
    is false), which spares every read of a table with a dead member a dial timeout. Without a member
    list (no quorum), each running member's own endpoint status (served without quorum)."""
    view = _EtcdView()
    errors = []
    # members whose etcd runs, longest-running first (most likely to be connected to a quorum)
    candidates = [p.name for p in sorted((p for p in pods if p.etcd == "running" and not p.deleting
                                          and p.phase == "Running"), key=lambda p: (p.started_at or now, p.name))]
    by_name = {p.name: p for p in pods}
    for pod in candidates:
        try:
            argv = ["sh", "-c", etcdctl_command("member", "list", "-w", "json")]
            view.members = parse_member_list(pod_exec.run(api, namespace, pod, ETCD_CONTAINER, argv,
                                                          timeout=_EXEC_TIMEOUT).text)
        except (ExecError, ValueError, KeyError, TypeError) as e:
            errors.append(f"{pod}: {_short(e)}")
            continue
        view.asked = pod
        dial: list[str] = []
        for m in view.members:
            state = by_name.get(m.member or "")
            ours = m.member is not None and member_ordinal(m.member) is not None  # a StatefulSet member
            if ours and (state is None or state.etcd != "running"):
                why = f"etcd container {state.status if state else 'has no pod'}: not dialed"
                view.health += [EndpointHealth(u, False, why) for u in m.client_urls]
            else:
                dial += m.client_urls
        if dial:
            try:
                parts = pod_exec.run(api, namespace, pod, ETCD_CONTAINER, _health_and_status_script(dial),
                                     timeout=_EXEC_TIMEOUT).text.split(_SEPARATOR)
                view.health += parse_endpoint_health(parts[0])
                view.statuses = parse_endpoint_status(parts[1]) if len(parts) > 1 else []
            except (ExecError, ValueError, KeyError, TypeError) as e:
                view.error = f"{pod}: endpoint health/status: {_short(e)}"
        return view
    view.error = "; ".join(errors) or "no etcd pod is running"
    for pod in candidates:
        argv = ["sh", "-c", etcdctl_command("endpoint", "status", "-w", "json")]
        try:
            for status in parse_endpoint_status(pod_exec.run(api, namespace, pod, ETCD_CONTAINER, argv,
                                                             timeout=_EXEC_TIMEOUT).text):
                view.statuses.append(replace(status, endpoint=pod))  # build_table finds it by pod name
        except (ExecError, ValueError, KeyError, TypeError):
            continue
    return view


def read_health(api: client.ApiClient, namespace: str, *, cluster: str | None = None) -> HealthTable:
    """The health table of the etcd in control-plane namespace `namespace` (read-only)."""
    core = client.CoreV1Api(api)
    try:
        replicas = statefulset_replicas(api, namespace, STATEFULSET)
        pods = [pod_state(p) for p in core.list_namespaced_pod(namespace, label_selector=MEMBER_LABEL).items]
        claims = [claim_state(c) for c in
                  core.list_namespaced_persistent_volume_claim(namespace, label_selector=MEMBER_LABEL).items]
    except ApiException as e:
        raise EtcdMemberError(f"reading the etcd StatefulSet, pods and claims failed: {e.status} {e.reason}",
                              namespace=namespace, step="etcd health", cluster=cluster,
                              next_step="check the kubeconfig's access to the control-plane namespace") from e
    if replicas is None:
        raise EtcdMemberError("there is no etcd StatefulSet", namespace=namespace, step="etcd health", cluster=cluster,
                              next_step="check that the hosted cluster uses managed etcd and that its control plane "
                                        "namespace exists (oc get hostedcontrolplane -A)")
    view = _ask_etcd(api, namespace, pods, datetime.now(timezone.utc))
    return build_table(namespace, replicas, pods, claims, view.members, view.health, view.statuses,
                       asked=view.asked, etcd_error=view.error, now=datetime.now(timezone.utc))


# -- what may be done --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    kind: Literal["replace", "healthy", "refuse"]
    message: str
    member: str | None = None  # replace: the one failing member
    restore: str | None = None  # refuse: the etcd-restore run to use instead, when that is the way out


def restore_commands(table: HealthTable, *, cluster: str, kubeconfig: str | Path | None, context: str | None,
                     bucket: str | None) -> list[str]:
    """The etcd-restore runs for a cluster this runbook must not touch: from the latest backup; and,
    when no member can take a snapshot (no etcd answers `endpoint status`) but a member's etcd
    container runs so its files can be read, from that member's database (`member/snap/db`: it may
    hold writes newer than the backup), the member with the highest revision it last reported."""
    argv = ["hcp-runbooks", "run", "etcd-restore"]
    if kubeconfig:
        argv += ["--kubeconfig", str(kubeconfig)]
    if context:
        argv += ["--context", context]
    argv += ["--cluster", cluster, "--bucket", bucket or "BUCKET"]
    out = [argv + ["--source", "latest-backup"]]
    readable = [r for r in table.rows if r.ordinal is not None and r.pod is not None and r.pod.etcd == "running"
                and not r.pod.deleting]
    if readable and not any(r.answers for r in table.rows):
        best = max(readable, key=lambda r: ((r.status.revision if r.status else -1), -(r.ordinal or 0)))
        out.append(argv + ["--source", "member-db", "--member", best.name])
    return [shlex.join(cmd) for cmd in out]


def restore_advice(commands: Sequence[str]) -> str:
    """How a refusal names the way out."""
    text = f"restore etcd from the latest backup: `{commands[0]}`"
    if len(commands) > 1:
        text += (f"; or, as no member can take a snapshot, from the data of a member whose etcd container runs "
                 f"(may hold newer writes than the backup): `{commands[1]}`")
    return text


def decide(table: HealthTable, requested: str | None, restore: Sequence[str]) -> Decision:
    """What the member recovery runbook may do with this table. `requested`: the member the caller
    named (it must be the failing one); `restore`: the etcd-restore runs to print when refusing
    (restore_commands)."""
    advice = restore_advice(restore)
    failing, starting = table.failing, table.starting
    names = [r.name for r in table.rows]
    if requested is not None and (requested not in names or member_ordinal(requested) is None or
                                  member_ordinal(requested) >= table.replicas):  # type: ignore[operator]
        return Decision("refuse", f"{requested} is not a member of the etcd StatefulSet (replicas {table.replicas}: "
                                  f"{', '.join(member_name(i) for i in range(table.replicas))}); nothing was changed")
    if not table.quorum_intact:
        why = (f"etcd quorum is lost: {table.healthy_voting} of {table.voting} voting members healthy, "
               f"{table.quorum} needed" + ("" if table.members is not None
                                           else f" (no member could list the members: {table.etcd_error})"))
        if starting:
            return Decision("refuse", f"{why}, while {', '.join(r.name for r in starting)} "
                                      f"{'is' if len(starting) == 1 else 'are'} starting. Wait for "
                                      f"{'it' if len(starting) == 1 else 'them'} and run again; if quorum does not "
                                      f"come back, {advice}. Nothing was changed.", restore=restore[0])
        return Decision("refuse", f"{why}. Replacing a member needs a working quorum (etcd must remove and add "
                                  f"members); {advice}. Nothing was changed.", restore=restore[0])
    if len(failing) > 1:
        return Decision("refuse", f"{len(failing)} members are failing ({', '.join(r.name for r in failing)}): this "
                                  "runbook replaces one member at a time, only when exactly one is failing; "
                                  f"{advice}. Nothing was changed.", restore=restore[0])
    if starting:
        unsettled = ", ".join(f"{r.name} ({'; '.join(r.reasons)})" for r in starting)
        return Decision("refuse", f"{unsettled}: not settled. "
                                  "Wait until every member is running or plainly failing, then run again. Nothing "
                                  "was changed.")
    if not failing:
        if requested is not None:
            return Decision("refuse", f"{requested} is healthy (all {len(table.rows)} members are): this runbook "
                                      "never replaces a healthy member. Nothing was changed.")
        return Decision("healthy", f"all {len(table.rows)} members are healthy: nothing to recover")
    bad = failing[0]
    if requested is not None and requested != bad.name:
        return Decision("refuse", f"{requested} is healthy; the failing member is {bad.name} "
                                  f"({'; '.join(bad.reasons)}). This runbook never replaces a healthy member: run it "
                                  f"for {bad.name}. Nothing was changed.")
    if bad.ordinal is None:
        entry = bad.entry
        return Decision("refuse", f"the failing member {bad.name} is not a pod of the etcd StatefulSet "
                                  f"({'; '.join(bad.reasons)}): deleting a PVC and pod cannot replace it. Remove it "
                                  f"from etcd by hand (etcdctl member remove {entry.hex_id if entry else '?'}) once "
                                  "you know why it is there. Nothing was changed.")
    if bad.pod is None or bad.claim is None:
        return Decision("refuse", f"{bad.name} has {'no pod' if bad.pod is None else 'no PVC'} "
                                  f"{claim_name(bad.name) if bad.claim is None else ''}: the StatefulSet is not "
                                  "settled; run again once it has recreated it. Nothing was changed.")
    return Decision("replace", f"{bad.name} is failing ({'; '.join(bad.reasons)}) and quorum holds "
                               f"({table.healthy_voting} of {table.voting} healthy, {table.quorum} needed): replace it",
                    member=bad.name)
