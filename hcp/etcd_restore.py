"""The in-place restore of a hosted control plane's managed etcd: the documented on-premise
procedure ("Backing up and restoring etcd on a hosted cluster in an on-premise environment",
OpenShift docs, modules/hosted-cluster-etcd-backup-restore-on-premise.adoc), as plain steps.

What differs from the documented commands, on purpose:
* every member's volume gets the same restore (each with its own --name and peer URL), instead of
  deleting the other members' volumes. With deleted volumes, the members that start empty run
  HyperShift's reset-member script, find no working cluster yet (the first member alone has no
  quorum) and bootstrap as "new" with the same initial cluster and token: their raft log is then
  exactly as long as the restored member's, so two empty members can elect a leader between
  themselves and serve an empty keyspace next to the restored one. Seen here with real etcd 3.5
  (a member answering "required revision is a future revision" for the snapshot's revision). The
  etcd documentation's recovery ("Restoring a cluster": restore every member from the same
  snapshot) and HyperShift's own restoreSnapshotURL (every member's etcd-init restores) do it this
  way too;
* the restore's `--initial-cluster`, `--initial-cluster-token` and `--initial-advertise-peer-urls`
  come from the StatefulSet's own environment (the document hard-codes three members and a token);
* a real snapshot's integrity hash is checked (the document always skips it): on the runner, before
  anything changes (hcp.snapshot_source), so the restores in the pod, of a copy (downloaded by the pod
  from S3, or streamed in from the runner) whose SHA-256 is
  compared with the runner's file, run with `--skip-hash-check` instead of hashing the file once
  per member while the API is down; a copy of `member/snap/db` has no hash to check;
* the old data directories are moved aside (`data.before-<operation>`), not deleted, until the
  restored etcd is verified: nothing is lost if the restore goes wrong;
* every step is idempotent: each member's restore leaves a marker so a re-run never restores twice
  (a second restore after the writers are back would lose their writes);
* one data pod per member, each mounting only that member's claim (the document's single pod mounts
  them all): HighlyAvailable etcd's members are required in distinct zones (podAntiAffinity on
  topology.kubernetes.io/zone), so on a multi-zone management cluster their volumes (EBS: zonal)
  lie in three zones and no pod can mount them together. Each data pod gets the snapshot and
  restores its member, side by side.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel

from hcp import pod_exec
from hcp.etcd_member import EtcdMember, MemberStatus, list_members, member_status
from hcp.waits import WaitTimeout, wait_for_set

__all__ = ["EtcdRestoreError", "EtcdLayout", "read_layout", "stop_statefulset", "wait_statefulset_stopped",
           "DATA_POD_APP", "data_pod_deployment", "member_nodes", "start_data_pods", "copy_into_pod",
           "download_into_pod", "download_script", "DownloadUnavailable", "snapshot_in_pod", "restore_script",
           "run_restore", "remove_data_pods", "start_statefulset", "wait_members_healthy", "remove_previous_data",
           "previous_data_dir", "RESTORE_ROOT"]

STATEFULSET = "etcd"
ETCD_CONTAINER = "etcd"
DEFAULT_TOKEN = "etcd-cluster"  # etcd's default --initial-cluster-token; HyperShift sets none
DATA_POD_APP = "hcp-runbooks-etcd-data"
DATA_MOUNT = "/var/lib"  # the etcd container mounts its claim here; data is /var/lib/data
RESTORE_ROOT = f"{DATA_MOUNT}/etcd-restore"  # in the data pod: each member's claim at RESTORE_ROOT/<member>
SNAPSHOT_DIR = f"{RESTORE_ROOT}/snapshot"
SNAPSHOT_NAME = "restored.snap.db"
_COPY_CHUNK = 1 << 20  # pod_exec's stdin frame: each chunk goes out as one frame, not re-sliced and copied
# The data pod's shell is PID 1 of its container, which ignores SIGTERM unless it traps it: without
# the trap every removal of the pod waits out the grace period before the members can start.
_DATA_POD_SHELL = "trap 'exit 0' TERM; while true; do sleep 1000 & wait $!; done"
_HEALTH_POLL_SECONDS = 0.25
_HEALTH_EXEC_TIMEOUT = 10.0


class EtcdRestoreError(RuntimeError):
    """A restore step failed; names the namespace, the step and what to do next."""

    def __init__(self, message: str, *, namespace: str, step: str, next_step: str) -> None:
        super().__init__(f"etcd restore in {namespace}, step {step}: {message}. Next: {next_step}")
        self.namespace = namespace
        self.step = step
        self.next_step = next_step


class EtcdLayout(BaseModel):
    """What the restore needs from the etcd StatefulSet, read before anything changes."""

    namespace: str
    image: str
    replicas: int
    members: list[str]  # etcd-0 ... in ordinal order
    claims: list[str]  # data-etcd-0 ... (each gets the restore)
    initial_cluster: str
    token: str
    peer_urls: dict[str, str]  # member -> peer URL, from the initial cluster
    # the members' tolerations, for the data pods: HyperShift's control plane pods tolerate the
    # hypershift.openshift.io/control-plane and .../cluster taints of dedicated management nodes, where
    # the members' volumes are
    tolerations: list[dict[str, Any]] = []

    @property
    def first_member(self) -> str:
        return self.members[0]

    def member_dir(self, member: str) -> str:
        """Where `member`'s data pod mounts its claim."""
        return f"{RESTORE_ROOT}/{member}"

    def data_deployment(self, member: str) -> str:
        """The name of `member`'s data-access Deployment."""
        return f"{DATA_POD_APP}-{member}"

    def claim_of(self, member: str) -> str:
        return self.claims[self.members.index(member)]

    @property
    def snapshot_in_pod(self) -> str:
        """In the data pod's own emptyDir: gone with the pod, never left on a member's volume."""
        return f"{SNAPSHOT_DIR}/{SNAPSHOT_NAME}"


