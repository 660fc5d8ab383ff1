"""The rating SQL, written once for DuckDB, read as Spark SQL.

The rating rules live in one place: the SQL of pricing.rating (and meter.intervals, which it
uses). To run them on Apache Spark, each statement is parsed with sqlglot as DuckDB SQL and
written out as Spark SQL, after the rewrites below for what sqlglot does not carry over (or
carries over wrongly). Nothing here states a rule; it only restates DuckDB constructs:

- `$name` parameters become literals; temp macros are inlined where they are called;
- list indexing `x[i]` is 1-based in DuckDB: `try_element_at(x, i)`; slices `x[a:]` become
  `slice`; a lambda's index argument is 1-based in DuckDB and 0-based in Spark: `i` -> `i + 1`;
- `range(a, b, s)` (end excluded) becomes a guarded `sequence(a, b - 1, s)` (sqlglot's
  `b - s` drops the last element when s > 1);
- list_bool_and / list_bool_or / list_sum / len become forall / exists / aggregate / size;
- several `unnest`s in one select (DuckDB zips them) become one `explode` of positions and
  `try_element_at` per list, since Spark allows one generator per select, at top level;
- `t.* REPLACE (e AS c)` is expanded to the relation's columns (asked of the engine);
- `ASOF LEFT JOIN r ON eq AND r.x >= l.y` becomes a LATERAL join keeping the nearest row;
- HUGEINT becomes DECIMAL(38, 0); JSON arrays are read with from_json / json_array_length.

`spark.sql.ansi.enabled` and `spark.sql.decimalOperations.allowPrecisionLoss=false` are set
on the session (pricing.spark), so DECIMAL products keep every digit or fail, as in DuckDB.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

# Trees are typed exp.Expr: sqlglot's base node type, what parse_one, .parent and .flatten
# return (exp.Expression is one concrete subclass of it).

# Asked of the engine: the column names of `SELECT <star> FROM ...` (for `* REPLACE`).
ColumnsOf = Callable[[str], list[str]]


@dataclass(frozen=True)
class Macro:
    """A DuckDB temp macro: parameter names and the body expression."""

    params: tuple[str, ...]
    body: exp.Expr


_MACRO = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?TEMP\s+MACRO\s+(\w+)\s*\(([^)]*)\)\s+AS\s+"
                    r"(.*)$", re.IGNORECASE | re.DOTALL)
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def parse_macro(sql: str) -> tuple[str, Macro] | None:
    """`CREATE TEMP MACRO name(a, b) AS (expr)` -> (name, Macro); None for other SQL."""
    match = _MACRO.match(sql)
    if not match:
        return None
    name, params, body = match.groups()
    names = tuple(p.strip() for p in params.split(",") if p.strip())
    return name.lower(), Macro(names, sqlglot.parse_one(body, read="duckdb"))


def literal(value: object) -> str:
    """A parameter value as a SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def bind(sql: str, params: Mapping[str, object] | None) -> str:
    """Replace `$name` parameters with literals (a `$` inside a JSON path is left alone)."""
    if not params:
        return sql
    return _PARAM.sub(lambda m: literal(params[m.group(1)]) if m.group(1) in params
                      else m.group(0), sql)


def _fn(name: str, *args: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this=name, expressions=list(args))


def _inline_macros(tree: exp.Expr, macros: Mapping[str, Macro]) -> exp.Expr:
    def expand(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Anonymous) and str(node.this).lower() in macros:
            macro = macros[str(node.this).lower()]
            args = dict(zip(macro.params, node.expressions, strict=True))

            def put(n: exp.Expr) -> exp.Expr:
                if isinstance(n, exp.Column) and not n.table and n.name in args:
                    return exp.Paren(this=args[n.name].copy())
                return n
            body = macro.body.copy().transform(put)
            return exp.Paren(this=_inline_macros(body, macros))
        return node
    return tree.transform(expand)


