"""Features: runs the queries in sql/ on DuckDB (and proves them portable to Athena); daily rows, windows, labels."""
