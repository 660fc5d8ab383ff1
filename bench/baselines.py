"""The baselines AgentTally is measured against, written the way each is usually written.

- `executemany_ingest`: parse each JSON line in Python and INSERT it row by row.
- `pandas_rate`: the rating rules vectorised in pandas/numpy, money as exact integers
  (pico-dollars for tokens, atto-dollars for runtime, as the SQL engine's own exact decimals).
- `python_loop_rate`: one `Decimal` cost per usage record from a dict of rates, and runtime per
  interval, the way per-request cost calculators work.
- `litellm_rate`: LiteLLM's `cost_per_token` per record, when LiteLLM is installed.

The rating baselines cover the rules the benchmark's data exercises (session-level status,
spans priced at the session agent's model, price-book history, aliases and dated ids, fast
mode, US data residency, long context, unrated models); a store with threads or usage snapshots
is refused rather than priced by a different rule.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import Clock, stopwatch
from pricing.pricebook import TOKEN_CLASSES, PriceBook

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
PICO = 10**12
TERMINAL = ("terminated", "deleted")


# --- ingest -----------------------------------------------------------------------------------


def executemany_ingest(path: Path, sample: int, db: Path) -> tuple[Clock, int]:
    """Row-by-row: json.loads each line, then one parameterised INSERT per event.

    A generous baseline: it only stores the common columns of `events`, checks nothing
    beyond JSON syntax, and runs in one transaction (in autocommit mode each row also pays a
    commit, about 4x slower again), so the real row-by-row cost of full ingest is higher still.
    """
    from meter.store import connect

    with open(path, encoding="utf-8") as f:
        lines = list(itertools.islice(f, sample))
    con = connect(db)
    with stopwatch() as clock:
        rows = []
        for line in lines:
            try:
                obj = json.loads(line)
                if obj.get("type") == "session":
                    continue
                at = datetime.fromisoformat(obj["processed_at"].replace("Z", "+00:00"))
                rows.append((obj["id"], obj["session_id"], obj["type"],
                             int(at.timestamp() * 1000), obj.get("session_thread_id"), 1))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
        con.execute("BEGIN TRANSACTION")
        con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", rows)
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    con.close()
    return clock, len(lines)


# --- rating: shared price tables ---------------------------------------------------------------


def _books_in_order(books: Sequence[PriceBook]) -> list[PriceBook]:
    return sorted(books, key=lambda b: b.effective_from_ms)


def _book_index(books: Sequence[PriceBook], at_ms: np.ndarray) -> np.ndarray:
    """Index of the book in force at each instant (books sorted, non-overlapping), else -1."""
    starts = np.array([b.effective_from_ms for b in books], dtype=np.int64)
    ends = np.array([b.effective_to_ms if b.effective_to_ms is not None else np.iinfo(np.int64).max
                     for b in books], dtype=np.int64)
    idx = np.searchsorted(starts, at_ms, side="right") - 1
    ok = (idx >= 0) & (at_ms < ends[np.clip(idx, 0, None)])
    return np.where(ok, idx, -1)


def _pico_per_token(usd_per_mtok: Decimal) -> int:
    """USD per million tokens -> pico-dollars per token, refusing anything inexact."""
    value = usd_per_mtok * 10**6
    if value != value.to_integral_value():
        raise ValueError(f"rate {usd_per_mtok} is not a whole number of pico-dollars per token")
    return int(value)


@dataclass(frozen=True)
class _Pricing:
    """The price of one (book, session model, fast?, us?) combination, in pico-dollars."""

    book: int
    model_id: str | None            # resolved model id; None: unrated
    prices: tuple[int, ...]         # per token class, TOKEN_CLASSES order
    cache_write_class: int          # which class a span's cache write goes to (book's TTL)
    lc_threshold: int               # -1: no long-context rates
    lc_premium: tuple[int, ...]


def _pricing(book_idx: int, book: PriceBook, model_raw: str | None, fast: bool, us: bool,
             ttl: str | None) -> _Pricing:
    model = book.resolve(model_raw) if model_raw is not None else None
    ttl = ttl or book.modifiers.default_cache_write_ttl
    cw_class = TOKEN_CLASSES.index("cache_write_1h" if ttl == "1h" else "cache_write_5m")
    if model is None:
        return _Pricing(book_idx, None, (0,) * 5, cw_class, -1, (0,) * 5)
    rates = (model.fast if fast and book.modifiers.fast_mode_applies and model.fast
             else model.standard)
    geo = model.geo_multiplier if us and book.modifiers.data_residency_applies else Decimal(1)
    prices = tuple(_pico_per_token(rates.rate(c) * geo) for c in TOKEN_CLASSES)
    lc = model.long_context
    if lc is None:
        return _Pricing(book_idx, model.id, prices, cw_class, -1, (0,) * 5)
    premium = tuple(_pico_per_token((lc.rate(c) - model.rate(c)) * geo) for c in TOKEN_CLASSES)
    return _Pricing(book_idx, model.id, prices, cw_class, lc.threshold_tokens, premium)


def _runtime_atto(ms: np.ndarray, usd_per_hour: Decimal) -> np.ndarray:
    """Runtime amount per piece in atto-dollars, rounded half up as the SQL engine does:
    floor((ms * price_pico * 10^6 + 1.8e6) / 3.6e6), split so that int64 never overflows."""
    base, rem = divmod(int(usd_per_hour * PICO) * 10**6, HOUR_MS)
    if base * DAY_MS >= 2**63:
        raise OverflowError("runtime price too high for int64 atto-dollars per day piece")
    return ms * base + (ms * rem + HOUR_MS // 2) // HOUR_MS


def _refuse_unsupported(status: pd.DataFrame, spans: pd.DataFrame, extra: dict[str, int]) -> None:
    if status["thread_id"].notna().any() or spans["thread_id"].notna().any():
        raise NotImplementedError("baseline prices session-level data only (no threads)")
    if any(extra.values()):
        raise NotImplementedError(f"baseline does not price {extra}")


# --- rating: vectorised pandas ----------------------------------------------------------------


@dataclass
class PandasRating:
    """Line items as the engine's `charges` groups them, keyed by integer codes."""

    token_lines: pd.DataFrame      # sess, day, pricing, tier, token_class, quantity, pico
    runtime_lines: pd.DataFrame    # sess, day, book, quantity (ms), atto
    token_sessions: np.ndarray     # session id of each token `sess` code
    runtime_sessions: np.ndarray   # session id of each runtime `sess` code
    provisional_sessions: int

    @property
    def lines(self) -> int:
        return len(self.token_lines) + len(self.runtime_lines)

    def total(self, session_ids: Sequence[str] | None = None) -> Decimal:
        tok, run = self.token_lines, self.runtime_lines
        if session_ids is not None:
            ids = pd.Index(list(session_ids))
            tok_codes = pd.Index(self.token_sessions).get_indexer(ids)
            run_codes = pd.Index(self.runtime_sessions).get_indexer(ids)
            tok = tok[np.isin(tok["sess"].to_numpy(), tok_codes[tok_codes >= 0])]
            run = run[np.isin(run["sess"].to_numpy(), run_codes[run_codes >= 0])]
        pico = sum(int(x) for x in tok["pico"].to_numpy())
        atto = sum(int(x) for x in run["atto"].to_numpy())
        return Decimal(pico * 10**6 + atto).scaleb(-18)


