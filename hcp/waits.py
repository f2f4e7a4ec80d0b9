"""Watch-based waits: block until one object satisfies a condition, without polling the API.

A list call gives the current state and a resourceVersion; a watch from that version delivers
every change after it, so no change between the two is missed. A watch that ends (server
timeout, 410 Gone after compaction) is restarted from a fresh list.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

__all__ = ["WaitTimeout", "wait_for_object", "wait_for_set"]


class WaitTimeout(TimeoutError):
    """The condition did not hold within the timeout; `last` is the object as last seen."""

    def __init__(self, message: str, last: Any) -> None:
        super().__init__(message)
        self.last = last


def wait_for_object(list_fn: Callable[..., Any], name: str, condition: Callable[[Any], bool], *, timeout: float,
                    what: str, **list_kwargs: Any) -> Any:
    """Wait until the object `name` returned by `list_fn` (a namespaced list method of the client,
    with its namespace in `list_kwargs`) satisfies `condition`; returns that object.

    `condition` gets None while the object does not exist. `what` names the wait in the timeout
    error (e.g. "kube-apiserver in clusters-demo scaled to 0").
    """
    def first(items: list[Any]) -> Any:
        return items[0] if items else None
    try:
        return first(wait_for_set(list_fn, lambda items: condition(first(items)), timeout=timeout, what=what,
                                  field_selector=f"metadata.name={name}", **list_kwargs))
    except WaitTimeout as exc:
        raise WaitTimeout(str(exc), first(exc.last or [])) from None


def wait_for_set(list_fn: Callable[..., Any], condition: Callable[[list[Any]], bool], *, timeout: float, what: str,
                 **list_kwargs: Any) -> list[Any]:
    """Like wait_for_object, for every object the list selects (e.g. `label_selector="app=etcd"`):
    `condition` gets the current objects (sorted by name) after the list and after each change;
    returns them once it holds. WaitTimeout.last is the list as last seen."""
    deadline = time.monotonic() + timeout
    while True:
        items, version = _items_and_version(list_fn(**list_kwargs))
        current = {_name(o): o for o in items}
        if condition(_sorted(current)):
            return _sorted(current)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}", _sorted(current))
        w = watch.Watch()
        try:
            for event in w.stream(list_fn, resource_version=version, timeout_seconds=max(1, int(remaining) + 1),
                                  _request_timeout=remaining + 5, **list_kwargs):
                if event["type"] == "ERROR":
                    break
                obj = event["object"]
                if event["type"] == "DELETED":
                    current.pop(_name(obj), None)
                else:
                    current[_name(obj)] = obj
                if condition(_sorted(current)):
                    return _sorted(current)
                if time.monotonic() >= deadline:
                    break
        except ApiException as exc:
            if exc.status != 410:
                raise
        finally:
            w.stop()
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}", _sorted(current))


def _name(obj: Any) -> str:
    return obj["metadata"]["name"] if isinstance(obj, dict) else obj.metadata.name


def _sorted(current: dict[str, Any]) -> list[Any]:
    return [current[k] for k in sorted(current)]


def _items_and_version(listing: Any) -> tuple[list[Any], str]:
    """Typed lists (models) and custom-object lists (dicts) alike."""
    if isinstance(listing, dict):
        return listing.get("items") or [], listing["metadata"]["resourceVersion"]
    return listing.items or [], listing.metadata.resource_version
