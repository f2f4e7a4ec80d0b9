"""Small helpers shared by the conformance tests."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from kubernetes import client


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def status_of(exc: client.ApiException) -> dict:
    """The metav1.Status body of a failed call."""
    return json.loads(exc.body)


def expect_api_error(code: int, reason: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> dict:
    """Call fn, expect an ApiException with a Status body of this code and reason; return the Status."""
    try:
        fn(*args, **kw)
    except client.ApiException as e:
        assert e.status == code, f"expected {code} {reason}, got {e.status}: {e.body}"
        body = status_of(e)
        assert body["kind"] == "Status" and body["status"] == "Failure"
        assert body["code"] == code and body["reason"] == reason, body
        return body
    raise AssertionError(f"expected {code} {reason}, the call succeeded")
