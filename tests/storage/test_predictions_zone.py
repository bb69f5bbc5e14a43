"""The predictions zone: deterministic batch objects, the API's buffer (size, time, close, crash) and reading back."""

from __future__ import annotations

import gc
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import load_settings
from pipelines.schema import PREDICTION_SCHEMA
from pipelines.storage import predictions_zone
from pipelines.storage.catalog import build_catalog, connect_read_only
from pipelines.storage.event_store import EventStore
from pipelines.storage.lake import Lake
from pipelines.storage.predictions_zone import PredictionBuffer, read_predictions, write_batch, write_rows

VIN_A = "LSVAB1234CD567890"
VIN_B = "LFV2A2156K3000001"
DAY = date(2026, 1, 5)
NEXT_DAY = date(2026, 1, 6)
VERSION = "20260101t000000z-full-ab12cd34"
MADE = datetime(2026, 1, 6, 2, 0, tzinfo=UTC)


def prediction(vin: str = VIN_A, as_of: date = DAY, request_id: str = "req-1", source: str = "api", **changes) -> dict:
    row = {"vin": vin, "as_of": as_of, "model_version": VERSION, "feature_set": "full", "probability": 0.72,
           "alarm": True, "threshold": 0.5, "suspect_cell": 17,
           "reasons": [{"feature": "suspect_cell_z_lag1", "contribution": 1.25, "value": 4.5}],
           "source": source, "request_id": request_id, "created_at": MADE}
    return row | changes


def batch_rows(*vins: str, as_of: date = DAY) -> pa.Table:
    return pa.Table.from_pylist([prediction(vin=v, as_of=as_of, source="batch", request_id=f"run-{as_of}",
                                            probability=0.1 * i) for i, v in enumerate(vins, 1)], PREDICTION_SCHEMA)


def raw_rows(lake: Lake) -> list[tuple[str, str]]:
    """(object key, request_id) of every row in every object of the zone, duplicates included."""
    return [(info.key, request_id) for info in lake.list("predictions")
            for request_id in lake.read_parquet(info.key)["request_id"].to_pylist()]


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def store(tmp_path: Path):
    store = EventStore(f"sqlite:///{tmp_path / 'events.sqlite'}")
    yield store
    store.close()


def test_write_batch_replaces_its_object_with_the_same_bytes(lake: Lake) -> None:
    rows = batch_rows(VIN_A, VIN_B)
    key = write_batch(lake, DAY, VERSION, rows)
    assert key == f"predictions/dt=2026-01-05/batch-{VERSION}.parquet"
    first_bytes = lake.read_bytes(key)
    assert write_batch(lake, DAY, VERSION, rows.take([1, 0])) == key  # re-run, rows in another order
    assert lake.read_bytes(key) == first_bytes
    assert [i.key for i in lake.list("predictions")] == [key]
    assert pq.read_metadata(lake.path(key)).row_group(0).column(0).compression == "ZSTD"
    stored = read_predictions(lake)
    assert stored.schema == PREDICTION_SCHEMA
    assert [(r["vin"], r["probability"], r["source"]) for r in stored.to_pylist()] == [(VIN_B, 0.2, "batch"),
                                                                                       (VIN_A, 0.1, "batch")]
    write_batch(lake, DAY, VERSION, rows.slice(0, 0))  # a re-run without rows removes them
    assert lake.list("predictions") == []


@pytest.mark.parametrize(("changes", "message"), [
    ({"as_of": NEXT_DAY}, "batch row 1: as_of = datetime.date\\(2026, 1, 6\\), but this batch object holds as_of"),
    ({"source": "api"}, "batch row 1: source = 'api', but this batch object holds source = 'batch' only"),
    ({"model_version": "other"}, "batch row 1: model_version = 'other'"),
])
def test_write_batch_refuses_rows_of_another_object(lake: Lake, changes: dict, message: str) -> None:
    rows = pa.Table.from_pylist([prediction(source="batch") | changes], PREDICTION_SCHEMA)
    with pytest.raises(ValueError, match=message):
        write_batch(lake, DAY, VERSION, rows)
    with pytest.raises(ValueError, match="cannot name a lake object"):
        write_batch(lake, DAY, "../escape", batch_rows(VIN_A))


