"""The ledger: rated charges kept in the store and brought up to date by rating what changed.

The store's `charges` and `unrated_usage` tables hold the rating of every session as of the
last rating run, and `rating_runs` records what that run covered: its as-of, the price books
it used (name, version, effective range and a digest of their content), the rating options,
and how far into the ingested data it saw (the highest ingest id, and how many rows carried
it). Charges are a function of one session's events, its record, the books and the as-of
(rating never mixes sessions), so a run only needs to rate again the sessions whose inputs
changed since the last one:

- sessions with events or a session record ingested since (ingest ids above the last run's);
- sessions with events between the old and the new as-of (what the as-of now includes or
  excludes);
- sessions open at the last run (`ledger_open`: their running time grows with the as-of),
  when the as-of moves;
- sessions with lines on the days of a price-book version added, removed or edited (every
  priced or unrated quantity has a line on its day, so these are all the usage it prices).

Those sessions' lines are deleted and rated again, in one transaction: the result is the full
rating's, to the money unit (tests/pricing/test_ledger.py checks it on random histories).
Other option values, a store rated before the ledger, or a change touching most sessions
rate everything (`full`).

A read-only reader cannot write the ledger: it rates the stale sessions on its connection and
reads the ledger with their lines replaced (`overlay`), at the same cost.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb

from meter.intervals import build_session_time, gather_status_lists, time_rows_sql
from meter.store import current_catalog, has_stored_table
from meter.vocabulary import DAY_MS, Period, as_date, day_start, iso_ms
from pricing.pricebook import PriceBook
from pricing.rating import RatingOptions, books_in_order, drop_relation, load_books, rate

__all__ = ["CHARGES_ORDER", "BookPrint", "RatingRun", "book_prints", "bring_up_to_date",
           "first_event_ms", "last_run", "overlay", "session_periods_sql",
           "session_periods_stored", "session_time_stored", "stale_periods"]

# The event tables rating reads: while stale sessions are rated, each is shadowed by a temp
# table holding only their rows.
_RATED_TABLES = ("status_events", "model_requests", "usage_snapshots", "threads", "sessions")

# The order lines are written in: by day, so a period's lines (months being runs of days) share
# row groups, and the row groups' min/max let a read of one period skip the rest (every
# dashboard page reads one period), as they let an incremental run's delete of its sessions'
# lines from a day on. (A session's lines within the period would need session_id in the sort
# key: that string key made a full run's write 0.2-0.3 s slower, of ~1.2 s.) Incremental runs
# append theirs in the same order, at the end.
CHARGES_ORDER = "day"

# A row per session and period it has lines in, as the ledger keeps it (`session_periods`): its
# spend, and its time that month (meter.intervals.TIME_COLUMNS) from the time by month built
# in the same run, so that a page of one period reads a row per session instead of grouping
# the period's lines and joining their time. (A session's agent and tags are the same on all
# its lines: its record's at rating.)
def session_periods_sql(lines: str, months: str, tails: str) -> str:
    """SQL of `session_periods`' rows from charge lines `lines` and the time by month tables
    `months`, `tails` of the same sessions, in the order they are stored (period, session)."""
    spent = ("SELECT period, session_id, agent_id, tags, sum(amount_units) AS amount_units, "
             "epoch_ms(date_trunc('month', min(day))) AS month_start_ms "
             f"FROM {lines} GROUP BY ALL")
    rows = time_rows_sql(months, tails, spent, "s.month_start_ms")
    return f"SELECT * EXCLUDE (month_start_ms) FROM ({rows}) ORDER BY period, session_id"

_YEAR_1000_MS = -30_610_224_000_000  # 1000-01-01T00:00:00Z

# More stale sessions than this share of all sessions: rating everything is cheaper than
# filtering every table to them.
FULL_SHARE = 0.5


@dataclass(frozen=True)
class BookPrint:
    """What a rating knew of one price book: enough to tell an added, removed or edited one."""

    name: str
    version: str
    from_ms: int
    to_ms: int | None
    digest: str

    def days(self) -> tuple[int, int | None]:
        """The UTC days (epoch ms of midnight) the book can price, first and last."""
        first = self.from_ms - self.from_ms % DAY_MS
        last = None if self.to_ms is None else (self.to_ms - 1) - (self.to_ms - 1) % DAY_MS
        return first, last


def book_prints(books: Sequence[PriceBook]) -> tuple[BookPrint, ...]:
    return tuple(sorted(
        (BookPrint(b.name, b.version, b.effective_from_ms, b.effective_to_ms,
                   hashlib.sha256(b.model_dump_json().encode()).hexdigest()[:16])
         for b in books), key=lambda p: (p.from_ms, p.name, p.version, p.digest)))


def _options_key(options: RatingOptions) -> str:
    return json.dumps({"span_cache_ttl": options.span_cache_ttl}, sort_keys=True)


@dataclass(frozen=True)
class RatingRun:
    """One rating run: what it covered, how it rated (`full` or `incremental`) and how much."""

    as_of_ms: int
    kind: str
    sessions_rated: int
    charge_lines: int  # lines the ledger holds after the run
    unrated_lines: int
    books: tuple[str, ...]  # name@version of each book loaded
    elapsed_ms: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # stale sessions by cause
    notices: tuple[str, ...] = ()  # e.g. a book change that affects a closed period
    stored: bool = True  # written to the store (else only on the connection)

    @property
    def as_of(self) -> str:
        return iso_ms(self.as_of_ms)


@dataclass(frozen=True)
class _Covered:
    """What the last stored run covered (a row of `rating_runs`)."""

    as_of_ms: int
    through_ingest: int
    through_count: int
    prints: tuple[BookPrint, ...]
    options: str


def last_run(con: duckdb.DuckDBPyConnection, db: str | None = None) -> _Covered | None:
    """The last stored run the ledger can continue from (None: rate everything); `db`: the
    store's catalog (`current_catalog`), if known."""
    if not has_stored_table(con, "ledger_open"):
        return None
    rows = con.execute(f"""
        SELECT as_of_ms, through_ingest, through_count, prints, options
        FROM {db or current_catalog(con)}.main.rating_runs WHERE prints IS NOT NULL
        ORDER BY rated_ms DESC, rowid DESC LIMIT 1""").fetchall()
    if not rows:
        return None
    as_of_ms, through, count, prints, options = rows[0]
    return _Covered(as_of_ms=as_of_ms, through_ingest=through, through_count=count,
                    prints=tuple(BookPrint(**p) for p in json.loads(prints)), options=options)


