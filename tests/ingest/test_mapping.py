"""Column mappings: the built-in YAMLs, malformed files, CELLGUARD_MAPPINGS_DIR, and a custom source end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.ingest.mapping import (
    ListSpec,
    MappingError,
    load_mapping,
    load_mappings,
    parse_mapping,
    source_of,
)

from .builders import VIN_A, csv_bytes, entry, frames, landing_key, put, run_ingest, utc

MINIMAL = {
    "name": "fleet_b",
    "vin": {"column": "VIN"},
    "timestamp": {"column": "time_ms", "format": "epoch_ms"},
    "fields": {
        "pack_voltage_v": {"column": "pack_dV", "scale": 0.1},
        "pack_current_a": {"column": "pack_dA", "scale": 0.1, "offset": -1000},
        "soc_pct": {"column": "soc"},
    },
    "cells": {"wide_prefix": "cell", "unit": "V"},
}


def write_yaml(folder: Path, name: str, doc: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(doc))
    return path


def test_builtin_mappings_load() -> None:
    mappings = load_mappings()
    assert sorted(mappings) == ["simulator", "wide_export"]

    simulator = mappings["simulator"]
    assert (simulator.vin_column, simulator.ts_column, simulator.ts_format, simulator.ts_timezone) == ("vin", "ts", "iso8601", "UTC")
    assert simulator.cells == ListSpec("cell_mv", "V_", unit="mV", invalid=(65534.0, 65535.0))
    assert (simulator.probes.list_column, simulator.probes.encoding, simulator.probes.invalid) == ("probe_temp_code", "gbt_code", (254.0, 255.0))
    assert simulator.fields["alarm_flags"].invalid == (4294967294.0, 4294967295.0)

    wide = mappings["wide_export"]
    assert wide.vin_column is None and wide.vin_filename_pattern == "^(?P<vin>[A-Za-z0-9]{17})"
    assert (wide.ts_column, wide.ts_format, wide.ts_timezone) == ("tboxTime", "%Y-%m-%d %H:%M:%S", "Asia/Shanghai")
    assert (wide.cells.wide_prefix, wide.cells.unit, wide.cells.invalid) == ("V_", "V", (0.0, 5.0, 65.534, 65.535))
    assert (wide.probes.wide_prefix, wide.probes.encoding) == ("T_", "auto")
    assert wide.fields["soc_pct"].column == "vehBMSPackSOC"
    assert "vehicle_state" not in wide.fields


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["fields"].update(battery_temp={"column": "bt"}), "fields.battery_temp is not a frame column"),
        (lambda d: d["timestamp"].update(timezone="Mars/Olympus_Mons"), "timestamp.timezone 'Mars/Olympus_Mons' is not a known time zone"),
        (lambda d: d.pop("timestamp"), "missing key 'timestamp'"),
        (lambda d: d.pop("name"), "missing key 'name'"),
        (lambda d: d["fields"]["soc_pct"].pop("column"), "missing key 'column'"),
        (lambda d: d["cells"].update(unit="kV"), "cells.unit must be mV or V, not 'kV'"),
        (lambda d: d.update(probes={"wide_prefix": "T_", "encoding": "fahrenheit"}), "probes.encoding must be celsius, gbt_code or auto"),
        (lambda d: d["vin"].update(filename_pattern="^(?P<vin>.{17})"), "vin needs exactly one of 'column' or 'filename_pattern'"),
        (lambda d: d.update(vin={"filename_pattern": "^(.{17})"}), "vin.filename_pattern needs a named group (?P<vin>...)"),
        (lambda d: d["fields"]["soc_pct"].update(invalid="255"), "fields.soc_pct: 'invalid' must be a list of numbers"),
        (lambda d: d.update(cells={"unit": "mV"}), "cells needs list_column or wide_prefix"),
    ],
    ids=["unknown_frame_column", "bad_timezone", "no_timestamp", "no_name", "field_without_column", "bad_unit",
         "bad_encoding", "two_vin_sources", "vin_pattern_without_group", "invalid_not_a_list", "cells_without_source"],
)
def test_malformed_mapping_names_the_key(tmp_path: Path, change, message: str) -> None:
    doc = yaml.safe_load(yaml.safe_dump(MINIMAL))
    change(doc)
    path = write_yaml(tmp_path, "broken.yaml", doc)
    with pytest.raises(MappingError) as error:
        load_mapping(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)  # the file is named too


def test_mapping_that_is_not_a_document(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- just\n- a list\n")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(MappingError, match="expected a mapping document"):
        load_mapping(tmp_path / "list.yaml")
    with pytest.raises(MappingError, match="not valid YAML"):
        load_mapping(tmp_path / "bad.yaml")


def test_parse_mapping_defaults() -> None:
    mapping = parse_mapping(MINIMAL)
    assert mapping.ts_timezone == "UTC"
    assert mapping.fields["pack_current_a"].scale == 0.1
    assert mapping.fields["pack_current_a"].offset == -1000.0
    assert mapping.probes == ListSpec()
    assert mapping.path is None


def test_mappings_dir_overrides_and_extends(tmp_path: Path) -> None:
    extra = tmp_path / "mappings"
    override = yaml.safe_load((Path(load_mappings()["simulator"].path)).read_text())
    override["description"] = "site override"
    override["timestamp"]["timezone"] = "Europe/Berlin"
    write_yaml(extra, "simulator.yaml", override)
    write_yaml(extra, "fleet_b.yml", MINIMAL)

    mappings = load_mappings(extra)
    assert sorted(mappings) == ["fleet_b", "simulator", "wide_export"]
    assert mappings["simulator"].description == "site override"
    assert mappings["simulator"].ts_timezone == "Europe/Berlin"
    assert mappings["simulator"].path == extra / "simulator.yaml"
    assert mappings["fleet_b"].cells.unit == "V"
    assert load_mappings(tmp_path / "absent") == load_mappings()


def test_mappings_dir_setting_drives_ingest(lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new source, defined only in CELLGUARD_MAPPINGS_DIR: epoch-ms time, scaled fields, volts in cell1..cellN."""
    write_yaml(tmp_path / "mappings", "fleet_b.yaml", MINIMAL)
    start_ms = int(utc("2026-01-05T00:00:00Z").timestamp() * 1000)
    data = csv_bytes(
        ["VIN", "time_ms", "pack_dV", "pack_dA", "soc", "cell1", "cell2", "cell3"],
        [[VIN_A.lower(), start_ms, 3504, 10205, 55, 3.650, 3.651, 3.652],
         [VIN_A, start_ms + 10_000, 3505, 9800, 56, 3.653, 3.654, 3.655]],
    )
    early = put(lake, landing_key(VIN_A, "2026-01-04", source="fleet_b"), data)
    without = run_ingest(lake)
    assert without.rejected_objects == 1
    assert "no column mapping for source 'fleet_b'" in entry(lake, early).error
    assert lake.read_bytes(f"quarantine/files/{entry(lake, early).source_id}/{VIN_A}_2026-01-04.csv") == data

    monkeypatch.setenv("CELLGUARD_MAPPINGS_DIR", str(tmp_path / "mappings"))
    key = put(lake, landing_key(VIN_A, source="fleet_b"), data)
    summary = run_ingest(lake)
    # The early object is retried now that its source has a mapping; the second carries the same frames.
    assert (summary.objects, summary.accepted, summary.duplicates) == (2, 2, 2)
    assert entry(lake, key).mapping == "fleet_b" and entry(lake, early).mapping == "fleet_b"
    rows = frames(lake).to_pylist()
    assert [r["vin"] for r in rows] == [VIN_A, VIN_A]  # trimmed and upper-cased
    assert [r["ts"] for r in rows] == [utc("2026-01-05T00:00:00Z"), utc("2026-01-05T00:00:10Z")]
    assert [r["pack_voltage_v"] for r in rows] == pytest.approx([350.4, 350.5])
    assert [r["pack_current_a"] for r in rows] == pytest.approx([20.5, -20.0])
    assert [r["cell_mv"] for r in rows] == [[3650, 3651, 3652], [3653, 3654, 3655]]
    assert rows[0]["probe_temp_c"] is None and rows[0]["vehicle_state"] is None
    assert "optional columns not in file" not in " ".join(entry(lake, key).warnings)


