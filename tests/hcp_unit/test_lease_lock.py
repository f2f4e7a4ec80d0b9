"""hcp.lease_lock against a simulated cluster (the official client over HTTP)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from kubernetes import client

from hcp.lease_lock import LeaseLock, LockError, LockHeldError, LockLostError, format_microtime
from hcp.naming import lease_name

T0 = datetime(2024, 1, 31, 12, 0, 0, 123456, tzinfo=timezone.utc)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make(api_client, namespace, holder, clock=None, duration=30, **kw) -> LeaseLock:
    return LeaseLock(api_client, namespace, lease_name("hc1"), holder, duration, clock=clock, **kw)


def read(api_client, namespace) -> client.V1Lease:
    return client.CoordinationV1Api(api_client).read_namespaced_lease(lease_name("hc1"), namespace)


def test_microtime_format():
    assert format_microtime(T0) == "2024-01-31T12:00:00.123456Z"
    assert format_microtime(T0.replace(microsecond=0)) == "2024-01-31T12:00:00.000000Z"


def test_acquire_creates_lease_and_second_holder_fails_fast(api_client, namespace):
    clock = Clock()
    a = make(api_client, namespace, "op-a", clock)
    info = a.acquire()
    assert info.holder == "op-a" and a.held
    lease = read(api_client, namespace)
    assert lease.spec.holder_identity == "op-a"
    assert lease.spec.lease_duration_seconds == 30
    assert lease.spec.renew_time == T0  # MicroTime kept to the microsecond

    b = make(api_client, namespace, "op-b", clock)
    with pytest.raises(LockHeldError) as err:
        b.acquire()
    assert err.value.holder == "op-a"
    assert err.value.expires_at == T0 + timedelta(seconds=30)
    assert "op-a" in str(err.value) and "2024-01-31T12:00:30.123456Z" in str(err.value)
    assert "renewed 2024-01-31T12:00:00.123456Z" in str(err.value)
    assert not b.held


def test_reacquire_by_same_holder_is_allowed(api_client, namespace):
    clock = Clock()
    make(api_client, namespace, "op-a", clock).acquire()
    clock.advance(5)
    info = make(api_client, namespace, "op-a", clock).acquire()
    assert info.holder == "op-a" and info.acquire_time == T0 and info.renew_time == clock.now


def test_expired_lease_is_taken_over(api_client, namespace):
    clock = Clock()
    a = make(api_client, namespace, "op-a", clock)
    a.acquire()
    clock.advance(29)
    with pytest.raises(LockHeldError):
        make(api_client, namespace, "op-b", clock).acquire()
    clock.advance(2)
    b = make(api_client, namespace, "op-b", clock)
    info = b.acquire()
    assert info.holder == "op-b" and info.transitions == 1 and info.acquire_time == clock.now
    # the old holder finds out on its next renewal
    with pytest.raises(LockLostError):
        a.renew()
    assert a.lost and not a.held
    with pytest.raises(LockLostError):
        a.check()
    assert a.release() is False  # never touches someone else's hold
    assert read(api_client, namespace).spec.holder_identity == "op-b"


def test_renew_extends(api_client, namespace):
    clock = Clock()
    a = make(api_client, namespace, "op-a", clock)
    a.acquire()
    clock.advance(25)
    info = a.renew()
    assert info.renew_time == clock.now and info.acquire_time == T0
    assert info.expires_at == clock.now + timedelta(seconds=30)
    clock.advance(25)  # 50 s after acquiring, still live thanks to the renewal
    with pytest.raises(LockHeldError):
        make(api_client, namespace, "op-b", clock).acquire()


def test_release_lets_another_acquire(api_client, namespace):
    clock = Clock()
    a = make(api_client, namespace, "op-a", clock)
    a.acquire()
    assert a.release() is True and not a.held
    assert read(api_client, namespace).spec.holder_identity is None
    b = make(api_client, namespace, "op-b", clock)
    assert b.acquire().holder == "op-b"
    assert a.release() is False
    assert read(api_client, namespace).spec.holder_identity == "op-b"


def test_break_lock_refused_while_live_unless_forced(api_client, namespace):
    clock = Clock()
    make(api_client, namespace, "op-dead", clock).acquire()
    breaker = make(api_client, namespace, "op-new", clock)
    with pytest.raises(LockHeldError, match="refusing to break live lock"):
        breaker.break_lock("op-dead")
    with pytest.raises(LockError, match="not breaking"):
        breaker.break_lock("op-other", force=True)
    assert read(api_client, namespace).spec.holder_identity == "op-dead"
    before = breaker.break_lock("op-dead", force=True)
    assert before.holder == "op-dead"
    assert read(api_client, namespace).spec.holder_identity is None
    assert breaker.acquire().holder == "op-new"


def test_break_lock_of_expired_lease(api_client, namespace):
    clock = Clock()
    make(api_client, namespace, "op-dead", clock).acquire()
    clock.advance(31)
    breaker = make(api_client, namespace, "op-new", clock)
    assert breaker.break_lock("op-dead").holder == "op-dead"
    assert breaker.acquire().transitions == 1  # a new holder: one transition, as in client-go
    with pytest.raises(LockError, match="no lock"):
        LeaseLock(api_client, namespace, "other", "x", 30).break_lock("op-dead")


def test_concurrent_acquire_exactly_one_wins(api_client, namespace):
    for round_ in range(3):
        name = f"race-{round_}"
        barrier = threading.Barrier(2)
        results: dict[str, object] = {}

        def run(holder: str) -> None:
            lock = LeaseLock(api_client, namespace, name, holder, 30)
            barrier.wait()
            try:
                results[holder] = lock.acquire()
            except Exception as exc:  # noqa: BLE001
                results[holder] = exc

        threads = [threading.Thread(target=run, args=(h,)) for h in ("op-x", "op-y")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        winners = [h for h, r in results.items() if not isinstance(r, Exception)]
        losers = [r for r in results.values() if isinstance(r, Exception)]
        assert len(winners) == 1 and len(losers) == 1, results
        assert isinstance(losers[0], LockHeldError) and losers[0].holder == winners[0]
        lease = client.CoordinationV1Api(api_client).read_namespaced_lease(name, namespace)
        assert lease.spec.holder_identity == winners[0]


def test_background_renewal_and_context_manager(api_client, namespace):
    with make(api_client, namespace, "op-a", duration=30, renew_interval=0.1) as lock:
        assert lock.renewing
        first = read(api_client, namespace).spec.renew_time
        time.sleep(0.35)
        assert read(api_client, namespace).spec.renew_time > first
        lock.check()
        with pytest.raises(LockHeldError):
            make(api_client, namespace, "op-b").acquire()
    assert not lock.renewing and not lock.held
    assert read(api_client, namespace).spec.holder_identity is None


def test_renewer_stops_when_lock_is_lost(api_client, namespace):
    a = make(api_client, namespace, "op-a", duration=30)
    a.acquire()
    a.start_renewing(0.05)
    make(api_client, namespace, "op-admin").break_lock("op-a", force=True)
    make(api_client, namespace, "op-b").acquire()
    deadline = time.monotonic() + 5
    while not a.lost and time.monotonic() < deadline:
        time.sleep(0.02)
    assert a.lost
    time.sleep(0.1)
    assert not a.renewing
    with pytest.raises(LockLostError, match="op-b"):
        a.check()
    a.stop_renewing()


def test_constructor_validation(api_client):
    with pytest.raises(ValueError):
        LeaseLock(api_client, "ns", "n", "", 30)
    with pytest.raises(ValueError):
        LeaseLock(api_client, "ns", "n", "op", 0)
