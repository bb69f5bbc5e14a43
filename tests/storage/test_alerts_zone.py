"""pipelines/storage/alerts_zone.py: alarm episodes copied from a real SQLite event store to the lake and the catalog."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from pipelines.schema import ALERT_SCHEMA
from pipelines.storage.alerts_zone import partition_key, publish_alerts
from pipelines.storage.catalog import build_catalog, connect_read_only
from pipelines.storage.event_store import EventStore
from pipelines.storage.lake import Lake

MADE = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    store = EventStore(f"sqlite:///{tmp_path / 'events.sqlite'}")
    yield store
    store.close()


def episode(store: EventStore, vin: str, first_as_of: date, cell: int | None = 7) -> None:
    store.record_alert(vin=vin, feature_set="full", first_as_of=first_as_of, model_version="v1", probability=0.9,
                       threshold=0.5, suspect_cell=cell, created_at=MADE)


def test_episodes_land_one_object_per_start_date_and_a_rerun_changes_nothing(store, tmp_path) -> None:
    lake = Lake((tmp_path / "lake").as_uri())
    episode(store, "LSVAB1234CD567891", date(2026, 3, 1))
    episode(store, "LSVAB1234CD567890", date(2026, 3, 1), cell=None)
    episode(store, "LSVAB1234CD567890", date(2026, 3, 4))
    written = publish_alerts(lake, store, date(2026, 3, 1), date(2026, 3, 4))
    assert written == [partition_key(date(2026, 3, 1)), partition_key(date(2026, 3, 4))]
    first = lake.read_parquet(partition_key(date(2026, 3, 1)))
    assert first.schema == ALERT_SCHEMA
    assert first.select(["vin", "first_as_of", "suspect_cell", "notified_at"]).to_pylist() == [
        {"vin": "LSVAB1234CD567890", "first_as_of": date(2026, 3, 1), "suspect_cell": None, "notified_at": None},
        {"vin": "LSVAB1234CD567891", "first_as_of": date(2026, 3, 1), "suspect_cell": 7, "notified_at": None}]
    before = lake.read_bytes(partition_key(date(2026, 3, 1)))
    publish_alerts(lake, store, date(2026, 3, 1), date(2026, 3, 4))
    assert lake.read_bytes(partition_key(date(2026, 3, 1))) == before


def test_a_later_notification_is_copied_and_a_date_without_episodes_loses_its_object(store, tmp_path) -> None:
    lake = Lake((tmp_path / "lake").as_uri())
    episode(store, "LSVAB1234CD567890", date(2026, 3, 1))
    stale = partition_key(date(2026, 3, 2))
    lake.write_parquet(stale, ALERT_SCHEMA.empty_table())  # left by an earlier run
    store.mark_notified("LSVAB1234CD567890", "full", date(2026, 3, 1), MADE, "webhook")
    publish_alerts(lake, store, date(2026, 3, 1), date(2026, 3, 2))
    assert not lake.exists(stale)
    row = lake.read_parquet(partition_key(date(2026, 3, 1))).to_pylist()[0]
    assert (row["notified_at"], row["channel"]) == (MADE, "webhook")


def test_the_catalog_alerts_view_reads_the_zone_and_is_empty_but_typed_without_it(store, tmp_path) -> None:
    lake = Lake((tmp_path / "lake").as_uri())
    build_catalog(lake, tmp_path / "empty.duckdb")
    with connect_read_only(tmp_path / "empty.duckdb") as con:
        assert con.execute("select count(*) from alerts").fetchall() == [(0,)]
        empty_columns = [row[0] for row in con.execute("describe alerts").fetchall()]
    episode(store, "LSVAB1234CD567890", date(2026, 3, 1))
    publish_alerts(lake, store, date(2026, 3, 1), date(2026, 3, 1))
    build_catalog(lake, tmp_path / "catalog.duckdb")
    with connect_read_only(tmp_path / "catalog.duckdb") as con:
        assert con.execute("select vin, first_as_of, dt, suspect_cell from alerts").fetchall() == [
            ("LSVAB1234CD567890", date(2026, 3, 1), date(2026, 3, 1), 7)]
        assert [row[0] for row in con.execute("describe alerts").fetchall()] == empty_columns
