"""pipelines/serving/tour.py: what the demo prints about the fleet, and the reference request it builds."""

from __future__ import annotations

import socket
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from pipelines.schema import CELL_DAILY_SCHEMA, DAILY_SCHEMA
from pipelines.serving.tour import at_risk_lines, recent_as_of_dates, reference_body, wait_for
from pipelines.storage import daily_zone, predictions_zone
from pipelines.storage.event_store import prediction_table
from pipelines.storage.lake import Lake

VIN_A, VIN_B = "LSVAB1234CD567890", "LFV2A2156K3000001"
AS_OF = date(2026, 3, 1)


def prediction(vin: str, as_of: date, probability: float, alarm: bool, cell: int | None) -> dict:
    return {"vin": vin, "as_of": as_of, "model_version": "v1", "feature_set": "full", "probability": probability,
            "alarm": alarm, "threshold": 0.3, "suspect_cell": cell, "source": "batch",
            "reasons": [{"feature": "cell_range_mean_mv_lag1", "contribution": 1.2, "value": 42.0}],
            "request_id": f"batch:{vin}", "created_at": datetime(2026, 3, 1, tzinfo=UTC)}


def test_at_risk_lists_the_newest_predictions_most_probable_first(tmp_path) -> None:
    lake = Lake(tmp_path.as_uri())
    older = AS_OF - timedelta(days=1)
    predictions_zone.write_batch(lake, older, "v1", prediction_table([prediction(VIN_A, older, 0.99, True, 3)]))
    predictions_zone.write_batch(lake, AS_OF, "v1", prediction_table([prediction(VIN_A, AS_OF, 0.2, False, None),
                                                                       prediction(VIN_B, AS_OF, 0.8, True, 7)]))
    lines = at_risk_lines(lake, top=5)
    assert "top 2 of 2 vehicles at as_of 2026-03-01" in lines[0] and "≥ 0.300" in lines[0]
    assert lines[2].split() == [VIN_B, "0.800", "yes", "7", "cell_range_mean_mv_lag1", "=", "42"]
    assert lines[3].split()[:4] == [VIN_A, "0.200", "no", "—"]


def test_no_predictions_says_which_dag_makes_them(tmp_path) -> None:
    assert "run bms_batch_inference" in at_risk_lines(Lake(tmp_path.as_uri()))[0]


def test_the_reference_body_holds_84_values_oldest_day_first_and_empty_for_a_missing_day(tmp_path) -> None:
    lake = Lake(tmp_path.as_uri())
    for lag in (14, 1):  # only the oldest and the newest context day have rows
        day = AS_OF - timedelta(days=lag)
        row = {"vin": VIN_A, "dt": day, "total_voltage": 300.0 + lag, "total_current": 1.5, "cell_max_voltage": 3.7,
               "cell_min_voltage": 3.6, "max_temperature": 30.0, "min_temperature": 20.0, "alarm": False}
        daily_zone.write_computed(lake, day, pa.Table.from_pylist([row], DAILY_SCHEMA), CELL_DAILY_SCHEMA.empty_table())
    body = reference_body(lake, VIN_A, AS_OF)
    values = body["features"].split(",")
    assert (body["vin"], body["date"], len(values)) == (VIN_A, "2026-03-01", 84)
    assert values[:6] == ["314", "1.5", "3.7", "3.6", "30", "20"] and values[-6:] == ["301", "1.5", "3.7", "3.6", "30", "20"]
    assert values[6:78] == [""] * 72
    with pytest.raises(ValueError, match="no daily rows"):
        reference_body(lake, VIN_B, AS_OF)


def test_waiting_for_a_server_that_never_starts_gives_up_with_its_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(TimeoutError, match=f"127.0.0.1:{port}/ping"):
            wait_for([f"http://127.0.0.1:{port}/ping"], seconds=1)


def test_alert_lines_show_each_episode_once_with_how_it_was_sent(tmp_path) -> None:
    from pipelines.serving.tour import alert_lines
    from pipelines.storage.event_store import EventStore

    store = EventStore(f"sqlite:///{tmp_path / 'events.sqlite'}")
    assert "no alarm episodes" in alert_lines(store, AS_OF)[0]
    store.record_alert(vin=VIN_B, feature_set="full", first_as_of=AS_OF - timedelta(days=2), model_version="v1",
                       probability=0.81, threshold=0.3, suspect_cell=7)
    store.record_alert(vin=VIN_A, feature_set="full", first_as_of=AS_OF - timedelta(days=20), model_version="v1",
                       probability=0.9, threshold=0.3, suspect_cell=None)  # started before the 14 days
    store.mark_notified(VIN_B, "full", AS_OF - timedelta(days=2), datetime(2026, 3, 1, tzinfo=UTC), "store")
    lines = alert_lines(store, AS_OF)
    assert lines[0].startswith("1 alarm episode(s) started in the 14 days up to 2026-03-01")
    assert lines[1].split() == [VIN_B, "from", "2026-02-27", "probability", "0.810", "suspect", "cell", "7",
                                "(sent", "via", "store)"]
    store.record_alert(vin=VIN_A, feature_set="full", first_as_of=AS_OF, model_version="v1", probability=0.5,
                       threshold=0.3, suspect_cell=3)
    newest = alert_lines(store, AS_OF, most=1)
    assert newest[0].endswith("; the newest 1:") and len(newest) == 2 and newest[1].split()[:3] == [VIN_A, "from", "2026-03-01"]


def test_recent_as_of_dates_end_the_day_after_the_newest_daily_date(tmp_path) -> None:
    lake = Lake(tmp_path.as_uri())
    for day in (date(2026, 2, 20), date(2026, 2, 28)):
        row = {"vin": VIN_A, "dt": day, "alarm": False}
        daily_zone.write_computed(lake, day, pa.Table.from_pylist([row], DAILY_SCHEMA), CELL_DAILY_SCHEMA.empty_table())
    assert recent_as_of_dates(lake, days=3) == [date(2026, 2, 27), date(2026, 2, 28), date(2026, 3, 1)]
    assert len(recent_as_of_dates(lake)) == 14