def test_write_rows_names_objects_by_their_rows(lake: Lake) -> None:
    rows = pa.Table.from_pylist([prediction(request_id="r/1"), prediction(request_id="r2", as_of=NEXT_DAY),
                                 prediction(request_id="r3")], PREDICTION_SCHEMA)
    keys = write_rows(lake, rows)
    assert [k.rsplit("-", 1)[0] for k in keys] == ["predictions/dt=2026-01-05/api-r_1",
                                                   "predictions/dt=2026-01-06/api-r2"]
    contents = {k: lake.read_bytes(k) for k in keys}
    assert write_rows(lake, rows.take([2, 1, 0])) == keys  # a retried flush rewrites the same objects
    assert {k: lake.read_bytes(k) for k in keys} == contents
    other = write_rows(lake, rows.slice(0, 1))  # different rows never replace an object holding others
    assert other[0] not in keys
    assert len(raw_rows(lake)) == 4 and read_predictions(lake).num_rows == 3  # read back once per key


def test_buffer_records_first_and_flushes_when_full(lake: Lake, store: EventStore) -> None:
    with PredictionBuffer(lake, store, max_rows=3, max_seconds=3600) as buffer:
        assert buffer.add([prediction(request_id="r1"), prediction(request_id="r2")]) == 2
        assert store.unflushed()["request_id"].to_pylist() == ["r1", "r2"]  # durable before the lake
        assert raw_rows(lake) == [] and buffer.pending_rows == 2
        assert buffer.add([prediction(request_id="r2")]) == 0  # known key: not buffered twice
        assert buffer.add([prediction(request_id="r3", as_of=NEXT_DAY)]) == 1
        assert buffer.pending_rows == 0
        assert store.unflushed().num_rows == 0
        assert sorted(r for _, r in raw_rows(lake)) == ["r1", "r2", "r3"]
        assert sorted({k.split("/")[1] for k, _ in raw_rows(lake)}) == ["dt=2026-01-05", "dt=2026-01-06"]


def test_buffer_flushes_when_the_oldest_row_is_old_enough(lake: Lake, store: EventStore) -> None:
    buffer = PredictionBuffer(lake, store, max_rows=500, max_seconds=0.2)
    try:
        buffer.add([prediction(request_id="r1")])
        wait_for(lambda: store.unflushed().num_rows == 0)
        assert raw_rows(lake)[0][1] == "r1" and len(raw_rows(lake)) == 1
        assert read_predictions(lake).to_pylist()[0] == prediction(request_id="r1")
    finally:
        buffer.close()


def test_close_flushes_the_rest_and_refuses_more(lake: Lake, store: EventStore) -> None:
    buffer = PredictionBuffer(lake, store, max_rows=100, max_seconds=3600)
    buffer.add([prediction(request_id=f"r{i}") for i in range(5)])
    assert raw_rows(lake) == []
    buffer.close()
    assert sorted(r for _, r in raw_rows(lake)) == [f"r{i}" for i in range(5)]
    assert store.unflushed().num_rows == 0
    buffer.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        buffer.add([prediction(request_id="late")])


def test_api_workers_adding_at_once_lose_nothing(lake: Lake, store: EventStore) -> None:
    buffer = PredictionBuffer(lake, store, max_rows=7, max_seconds=0.05)
    start = threading.Barrier(4)

    def worker(w: int) -> None:
        start.wait()
        for i in range(25):
            buffer.add([prediction(vin=f"LSVAB1234CD5{w:05d}", request_id=f"w{w}-{i}")])

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    buffer.close()
    assert store.unflushed().num_rows == 0
    assert len(raw_rows(lake)) == 100  # every row once, no object written twice with different rows
    assert read_predictions(lake).num_rows == 100


def test_a_crash_before_flushing_is_recovered_exactly_once(lake: Lake, store: EventStore, tmp_path: Path) -> None:
    crashed = PredictionBuffer(lake, store, max_rows=500, max_seconds=3600)
    crashed.add([prediction(request_id="r1"), prediction(vin=VIN_B, request_id="r2")])
    crashed.add([prediction(request_id="r3", as_of=NEXT_DAY, alarm=False, probability=0.25)])
    del crashed  # the process dies: no close(), the buffered rows are gone from memory
    gc.collect()
    assert raw_rows(lake) == [] and store.unflushed().num_rows == 3

    with PredictionBuffer(lake, store, max_rows=500, max_seconds=3600) as restarted:
        assert restarted.recover() == 3
        assert restarted.recover() == 0
    assert sorted(r for _, r in raw_rows(lake)) == ["r1", "r2", "r3"]  # exactly once
    assert store.unflushed().num_rows == 0

    path = build_catalog(lake, tmp_path / "catalog.duckdb")
    with connect_read_only(path) as con:
        assert con.execute("select vin, as_of::varchar, request_id, probability, alarm, reasons[1].feature "
                           "from predictions order by request_id").fetchall() == [
            (VIN_A, "2026-01-05", "r1", 0.72, True, "suspect_cell_z_lag1"),
            (VIN_B, "2026-01-05", "r2", 0.72, True, "suspect_cell_z_lag1"),
            (VIN_A, "2026-01-06", "r3", 0.25, False, "suspect_cell_z_lag1")]


