"""The external-dns of a management cluster (what `hypershift install --external-dns-*` deploys):
it publishes the hostnames of the cluster's Routes (and annotated LoadBalancer Services) in the
external DNS domain's public Route53 zone, with the TXT registry that makes records owned.

As the real deployment (`--source=service --source=openshift-route --registry=txt
--txt-suffix=-external-dns --txt-owner-id=<id> --label-filter=hypershift.openshift.io/route-visibility!=private
--aws-zone-type=public`):
- a Route whose `spec.host` (or `external-dns.alpha.kubernetes.io/hostname` annotation) is inside
  the domain gets a CNAME to its router's canonical hostname (`status.ingress[].routerCanonicalHostname`,
  or the `external-dns.alpha.kubernetes.io/target` annotation, or `default_target`; an IP target
  makes an A record), plus a TXT record `cname-<first label>-external-dns.<rest>` holding
  `"heritage=external-dns,external-dns/owner=<owner_id>,external-dns/resource=route/<ns>/<name>"`;
- records are only ever changed or deleted by their owner: a record another owner holds is left
  alone (a hosted cluster whose control plane moved to another management cluster gets its records
  from there once the source's external-dns has removed its own);
- records whose source objects are gone are deleted after `removal_delay` seconds (the real one
  notices at its next sync, `--interval=1m`);
- it syncs only while its Deployment (`deployment`, hypershift/external-dns in the world) has a
  ready replica: scaled to 0, records stay as they are;
- what it lists and changes feeds a `ZoneView`, through which the world resolves the hosted APIs'
  hostnames.

Route (route.openshift.io/v1) is an OpenShift API type, not a CRD: `register_route_type` adds it
to a simulated cluster.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from hcpsim.apiserver.backend import Backend
from hcpsim.apiserver.resources import Registry, ResourceType
from hcpsim.apiserver.store import Event
from hcpsim.controllers.base import DEPLOYMENTS, deployment_running

log = logging.getLogger("hcpsim.externaldns")

ROUTES = ("route.openshift.io", "routes")
SERVICES = ("", "services")
HOSTNAME_ANNOTATION = "external-dns.alpha.kubernetes.io/hostname"
TARGET_ANNOTATION = "external-dns.alpha.kubernetes.io/target"
TTL_ANNOTATION = "external-dns.alpha.kubernetes.io/ttl"
ROUTE_VISIBILITY_LABEL = "hypershift.openshift.io/route-visibility"
ROUTE_VISIBILITY_PRIVATE = "private"
TXT_SUFFIX = "-external-dns"
DEFAULT_TTL = 300


# The Route type.


def route_resource_type() -> ResourceType:
    def cell(*path: str) -> dict[str, Any]:
        return {"jsonPath": "." + ".".join(path)}

    columns = [
        {"name": "Host/Port", "type": "string", **cell("spec", "host")},
        {"name": "Path", "type": "string", **cell("spec", "path")},
        {"name": "Services", "type": "string", **cell("spec", "to", "name")},
        {"name": "Port", "type": "string", **cell("spec", "port", "targetPort")},
        {"name": "Termination", "type": "string", **cell("spec", "tls", "termination")},
        {"name": "Wildcard", "type": "string", **cell("spec", "wildcardPolicy")},
    ]
    return ResourceType(group="route.openshift.io", kind="Route", plural="routes", singular="route", namespaced=True,
                        versions=["v1"], categories=["all"], has_status=True, builtin=True,
                        printer_columns={"v1": columns}, field_labels=("spec.host", "spec.path", "spec.to.name"))


def register_route_type(registry: Registry) -> ResourceType:
    """Serve route.openshift.io/v1 Route in a simulated cluster (idempotent)."""
    existing = registry.get(*ROUTES)
    if existing is not None:
        return existing
    rt = route_resource_type()
    registry.add(rt)
    return rt


# Records.


@dataclass
class Endpoint:
    name: str  # lower case, no trailing dot
    record_type: str  # CNAME or A
    targets: list[str]
    resource: str  # route/<ns>/<name> or service/<ns>/<name>
    ttl: int = DEFAULT_TTL


@dataclass
class _Current:
    records: dict[str, dict] = field(default_factory=dict)  # name -> A/CNAME record set
    txt: dict[str, dict] = field(default_factory=dict)  # owned name -> TXT record set
    owners: dict[str, str] = field(default_factory=dict)  # name -> owner id


def _fqdn(name: str) -> str:
    return name.rstrip(".") + "."


def _norm(name: str) -> str:
    return name.rstrip(".").lower().replace("\\052", "*")


def txt_record_name(name: str, record_type: str, suffix: str = TXT_SUFFIX) -> str:
    """external-dns's TXT registry name (new format, with --txt-suffix): cname-api-external-dns.rest"""
    first, _, rest = name.partition(".")
    label = f"{record_type.lower()}-{first}{suffix}"
    return f"{label}.{rest}" if rest else label


