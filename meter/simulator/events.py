"""A day plan turned into events: per-kind columns, each event at its place in its session.

Each session's events are numbered 0, 1, 2, ... in emission order (= time order); that
number (``seq``) is the tail of the event id, so ids sort lexicographically in emission order.
In single-agent turns the order follows from the sizes of the parts (a request is its start,
its searches, its content, its end, and an error's events), so positions are prefix sums.
In multi-agent turns threads interleave with the coordinator: the turn's middle is sorted by
(time, thread, request, part) instead.
"""

from __future__ import annotations

import numpy as np

from meter.simulator._arrays import offsets, owner, rank, seg_cumsum, seg_sum
from meter.simulator.fleet import Fleet
from meter.simulator.timeline import (
    MAX_SEARCHES,
    MESSAGE,
    NO_CONTENT,
    NO_ERROR,
    REQUIRES_ACTION,
    RETRYING,
    TERMINAL,
    TERMINAL_ERROR,
    TOOL_ALLOW,
    TOOL_ASK,
    DayPlan,
)

# Canned texts: events carry content, but the content is not what this simulator is about.
USER_TEXTS = (
    "Please look into the failing build on main.",
    "Summarise the open incidents from last night.",
    "Refactor the billing module as discussed.",
    "Can you draft release notes for this week?",
    "Find out why the nightly export is slow.",
    "Review the pull request and leave comments.",
    "Write tests for the new parser.",
    "Update the dependencies and check nothing breaks.",
    "Continue.",
    "Yes, go ahead.",
    "Try a different approach.",
    "What did you find?",
)
AGENT_TEXTS = (
    "Done. The build is green again.",
    "Here is the summary you asked for.",
    "I made the change and the tests pass.",
    "I need one more detail before I continue.",
    "The root cause is a missing index; I added it.",
    "I left review comments on the pull request.",
    "All checks pass.",
    "I could not reproduce the problem; details below.",
    "Looking at the logs now.",
    "Running the test suite.",
    "Reading the relevant files.",
    "Applying the fix.",
)
TITLES = (
    "Fix flaky integration test", "Triage overnight alerts", "Refactor billing module",
    "Draft release notes", "Investigate slow export", "Review pull request",
    "Write parser tests", "Upgrade dependencies", "Answer customer ticket",
    "Summarise research papers", "Clean up feature flags", "Migrate cron jobs",
)
TOOL_INPUTS = {
    "bash": '{"command":"make test"}',
    "read": '{"file_path":"src/main.py"}',
    "write": '{"file_path":"notes.md","content":"Findings so far."}',
    "edit": '{"file_path":"src/main.py","old_string":"retries = 1","new_string":"retries = 3"}',
    "glob": '{"pattern":"**/*.py"}',
    "grep": '{"pattern":"TODO"}',
    "web_fetch": '{"url":"https://example.com/docs"}',
    "web_search": '{"query":"managed agents release notes"}',
}
# session.error: (type, message) by code; code 3 is the terminal one.
ERRORS = (
    ("model_overloaded_error", "The model is overloaded."),
    ("model_rate_limited_error", "The model request was rate limited."),
    ("model_request_failed_error", "The model request failed."),
    ("unknown_error", "An unexpected error occurred."),
)
RETRY_STATUS = ("", "retrying", "exhausted", "terminal")
STOP_REASONS = ("end_turn", "requires_action", "retries_exhausted", "budget_reached")

# Event kinds: the column sets a batch holds, and the API type of each.
EVENT_KINDS: dict[str, str] = {
    "user_message": "user.message",
    "tool_confirmation": "user.tool_confirmation",
    "running": "session.status_running",
    "rescheduled": "session.status_rescheduled",
    "idle": "session.status_idle",
    "terminated": "session.status_terminated",
    "error": "session.error",
    "request_start": "span.model_request_start",
    "request_end": "span.model_request_end",
    "tool_use": "agent.tool_use",
    "message": "agent.message",
    "usage": "session.usage",
    "thread_created": "session.thread_created",
    "thread_running": "session.thread_status_running",
    "thread_idle": "session.thread_status_idle",
}
SESSION_STATUS_KINDS = {"idle": 0, "running": 1, "rescheduled": 2, "terminated": 3}

# Parts of a request at the same millisecond: start, searches, content, end.
_PART_CONTENT = 1 + MAX_SEARCHES
_PART_END = 2 + MAX_SEARCHES


