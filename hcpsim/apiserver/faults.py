"""Fault injection for the simulated API: the next N matching requests fail (5xx) or time out.

Tests use it to prove that clients retry and runbooks take their safe path; it never fires unless
a test asked for it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class FaultRule:
    remaining: int
    code: int = 503  # 500, 503, 504...; 0 means: hold the request for `delay` seconds, then 504
    method: str | None = None  # GET, POST... or None for any
    path_contains: str | None = None
    delay: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method != method:
            return False
        return self.path_contains is None or self.path_contains in path


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._exec_cuts: list[tuple[int, str | None]] = []

    def fail_next(self, count: int, *, code: int = 503, method: str | None = None, path_contains: str | None = None,
                  delay: float = 0.0) -> FaultRule:
        rule = FaultRule(count, code, method, path_contains, delay)
        with self._lock:
            self._rules.append(rule)
        return rule

    def take(self, method: str, path: str) -> FaultRule | None:
        """The rule that fires for this request, if any (each firing uses one of its count)."""
        with self._lock:
            for rule in self._rules:
                if rule.remaining > 0 and rule.matches(method, path):
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                    return rule
        return None

    def cut_next_exec(self, after_bytes: int, count: int = 1, *, command: str | None = None) -> None:
        """The next `count` exec streams (whose command line contains `command`, if given) are
        dropped after `after_bytes` bytes of stdout."""
        with self._lock:
            self._exec_cuts.extend([(after_bytes, command)] * count)

    def take_exec_cut(self, command: list[str] | None = None) -> int | None:
        line = " ".join(command or [])
        with self._lock:
            for i, (after, wanted) in enumerate(self._exec_cuts):
                if wanted is None or wanted in line:
                    del self._exec_cuts[i]
                    return after
        return None

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._exec_cuts.clear()
