"""The in-pod side of an etcd backup: the members of a hosted control plane's etcd, their state,
and the snapshot taken in one of them. Everything goes through the Kubernetes exec API (hcp.pod_exec),
running the etcd image's own `etcdctl` against the member's local client URL with the client
certificate HyperShift mounts, exactly as the documented backup procedure does.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from hcp import pod_exec
from hcp.pod_exec import ExecError

__all__ = [
    "CA_CERT", "CLIENT_CERT", "CLIENT_KEY", "DATA_DIR", "ETCDCTL", "LOCAL_ENDPOINT",
    "EtcdMember", "EtcdMemberError", "MemberStatus", "SnapshotInfo",
    "list_members", "member_status", "choose_member", "save_snapshot", "stream_snapshot", "remove_snapshot",
    "stream_hashed_snapshot", "HashedSnapshotStream", "etcdctl_argv", "save_and_stream_snapshot", "LiveSnapshotStream",
]

log = logging.getLogger("hcp.etcd_member")

# Paths in HyperShift's etcd StatefulSet (control-plane-operator's etcd assets).
CA_CERT = "/etc/etcd/tls/etcd-ca/ca.crt"
CLIENT_CERT = "/etc/etcd/tls/client/etcd-client.crt"
CLIENT_KEY = "/etc/etcd/tls/client/etcd-client.key"
DATA_DIR = "/var/lib/data"
ETCDCTL = "/usr/bin/etcdctl"
ETCDUTL = "/usr/bin/etcdutl"
LOCAL_ENDPOINT = "https://localhost:2379"
MEMBER_LABEL = "app=etcd"

_STATUS_TIMEOUT = 30.0
_HEALTH_MARK = "--- hcp-runbooks: endpoint health ---"
# Files next to a snapshot that a save or its facts create (and remove when they finish).
_LEFTOVERS = (".part", ".sha256", ".version", ".facts")


@dataclass(frozen=True)
class EtcdMember:
    namespace: str
    pod: str
    container: str = "etcd"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.pod}"


@dataclass(frozen=True)
class MemberStatus:
    """One member as seen from its own pod. `healthy` False comes with `error` saying why (pod not
    Running, etcdctl failing, endpoint unhealthy); the numbers are then whatever could be read."""

    pod: str
    endpoint: str
    member_id: int | None
    is_leader: bool
    revision: int | None
    db_size: int | None
    raft_term: int | None
    healthy: bool
    error: str | None = None
    namespace: str = ""
    version: str | None = None

    def describe(self) -> str:
        if self.healthy:
            role = "leader" if self.is_leader else "follower"
            return f"{self.pod}: healthy {role}, revision {self.revision}, db {self.db_size} bytes"
        return f"{self.pod}: unhealthy ({self.error or 'no reason given'})"


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot file in a member pod. `revision`, `hash`, `total_keys` and `db_size_bytes` are what
    `snapshot status` reports (total_keys counts every entry of the bolt database, all buckets and all
    revisions, not the live keys). `size_bytes` and `sha256` are the file's, in the pod: what an
    upload must reproduce (the file is the database plus the 32-byte SHA-256 `snapshot save` appends,
    so size_bytes = db_size_bytes + 32). `sha256` is None until the file was hashed: a backup hashes
    it in the pod while streaming it out, so it is known after the upload."""

    path: str
    member: str
    revision: int
    hash: int
    total_keys: int
    size_bytes: int
    sha256: str | None
    db_size_bytes: int
    etcd_version: str | None = None


class EtcdMemberError(RuntimeError):
    """Something about an etcd member failed; names the namespace, pod, step and what to do next."""

    def __init__(self, message: str, *, namespace: str, pod: str | None = None, step: str,
                 next_step: str, command: Sequence[str] | None = None, cluster: str | None = None) -> None:
        where = f"{namespace}/{pod}" if pod else namespace
        text = f"etcd {where}" + (f" (cluster {cluster})" if cluster else "") + f", step {step}: {message}"
        if command:
            text += f" [command: {shlex.join(command)}]"
        super().__init__(f"{text}. Next: {next_step}")
        self.namespace = namespace
        self.pod = pod
        self.step = step
        self.next_step = next_step
        self.command = list(command) if command else None
        self.cluster = cluster


