"""validate_frames on small frames tables: clean passes, each broken rule fails with its count, docs."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest

from pipelines.quality import runner
from pipelines.quality.rules import RANGE_RULES, SET_RULES, frame_metrics
from pipelines.quality.runner import QualityReport, docs_run_name
from pipelines.quality.suite import build_frame_suite


def _failures(report: QualityReport) -> dict[tuple[str, str], dict]:
    return {(f["rule"], f["column"]): f for f in report.failures}


def test_clean_frames_pass(validate, make_frames):
    report = validate(make_frames(6))
    expected = len(build_frame_suite().expectations)
    assert report == QualityReport(True, expected, expected, [], None)


def test_precomputed_metrics_are_used(validate, make_frames):
    frames = make_frames(4)
    broken = make_frames(4, overrides={"soc_pct": {0: 150.0}})
    assert not validate(frames, metrics=frame_metrics(broken)).success


def test_out_of_range_soc_fails_the_soc_rule_only(validate, make_frames):
    report = validate(make_frames(6, overrides={"soc_pct": {1: 100.5, 4: -3.0}}))
    assert not report.success
    assert report.successful_expectations == report.evaluated_expectations - 1
    (failure,) = report.failures
    assert failure["rule"] == "soc_range"
    assert failure["expectation"] == "expect_column_values_to_be_between"
    assert failure["column"] == "soc_pct"
    assert failure["unexpected_count"] == 2
    assert sorted(failure["partial_unexpected_list"]) == [-3.0, 100.5]


def test_bad_vins_fail_the_vin_format(validate, make_frames):
    bad = {0: "LSVAA4180E210000I", 3: "SHORT"}  # I is never used in a VIN
    report = validate(make_frames(6, overrides={"vin": bad}))
    (failure,) = report.failures
    assert (failure["rule"], failure["expectation"]) == ("vin_format", "expect_column_values_to_match_regex")
    assert failure["unexpected_count"] == 2
    assert sorted(failure["partial_unexpected_list"]) == sorted(bad.values())


def test_duplicate_vin_ts_fails_uniqueness(validate, make_frames):
    # rows 0 and 2 are the same vehicle; give row 2 row 0's time
    first_ts = make_frames(1)["ts"][0].as_py()
    report = validate(make_frames(6, overrides={"ts": {2: first_ts}}))
    (failure,) = report.failures
    assert failure["expectation"] == "expect_compound_columns_to_be_unique"
    assert failure["column"] == "vin,ts"
    assert failure["rule"] == "unique_vin_ts"
    assert failure["unexpected_count"] == 2  # GE counts every row of a duplicated key
    assert {row["vin"] for row in failure["partial_unexpected_list"]} == {"LSVAA4180E2100001"}


def test_ts_outside_the_window_fails(validate, make_frames):
    overrides = {
        "ts": {0: dt.datetime(2015, 12, 31, tzinfo=dt.UTC), 1: dt.datetime(2024, 6, 2, tzinfo=dt.UTC)}
    }
    (failure,) = validate(make_frames(6, overrides=overrides)).failures
    assert (failure["rule"], failure["column"], failure["unexpected_count"]) == ("ts_window", "ts", 2)


def test_required_null_fails_not_null_and_null_cell_list_fails_cell_count(validate, make_frames):
    report = validate(make_frames(6, overrides={"soc_pct": {2: None}, "cell_mv": {3: None}}))
    failures = _failures(report)
    assert set(failures) == {("required", "soc_pct"), ("cell_count_range", "cell_count")}
    assert failures[("required", "soc_pct")]["unexpected_count"] == 1
    assert failures[("cell_count_range", "cell_count")]["partial_unexpected_list"] == [0]


# How to break each rule whose column is a derived metric, through the frame's list columns.
_METRIC_VIOLATIONS = {
    "cell_count": ("cell_mv", []),
    "cell_min_mv": ("cell_mv", [999, 3300]),
    "cell_max_mv": ("cell_mv", [3300, 5001]),
    "probe_min_c": ("probe_temp_c", [-41, 25]),
    "probe_max_c": ("probe_temp_c", [25, 126]),
}


def _violation(rule, arrow_type):
    """(column, value) that breaks the range rule, or None if the column's type cannot hold one."""
    if rule.column in _METRIC_VIOLATIONS:
        return _METRIC_VIOLATIONS[rule.column]
    import pyarrow as pa

    high, low = rule.high + 1, rule.low - 1
    if pa.types.is_integer(arrow_type):
        info_max = 2 ** (arrow_type.bit_width - (0 if pa.types.is_unsigned_integer(arrow_type) else 1)) - 1
        info_min = 0 if pa.types.is_unsigned_integer(arrow_type) else -(info_max + 1)
        if high <= info_max:
            return rule.column, high
        if low >= info_min:
            return rule.column, low
        return None
    return rule.column, high