def pandas_rate(
    status: pd.DataFrame,
    spans: pd.DataFrame,
    sessions: pd.DataFrame,
    books: Sequence[PriceBook],
    as_of_ms: int,
    span_cache_ttl: str | None = None,
    other_usage: dict[str, int] | None = None,
) -> PandasRating:
    """The engine's rules on DataFrames shaped like the store's tables.

    status: session_id, thread_id, status, at_ms, event_id; spans: model_requests columns;
    sessions: session_id, model_id, model_speed, inference_geo. `other_usage` counts the rows
    of tables this baseline does not price (usage snapshots, threads): they must be zero.
    """
    books = _books_in_order(books)
    _refuse_unsupported(status, spans, other_usage or {})
    token_lines, token_sessions = _pandas_tokens(spans, sessions, books, as_of_ms, span_cache_ttl)
    runtime_lines, runtime_sessions, provisional = _pandas_runtime(status, books, as_of_ms)
    return PandasRating(token_lines, runtime_lines, token_sessions, runtime_sessions, provisional)


def _pandas_tokens(spans: pd.DataFrame, sessions: pd.DataFrame, books: list[PriceBook],
                   as_of_ms: int, ttl: str | None) -> tuple[pd.DataFrame, np.ndarray]:
    spans = spans[spans["at_ms"].to_numpy() <= as_of_ms]
    index = pd.Index(sessions["session_id"])
    sess = index.get_indexer(spans["session_id"])
    known = sess >= 0
    if not known.all():  # usage of a session without a record: unrated (no model)
        spans, sess = spans[known], sess[known]
    model_code, uniques = pd.factorize(sessions["model_id"])
    models = [*uniques, None]
    model_code = np.where(model_code < 0, len(models) - 1, model_code)
    sess_fast = (sessions["model_speed"].fillna("standard") == "fast").to_numpy()
    sess_us = (sessions["inference_geo"] == "us").fillna(False).to_numpy()
    span_speed = spans["speed"]
    fast = np.where(span_speed.isna().to_numpy(), sess_fast[sess],
                    (span_speed == "fast").fillna(False).to_numpy())
    at = spans["at_ms"].to_numpy()
    book = _book_index(books, at)

    # Every (book, model, fast, us) combination priced once in Python; rows just index it.
    n_models = len(models)
    combos = [_pricing(b, books[b], models[m], bool(f), bool(u), ttl)
              for b in range(len(books)) for m in range(n_models) for f in (0, 1) for u in (0, 1)]
    # Combinations with the same book, model and prices make the same line items.
    canon: dict[tuple, int] = {}
    pricing_id = np.array([canon.setdefault((c.book, c.model_id, c.prices), len(canon))
                           for c in combos], dtype=np.int64)
    rated_combo = np.array([c.model_id is not None for c in combos])
    price = np.array([c.prices for c in combos], dtype=np.int64)
    cw_class = np.array([c.cache_write_class for c in combos], dtype=np.int64)
    lc_thr = np.array([c.lc_threshold for c in combos], dtype=np.int64)
    lc_prem = np.array([c.lc_premium for c in combos], dtype=np.int64)

    combo = ((book * n_models + model_code[sess]) * 2 + fast.astype(np.int64)) * 2 \
        + sess_us[sess].astype(np.int64)
    rated = (book >= 0) & rated_combo[np.clip(combo, 0, None)]
    combo, sess, at = combo[rated], sess[rated], at[rated]
    qty = {c: spans[col].to_numpy()[rated] for c, col in (
        ("input", "input_tokens"), ("output", "output_tokens"),
        ("cache_write", "cache_write_tokens"), ("cache_read", "cache_read_tokens"))}
    day = at // DAY_MS
    day0 = int(day.min()) if len(day) else 0
    n_days = int(day.max()) - day0 + 1 if len(day) else 1
    n_pricing = int(pricing_id.max()) + 1
    pid = pricing_id[combo]
    pricing_cw = np.zeros(n_pricing, dtype=np.int64)
    pricing_cw[pricing_id] = cw_class

    def lines_of(mask: np.ndarray | None, unit: np.ndarray, tier: str) -> pd.DataFrame:
        pick = (lambda a: a) if mask is None else (lambda a: a[mask])
        c = pick(combo)
        key = (pick(sess).astype(np.int64) * n_days + (pick(day) - day0)) * n_pricing + pick(pid)
        wide = {"key": key}
        for name in ("input", "output", "cache_write", "cache_read"):
            q = pick(qty[name])
            cls = cw_class[c] if name == "cache_write" else TOKEN_CLASSES.index(name)
            wide[f"q_{name}"] = q
            wide[f"a_{name}"] = q * unit[c, cls]
        grouped = pd.DataFrame(wide).groupby("key", sort=False).sum()
        k = grouped.index.to_numpy()
        frames = []
        for name in ("input", "output", "cache_write", "cache_read"):
            q = grouped[f"q_{name}"].to_numpy()
            keep = q != 0
            # the cache-write class is the book's TTL, fixed per pricing id
            cls = (pricing_cw[k % n_pricing] if name == "cache_write"
                   else np.full(len(k), TOKEN_CLASSES.index(name), dtype=np.int64))
            frames.append(pd.DataFrame({
                "sess": k[keep] // n_pricing // n_days, "day": k[keep] // n_pricing % n_days
                + day0, "pricing": k[keep] % n_pricing, "tier": tier, "token_class": cls[keep],
                "quantity": q[keep], "pico": grouped[f"a_{name}"].to_numpy()[keep]}))
        return pd.concat(frames, ignore_index=True)

    standard = lines_of(None, price, "standard")
    prompt = qty["input"] + qty["cache_read"] + qty["cache_write"]
    thr = lc_thr[combo]
    long_ctx = (thr >= 0) & (prompt > thr)
    parts = [standard]
    if long_ctx.any():
        parts.append(lines_of(long_ctx, lc_prem, "long_context"))
    lines = pd.concat(parts, ignore_index=True)
    if len(lines) and lines["pico"].abs().astype(np.float64).sum() >= 2**62:
        raise OverflowError("token total too large for int64 pico-dollars")
    return lines, index.to_numpy()