def etcdctl_argv(*args: str) -> list[str]:
    """etcdctl against the member's own client URL with the mounted client certificate."""
    return ["env", "ETCDCTL_API=3", ETCDCTL, "--cacert", CA_CERT, "--cert", CLIENT_CERT, "--key", CLIENT_KEY,
            f"--endpoints={LOCAL_ENDPOINT}", *args]


def _core(api: client.ApiClient | client.CoreV1Api) -> client.CoreV1Api:
    return api if isinstance(api, client.CoreV1Api) else client.CoreV1Api(api)


def _cluster_name(api: client.ApiClient | client.CoreV1Api) -> str | None:
    core = _core(api)
    return getattr(core.api_client, "hcp_cluster", None) or core.api_client.configuration.host


def list_members(api: client.ApiClient | client.CoreV1Api, namespace: str) -> list[str]:
    """Names of the etcd pods (label app=etcd) in the control-plane namespace, sorted."""
    try:
        pods = _core(api).list_namespaced_pod(namespace, label_selector=MEMBER_LABEL)
    except ApiException as e:
        raise EtcdMemberError(f"listing pods labelled {MEMBER_LABEL} failed: {e.status} {e.reason}",
                              namespace=namespace, step="list members", cluster=_cluster_name(api),
                              next_step="check the kubeconfig's access to the namespace and that it is the "
                                        "hosted cluster's control-plane namespace (<hc-namespace>-<hc-name>)") from e
    return sorted(p.metadata.name for p in pods.items)


def member_status(api: client.ApiClient | client.CoreV1Api, member: EtcdMember, *,
                  timeout: float = _STATUS_TIMEOUT) -> MemberStatus:
    """The member's `endpoint status` and `endpoint health`, from inside its pod. Never raises for
    a sick member: an unhealthy status carries the reason instead."""

    def unhealthy(error: str, **known: Any) -> MemberStatus:
        fields: dict[str, Any] = {"member_id": None, "is_leader": False, "revision": None, "db_size": None,
                                  "raft_term": None, "version": None, **known}
        return MemberStatus(pod=member.pod, endpoint=LOCAL_ENDPOINT, healthy=False, error=error,
                            namespace=member.namespace, **fields)

    try:
        pod = _core(api).read_namespaced_pod(member.pod, member.namespace)
    except ApiException as e:
        return unhealthy(f"pod cannot be read: {e.status} {e.reason}")
    phase = (pod.status.phase if pod.status else None) or "Unknown"
    if phase != "Running":
        return unhealthy(f"pod is {phase}, not Running")
    if pod.metadata.deletion_timestamp is not None:
        return unhealthy("pod is being deleted")

    # One exec for both (each exec is a round trip through the API server): `endpoint status`, then
    # `endpoint health`, which does a quorum read, so a member that answers status but cannot serve
    # reads (no leader, lost quorum) shows up there. A failing status ends the script with its code.
    argv = ["sh", "-c", f"{shlex.join(etcdctl_argv('endpoint', 'status', '-w', 'json'))} || exit $?; echo {_HEALTH_MARK}; "
                        f"{shlex.join(etcdctl_argv('endpoint', 'health', '-w', 'json'))}; echo \"{_HEALTH_MARK} $?\""]
    try:
        result = _run(api, member, argv, timeout=timeout, check=False)
    except ExecError as e:
        return unhealthy(f"endpoint status failed: {_short(e)}")
    if result.exit_code != 0:
        return unhealthy(f"endpoint status failed: {_exit_text(result.exit_code, result.stderr)}")
    status_text, _, rest = result.text.partition(f"{_HEALTH_MARK}\n")
    try:
        status = _parse_endpoint_status(status_text)
    except ValueError as e:
        return unhealthy(f"endpoint status failed: {_short(e)}")
    known = {"member_id": status["member_id"], "is_leader": status["is_leader"], "revision": status["revision"],
             "db_size": status["db_size"], "raft_term": status["raft_term"], "version": status["version"]}
    health_text, _, code = rest.rpartition(f"{_HEALTH_MARK} ")
    try:
        health = pod_exec.ExecResult(health_text.encode(), result.stderr, int(code.strip()))
    except ValueError:
        return unhealthy(f"endpoint health printed no exit status: {rest[-200:]!r}", **known)
    health_error = _health_error(health)
    if health_error:
        return unhealthy(health_error, **known)
    if status["errors"]:
        return unhealthy("member reports errors: " + "; ".join(status["errors"]), **known)
    return MemberStatus(pod=member.pod, endpoint=LOCAL_ENDPOINT, healthy=True, error=None,
                        namespace=member.namespace, **known)


