"""One runbook at a time per hosted cluster: a coordination.k8s.io/v1 Lease in the hosted cluster's
namespace on its management cluster.

The holder identity is the operation id. The Lease is renewed while the run lives (a background
thread, `start_renewing`) and is held across approval waits. A second runbook on the same hosted
cluster fails fast with `LockHeldError` naming the holder. A Lease whose holder stopped renewing
(expired) is taken over by `acquire`; `break_lock` clears one deliberately (the flow puts it behind
an approval), and refuses a live one unless forced.

Every write carries the resourceVersion it was computed from (optimistic concurrency), so two
acquirers racing for the same Lease cannot both win. Times are Kubernetes MicroTime (RFC3339 with
microseconds, UTC). Expiry is judged with the local clock against renewTime + leaseDurationSeconds,
as client-go's leader election does.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from kubernetes import client
from kubernetes.client.rest import ApiException

from hcp.naming import lease_name

__all__ = [
    "LockError",
    "LockHeldError",
    "LockLostError",
    "LockInfo",
    "LeaseLock",
    "format_microtime",
    "lease_name",
]

log = logging.getLogger(__name__)

MANAGED_BY = {"app.kubernetes.io/managed-by": "hcp-runbooks"}
_MAX_ATTEMPTS = 5


class LockError(Exception):
    """The lock could not be taken, kept or broken."""


class LockHeldError(LockError):
    """Someone else holds the lock (and, for acquire, it has not expired)."""

    def __init__(self, info: LockInfo, message: str | None = None) -> None:
        self.info = info
        self.holder = info.holder
        self.renew_time = info.renew_time
        self.expires_at = info.expires_at
        super().__init__(message or (
            f"hosted cluster lock {info.namespace}/{info.name} is held by {info.holder!r} "
            f"(renewed {_fmt(info.renew_time)}, expires {_fmt(info.expires_at)})"))


class LockLostError(LockError):
    """We held the lock and no longer do (another holder took it over, or it was broken or deleted)."""


def format_microtime(when: datetime) -> str:
    """Kubernetes MicroTime: RFC3339 with microseconds, in UTC."""
    if when.tzinfo is None:
        raise ValueError("MicroTime needs a timezone-aware datetime")
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fmt(when: datetime | None) -> str:
    return format_microtime(when) if when is not None else "never"


def _utc(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


@dataclass(frozen=True)
class LockInfo:
    """What a Lease says about its holder."""

    namespace: str
    name: str
    holder: str | None
    acquire_time: datetime | None
    renew_time: datetime | None
    duration_seconds: int | None
    transitions: int
    resource_version: str

    @property
    def expires_at(self) -> datetime | None:
        base = self.renew_time or self.acquire_time
        if base is None or self.duration_seconds is None:
            return None
        return base + timedelta(seconds=self.duration_seconds)

    def is_free(self) -> bool:
        return not self.holder

    def is_expired(self, now: datetime) -> bool:
        """No holder, or the holder stopped renewing. A Lease without times counts as expired."""
        if not self.holder:
            return True
        expires = self.expires_at
        return expires is None or now >= expires

    @classmethod
    def from_lease(cls, lease: client.V1Lease) -> LockInfo:
        spec = lease.spec or client.V1LeaseSpec()
        return cls(namespace=lease.metadata.namespace, name=lease.metadata.name,
                   holder=spec.holder_identity or None, acquire_time=_utc(spec.acquire_time),
                   renew_time=_utc(spec.renew_time), duration_seconds=spec.lease_duration_seconds,
                   transitions=spec.lease_transitions or 0, resource_version=lease.metadata.resource_version)


class LeaseLock:
    """The per-hosted-cluster lock.

    `namespace`: the hosted cluster's namespace (on the management cluster); `name`: the Lease name
    (`hcp.naming.lease_name(<hosted cluster name>)`, or `LeaseLock.for_hosted_cluster`); `holder`:
    the operation id. `clock` is for tests.

    As a context manager it acquires, renews in the background every `renew_interval` seconds
    (default: a third of the duration), and on exit stops renewing and releases.
    """

    def __init__(self, api_client: client.ApiClient, namespace: str, name: str, holder: str,
                 duration_seconds: int = 60, *, renew_interval: float | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        if not holder:
            raise ValueError("the lock holder (operation id) must not be empty")
        if not isinstance(duration_seconds, int) or duration_seconds <= 0:
            raise ValueError(f"duration_seconds must be a positive integer, not {duration_seconds!r}")
        self.api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.holder = holder
        self.duration_seconds = duration_seconds
        self.renew_interval = renew_interval if renew_interval is not None else max(duration_seconds / 3, 0.05)
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self._mutex = threading.RLock()
        self._held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost = threading.Event()
        self.last_renew_error: BaseException | None = None

    @classmethod
    def for_hosted_cluster(cls, api_client: client.ApiClient, namespace: str, hosted_cluster_name: str,
                           holder: str, duration_seconds: int = 60, **kwargs: Any) -> LeaseLock:
        return cls(api_client, namespace, lease_name(hosted_cluster_name), holder, duration_seconds, **kwargs)

    # -- API helpers ---------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self.clock()
        return now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)

    def _read(self) -> client.V1Lease | None:
        try:
            return self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def get(self) -> LockInfo | None:
        """The Lease as it is now (None when there is none)."""
        lease = self._read()
        return LockInfo.from_lease(lease) if lease is not None else None

    def _body(self, spec: dict[str, Any], resource_version: str | None = None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace, "labels": dict(MANAGED_BY)}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    def _held_spec(self, acquire_time: datetime, renew_time: datetime, transitions: int) -> dict[str, Any]:
        return {"holderIdentity": self.holder, "leaseDurationSeconds": self.duration_seconds,
                "acquireTime": format_microtime(acquire_time), "renewTime": format_microtime(renew_time),
                "leaseTransitions": transitions}

    def _replace(self, lease: client.V1Lease, spec: dict[str, Any]) -> client.V1Lease:
        body = self._body(spec, lease.metadata.resource_version)
        # keep labels/annotations someone else put there
        if lease.metadata.labels:
            body["metadata"]["labels"] = {**lease.metadata.labels, **MANAGED_BY}
        if lease.metadata.annotations:
            body["metadata"]["annotations"] = dict(lease.metadata.annotations)
        return self.api.replace_namespaced_lease(self.name, self.namespace, body)

    # -- the lock --------------------------------------------------------------------------------

    @property
    def held(self) -> bool:
        """Whether we believe we hold it (after acquire, until release or a lost renewal)."""
        return self._held and not self._lost.is_set()

    def acquire(self) -> LockInfo:
        """Take the lock: create the Lease, or take it over when it is free, expired or already ours.

        Raises LockHeldError (holder, renew time, expiry) when someone else holds a live Lease.
        """
        with self._mutex:
            for _ in range(_MAX_ATTEMPTS):
                now = self._now()
                lease = self._read()
                try:
                    if lease is None:
                        created = self.api.create_namespaced_lease(
                            self.namespace, self._body(self._held_spec(now, now, 0)))
                        return self._acquired(created)
                    info = LockInfo.from_lease(lease)
                    if info.holder == self.holder:
                        # ours already (e.g. a retried task of the same operation): renew it
                        acquired = info.acquire_time or now
                        updated = self._replace(lease, self._held_spec(acquired, now, info.transitions))
                        return self._acquired(updated)
                    if not info.is_expired(now):
                        raise LockHeldError(info)
                    if info.holder:
                        log.warning("taking over expired lock %s/%s from %r (expired %s)", self.namespace,
                                    self.name, info.holder, _fmt(info.expires_at))
                    updated = self._replace(lease, self._held_spec(now, now, info.transitions + 1))
                    return self._acquired(updated)
                except ApiException as exc:
                    if exc.status in (404, 409):  # raced with another writer: look again
                        continue
                    raise
            raise LockError(f"could not acquire {self.namespace}/{self.name}: too many concurrent updates")

    def _acquired(self, lease: client.V1Lease) -> LockInfo:
        self._held = True
        self._lost.clear()
        self.last_renew_error = None
        info = LockInfo.from_lease(lease)
        log.info("acquired lock %s/%s for %s (expires %s)", self.namespace, self.name, self.holder,
                 _fmt(info.expires_at))
        return info

    def renew(self) -> LockInfo:
        """Extend our hold by a full duration from now. LockLostError when it is no longer ours."""
        with self._mutex:
            for _ in range(_MAX_ATTEMPTS):
                lease = self._read()
                if lease is None:
                    self._mark_lost()
                    raise LockLostError(f"lock {self.namespace}/{self.name} of {self.holder!r} is gone (deleted)")
                info = LockInfo.from_lease(lease)
                if info.holder != self.holder:
                    self._mark_lost()
                    raise LockLostError(f"lock {self.namespace}/{self.name} is no longer held by {self.holder!r}; "
                                        f"holder is now {info.holder!r}")
                now = self._now()
                try:
                    updated = self._replace(lease, self._held_spec(info.acquire_time or now, now, info.transitions))
                except ApiException as exc:
                    if exc.status in (404, 409):
                        continue
                    raise
                self._held = True
                return LockInfo.from_lease(updated)
            raise LockError(f"could not renew {self.namespace}/{self.name}: too many concurrent updates")

    def _mark_lost(self) -> None:
        self._held = False
        self._lost.set()

    def release(self) -> bool:
        """Give the lock up if we hold it (clears the holder; the Lease stays for its history).
        Returns whether we released it; never touches someone else's hold."""
        self.stop_renewing()
        with self._mutex:
            for _ in range(_MAX_ATTEMPTS):
                lease = self._read()
                if lease is None:
                    self._held = False
                    return False
                info = LockInfo.from_lease(lease)
                if info.holder != self.holder:
                    self._held = False
                    return False
                try:
                    self._replace(lease, self._free_spec(info))
                except ApiException as exc:
                    if exc.status in (404, 409):
                        continue
                    raise
                self._held = False
                log.info("released lock %s/%s of %s", self.namespace, self.name, self.holder)
                return True
            raise LockError(f"could not release {self.namespace}/{self.name}: too many concurrent updates")

    def _free_spec(self, info: LockInfo) -> dict[str, Any]:
        now = self._now()
        return {"leaseDurationSeconds": info.duration_seconds or self.duration_seconds,
                "renewTime": format_microtime(now), "leaseTransitions": info.transitions}

    def break_lock(self, expected_holder: str, *, force: bool = False) -> LockInfo:
        """Deliberately clear a lock left by `expected_holder` (a dead run). Refused (LockHeldError)
        while the Lease is live unless `force`; refused (LockError) when the holder is not
        `expected_holder` (someone else took it meanwhile). Returns the Lease as it was before."""
        with self._mutex:
            for _ in range(_MAX_ATTEMPTS):
                lease = self._read()
                if lease is None:
                    raise LockError(f"no lock {self.namespace}/{self.name} to break")
                info = LockInfo.from_lease(lease)
                if info.holder != expected_holder:
                    raise LockError(f"lock {self.namespace}/{self.name} is held by {info.holder!r}, not "
                                    f"{expected_holder!r}: not breaking it")
                if not force and not info.is_expired(self._now()):
                    raise LockHeldError(info, (
                        f"refusing to break live lock {self.namespace}/{self.name} held by {info.holder!r} "
                        f"(renewed {_fmt(info.renew_time)}, expires {_fmt(info.expires_at)}); "
                        "wait for it to expire or force"))
                try:
                    self._replace(lease, self._free_spec(info))
                except ApiException as exc:
                    if exc.status in (404, 409):
                        continue
                    raise
                log.warning("broke lock %s/%s held by %r (forced=%s) on behalf of %s", self.namespace, self.name,
                            expected_holder, force, self.holder)
                if expected_holder == self.holder:
                    self._held = False
                return info
            raise LockError(f"could not break {self.namespace}/{self.name}: too many concurrent updates")

    # -- background renewal ----------------------------------------------------------------------

    def start_renewing(self, interval: float | None = None) -> None:
        """Renew from a daemon thread every `interval` seconds until `stop_renewing` or release.
        A transient failure is retried at the next tick; losing the lock stops the thread and makes
        `check()` raise."""
        if interval is not None:
            if interval <= 0:
                raise ValueError("renew interval must be positive")
            self.renew_interval = interval
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-renew-{self.name}", daemon=True)
        self._thread.start()

    def stop_renewing(self, timeout: float | None = 10) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def renewing(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def check(self) -> None:
        """Raise LockLostError when the lock was lost (call before anything that needs it)."""
        if self._lost.is_set():
            raise LockLostError(f"lock {self.namespace}/{self.name} was lost by {self.holder!r}"
                                + (f": {self.last_renew_error}" if self.last_renew_error else ""))
        if not self._held:
            raise LockError(f"lock {self.namespace}/{self.name} is not held by {self.holder!r}")

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_interval):
            try:
                self.renew()
                self.last_renew_error = None
            except LockLostError as exc:
                self.last_renew_error = exc
                log.error("%s", exc)
                return
            except Exception as exc:  # transient (API unreachable, ...): try again next tick
                self.last_renew_error = exc
                log.warning("renewing lock %s/%s failed: %s", self.namespace, self.name, exc)

    # -- context manager -------------------------------------------------------------------------

    def __enter__(self) -> LeaseLock:
        self.acquire()
        self.start_renewing()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_renewing()
        if not self._lost.is_set():
            self.release()