def _expand(value: str, variables: dict[str, str]) -> str:
    """Kubernetes $(VAR) references in env values."""
    return re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), value)


def read_layout(api: client.ApiClient, namespace: str) -> EtcdLayout:
    try:
        sts = client.AppsV1Api(api).read_namespaced_stateful_set(STATEFULSET, namespace)
    except ApiException as e:
        if e.status == 404:
            raise EtcdRestoreError(f"StatefulSet {namespace}/{STATEFULSET} not found", namespace=namespace,
                                   step="read etcd", next_step="is this a hosted cluster with managed etcd? "
                                   "(`oc -n NAMESPACE get hostedcluster NAME -o jsonpath={.spec.etcd}`)") from None
        raise
    containers = {c.name: c for c in sts.spec.template.spec.containers}
    etcd = containers.get(ETCD_CONTAINER)
    if etcd is None:
        raise EtcdRestoreError(f"StatefulSet {STATEFULSET} has no container {ETCD_CONTAINER!r}", namespace=namespace,
                               step="read etcd", next_step="restore by hand following the documented procedure")
    env = {e.name: e.value for e in etcd.env or [] if e.value is not None}
    replicas = sts.spec.replicas or 0
    if replicas == 0:
        # A re-run after the StatefulSet was scaled down: the count to restore is in the initial cluster.
        replicas = len([e for e in env.get("ETCD_INITIAL_CLUSTER", "").split(",") if e])
    members = [f"{STATEFULSET}-{i}" for i in range(replicas)]
    templates = sts.spec.volume_claim_templates or []
    data = next((t for t in templates if any(m.name == t.metadata.name and m.mount_path == DATA_MOUNT
                                             for m in etcd.volume_mounts or [])), None)
    if data is None:
        raise EtcdRestoreError(f"no volume claim template mounted at {DATA_MOUNT} in container {ETCD_CONTAINER}",
                               namespace=namespace, step="read etcd", next_step="restore by hand")
    peers: dict[str, str] = {}
    for entry in env.get("ETCD_INITIAL_CLUSTER", "").split(","):
        name, sep, url = entry.partition("=")
        if sep:
            peers[name.strip()] = _expand(url.strip(), {"NAMESPACE": namespace, "HOSTNAME": name.strip()})
    if sorted(peers) != sorted(members):
        raise EtcdRestoreError(f"ETCD_INITIAL_CLUSTER names {sorted(peers)}, the StatefulSet has {members}",
                               namespace=namespace, step="read etcd",
                               next_step="the StatefulSet is not in its rendered state; let the control-plane-operator "
                                         "reconcile it, then run again")
    return EtcdLayout(namespace=namespace, image=etcd.image, replicas=replicas, members=members,
                      claims=[f"{data.metadata.name}-{m}" for m in members],
                      initial_cluster=",".join(f"{m}={peers[m]}" for m in members),
                      token=env.get("ETCD_INITIAL_CLUSTER_TOKEN") or DEFAULT_TOKEN,
                      peer_urls={m: peers[m] for m in members},
                      tolerations=api.sanitize_for_serialization(sts.spec.template.spec.tolerations or []))


