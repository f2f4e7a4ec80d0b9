"""hcp.etcd_health and the pure parts of hcp.etcd_replace: etcdctl's JSON, pod states, the verdict per
member, quorum math, and what the member recovery runbook may do with a table."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from kubernetes import client

from hcp.etcd_health import ClaimState, EndpointHealth, EndpointStatus, HealthTable, MemberEntry, PodState, \
    build_table, classify, decide, fault_tolerance, member_ordinal, parse_endpoint_health, parse_endpoint_status, \
    parse_member_list, peer_url, pod_state, quorum_size, restore_commands
from hcp.etcd_replace import MemberChoice, needs_rejoin_repair

NS = "clusters-prod"
NOW = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)
LONG_AGO = NOW - timedelta(hours=1)

# What etcdctl 3.5 printed for a cluster with one started and one added (unstarted) member.
MEMBER_LIST = ('{"header":{"cluster_id":15118495548433857066,"member_id":13668033151171901709,"raft_term":2},'
               '"members":[{"ID":6842272641430885550,"peerURLs":["https://etcd-2.etcd-discovery.clusters-prod.svc:2380"]},'
               '{"ID":13668033151171901709,"name":"etcd-0","peerURLs":["https://etcd-0.etcd-discovery.clusters-prod.svc:2380"],'
               '"clientURLs":["https://etcd-0.etcd-discovery.clusters-prod.svc:2379"]}]}')
HEALTH = ('[{"endpoint":"https://etcd-0.etcd-discovery.clusters-prod.svc:2379","health":true,"took":"2.29ms"},'
          '{"endpoint":"https://etcd-1.etcd-discovery.clusters-prod.svc:2379","health":false,"took":"2s",'
          '"error":"failed to commit proposal: context deadline exceeded"}]')
STATUS = ('[{"Endpoint":"https://etcd-0.etcd-discovery.clusters-prod.svc:2379","Status":{"header":{"cluster_id":1,'
          '"member_id":13668033151171901709,"revision":1042,"raft_term":2},"version":"3.5.1","dbSize":20480,'
          '"leader":13668033151171901709,"raftIndex":1100,"raftTerm":2,"raftAppliedIndex":1099,"dbSizeInUse":16384}}]')


def test_quorum_math() -> None:
    assert [(n, quorum_size(n), fault_tolerance(n)) for n in range(1, 6)] == \
        [(1, 1, 0), (2, 2, 0), (3, 2, 1), (4, 3, 1), (5, 3, 2)]


@pytest.mark.parametrize("name, ordinal", [("etcd-0", 0), ("etcd-12", 12), ("etcd-01", None), ("etcd", None),
                                           ("etcd-", None), ("kube-apiserver-1", None), ("", None)])
def test_member_names(name: str, ordinal: int | None) -> None:
    assert member_ordinal(name) == ordinal


def test_etcdctl_json_is_parsed() -> None:
    members = parse_member_list(MEMBER_LIST)
    assert [(m.member, m.started, m.hex_id) for m in members] == \
        [("etcd-2", False, "5ef4a2b728dc94ae"), ("etcd-0", True, "bdae9bbc11dd390d")]
    health = parse_endpoint_health(HEALTH)
    assert [(h.healthy, h.error) for h in health] == [(True, None), (False, "failed to commit proposal: context "
                                                                            "deadline exceeded")]
    (status,) = parse_endpoint_status(STATUS)
    assert (status.member_id, status.revision, status.raft_index, status.raft_applied_index, status.leader,
            status.version) == (13668033151171901709, 1042, 1100, 1099, 13668033151171901709, "3.5.1")
    assert parse_endpoint_status("") == [] and parse_endpoint_health("") == []
    with pytest.raises(ValueError):
        parse_member_list('{"no": "members"}')


# -- pods ---------------------------------------------------------------------------------------------------

def _pod(name: str, *, phase: str = "Running", etcd: dict[str, Any] | None = None, restarts: int = 0,
         last_exit: int | None = None, init: dict[str, Any] | None = None, deleting: bool = False) -> client.V1Pod:
    etcd = etcd if etcd is not None else {"running": client.V1ContainerStateRunning(started_at=LONG_AGO)}
    last = client.V1ContainerState(terminated=client.V1ContainerStateTerminated(exit_code=last_exit)) \
        if last_exit is not None else client.V1ContainerState()
    inits = [client.V1ContainerStatus(name=n, image="x", image_id="x", ready=False, restart_count=0,
                                      state=client.V1ContainerState(**s))
             for n, s in (init or {"ensure-dns": {"terminated": client.V1ContainerStateTerminated(exit_code=0)},
                                   "reset-member": {"terminated": client.V1ContainerStateTerminated(exit_code=0)}}).items()]
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, uid=f"uid-{name}", deletion_timestamp=NOW if deleting else None),
        spec=client.V1PodSpec(containers=[client.V1Container(name="etcd")],
                              init_containers=[client.V1Container(name="ensure-dns"), client.V1Container(name="reset-member")],
                              volumes=[client.V1Volume(name="data", persistent_volume_claim=client.
                                                       V1PersistentVolumeClaimVolumeSource(claim_name=f"data-{name}"))]),
        status=client.V1PodStatus(phase=phase, init_container_statuses=inits, container_statuses=[
            client.V1ContainerStatus(name="etcd", image="x", image_id="x", ready=True, restart_count=restarts,
                                     state=client.V1ContainerState(**etcd), last_state=last)]))


def test_pod_states_as_oc_get_pods_shows_them() -> None:
    running = pod_state(_pod("etcd-0"))
    assert (running.status, running.initialized, running.claim, running.uptime(NOW)) == ("Running", True, "data-etcd-0",
                                                                                        3600.0)
    crash = pod_state(_pod("etcd-1", etcd={"waiting": client.V1ContainerStateWaiting(reason="CrashLoopBackOff")},
                           restarts=4, last_exit=2))
    assert (crash.status, crash.restarts, crash.last_exit_code, crash.started_at) == ("CrashLoopBackOff", 4, 2, None)
    init = pod_state(_pod("etcd-2", phase="Pending", etcd={"waiting": client.V1ContainerStateWaiting(
        reason="PodInitializing")}, init={
        "ensure-dns": {"terminated": client.V1ContainerStateTerminated(exit_code=0)},
        "reset-member": {"waiting": client.V1ContainerStateWaiting(reason="CrashLoopBackOff")}}))
    assert init.status == "Init:CrashLoopBackOff" and not init.initialized and "reset-member" in (init.init_problem or "")
    assert pod_state(_pod("etcd-2", deleting=True)).status == "Terminating"


# -- verdicts -----------------------------------------------------------------------------------------------

def _state(name: str = "etcd-1", **kw: Any) -> PodState:
    fields: dict[str, Any] = dict(name=name, uid=f"uid-{name}", phase="Running", deleting=False, etcd="running",
                                  reason=None, restarts=0, last_exit_code=None, started_at=LONG_AGO, initialized=True,
                                  init_problem=None, claim=f"data-{name}")
    fields.update(kw)
    return PodState(**fields)


def _entry(name: str, ident: int, started: bool = True) -> MemberEntry:
    return MemberEntry(id=ident, name=name if started else "", peer_urls=(peer_url(name, NS),),
                       client_urls=(f"https://{name}.etcd-discovery.{NS}.svc:2379",) if started else ())


OK = EndpointHealth("e", True)
BAD = EndpointHealth("e", False, "context deadline exceeded")


@pytest.mark.parametrize("pod, entry, health, verdict, why", [
    (_state(), _entry("etcd-1", 1), OK, "healthy", ""),
    (_state(etcd="waiting", reason="CrashLoopBackOff", restarts=3, last_exit_code=2), _entry("etcd-1", 1), None,
     "failing", "CrashLoopBackOff"),
    (_state(etcd="terminated", reason="Error", last_exit_code=1), _entry("etcd-1", 1), None, "failing", "Error"),
    (_state(), _entry("etcd-1", 1), BAD, "failing", "endpoint unhealthy: context deadline exceeded"),
    (_state(started_at=NOW - timedelta(seconds=3)), _entry("etcd-1", 1), BAD, "starting", "started 3 s ago"),
    (_state(started_at=NOW - timedelta(seconds=3), restarts=2, last_exit_code=2), _entry("etcd-1", 1), BAD,
     "failing", "crash-looping"),
    (_state(), None, None, "failing", "not in the etcd member list"),
    (_state(init_problem="init container reset-member: CrashLoopBackOff (restarts 2)", initialized=False),
     _entry("etcd-1", 1), None, "failing", "reset-member"),
    (_state(initialized=False, phase="Pending", etcd="waiting", reason="PodInitializing"), _entry("etcd-1", 1), None,
     "starting", "init containers"),
    (_state(deleting=True), _entry("etcd-1", 1), BAD, "starting", "being deleted"),
    (None, None, None, "starting", "no pod yet"),
    (_state(etcd="waiting", reason="ContainerCreating"), _entry("etcd-1", 1), None, "starting", "ContainerCreating"),
])
def test_verdicts(pod: PodState | None, entry: MemberEntry | None, health: EndpointHealth | None, verdict: str,
                  why: str) -> None:
    got, reasons = classify(pod, entry, health, members_known=True, now=NOW)
    assert got == verdict and why in "; ".join(reasons), reasons


# -- tables and decisions -----------------------------------------------------------------------------------

def _status(name: str, ident: int, revision: int = 100, leader: int = 1) -> EndpointStatus:
    return EndpointStatus(endpoint=f"https://{name}.etcd-discovery.{NS}.svc:2379", member_id=ident, revision=revision,
                          raft_index=revision + 10, raft_applied_index=revision + 10, raft_term=2, leader=leader,
                          db_size=1, version="3.5.1")


def table(states: dict[str, str], *, listed: dict[str, bool] | None = None, members_known: bool = True,
          extra: list[MemberEntry] | None = None) -> HealthTable:
    """A table from one word per member: healthy, crash (CrashLoopBackOff), unhealthy (running, endpoint
    unhealthy), starting (just started, not healthy yet)."""
    pods, claims, entries, health, statuses = [], [], [], [], []
    for i, (name, word) in enumerate(states.items(), start=1):
        kw: dict[str, Any] = {}
        if word == "crash":
            kw = dict(etcd="waiting", reason="CrashLoopBackOff", restarts=3, last_exit_code=2, started_at=None)
        elif word == "starting":
            kw = dict(started_at=NOW - timedelta(seconds=2))
        pods.append(_state(name, **kw))
        claims.append(ClaimState(f"data-{name}", f"puid-{name}", "Bound", False))
        if (listed or {}).get(name, True):
            entries.append(_entry(name, i))
            health.append(EndpointHealth(f"https://{name}.etcd-discovery.{NS}.svc:2379", word == "healthy",
                                         None if word == "healthy" else "deadline exceeded"))
        if word in ("healthy", "unhealthy", "starting"):
            status = _status(name, i)
            # without a member list, each running pod is asked for its own status (found by pod name)
            statuses.append(status if members_known else EndpointStatus(**{**status.__dict__, "endpoint": name}))
    return build_table(NS, len(states), pods, claims, (entries + (extra or [])) if members_known else None, health,
                       statuses, asked="etcd-0" if members_known else None,
                       etcd_error=None if members_known else "deadline exceeded", now=NOW)


RESTORE = ["hcp-runbooks run etcd-restore --cluster clusters/prod --bucket b --source latest-backup"]


def test_one_failing_member_with_quorum_is_replaced() -> None:
    t = table({"etcd-0": "healthy", "etcd-1": "healthy", "etcd-2": "crash"})
    assert (t.voting, t.healthy_voting, t.quorum, t.quorum_intact, t.leader) == (3, 2, 2, True, "etcd-0")
    d = decide(t, None, RESTORE)
    assert (d.kind, d.member, d.restore) == ("replace", "etcd-2", None)
    assert decide(t, "etcd-2", RESTORE).kind == "replace"
    named = decide(t, "etcd-1", RESTORE)
    assert named.kind == "refuse" and "etcd-1 is healthy; the failing member is etcd-2" in named.message
    md = t.markdown()
    assert "| etcd-2 | CrashLoopBackOff | 3 |" in md and "**intact**" in md and "tolerates 1 failure(s)" in md
    assert "etcd-2 failing (etcd container CrashLoopBackOff" in t.summary()


def test_a_healthy_cluster_has_nothing_to_do_and_a_named_member_is_refused() -> None:
    t = table({"etcd-0": "healthy", "etcd-1": "healthy", "etcd-2": "healthy"})
    assert decide(t, None, RESTORE).kind == "healthy"
    assert "never replaces a healthy member" in decide(t, "etcd-0", RESTORE).message
    assert "not a member of the etcd StatefulSet" in decide(t, "etcd-3", RESTORE).message


def test_quorum_lost_is_refused_with_the_restore() -> None:
    t = table({"etcd-0": "healthy", "etcd-1": "crash", "etcd-2": "crash"})
    assert not t.quorum_intact
    for requested in (None, "etcd-2"):
        d = decide(t, requested, RESTORE)
        assert d.kind == "refuse" and d.restore == RESTORE[0] and "quorum is lost: 1 of 3" in d.message
        assert f"restore etcd from the latest backup: `{RESTORE[0]}`" in d.message
    unknown = table({"etcd-0": "unhealthy", "etcd-1": "crash", "etcd-2": "crash"}, members_known=False)
    d = decide(unknown, None, RESTORE)
    assert d.kind == "refuse" and "no member could list the members" in d.message and "LOST" in unknown.markdown()


def test_quorum_lost_while_a_member_starts_says_wait_first() -> None:
    t = table({"etcd-0": "healthy", "etcd-1": "starting", "etcd-2": "crash"})
    d = decide(t, None, RESTORE)
    assert d.kind == "refuse" and "while etcd-1 is starting" in d.message and RESTORE[0] in d.message


def test_more_than_one_failing_is_refused_even_with_quorum() -> None:
    t = table({f"etcd-{i}": w for i, w in enumerate(["healthy", "healthy", "healthy", "crash", "unhealthy"])})
    assert t.quorum_intact and t.quorum == 3
    d = decide(t, "etcd-3", RESTORE)
    assert d.kind == "refuse" and "2 members are failing (etcd-3, etcd-4)" in d.message and d.restore == RESTORE[0]


def test_one_failing_and_one_starting_is_not_settled() -> None:
    t = table({f"etcd-{i}": w for i, w in enumerate(["healthy", "healthy", "healthy", "crash", "starting"])})
    d = decide(t, None, RESTORE)
    assert d.kind == "refuse" and "etcd-4" in d.message and "not settled" in d.message and d.restore is None


def test_a_member_missing_from_the_list_is_failing_and_quorum_counts_the_listed_ones() -> None:
    t = table({"etcd-0": "healthy", "etcd-1": "healthy", "etcd-2": "crash"}, listed={"etcd-2": False})
    assert (t.voting, t.healthy_voting, t.quorum_intact) == (2, 2, True)
    row = t.row("etcd-2")
    assert row is not None and row.entry is None and "not in the member list" in t.markdown()
    assert decide(t, None, RESTORE).member == "etcd-2"


def test_a_listed_member_without_a_pod_is_not_replaced_by_deleting_anything() -> None:
    stray = MemberEntry(id=99, name="etcd-3", peer_urls=(peer_url("etcd-3", NS),), client_urls=())
    t = table({"etcd-0": "healthy", "etcd-1": "healthy", "etcd-2": "healthy"}, extra=[stray])
    assert t.voting == 4 and t.quorum == 3 and t.quorum_intact
    d = decide(t, None, RESTORE)
    assert d.kind == "refuse" and "not a pod of the etcd StatefulSet" in d.message and "member remove 63" in d.message


def test_restore_commands_the_latest_backup_and_when_no_member_can_snapshot_a_members_data() -> None:
    # etcd-0 runs and answers (it could take a snapshot): the latest backup
    t = table({"etcd-0": "unhealthy", "etcd-1": "crash", "etcd-2": "crash"}, members_known=False)
    assert restore_commands(t, cluster="clusters/prod", kubeconfig="/home/me/my kube", context="mgmt-1",
                            bucket="b") == ["hcp-runbooks run etcd-restore --kubeconfig '/home/me/my kube' --context "
                                            "mgmt-1 --cluster clusters/prod --bucket b --source latest-backup"]
    # nothing answers, etcd-1's container runs (its files can be read): also its data
    mute = table({"etcd-0": "crash", "etcd-1": "crash", "etcd-2": "crash"}, members_known=False)
    rows = [r if r.name != "etcd-1" or r.pod is None else r.__class__(**{**r.__dict__, "pod": PodState(
        **{**r.pod.__dict__, "etcd": "running", "reason": None})}) for r in mute.rows]
    mute = HealthTable(**{**mute.__dict__, "rows": tuple(rows)})
    commands = restore_commands(mute, cluster="clusters/prod", kubeconfig=None, context=None, bucket=None)
    assert commands == ["hcp-runbooks run etcd-restore --cluster clusters/prod --bucket BUCKET --source latest-backup",
                        "hcp-runbooks run etcd-restore --cluster clusters/prod --bucket BUCKET --source member-db "
                        "--member etcd-1"]
    assert "as no member can take a snapshot" in decide(mute, None, commands).message
    # nothing runs at all: a member's files cannot be read, the backup is the way
    dead = table({"etcd-0": "crash", "etcd-1": "crash", "etcd-2": "crash"}, members_known=False)
    assert len(restore_commands(dead, cluster="clusters/prod", kubeconfig=None, context=None, bucket="b")) == 1


# -- the replacement that never joins -------------------------------------------------------------------------

def _choice() -> MemberChoice:
    return MemberChoice(member="etcd-2", namespace=NS, pod_uid="uid-etcd-2", claim="data-etcd-2", claim_uid="p",
                        member_id=3, peer_url=peer_url("etcd-2", NS), reasons=["x"], chosen_at=NOW)


@pytest.mark.parametrize("words, listed, replacement, pod_kw, repair", [
    ("crash", False, True, {}, True),  # reset-member removed it and did not add it: etcd started as a new cluster
    ("crash", True, True, {}, False),  # listed and started (it joined once): not this runbook's repair
    ("crash", False, False, {}, False),  # the original pod: not a replacement
    ("starting", False, True, {"initialized": False}, False),  # reset-member still running
    ("starting", None, True, {}, False),  # listed unstarted, etcd still starting: joining
    ("crash", None, True, {}, True),  # listed unstarted and etcd exited: it will never join
])
def test_needs_rejoin_repair(words: str, listed: bool | None, replacement: bool, pod_kw: dict[str, Any],
                             repair: bool) -> None:
    t = table({"etcd-0": "healthy", "etcd-1": "healthy", "etcd-2": words}, listed={"etcd-2": bool(listed)})
    row = t.row("etcd-2")
    assert row is not None and row.pod is not None
    pod = row.pod if not pod_kw else PodState(**{**row.pod.__dict__, **pod_kw})
    if replacement:
        pod = PodState(**{**pod.__dict__, "uid": "uid-new"})
    entry = None if listed is False else _entry("etcd-2", 3, started=bool(listed))
    row = row.__class__(**{**row.__dict__, "pod": pod, "entry": entry})
    assert needs_rejoin_repair(row, _choice(), members_known=True) is repair
    assert not needs_rejoin_repair(row, _choice(), members_known=False)
