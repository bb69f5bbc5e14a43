"""The Superset bundle (superset/bundle/) without Superset: references, no machine paths or secrets, portable SQL."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import duckdb
import pytest
import sqlglot
import yaml

from pipelines.features.portable_sql import to_trino
from pipelines.schema import ALERT_SCHEMA
from pipelines.storage.catalog import build_catalog
from pipelines.storage.event_store import EventStore
from pipelines.storage.event_store import alerts as alerts_table
from pipelines.storage.lake import Lake

from .fleet_lake import VINS, write_fleet
from .launcher import BUNDLE_DIR


def bundle_files() -> dict[str, dict]:
    """Every YAML file of the bundle, parsed, by its path inside the bundle."""
    return {p.relative_to(BUNDLE_DIR).as_posix(): yaml.safe_load(p.read_text()) for p in sorted(BUNDLE_DIR.rglob("*.yaml"))}


def of_kind(kind: str) -> dict[str, dict]:
    return {name: doc for name, doc in bundle_files().items() if name.startswith(f"{kind}/")}


def dataset(table_name: str) -> dict:
    return next(doc for doc in of_kind("datasets").values() if doc["table_name"] == table_name)


def test_bundle_holds_one_database_five_datasets_five_charts_one_dashboard() -> None:
    assert bundle_files()["metadata.yaml"] == {"version": "1.0.0", "type": "assets",
                                               "timestamp": "2026-11-22T00:00:00+00:00"}
    assert [d["database_name"] for d in of_kind("databases").values()] == ["CellGuard"]
    assert sorted(d["table_name"] for d in of_kind("datasets").values()) == [
        "alarms_per_day", "alerts", "daily", "fleet_risk", "predictions"]
    assert len(of_kind("charts")) == 5
    assert [d["dashboard_title"] for d in of_kind("dashboards").values()] == ["CellGuard fleet"]


def test_each_chart_queries_columns_of_its_dataset_and_the_dashboard_places_each_once() -> None:
    # (files, fields and uuid references: launch.bundle_problems, tested in test_launch.py)
    datasets = {doc["uuid"]: doc for doc in of_kind("datasets").values()}
    charts = {doc["uuid"]: doc for doc in of_kind("charts").values()}
    for chart in charts.values():
        columns = {c["column_name"] for c in datasets[chart["dataset_uuid"]]["columns"]}
        context = json.loads(chart["query_context"])
        query = context["queries"][0]
        metric_columns = {m["column"]["column_name"] for m in query["metrics"] if isinstance(m, dict)}
        ordered = {name for name, _ in query["orderby"]}
        assert set(query["columns"]) | metric_columns | (ordered - {"count"}) <= columns, chart["slice_name"]
        assert context["form_data"] == chart["params"]

    dashboard = next(iter(of_kind("dashboards").values()))
    placed = [item["meta"] for item in dashboard["position"].values()
              if isinstance(item, dict) and item.get("type") == "CHART"]
    assert sorted(meta["uuid"] for meta in placed) == sorted(charts)
    assert {meta["sliceName"] for meta in placed} == {chart["slice_name"] for chart in charts.values()}
    chart_ids = {meta["chartId"] for meta in placed}
    for native_filter in dashboard["metadata"]["native_filter_configuration"]:
        assert {t["datasetUuid"] for t in native_filter["targets"]} <= set(datasets)
        assert set(native_filter["scope"]["excluded"]) <= chart_ids


def test_bundle_names_no_machine_path_and_holds_no_secret() -> None:
    for path in BUNDLE_DIR.rglob("*.yaml"):
        text = path.read_text()
        assert not re.search(r"(/work/|/home/|/tmp/|/root/|/Users/|[A-Z]:\\)", text), path
        assert not re.search(r"(?i)(password|secret|token|aws_access_key|aws_secret)\s*:", text), path
    uri = next(iter(of_kind("databases").values()))["sqlalchemy_uri"]
    assert uri == "duckdb:///var/catalog.duckdb?access_mode=read_only"  # relative and read-only, no credentials


def test_alerts_dataset_has_the_event_store_alerts_columns() -> None:
    columns = [c["column_name"] for c in dataset("alerts")["columns"]]
    assert columns == [c.name for c in alerts_table.columns if c.name != "id"] == ALERT_SCHEMA.names


@pytest.mark.parametrize("table_name", ["fleet_risk", "alarms_per_day"])
def test_virtual_dataset_sql_reads_the_same_in_duckdb_and_athena(table_name: str) -> None:
    sql = dataset(table_name)["sql"]
    to_trino(sql, source=f"superset dataset {table_name}")  # the project's portability guard
    # Superset sends the text unchanged to either engine: both dialects must read it as the same query.
    assert sqlglot.parse_one(sql, read="trino").sql("trino") == sqlglot.parse_one(sql, read="duckdb").sql("trino")


def test_virtual_datasets_on_a_real_catalog(tmp_path: Path) -> None:
    lake = Lake((tmp_path / "lake").as_uri())
    fleet = write_fleet(lake, EventStore(f"sqlite:///{tmp_path / 'events.sqlite'}"), days=5, switch_after=3)
    catalog = build_catalog(lake, tmp_path / "catalog.duckdb")
    with duckdb.connect(str(catalog), read_only=True) as con:
        risk = con.execute(f"select vin, as_of, probability, source, model_version from ({dataset('fleet_risk')['sql']}) "
                           "order by probability desc, vin").fetchall()
        per_day = con.execute(f"select * from ({dataset('alarms_per_day')['sql']}) order by dt").fetchall()
        alerts = con.execute("select vin, first_as_of, probability, channel from alerts order by first_as_of").fetchall()
    newest = date(2026, 3, 6)
    assert risk == [(VINS[0], newest, 0.75, "api", "v2-full"), (VINS[3], newest, 0.75, "batch", "v2-full"),
                    (VINS[2], newest, 0.375, "batch", "v2-full"), (VINS[1], newest, 0.25, "batch", "v2-full")]
    assert len(fleet.daily) == 20
    # (dt, vehicles reporting, in BMS alarm, scored, predicted to alarm): the last vehicle's load range reaches
    # 300 mV on day 3; the batch warns about it from its first as_of, 2026-03-02 (probability 0.5 = threshold).
    assert per_day == [
        (date(2026, 3, 1), 4, 0, 0, 0), (date(2026, 3, 2), 4, 0, 4, 1), (date(2026, 3, 3), 4, 1, 4, 1),
        (date(2026, 3, 4), 4, 1, 4, 1), (date(2026, 3, 5), 4, 1, 4, 1), (date(2026, 3, 6), 0, 0, 4, 1)]
    assert alerts == [(VINS[3], date(2026, 3, 2), 0.5, "webhook"), (VINS[0], newest, 0.75, None)]
    assert len(fleet.alerts) == 2