def _pods(api: client.ApiClient, namespace: str, selector: str, what: str, condition: Any, timeout: float,
          step: str) -> list[client.V1Pod]:
    try:
        return wait_for_set(client.CoreV1Api(api).list_namespaced_pod, condition, timeout=timeout, what=what,
                            namespace=namespace, label_selector=selector)
    except WaitTimeout as e:
        seen = ", ".join(f"{p.metadata.name} {p.status.phase}" for p in e.last or []) or "none"
        raise EtcdRestoreError(f"{e} (pods: {seen})", namespace=namespace, step=step,
                               next_step=f"look at `oc -n {namespace} get pods -l {selector}` and their events") from None


def _running(pod: client.V1Pod) -> bool:
    statuses = pod.status.container_statuses or []
    return (pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None
            and bool(statuses) and all(s.ready for s in statuses))


# Stopped together, an HA etcd's leader does not exit on SIGTERM until its leadership transfer to a
# member that is stopping too times out (etcd's Stop -> TransferLeadership -> MoveLeader, bounded by
# its request timeout, 5 s + 2 election timeouts), all of it API downtime. Its data is about to be
# moved aside (kept), and etcd recovers from its WAL should the run put it back: the members get
# this long after SIGTERM before the kubelet kills them.
MEMBER_STOP_GRACE_SECONDS = 1


def stop_statefulset(api: client.ApiClient, layout: EtcdLayout) -> None:
    """Scale etcd to 0, and delete its pods with a grace period of MEMBER_STOP_GRACE_SECONDS (shortening
    the StatefulSet controller's deletion if it came first). They go in their own time:
    `wait_statefulset_stopped` before any member's volume is written."""
    client.AppsV1Api(api).patch_namespaced_stateful_set_scale(STATEFULSET, layout.namespace, {"spec": {"replicas": 0}})
    core = client.CoreV1Api(api)
    for pod in core.list_namespaced_pod(layout.namespace, label_selector="app=etcd").items:
        if pod.metadata.name not in layout.members:
            continue
        try:
            core.delete_namespaced_pod(pod.metadata.name, layout.namespace,
                                       grace_period_seconds=MEMBER_STOP_GRACE_SECONDS)
        except ApiException as e:
            if e.status != 404:
                raise


def wait_statefulset_stopped(api: client.ApiClient, layout: EtcdLayout, timeout: float) -> None:
    """Until every etcd member pod is gone (its files closed)."""
    _pods(api, layout.namespace, "app=etcd", "every etcd pod gone", lambda pods: not pods, timeout, "stop etcd")


MEMBER_LABEL = "hcp-runbooks/etcd-member"


