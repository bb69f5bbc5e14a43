"""The DuckDB catalog: views over frames, quarantine and manifest that match ingest, rebuilt atomically."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from pipelines.config import load_settings
from pipelines.ingest import ingest_pending
from pipelines.storage.catalog import build_catalog, connect_read_only, refresh_local_catalog
from pipelines.storage.lake import Lake

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