def record_name_of_txt(txt_name: str, suffix: str = TXT_SUFFIX) -> str | None:
    """The record a registry TXT name stands for (new format `cname-x-external-dns.rest` or old `x-external-dns.rest`)."""
    first, _, rest = txt_name.partition(".")
    if not first.endswith(suffix):
        return None
    first = first[: -len(suffix)]
    for prefix in ("cname-", "a-", "aaaa-"):
        if first.startswith(prefix):
            first = first[len(prefix):]
            break
    return f"{first}.{rest}" if rest else first


def _txt_value(owner: str, resource: str) -> str:
    return f'"heritage=external-dns,external-dns/owner={owner},external-dns/resource={resource}"'


def _parse_txt(value: str) -> dict[str, str]:
    text = value.strip().strip('"')
    if not text.startswith("heritage=external-dns"):
        return {}
    labels = {}
    for part in text.split(","):
        key, _, val = part.partition("=")
        labels[key.strip()] = val.strip()
    return labels


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


class ZoneView:
    """What the public zone answers (A/CNAME name -> targets), as the world's external-dns
    instances last listed and changed it: clients and nodes resolving the hosted clusters' API
    names follow it (hosted_api.DnsRouting). A listing replaces the view unless a change was made
    since the listing started (an older listing must not bring back a record just deleted);
    changes made to Route53 by hand show at the next listing of any instance.
    `add_listener(fn)`: fn() is called (outside the lock) after the view changed."""

    def __init__(self, domain: str) -> None:
        self.domain = _norm(domain)
        self._lock = threading.Lock()
        self._records: dict[str, list[str]] = {}
        self._generation = 0
        self._listeners: list[Callable[[], None]] = []

    def managed(self, name: str) -> bool:
        name = _norm(name)
        return name == self.domain or name.endswith("." + self.domain)

    def resolve(self, name: str) -> list[str] | None:
        """The targets the zone gives for `name` (None: no such record)."""
        with self._lock:
            targets = self._records.get(_norm(name))
            return list(targets) if targets is not None else None

    @property
    def generation(self) -> int:
        return self._generation

    def replace(self, records: dict[str, list[str]], listed_at: int) -> None:
        with self._lock:
            if listed_at != self._generation or records == self._records:
                return
            self._records = records
            self._generation += 1
        self._notify()

    def apply(self, changes: list[tuple[str, dict]]) -> None:
        with self._lock:
            before = dict(self._records)
            for action, rrset in changes:
                if rrset.get("Type") not in ("A", "CNAME"):
                    continue
                name = _norm(rrset["Name"])
                if action == "DELETE":
                    self._records.pop(name, None)
                else:
                    self._records[name] = sorted(_norm(r["Value"]) for r in rrset.get("ResourceRecords") or [])
            self._generation += 1
            changed = before != self._records
        if changed:
            self._notify()

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener()
            except Exception:
                log.exception("zone view listener failed")