def data_pod_deployment(layout: EtcdLayout, operation_id: str, member: str,
                        node: str | None = None) -> dict[str, Any]:
    """The documented data-access Deployment (the etcd image, a shell that waits) for one member: its
    claim mounted at RESTORE_ROOT/<member>, and an emptyDir for the snapshot copy. One claim only: a
    pod mounting volumes of two zones cannot be scheduled (see the module docstring).

    The data pods start while etcd still runs (they fetch the snapshot before the approval): `node`,
    the node of the member's pod, is required (as a DaemonSet pins its pods, by the node's name), because
    a ReadWriteOnce volume is mounted by pods of one node only; elsewhere the pod would wait for the
    volume until the member stopped. No node (the member's pod is gone or was never placed): anywhere the
    volume allows. The members' tolerations let it onto the control plane's dedicated nodes."""
    labels = {"app": DATA_POD_APP, MEMBER_LABEL: member, "hcp-runbooks/operation": operation_id.lower()[:63]}
    placement: dict[str, Any] = {"tolerations": layout.tolerations} if layout.tolerations else {}
    if node:
        placement["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": layout.data_deployment(member), "namespace": layout.namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # never two pods on the claim
            "selector": {"matchLabels": {"app": DATA_POD_APP, MEMBER_LABEL: member}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{
                        "name": "access", "image": layout.image,
                        "command": ["/usr/bin/bash"], "args": ["-c", _DATA_POD_SHELL],
                        "volumeMounts": [{"name": "data", "mountPath": layout.member_dir(member)},
                                         {"name": "snapshot", "mountPath": SNAPSHOT_DIR}],
                    }],
                    "terminationGracePeriodSeconds": 1,
                    **placement,
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": layout.claim_of(member)}},
                                {"name": "snapshot", "emptyDir": {}}],
                },
            },
        },
    }


def _unschedulable(pods: list[client.V1Pod]) -> str:
    """What the scheduler said of pods it could not place (in a timeout's message)."""
    said = [f"{p.metadata.name}: {c.message}" for p in pods for c in (p.status.conditions or [])
            if c.type == "PodScheduled" and c.status == "False" and c.message]
    return f"; the scheduler: {'; '.join(said)}" if said else ""


def member_nodes(api: client.ApiClient, layout: EtcdLayout) -> dict[str, str]:
    """member -> the node its pod is on (members whose pod is gone, or not placed, are left out)."""
    pods = client.CoreV1Api(api).list_namespaced_pod(layout.namespace, label_selector="app=etcd").items
    return {p.metadata.name: p.spec.node_name for p in pods if p.metadata.name in layout.members and p.spec.node_name}


def start_data_pods(api: client.ApiClient, layout: EtcdLayout, operation_id: str, timeout: float) -> dict[str, str]:
    """Create every member's data-access Deployment on its member's node (or find this operation's) and
    return member -> its running pod."""
    apps = client.AppsV1Api(api)
    nodes = member_nodes(api, layout)
    for member in layout.members:
        name = layout.data_deployment(member)
        try:
            apps.create_namespaced_deployment(layout.namespace,
                                              data_pod_deployment(layout, operation_id, member, nodes.get(member)))
        except ApiException as e:
            if e.status != 409:
                raise
            existing = apps.read_namespaced_deployment(name, layout.namespace)
            owner = (existing.metadata.labels or {}).get("hcp-runbooks/operation")
            if owner != operation_id.lower()[:63]:
                raise EtcdRestoreError(f"deployment {name} exists, made by operation {owner!r}",
                                       namespace=layout.namespace, step="start the data pods",
                                       next_step=f"finish or recover that operation (`hcp-runbooks recover {owner}`), "
                                                 f"or delete it: `oc -n {layout.namespace} delete deployment {name}`")

    def by_member(pods: list[client.V1Pod]) -> dict[str, list[client.V1Pod]]:
        out: dict[str, list[client.V1Pod]] = {}
        for p in pods:
            out.setdefault((p.metadata.labels or {}).get(MEMBER_LABEL, ""), []).append(p)
        return out

    def all_running(pods: list[client.V1Pod]) -> bool:
        found = by_member(pods)
        return all(len(found.get(m, [])) == 1 and _running(found[m][0]) for m in layout.members)

    selector = f"app={DATA_POD_APP}"
    try:
        pods = wait_for_set(client.CoreV1Api(api).list_namespaced_pod, all_running, timeout=timeout,
                            what=f"a running data pod for each of {', '.join(layout.members)}",
                            namespace=layout.namespace, label_selector=selector)
    except WaitTimeout as e:
        seen = ", ".join(f"{p.metadata.name} {p.status.phase}" for p in e.last or []) or "none"
        raise EtcdRestoreError(f"{e} (pods: {seen}{_unschedulable(e.last or [])})", namespace=layout.namespace,
                               step="start the data pods",
                               next_step=f"look at `oc -n {layout.namespace} get pods -l {selector}` and their events; "
                                         "a failed run puts etcd back on its data") from None
    found = by_member(pods)
    return {m: str(found[m][0].metadata.name) for m in layout.members}


