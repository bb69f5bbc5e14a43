"""Find and read the queries under sql/ (one query per file), and name the relations each one reads."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import sqlglot
from sqlglot import exp

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def sql_path(name: str) -> Path:
    """`features/daily_features` (or with `.sql`) -> the file under sql/; a clear error when it does not exist."""
    path = SQL_DIR / (name if name.endswith(".sql") else f"{name}.sql")
    if not path.is_file():
        known = ", ".join(sorted(p.relative_to(SQL_DIR).with_suffix("").as_posix() for p in SQL_DIR.rglob("*.sql")))
        raise FileNotFoundError(f"no query sql/{name}.sql (queries: {known})")
    return path


def load_sql(name: str) -> str:
    """The text of one query under sql/."""
    return sql_path(name).read_text()


def all_sql_files() -> list[Path]:
    """Every query under sql/, sorted."""
    return sorted(SQL_DIR.rglob("*.sql"))


@lru_cache(maxsize=64)  # parsing the window query takes ~0.5 s; the API runs it on every lake-backed request
def input_relations(sql: str) -> frozenset[str]:
    """The tables a query reads that it does not define itself (its CTEs): what a runner must provide."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    defined = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return frozenset(table.name for table in tree.find_all(exp.Table) if table.name and table.name not in defined)
