"""Helpers the benchmarks share: percentiles and one-line figure printing."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def time_calls(call: Callable[[], object], count: int, warmup: int = 20) -> list[float]:
    """Seconds per call for `count` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(count):
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    return samples


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def summary(samples: list[float]) -> str:
    return f"p50 {ms(percentile(samples, 50))}  p99 {ms(percentile(samples, 99))}  mean {ms(statistics.fmean(samples))}"