def copy_into_pod(api: client.ApiClient, layout: EtcdLayout, pod: str, source: Path, sha256: str, *,
                  timeout: float) -> None:
    """Stream the local snapshot into the pod (`oc cp`); the pod hashes it as it writes it (tee into
    sha256sum: no second read of the file), and the copy takes its name only when whole."""
    namespace, target = layout.namespace, layout.snapshot_in_pod
    size = source.stat().st_size
    part = f"{target}.part"

    def chunks() -> Iterator[bytes]:
        with source.open("rb") as f:
            while chunk := f.read(_COPY_CHUNK):
                yield chunk

    script = (f"set -o pipefail; head -c {size} | tee {part} | sha256sum && [ \"$(stat -c %s {part})\" = {size} ] "
              f"&& mv {part} {target}")
    try:
        out = pod_exec.run_with_input(api, namespace, pod, "access", ["bash", "-c", script], chunks(),
                                      timeout=timeout).text
    except pod_exec.ExecError as e:
        raise EtcdRestoreError(f"copying the snapshot into {pod} failed: {e}", namespace=namespace,
                               step="copy the snapshot", next_step="run again with the same operation id") from e
    got = out.split()[0] if out.split() else ""
    if got != sha256:
        pod_exec.run(api, namespace, pod, "access", ["rm", "-f", target], check=False)
        raise EtcdRestoreError(f"the copy in {pod} has SHA-256 {got or '?'}, the snapshot {sha256}",
                               namespace=namespace, step="copy the snapshot",
                               next_step="run again with the same operation id (the copy is retried)")


class DownloadUnavailable(Exception):
    """The data pod could not download the snapshot (no curl in the image, S3 unreachable from the
    pod, an HTTP error): nothing was put in place; the caller copies the runner's file in instead."""


# Exit statuses of the download script that mean "copy it in instead" (the pod could not fetch it);
# any other failure, and a SHA-256 that differs, is an error.
_NO_CURL, _CURL_FAILED, _DIGEST_DIFFERS = 41, 42, 43


def download_script(layout: EtcdLayout, sha256: str, size: int, *, ca_bytes: int, config_bytes: int) -> str:
    """What the data pod runs to fetch the snapshot itself: stdin carries the CA bundle to trust
    (`ca_bytes`, 0: the image's system roots, as on AWS S3) and then curl's configuration with the
    presigned URL (`config_bytes`): the URL grants read access to the snapshot until it expires, so it
    goes through stdin, never into the exec request's URL (the API server's audit log) or the pod's
    process list. The file takes its name only when its SHA-256 and size are the runner's verified
    ones."""
    target, part, ca = layout.snapshot_in_pod, f"{layout.snapshot_in_pod}.part", f"{SNAPSHOT_DIR}/s3-ca.pem"
    cacert = f" --cacert {ca}" if ca_bytes else ""
    return "\n".join([
        "set -u -o pipefail",
        f"command -v curl >/dev/null 2>&1 || {{ echo 'no curl in the image' >&2; exit {_NO_CURL}; }}",
        # openssl's SHA-256 uses the CPU's SHA instructions; coreutils' sha256sum (the fallback) is
        # several times slower
        'hash_of() { local out; if command -v openssl >/dev/null 2>&1; then out=$(openssl dgst -sha256 -r < "$1"); '
        'else out=$(sha256sum < "$1"); fi || return 1; echo "${out%% *}"; }',
        # a re-run whose earlier run got it in already: the same file is not fetched again
        f'if [ -f {target} ] && [ "$(hash_of {target})" = "{sha256}" ]; then echo present; exit 0; fi',
        f"rm -f {part} {ca}",
        f"head -c {ca_bytes} > {ca}" if ca_bytes else ":",
        # --fail: an HTTP error (an expired URL's 403) is an error, not an XML body saved as the file.
        # curl writes the file itself and it is hashed once whole (from the page cache): cheaper on a busy
        # node than piping every byte through tee into the hash
        f"curl --silent --show-error --fail --connect-timeout 10 --speed-limit 1024 --speed-time 60{cacert} "
        f"--config <(head -c {config_bytes}) --output {part} || {{ rm -f {part} {ca}; exit {_CURL_FAILED}; }}",
        f"rm -f {ca}",
        f"got=$(hash_of {part}) || {{ rm -f {part}; echo 'cannot hash the download' >&2; exit 1; }}",
        f'size=$(stat -c %s {part})',
        f'if [ "$got" != {sha256} ] || [ "$size" != {size} ]; then rm -f {part}; '
        f'echo "$got $size" >&2; exit {_DIGEST_DIFFERS}; fi',
        f"mv {part} {target}",
        'echo "$got $size"',
    ])


