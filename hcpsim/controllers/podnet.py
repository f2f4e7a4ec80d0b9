"""Pod networking without root: every pod gets its own loopback address (127.0.0.0/8 is all
loopback on Linux), so real servers in pods (etcd members) bind their pod IP and real ports, and a
per-pod /etc/hosts gives the names a cluster DNS would: the pod's own hostname, `localhost` (its
own IP, as in a pod's own network namespace), StatefulSet pods as <pod>.<service>.<ns>.svc and
Services as <svc>.<ns>.svc.
"""

from __future__ import annotations

import ipaddress
import random
import threading
from pathlib import Path
from typing import Callable, Iterable

from hcpsim.apiserver.selectors import label_selector_from_spec

_lock = threading.Lock()
# One allocator per process: several simulators in one process must not hand out the same address.
# A random /16 inside 127.64.0.0/10 keeps two processes on one machine apart too.
_base = int(ipaddress.IPv4Address("127.64.0.0")) + random.randrange(0, 64) * 65536
_next = 2
_by_key: dict[tuple[str, str, str], str] = {}


def pod_ip(cluster: str, namespace: str, name: str) -> str:
    """A stable loopback address for a pod name: a recreated StatefulSet pod keeps its address.
    `cluster` must be unique to the cluster (its data directory): two worlds in one process both
    have a `mgmt1` with a `clusters-demo/etcd-0`."""
    global _next
    with _lock:
        key = (cluster, namespace, name)
        if key not in _by_key:
            if _next >= 65534:
                raise RuntimeError("hcpsim: out of pod addresses in this process")
            _by_key[key] = str(ipaddress.IPv4Address(_base + _next))
            _next += 1
        return _by_key[key]


def _names(name: str, namespace: str, subdomain: str | None) -> list[str]:
    if not subdomain:
        return []
    fqdn = f"{name}.{subdomain}.{namespace}.svc"
    return [fqdn, fqdn + ".cluster.local"]


def hosts_file_content(pod: dict, pods: Iterable[dict], services: Iterable[dict],
                       statefulsets: Iterable[dict] = (), claims: Iterable[str] = (),
                       ip_for: "Callable[[str], str] | None" = None) -> str:
    """The /etc/hosts of `pod`, from the pods and services of its namespace.

    StatefulSet members that are not running (scaled to 0) keep their names at their stable
    address (`ip_for`), for the ordinals the set has or has claims for: etcd 3.5.1's `etcdutl
    snapshot restore` resolves the advertised peer name even in a data-access pod
    (etcd-io/etcd#14456, fixed in 3.5.6, which OpenShift ships), so the documented restore works
    verbatim here as it does there."""
    meta = pod["metadata"]
    namespace = meta["namespace"]
    own_ip = (pod.get("status") or {}).get("podIP") or ""
    hostname = (pod.get("spec") or {}).get("hostname") or meta["name"]
    lines = ["# Kubernetes-managed hosts file (hcpsim).",
             f"{own_ip}\tlocalhost {hostname} " + " ".join(_names(hostname, namespace, (pod.get("spec") or {}).get("subdomain"))),
             "::1\tip6-localhost ip6-loopback"]
    peers = [p for p in pods if p["metadata"]["namespace"] == namespace and (p.get("status") or {}).get("podIP")]
    for peer in peers:
        if peer["metadata"]["uid"] == meta["uid"]:
            continue
        spec = peer.get("spec") or {}
        names = _names(spec.get("hostname") or peer["metadata"]["name"], namespace, spec.get("subdomain"))
        if names:
            lines.append(f"{peer['status']['podIP']}\t" + " ".join(names))
    listed = {(p.get("spec") or {}).get("hostname") or p["metadata"]["name"] for p in peers} | {hostname}
    claim_names = list(claims)
    for sts in statefulsets:
        spec = sts.get("spec") or {}
        service, set_name = spec.get("serviceName"), sts["metadata"]["name"]
        if not service or ip_for is None:
            continue
        ordinals = set(range(int(spec.get("replicas") or 0)))
        for claim in claim_names:
            head, _, ordinal = claim.rpartition("-")
            if head.endswith(f"-{set_name}") and ordinal.isdigit():
                ordinals.add(int(ordinal))
        for i in sorted(ordinals):
            member = f"{set_name}-{i}"
            if member not in listed:
                lines.append(f"{ip_for(member)}\t" + " ".join(_names(member, namespace, service)))
    for svc in services:
        if svc["metadata"]["namespace"] != namespace or not (svc.get("spec") or {}).get("selector"):
            continue
        selector = label_selector_from_spec({"matchLabels": svc["spec"]["selector"]})
        ready = sorted((p for p in peers if selector.matches(p["metadata"].get("labels"))), key=lambda p: p["metadata"]["name"])
        if ready:
            # No load balancing: the first ready endpoint answers for the service.
            name = f"{svc['metadata']['name']}.{namespace}.svc"
            lines.append(f"{ready[0]['status']['podIP']}\t{name} {name}.cluster.local")
    return "\n".join(lines) + "\n"


def write_in_place(path: Path, content: str) -> bool:
    """Rewrite a bind-mounted file keeping its inode (a rename would detach running pods' view)."""
    if path.exists() and path.read_text() == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "r+" if path.exists() else "w") as f:
        f.seek(0)
        f.write(content)
        f.truncate()
    return True