def choose_member(statuses: Sequence[MemberStatus]) -> MemberStatus:
    """The member to snapshot: a healthy one, a follower rather than the leader (the snapshot's read
    load then stays off the member that orders every write), then the highest revision (the most
    recent data), then by pod name so the choice is repeatable."""
    healthy = [s for s in statuses if s.healthy]
    if not healthy:
        namespace = next((s.namespace for s in statuses if s.namespace), "")
        listing = "; ".join(s.describe() for s in statuses) or "no members found"
        raise EtcdMemberError(f"no healthy etcd member to take a snapshot from ({listing})",
                              namespace=namespace or "<unknown namespace>", step="choose member",
                              next_step="restore etcd health first (see the etcd member recovery runbook) or "
                                        "restore from an earlier backup; a snapshot of an unhealthy member may be "
                                        "stale or incomplete")
    return min(healthy, key=lambda s: (s.is_leader, -(s.revision or 0), s.pod))


def save_snapshot(api: client.ApiClient | client.CoreV1Api, member: EtcdMember, path: str, *,
                  timeout: float = 600.0, hash_file: bool = True) -> SnapshotInfo:
    """`etcdctl snapshot save <path>` in the member's pod, then its `snapshot status`, size, the
    server's version and (with `hash_file`) SHA-256, all in one exec (each exec is a round trip
    through the API server). Without `hash_file`, `sha256` is None: the file is hashed in the pod
    while it streams out (`stream_hashed_snapshot`), off the snapshot step's clock. `path` must be on
    a volume of the pod (e.g. /var/lib/data/hcp-runbooks-<operation>.db) so it survives until it is
    streamed out and removed."""
    if not path.startswith("/") or path.endswith("/"):
        raise ValueError(f"snapshot path must be an absolute file path, not {path!r}")
    save_argv = etcdctl_argv("snapshot", "save", path)  # what errors name: the command an operator knows
    argv = ["sh", "-c", f"{shlex.join(save_argv)} >/dev/null || exit $?; echo {_SAVED_MARK}; {_facts_script(path, hash_file)}"]
    try:
        result = _run(api, member, argv, timeout=timeout, check=False)
    except ExecError as e:
        raise _error(api, member, "snapshot save", e, save_argv, _SAVE_NEXT.format(path=path)) from e
    saved, mark, facts_text = result.text.partition(f"{_SAVED_MARK}\n")
    if not mark:
        raise EtcdMemberError(_exit_text(result.exit_code, result.stderr), namespace=member.namespace, pod=member.pod,
                              step="snapshot save", cluster=_cluster_name(api), command=save_argv,
                              next_step=_SAVE_NEXT.format(path=path))
    corrupt = f"the file {path} may be corrupt: remove it and take the snapshot again"
    if result.exit_code != 0:
        raise EtcdMemberError(_exit_text(result.exit_code, result.stderr), namespace=member.namespace, pod=member.pod,
                              step="snapshot status", cluster=_cluster_name(api), command=argv, next_step=corrupt)
    return _parse_facts(api, member, path, facts_text, hash_file, argv)


