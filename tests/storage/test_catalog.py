"""The DuckDB catalog: views over frames, quarantine and manifest that match ingest, rebuilt atomically."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from pipelines.config import load_settings
from pipelines.ingest import ingest_pending
from pipelines.schema import PREDICTION_SCHEMA
from pipelines.storage.catalog import build_catalog, connect_read_only, refresh_local_catalog
from pipelines.storage.lake import Lake
from pipelines.storage.predictions_zone import write_batch

NOW = datetime(2026, 2, 1, tzinfo=UTC)
HEADER = "vin,ts,vehicle_state,charge_state,speed_kmh,odometer_km,pack_voltage_v,pack_current_a,soc_pct,insulation_kohm,V_1,V_2,V_3,T_1,alarm_level,alarm_flags"


def landing_csv(lake: Lake, vin: str, day: str, seconds: list[int], soc: dict[int, float] | None = None) -> str:
    """A simulator CSV: one frame per second offset, SOC 55 unless `soc` says otherwise (for bad rows)."""
    soc = soc or {}
    lines = [HEADER] + [f"{vin},{day}T00:00:{s:02d}Z,1,3,40,1000,350,10,{soc.get(s, 55)},5000,3650,65535,3652,65,0,0"
                        for s in seconds]
    key = f"landing/simulator/{day}/{vin}_{day}.csv"
    lake.write_bytes(key, ("\n".join(lines) + "\n").encode())
    return key


def counts(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    return tuple(con.execute(f"select count(*) from {view}").fetchone()[0] for view in ("frames", "quarantine", "manifest"))


def test_empty_lake_gives_empty_views(lake: Lake, tmp_path: Path) -> None:
    path = build_catalog(lake, tmp_path / "catalog.duckdb")
    with connect_read_only(path) as con:
        assert counts(con) == (0, 0, 0)
        assert con.execute("select * from frames").description[0][0] == "vin"


def test_catalog_counts_match_the_ingest_summary(lake: Lake, tmp_path: Path) -> None:
    landing_csv(lake, "LSVAB1234CD567890", "2026-01-05", [0, 10, 20, 30], soc={30: 150})
    landing_csv(lake, "LFV2A2156K3000001", "2026-01-06", [0, 10, 10])
    lake.write_bytes("landing/simulator/2026-01-06/broken.csv", b"")
    summary = ingest_pending(lake=lake, settings=load_settings(), now=NOW)
    assert (summary.objects, summary.accepted, summary.quarantined, summary.duplicates) == (3, 5, 1, 1)

    path = build_catalog(lake, tmp_path / "catalog.duckdb")
    with duckdb.connect(str(path), read_only=True) as con:
        frames, quarantine, manifest = counts(con)
        assert frames == summary.accepted
        assert quarantine == summary.quarantined + summary.rejected_objects  # + one record per unreadable file
        assert manifest == summary.objects
        assert con.execute("select dt::varchar, count(*) from frames group by dt order by dt").fetchall() == [
            ("2026-01-05", 3), ("2026-01-06", 2)]
        assert con.execute("select cell_mv from frames limit 1").fetchone()[0] == [3650, None, 3652]
        assert con.execute("select rule, reason from quarantine order by rule").fetchall() == [
            ("soc_range", "soc_pct = 150 is outside 0…100 (SOC is a percentage, 0–100)"),
            ("unreadable", "file is empty (0 bytes)"),
        ]
        assert con.execute("select sum(rows_in), sum(accepted), sum(quarantined), sum(duplicates) from manifest").fetchone() == (
            summary.rows_in, summary.accepted, summary.quarantined, summary.duplicates)
        assert sorted(con.execute("select status from manifest").fetchall()) == [("ingested",), ("partial",), ("rejected",)]
        with pytest.raises(duckdb.Error):
            con.execute("create table x (i int)")  # readers cannot write


def test_rebuild_while_a_reader_has_the_catalog_open(lake: Lake, tmp_path: Path) -> None:
    path = tmp_path / "catalog.duckdb"
    landing_csv(lake, "LSVAB1234CD567890", "2026-01-05", [0, 10])
    ingest_pending(lake=lake, settings=load_settings(), now=NOW)
    build_catalog(lake, path)

    reader = connect_read_only(path)
    try:
        assert counts(reader)[0] == 2
        landing_csv(lake, "LFV2A2156K3000001", "2026-01-05", [0, 10, 20])
        ingest_pending(lake=lake, settings=load_settings(), now=NOW)
        assert build_catalog(lake, path) == path  # a second writer while a reader is connected
        assert counts(reader)[0] == 5  # the reader's views read the lake, now holding both files
        with connect_read_only(path) as fresh:
            assert counts(fresh) == (5, 0, 2)
    finally:
        reader.close()
    assert sorted(p.name for p in tmp_path.iterdir() if "catalog" in p.name) == ["catalog.duckdb"]


def test_catalog_readable_by_several_readers_at_once(lake: Lake, tmp_path: Path) -> None:
    landing_csv(lake, "LSVAB1234CD567890", "2026-01-05", [0])
    ingest_pending(lake=lake, settings=load_settings(), now=NOW)
    path = build_catalog(lake, tmp_path / "catalog.duckdb")
    with connect_read_only(path) as one, connect_read_only(path) as two:
        assert counts(one) == counts(two) == (1, 0, 1)


def test_refresh_local_catalog_uses_settings(cellguard_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CELLGUARD_CATALOG_PATH", str(tmp_path / "cat" / "c.duckdb"))
    assert refresh_local_catalog() == (tmp_path / "cat" / "c.duckdb").resolve()
    assert (tmp_path / "cat" / "c.duckdb").is_file()
    monkeypatch.setenv("CELLGUARD_BACKEND", "aws")
    assert refresh_local_catalog() is None



def test_predictions_view_has_the_contract_columns_empty_or_not(lake: Lake, tmp_path: Path) -> None:
    path = build_catalog(lake, tmp_path / "catalog.duckdb")
    with connect_read_only(path) as con:
        assert con.execute("select * from predictions").fetchall() == []
        empty_columns = con.execute("describe predictions").fetchall()

    made = datetime(2026, 1, 6, 2, 0, tzinfo=UTC)
    rows = [{"vin": vin, "as_of": date(2026, 1, 5), "model_version": "v1", "feature_set": "full", "probability": p,
             "alarm": p >= 0.5, "threshold": 0.5, "suspect_cell": 3,
             "reasons": [{"feature": "suspect_cell_z_lag1", "contribution": 0.8, "value": 3.5}],
             "source": "batch", "request_id": "run-1", "created_at": made}
            for vin, p in (("LSVAB1234CD567890", 0.75), ("LFV2A2156K3000001", 0.125))]
    write_batch(lake, date(2026, 1, 5), "v1", pa.Table.from_pylist(rows, PREDICTION_SCHEMA))
    build_catalog(lake, path)
    with connect_read_only(path) as con:
        assert con.execute("select vin, as_of::varchar, probability, alarm, suspect_cell, reasons[1].value, created_at "
                           "from predictions order by vin").fetchall() == [
            ("LFV2A2156K3000001", "2026-01-05", 0.125, False, 3, 3.5, made),
            ("LSVAB1234CD567890", "2026-01-05", 0.75, True, 3, 3.5, made)]
        columns = con.execute("describe predictions").fetchall()
    # The empty zone's view has the same columns and types as the files, so a query works on both.
    assert [(c[0], c[1]) for c in columns] == [(c[0], c[1]) for c in empty_columns]
    assert [c[0] for c in columns] == PREDICTION_SCHEMA.names + ["dt"]
    assert dict((c[0], c[1]) for c in columns)["reasons"] == 'STRUCT(feature VARCHAR, contribution DOUBLE, "value" DOUBLE)[]'