class ExternalDNS:
    """external-dns for one management cluster's Backend, writing to one Route53 hosted zone.

    `route53_client_factory()` returns a boto3 Route53 client (called in the controller's thread).
    `interval`: seconds between full syncs (changes to Routes/Services also trigger one at once);
    `default_target`: the router canonical hostname for Routes that name none.
    """

    def __init__(self, backend: Backend, route53_client_factory: Callable[[], Any], zone_id: str, domain: str,
                 owner_id: str, removal_delay: float = 0.2, *, interval: float = 0.5, default_target: str | None = None,
                 txt_suffix: str = TXT_SUFFIX, include_services: bool = True, view: ZoneView | None = None,
                 deployment: tuple[str, str] | None = None) -> None:
        self.backend = backend
        self.zone_id = zone_id.rsplit("/", 1)[-1]
        self.domain = _norm(domain)
        self.owner_id = owner_id
        self.removal_delay = removal_delay
        self.interval = interval
        self.default_target = default_target or f"router-{owner_id}.elb.us-east-1.amazonaws.com"
        self.txt_suffix = txt_suffix
        self.include_services = include_services
        self.view = view
        # (namespace, name) of the Deployment that runs this external-dns: scaled to 0, it stops.
        self.deployment = deployment
        self._factory = route53_client_factory
        self._client: Any = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._pending_removal: dict[str, float] = {}  # owned record name -> when it stopped being desired
        self.syncs = 0  # completed sync passes
        self.last_error: str | None = None
        self._synced = threading.Condition()
        register_route_type(backend.registry)
        self._unsubscribe = backend.store.subscribe(self._on_event)
        self._thread = threading.Thread(target=self._loop, name=f"external-dns-{owner_id}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._unsubscribe()
        self._wake.set()
        self._thread.join(timeout=10)

    def resync(self) -> None:
        """Run a sync pass now (asynchronously)."""
        self._wake.set()

    def wait_synced(self, timeout: float = 10.0) -> bool:
        """Wait for a full sync pass that started after this call."""
        with self._synced:
            target = self.syncs + 2
            self._wake.set()
            return self._synced.wait_for(lambda: self.syncs >= target or self._stopping.is_set(), timeout)

    # Events arrive under the store lock: just wake the worker.

    def _on_event(self, event: Event) -> None:
        if event.key == ROUTES or (self.include_services and event.key == SERVICES):
            self._wake.set()
        elif self.deployment and event.key == DEPLOYMENTS and (event.namespace, event.name) == self.deployment:
            self._wake.set()

    @property
    def running(self) -> bool:
        return self.deployment is None or deployment_running(self.backend, *self.deployment)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            if not self.running:
                # Its pod is down: nothing is synced (pending removals wait for it to come back).
                self._wake.wait(self.interval)
                self._wake.clear()
                continue
            try:
                if self._client is None:
                    self._client = self._factory()
                self.sync()
                self.last_error = None
            except Exception as e:  # the next pass retries (Route53 errors, faults, races)
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning("external-dns %s: sync failed: %s", self.owner_id, self.last_error)
            with self._synced:
                self.syncs += 1
                self._synced.notify_all()
            timeout = self.interval
            if self._pending_removal:
                due = min(self._pending_removal.values()) + self.removal_delay - time.monotonic()
                timeout = max(0.01, min(timeout, due))
            self._wake.wait(timeout)
            self._wake.clear()

    # One pass: desired endpoints from the cluster, current records from the zone, then the plan.

    def _in_domain(self, host: str) -> bool:
        return host == self.domain or host.endswith("." + self.domain)

    def desired(self) -> dict[str, Endpoint]:
        out: dict[str, Endpoint] = {}
        routes = sorted(self.backend.store.items(ROUTES), key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        for route in routes:
            meta = route["metadata"]
            if (meta.get("labels") or {}).get(ROUTE_VISIBILITY_LABEL) == ROUTE_VISIBILITY_PRIVATE:
                continue
            annotations = meta.get("annotations") or {}
            hosts = [(route.get("spec") or {}).get("host") or ""]
            hosts += [h.strip() for h in annotations.get(HOSTNAME_ANNOTATION, "").split(",")]
            if annotations.get(TARGET_ANNOTATION):
                targets = [t.strip() for t in annotations[TARGET_ANNOTATION].split(",") if t.strip()]
            else:
                targets = sorted({i["routerCanonicalHostname"] for i in (route.get("status") or {}).get("ingress") or []
                                  if i.get("routerCanonicalHostname")}) or [self.default_target]
            self._add(out, hosts, targets, f"route/{meta['namespace']}/{meta['name']}", annotations)
        if self.include_services:
            for svc in self.backend.store.items(SERVICES):
                meta = svc["metadata"]
                annotations = meta.get("annotations") or {}
                if not annotations.get(HOSTNAME_ANNOTATION):
                    continue
                spec = svc.get("spec") or {}
                if annotations.get(TARGET_ANNOTATION):
                    targets = [t.strip() for t in annotations[TARGET_ANNOTATION].split(",") if t.strip()]
                elif spec.get("type") == "ExternalName":
                    targets = [spec.get("externalName", "")]
                else:
                    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                    targets = [i.get("hostname") or i.get("ip") for i in ingress if i.get("hostname") or i.get("ip")]
                hosts = annotations[HOSTNAME_ANNOTATION].split(",")
                self._add(out, hosts, [t for t in targets if t], f"service/{meta['namespace']}/{meta['name']}", annotations)
        return out

    def _add(self, out: dict[str, Endpoint], hosts: list[str], targets: list[str], resource: str, annotations: dict) -> None:
        if not targets:
            return
        record_type = "A" if all(_is_ip(t) for t in targets) else "CNAME"
        if record_type == "CNAME":
            targets = targets[:1]  # a CNAME has one target
        try:
            ttl = int(annotations.get(TTL_ANNOTATION, DEFAULT_TTL))
        except ValueError:
            ttl = DEFAULT_TTL
        for host in hosts:
            name = _norm(host)
            if name and self._in_domain(name) and name not in out:
                out[name] = Endpoint(name, record_type, sorted(_norm(t) for t in targets), resource, ttl)

    def current(self) -> _Current:
        current = _Current()
        listed_at = self.view.generation if self.view is not None else 0
        paginator = self._client.get_paginator("list_resource_record_sets")
        txts: list[dict] = []
        # Pages of 300, Route53's maximum: moto's paginator repeats one record and drops another at
        # each page boundary (seen with moto 5.2), so fewer boundaries means a truer view.
        for page in paginator.paginate(HostedZoneId=self.zone_id, PaginationConfig={"PageSize": 300}):
            for rrset in page["ResourceRecordSets"]:
                name = _norm(rrset["Name"])
                if rrset["Type"] in ("A", "CNAME") and "AliasTarget" not in rrset:
                    current.records[name] = rrset
                elif rrset["Type"] == "TXT":
                    txts.append(rrset)
        if self.view is not None:
            self.view.replace({name: sorted(_norm(r["Value"]) for r in rrset.get("ResourceRecords") or [])
                               for name, rrset in current.records.items()}, listed_at)
        for rrset in txts:
            record = record_name_of_txt(_norm(rrset["Name"]), self.txt_suffix)
            if record is None:
                continue
            for value in rrset.get("ResourceRecords") or []:
                labels = _parse_txt(value["Value"])
                owner = labels.get("external-dns/owner")
                if owner:
                    current.owners.setdefault(record, owner)
                    if owner == self.owner_id:
                        current.txt[record] = rrset
        return current

    def sync(self) -> None:
        desired = self.desired()
        current = self.current()
        now = time.monotonic()
        for name, endpoint in desired.items():
            self._pending_removal.pop(name, None)
            owner = current.owners.get(name)
            record = current.records.get(name)
            if owner is not None and owner != self.owner_id:
                continue  # another external-dns owns it: leave it
            if record is None:
                # UPSERT rather than CREATE: moto (5.2) can refuse a CREATE of a name it no longer
                # lists after a DELETE ("already exists"); the listing said the name is free.
                self._change([("UPSERT", self._rrset(endpoint)), ("UPSERT", self._txt_rrset(endpoint))])
            elif owner is None:
                log.info("external-dns %s: %s exists and has no owner record; not taking it over", self.owner_id, name)
            elif (record["Type"] != endpoint.record_type
                  or sorted(_norm(r["Value"]) for r in record.get("ResourceRecords") or []) != endpoint.targets
                  or record.get("TTL") != endpoint.ttl):
                changes = []
                if record["Type"] != endpoint.record_type:
                    changes.append(("DELETE", record))
                changes += [("UPSERT", self._rrset(endpoint)), ("UPSERT", self._txt_rrset(endpoint))]
                self._change(changes)
        for name in sorted(set(current.txt) - set(desired)):
            since = self._pending_removal.setdefault(name, now)
            if now - since < self.removal_delay:
                continue
            changes = [("DELETE", current.txt[name])]
            if name in current.records:
                changes.insert(0, ("DELETE", current.records[name]))
            self._change(changes)
            self._pending_removal.pop(name, None)
        for name in list(self._pending_removal):
            if name not in current.txt:
                self._pending_removal.pop(name, None)

    def _rrset(self, endpoint: Endpoint) -> dict:
        return {"Name": _fqdn(endpoint.name), "Type": endpoint.record_type, "TTL": endpoint.ttl,
                "ResourceRecords": [{"Value": t} for t in endpoint.targets]}

    def _txt_rrset(self, endpoint: Endpoint) -> dict:
        return {"Name": _fqdn(txt_record_name(endpoint.name, endpoint.record_type, self.txt_suffix)), "Type": "TXT",
                "TTL": endpoint.ttl, "ResourceRecords": [{"Value": _txt_value(self.owner_id, endpoint.resource)}]}

    def _change(self, changes: list[tuple[str, dict]]) -> None:
        batch = {"Comment": f"external-dns {self.owner_id}",
                 "Changes": [{"Action": action, "ResourceRecordSet": rrset} for action, rrset in changes]}
        self._client.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch=batch)
        if self.view is not None:
            self.view.apply(changes)
        log.info("external-dns %s: %s", self.owner_id,
                 ", ".join(f"{a} {r['Type']} {r['Name']}" for a, r in changes))