def _parse_facts(api: client.ApiClient | client.CoreV1Api, member: EtcdMember, path: str, facts_text: str,
                 hash_file: bool, argv: Sequence[str]) -> SnapshotInfo:
    """The SnapshotInfo from what `_facts_script` printed (status JSON, size, SHA-256 line, version JSON)."""
    corrupt = f"the file {path} may be corrupt: remove it and take the snapshot again"
    try:
        lines = facts_text.strip().splitlines()
        data = json.loads(lines[0])
        size, rest = int(lines[1]), lines[2:]
        sha256 = None
        if hash_file:
            sha256, rest = rest[0].split()[0], rest[1:]
            if not re.fullmatch(r"[0-9a-f]{64}", sha256):
                raise ValueError(f"not a SHA-256: {sha256!r}")
        info = SnapshotInfo(path=path, member=member.pod, revision=int(data["revision"]), hash=int(data["hash"]),
                            total_keys=int(data["totalKey"]), size_bytes=size, sha256=sha256,
                            db_size_bytes=int(data["totalSize"]))
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise EtcdMemberError(f"snapshot status and size of {path} could not be read ({e})",
                              namespace=member.namespace, pod=member.pod, step="snapshot status",
                              cluster=_cluster_name(api), command=argv, next_step=corrupt) from e
    try:  # the server's version is informational: the snapshot is good without it
        return replace(info, etcd_version=_parse_endpoint_status(rest[0])["version"])
    except (IndexError, ValueError, KeyError, TypeError):
        log.warning("%s: could not read the etcd server version", member)
        return info


_SAVED_MARK = "--- hcp-runbooks: snapshot saved ---"
_SAVE_NEXT = ("check the member's health and free space on its data volume, then retry; a partial file may remain "
              "at {path}.part (remove_snapshot removes it)")


def _facts_script(path: str, hash_file: bool, hasher: str = "sha256sum") -> str:
    """`snapshot status`, the size, (with `hash_file`) the SHA-256 and the server's version, one a
    line; the SHA-256 (a full read of the file, by `hasher`: a command printing `<hex> <name>`) and
    the version run while the status is computed. etcdctl 3.5 still has `snapshot status`
    (deprecated for etcdutl); an image without it falls back to etcdutl."""
    q = shlex.quote(path)
    status = shlex.join(etcdctl_argv("snapshot", "status", path, "-w", "json"))
    endpoint = shlex.join(etcdctl_argv("endpoint", "status", "-w", "json"))
    hashing = f"{hasher} {q} > {q}.sha256 & hashing=$!; " if hash_file else ""
    hashed = f"wait $hashing; h=$?; [ $rc -eq 0 ] && rc=$h; [ $rc -eq 0 ] && cat {q}.sha256; " if hash_file else ""
    return (f"{hashing}{{ {endpoint} 2>/dev/null || echo '[]'; }} > {q}.version & versioning=$!; "
            f"{{ {status} || {ETCDUTL} snapshot status {q} -w json; }} && stat -c %s {q}; rc=$?; {hashed}"
            f"wait $versioning; cat {q}.version; rm -f {q}.sha256 {q}.version; exit $rc")


def stream_snapshot(api: client.ApiClient | client.CoreV1Api, member: EtcdMember, path: str,
                    chunk_bytes: int = 1 << 20, *, idle_timeout: float = 60.0) -> Iterator[bytes]:
    """The snapshot file's bytes as they come out of the pod (`cat`); raises pod_exec.ExecStreamError
    after the last chunk if the stream was cut or cat failed, so a consumer never keeps a short copy."""
    return pod_exec.stream_stdout(api, member.namespace, member.pod, member.container, ["cat", path],
                                  chunk_bytes=chunk_bytes, idle_timeout=idle_timeout)


