"""Fault injection for the simulated API: the next N matching requests fail (5xx) or time out.

Tests use it to prove that clients retry and runbooks take their safe path; it never fires unless
a test asked for it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class ExecCut:
    """Where an exec stream is dropped: after `stdout_after` bytes of stdout, or right after its
    stderr has said `stderr_mark` (what it sent up to there arrives; no exit status ever does)."""

    stdout_after: int | None = None
    stderr_mark: bytes | None = None


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
        self._exec_cuts: list[tuple[ExecCut, str | None]] = []

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

    def cut_next_exec(self, after_bytes: int | None = None, count: int = 1, *, command: str | None = None,
                      after_stderr: str | None = None) -> None:
        """The next `count` exec streams (whose command line contains `command`, if given) are
        dropped after `after_bytes` bytes of stdout, or once their stderr has said `after_stderr`."""
        if (after_bytes is None) == (after_stderr is None):
            raise ValueError("give after_bytes or after_stderr")
        cut = ExecCut(after_bytes, after_stderr.encode() if after_stderr is not None else None)
        with self._lock:
            self._exec_cuts.extend([(cut, command)] * count)

    def take_exec_cut(self, command: list[str] | None = None) -> ExecCut | None:
        line = " ".join(command or [])
        with self._lock:
            for i, (cut, wanted) in enumerate(self._exec_cuts):
                if wanted is None or wanted in line:
                    del self._exec_cuts[i]
                    return cut
        return None

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._exec_cuts.clear()
