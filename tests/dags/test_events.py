"""plugins/cellguard_airflow/events.py: the dates asset events carry in their extra."""

from __future__ import annotations

from types import SimpleNamespace

from cellguard_airflow.events import dates_from_events


def test_dates_of_every_triggering_event_are_merged_sorted_and_unique() -> None:
    events = {"frames": [SimpleNamespace(extra={"dates": ["2026-01-03", "2026-01-01"]}),
                         SimpleNamespace(extra={"dates": ["2026-01-01", "2026-01-02"], "run_id": "x"}),
                         SimpleNamespace(extra=None)]}
    assert dates_from_events(events) == ["2026-01-01", "2026-01-02", "2026-01-03"]


def test_a_run_that_no_asset_triggered_has_no_dates() -> None:
    assert dates_from_events(None) is None and dates_from_events({}) is None