def _pandas_runtime(status: pd.DataFrame, books: list[PriceBook],
                    as_of_ms: int) -> tuple[pd.DataFrame, np.ndarray, int]:
    status = status[status["at_ms"].to_numpy() <= as_of_ms]
    sess, uniques = pd.factorize(status["session_id"])
    at = status["at_ms"].to_numpy()
    st = pd.Categorical(status["status"], categories=["running", "idle", "rescheduling",
                                                      "terminated", "deleted"]).codes
    # order by (session, at_ms, event_id): one int64 key, event_id only to break ties
    t0 = int(at.min()) if len(at) else 0
    span_bits = max(1, int(at.max() - t0).bit_length()) if len(at) else 1
    if (len(uniques) - 1).bit_length() + span_bits > 62:
        raise OverflowError("session count x time span too large for one sort key")
    key = (sess.astype(np.int64) << span_bits) | (at - t0)
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    ties = np.flatnonzero(key_sorted[1:] == key_sorted[:-1])
    if len(ties):  # rare: equal timestamps in one session, broken by event id as the SQL does
        ev = status["event_id"].to_numpy()
        starts = np.unique(np.concatenate([ties, ties + 1]))
        for run in np.split(starts, np.flatnonzero(np.diff(starts) != 1) + 1):
            block = order[run]
            order[run] = block[np.argsort(ev[block], kind="stable")]
    sess, at, st = sess[order], at[order], st[order]

    # terminated/deleted are terminal: later events are kept in the store but not billed
    terminal = st >= 3
    first_term = np.full(len(uniques), np.iinfo(np.int64).max, dtype=np.int64)
    if terminal.any():
        ts, idx = np.unique(sess[terminal], return_index=True)
        first_term[ts] = at[terminal][idx]
    tms = first_term[sess]
    live = (at < tms) | ((at == tms) & terminal)
    sess, at, st, terminal = sess[live], at[live], st[live], terminal[live]

    same_prev = np.zeros(len(sess), dtype=bool)
    same_prev[1:] = sess[1:] == sess[:-1]
    prev = np.empty_like(st)
    prev[1:] = st[:-1]
    prev_term = np.zeros(len(sess), dtype=bool)
    prev_term[1:] = terminal[:-1]
    change = ~same_prev | ((prev != st) & ~(prev_term & terminal))
    sess, at, st, terminal = sess[change], at[change], st[change], terminal[change]

    has_next = np.zeros(len(sess), dtype=bool)
    has_next[:-1] = sess[:-1] == sess[1:]
    next_at = np.empty_like(at)
    next_at[:-1] = at[1:]
    end = np.where(has_next, next_at, np.where(terminal, at, as_of_ms))
    provisional = ~has_next & ~terminal
    running = (st == 0) & (end > at)
    provisional_sessions = len(np.unique(sess[provisional & (st == 0)]))
    sess, start, end = sess[running], at[running], end[running]

    # split at UTC days
    d0 = start // DAY_MS
    n = (end - 1) // DAY_MS - d0 + 1
    rep = np.repeat(np.arange(len(start)), n)
    offset = np.arange(len(rep)) - np.repeat(np.cumsum(n) - n, n)
    day = d0[rep] + offset
    p_start = np.maximum(start[rep], day * DAY_MS)
    p_end = np.minimum(end[rep], (day + 1) * DAY_MS)
    p_sess = sess[rep]

    frames = []
    for b, book in enumerate(books):
        lo = book.effective_from_ms
        hi = book.effective_to_ms
        s = np.maximum(p_start, lo)
        e = p_end if hi is None else np.minimum(p_end, hi)
        keep = e > s
        if not keep.any():
            continue
        ms = e[keep] - s[keep]
        frames.append(pd.DataFrame({
            "sess": p_sess[keep], "day": s[keep] // DAY_MS, "book": b, "quantity": ms,
            "atto": _runtime_atto(ms, book.runtime.usd_per_session_hour)}))
    pieces = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["sess", "day", "book", "quantity", "atto"])
    lines = pieces.groupby(["sess", "day", "book"], sort=False, as_index=False).sum()
    return lines, np.asarray(uniques, dtype=object), provisional_sessions