def test_a_crash_between_writing_and_stamping_reads_once(lake: Lake, store: EventStore, tmp_path: Path) -> None:
    rows = [prediction(request_id="r1"), prediction(request_id="r2")]
    store.record_predictions(rows)
    write_rows(lake, pa.Table.from_pylist(rows[:1], PREDICTION_SCHEMA))  # a flush that died before mark_flushed
    with PredictionBuffer(lake, store) as restarted:
        assert restarted.recover() == 2
    assert sorted(r for _, r in raw_rows(lake)) == ["r1", "r1", "r2"]  # r1 is in two objects ...
    assert read_predictions(lake)["request_id"].to_pylist() == ["r1", "r2"]  # ... and read once
    path = build_catalog(lake, tmp_path / "catalog.duckdb")
    with connect_read_only(path) as con:
        assert con.execute("select request_id from predictions order by request_id").fetchall() == [("r1",), ("r2",)]


def test_recover_leaves_its_own_buffered_rows_to_its_flush(lake: Lake, store: EventStore) -> None:
    store.record_predictions([prediction(request_id="earlier")])
    with PredictionBuffer(lake, store, max_rows=500, max_seconds=3600) as buffer:
        buffer.add([prediction(request_id="mine")])
        assert buffer.recover() == 1
        assert [r for _, r in raw_rows(lake)] == ["earlier"]
    assert sorted(r for _, r in raw_rows(lake)) == ["earlier", "mine"]


def test_a_failed_flush_keeps_the_rows_for_the_next_one(tmp_path: Path, store: EventStore) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the lake's folder should be")
    buffer = PredictionBuffer(Lake(blocked.as_uri()), store, max_rows=1, max_seconds=3600)
    assert buffer.add([prediction(request_id="r1")]) == 1  # recorded; the flush failure is logged, not raised
    assert buffer.pending_rows == 1 and store.unflushed().num_rows == 1
    buffer.lake = Lake((tmp_path / "lake").as_uri())  # the lake is back
    buffer.close()
    assert read_predictions(buffer.lake)["request_id"].to_pylist() == ["r1"]
    assert store.unflushed().num_rows == 0


def test_read_predictions_by_date_range(lake: Lake) -> None:
    for offset in range(3):
        write_batch(lake, DAY + timedelta(days=offset), VERSION, batch_rows(VIN_A, as_of=DAY + timedelta(days=offset)))
    assert read_predictions(lake, first=NEXT_DAY)["as_of"].to_pylist() == [NEXT_DAY, date(2026, 1, 7)]
    assert read_predictions(lake, last=DAY)["as_of"].to_pylist() == [DAY]
    assert read_predictions(lake, first=date(2027, 1, 1)).num_rows == 0


def test_flush_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.prediction_flush_rows, settings.prediction_flush_seconds) == (500, 30.0)
    monkeypatch.setenv("CELLGUARD_PREDICTION_FLUSH_ROWS", "50")
    monkeypatch.setenv("CELLGUARD_PREDICTION_FLUSH_SECONDS", "2.5")
    assert (load_settings().prediction_flush_rows, load_settings().prediction_flush_seconds) == (50, 2.5)
    rows_error = "CELLGUARD_PREDICTION_FLUSH_ROWS must be a whole number of predictions above 0, not "
    seconds_error = "CELLGUARD_PREDICTION_FLUSH_SECONDS must be a number of seconds above 0, not "
    for name, bad, message in (("CELLGUARD_PREDICTION_FLUSH_ROWS", "0", rows_error + "'0'"),
                               ("CELLGUARD_PREDICTION_FLUSH_ROWS", "1e3", rows_error + "'1e3'"),
                               ("CELLGUARD_PREDICTION_FLUSH_SECONDS", "soon", seconds_error + "'soon'"),
                               ("CELLGUARD_PREDICTION_FLUSH_SECONDS", "-1", seconds_error + "'-1'"),
                               ("CELLGUARD_PREDICTION_FLUSH_SECONDS", "nan", seconds_error + "'nan'")):
        with monkeypatch.context() as patch:
            patch.setenv(name, bad)
            with pytest.raises(ValueError, match=message):
                load_settings()


def test_zone_module_names_its_keys() -> None:
    assert predictions_zone.partition_key(DAY, "api", "r1-abc") == "predictions/dt=2026-01-05/api-r1-abc.parquet"
