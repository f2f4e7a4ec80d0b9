"""After a restore: is the etcd that now runs the snapshot that was restored?

Checked against the snapshot file itself (restored into a throwaway etcd on the runner), at the
snapshot's revision R, so that writes made after the restore (the API servers are back) do not
matter:

* every member is healthy (`endpoint status` + `endpoint health`, a quorum read) and serves a
  revision of at least R;
* every member's `endpoint hashkv --rev=R` equals the snapshot's. HashKV is etcd's own consistency
  check between members (the corruption checker compares it): a hash over every key and value at
  every revision up to R, so equal hashes mean every key of the snapshot is there with the same
  value on that member, and no other key is. The members agree with each other through it too;
* every member counts as many live keys at R as the snapshot (`get "" --prefix --count-only --rev=R`),
  a second, independent figure for the report.

It needs R not to be compacted yet: run it right after the restore (kube-apiserver compacts every
5 minutes, to a revision it saw 5 minutes earlier, so the first compaction after a restore keeps R
for about that long).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from hcp import pod_exec
from hcp.etcd_member import EtcdMember, etcdctl_argv, list_members, member_status
from hcp.etcd_tools import etcd_tool
from hcp.pod_exec import ExecError
from hcp.snapshot_verify import served_snapshot

__all__ = ["KeyspaceFacts", "RestoreCheck", "RestoreVerifyError", "snapshot_keyspace", "member_keyspace",
           "verify_restored"]

_TIMEOUT = 120.0


class RestoreVerifyError(RuntimeError):
    """The restored etcd is not (provably) the snapshot; says which check and what to do next."""

    def __init__(self, message: str, *, where: str, step: str, next_step: str) -> None:
        super().__init__(f"verify restored etcd {where}, step {step}: {message}. Next: {next_step}")
        self.where = where
        self.step = step
        self.next_step = next_step


@dataclass(frozen=True)
class KeyspaceFacts:
    """One etcd (a member pod, or "snapshot") seen at the snapshot's revision."""

    where: str
    revision: int  # the revision it serves now
    hash_at_snapshot: int  # endpoint hashkv --rev=R
    keys_at_snapshot: int  # live keys at R


@dataclass(frozen=True)
class RestoreCheck:
    snapshot_revision: int
    snapshot: KeyspaceFacts
    members: list[KeyspaceFacts] = field(default_factory=list)

    def lines(self) -> list[str]:
        r = self.snapshot_revision
        out = [f"snapshot: {self.snapshot.keys_at_snapshot} keys at revision {r}, keyspace hash "
               f"{self.snapshot.hash_at_snapshot}"]
        out += [f"{m.where}: healthy, revision {m.revision} (>= {r}), same keyspace hash and {m.keys_at_snapshot} keys "
                f"at revision {r}" for m in self.members]
        return out


def _hashkv(text: str) -> int:
    entries = json.loads(text)
    return int(entries[0]["HashKV"]["hash"])


def _count(text: str) -> tuple[int, int]:
    """(Count, Revision) of `get --count-only -w fields`."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and value.strip().isdigit():
            fields[name.strip().strip('"')] = int(value.strip())
    return fields["Count"], fields["Revision"]


def _query_args(revision: int) -> tuple[list[str], list[str]]:
    return (["endpoint", "hashkv", f"--rev={revision}", "-w", "json"],
            ["get", "", "--prefix", "--count-only", f"--rev={revision}", "-w", "fields"])


def _compacted_hint(text: str) -> str:
    if "compacted" in text:
        return ("the snapshot's revision is compacted already (the API servers compacted since the restore): the "
                "keys can no longer be compared at that revision; check the cluster's data by other means")
    return "check the member (`hcp-runbooks run etcd-member-recovery ... --dry-run` shows a health table)"


def snapshot_keyspace(snapshot_file: Path, revision: int, *, work_dir: Path | None = None,
                      skip_hash_check: bool = False) -> KeyspaceFacts:
    """The snapshot's own figures, from a throwaway etcd restored from it on the runner."""
    hash_args, count_args = _query_args(revision)
    with served_snapshot(snapshot_file, work_dir=work_dir, skip_hash_check=skip_hash_check) as url:
        base = [str(etcd_tool("etcdctl")), f"--endpoints={url}", "--command-timeout", f"{_TIMEOUT:.0f}s"]
        outputs = []
        for args in (hash_args, count_args):
            proc = subprocess.run(base + args, capture_output=True, text=True, timeout=_TIMEOUT + 10,
                                  stdin=subprocess.DEVNULL)
            if proc.returncode != 0:
                raise RestoreVerifyError(f"etcdctl {' '.join(args[:2])} exited {proc.returncode}: "
                                         f"{proc.stderr.strip()[-300:]}", where=str(snapshot_file),
                                         step="read the snapshot", next_step="retry; the snapshot file may be damaged")
            outputs.append(proc.stdout)
    keys, served = _count(outputs[1])
    return KeyspaceFacts(where="snapshot", revision=served, hash_at_snapshot=_hashkv(outputs[0]), keys_at_snapshot=keys)