def test_every_rule_catches_its_own_violation(validate, make_frames):
    from pipelines.schema import FRAME_SCHEMA

    overrides: dict[str, dict[int, object]] = {}
    expected: dict[tuple[str, str], int] = {}
    row = 0
    for rule in RANGE_RULES:
        violation = _violation(
            rule, FRAME_SCHEMA.field(rule.column).type if rule.column in FRAME_SCHEMA.names else None
        )
        if violation is None:  # e.g. alarm_flags: a uint32 cannot leave 0..2**32-1
            continue
        column, value = violation
        overrides.setdefault(column, {})[row] = value
        expected[(rule.name, rule.column)] = 1
        row += 1
    for rule in SET_RULES:
        overrides.setdefault(rule.column, {})[row] = max(rule.allowed) + 1
        expected[(rule.name, rule.column)] = 1
        row += 1
    report = validate(make_frames(row + 2, overrides=overrides))
    assert {key: f["unexpected_count"] for key, f in _failures(report).items()} == expected
    assert len(expected) >= len(RANGE_RULES) + len(SET_RULES) - 1


def test_missing_column_fails_the_column_set(validate, make_frames):
    report = validate(make_frames(4).drop_columns(["insulation_kohm"]))
    failures = _failures(report)
    assert ("frame_columns", "") in failures
    assert ("insulation_range", "insulation_kohm") in failures  # the check cannot run without it
    assert "exception" in failures[("insulation_range", "insulation_kohm")]


def test_empty_table_passes(validate, make_frames):
    assert validate(make_frames(0)).success


def test_data_docs_accumulate_batches_and_write_nothing_else(validate, make_frames, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    docs = tmp_path / "reports" / "quality"

    first = validate(make_frames(4), "landing/2024-05-01/fleet-a.csv", docs)
    second = validate(make_frames(4, overrides={"soc_pct": {0: 101.0}}), "fleet-b", docs)

    assert first.docs_index == second.docs_index == docs.resolve() / "index.html"
    index = (docs / "index.html").read_text()
    assert docs_run_name("landing/2024-05-01/fleet-a.csv") == "landing_2024-05-01_fleet-a.csv"
    assert "'run_name': 'landing_2024-05-01_fleet-a.csv'" in index
    assert "'run_name': 'fleet-b'" in index
    assert len(list((docs / "validations").rglob("*.html"))) == 2
    assert list(cwd.iterdir()) == []  # no gx/ folder or anything else outside docs_dir
    assert {p.name for p in tmp_path.iterdir()} == {"cwd", "reports"}


def test_data_docs_rerun_replaces_and_old_batches_are_pruned(validate, make_frames, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "DOCS_KEEP_RESULTS", 2)
    docs = tmp_path / "docs"
    for name in ("batch-one", "batch-two", "batch-two", "batch-three"):
        validate(make_frames(2), name, docs)
    pages = sorted(p.parent.parent.name for p in (docs / "validations").rglob("*.html"))
    assert pages == ["batch-three", "batch-two"]
    results = sorted(
        p.parent.parent.name
        for p in (docs / runner.STORES_FOLDER).rglob("*.json")
        if "validations" in p.parts
    )
    assert results == ["batch-three", "batch-two"]
    index = (docs / "index.html").read_text()
    assert "'run_name': 'batch-three'" in index
    assert "'run_name': 'batch-two'" in index
    assert "batch-one" not in index
    assert not (docs / "validations" / "frame_contract" / "batch-one").exists()


def test_data_docs_accumulate_across_processes(validate, make_frames, tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    validate(make_frames(2), "first-process", docs)
    monkeypatch.setattr(runner, "_VALIDATORS", {})  # what a new task process starts with
    validate(make_frames(2, overrides={"alarm_level": {0: 7}}), "second-process", docs)
    index = (docs / "index.html").read_text()
    assert "'run_name': 'first-process'" in index
    assert "'run_name': 'second-process'" in index
    assert len(list((docs / "validations").rglob("*.html"))) == 2


def test_data_docs_survive_a_wiped_docs_dir(validate, make_frames, tmp_path):
    docs = tmp_path / "docs"
    validate(make_frames(2), "before", docs)
    shutil.rmtree(docs)
    report = validate(make_frames(2), "after", docs)
    assert report.success
    assert "'run_name': 'after'" in (docs / "index.html").read_text()
    assert (docs / "expectations" / "frame_contract.html").exists()


def test_docs_and_no_docs_agree(validate, make_frames, tmp_path):
    frames = make_frames(6, overrides={"charge_state": {0: 9}})
    with_docs, without = validate(frames, "x", tmp_path), validate(frames)
    assert with_docs.failures == without.failures
    assert with_docs.docs_index is not None and without.docs_index is None


@pytest.mark.parametrize("name", ["", "///"])
def test_docs_run_name_is_never_empty(name):
    assert docs_run_name(name) == "batch"