class _Collector:
    """Event columns by kind. Rows of multi-agent turns get their position later, from
    sorting the turn's middle by (time, tie)."""

    def __init__(self, sess_base: np.ndarray, turn_base: np.ndarray):
        self.sess_base, self.turn_base = sess_base, turn_base
        self.parts: dict[str, list[dict[str, np.ndarray]]] = {k: [] for k in EVENT_KINDS}
        self.pending: list[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray,
                                 np.ndarray]] = []

    def add(self, kind: str, sess: np.ndarray, pos, at: np.ndarray, *,
            sort: tuple | None = None, **cols) -> dict[str, np.ndarray]:
        """`sort` = (turn, tie, multi): rows where multi is true are positioned by sorting."""
        n = len(at)
        part = {"sess": np.asarray(sess, np.int64),
                "pos": np.array(np.broadcast_to(pos, (n,)), dtype=np.int64),
                "at_ms": np.asarray(at, np.int64),
                "thr": np.full(n, -1, dtype=np.int64)}
        for name, value in cols.items():
            part[name] = np.array(np.broadcast_to(value, (n,)))
        self.parts[kind].append(part)
        if sort is not None:
            turn, tie, multi = sort
            rows = np.flatnonzero(multi)
            if rows.size:
                tie = np.broadcast_to(np.asarray(tie, np.int64), (n,))
                self.pending.append((part, rows, np.asarray(turn)[rows], part["at_ms"][rows],
                                     tie[rows]))
        return part

    def resolve(self) -> None:
        if not self.pending:
            return
        turn = np.concatenate([p[2] for p in self.pending])
        at = np.concatenate([p[3] for p in self.pending])
        tie = np.concatenate([p[4] for p in self.pending])
        order = np.lexsort((tie, at, turn))
        sorted_turn = turn[order]
        place = np.empty(len(order), dtype=np.int64)
        place[order] = np.arange(len(order)) - np.searchsorted(sorted_turn, sorted_turn)
        pos = self.turn_base[turn] + 2 + place
        offset = 0
        for part, rows, *_ in self.pending:
            part["pos"][rows] = pos[offset: offset + len(rows)]
            offset += len(rows)
        self.pending = []

    def finish(self, sess_no: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Columns per kind, sorted by (session, seq); positions become per-session seqs."""
        uid_pos = None
        if self.parts["request_start"]:
            uid = np.concatenate([p["uid"] for p in self.parts["request_start"]])
            pos = np.concatenate([p["pos"] for p in self.parts["request_start"]])
            uid_pos = np.empty(int(uid.max()) + 1, dtype=np.int64)
            uid_pos[uid] = pos
        out: dict[str, dict[str, np.ndarray]] = {}
        for kind, parts in self.parts.items():
            if not parts:
                continue
            cols = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
            local = cols.pop("sess")
            base = self.sess_base[local]
            cols["seq"] = cols.pop("pos") - base
            if kind == "request_end":
                # Every request_end is added together with its request_start (same uid).
                assert uid_pos is not None
                cols["start_seq"] = uid_pos[cols["uid"]] - base
            cols.pop("uid", None)
            cols["sess"] = sess_no[local]
            order = np.argsort((local << 27) + cols["seq"], kind="stable")  # seq < 10**8
            out[kind] = {name: v[order] for name, v in cols.items()}
        return out


def _tie(thread, j, part) -> np.ndarray:
    return ((np.asarray(thread, np.int64) + 1) << 40) | (np.asarray(j, np.int64) << 16) \
        | np.asarray(part, np.int64)


def emit(plan: DayPlan, fleet: Fleet, rng: np.random.Generator, n_user_texts: int
         ) -> dict[str, dict[str, np.ndarray]]:
    """All events of a day plan, as columns per kind (see EVENT_KINDS)."""
    S, T, R, H, Q = plan.S, plan.T, plan.R, plan.H, plan.Q
    n_s, n_t = len(S.sess), len(T.sess)
    n_turns, k = plan.n_turns, plan.k

    # Sizes: a turn is head (user message, running) + requests + threads + tail (usage,
    # idle or terminated); a session is its turns plus the archive's terminated event.
    has_content = (R.content != NO_CONTENT).astype(np.int64)
    err_events = np.select([R.etype == RETRYING, R.etype != NO_ERROR], [3, 1], 0)
    r_size = 2 + R.searches + has_content + err_events
    turn_size = 4 + seg_sum(r_size, R.turn, n_t)
    if H is not None:
        assert Q is not None  # a plan with threads has their requests (timeline.plan_day)
        q_size = 3 + Q.searches
        h_size = 3 + seg_sum(q_size, Q.thread, len(H.turn))
        turn_size = turn_size + seg_sum(h_size, H.turn, n_t)
    archived = S.archived >= 0
    sess_size = seg_sum(turn_size, T.sess, n_s) + archived
    sess_base = offsets(sess_size)
    turn_base = sess_base[T.sess] + seg_cumsum(turn_size, n_turns) - turn_size
    out = _Collector(sess_base, turn_base)

    # Heads: the user's message (or the confirmation the previous turn asked for), running.
    confirm = np.zeros(n_t, dtype=bool)
    confirm[1:] = (T.stop[:-1] == REQUIRES_ACTION) & (T.ix[1:] > 0)
    msg = np.flatnonzero(~confirm)
    out.add("user_message", T.sess[msg], turn_base[msg], T.a[msg] - 1,
            text=rng.integers(0, n_user_texts, n_t)[msg])
    out.add("running", T.sess, turn_base + 1, T.a)

    # Primary requests. In single-agent turns: start, searches, content, end, error events.
    r_sess = T.sess[R.turn]
    multi = T.multi[R.turn]
    s_at = T.a[R.turn] + R.start + R.shift
    e_at = T.a[R.turn] + R.end + R.shift
    base = turn_base[R.turn] + 2 + seg_cumsum(r_size, k) - r_size
    p_content = base + 1 + R.searches
    p_end = p_content + has_content
    uid = np.arange(len(R.turn), dtype=np.int64)
    out.add("request_start", r_sess, base, s_at, uid=uid,
            sort=(R.turn, _tie(-1, R.j, 0), multi))
    so, sr = owner(R.searches), rank(R.searches)
    dur = (e_at - s_at)[so]
    at = s_at[so] + 1 + (sr * np.maximum(dur - 2, 0)) // np.maximum(R.searches[so], 1)
    out.add("tool_use", r_sess[so], base[so] + 1 + sr, at, name=fleet.search_tool, ask=False,
            sort=(R.turn[so], _tie(-1, R.j[so], 1 + sr), multi[so]))
    tr = np.flatnonzero((R.content == TOOL_ALLOW) | (R.content == TOOL_ASK))
    tool_part = out.add("tool_use", r_sess[tr], p_content[tr], e_at[tr], name=R.tool[tr],
                        ask=R.content[tr] == TOOL_ASK,
                        sort=(R.turn[tr], _tie(-1, R.j[tr], _PART_CONTENT), multi[tr]))
    mr = np.flatnonzero(R.content == MESSAGE)
    out.add("message", r_sess[mr], p_content[mr], e_at[mr], text=R.text[mr],
            sort=(R.turn[mr], _tie(-1, R.j[mr], _PART_CONTENT), multi[mr]))
    out.add("request_end", r_sess, p_end, e_at, uid=uid, is_error=R.etype != NO_ERROR,
            fast=R.fast, input=R.input, output=R.output, cache_write=R.cw5 + R.cw1h,
            cache_read=R.cache_read, sort=(R.turn, _tie(-1, R.j, _PART_END), multi))
    # A failed request is followed by session.error; a retried one by rescheduling and
    # running again; exhausted and terminal errors end the turn (see the tails below).
    er = np.flatnonzero(R.etype != NO_ERROR)
    kind_of_error = np.where(R.etype[er] == TERMINAL_ERROR, 3, rng.integers(0, 3, len(er)))
    out.add("error", r_sess[er], p_end[er] + 1, e_at[er], error=kind_of_error,
            retry=R.etype[er])
    rs = np.flatnonzero(R.etype == RETRYING)
    out.add("rescheduled", r_sess[rs], p_end[rs] + 2, e_at[rs] + 1)
    out.add("running", r_sess[rs], p_end[rs] + 3, e_at[rs] + 1 + R.gap[rs])

    if H is not None:
        _emit_threads(out, plan, fleet, turn_base, uid_base=len(R.turn))
    out.resolve()

    # The requires_action idle names the tool call it waits for; the next turn answers it.
    ask_seq = np.full(n_t, -1, dtype=np.int64)
    ask_rows = np.flatnonzero(tool_part["ask"])
    ask_seq[R.turn[tr[ask_rows]]] = (tool_part["pos"][ask_rows]
                                     - sess_base[tool_part["sess"][ask_rows]])
    conf = np.flatnonzero(confirm)
    out.add("tool_confirmation", T.sess[conf], turn_base[conf], T.a[conf] - 1,
            ref=ask_seq[conf - 1])

    # Tails: the usage snapshot right before idle (or terminated, after a terminal error).
    p_usage = turn_base + turn_size - 2
    out.add("usage", T.sess, p_usage, T.b, input=T.cum_input, output=T.cum_output,
            cache_read=T.cum_cache_read, cw5=T.cum_cw5, cw1h=T.cum_cw1h,
            searches=T.cum_searches, active_ms=T.cum_active, cents=T.cum_cents,
            budget=S.budget[T.sess])
    term = T.stop == TERMINAL
    it = np.flatnonzero(~term)
    out.add("idle", T.sess[it], p_usage[it] + 1, T.b[it], stop=T.stop[it],
            ref=np.where(T.stop[it] == REQUIRES_ACTION, ask_seq[it], -1))
    tt = np.flatnonzero(term)
    out.add("terminated", T.sess[tt], p_usage[tt] + 1, T.b[tt])
    arch = np.flatnonzero(archived)
    out.add("terminated", arch, sess_base[arch] + sess_size[arch] - 1, S.archived[arch])
    return out.finish(S.sess)


def _emit_threads(out: _Collector, plan: DayPlan, fleet: Fleet, turn_base: np.ndarray,
                  uid_base: int) -> None:
    T, H, Q = plan.T, plan.H, plan.Q
    # Called only for plans with threads, and those always have the threads' requests.
    assert H is not None and Q is not None
    every = np.ones(len(H.turn), dtype=bool)
    h_sess = T.sess[H.turn]
    x = T.a[H.turn] + H.x
    y = T.a[H.turn] + H.y
    name = fleet.roster_name[H.member]
    out.add("thread_created", h_sess, -1, x, thr=H.no, name=name,
            model=fleet.roster_model[H.member], sort=(H.turn, _tie(H.no, 0, 0), every))
    out.add("thread_running", h_sess, -1, x, thr=H.no, name=name,
            sort=(H.turn, _tie(H.no, 0, 1), every))
    out.add("thread_idle", h_sess, -1, y, thr=H.no, name=name,
            sort=(H.turn, _tie(H.no, 1 << 20, 0), every))
    q_sess = T.sess[Q.turn]
    q_all = np.ones(len(Q.turn), dtype=bool)
    uid = uid_base + np.arange(len(Q.turn), dtype=np.int64)
    out.add("request_start", q_sess, -1, Q.start, thr=Q.no, uid=uid,
            sort=(Q.turn, _tie(Q.no, Q.j, 0), q_all))
    so, sr = owner(Q.searches), rank(Q.searches)
    dur = (Q.end - Q.start)[so]
    at = Q.start[so] + 1 + (sr * np.maximum(dur - 2, 0)) // np.maximum(Q.searches[so], 1)
    out.add("tool_use", q_sess[so], -1, at, thr=Q.no[so], name=fleet.search_tool, ask=False,
            sort=(Q.turn[so], _tie(Q.no[so], Q.j[so], 1 + sr), q_all[so]))
    tr = np.flatnonzero(Q.content == TOOL_ALLOW)
    out.add("tool_use", q_sess[tr], -1, Q.end[tr], thr=Q.no[tr], name=Q.tool[tr], ask=False,
            sort=(Q.turn[tr], _tie(Q.no[tr], Q.j[tr], _PART_CONTENT), q_all[tr]))
    mr = np.flatnonzero(Q.content == MESSAGE)
    out.add("message", q_sess[mr], -1, Q.end[mr], thr=Q.no[mr], text=Q.text[mr],
            sort=(Q.turn[mr], _tie(Q.no[mr], Q.j[mr], _PART_CONTENT), q_all[mr]))
    out.add("request_end", q_sess, -1, Q.end, thr=Q.no, uid=uid, is_error=False, fast=False,
            input=Q.input, output=Q.output, cache_write=Q.cw5 + Q.cw1h,
            cache_read=Q.cache_read, sort=(Q.turn, _tie(Q.no, Q.j, _PART_END), q_all))
