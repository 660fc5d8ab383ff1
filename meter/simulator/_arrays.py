"""Grouped-array helpers: a flat array split into consecutive groups by a `counts` array.

Sessions own turns, turns own requests, requests own searches: each level is a flat numpy
array whose groups are contiguous, so per-group sums, ranks and running totals are a cumsum
away. int64 stays exact throughout (money is integer units, see ``rates``).
"""

from __future__ import annotations

import numpy as np

MIN_GAP_MS = 2  # between consecutive request boundaries, so status events never share a ms
BETA_CONCENTRATION = 20.0


def offsets(counts: np.ndarray) -> np.ndarray:
    """Exclusive prefix sums: where each group starts in the flat array."""
    out = np.zeros(len(counts), dtype=np.int64)
    if len(counts) > 1:
        np.cumsum(counts[:-1], out=out[1:])
    return out


def owner(counts: np.ndarray) -> np.ndarray:
    """The group of each element of the flat array."""
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def rank(counts: np.ndarray) -> np.ndarray:
    """Each element's index within its group."""
    total = int(np.sum(counts))
    return np.arange(total, dtype=np.int64) - np.repeat(offsets(counts), counts)


def seg_cumsum(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Inclusive running totals restarting at each group."""
    cs = np.cumsum(values)
    before = np.concatenate((np.zeros(1, cs.dtype), cs))[offsets(counts)]
    return cs - np.repeat(before, counts)


def seg_sum(values: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    """Per-group totals of `values` whose (sorted) group ids are `group`; exact for int64."""
    cs = np.concatenate((np.zeros(1, np.asarray(values).dtype), np.cumsum(values)))
    ids = np.arange(n)
    return cs[np.searchsorted(group, ids, side="right")] - cs[np.searchsorted(group, ids)]


def first_flagged(flag: np.ndarray, group: np.ndarray, index: np.ndarray, n: int,
                  none: np.ndarray | int) -> np.ndarray:
    """Per group, `index` of its first flagged element, else `none`."""
    out = np.array(np.broadcast_to(none, (n,)), dtype=np.int64)
    hit = np.flatnonzero(flag)
    groups, first = np.unique(group[hit], return_index=True)
    out[groups] = index[hit[first]]
    return out


def lognormal_ms(rng: np.random.Generator, median_s: np.ndarray, sigma: np.ndarray,
                 lo_ms: int, hi_ms: int) -> np.ndarray:
    """Lognormal durations in whole milliseconds, clipped to [lo_ms, hi_ms]."""
    draw = rng.lognormal(np.log(np.asarray(median_s) * 1000.0), sigma)
    return np.clip(np.rint(draw), lo_ms, hi_ms).astype(np.int64)


def beta_mean(rng: np.random.Generator, mean: np.ndarray) -> np.ndarray:
    """Draws in [0, 1] with the given means (exactly 0 or 1 where the mean is)."""
    a = np.maximum(mean * BETA_CONCENTRATION, 1e-9)
    b = np.maximum((1 - mean) * BETA_CONCENTRATION, 1e-9)
    draw = rng.beta(a, b)
    return np.where(mean <= 0, 0.0, np.where(mean >= 1, 1.0, draw))


def layout(rng: np.random.Generator, length: np.ndarray, k: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of `k` requests spread over [1, length - 1] of each span.

    Requests alternate with tool work: 2k - 1 segments of random (exponential) weight.
    Consecutive boundaries are at least MIN_GAP_MS apart; the last request ends at
    length - 1. Needs length >= 4k + 2.
    """
    nseg = 2 * k - 1
    seg_owner = owner(nseg)
    seg_rank = rank(nseg)
    seg_base = offsets(nseg)
    cum = np.concatenate(([0.0], np.cumsum(rng.standard_exponential(int(nseg.sum())))))
    before = cum[seg_base]
    total = cum[seg_base + nseg] - before
    frac = (cum[1:] - np.repeat(before, nseg)) / np.repeat(total, nseg)
    avail = length - 2 - nseg * MIN_GAP_MS
    bound = 1 + np.floor(frac * avail[seg_owner]).astype(np.int64) + (seg_rank + 1) * MIN_GAP_MS
    last = seg_rank == nseg[seg_owner] - 1
    bound[last] = (length - 1)[seg_owner[last]]
    req_span = owner(k)
    j = rank(k)
    start = np.where(j == 0, 1, bound[seg_base[req_span] + np.maximum(2 * j - 1, 0)])
    end = bound[seg_base[req_span] + 2 * j]
    return start, end


def push_apart(times: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Times made strictly increasing within each (sorted) group, each moved as little as
    possible: t'_i = i + max_{j<=i}(t_j - j), a running maximum."""
    counts = np.bincount(group, minlength=int(group.max()) + 1 if len(group) else 0)
    r = rank(counts)
    big = np.int64(1) << 40
    lifted = times - r + group * big
    return np.maximum.accumulate(lifted) - group * big + r
