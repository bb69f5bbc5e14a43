"""Fleet-level tables for analysts and dashboards, from daily rows."""

from __future__ import annotations

import pyarrow as pa

from pipelines.features.runner import Relation, run_sql


def fleet_daily(daily: Relation) -> pa.Table:
    """One row per day: vehicles reporting, frames, vehicles in alarm, the fleet's cell range (sql/marts/fleet_daily.sql)."""
    return run_sql("marts/fleet_daily", daily=daily)