class HashedSnapshotStream(Iterator[bytes]):
    """The snapshot file's bytes as they come out of the pod (`cat`), and the file's SHA-256 computed
    in the pod meanwhile (openssl when it works in the image: it uses the CPU's SHA instructions;
    else sha256sum). The hasher prints on stderr, the exec's side channel, so bytes and hash come in
    one exec, and the hash costs no step of its own. `sha256` is the pod's once the stream is
    exhausted. Raises like `stream_snapshot` (ExecStreamError after the last chunk when the stream
    was cut, cat or the hasher failed); closing it closes the exec's connection."""

    def __init__(self, api: client.ApiClient | client.CoreV1Api, member: EtcdMember, path: str,
                 chunk_bytes: int = 1 << 20, *, idle_timeout: float = 60.0) -> None:
        self.member, self.path = member, path
        self.argv = ["sh", "-c", _hashed_stream_script(path)]
        self._cluster = _cluster_name(api)
        self._stderr = bytearray()
        self._done = False
        self._chunks = pod_exec.stream_stdout(api, member.namespace, member.pod, member.container, self.argv,
                                              chunk_bytes=chunk_bytes, idle_timeout=idle_timeout,
                                              stderr_sink=self._stderr)

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except StopIteration:
            self._done = True
            raise

    def close(self) -> None:
        self._chunks.close()

    @property
    def sha256(self) -> str:
        if not self._done:
            raise RuntimeError(f"the SHA-256 of {self.path} is known once its stream is read to the end")
        found = re.search(rb"^([0-9a-f]{64})[ \t]", bytes(self._stderr), re.MULTILINE)
        if found is None:
            raise EtcdMemberError(f"the stream of {self.path} ended without the SHA-256 computed in the pod "
                                  f"(stderr: {self._stderr[-300:].decode('utf-8', 'replace')!r})",
                                  namespace=self.member.namespace, pod=self.member.pod, step="stream snapshot",
                                  cluster=self._cluster, command=self.argv,
                                  next_step="check that the etcd image has sha256sum and tee (coreutils), then retry")
        return found.group(1).decode()


def stream_hashed_snapshot(api: client.ApiClient | client.CoreV1Api, member: EtcdMember, path: str,
                           chunk_bytes: int = 1 << 20, *, idle_timeout: float = 60.0) -> HashedSnapshotStream:
    """The snapshot's bytes with their SHA-256 computed in the pod on the way out (see HashedSnapshotStream)."""
    return HashedSnapshotStream(api, member, path, chunk_bytes, idle_timeout=idle_timeout)


def _hashed_stream_script(path: str) -> str:
    """cat streams the file while the hasher reads it too (from the page cache: the file was just
    written), rather than a tee into a FIFO, which costs the pod more CPU than the hash itself."""
    q = shlex.quote(path)
    return ("if openssl dgst -sha256 -r </dev/null >/dev/null 2>&1; then hasher='openssl dgst -sha256 -r'; "
            f"else hasher=sha256sum; fi; $hasher {q} >&2 & hashing=$!; cat {q}; rc=$?; wait $hashing; hc=$?; "
            "[ $rc -ne 0 ] && exit $rc; exit $hc")


_FACTS_MARK = "--- hcp-runbooks: snapshot facts ---"
_FAILED_MARK = "--- hcp-runbooks: failed at"
_REMOVED_MARK = "--- hcp-runbooks: snapshot file removed ---"
_BYTES_MARK = "--- hcp-runbooks: snapshot bytes"