def _lambda_index(tree: exp.Expr) -> exp.Expr:
    """DuckDB's lambda index is 1-based, Spark's 0-based: read `i` as `i + 1` in the body."""
    for lam in list(tree.find_all(exp.Lambda)):
        if len(lam.expressions) != 2:
            continue
        index = lam.expressions[1].name

        def shift(n: exp.Expr, index: str = index) -> exp.Expr:
            bare = isinstance(n, exp.Identifier) and not isinstance(
                n.parent, exp.Column | exp.Table | exp.TableAlias | exp.Alias | exp.Lambda)
            if (bare or (isinstance(n, exp.Column) and not n.table)) and n.name == index:
                return exp.Paren(this=exp.Add(this=n.copy(), expression=exp.Literal.number(1)))
            return n
        lam.set("this", lam.this.transform(shift))
    return tree


def _constant_index(index: exp.Expr) -> int | None:
    if isinstance(index, exp.Literal) and not index.is_string:
        return int(index.this)
    if isinstance(index, exp.Neg) and isinstance(index.this, exp.Literal):
        return -int(index.this.this)
    return None


def _brackets(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.Bracket) and len(node.expressions) == 1:
        arr, index = node.this, node.expressions[0]
        if isinstance(index, exp.Slice):
            start = index.args.get("this") or exp.Literal.number(1)
            end = index.args.get("expression")
            size = _fn("size", arr.copy())
            stop = end if end is not None else size
            length = _fn("greatest", exp.Add(this=exp.Sub(this=stop, expression=start.copy()),
                                             expression=exp.Literal.number(1)),
                         exp.Literal.number(0))
            return _fn("slice", arr, start, length)
        constant = _constant_index(index)
        if constant is not None:  # (sqlglot stores a constant index 0-based: back to DuckDB's)
            index = exp.Literal.number(constant + 1) if constant + 1 >= 0 else exp.Neg(
                this=exp.Literal.number(-(constant + 1)))
        else:  # DuckDB reads x[0] as NULL; Spark's element_at fails on it
            index = exp.If(this=exp.NEQ(this=index.copy(), expression=exp.Literal.number(0)),
                           true=index, false=exp.Null())
        return _fn("try_element_at", arr, index)
    return node


_BOOL_LAMBDA = "__v"


def _list_functions(node: exp.Expr) -> exp.Expr:
    name = ""
    if isinstance(node, exp.Anonymous):
        name = str(node.this).lower()
    elif isinstance(node, exp.Length):
        name = "len"
    if name in ("list_bool_and", "list_bool_or"):
        var = exp.to_identifier(_BOOL_LAMBDA)
        lam = exp.Lambda(this=exp.column(_BOOL_LAMBDA), expressions=[var])
        return _fn("forall" if name == "list_bool_and" else "exists",
                   node.expressions[0], lam)
    if name == "list_sum":
        acc, var = exp.to_identifier("__acc"), exp.to_identifier(_BOOL_LAMBDA)
        lam = exp.Lambda(this=exp.Add(this=exp.column("__acc"), expression=exp.column(
            _BOOL_LAMBDA)), expressions=[acc, var])
        zero = exp.cast(exp.Literal.number(0), "BIGINT")
        arr = node.expressions[0]
        # DuckDB: NULL for an empty list, like sum() of no rows
        return exp.If(this=exp.GT(this=_fn("size", arr.copy()), expression=exp.Literal.number(0)),
                      true=_fn("aggregate", arr, zero, lam), false=exp.Null())
    if isinstance(node, exp.IgnoreNulls) and isinstance(node.this, exp.AnyValue):
        node = node.this
    if isinstance(node, exp.AnyValue):  # DuckDB's any_value skips NULLs
        return _fn("any_value", node.this, exp.true())
    if name == "len" and isinstance(node, exp.Length):
        return _fn("size", node.this)
    return node


def _ranges(node: exp.Expr) -> exp.Expr:
    """`range(a, b[, s])` (end excluded, s > 0 here) -> sequence(a, b - 1, s) when a < b."""
    if isinstance(node, exp.GenerateSeries) and node.args.get("is_end_exclusive"):
        start, end = node.args["start"], node.args["end"]
        step = node.args.get("step") or exp.Literal.number(1)
        seq = _fn("sequence", start.copy(), exp.Sub(this=end.copy(),
                                                    expression=exp.Literal.number(1)), step)
        empty = exp.cast(_fn("array"), "ARRAY<BIGINT>")
        return exp.If(this=exp.LT(this=start, expression=end), true=seq, false=empty)
    return node


