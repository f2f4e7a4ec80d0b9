"""A hosted cluster's public DNS records: which hostnames it publishes, and waiting for them to go.

HyperShift publishes the API (and OAuth, Konnectivity, Ignition) of a hosted cluster on AWS through
Routes whose hostnames lie in the external DNS domain; the management cluster's external-dns writes
them into the domain's public Route53 zone with a TXT ownership record beside each
(`--registry=txt --txt-owner-id=...`). Records are only ever changed by their owner, so before
another management cluster can publish the same hostnames, the source's records must be gone: the
DR procedure deletes the control plane's Routes and waits until external-dns removed the records.

Route53 has no watch API: the wait lists the records at a short interval (a record set list is
one cheap request per 300 records), bounded by a timeout, and reports progress as it goes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["DnsError", "published_hostnames", "ClusterRecord", "cluster_records", "wait_records_gone",
           "hostnames_outside"]

_A_TYPES = ("A", "AAAA", "CNAME")


class DnsError(RuntimeError):
    """The records did not go, or the zone could not be read; the message says what to do."""


def published_hostnames(hosted_cluster: dict[str, Any]) -> dict[str, str]:
    """service -> hostname of every service the HostedCluster publishes through a Route with a hostname."""
    out: dict[str, str] = {}
    for entry in (hosted_cluster.get("spec") or {}).get("services") or []:
        strategy = entry.get("servicePublishingStrategy") or {}
        host = ((strategy.get("route") or {}).get("hostname") or "").rstrip(".").lower()
        if strategy.get("type") == "Route" and host:
            out[entry.get("service", "?")] = host
    return out


def hostnames_outside(hostnames: dict[str, str], domain: str) -> dict[str, str]:
    """The published hostnames NOT inside `domain` (external-dns publishes only those inside)."""
    suffix = "." + domain.strip(".").lower()
    return {s: h for s, h in hostnames.items() if not h.endswith(suffix)}


@dataclass(frozen=True)
class ClusterRecord:
    name: str  # no trailing dot
    type: str
    values: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.name} {self.type} {', '.join(self.values)}"


def _norm(name: str) -> str:
    return name.rstrip(".").lower().replace("\\052", "*")


def cluster_records(route53: Any, zone_id: str, hostnames: list[str], control_plane_namespace: str) -> list[ClusterRecord]:
    """The zone's records for these hostnames: their A/AAAA/CNAME records, and the external-dns TXT
    ownership records that point at a Route of the control-plane namespace (whatever the TXT name
    format: the record names it by resource, `external-dns/resource=route/<namespace>/<name>`)."""
    wanted = {_norm(h) for h in hostnames}
    marker = f"external-dns/resource=route/{control_plane_namespace}/"
    found: list[ClusterRecord] = []
    try:
        pages = route53.get_paginator("list_resource_record_sets").paginate(
            HostedZoneId=zone_id, PaginationConfig={"PageSize": 300})
        for page in pages:
            for rrset in page["ResourceRecordSets"]:
                name, rtype = _norm(rrset["Name"]), rrset["Type"]
                values = tuple(r["Value"] for r in rrset.get("ResourceRecords") or [])
                if rrset.get("AliasTarget"):
                    values += (rrset["AliasTarget"].get("DNSName", ""),)
                if rtype in _A_TYPES and name in wanted:
                    found.append(ClusterRecord(name, rtype, values))
                elif rtype == "TXT" and any(marker in v for v in values):
                    found.append(ClusterRecord(name, rtype, values))
    except Exception as exc:  # botocore errors: the message is what the user needs
        raise DnsError(f"cannot list the records of Route53 zone {zone_id}: {exc}; check the zone id and the "
                       "runner's route53:ListResourceRecordSets permission") from None
    return found


def wait_records_gone(route53: Any, zone_id: str, hostnames: list[str], control_plane_namespace: str, *,
                      timeout: float, interval: float = 0.5,
                      progress: Callable[[list[ClusterRecord], float], None] | None = None) -> float:
    """Until none of the cluster's records is left in the zone; returns the seconds waited.
    `progress(records_left, elapsed)` is called after each look that still finds some."""
    started = time.monotonic()
    while True:
        left = cluster_records(route53, zone_id, hostnames, control_plane_namespace)
        elapsed = time.monotonic() - started
        if not left:
            return elapsed
        if progress is not None:
            progress(left, elapsed)
        if elapsed >= timeout:
            raise DnsError(f"after {elapsed:.0f} s, {len(left)} record(s) of the hosted cluster are still in Route53 "
                           f"zone {zone_id} ({'; '.join(str(r) for r in left[:4])}). The management cluster's "
                           "external-dns removes them once the Routes are gone: check it runs (`oc -n hypershift get "
                           "pods -l app=external-dns`, its log) or delete the records by hand, then re-run")
        time.sleep(min(interval, max(0.05, timeout - elapsed)))
