"""A watch running in a thread that collects events until a sentinel object appears."""

from __future__ import annotations

import threading
from typing import Any, Callable

from kubernetes import watch


class Collector:
    """Watch `fn(*args, **kw)` (a list function of the official client) from a resourceVersion in a thread.

    The watch ends when an object named `stop_name` arrives (or the server ends the stream); starting
    from a resourceVersion taken before the actions makes the result independent of when the thread
    connects.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, stop_name: str = "zz-stop", timeout_seconds: int = 10,
                 **kw: Any) -> None:
        self.events: list[tuple[str, str, dict]] = []  # (type, name, raw object)
        self.error: BaseException | None = None
        self._w = watch.Watch()
        self._stop_name = stop_name
        kw.setdefault("timeout_seconds", timeout_seconds)
        self._thread = threading.Thread(target=self._run, args=(fn, args, kw), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple, kw: dict) -> None:
        try:
            for event in self._w.stream(fn, *args, **kw):
                raw = event["raw_object"]
                name = raw["metadata"]["name"]
                self.events.append((event["type"], name, raw))
                if name == self._stop_name:
                    self._w.stop()
                    break
        except BaseException as e:  # noqa: BLE001 - reported to the test
            self.error = e

    def join(self, timeout: float = 15) -> list[tuple[str, str]]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"watch did not end; got {self.summary()}"
        if self.error is not None:
            raise self.error
        return self.summary()

    def summary(self) -> list[tuple[str, str]]:
        return [(t, n) for t, n, _ in self.events]