def _types(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.INT128:
        return exp.DataType.build("DECIMAL(38, 0)")
    if isinstance(node, exp.Cast) and node.to.is_type("array") and node.to.expressions \
            and node.to.expressions[0].is_type("json"):
        return _fn("from_json", node.this, exp.Literal.string("array<string>"))
    if isinstance(node, exp.EQ) and isinstance(node.this, exp.JSONType | exp.Anonymous) \
            and node.expression.is_string and node.expression.name.upper() == "ARRAY":
        inner = node.this.this if isinstance(node.this, exp.JSONType) else None
        if inner is not None:
            return exp.Not(this=exp.Is(this=_fn("json_array_length", inner), expression=exp.Null()))
    return node


def _unnests(select: exp.Expr) -> exp.Expr:
    """A select whose projections hold unnest()s that Spark cannot run as they stand (more than
    one, or one inside an expression) reads them by position instead."""
    if not isinstance(select, exp.Select):
        return select
    found = [u for p in select.expressions for u in p.find_all(exp.Unnest, exp.Explode)
             if u.find_ancestor(exp.Select) is select]
    if not found:
        return select
    if len(found) == 1 and any(p is found[0] or (isinstance(p, exp.Alias) and p.this is found[0])
                               for p in select.expressions):
        return select  # one generator at top level: Spark runs it as it is
    lists = [u.expressions[0] if isinstance(u, exp.Unnest) else u.this for u in found]
    sizes = [_fn("size", a.copy()) for a in lists]
    longest = sizes[0] if len(sizes) == 1 else _fn("greatest", *sizes)
    positions = exp.If(this=exp.GT(this=longest, expression=exp.Literal.number(0)),
                       true=_fn("sequence", exp.Literal.number(1), longest.copy()),
                       false=exp.Null())
    for node, arr in zip(found, lists, strict=True):
        node.replace(_fn("try_element_at", arr.copy(), exp.column("__k")))
    source = select.args.get("from_")
    inner = exp.select(exp.Star(), exp.alias_(_fn("explode", positions), "__k"))
    if source is not None:
        inner.set("from_", source.copy())
        for join in select.args.get("joins") or []:
            inner.append("joins", join.copy())
        if select.args.get("where"):
            inner.set("where", select.args["where"].copy())
            select.set("where", None)
        select.set("joins", None)
    alias = source.this.alias_or_name if source is not None else "__z"
    select.set("from_", exp.From(this=exp.Subquery(this=inner, alias=exp.TableAlias(
        this=exp.to_identifier(alias or "__z")))))
    return select


def _ctes_before(select: exp.Select) -> list[exp.Expr]:
    """Copies of the statement's CTEs that `select` can see (those defined before its own)."""
    node: exp.Expr | None = select
    while node is not None and not node.args.get("with_"):
        node = node.parent
    if node is None:
        return []
    own = select.find_ancestor(exp.CTE)
    seen = []
    for cte in node.args["with_"].expressions:
        if cte is own:
            break
        seen.append(cte.copy())
    return seen


def _star_replace(select: exp.Expr, columns_of: ColumnsOf) -> exp.Expr:
    if not isinstance(select, exp.Select):
        return select
    for projection in list(select.expressions):
        star = projection.this if isinstance(projection, exp.Column) else projection
        if not isinstance(star, exp.Star) or not star.args.get("replace"):
            continue
        table = projection.table if isinstance(projection, exp.Column) else ""
        probe = select.copy()
        probe.set("expressions", [exp.Column(this=exp.Star(), table=exp.to_identifier(table))
                                  if table else exp.Star()])
        for key in ("where", "group", "having", "order", "limit", "with_"):
            probe.set(key, None)
        ctes = _ctes_before(select)
        if ctes:
            probe.set("with_", exp.With(expressions=ctes))
        probe_sql = to_spark_tree(probe, columns_of).sql("spark")
        names = columns_of(probe_sql + " LIMIT 0")
        replaced = {a.alias: a.this for a in star.args["replace"]}
        expanded = [exp.alias_(replaced[n].copy(), n) if n in replaced
                    else exp.column(n, table=table or None) for n in names]
        index = select.expressions.index(projection)
        select.set("expressions", select.expressions[:index] + expanded
                   + select.expressions[index + 1:])
    return select


def _asof(select: exp.Expr) -> exp.Expr:
    """`l ASOF LEFT JOIN r ON eqs AND r.k >= l.k'` -> `LEFT JOIN LATERAL` the nearest row of r
    under the same condition (ordered by r.k; descending for `<=`), as ASOF picks it."""
    if not isinstance(select, exp.Select):
        return select
    for join in select.args.get("joins") or []:
        if str(join.args.get("method") or "").upper() != "ASOF":
            continue
        right, on = join.this, join.args["on"]
        alias = right.alias_or_name
        conds = list(on.flatten()) if isinstance(on, exp.And) else [on]
        ineq = next(c for c in conds if isinstance(c, exp.GTE | exp.GT | exp.LTE | exp.LT))
        key = ineq.this if ineq.this.table == alias else ineq.expression
        ascending = isinstance(ineq, exp.GTE | exp.GT) == (ineq.this.table == alias)
        reads = {c.name for arg in ("expressions", "where", "group", "having")
                 for v in _as_list(select.args.get(arg)) for c in v.find_all(exp.Column)
                 if c.table == alias}
        if reads <= {key.name} and select.args.get("from_") is not None:
            _asof_key_only(select, join, conds, ineq, alias, key, ascending)
            continue
        body = right.this.copy() if isinstance(right, exp.Subquery) else exp.select("*").from_(
            right.copy())
        nearest = exp.select("*").from_(exp.Subquery(this=body, alias=exp.TableAlias(
            this=exp.to_identifier(alias)))).where(on.copy()).order_by(
            exp.Ordered(this=key.copy(), desc=not ascending)).limit(1)
        join.set("this", exp.Lateral(this=exp.Subquery(this=nearest), alias=exp.TableAlias(
            this=exp.to_identifier(alias))))
        join.set("method", None)
        join.set("on", None)
    return select


def _as_list(value: object) -> list[exp.Expr]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]  # type: ignore[list-item]