def download_into_pod(api: client.ApiClient, layout: EtcdLayout, pod: str, url: str, sha256: str, size: int, *,
                      ca_bundle: bytes | None, timeout: float) -> bool:
    """The data pod downloads the snapshot from S3 with a presigned GET URL (what HyperShift's
    etcd-init does with restoreSnapshotURL) and checks its SHA-256 against the runner's verified file
    before it is put where the restore reads it. True if that file was there already (not fetched
    again). Raises `DownloadUnavailable` when the pod could not fetch it (the caller copies the
    runner's file in), `EtcdRestoreError` when the bytes it got are not the verified snapshot's (the
    object changed in S3 after the runner checked it)."""
    namespace = layout.namespace
    ca = ca_bundle or b""
    config = f'url = "{url}"\n'.encode()
    script = download_script(layout, sha256, size, ca_bytes=len(ca), config_bytes=len(config))
    try:
        out = pod_exec.run_with_input(api, namespace, pod, "access", ["bash", "-c", script], [ca + config],
                                      timeout=timeout).text
    except pod_exec.CommandFailed as e:
        stderr = e.stderr.decode("utf-8", "replace").strip()[-500:]
        if e.exit_code in (_NO_CURL, _CURL_FAILED):
            raise DownloadUnavailable(stderr or f"exit {e.exit_code}") from None
        if e.exit_code == _DIGEST_DIFFERS:
            raise EtcdRestoreError(
                f"the data pod downloaded bytes that are not the verified snapshot (SHA-256 and size {stderr or '?'}; "
                f"verified: {sha256} {size}): the object in S3 changed after the runner checked it",
                namespace=namespace, step="download the snapshot",
                next_step="nothing was restored; find out what replaced the backup's snapshot object and restore from "
                          "a backup you trust") from None
        raise EtcdRestoreError(f"downloading the snapshot in {pod} failed: {e}", namespace=namespace,
                               step="download the snapshot", next_step="run again with the same operation id") from e
    except pod_exec.ExecError as e:
        raise EtcdRestoreError(f"downloading the snapshot in {pod} failed: {e}", namespace=namespace,
                               step="download the snapshot", next_step="run again with the same operation id") from e
    if out.strip() == "present":
        return True
    got = out.split()[0] if out.split() else ""
    if got != sha256:  # the script checked it; so does the runner, on what the pod says
        pod_exec.run(api, namespace, pod, "access", ["rm", "-f", layout.snapshot_in_pod], check=False)
        raise EtcdRestoreError(f"the download in {pod} has SHA-256 {got or '?'}, the snapshot {sha256}",
                               namespace=namespace, step="download the snapshot",
                               next_step="run again with the same operation id")
    return False


def snapshot_in_pod(api: client.ApiClient, layout: EtcdLayout, pod: str) -> str | None:
    """SHA-256 of the snapshot already copied into the data pod, if there is one."""
    path = layout.snapshot_in_pod
    result = pod_exec.run(api, layout.namespace, pod, "access", ["sh", "-c", f"test -f {path} && sha256sum {path}"],
                          check=False)
    return result.text.split()[0] if result.exit_code == 0 and result.text.split() else None


