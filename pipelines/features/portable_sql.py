"""Transpile sql/ queries from DuckDB to Athena (Trino) with sqlglot, and refuse what would not run on both.

sqlglot passes some DuckDB-only SQL through silently or rewrites it into text Trino does not have (checked with
sqlglot 30.30): `list_stddev_samp(x)` stays as is, `median(x)` becomes `PERCENTILE_CONT(x, 0.5)`, `time_bucket`
becomes `DATE_BIN`, `len(list)` becomes `LENGTH(list)` (strings only in Trino), `epoch_ms(ts)` becomes
`FROM_UNIXTIME(ts / 1000)` (the opposite conversion), `GROUP BY ALL` and `* EXCLUDE` / `* REPLACE` stay as
they are. So the guard checks three things:

1. the DuckDB source: function names as written (the rewrites above hide them) against DUCKDB_ONLY_FUNCTIONS,
   and DuckDB-only syntax (GROUP / ORDER BY ALL, star modifiers, positional / asof / semi / anti joins, lambdas
   other than the null filter below, list comprehensions);
2. the transpilation itself (sqlglot raises on constructs it knows it cannot write for Trino);
3. the Trino output, parsed again as Trino: every function must be one the Trino docs list (TRINO_FUNCTIONS);
   a function sqlglot does not know at all (an anonymous function) is accepted only if it is in that list.

The one lambda both engines read alike is the null filter, `filter(l, lambda x: x is not null)` in DuckDB 2 (which
refuses the `x -> ...` arrow): sqlglot writes it as Trino's `filter(l, x -> NOT x IS NULL)`, and both keep the
list's non-null items in order. Over a null filter, and only there, `list_max` / `list_min` are portable too: sqlglot
writes Trino's `array_max` / `array_min`, which return NULL when an item is NULL where DuckDB's skip it, so they
agree exactly on lists without nulls (and give NULL for an empty one).

DuckDB acceptance is proved separately: the tests run every query on DuckDB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError
from sqlglot.tokens import TokenType

from pipelines.features.sql_files import SQL_DIR, all_sql_files, sql_path

# Functions Trino documents (https://trino.io/docs/current/functions/list.html) that a query here may call, as
# sqlglot writes them for Trino. Add a name only after checking it there; the DuckDB tests prove the other side.
# `length` is left out on purpose: DuckDB's takes lists too, Trino's only strings (use cardinality for lists).
TRINO_FUNCTIONS = frozenset({
    # aggregate
    "approx_distinct", "approx_percentile", "arbitrary", "array_agg", "avg", "bool_and", "bool_or", "corr", "count",
    "count_if", "covar_pop", "covar_samp", "every", "max", "max_by", "min", "min_by", "stddev", "stddev_pop",
    "stddev_samp", "sum", "var_pop", "var_samp", "variance",
    # window
    "cume_dist", "dense_rank", "first_value", "lag", "last_value", "lead", "nth_value", "ntile", "percent_rank",
    "rank", "row_number",
    # conditional, conversion
    "coalesce", "greatest", "if", "least", "nullif", "try", "cast", "try_cast",
    # math, bitwise
    "abs", "cbrt", "ceil", "ceiling", "exp", "floor", "is_finite", "is_nan", "ln", "log10", "log2", "mod", "pow",
    "power", "round", "sign", "sqrt", "truncate", "bitwise_and", "bitwise_not", "bitwise_or", "bitwise_xor",
    # date and time
    "current_date", "date", "date_add", "date_diff", "date_format", "date_trunc", "day", "day_of_week",
    "day_of_year", "extract", "from_iso8601_date", "from_unixtime", "hour", "minute", "month", "second",
    "to_unixtime", "week", "year",
    # array, string
    "array_distinct", "array_join", "array_max", "array_min", "array_position", "array_sort", "cardinality",
    "concat", "contains", "element_at", "filter", "sequence", "slice", "unnest", "lower", "regexp_like", "replace",
    "split_part", "strpos", "substr", "substring", "trim", "upper",
})

# DuckDB functions sqlglot passes through or rewrites into something wrong for Trino, with what to use instead.
DUCKDB_ONLY_FUNCTIONS = {
    "median": "the middle rank(s) with row_number(), see sql/README.md",
    "quantile": "ranks with row_number() (see sql/README.md)",
    "quantile_cont": "ranks with row_number() and linear interpolation (see sql/README.md)",
    "quantile_disc": "ranks with row_number() (see sql/README.md)",
    "mode": "count(*) per value and row_number()",
    "time_bucket": "date_trunc('hour', ts) or arithmetic on to_unixtime",
    "len": "cardinality(list)",
    "length": "cardinality(list) for lists (Trino's length() only takes strings)",
    "epoch_ms": "to_unixtime(ts) * 1000 / from_unixtime(ms / 1000.0)",
    "epoch_us": "to_unixtime(ts)",
    "epoch_ns": "to_unixtime(ts)",
    "epoch": "to_unixtime(ts)",
    "strftime": "date_format (its patterns differ from strftime's)",
    "string_agg": "array_join(array_agg(x), ',')",
    "group_concat": "array_join(array_agg(x), ',')",
    "any_value": "arbitrary(x), or max(x)",
    "array_length": "cardinality(list)",
    "columns": "the column names, written out",
    "struct_pack": "cast(row(...) as row(...))",
    "unnest_recursive": "unnest",
}
DUCKDB_ONLY_PREFIXES = {"list_": "an unnest and an aggregate, or cardinality / element_at / array_* functions"}

# DuckDB list functions that are portable over a null filter only (see the module docstring), checked on the tree.
NULL_FREE_LIST_FUNCTIONS = {"list_max": exp.ArrayMax, "list_min": exp.ArrayMin}
NULL_FILTER = "filter(l, lambda x: x is not null)"

_CALL_NAME = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(")


class NonPortableSQLError(ValueError):
    """A query uses SQL that does not run on both DuckDB and Athena (Trino); the message lists every problem."""


@dataclass(frozen=True)
class Problem:
    line: int | None
    what: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.what}" if self.line else self.what


def _duckdb_only_calls(sql: str) -> list[Problem]:
    """Function calls as written in the DuckDB source (before sqlglot renames them) that Trino lacks."""
    tokens = sqlglot.tokenize(sql, read="duckdb")
    problems = []
    for token, following in zip(tokens, tokens[1:], strict=False):
        if following.token_type != TokenType.L_PAREN or token.token_type in (TokenType.STRING, TokenType.NUMBER):
            continue
        name = token.text.lower()
        if name in NULL_FREE_LIST_FUNCTIONS:
            continue  # allowed over a null filter: _duckdb_only_syntax checks the argument
        hint = DUCKDB_ONLY_FUNCTIONS.get(name) or next(
            (h for prefix, h in DUCKDB_ONLY_PREFIXES.items() if name.startswith(prefix)), None)
        if hint:
            problems.append(Problem(token.line, f"{name}() is DuckDB-only (use {hint})"))
    return problems


def _arrow_lambdas(sql: str) -> list[Problem]:
    """`x -> ...` in the DuckDB source: DuckDB 2 refuses arrow lambdas (and `->` is its JSON operator too)."""
    return [Problem(token.line, f"'->' is refused by DuckDB 2 (write the null filter as {NULL_FILTER})")
            for token in sqlglot.tokenize(sql, read="duckdb") if token.token_type == TokenType.ARROW]


def is_null_filter(node: exp.Expression | None) -> bool:
    """`filter(l, lambda x: x is not null)` (Trino: `filter(l, x -> NOT x IS NULL)`): the list without its null items."""
    if not isinstance(node, exp.ArrayFilter) or not isinstance(node.expression, exp.Lambda):
        return False
    function = node.expression
    body = function.this
    return (len(function.expressions) == 1 and isinstance(body, exp.Not) and isinstance(body.this, exp.Is)
            and isinstance(body.this.expression, exp.Null) and isinstance(body.this.this, exp.Identifier | exp.Column)
            and body.this.this.name == function.expressions[0].name)


def _duckdb_only_syntax(tree: exp.Expression) -> list[Problem]:
    """Syntax DuckDB accepts and Trino does not, found in the parsed DuckDB source."""
    problems = []
    for group in tree.find_all(exp.Group):
        if group.args.get("all"):
            problems.append(Problem(None, "GROUP BY ALL is DuckDB-only (list the grouping columns)"))
    for order in tree.find_all(exp.Order):
        if any(isinstance(o.this, exp.Var) and o.this.name.upper() == "ALL" for o in order.expressions):
            problems.append(Problem(None, "ORDER BY ALL is DuckDB-only (list the columns)"))
    for star in tree.find_all(exp.Star):
        for modifier, word in (("except_", "EXCLUDE"), ("except", "EXCLUDE"), ("replace", "REPLACE"), ("rename", "RENAME")):
            if star.args.get(modifier):
                problems.append(Problem(None, f"* {word} (...) is DuckDB-only (list the columns)"))
    for join in tree.find_all(exp.Join):
        special = str(join.args.get("method") or join.args.get("kind") or "").upper()
        if special in ("POSITIONAL", "ASOF", "SEMI", "ANTI"):
            problems.append(Problem(None, f"{special} JOIN is DuckDB-only (use a join with an explicit condition, or [not] exists)"))
    if any(not is_null_filter(function.parent) for function in tree.find_all(exp.Lambda)):
        problems.append(Problem(None, "lambdas have no syntax both engines accept (Trino: x -> ...; DuckDB 2: lambda x: ...), "
                                      f"except the null filter {NULL_FILTER}"))
    for name, node_type in NULL_FREE_LIST_FUNCTIONS.items():
        if any(not is_null_filter(node.this) for node in tree.find_all(node_type)):
            trino_name = name.replace("list_", "array_")
            problems.append(Problem(None, f"{name}() / {trino_name}() over a list that may hold nulls: Trino's {trino_name} "
                                          f"returns NULL when an item is NULL, DuckDB's skips it (use {name}({NULL_FILTER}))"))
    if any(True for _ in tree.find_all(exp.Comprehension)):
        problems.append(Problem(None, "list comprehensions are DuckDB-only (use unnest and array_agg)"))
    return problems


def _function_name(node: exp.Func) -> str | None:
    """The name Trino will see for one function node of a Trino tree; None when it is written as syntax (CASE, ||)."""
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    match = _CALL_NAME.match(node.sql(dialect="trino"))
    return match.group(1).lower() if match else None


def trino_problems(trino_sql: str) -> list[Problem]:
    """Functions in the Trino text that Trino does not have (per TRINO_FUNCTIONS), and leftover DuckDB syntax."""
    tree = sqlglot.parse_one(trino_sql, read="trino")
    problems = []
    for node in tree.find_all(exp.Func):
        name = _function_name(node)
        if name is None or name in TRINO_FUNCTIONS:
            continue
        if isinstance(node, exp.Anonymous):
            problems.append(Problem(None, f"{name}() is unknown to sqlglot's Trino dialect and not a listed Trino function"))
        else:
            problems.append(Problem(None, f"{name}() (in the Trino text {node.sql(dialect='trino')[:60]}) is not a Trino "
                                          f"function this project allows (TRINO_FUNCTIONS)"))
    return problems + _duckdb_only_syntax(tree)


def to_trino(sql: str, source: str = "<sql>") -> str:
    """The Trino (Athena) text of one DuckDB query, or NonPortableSQLError naming the file and each problem."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except SqlglotError as error:
        raise NonPortableSQLError(f"{source}: DuckDB SQL does not parse: {error}") from error
    if len(statements) != 1:
        raise NonPortableSQLError(f"{source}: holds {len(statements)} statements; one query per file")
    problems = _duckdb_only_calls(sql) + _arrow_lambdas(sql) + _duckdb_only_syntax(statements[0])
    trino_sql = ""
    try:
        trino_sql = statements[0].sql(dialect="trino", unsupported_level=ErrorLevel.RAISE, pretty=True)
    except SqlglotError as error:
        problems.append(Problem(None, f"sqlglot cannot write it for Trino: {error}"))
    if trino_sql:
        try:
            problems += trino_problems(trino_sql)
        except SqlglotError as error:
            problems.append(Problem(None, f"the Trino text does not parse as Trino: {error}"))
    unique = list(dict.fromkeys(str(p) for p in problems))
    if unique:
        raise NonPortableSQLError(f"{source} is not portable to Athena (Trino):\n  " + "\n  ".join(unique))
    return trino_sql


def _display(path: Path) -> str:
    """sql/features/x.sql for the repository's queries, the full path otherwise."""
    return str(path.relative_to(SQL_DIR.parent)) if path.is_relative_to(SQL_DIR.parent) else str(path)


def trino_sql(name: str) -> str:
    """The Athena text of one query under sql/ (`features/daily_features`), checked by the guard."""
    path = sql_path(name)
    return to_trino(path.read_text(), source=_display(path))


def check_all(paths: list[Path] | None = None) -> dict[Path, str]:
    """Run the guard over every query under sql/: the Trino text of each, or one error listing every bad file."""
    translated, failures = {}, []
    for path in paths if paths is not None else all_sql_files():
        try:
            translated[path] = to_trino(path.read_text(), source=_display(path))
        except NonPortableSQLError as error:
            failures.append(str(error))
    if failures:
        raise NonPortableSQLError("\n".join(failures))
    return translated