def _asof_key_only(select: exp.Select, join: exp.Join, conds: list[exp.Expr],
                   ineq: exp.Expr, alias: str, key: exp.Column, ascending: bool) -> None:
    """An ASOF join of which only the right key is read: the nearest key per distinct left
    (equality values, key) from an equi-join and an aggregate, joined back on those values:
    no nested loop, and each distinct left key is looked up once."""
    right_is_this = ineq.this.table == alias
    left_key = ineq.expression if right_is_this else ineq.this
    pairs = []  # (right column, left expression) of each equality
    for cond in conds:
        if isinstance(cond, exp.EQ):
            r, l_ = (cond.this, cond.expression) if cond.this.table == alias else (
                cond.expression, cond.this)
            pairs.append((r, l_))
    outer = [exp.alias_(l_.copy(), f"__e{i}") for i, (_, l_) in enumerate(pairs)]
    distinct = exp.select(*outer, exp.alias_(left_key.copy(), "__lk")).distinct().from_(
        select.args["from_"].this.copy())
    on = [exp.EQ(this=r.copy(), expression=exp.column(f"__e{i}", table="__d"))
          for i, (r, _) in enumerate(pairs)]
    bound = ineq.copy()
    bound.set("expression" if right_is_this else "this", exp.column("__lk", table="__d"))
    picked = (exp.Min if ascending else exp.Max)(this=key.copy())
    groups = [exp.column(f"__e{i}", table="__d") for i in range(len(pairs))] + [
        exp.column("__lk", table="__d")]
    nearest = exp.select(*groups, exp.alias_(picked, key.name)).from_(
        exp.Subquery(this=distinct, alias=exp.TableAlias(this=exp.to_identifier("__d")))
    ).join(join.this.copy(), on=exp.and_(*on, bound), join_type="inner").group_by(*groups)
    back = [exp.EQ(this=exp.column(f"__e{i}", table=alias), expression=l_.copy())
            for i, (_, l_) in enumerate(pairs)]
    back.append(exp.EQ(this=exp.column("__lk", table=alias), expression=left_key.copy()))
    join.set("this", exp.Subquery(this=nearest, alias=exp.TableAlias(
        this=exp.to_identifier(alias))))
    join.set("method", None)
    join.set("on", exp.and_(*back))


