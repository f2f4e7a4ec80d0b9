"""A controller's work queue, as client-go's (workqueue.RateLimitingInterface) serves one worker:
a key waits once however often it is added; a delayed add keeps only the earliest time asked for
a key; `get` blocks until a key is due or the queue is shut down; `failed`/`forget` count a key's
failures in a row for its backoff. `idle` is set while nothing is pending (delayed keys aside)."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Generic, Hashable, TypeVar

__all__ = ["WorkQueue"]

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._pending: dict[K, None] = {}  # insertion-ordered set
        self._delayed: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}  # a key's earliest delayed time (older heap entries are stale)
        self._seq = itertools.count()
        self._failures: dict[K, int] = {}
        self._shut_down = False
        self.idle = threading.Event()

    def add(self, key: K) -> None:
        with self._cv:
            self._pending[key] = None
            self._cv.notify()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cv:
            due = time.monotonic() + delay
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            heapq.heappush(self._delayed, (due, next(self._seq), key))
            self._cv.notify()

    def get(self) -> K | None:
        """The next key, in the order added; None once the queue is shut down."""
        with self._cv:
            while True:
                if self._shut_down:
                    return None
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    due, _, key = heapq.heappop(self._delayed)
                    if self._due.get(key) == due:
                        del self._due[key]
                        self._pending[key] = None
                if self._pending:
                    key = next(iter(self._pending))
                    del self._pending[key]
                    return key
                self.idle.set()
                self._cv.wait(self._delayed[0][0] - now if self._delayed else None)
                self.idle.clear()

    def shut_down(self) -> None:
        with self._cv:
            self._shut_down = True
            self._cv.notify_all()

    def failed(self, key: K) -> int:
        """Count a failure of `key`; returns how many came before it in a row (0: the first)."""
        with self._cv:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
            return n

    def forget(self, key: K) -> None:
        """`key` synced: its next failure is a first one again."""
        with self._cv:
            self._failures.pop(key, None)
