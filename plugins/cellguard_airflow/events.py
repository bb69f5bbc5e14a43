"""Reading the dates CellGuard's asset events carry in their extra."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def dates_from_events(triggering_asset_events: Mapping[object, Iterable[object]] | None) -> list[str] | None:
    """Every date named by the triggering events (sorted, unique); None when the run was not asset-triggered."""
    if not triggering_asset_events:
        return None
    dates = set()
    for events in triggering_asset_events.values():
        for event in events:
            dates.update((getattr(event, "extra", None) or {}).get("dates") or [])
    return sorted(dates)