def to_spark_tree(tree: exp.Expr, columns_of: ColumnsOf) -> exp.Expr:
    """The rewrites of the module docstring on a parsed statement (in place)."""
    tree = _lambda_index(tree)
    tree = tree.transform(_brackets)
    tree = tree.transform(_list_functions)
    tree = tree.transform(_ranges)
    tree = tree.transform(_types)
    for select in list(tree.find_all(exp.Select)):
        _asof(select)
    for select in list(tree.find_all(exp.Select)):
        _star_replace(select, columns_of)
    for select in reversed(list(tree.find_all(exp.Select))):
        _unnests(select)
    return tree


def to_spark(sql: str, params: Mapping[str, object] | None, macros: Mapping[str, Macro],
             columns_of: ColumnsOf) -> str:
    """DuckDB statement `sql` (with `$` parameters and calls of `macros`) as Spark SQL."""
    return to_spark_tree(_parse(sql, params, macros), columns_of).sql("spark")


def _parse(sql: str, params: Mapping[str, object] | None,
           macros: Mapping[str, Macro]) -> exp.Expr:
    return _inline_macros(sqlglot.parse_one(bind(sql, params), read="duckdb"), macros)


@dataclass(frozen=True)
class Staged:
    """A query as Spark runs it best: the CTEs it reads more than once first, each
    materialised under a name of its own (Spark would evaluate such a CTE again at every
    reference), then the query (with the other CTEs as they are)."""

    ctes: tuple[tuple[str, str], ...]  # (view name, Spark SQL), in order
    query: str


def staged(sql: str, params: Mapping[str, object] | None, macros: Mapping[str, Macro],
           columns_of: ColumnsOf, prefix: str) -> Staged:
    """`to_spark`, with the top-level CTEs read more than once hoisted out as views named
    `prefix` + name."""
    tree = to_spark_tree(_parse(sql, params, macros), columns_of)
    if not tree.args.get("with_"):
        return Staged((), tree.sql("spark"))
    ctes = list(tree.args["with_"].expressions)
    reads = {cte.alias: 0 for cte in ctes}
    for table in tree.find_all(exp.Table):
        if not table.args.get("db") and table.name in reads:
            reads[table.name] += 1
    names = {cte.alias: f"{prefix}{cte.alias}" for cte in ctes if reads[cte.alias] > 1}

    def rename(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Table) and not node.args.get("db") and node.name in names:
            renamed = exp.to_table(names[node.name])
            renamed.set("alias", node.args.get("alias") or exp.TableAlias(
                this=exp.to_identifier(node.name)))
            return renamed
        return node
    kept: list[exp.Expr] = []  # the CTEs left inline, renamed refs
    steps = []
    for cte in ctes:
        renamed = cte.transform(rename)
        if cte.alias not in names:
            kept.append(renamed)
            continue
        body = renamed.this
        columns = cte.args["alias"].columns
        if columns:  # `name(a, b) AS (...)`: the body's columns renamed
            body = exp.select("*").from_(exp.Subquery(this=body, alias=exp.TableAlias(
                this=exp.to_identifier("__v"), columns=[c.copy() for c in columns])))
        if kept:
            body = exp.select("*").from_(exp.Subquery(this=body, alias=exp.TableAlias(
                this=exp.to_identifier("__w")))) if not isinstance(body, exp.Select) else body
            body.set("with_", exp.With(expressions=[k.copy() for k in kept]))
        steps.append((names[cte.alias], body.sql("spark")))
    query = tree.transform(rename)
    query.set("with_", exp.With(expressions=kept) if kept else None)
    return Staged(tuple(steps), query.sql("spark"))