class LiveSnapshotStream(Iterator[bytes]):
    """`etcdctl snapshot save <path>` in the member's pod, its bytes streamed out while etcdctl writes
    them, then the saved file's facts; one exec (see `_live_stream_script`).

    After the stream is exhausted, `info` is the saved file as `save_snapshot(hash_file=True)`
    describes it, its `sha256` computed in the pod over the final file on disk (not over the bytes
    that streamed: the uploader's own hash of those must equal it), and `save_seconds` how long
    etcdctl ran (measured in the pod; None if its clock could not say). With `remove_after`, the
    script removes the file once its facts are known (`removed` then says whether it could): for a
    caller that takes a new snapshot rather than stream this one again. The iteration ends with the
    file's last byte (the script says the size once etcdctl and the stream succeeded), while the pod
    is still computing the facts: `info` waits for them. Raises EtcdMemberError (never before the
    last chunk with a short copy looking whole) when etcdctl or the stream failed, the stream was cut
    or brought more bytes than the file; `info` raises it when the facts failed. Closing it before
    the last byte closes the exec's connection (the server then stops etcdctl too)."""

    def __init__(self, api: client.ApiClient | client.CoreV1Api, member: EtcdMember, path: str,
                 chunk_bytes: int = 1 << 20, *, idle_timeout: float = 300.0, remove_after: bool = False) -> None:
        if not path.startswith("/") or path.endswith("/"):
            raise ValueError(f"snapshot path must be an absolute file path, not {path!r}")
        self.api, self.member, self.path = api, member, path
        self.save_argv = etcdctl_argv("snapshot", "save", path)  # what errors name: the command an operator knows
        self.argv = ["sh", "-c", _live_stream_script(path, remove_after)]
        self.removed = False
        self._stderr = bytearray()
        self._live = bytearray()
        self._sent = 0
        self._size: int | None = None  # the saved file's size, once the script has said it
        self._info: SnapshotInfo | None = None
        self.save_seconds: float | None = None
        self._chunks = pod_exec.stream_stdout(api, member.namespace, member.pod, member.container, self.argv,
                                              chunk_bytes=chunk_bytes, idle_timeout=idle_timeout,
                                              stderr_sink=self._stderr, live_stderr=self._live,
                                              flush_mark=_BYTES_MARK.encode())

    def __next__(self) -> bytes:
        while not self.complete:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._info = self._facts()
                raise
            except ExecError as e:
                raise self._failure(e) from e
            self._sent += len(chunk)
            if self._size is None:
                found = re.search(rb"^" + re.escape(_BYTES_MARK.encode()) + rb" (\d+) ---$", self._live, re.MULTILINE)
                self._size = int(found.group(1)) if found else None
            if self._size is not None and self._sent > self._size:
                self._chunks.close()
                raise EtcdMemberError(f"{self._sent} bytes streamed, the saved file {self.path} has {self._size}",
                                      namespace=self.member.namespace, pod=self.member.pod, step="stream snapshot",
                                      cluster=_cluster_name(self.api), command=self.save_argv,
                                      next_step="retry the backup (a new snapshot and stream)")
            if chunk:
                return chunk
        raise StopIteration

    @property
    def complete(self) -> bool:
        """Every byte of the saved file has been read (the facts may still be on their way)."""
        return self._size is not None and self._sent == self._size

    def close(self) -> None:
        """Stop the exec, unless every byte is out: then the facts are still awaited (`info`)."""
        if not self.complete:
            self._chunks.close()

    @property
    def info(self) -> SnapshotInfo:
        if self._info is None and self.complete:
            self._drain()
        if self._info is None:
            raise RuntimeError(f"the snapshot {self.path} is described once its stream is read to the end")
        return self._info

    def _drain(self) -> None:
        """The rest of the exec after the last byte: nothing more on stdout, then the facts."""
        try:
            for extra in self._chunks:
                if extra:
                    raise EtcdMemberError(f"more bytes than the saved file {self.path} ({self._size}) streamed",
                                          namespace=self.member.namespace, pod=self.member.pod,
                                          step="stream snapshot", cluster=_cluster_name(self.api),
                                          command=self.save_argv,
                                          next_step="retry the backup (a new snapshot and stream)")
        except ExecError as e:
            raise self._failure(e) from e
        self._info = self._facts()

    def _facts(self) -> SnapshotInfo:
        text = self._stderr.decode("utf-8", "replace")
        _, mark, facts = text.rpartition(f"{_FACTS_MARK}\n")
        if not mark:
            raise EtcdMemberError(f"the stream of {self.path} ended without the snapshot's facts (stderr: "
                                  f"{text[-300:]!r})", namespace=self.member.namespace, pod=self.member.pod,
                                  step="snapshot status", cluster=_cluster_name(self.api), command=self.save_argv,
                                  next_step="check that the etcd image has sh, tail, date and sha256sum (coreutils), "
                                            "then retry")
        facts, removed, _ = facts.partition(f"{_REMOVED_MARK}\n")
        self.removed = bool(removed)
        clock, _, facts = facts.partition("\n")
        try:
            t0, t1 = (int(v) for v in clock.split())
            self.save_seconds = max(0.0, (t1 - t0) / 1e9)
        except ValueError:
            log.warning("%s: the pod's clock did not say how long snapshot save ran (%r)", self.member, clock)
        return _parse_facts(self.api, self.member, self.path, facts, True, self.argv)

    def _failure(self, e: ExecError) -> EtcdMemberError:
        text = e.stderr.decode("utf-8", "replace")
        failed = re.findall(rf"^{re.escape(_FAILED_MARK)} ([a-z ]+) ---$", text, re.MULTILINE)
        if e.exit_code is None:
            step, next_step = "stream snapshot", "retry the backup (a new snapshot and stream)"
        elif failed and failed[-1] == "snapshot status":
            step, next_step = "snapshot status", "take the snapshot again (the saved file may be corrupt)"
        elif failed and failed[-1] == "stream":
            step, next_step = "stream snapshot", ("check that the etcd image has tail (coreutils) and the data "
                                                  "volume is readable, then retry")
        else:
            step, next_step = "snapshot save", _SAVE_NEXT.format(path=self.path)
        return EtcdMemberError(_short(e), namespace=self.member.namespace, pod=self.member.pod, step=step,
                               command=self.save_argv, cluster=e.cluster or _cluster_name(self.api),
                               next_step=next_step)