def previous_data_dir(operation_id: str) -> str:
    """Where a member's old data is kept, on its own claim (as the etcd container sees it)."""
    return f"{DATA_MOUNT}/data.before-{operation_id.lower()}"


def _marker_name(operation_id: str) -> str:
    return f"hcp-runbooks-restored-{operation_id.lower()}"


def restore_script(layout: EtcdLayout, operation_id: str, *, skip_hash_check: bool,
                   members: list[str] | None = None) -> str:
    """The restore of the claims of `members` (default: every member) mounted in one data pod,
    idempotent per member: restore into a scratch directory, move the old data aside (kept), put the
    restored data in place, leave a marker. A member whose marker exists is never restored again; the
    snapshot file goes once every member of the pod is done."""
    members = list(layout.members if members is None else members)
    lines = ["set -eu",
             f'[ -f {layout.snapshot_in_pod} ] || ls {layout.member_dir(members[0])}/{_marker_name(operation_id)} '
             f'>/dev/null 2>&1 || {{ echo "no snapshot at {layout.snapshot_in_pod}" >&2; exit 3; }}',
             # OpenShift's etcd image may lack etcdutl (HyperShift's etcd-init.sh says so); etcdctl's
             # deprecated `snapshot restore` takes the same flags then.
             'if command -v etcdutl >/dev/null 2>&1; then RESTORE="etcdutl"; else RESTORE="env ETCDCTL_API=3 etcdctl"; fi']
    previous = previous_data_dir(operation_id).rsplit("/", 1)[1]
    # The members' restores run side by side (each writes its own volume); each one's log and exit
    # status are kept and every failure is reported.
    for i, member in enumerate(members):
        root = layout.member_dir(member)
        args = ["snapshot", "restore", layout.snapshot_in_pod, "--data-dir", f"{root}/data.restoring",
                "--name", member, "--initial-cluster", layout.initial_cluster,
                "--initial-cluster-token", layout.token, "--initial-advertise-peer-urls", layout.peer_urls[member]]
        if skip_hash_check:
            args.append("--skip-hash-check")
        restore = shlex.join(args)
        marker, data = f"{root}/{_marker_name(operation_id)}", f"{root}/data"
        lines += [
            f"restore_{i}() {{",
            f"  if [ -f {marker} ]; then echo '{member}: already restored by this operation'; return 0; fi",
            f"  rm -rf {root}/data.restoring",
            f"  $RESTORE {restore}",
            f"  if [ -d {data} ]; then if [ -d {root}/{previous} ]; then rm -rf {data}; else mv {data} {root}/{previous}; fi; fi",
            f"  mv {root}/data.restoring {data}",
            f"  touch {marker}",
            f"  echo '{member}: restored'",
            "}",
            f"( set -e; restore_{i} ) > {root}/hcp-runbooks-restore.log 2>&1 &",
            f"pid_{i}=$!",
        ]
    lines.append("failed=0")
    for i, member in enumerate(members):
        log = f"{layout.member_dir(member)}/hcp-runbooks-restore.log"  # its own volume: /tmp may be shared
        lines += [f"if wait $pid_{i}; then cat {log}; else failed=1; echo '{member}: restore failed:' >&2; "
                  f"cat {log} >&2; fi",
                  f"rm -f {log}"]
    lines.append('[ "$failed" = 0 ] || exit 1')
    lines.append(f"rm -f {layout.snapshot_in_pod}")
    return "\n".join(lines)


def run_restore(api: client.ApiClient, layout: EtcdLayout, pod: str, operation_id: str, *, members: list[str],
                skip_hash_check: bool, timeout: float) -> str:
    """The restore of `members`' claims in data pod `pod`."""
    script = restore_script(layout, operation_id, skip_hash_check=skip_hash_check, members=members)
    try:
        return pod_exec.run(api, layout.namespace, pod, "access", ["bash", "-c", script], timeout=timeout).text.strip()
    except pod_exec.ExecError as e:
        stderr = e.stderr.decode("utf-8", "replace").strip()[-800:]
        raise EtcdRestoreError(f"the restore in {pod} failed: {stderr or e}", namespace=layout.namespace,
                               step="restore",
                               next_step="each member's old data is untouched or kept in "
                                         f"{previous_data_dir(operation_id)} on its claim; fix the cause and run again "
                                         "with the same operation id") from e


