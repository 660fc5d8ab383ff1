"""What happens in a day's sessions: turns, model requests, threads, times and costs.

A session is a run of *turns*: a running span (the agent working) then an idle gap (waiting
for the user). A turn holds model requests alternating with tool work, laid out on the
millisecond grid. Transient errors insert a rescheduling gap (not billed) and retry; an
exhausted retry ends the turn (``retries_exhausted``); a terminal error ends the session.
Coordinators of multi-agent sessions spawn threads that run concurrently inside the turn,
which lasts until the last thread is done. Budgets are checked before each request.

Times inside a turn are first offsets from its start; the offsets of requests before the
rescheduling shift are running time, which is what budgets and ``active_seconds`` need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meter.simulator._arrays import (
    beta_mean,
    first_flagged,
    layout,
    lognormal_ms,
    offsets,
    owner,
    push_apart,
    rank,
    seg_cumsum,
    seg_sum,
)
from meter.simulator.fleet import Fleet
from meter.simulator.rates import CompiledRates

MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000
THREAD_MARGIN_MS = 5
MAX_TURNS = 500
MAX_SEARCHES = 50
MAX_THREADS_PER_TURN = 25
MAX_THREADS_PER_SESSION = 9999
TOKEN_COLUMNS = ("input", "output", "cache_read", "cw5", "cw1h", "searches")

# Turn stop codes: the idle event's stop_reason, or a terminal error (terminated).
END_TURN, REQUIRES_ACTION, RETRIES_EXHAUSTED, BUDGET_REACHED, TERMINAL = range(5)
# Request error codes.
NO_ERROR, RETRYING, EXHAUSTED, TERMINAL_ERROR = range(4)
# What ends a model request.
NO_CONTENT, TOOL_ALLOW, TOOL_ASK, MESSAGE = range(4)
# Session status codes.
IDLE, RUNNING, RESCHEDULING, TERMINATED = range(4)


class Cols(dict):
    """Named columns of equal length; ``take`` selects rows of all of them at once."""

    def take(self, rows: np.ndarray) -> Cols:
        return Cols({name: values[rows] for name, values in self.items()})

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class DayPlan:
    """Sessions (S), turns (T), primary requests (R), threads (H) and thread requests (Q)."""

    S: Cols
    T: Cols
    R: Cols
    H: Cols | None
    Q: Cols | None
    n_turns: np.ndarray
    k: np.ndarray


def _tokens(fleet: Fleet, rng: np.random.Generator, agent: np.ndarray,
            failed: np.ndarray) -> dict[str, np.ndarray]:
    """Per request: the five disjoint token classes and the web searches.

    The prompt (all input) is lognormal; a Beta-distributed share of it is read from the
    cache (mean: the cache hit rate); of the rest, a fixed share is written to the cache
    (5 min or, for some requests, 1 h TTL) and the remainder is plain input.
    """
    b = fleet.b
    n = len(agent)
    prompt = np.clip(np.rint(rng.lognormal(np.log(b["prompt_med"][agent]),
                                           b["prompt_sig"][agent])), 200, 900_000)
    read = np.floor(prompt * beta_mean(rng, b["hit"][agent]))
    rest = prompt - read
    write = np.floor(rest * b["write_share"][agent])
    out = np.clip(np.rint(rng.lognormal(np.log(b["out_med"][agent]), b["out_sig"][agent])),
                  1, 64_000)
    one_hour = rng.random(n) < b["ttl_1h"][agent]
    searches = np.where(fleet.agent_search[agent],
                        np.minimum(rng.poisson(b["searches"][agent]), MAX_SEARCHES), 0)

    def billed(v: np.ndarray) -> np.ndarray:
        return np.where(failed, 0, v).astype(np.int64)

    write_i = billed(write)
    return {
        "input": billed(rest - write), "output": billed(out), "cache_read": billed(read),
        "cw5": np.where(one_hour, 0, write_i), "cw1h": np.where(one_hour, write_i, 0),
        "searches": billed(searches),
    }


def _client_tool(fleet: Fleet, rng: np.random.Generator, agent: np.ndarray) -> np.ndarray:
    n = np.maximum(fleet.agent_ntools[agent], 1)
    pick = np.minimum((rng.random(len(agent)) * n).astype(np.int64), n - 1)
    return fleet.agent_tools[agent, pick]


def plan_day(fleet: Fleet, rates: CompiledRates, rng: np.random.Generator, *,
             sess_no: np.ndarray, created: np.ndarray, agent: np.ndarray,
             project: np.ndarray, runaway_ms: np.ndarray, n_titles: int,
             n_texts: int) -> DayPlan:
    b = fleet.b
    n_s = len(sess_no)
    model, version = fleet.model_at(agent, created)
    runaway = runaway_ms > 0
    multi = (fleet.agent_roster_n[agent] > 0) & ~runaway
    budget = (rng.random(n_s) < fleet.agent_budget_share[agent]) & ~multi & ~runaway
    long_ = (rng.random(n_s) < b["long_share"][agent]) & ~runaway
    n_turns = np.where(runaway, 1, np.minimum(rng.geometric(1.0 / b["turns_mean"][agent]),
                                              MAX_TURNS)).astype(np.int64)
    S = Cols(sess=sess_no, created=created, agent=agent, project=project, model=model,
             version=version, budget=np.where(budget, fleet.agent_budget_cents[agent], -1),
             startup=rng.integers(200, 2000, n_s), title=rng.integers(0, n_titles, n_s),
             runaway=runaway)

    # Turns: a running span, then an idle gap; the stop the turn means to end with.
    T = Cols(sess=owner(n_turns), ix=rank(n_turns))
    n_t = len(T.sess)
    ta = T["agent"] = agent[T.sess]
    is_long = long_[T.sess] & (T.ix == 0)  # a long session opens with one long autonomous run
    run = lognormal_ms(rng, np.where(is_long, b["long_med"][ta], b["run_med"][ta]),
                       np.where(is_long, b["long_sig"][ta], b["run_sig"][ta]),
                       1500, 12 * MS_PER_HOUR)
    run = np.where(runaway[T.sess], runaway_ms[T.sess], run)
    T["idle"] = lognormal_ms(rng, b["idle_med"][ta], b["idle_sig"][ta], 1000, 3 * MS_PER_DAY)
    ra = (rng.random(n_t) < b["ra_share"][ta]) & (fleet.agent_ntools[ta] > 0)
    T["multi"] = multi[T.sess]
    k = 1 + rng.poisson(run / 1000.0 / b["spr"][ta])
    k = np.minimum(k, (run - 6) // 4)
    k = np.where(T.multi, np.maximum(k, 2), k).astype(np.int64)
    n_thr = np.where(T.multi, np.minimum(rng.poisson(b["threads"][ta]), MAX_THREADS_PER_TURN), 0)
    n_thr = np.where(seg_cumsum(n_thr, n_turns) > MAX_THREADS_PER_SESSION, 0, n_thr)

    # Primary requests (the session's own agent, or a coordinator) and their errors.
    R = Cols(turn=owner(k), j=rank(k))
    n_r = len(R.turn)
    ra_ = R["agent"] = ta[R.turn]
    # Multi-agent turns and runaway sessions (which by definition keep going) never fail.
    err = (rng.random(n_r) < b["err"][ra_]) & ~T.multi[R.turn] & ~runaway[T.sess][R.turn]
    u = rng.random(n_r)
    etype = np.where(u < b["exh"][ra_], EXHAUSTED,
                     np.where(u < b["exh"][ra_] + b["term"][ra_], TERMINAL_ERROR, RETRYING))
    last = R.j == k[R.turn] - 1
    # A retry needs a request after it; a failing last request just succeeds.
    etype = np.where(err & ~((etype == RETRYING) & last), etype, NO_ERROR)
    R["etype"] = etype
    R["start"], R["end"] = layout(rng, run, k)
    R["gap"] = np.where(etype == RETRYING, lognormal_ms(rng, b["resched_med"][ra_],
                                                        b["resched_sig"][ra_], 1000, 600_000), 0)
    R["tool"] = _client_tool(fleet, rng, ra_)
    content = np.where(last, np.where(ra[R.turn], TOOL_ASK, MESSAGE),
                       np.where(fleet.agent_ntools[ra_] > 0, TOOL_ALLOW, MESSAGE))
    R["content"] = np.where(etype != NO_ERROR, NO_CONTENT, content)
    R["text"] = rng.integers(0, n_texts, n_r)
    R.update(_tokens(fleet, rng, ra_, etype != NO_ERROR))

    # Exhausted retries end their turn; terminal errors end the session.
    cut = (etype == EXHAUSTED) | (etype == TERMINAL_ERROR)
    fx = first_flagged(cut, R.turn, R.j, n_t, k)
    cut_turn = fx < k
    at_cut = offsets(k) + np.minimum(fx, k - 1)
    stop = np.where(ra & ~cut_turn, REQUIRES_ACTION, END_TURN)
    stop = np.where(cut_turn, np.where(etype[at_cut] == TERMINAL_ERROR, TERMINAL,
                                       RETRIES_EXHAUSTED), stop)
    first_term = first_flagged(stop == TERMINAL, T.sess, T.ix, n_s, n_turns)
    keep_t = T.ix <= first_term[T.sess]
    keep_r = (R.j <= fx[R.turn]) & keep_t[R.turn]

    # Rescheduling gaps shift what follows them; a cut turn ends 1 ms after its failure.
    R["shift"] = seg_cumsum(R.gap, k) - R.gap
    wall = run + seg_sum(R.gap, R.turn, n_t)
    wall = np.where(cut_turn, R.end[at_cut] + R.shift[at_cut] + 1, wall)

    H = _threads(fleet, rng, n_thr, R, k, ta, n_turns)
    if H is not None:
        # The coordinator's last request waits for its threads: the turn grows to fit.
        max_end = np.zeros(n_t, dtype=np.int64)
        np.maximum.at(max_end, H.turn, H.y)
        last_idx = offsets(k) + k - 1
        ext = np.where(n_thr > 0, np.maximum(0, max_end + THREAD_MARGIN_MS
                                             - R.start[last_idx]), 0)
        R.start[last_idx] += ext
        R.end[last_idx] += ext
        wall = wall + ext
    T.update(wall=wall, stop=stop, n_thr=n_thr)

    new_turn = np.cumsum(keep_t) - 1
    R = R.take(np.flatnonzero(keep_r))
    R["turn"] = new_turn[R.turn]
    T = T.take(np.flatnonzero(keep_t))
    if H is not None:
        H["turn"] = new_turn[H.turn]  # multi-agent turns are never cut
    n_turns = np.bincount(T.sess, minlength=n_s).astype(np.int64)
    k = np.bincount(R.turn, minlength=len(T.sess)).astype(np.int64)

    # Absolute times: each turn starts after the previous turn and its idle gap.
    step = T.wall + T.idle
    T["a"] = (S.created + S.startup)[T.sess] + seg_cumsum(step, n_turns) - step
    R["sess"] = T.sess[R.turn]
    R["model"] = model[R.sess]
    R["fast"] = fleet.agent_fast[R.agent]
    R["us"] = fleet.agent_us[R.agent]

    if budget.any():
        R, T, H, n_turns, k = _apply_budgets(rates, S, R, T, H, n_turns)

    n_t = len(T.sess)
    T["running"] = T.wall - seg_sum(R.gap, R.turn, n_t)
    T["b"] = T.a + T.wall

    # Endings: archived some time after the last turn (terminated), or left idle.
    last_t = offsets(n_turns) + n_turns - 1
    ends_terminal = T.stop[last_t] == TERMINAL
    archived = (rng.random(n_s) < b["archive"][agent]) & ~ends_terminal & ~runaway
    archive_at = T.b[last_t] + lognormal_ms(rng, b["archive_med"][agent], b["archive_sig"][agent],
                                            1000, 30 * MS_PER_DAY)
    S["archived"] = np.where(archived, archive_at, -1)
    S["status"] = np.where(ends_terminal | archived, TERMINATED, IDLE)
    S["updated"] = np.where(archived, archive_at, T.b[last_t])

    Q = _thread_requests(fleet, rng, H, T, n_texts) if H is not None else None
    _costs(fleet, rates, T, R, Q, n_turns)
    return DayPlan(S=S, T=T, R=R, H=H, Q=Q, n_turns=n_turns, k=k)


def _threads(fleet: Fleet, rng: np.random.Generator, n_thr: np.ndarray, R: Cols,
             k: np.ndarray, t_agent: np.ndarray, n_turns: np.ndarray) -> Cols | None:
    """Threads spawned by coordinators, as offsets in their turn: created and running at x,
    idle at y, between the coordinator's first and last requests."""
    n = int(n_thr.sum())
    if n == 0:
        return None
    H = Cols(turn=owner(n_thr))
    H["agent"] = t_agent[H.turn]
    size = fleet.agent_roster_n[H.agent]
    H["member"] = fleet.agent_roster_off[H.agent] + np.minimum(
        (rng.random(n) * size).astype(np.int64), size - 1)
    lo = R.end[offsets(k)][H.turn] + 2
    span = np.maximum(R.start[offsets(k) + k - 1][H.turn] - lo, 1)
    x = lo + (rng.random(n) * span).astype(np.int64)
    y = x + lognormal_ms(rng, fleet.b["thr_med"][H.agent], fleet.b["thr_sig"][H.agent], 1000,
                         6 * MS_PER_HOUR)
    # No two thread status events of a turn at the same millisecond.
    times = np.concatenate([x, y])
    group = np.concatenate([H.turn, H.turn])
    order = np.lexsort((np.tile(np.arange(n), 2), np.repeat([1, 0], n), times, group))
    times[order] = push_apart(times[order], group[order])
    H["x"], H["y"] = times[:n], times[n:]
    H["no"] = (seg_cumsum(n_thr, n_turns) - n_thr)[H.turn] + rank(n_thr)
    return H


