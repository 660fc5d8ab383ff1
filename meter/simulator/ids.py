"""Fixed-width strings built arithmetically: ids and timestamps as Arrow string arrays.

Every id and timestamp the simulator writes has a fixed width, laid out in 4-byte words:

    sevt_01TTTTT SSSSSSSS QQQQQQQQ    event:   run tag, session number, seq (28 bytes)
    sesn_01TTTTT SSSSSSSS             session: run tag, session number (20 bytes)
    sthr_01TTTTT SSSSSSSS NNNN        thread:  run tag, session number, thread (24 bytes)
    2026-11-03T09:00:00.123Z          RFC 3339, UTC, milliseconds (24 bytes)

so a column of them is an (n, words) uint32 matrix filled from small lookup tables (a
4-digit group is one table lookup), then handed to Arrow without a copy. This is an order of
magnitude cheaper than formatting strings row by row, and both writers (JSONL and store)
use the very same columns, so their ids cannot differ. Within a session, zero-padded
sequence numbers make the ids sort lexicographically in emission order.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["event_ids", "format_ms", "session_ids", "thread_ids", "timestamps", "with_nulls"]

TAG_LENGTH = 5
MAX_SESSIONS = 10**8
MAX_SEQ = 10**8
MAX_THREADS = 10**4


def _word(text: str) -> int:
    return int.from_bytes(text.encode("ascii"), "little")


_DIGITS4 = np.array([_word(f"{i:04d}") for i in range(10_000)], dtype=np.uint32)
_MONTH = np.array([_word(f"-{m:02d}-") for m in range(13)], dtype=np.uint32)
_DAY_HOUR = np.array([_word(f"{d:02d}T{h}") for d in range(32) for h in range(10)],
                     dtype=np.uint32)
_HOUR_MIN = np.array([_word(f"{h}:{m:02d}") for h in range(10) for m in range(60)],
                     dtype=np.uint32)
_SEC = np.array([_word(f":{s:02d}.") for s in range(61)], dtype=np.uint32)
_MILLI = np.array([_word(f"{ms:03d}Z") for ms in range(1000)], dtype=np.uint32)


def _strings(words: np.ndarray) -> pa.StringArray:
    """An (n, k) uint32 matrix as n strings of 4k bytes each (no copy)."""
    n, k = words.shape
    width = 4 * k
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64 if n * width >= 2**31
                        else np.int32)
    kind = pa.large_string() if offsets.dtype == np.int64 else pa.string()
    return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets),
                                           pa.py_buffer(np.ascontiguousarray(words))])


def _prefix(text: str) -> np.ndarray:
    raw = text.encode("ascii")
    assert len(raw) % 4 == 0
    return np.frombuffer(raw, dtype=np.uint32)


def _fill(prefix: str, groups: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """Words: the constant prefix, then each number as `ndigits` zero-padded digits."""
    head = _prefix(prefix)
    n = len(groups[0][0])
    words = np.empty((n, len(head) + sum(d // 4 for _, d in groups)), dtype=np.uint32)
    words[:, : len(head)] = head
    col = len(head)
    for values, ndigits in groups:
        v = np.asarray(values, dtype=np.int64)
        if ndigits == 4:
            words[:, col] = _DIGITS4[v]
        else:  # 8 digits: two 4-digit groups
            high, low = np.divmod(v, 10_000)
            words[:, col] = _DIGITS4[high]
            words[:, col + 1] = _DIGITS4[low]
        col += ndigits // 4
    return words


def _check_tag(tag: str) -> None:
    if len(tag) != TAG_LENGTH or not tag.isascii() or not tag.isalnum():
        raise ValueError(f"run tag must be {TAG_LENGTH} ASCII letters or digits, got {tag!r}")


def _check_range(values: np.ndarray, limit: int, what: str) -> None:
    if len(values) and (values.min() < 0 or values.max() >= limit):
        raise ValueError(f"{what} out of the id range [0, {limit})")


def event_ids(tag: str, sess: np.ndarray, seq: np.ndarray) -> pa.StringArray:
    _check_tag(tag)
    _check_range(seq, MAX_SEQ, "event number")
    return _strings(_fill(f"sevt_01{tag}", [(sess, 8), (seq, 8)]))


def session_ids(tag: str, sess: np.ndarray) -> pa.StringArray:
    _check_tag(tag)
    _check_range(sess, MAX_SESSIONS, "session number")
    return _strings(_fill(f"sesn_01{tag}", [(sess, 8)]))


def thread_ids(tag: str, sess: np.ndarray, thr: np.ndarray) -> pa.Array:
    """Thread ids, null where `thr` < 0 (events that belong to no thread)."""
    _check_tag(tag)
    thr = np.asarray(thr)
    valid = thr >= 0
    if not valid.any():
        return pa.nulls(len(thr), pa.string())
    _check_range(thr[valid], MAX_THREADS, "thread number")
    return with_nulls(_strings(_fill(f"sthr_01{tag}", [(sess, 8), (np.maximum(thr, 0), 4)])),
                      valid)


def with_nulls(strings: pa.Array, valid: np.ndarray) -> pa.Array:
    """The same strings, null where `valid` is false."""
    if valid.all():
        return strings
    bitmap = pa.py_buffer(np.packbits(np.asarray(valid, dtype=bool), bitorder="little"))
    return pa.Array.from_buffers(strings.type, len(strings), [bitmap, *strings.buffers()[1:]])


def _civil(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(year, month, day) of days since 1970-01-01, proleptic Gregorian (H. Hinnant)."""
    z = days + 719_468
    era = np.floor_divide(z, 146_097)
    doe = z - era * 146_097
    yoe = (doe - doe // 1_460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    return yoe + era * 400 + (month <= 2), month, day


def timestamps(at_ms: np.ndarray) -> pa.StringArray:
    """Epoch milliseconds as 2026-11-03T09:00:00.123Z (UTC). Dates are computed once per
    distinct day; the time of day is four table lookups."""
    at = np.asarray(at_ms, dtype=np.int64)
    words = np.empty((len(at), 6), dtype=np.uint32)
    if len(at) == 0:
        return _strings(words)
    days, ms_of_day = np.divmod(at, 86_400_000)
    first = int(days.min())
    year, month, day = _civil(np.arange(first, int(days.max()) + 1, dtype=np.int64))
    offset = days - first
    hour, ms_of_hour = np.divmod(ms_of_day, 3_600_000)
    minute, ms_of_minute = np.divmod(ms_of_hour, 60_000)
    sec, milli = np.divmod(ms_of_minute, 1000)
    words[:, 0] = _DIGITS4[year % 10_000][offset]
    words[:, 1] = _MONTH[month][offset]
    words[:, 2] = _DAY_HOUR[day[offset] * 10 + hour // 10]
    words[:, 3] = _HOUR_MIN[(hour % 10) * 60 + minute]
    words[:, 4] = _SEC[sec]
    words[:, 5] = _MILLI[milli]
    return _strings(words)


def format_ms(at_ms: int) -> str:
    """One timestamp, formatted as the columns are."""
    return timestamps(np.array([at_ms]))[0].as_py()