def save_and_stream_snapshot(api: client.ApiClient | client.CoreV1Api, member: EtcdMember, path: str,
                             chunk_bytes: int = 1 << 20, *, idle_timeout: float = 300.0,
                             remove_after: bool = False) -> LiveSnapshotStream:
    """Take the snapshot and stream it out as it is written (see LiveSnapshotStream). `path` as for
    `save_snapshot`; the file stays in the pod until `remove_snapshot`, or with `remove_after`
    until its facts are known."""
    return LiveSnapshotStream(api, member, path, chunk_bytes, idle_timeout=idle_timeout, remove_after=remove_after)


def _live_stream_script(path: str, remove_after: bool = False) -> str:
    """etcdctl 3.5 writes the snapshot to `<path>.part` (opened O_CREAT|O_TRUNC after the client is
    set up), fsyncs it and renames it to `<path>` (client/v3/snapshot SaveWithVersion). The script
    creates `<path>.part` empty first and opens it for reading before etcdctl starts; `tail -f` then
    follows that descriptor, so etcdctl's truncation of an empty file and its rename change nothing
    for it, and, told etcdctl's pid, tail reads what is left once etcdctl has exited, then ends
    (coreutils tail_forever: one more read after the writer is gone). Reading it from stdin (a
    regular file) makes tail poll every 0.1 s instead of using inotify. Once etcdctl and tail have
    succeeded, the file's size goes to stderr (`_BYTES_MARK`): the reader has every byte once it has
    that many and can finish with them (an upload completes) while the facts are computed. Then, on
    the final file:
    `snapshot status`, size, SHA-256 and the server's version (`_facts_script`), and how long etcdctl
    ran, on stderr (stdout is the snapshot) after a mark (collected in a file first: the commands'
    own warnings go to stderr too). A failure says which part failed on stderr
    and exits non-zero. Anything an earlier attempt left is removed first; with `remove_after`, the
    file too once its facts are printed (a mark says so)."""
    q, part = shlex.quote(path), shlex.quote(path + ".part")
    leftovers = " ".join(shlex.quote(path + suffix) for suffix in ("", *_LEFTOVERS))
    save = shlex.join(etcdctl_argv("snapshot", "save", path))

    def fail(what: str, code: str) -> str:
        return f"{{ echo '{_FAILED_MARK} {what} ---' >&2; exit {code}; }}"

    hasher = ("if openssl dgst -sha256 -r </dev/null >/dev/null 2>&1; then hasher='openssl dgst -sha256 -r'; "
              "else hasher=sha256sum; fi; ")
    return (f"rm -f {leftovers} && : > {part} && exec 3< {part} || {fail('snapshot save', 1)}; "
            f"t0=$(date +%s%N); {save} >/dev/null 3<&- & saver=$!; "
            f"tail -c +1 -f -s 0.1 --pid=$saver <&3 3<&-; tailed=$?; exec 3<&-; "
            f"wait $saver; rc=$?; t1=$(date +%s%N); "
            f"[ $rc -eq 0 ] || {fail('snapshot save', '$rc')}; [ $tailed -eq 0 ] || {fail('stream', '$tailed')}; "
            f"size=$(stat -c %s {q}) || {fail('stream', 1)}; echo \"{_BYTES_MARK} $size ---\" >&2; "
            f"{hasher}( {_facts_script(path, True, '$hasher')} ) > {q}.facts; rc=$?; "
            f"[ $rc -eq 0 ] || {{ rm -f {q}.facts; {fail('snapshot status', '$rc')}; }}; "
            f"{{ echo '{_FACTS_MARK}'; echo \"$t0 $t1\"; cat {q}.facts; }} >&2; rc=$?; rm -f {q}.facts; "
            + (f"[ $rc -eq 0 ] && rm -f {q} && echo '{_REMOVED_MARK}' >&2; " if remove_after else "") +
            f"[ $rc -eq 0 ] || {fail('snapshot status', '$rc')}")