# --- rating: per-record Python loop -----------------------------------------------------------


@dataclass
class LoopRating:
    lines: dict[tuple, Decimal]   # (session, day, meter, class, tier, book) -> exact amount
    records: int                  # usage records + status events looked at

    @property
    def total(self) -> Decimal:
        return sum(self.lines.values(), Decimal(0))


def python_loop_rate(
    status_rows: Sequence[tuple],
    span_rows: Sequence[tuple],
    sessions: dict[str, tuple[str | None, str | None, str | None]],
    books: Sequence[PriceBook],
    as_of_ms: int,
) -> LoopRating:
    """One record at a time, Decimal money, a dict of rates: how cost calculators are written.

    status_rows: (session_id, status, at_ms, event_id); span_rows: (session_id, at_ms, input,
    output, cache_write, cache_read, speed); sessions: id -> (model_id, speed, inference_geo).
    """
    books = _books_in_order(books)
    million = Decimal(1_000_000)
    lines: dict[tuple, Decimal] = {}
    rate_cache: dict[tuple, tuple | None] = {}

    def book_at(at_ms: int) -> int | None:
        for i, b in enumerate(books):
            if b.covers(at_ms):
                return i
        return None

    def rates_for(b: int, model_raw: str | None, fast: bool, us: bool) -> tuple | None:
        key = (b, model_raw, fast, us)
        if key not in rate_cache:
            book = books[b]
            model = book.resolve(model_raw) if model_raw else None
            if model is None:
                rate_cache[key] = None
            else:
                rates = (model.fast if fast and book.modifiers.fast_mode_applies and model.fast
                         else model.standard)
                geo = (model.geo_multiplier if us and book.modifiers.data_residency_applies
                       else Decimal(1))
                cw = ("cache_write_1h" if book.modifiers.default_cache_write_ttl == "1h"
                      else "cache_write_5m")
                lc = model.long_context
                rate_cache[key] = (
                    rates.input * geo, rates.output * geo, rates.rate(cw) * geo,
                    rates.cache_read * geo, cw,
                    None if lc is None else (
                        lc.threshold_tokens, (lc.input - model.input) * geo,
                        (lc.output - model.output) * geo, (lc.rate(cw) - model.rate(cw)) * geo,
                        (lc.cache_read - model.cache_read) * geo))
        return rate_cache[key]

    def add(key: tuple, amount: Decimal) -> None:
        lines[key] = lines.get(key, Decimal(0)) + amount

    for sid, at_ms, inp, out, cw, cr, speed in span_rows:
        if at_ms > as_of_ms:
            continue
        b = book_at(at_ms)
        if b is None:
            continue  # unrated: no book in force
        model_raw, sess_speed, geo = sessions.get(sid, (None, None, None))
        r = rates_for(b, model_raw, (speed or sess_speed) == "fast", geo == "us")
        if r is None:
            continue  # unrated: unknown model
        day = at_ms // DAY_MS
        for cls, qty, price in (("input", inp, r[0]), ("output", out, r[1]), (r[4], cw, r[2]),
                                ("cache_read", cr, r[3])):
            if qty:
                add((sid, day, "tokens", cls, "standard", b), qty * price / million)
        lc = r[5]
        if lc is not None and inp + cr + cw > lc[0]:
            for cls, qty, price in (("input", inp, lc[1]), ("output", out, lc[2]),
                                    (r[4], cw, lc[3]), ("cache_read", cr, lc[4])):
                if qty:
                    add((sid, day, "tokens", cls, "long_context", b), qty * price / million)

    by_session: dict[str, list[tuple]] = {}
    for sid, status, at_ms, event_id in status_rows:
        if at_ms <= as_of_ms:
            by_session.setdefault(sid, []).append((at_ms, event_id, status))
    hour = Decimal(HOUR_MS)
    for sid, events in by_session.items():
        events.sort()
        terminal_at = min((at for at, _, s in events if s in TERMINAL), default=None)
        changes: list[tuple[int, str]] = []
        prev = None
        for at_ms, _, status in events:
            if terminal_at is not None and (at_ms > terminal_at or (
                    at_ms == terminal_at and status not in TERMINAL)):
                continue
            if status != prev and not (prev in TERMINAL and status in TERMINAL):
                changes.append((at_ms, status))
            prev = status
        for i, (start, status) in enumerate(changes):
            if status != "running":
                continue
            end = changes[i + 1][0] if i + 1 < len(changes) else as_of_ms
            while start < end:  # one piece per UTC day, then per book
                piece_end = min(end, (start // DAY_MS + 1) * DAY_MS)
                for b, book in enumerate(books):
                    s = max(start, book.effective_from_ms)
                    e = piece_end if book.effective_to_ms is None else min(
                        piece_end, book.effective_to_ms)
                    if e > s:
                        amount = (e - s) * book.runtime.usd_per_session_hour / hour
                        add((sid, s // DAY_MS, "runtime", None, "standard", b), amount)
                start = piece_end
    return LoopRating(lines, len(span_rows) + len(status_rows))


# --- rating: LiteLLM, the open-source per-request cost calculator ------------------------------


def _litellm_offline() -> None:
    """Make LiteLLM read its bundled price map: it fetches one over the network at import
    unless this is set, and it reads the variable only then, so set it before the import."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"


def litellm_available() -> str | None:
    """LiteLLM's version if it can be imported (offline, with its bundled price map)."""
    _litellm_offline()
    try:
        from importlib.metadata import version

        import litellm  # noqa: F401
        return version("litellm")
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None


def litellm_rate(span_rows: Sequence[tuple],
                 sessions: dict[str, tuple[str | None, str | None, str | None]]
                 ) -> tuple[float, int, int]:
    """Token cost per span with `litellm.cost_per_token`: (USD as float, priced, unknown).

    LiteLLM's prompt_tokens is the whole prompt (it subtracts the cached parts itself), so
    input + cache read + cache write is passed; it returns (prompt USD, completion USD) as
    floats. It has no price history, no runtime, and prices cache writes at its own TTL
    assumption, so its total is shown, not asserted. A model it cannot route raises; a model
    it routes by name pattern but has no price for costs 0.0 without a word: both count as
    unknown (probed once per model).
    """
    _litellm_offline()
    import litellm
    from litellm import cost_per_token

    litellm.suppress_debug_info = True  # else it prints a banner for every unknown model
    known: dict[str | None, bool] = {}
    total, priced, unknown = 0.0, 0, 0
    for sid, _at, inp, out, cw, cr, _speed in span_rows:
        model = sessions.get(sid, (None,))[0]
        if model not in known:
            try:
                known[model] = sum(cost_per_token(model=model, prompt_tokens=1_000_000,
                                                  completion_tokens=1_000_000)) > 0
            except Exception:  # noqa: BLE001 - LiteLLM raises for models it cannot route
                known[model] = False
        if not known[model]:
            unknown += 1
            continue
        prompt, completion = cost_per_token(
            model=model, prompt_tokens=inp + cr + cw, completion_tokens=out,
            cache_creation_input_tokens=cw, cache_read_input_tokens=cr)
        total += prompt + completion
        priced += 1
    return total, priced, unknown