def session_time_stored(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store's time by month (`session_months`, `session_tails`) is the last
    rating run's: the tables exist and that run was a ledger run since they do. A store
    upgraded to schema 6 has them empty (and its runs' prints cleared) until its next run."""
    return _kept_by_last_run(con, "session_months")


def session_periods_stored(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store's `session_periods` is the last rating run's (as
    `session_time_stored`; a store upgraded to schema 7 has it empty until its next run)."""
    return _kept_by_last_run(con, "session_periods")


def _kept_by_last_run(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether stored table `table` exists and the last rating run was a ledger run since it
    does (upgrading the schema to it cleared the runs' prints)."""
    if not has_stored_table(con, table):
        return False
    rows = con.execute(f"SELECT prints IS NOT NULL FROM {current_catalog(con)}.main.rating_runs "
                       "ORDER BY rated_ms DESC, rowid DESC LIMIT 1").fetchall()
    return bool(rows and rows[0][0])


def _watermark(con: duckdb.DuckDBPyConnection, db: str,
               last: _Covered | None) -> tuple[int, int, int]:
    """The highest ingest id in the event and session tables of store `db`, how many rows
    carry it, and how many carry the ingest id the `last` run went through (0 without one).

    Taken before a run reads anything: what is stored after it is new to the next run (a
    row of an ingest that went on during the run is rated again then, never missed). The
    rows of the ids after the last run's are few (the tables are stored in ingest order:
    their zone maps skip the rest) and grouped by id; the last run's own id is only counted
    (`_rows_carrying`)."""
    if last is not None:
        t = last.through_ingest
        counts = dict(con.execute(f"""
            SELECT ingest_id, count(*) FROM (
                SELECT ingest_id FROM {db}.main.events WHERE ingest_id > $t UNION ALL
                SELECT ingest_id FROM {db}.main.sessions WHERE ingest_id > $t)
            GROUP BY ingest_id
            UNION ALL SELECT $t, {_rows_carrying(db, "$t")}""", {"t": t}).fetchall())
        stored = [i for i, n in counts.items() if n]
        if stored:
            top = max(stored)
            return int(top), int(counts[top]), int(counts[t])
    top = con.execute(f"""
        SELECT greatest(coalesce((SELECT max(ingest_id) FROM {db}.main.events), 0),
                        coalesce((SELECT max(ingest_id) FROM {db}.main.sessions), 0))
    """).fetchall()[0][0]
    carrying = con.execute(f"SELECT {_rows_carrying(db, '$t')}", {"t": top}).fetchall()[0][0]
    return int(top), int(carrying), 0


def _rows_carrying(db: str, ingest_id: str) -> str:
    """SQL: how many event and session rows of store `db` carry ingest id `ingest_id` (a
    parameter), counted table by table (a filtered count reads a bulk load's rows at ~2 ms
    per 10M; grouping them costs 20x that)."""
    return (f"(SELECT count(*) FROM {db}.main.events WHERE ingest_id = {ingest_id}) "
            f"+ (SELECT count(*) FROM {db}.main.sessions WHERE ingest_id = {ingest_id})")


def _changed_books(old: Sequence[BookPrint], new: Sequence[BookPrint]) -> list[BookPrint]:
    return sorted(set(old) ^ set(new), key=lambda p: (p.from_ms, p.name, p.digest))


def _find_stale(con: duckdb.DuckDBPyConnection, db: str, covered: _Covered, as_of_ms: int,
                prints: Sequence[BookPrint], carried: int) -> tuple[dict[str, int], int, int]:
    """Fill temp table `ledger_stale` with the sessions of store `db` whose lines may differ
    from the ledger's when rated as of `as_of_ms` with books `prints`; the count per cause,
    of them all, and of the store's sessions. `carried`: how many rows carry the last run's
    ingest id now (`_watermark`)."""
    # the last run's ingest went on after it (one ingest spanning the run): take its rows too
    continued = carried != covered.through_count
    newer = ">=" if continued else ">"
    lo, hi = sorted((covered.as_of_ms, as_of_ms))
    sources = {
        "ingested": f"SELECT session_id FROM {db}.main.events "
                    f"WHERE ingest_id {newer} {covered.through_ingest} "
                    f"UNION SELECT session_id FROM {db}.main.sessions "
                    f"WHERE ingest_id {newer} {covered.through_ingest}",
        "as_of": f"SELECT session_id FROM {db}.main.events WHERE at_ms > {lo} AND at_ms <= {hi}",
        # (open sessions change with the as-of only)
        "open": f"SELECT session_id FROM {db}.main.ledger_open"
                + ("" if as_of_ms != covered.as_of_ms else " WHERE false"),
    }
    days = []
    for book in _changed_books(covered.prints, prints):
        first, last = book.days()
        days.append(f"(day >= {as_date(str(first))}"
                    + (f" AND day <= {as_date(str(last))})" if last is not None else ")"))
    if days:
        where = " OR ".join(days)
        sources["books"] = (f"SELECT session_id FROM {db}.main.charges WHERE {where} "
                            f"UNION SELECT session_id FROM {db}.main.unrated_usage WHERE {where}")
    # one row per session, with a bit per cause that makes it stale
    con.execute("CREATE OR REPLACE TEMP TABLE ledger_stale AS "
                "SELECT session_id, bit_or(cause) AS causes FROM ("
                + " UNION ALL ".join(f"SELECT session_id, {1 << bit} AS cause FROM ({sql})"
                                     for bit, sql in enumerate(sources.values()))
                + ") GROUP BY session_id")
    counts = con.execute(
        "SELECT " + ", ".join(f"count(*) FILTER (causes & {1 << bit} <> 0)"
                              for bit in range(len(sources)))
        + f", count(*), (SELECT count(*) FROM {db}.main.sessions) FROM ledger_stale"
    ).fetchall()[0]
    *by_cause, stale, sessions = (int(n) for n in counts)
    return dict(zip(sources, by_cause, strict=True)), stale, sessions


def stale_periods(covered: _Covered | None,
                  prints: Sequence[BookPrint]) -> list[tuple[int, int | None]]:
    """The day ranges a change of books since the last run touches (see `bring_up_to_date`)."""
    if covered is None:
        return []
    return [b.days() for b in _changed_books(covered.prints, prints)]


def _rate_stale(con: duckdb.DuckDBPyConnection, db: str, books: Sequence[PriceBook],
                options: RatingOptions, since: int | None, *, time: bool = False) -> None:
    """Rate the sessions of `ledger_stale` (of store `db`) only: each event table is shadowed,
    while rating, by a temp table of their rows (the rating reads tables by name), read from
    `since` (their earliest event, see `first_event_ms`; None: all). With `time`, their time
    by month too (temp tables `time_months`, `time_tails`)."""
    recent = "" if since is None else f" AND at_ms >= {since}"
    # (copied once: the rating reads some of them several times)
    for table in _RATED_TABLES:
        where = recent if table != "sessions" else ""
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM {db}.main.{table} "
                    "WHERE session_id IN (SELECT session_id FROM temp.main.ledger_stale)"
                    + where)
    try:
        if time:
            _rate_and_time(con, books, options)
        else:
            rate(con, books, options)
    finally:
        for table in _RATED_TABLES:
            con.execute(f"DROP TABLE IF EXISTS temp.main.{table}")


def _rate_and_time(con: duckdb.DuckDBPyConnection, books: Sequence[PriceBook],
                   options: RatingOptions) -> None:
    """Rate, and build the time by month (temp tables `time_months`, `time_tails`), from one
    gathering of the status events."""
    lists = gather_status_lists(con, options.as_of_ms, "ledger_status_lists")
    try:
        rate(con, books, options, lists)
        build_session_time(con, options.as_of_ms, lists=lists)
    finally:
        con.execute(f"DROP TABLE {lists.table}")


def first_event_ms(con: duckdb.DuckDBPyConnection, db: str, sessions: str) -> int | None:
    """The earliest instant of any stored event of the sessions in table `sessions` (store
    `db`'s `session_starts`), or None when some have none there or the store predates it. A
    copy of their events need only read from it on: the tables' zone maps skip the older row
    groups without reading them."""
    try:
        since = con.execute(f"""
            SELECT CASE WHEN count(*) = count(f.first_ms) THEN min(f.first_ms) END
            FROM {sessions} l LEFT JOIN {db}.main.session_starts f USING (session_id)
        """).fetchall()[0][0]
    except duckdb.CatalogException:  # (a store of an older schema, opened read-only)
        return None
    return None if since is None else int(since)


def _counts(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """Lines of `charges` and `unrated` as reports will read them."""
    row = con.execute("SELECT (SELECT count(*) FROM charges), (SELECT count(*) FROM unrated)"
                      ).fetchall()[0]
    return int(row[0]), int(row[1])


def _book_names(books: Sequence[PriceBook]) -> tuple[str, ...]:
    """name@version of each book, in the order rating numbers them."""
    return tuple(f"{b.name}@{b.version}" for b in books_in_order(books))


def _plan(con: duckdb.DuckDBPyConnection, db: str, books: Sequence[PriceBook],
          options: RatingOptions, full: bool
          ) -> tuple[str, dict[str, int], _Covered | None, tuple[int, int]]:
    """How to bring the ledger of store `db` to `options.as_of_ms`: 'full' or 'incremental'
    (with `ledger_stale` filled), the stale sessions by cause, the last run, and the
    watermark the run covers (`_watermark`: the top ingest id and its rows)."""
    covered = None if full else last_run(con, db)
    top, count, carried = _watermark(con, db, covered)
    if covered is None:
        return "full", {}, None, (top, count)
    if covered.options != _options_key(options):
        return "full", {"options": -1}, covered, (top, count)
    reasons, stale, sessions = _find_stale(con, db, covered, options.as_of_ms,
                                           book_prints(books), carried)
    if stale > FULL_SHARE * max(sessions, 1) and stale > 1000:
        return "full", reasons, covered, (top, count)
    return "incremental", {**reasons, "sessions": int(stale)}, covered, (top, count)


def bring_up_to_date(con: duckdb.DuckDBPyConnection, books: Sequence[PriceBook],
                     options: RatingOptions, *, full: bool = False,
                     closed: Sequence[Period] = ()) -> RatingRun:
    """Rate what changed since the last run (everything if `full`) and store it: on a
    writable connection, in one transaction. `closed` periods are only reported when a book
    change reaches them: their issued invoices stay as they are, and the difference is billed
    as corrections (reports.closing)."""
    started = time.monotonic()
    db = current_catalog(con)
    kind, reasons, covered, (top, count) = _plan(con, db, books, options, full)
    since = None
    if kind == "full":
        _rate_and_time(con, books, options)
        rated = -1  # (counted from the stored lines below)
    else:
        rated = reasons["sessions"]
        if rated:
            since = first_event_ms(con, db, "temp.main.ledger_stale")
            _rate_stale(con, db, books, options, since, time=True)
        else:
            load_books(con, books)  # (nothing changed: the run is only recorded)
    prints = book_prints(books)
    scope = ("" if kind == "full"
             else " WHERE session_id IN (SELECT session_id FROM temp.main.ledger_stale)")
    # The stale sessions' stored rows lie on and after the day of their earliest event: the
    # deletes skip the row groups of earlier days (the tables are stored by day or period).
    on_days = in_periods = from_month = ""
    if since is not None:
        day = day_start(str(since))
        on_days = f" AND day >= {as_date(day)}"
        if since >= _YEAR_1000_MS:  # (periods of four-digit years sort as text as in time)
            in_periods = f" AND period >= strftime({as_date(day)}, '%Y-%m')"
        from_month = f" AND month_start_ms >= epoch_ms(date_trunc('month', {as_date(day)}))"
    con.execute("BEGIN TRANSACTION")
    try:
        if rated or kind == "full":
            # (a full run reads the lines it stored for session_periods; an incremental one
            # reads the rating's view once, into a table of the few lines it made)
            lines = f"{db}.main.charges" if kind == "full" else "temp.main.ledger_lines"
            if kind != "full":
                con.execute("CREATE OR REPLACE TEMP TABLE ledger_lines AS "
                            "SELECT * FROM temp.main.charges")
            con.execute(f"DELETE FROM {db}.main.charges{scope}{on_days}")
            con.execute(f"INSERT INTO {db}.main.charges SELECT * FROM "
                        f"{'temp.main.charges' if kind == 'full' else lines} "
                        f"ORDER BY {CHARGES_ORDER}")
            con.execute(f"DELETE FROM {db}.main.unrated_usage{scope}{on_days}")
            con.execute(f"INSERT INTO {db}.main.unrated_usage SELECT day, period, session_id, "
                        "meter, model, token_class, quantity, unit, reason "
                        "FROM temp.main.unrated")
            con.execute(f"DELETE FROM {db}.main.ledger_open{scope}")
            con.execute(f"INSERT INTO {db}.main.ledger_open "
                        "SELECT session_id FROM open_sessions")
            con.execute(f"DELETE FROM {db}.main.session_periods{scope}{in_periods}")
            rows = session_periods_sql(lines, "temp.main.time_months", "temp.main.time_tails")
            con.execute(f"INSERT INTO {db}.main.session_periods {rows}")
            if kind != "full":
                con.execute("DROP TABLE temp.main.ledger_lines")
            # (months stored in month order, as the other tables are by period)
            for table, fresh, bound, order in (
                    ("session_months", "time_months", from_month, " ORDER BY month_start_ms"),
                    ("session_tails", "time_tails", "", "")):
                con.execute(f"DELETE FROM {db}.main.{table}{scope}{bound}")
                con.execute(f"INSERT INTO {db}.main.{table} SELECT * FROM temp.main.{fresh}"
                            + order)
                con.execute(f"DROP TABLE temp.main.{fresh}")
        charge_lines, unrated_lines = (int(n) for n in con.execute(
            f"SELECT (SELECT count(*) FROM {db}.main.charges), "
            f"(SELECT count(*) FROM {db}.main.unrated_usage)").fetchall()[0])
        if kind == "full":
            rated = con.execute(
                f"SELECT count(*) FROM (SELECT session_id FROM {db}.main.charges UNION "
                f"SELECT session_id FROM {db}.main.unrated_usage)").fetchall()[0][0]
        elapsed = int((time.monotonic() - started) * 1000)
        con.execute(f"""
            INSERT INTO {db}.main.rating_runs (rated_ms, as_of_ms, books, charges, unrated,
                kind, through_ingest, through_count, prints, options, sessions_rated,
                elapsed_ms)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [int(time.time() * 1000), options.as_of_ms, ",".join(names := _book_names(books)),
             charge_lines, unrated_lines, kind, top, count,
             json.dumps([p.__dict__ for p in prints]), _options_key(options), rated, elapsed])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    _read_stored(con, db, just_rated=bool(rated or kind == "full"))
    return RatingRun(as_of_ms=options.as_of_ms, kind=kind, sessions_rated=int(rated),
                     charge_lines=charge_lines, unrated_lines=unrated_lines,
                     books=names, elapsed_ms=elapsed, reasons=reasons,
                     notices=_closed_notices(covered, prints, closed))


def _closed_notices(covered: _Covered | None, prints: Sequence[BookPrint],
                    closed: Sequence[Period]) -> tuple[str, ...]:
    notices = []
    for first, last in stale_periods(covered, prints):
        for period in closed:
            if period.end_ms > first and (last is None or period.start_ms <= last):
                notices.append(f"price-book change affects closed period {period}: "
                               "will be billed as corrections")
    return tuple(dict.fromkeys(notices))


def _read_stored(con: duckdb.DuckDBPyConnection, db: str, *, just_rated: bool = False
                 ) -> None:
    """Point `charges` and `unrated` at the ledger of store `db` (dropping what rating left:
    when it `just_rated`, the rating's view and table, without looking them up)."""
    if just_rated:
        con.execute("DROP VIEW temp.main.charges")
        con.execute("DROP TABLE temp.main.unrated")
    else:
        drop_relation(con, "charges", "unrated")
    con.execute(f"CREATE TEMP VIEW unrated AS SELECT * FROM {db}.main.unrated_usage")


def overlay(con: duckdb.DuckDBPyConnection, books: Sequence[PriceBook],
            options: RatingOptions, *, full: bool = False) -> RatingRun:
    """The ledger as of `options.as_of_ms` without writing it: the stale sessions rated on
    the connection, and `charges` / `unrated` as temp views of the stored lines with theirs
    replaced. (A store without a ledger, or other options, is rated whole on the connection.)
    """
    started = time.monotonic()
    db = current_catalog(con)
    kind, reasons, _, _ = _plan(con, db, books, options, full=full)
    if kind == "full":
        rate(con, books, options)
        charge_lines, unrated_lines = _counts(con)
        return RatingRun(as_of_ms=options.as_of_ms, kind="full", sessions_rated=-1,
                         charge_lines=charge_lines, unrated_lines=unrated_lines,
                         books=_book_names(books), reasons=reasons, stored=False,
                         elapsed_ms=int((time.monotonic() - started) * 1000))
    if reasons["sessions"] == 0:
        _read_stored(con, db)
        load_books(con, books)
    else:
        _rate_stale(con, db, books, options,
                    first_event_ms(con, db, "temp.main.ledger_stale"))
        con.execute("CREATE OR REPLACE TEMP TABLE ledger_fresh AS "
                    "SELECT * FROM temp.main.charges")
        con.execute("CREATE OR REPLACE TEMP TABLE ledger_fresh_unrated AS "
                    "SELECT * FROM temp.main.unrated")
        drop_relation(con, "charges", "unrated")
        keep = "WHERE session_id NOT IN (SELECT session_id FROM temp.main.ledger_stale)"
        con.execute(f"CREATE TEMP VIEW charges AS SELECT * FROM {db}.main.charges {keep} "
                    "UNION ALL SELECT * FROM temp.main.ledger_fresh")
        con.execute(f"CREATE TEMP VIEW unrated AS SELECT * FROM {db}.main.unrated_usage {keep} "
                    "UNION ALL SELECT * FROM temp.main.ledger_fresh_unrated")
    charge_lines, unrated_lines = _counts(con)
    return RatingRun(as_of_ms=options.as_of_ms, kind="overlay",
                     sessions_rated=reasons["sessions"], charge_lines=charge_lines,
                     unrated_lines=unrated_lines, books=_book_names(books), reasons=reasons,
                     stored=False, elapsed_ms=int((time.monotonic() - started) * 1000))
