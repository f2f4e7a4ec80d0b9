"""A level-based controller loop: store events map to keys, keys queue (deduplicated), one worker
thread reconciles them; a reconcile may ask to run again later. Events arrive under the store lock,
so mapping must be cheap and must not write.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from typing import Hashable, Iterable

from hcpsim.apiserver.backend import Backend
from hcpsim.apiserver.errors import ApiError
from hcpsim.apiserver.store import Event

log = logging.getLogger("hcpsim.controllers")

DEPLOYMENTS = ("apps", "deployments")


def deployment_running(backend: Backend, namespace: str, name: str) -> bool:
    """Whether the component a Deployment runs is up: the Deployment has a ready replica. A
    component whose Deployment does not exist counts as running (a controller started on its own,
    outside a world that deploys it). Scaling the Deployment to 0 stops the component, as on a
    real cluster."""
    deployment = backend.store.get(DEPLOYMENTS, namespace, name)
    return deployment is None or bool((deployment.get("status") or {}).get("readyReplicas"))


class Controller:
    name = "controller"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._cond = threading.Condition()
        self._ready: dict[Hashable, None] = {}
        self._later: list[tuple[float, int, Hashable]] = []
        self._seq = 0
        self._stopping = False
        self._unsubscribe = backend.store.subscribe(self._on_event)
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-{backend.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()
        for key in self.initial_keys():
            self.enqueue(key)

    # To override.

    def keys_for(self, event: Event) -> Iterable[Hashable]:
        """The keys an event concerns (under the store lock: read only, no writes)."""
        return ()

    def initial_keys(self) -> Iterable[Hashable]:
        return ()

    def reconcile(self, key: Hashable) -> float | None:
        """Bring `key` to its desired state; return seconds until it should run again, or None."""
        return None

    # Machinery.

    def enqueue(self, key: Hashable, after: float = 0.0) -> None:
        with self._cond:
            if after <= 0:
                self._ready[key] = None
            else:
                self._seq += 1
                heapq.heappush(self._later, (time.monotonic() + after, self._seq, key))
            self._cond.notify()

    def _on_event(self, event: Event) -> None:
        keys = list(self.keys_for(event))
        if keys:
            with self._cond:
                for key in keys:
                    self._ready[key] = None
                self._cond.notify()

    def _next(self) -> Hashable | None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                while self._later and self._later[0][0] <= now:
                    _, _, key = heapq.heappop(self._later)
                    self._ready[key] = None
                if self._ready:
                    key = next(iter(self._ready))
                    del self._ready[key]
                    return key
                timeout = (self._later[0][0] - now) if self._later else None
                self._cond.wait(timeout)
            return None

    def _run(self) -> None:
        while True:
            key = self._next()
            if key is None:
                return
            try:
                again = self.reconcile(key)
            except ApiError as e:
                # Conflicts and vanished objects are normal under concurrent writers: try again soon.
                # Anything else is a bug or a bad object: say so, and back off.
                if e.code in (404, 409):
                    again = 0.05
                else:
                    log.warning("%s %s: %s: %s", self.name, self.backend.name, key, e.message)
                    again = 2.0
            except Exception:
                log.exception("%s %s: reconcile of %s failed", self.name, self.backend.name, key)
                again = 1.0
            if again is not None and not self._stopping:
                self.enqueue(key, after=again)

    def close(self) -> None:
        self._unsubscribe()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

