"""Damaged re-uploads: each kind ends in quarantine with its own rule, the rest of the copy counts as duplicates."""

from __future__ import annotations

import datetime as dt

from pipelines.ingest import ingest_pending
from pipelines.ingest.manifest import load_manifest
from pipelines.simulate import SimulationParams, simulate_fleet
from pipelines.simulate.damage import DAMAGES, damage_uploads
from pipelines.storage.lake import Lake


def test_every_damage_kind_is_quarantined_for_its_own_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLGUARD_HOME", str(tmp_path))
    monkeypatch.setenv("CELLGUARD_DATA_DOCS", "0")
    lake = Lake((tmp_path / "lake").as_uri())
    summary = simulate_fleet(SimulationParams(vehicles=2, days=1, file_format="csv", seed=3), lake)
    damaged = damage_uploads(lake, summary.landing_keys, seed=1)
    assert len(damaged) == len(DAMAGES)

    ingest_pending(lake=lake, now=dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    manifest = load_manifest(lake)
    expected_rule = {"soc_out_of_range": "soc_range", "vin_typo": "vin_format", "not_a_number": "number_format",
                     "future_timestamp": "ts_future", "bad_bytes": "unparseable_line", "truncated_gzip": "unreadable"}
    for key in damaged:
        kind = key.rsplit("-", 1)[1].split(".")[0]
        entry = manifest[key]
        assert entry.rejected_by_rule == {expected_rule[kind]: 1}, (kind, entry.rejected_by_rule)
        assert entry.reconciles()
        if kind != "truncated_gzip":
            assert entry.accepted == 0 and entry.duplicates == entry.rows_in - 1, "the intact rows were delivered before"
