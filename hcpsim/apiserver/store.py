"""The object store of one simulated cluster: objects, one resourceVersion counter, and the event
history that watches replay. It knows nothing of verbs or validation (that is backend.py); it only
commits writes atomically and tells subscribers, like etcd under a kube-apiserver.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

import orjson

Key = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace or "", name)


def copy_obj(obj: dict) -> dict:
    # orjson round trip: several times faster than copy.deepcopy for JSON-shaped data.
    return orjson.loads(orjson.dumps(obj))


@dataclass(frozen=True)
class Event:
    """One committed change. `old` is the object before a MODIFIED change (for selector moves)."""

    type: str  # ADDED, MODIFIED, DELETED
    key: Key
    namespace: str
    name: str
    rv: int
    obj: dict
    old: dict | None = None


Subscriber = Callable[[Event], None]


class Store:
    def __init__(self, history_size: int = 20000, first_rv: int = 1000) -> None:
        self._lock = threading.RLock()
        self._rv = first_rv
        self._objects: dict[Key, dict[ObjKey, dict]] = {}
        self._history: deque[Event] = deque(maxlen=history_size)
        # Watches from a resourceVersion at or below this answer 410 Gone (it was compacted away).
        self._compacted_rv = first_rv
        self._subscribers: list[Subscriber] = []

    @property
    def lock(self) -> threading.RLock:
        """Held by the backend across a read-modify-write so it commits atomically."""
        return self._lock

    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def compacted_rv(self) -> int:
        return self._compacted_rv

    # Reads return the stored dict itself: callers copy before handing it out or changing it.

    def get(self, key: Key, namespace: str, name: str) -> dict | None:
        return self._objects.get(key, {}).get((namespace, name))

    def items(self, key: Key, namespace: str | None = None) -> list[dict]:
        with self._lock:
            bucket = self._objects.get(key, {})
            if namespace is None:
                return [bucket[k] for k in sorted(bucket)]
            return [bucket[k] for k in sorted(bucket) if k[0] == namespace]

    def keys(self) -> list[Key]:
        return list(self._objects)

    def count_in_namespace(self, namespace: str) -> int:
        with self._lock:
            return sum(1 for bucket in self._objects.values() for (ns, _) in bucket if ns == namespace)

    # Writes: each takes the object with everything but resourceVersion already set.

    def put(self, key: Key, obj: dict, event_type: str) -> dict:
        with self._lock:
            meta = obj["metadata"]
            ns, name = meta.get("namespace", ""), meta["name"]
            bucket = self._objects.setdefault(key, {})
            old = bucket.get((ns, name))
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            bucket[(ns, name)] = obj
            self._emit(Event(event_type, key, ns, name, self._rv, obj, old))
            return obj

    def remove(self, key: Key, namespace: str, name: str, final: dict | None = None) -> dict | None:
        """Delete an object; `final` is its last state when a write (emptied finalizers) removes it."""
        with self._lock:
            bucket = self._objects.get(key, {})
            obj = bucket.pop((namespace, name), None)
            if obj is None:
                return None
            obj = final if final is not None else obj
            self._rv += 1
            # The DELETED event carries the final state at a new resourceVersion, as the real server.
            obj = dict(obj)
            obj["metadata"] = dict(obj["metadata"], resourceVersion=str(self._rv))
            self._emit(Event("DELETED", key, namespace, name, self._rv, obj))
            return obj

    def drop_type(self, key: Key) -> None:
        """Forget every object of a type whose definition went away (CRD deleted)."""
        with self._lock:
            for obj in self.items(key):
                self.remove(key, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            self._objects.pop(key, None)

    def _emit(self, event: Event) -> None:
        if len(self._history) == self._history.maxlen:
            self._compacted_rv = self._history[0].rv
        self._history.append(event)
        for subscriber in list(self._subscribers):
            subscriber(event)

    # Watch support.

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` after every commit, under the store lock (it must not block)."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def history_since(self, rv: int) -> Iterator[Event]:
        """Events after `rv`; the caller checks `compacted_rv` first. Call under the lock."""
        for event in self._history:
            if event.rv > rv:
                yield event

    def compact(self) -> int:
        """Drop the whole event history (etcd compaction): older watches get 410 Gone."""
        with self._lock:
            self._history.clear()
            self._compacted_rv = self._rv
            return self._rv