def remove_snapshot(api: client.ApiClient | client.CoreV1Api, member: EtcdMember, path: str, *,
                    timeout: float = 60.0) -> None:
    """Remove the snapshot and what a failed save may leave (a partial `.part`, the hash and
    version files of its facts); nothing there is fine."""
    argv = ["rm", "-f", path, *(f"{path}{suffix}" for suffix in _LEFTOVERS)]
    try:
        _run(api, member, argv, timeout=timeout)
    except ExecError as e:
        raise _error(api, member, "remove snapshot", e, argv,
                     f"remove {path} from the pod by hand (kubectl exec ... rm -f {path}); it uses space on the "
                     "member's data volume") from e


def _run(api: client.ApiClient | client.CoreV1Api, member: EtcdMember, argv: list[str], *, timeout: float,
         check: bool = True) -> pod_exec.ExecResult:
    return pod_exec.run(api, member.namespace, member.pod, member.container, argv, timeout=timeout, check=check)


def _parse_endpoint_status(text: str) -> dict[str, Any]:
    entries = json.loads(text)
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"unexpected endpoint status output: {text[:200]!r}")
    status = entries[0].get("Status") or {}
    header = status.get("header") or {}
    member_id = header.get("member_id")
    if member_id is None:
        raise ValueError(f"endpoint status without a member id: {text[:200]!r}")
    return {
        "member_id": int(member_id),
        "is_leader": status.get("leader") is not None and int(status["leader"]) == int(member_id),
        "revision": int(header.get("revision", 0)),
        "db_size": int(status.get("dbSize", 0)),
        "raft_term": int(header.get("raft_term", status.get("raftTerm", 0))),
        "version": status.get("version") or None,
        "errors": [str(e) for e in status.get("errors") or []],
    }


def _health_error(result: pod_exec.ExecResult) -> str | None:
    """None if `endpoint health -w json` says healthy, else why not."""
    try:
        entries = json.loads(result.stdout or b"null")
    except ValueError:
        entries = None
    if isinstance(entries, list) and entries:
        entry = entries[0]
        if entry.get("health") is True and result.exit_code == 0:
            return None
        return f"endpoint unhealthy: {entry.get('error') or 'health false'}"
    if result.exit_code == 0:
        return f"endpoint health printed no result: {result.text[:200]!r}"
    stderr = result.stderr.decode("utf-8", "replace").strip()
    return f"endpoint health exited {result.exit_code}: {stderr[-500:] or result.text[:200]}"


def _short(e: Exception) -> str:
    """The reason without the command line (long, and the same for every member)."""
    if isinstance(e, ExecError):
        if e.exit_code is not None:
            return _exit_text(e.exit_code, e.stderr)
        text = str(e)
        quoted = shlex.join(e.argv)
        at = text.find(quoted + ": ")
        return (text[at + len(quoted) + 2:] if at >= 0 else text)[:500]
    return str(e)


def _exit_text(code: int, stderr: bytes) -> str:
    tail = stderr.decode("utf-8", "replace").strip()[-300:]
    return f"exited {code}" + (f"; stderr: {tail}" if tail else "")




def _error(api: client.ApiClient | client.CoreV1Api, member: EtcdMember, step: str, e: ExecError,
           argv: Sequence[str], next_step: str) -> EtcdMemberError:
    return EtcdMemberError(_short(e), namespace=member.namespace, pod=member.pod, step=step, command=argv,
                           cluster=e.cluster or _cluster_name(api), next_step=next_step)


def snapshot_exists(api: client.ApiClient | client.CoreV1Api, member: EtcdMember, path: str, *,
                    timeout: float = 60.0) -> bool:
    """Whether the snapshot file is still in the pod (a resumed run needs the one it took)."""
    result = _run(api, member, ["test", "-f", path], timeout=timeout, check=False)
    return result.exit_code == 0