def member_keyspace(api: client.ApiClient, member: EtcdMember, revision: int) -> KeyspaceFacts:
    """A member's figures at `revision`, read in its pod against its own endpoint."""
    hash_args, count_args = _query_args(revision)
    outputs = []
    for args in (hash_args, count_args):
        try:
            outputs.append(pod_exec.run(api, member.namespace, member.pod, member.container, etcdctl_argv(*args),
                                        timeout=_TIMEOUT).text)
        except ExecError as e:
            detail = e.stderr.decode("utf-8", "replace").strip()[-300:] or str(e)[:300]
            raise RestoreVerifyError(f"etcdctl {' '.join(args[:2])} failed: {detail}", where=str(member),
                                     step="read the member", next_step=_compacted_hint(detail)) from e
    keys, served = _count(outputs[1])
    return KeyspaceFacts(where=member.pod, revision=served, hash_at_snapshot=_hashkv(outputs[0]), keys_at_snapshot=keys)


def verify_restored(api: client.ApiClient, namespace: str, snapshot: KeyspaceFacts, snapshot_revision: int,
                    *, expected_members: int | None = None) -> RestoreCheck:
    """Compare every member of the etcd in `namespace` with the snapshot's figures (see the module
    docstring). Raises RestoreVerifyError naming the first member that differs."""
    pods = list_members(api, namespace)
    if expected_members is not None and len(pods) != expected_members:
        raise RestoreVerifyError(f"{len(pods)} member pods ({', '.join(pods) or 'none'}), expected {expected_members}",
                                 where=namespace, step="list members", next_step="wait for the StatefulSet to "
                                 "settle and run the verification again")
    facts: list[KeyspaceFacts] = []
    for pod in pods:  # sequential: execs on one ApiClient must not overlap
        member = EtcdMember(namespace, pod)
        status = member_status(api, member)
        if not status.healthy:
            raise RestoreVerifyError(f"member is not healthy: {status.error}", where=str(member), step="health",
                                     next_step=_compacted_hint(""))
        mine = member_keyspace(api, member, snapshot_revision)
        if mine.revision < snapshot_revision:
            raise RestoreVerifyError(f"serves revision {mine.revision}, older than the snapshot's {snapshot_revision}",
                                     where=str(member), step="revision", next_step="the member did not get the "
                                     "restored data: do not let writers in; restore again")
        if mine.hash_at_snapshot != snapshot.hash_at_snapshot or mine.keys_at_snapshot != snapshot.keys_at_snapshot:
            raise RestoreVerifyError(
                f"at revision {snapshot_revision} it holds {mine.keys_at_snapshot} keys with keyspace hash "
                f"{mine.hash_at_snapshot}; the snapshot holds {snapshot.keys_at_snapshot} keys with hash "
                f"{snapshot.hash_at_snapshot}", where=str(member), step="compare keys",
                next_step="the member's data is not the snapshot's: stop the writers and restore again")
        facts.append(mine)
    return RestoreCheck(snapshot_revision=snapshot_revision, snapshot=snapshot, members=facts)