def test_wide_columns_in_cell_order() -> None:
    spec = ListSpec(wide_prefix="V_")
    names = ["vin", "V_10", "V_2", "T_1", "V_1", "V_9", "V_x", "V_11", "xV_3"]
    assert spec.wide_columns(names) == ["V_1", "V_2", "V_9", "V_10", "V_11"]
    assert ListSpec(list_column="cell_mv").wide_columns(names) == []


def test_required_and_used_source_columns() -> None:
    simulator = load_mappings()["simulator"]
    csv_columns = ["vin", "ts", "pack_voltage_v", "pack_current_a", "V_1", "V_2", "T_1", "firmware"]
    assert simulator.required_source_columns(csv_columns) == {"soc_pct": "column 'soc_pct'"}
    assert simulator.required_source_columns(["vin", "ts", "pack_voltage_v", "pack_current_a", "soc_pct"]) == {
        "cell_mv": "column 'cell_mv' or columns V_1..n"}
    assert "firmware" not in simulator.source_columns(csv_columns)
    assert {"V_1", "V_2", "T_1", "vin", "ts"} <= simulator.source_columns(csv_columns)


def test_source_of_key() -> None:
    assert source_of("landing/simulator/2026-01-05/x.csv") == "simulator"
    assert source_of("landing/wide_export/x.csv") == "wide_export"
    assert source_of("landing/x.csv") == ""
    assert source_of("frames/dt=2026-01-05/x.parquet") == ""