def remove_data_pods(api: client.ApiClient, namespace: str, timeout: float) -> bool:
    """Delete every data-access Deployment (one per member; a single one from an earlier version of
    this runbook) and wait until their pods are gone (they hold the claims)."""
    apps = client.AppsV1Api(api)
    names = {d.metadata.name for d in apps.list_namespaced_deployment(namespace, label_selector=f"app={DATA_POD_APP}").items}
    removed = False
    for name in sorted(names):
        try:
            apps.delete_namespaced_deployment(name, namespace, propagation_policy="Foreground")
            removed = True
        except ApiException as e:
            if e.status != 404:
                raise
    _pods(api, namespace, f"app={DATA_POD_APP}", "every data pod gone", lambda pods: not pods, timeout,
          "remove the data pods")
    return removed


def start_statefulset(api: client.ApiClient, layout: EtcdLayout, timeout: float) -> None:
    """Scale etcd back and wait until every member pod runs."""
    client.AppsV1Api(api).patch_namespaced_stateful_set_scale(STATEFULSET, layout.namespace,
                                                              {"spec": {"replicas": layout.replicas}})
    want = set(layout.members)
    _pods(api, layout.namespace, "app=etcd", f"{layout.replicas} etcd pods running",
          lambda pods: {p.metadata.name for p in pods if _running(p)} >= want, timeout, "start etcd")


def wait_members_healthy(api: client.ApiClient, layout: EtcdLayout, timeout: float,
                         interval: float = _HEALTH_POLL_SECONDS, *,
                         new_api: Callable[[], client.ApiClient] | None = None) -> list[MemberStatus]:
    """Until every member answers `endpoint health` (a quorum read). etcd has no watch for its own
    health, so this asks the members every `interval` seconds: all at once when `new_api` is given
    (each member through an ApiClient of its own: execs that overlap must not share one, see
    hcp.pod_exec), else one after the other on `api`. One status exec is bounded well under the
    wait: a member whose exec hangs is asked again the next round."""
    deadline = time.monotonic() + timeout
    clients: dict[str, client.ApiClient] = {}

    def status(pod: str) -> MemberStatus:
        own = api
        if new_api is not None:  # one client per member, used by one exec at a time (rounds do not overlap)
            own = clients.get(pod) or clients.setdefault(pod, new_api())
        return member_status(own, EtcdMember(layout.namespace, pod), timeout=_HEALTH_EXEC_TIMEOUT)

    workers = max(1, layout.replicas) if new_api is not None else 1
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="etcd-health") as pool:
            while True:
                statuses = list(pool.map(status, list_members(api, layout.namespace)))
                if len(statuses) == layout.replicas and all(s.healthy for s in statuses):
                    return statuses
                if time.monotonic() > deadline:
                    listing = "; ".join(s.describe() for s in statuses) or "no members"
                    raise EtcdRestoreError(f"etcd not healthy after {timeout:.0f}s: {listing}",
                                           namespace=layout.namespace, step="wait for etcd",
                                           next_step=f"look at `oc -n {layout.namespace} logs etcd-0 -c etcd`; run "
                                                     "again with the same operation id to keep waiting")
                time.sleep(interval)
    finally:
        for own in clients.values():
            own.close()


def remove_previous_data(api: client.ApiClient, layout: EtcdLayout, operation_id: str) -> None:
    """After the restored etcd is verified: each member's old data directory. The markers stay (a
    few bytes): they keep a late re-run of the operation from restoring again."""
    for member in layout.members:  # sequential: execs on one ApiClient must not overlap
        pod_exec.run(api, layout.namespace, member, ETCD_CONTAINER, ["rm", "-rf", previous_data_dir(operation_id)],
                     timeout=300)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