def _thread_requests(fleet: Fleet, rng: np.random.Generator, H: Cols, T: Cols,
                     n_texts: int) -> Cols:
    """Each thread's own model requests inside [x + margin, y - margin], at its model."""
    length = H.y - H.x - 2 * (THREAD_MARGIN_MS - 1)
    kq = 1 + rng.poisson((H.y - H.x) / 1000.0 / fleet.b["spr"][H.agent])
    kq = np.maximum(np.minimum(kq, (length - 6) // 4), 1).astype(np.int64)
    Q = Cols(thread=owner(kq), j=rank(kq))
    s_off, e_off = layout(rng, length, kq)
    base = (T.a[H.turn] + H.x + THREAD_MARGIN_MS - 1)[Q.thread]
    Q["start"], Q["end"] = base + s_off, base + e_off
    Q["agent"] = H.agent[Q.thread]
    Q.update(_tokens(fleet, rng, Q.agent, np.zeros(len(Q.thread), dtype=bool)))
    Q["tool"] = _client_tool(fleet, rng, Q.agent)
    last = Q.j == kq[Q.thread] - 1
    Q["content"] = np.where(last | (fleet.agent_ntools[Q.agent] == 0), MESSAGE, TOOL_ALLOW)
    Q["text"] = rng.integers(0, n_texts, len(Q.thread))
    Q["model"] = fleet.roster_model[H.member[Q.thread]]
    Q["fast"] = np.zeros(len(Q.thread), dtype=bool)  # roster entries name a model only
    Q["us"] = fleet.agent_us[Q.agent]  # the session's inference_geo holds for all threads
    Q["turn"] = H.turn[Q.thread]
    Q["no"] = H.no[Q.thread]
    return Q


def _apply_budgets(rates: CompiledRates, S: Cols, R: Cols, T: Cols, H: Cols | None,
                   n_turns: np.ndarray):
    """Stop budgeted sessions at the first request whose check finds the cap reached.

    The check runs before each request on the unrounded cost so far (tokens, searches and
    running time); the request in flight when the cap is crossed still completes, so the
    final cost may overshoot by up to one request. The check uses the rate card in force
    when the turn started.
    """
    n_s, n_t = len(S.sess), len(T.sess)
    card = rates.card_index(T.a)[R.turn]
    cost = rates.request_units(R, R.model, R.fast, R.us, card) \
        + R.searches * rates.search_units[card]
    before = seg_cumsum(cost, np.bincount(R.sess, minlength=n_s)) - cost
    t_run = T.wall - seg_sum(R.gap, R.turn, n_t)
    running_before = (seg_cumsum(t_run, n_turns) - t_run)[R.turn] + R.start
    spent = before + running_before * rates.runtime_units_per_ms[card]
    over = (S.budget[R.sess] >= 0) & (spent >= S.budget[R.sess] * rates.units_per_cent)
    hit = np.flatnonzero(over)
    if hit.size == 0:
        return R, T, H, n_turns, np.bincount(R.turn, minlength=n_t).astype(np.int64)
    sessions, first = np.unique(R.sess[hit], return_index=True)
    star = hit[first]
    star_turn = R.turn[star]
    T.wall[star_turn] = R.start[star] + R.shift[star]
    T.stop[star_turn] = BUDGET_REACHED
    cut_r = np.full(n_s, 2**62, dtype=np.int64)
    cut_r[sessions] = star
    last_t = np.full(n_s, 2**62, dtype=np.int64)
    last_t[sessions] = star_turn
    keep_t = np.arange(n_t) <= last_t[T.sess]
    new_turn = np.cumsum(keep_t) - 1
    R = R.take(np.flatnonzero(np.arange(len(R.sess)) < cut_r[R.sess]))
    R["turn"] = new_turn[R.turn]
    T = T.take(np.flatnonzero(keep_t))
    if H is not None:
        H["turn"] = new_turn[H.turn]
    n_turns = np.bincount(T.sess, minlength=n_s).astype(np.int64)
    return R, T, H, n_turns, np.bincount(R.turn, minlength=len(T.sess)).astype(np.int64)


def _spans_ttl(rates: CompiledRates, R: Cols, card: np.ndarray, from_spans: np.ndarray) -> None:
    """Keep cache writes at the 5 min TTL where a rater can only see the span.

    A span reports cache writes without their TTL, so usage that must be priced per request
    (multi-model sessions; the long-context premium of a large prompt) is priced at the
    default TTL. The simulator writes such requests' cache at 5 min, so that ``list_cost``
    stays reproducible from the events; elsewhere the 1 h share of the profile applies.
    """
    prompt = R.input + R.cache_read + R.cw5 + R.cw1h
    fast = R.fast & rates.fast_ok[card, R.model]
    move = from_spans | ((prompt > rates.threshold[card, R.model]) & ~fast)
    R["cw5"] = R.cw5 + np.where(move, R.cw1h, 0)
    R["cw1h"] = np.where(move, 0, R.cw1h)


def _costs(fleet: Fleet, rates: CompiledRates, T: Cols, R: Cols, Q: Cols | None,
           n_turns: np.ndarray) -> None:
    """Per turn and cumulative per session: tokens, searches, running ms and cost units.

    Tokens and searches are priced at the card in force at the turn's usage snapshot (when
    they are reported), the requests of multi-agent turns at their own end (raters price
    those from spans); running time is split exactly where cards change.
    """
    n_t = len(T.sess)
    card = rates.card_index(T.b)
    multi = T.multi[R.turn]
    r_card = np.where(multi, rates.card_index(T.a[R.turn] + R.end + R.shift), card[R.turn])
    rates.require_priced(fleet.model_ids, R.model, r_card)
    _spans_ttl(rates, R, r_card, multi)
    units = seg_sum(rates.request_units(R, R.model, R.fast, R.us, r_card), R.turn, n_t)
    totals = {c: seg_sum(R[c], R.turn, n_t) for c in TOKEN_COLUMNS}
    if Q is not None:
        q_card = rates.card_index(Q.end)
        rates.require_priced(fleet.model_ids, Q.model, q_card)
        _spans_ttl(rates, Q, q_card, np.ones(len(Q.turn), dtype=bool))
        q_units = rates.request_units(Q, Q.model, Q.fast, Q.us, q_card)
        units = units + seg_sum(q_units, Q.turn, n_t)
        for c in TOKEN_COLUMNS:
            totals[c] = totals[c] + seg_sum(Q[c], Q.turn, n_t)
    units = units + totals["searches"] * rates.search_units[card]
    runtime = rates.runtime_units(T.a, T.b)
    gaps = np.flatnonzero(R.gap > 0)
    if gaps.size:
        g0 = T.a[R.turn[gaps]] + R.end[gaps] + R.shift[gaps] + 1
        runtime = runtime - seg_sum(rates.runtime_units(g0, g0 + R.gap[gaps]), R.turn[gaps], n_t)
    T["units"] = units + runtime
    for c in TOKEN_COLUMNS:
        T["cum_" + c] = seg_cumsum(totals[c], n_turns)
    T["cum_active"] = seg_cumsum(T.running, n_turns)
    T["cum_units"] = seg_cumsum(T.units, n_turns)
    T["cum_cents"] = rates.cents(T.cum_units)
