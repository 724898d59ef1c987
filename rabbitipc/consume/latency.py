"""Send-to-handled latency in constant memory: a histogram with 2%-wide buckets.

The receiver reports p50/p99/max per summary line and for its whole run. Keeping every
sample would grow with traffic; bucket counts do not (about 700 buckets from 1 us to 1 h),
and a percentile is off by at most one bucket's width, 2%.
"""

from __future__ import annotations

import math

RATIO = 1.02
LOWEST_MS = 0.001
_LOG_RATIO = math.log(RATIO)
_SCALE = 1 / _LOG_RATIO
_BUCKETS = int(math.log(3_600_000 / LOWEST_MS) / _LOG_RATIO) + 2
_HIGHEST_MS = 1e12  # about 30 years: anything above lands in the top bucket, unchanged in max


class Latencies:
    """Counts of latencies (milliseconds) in geometric buckets; percentiles from them."""

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.total = 0
        self.max = 0.0
        self.sum_ms = 0.0  # for Prometheus' histogram _sum (metrics.py)

    def add(self, ms: float) -> None:
        if not LOWEST_MS < ms < _HIGHEST_MS:  # clocks apart, or a sent_at far off: the edge buckets
            ms = 0.0 if not ms > LOWEST_MS else _HIGHEST_MS  # NaN counts as the lowest
        index = int(math.log(ms / LOWEST_MS) * _SCALE) + 1 if ms > LOWEST_MS else 0
        self.counts[min(index, _BUCKETS - 1)] += 1
        self.total += 1
        self.sum_ms += ms
        if ms > self.max:
            self.max = ms

    def percentile(self, p: float) -> float:
        """The latency below which p percent of samples fall (the bucket's upper bound)."""
        if not self.total:
            return 0.0
        rank = math.ceil(self.total * p / 100)
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return min(LOWEST_MS * RATIO ** index, self.max)
        return self.max

    def describe(self) -> str:
        if not self.total:
            return "latency_ms n/a"
        return (f"latency_ms p50={self.percentile(50):.1f} p99={self.percentile(99):.1f} "
                f"max={self.max:.1f}")

    def copy(self) -> Latencies:
        other = Latencies()
        other.counts, other.total, other.max, other.sum_ms = list(self.counts), self.total, self.max, self.sum_ms
        return other

    def since(self, earlier: Latencies) -> Latencies:
        """The samples added after `earlier` was copied from this one (max: to a bucket's width)."""
        other = Latencies()
        other.counts = [now - then for now, then in zip(self.counts, earlier.counts)]
        other.total = self.total - earlier.total
        other.sum_ms = self.sum_ms - earlier.sum_ms
        top = max((index for index, count in enumerate(other.counts) if count), default=None)
        other.max = 0.0 if top is None else min(LOWEST_MS * RATIO ** top, self.max)
        return other
