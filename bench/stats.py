"""Latency recording and percentiles (nearest-rank, in milliseconds)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values; 0 for none."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Summary:
    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of(cls, values_ms: list[float]) -> Summary:
        ordered = sorted(values_ms)
        mean = sum(ordered) / len(ordered) if ordered else 0.0
        return cls(
            len(ordered),
            percentile(ordered, 50),
            percentile(ordered, 95),
            percentile(ordered, 99),
            ordered[-1] if ordered else 0.0,
            mean,
        )


@dataclass
class Recorder:
    """Latencies per step, recorded only while ``measuring`` is on; errors always."""

    measuring: bool = False
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    measured_errors: int = 0
    flows_measured: int = 0

    def add(self, step: str, seconds: float) -> None:
        if self.measuring:
            self.latencies[step].append(seconds * 1000)

    def error(self, step: str, detail: str) -> None:
        self.errors[step] += 1
        if self.measuring:
            self.measured_errors += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(f"{step}: {detail[:300]}")

    def summaries(self) -> dict[str, Summary]:
        return {step: Summary.of(values) for step, values in self.latencies.items()}
