"""The dashboard's data: each JSON view put together from the lake (lake_reads.py), the event store and the registry."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import date, timedelta

import pyarrow.compute as pc

from pipelines.features.window_signals import CONTEXT_DAYS
from pipelines.serving.api_schemas import ApiError, problem
from pipelines.serving.dashboard import queries
from pipelines.serving.dashboard.lake_reads import LakeViews
from pipelines.storage.event_store import PredictionEventStore
from pipelines.storage.lake import Lake
from pipelines.training import registry

MODEL_FEATURE_SETS = ("full", "signals6")  # the lake's features first: what batch inference scores
HISTORY_LIMIT = 2000  # most predictions of one vehicle the probability history shows
PREVIOUS_WITHIN_DAYS = 7  # the change column compares with a scoring at most this much older
REPORT_FILE = re.compile(r"^[A-Za-z0-9_.-]+\.(png|html)$")
REPORT_TYPES = {"png": "image/png", "html": "text/html; charset=utf-8"}


class DashboardData:
    """The views behind /dashboard/api; thread-safe (request threads share it)."""

    def __init__(self, lake: Lake, store: Callable[[], PredictionEventStore], views: LakeViews | None = None):
        self.lake, self._store = lake, store
        self.views = views or LakeViews(lake)
        self._fleet: OrderedDict[tuple, list[dict]] = OrderedDict()
        self._fleet_lock = threading.Lock()

    # ------------------------------------------------------------------ fleet

    def scored_dates(self) -> dict[date, dict]:
        """as_of date → per feature set, vehicles scored and alarms (every date with batch predictions)."""
        counts = self.views.prediction_counts.get(self.views.prediction_listing.days())
        return {day: found for day, found in counts.items() if found}

    def fleet(self, feature_set: str, as_of: date | None, sort: str, descending: bool, query: str, show: str,
              page: int, page_size: int) -> dict:
        """A page of the fleet's risk table at as_of (default: the newest date the feature set was scored)."""
        scored = self.scored_dates()
        dates = sorted((day for day, found in scored.items() if feature_set in found), reverse=True)
        feature_sets = sorted({fs for found in scored.values() for fs in found})
        base = {"feature_set": feature_set, "feature_sets": feature_sets, "as_of_dates": dates[:120]}
        if as_of is None:
            as_of = dates[0] if dates else None
        elif as_of not in dates:
            raise ApiError(404, [problem(["query", "as_of"], f"no batch predictions of the {feature_set} champion for "
                                         f"as_of {as_of}: newest {dates[0] if dates else 'none yet'}", "not_found")])
        if as_of is None:
            empty = queries.fleet_page([], sort, descending, query, show, page, page_size)
            return {**base, "as_of": None, "previous_as_of": None, "model_version": None, "threshold": None,
                    "summary": queries.fleet_summary([], [], date.today()), **empty}
        previous = next((day for day in dates if as_of - timedelta(days=PREVIOUS_WITHIN_DAYS) <= day < as_of), None)
        rows = self._fleet_rows(feature_set, as_of, previous)
        episodes = [e for e in self._store().alerts_between(as_of - timedelta(days=366), as_of)
                    if e["feature_set"] == feature_set]
        rows = queries.with_alerts(rows, episodes, as_of)
        versions = sorted({row["model_version"] for row in rows})
        return {**base, "as_of": as_of, "previous_as_of": previous, "model_version": versions[-1] if versions else None,
                "threshold": rows[0]["threshold"] if len({row["threshold"] for row in rows}) == 1 else None,
                "summary": queries.fleet_summary(rows, episodes, as_of),
                **queries.fleet_page(rows, sort, descending, query, show, page, page_size)}

    def _fleet_rows(self, feature_set: str, as_of: date, previous: date | None) -> list[dict]:
        context = queries.calendar(as_of - timedelta(days=CONTEXT_DAYS), as_of - timedelta(days=1))
        days = [as_of] + ([previous] if previous else [])
        fingerprint = (tuple(self.views.prediction_listing.partitions().get(day) for day in days),
                       tuple(self.views.daily_listing.partitions().get(day) for day in context))
        wanted = (feature_set, as_of, previous, fingerprint)
        with self._fleet_lock:
            if wanted in self._fleet:
                self._fleet.move_to_end(wanted)
                return self._fleet[wanted]
        predictions = self.views.batch_predictions.get(days)

        def of_feature_set(day: date):
            table = predictions[day]
            return table.filter(pc.equal(table["feature_set"], feature_set))

        rows = queries.fleet_rows(of_feature_set(as_of), of_feature_set(previous) if previous else None,
                                  self.views.daily_for(context))
        with self._fleet_lock:
            self._fleet[wanted] = rows
            while len(self._fleet) > 4:
                self._fleet.popitem(last=False)
        return rows

    # ------------------------------------------------------------------ timeline

    def timeline(self, feature_set: str, days: int) -> dict:
        """Up to `days` days (from the first data on) up to the newest data: BMS alarms, predicted alarms, alerts."""
        listed = self.views.daily_listing.days() + list(self.scored_dates())
        if not listed:
            return queries.timeline([], {}, {}, [], feature_set)
        last = max(listed)
        window = queries.calendar(max(last - timedelta(days=days - 1), min(listed)), last)
        return queries.timeline(window, self.views.daily_counts.get(window), self.views.prediction_counts.get(window),
                                self._store().alerts_between(window[0], window[-1]), feature_set)

    # ------------------------------------------------------------------ a vehicle

    def _window(self, days: int) -> list[date]:
        listed = self.views.daily_listing.days()
        return queries.calendar(listed[-1] - timedelta(days=days - 1), listed[-1]) if listed else []

    def vehicle(self, vin: str, feature_set: str, days: int) -> dict:
        """A vehicle's newest prediction and reasons, its probability history and its cell-range trend."""
        predictions = self._store().predictions_for_vin(vin, limit=HISTORY_LIMIT)
        window = self._window(days)
        daily = self.views.daily_for(window, vin)
        if not predictions and daily.num_rows == 0:
            raise ApiError(404, [problem(["path", "vin"], f"no predictions and no daily rows for {vin}"
                                         + (f" in {window[0]} … {window[-1]}" if window else ""), "unknown_vehicle")])
        return {"vin": vin, "feature_set": feature_set,
                "latest": queries.latest_prediction(predictions, feature_set),
                "history": queries.probability_history(predictions),
                "trend": queries.range_trend(daily, window), "alarm_threshold": queries.alarm_threshold()}

    def cells(self, vin: str, feature_set: str, days: int, measure: str) -> dict:
        """A vehicle's cells × days deviation heatmap with its suspect cell."""
        window = self._window(days)
        daily = self.views.daily_for(window, vin)
        rows = self.views.cell_rows(vin, window, measure)
        if rows.num_rows == 0 and daily.num_rows == 0:
            raise ApiError(404, [problem(["path", "vin"], f"no cell rows for {vin}"
                                         + (f" in {window[0]} … {window[-1]}" if window else ""), "unknown_vehicle")])
        daily_suspects = dict(zip(daily["dt"].to_pylist(), daily["suspect_cell"].to_pylist(), strict=True))
        latest = queries.latest_prediction(self._store().predictions_for_vin(vin, limit=20), feature_set)
        named = [cell for cell in daily_suspects.values() if cell is not None]
        suspect = latest["suspect_cell"] if latest and latest["suspect_cell"] is not None else (named[-1] if named else None)
        return {"vin": vin, **queries.heatmap_view(queries.cell_heatmap(rows, window), suspect, daily_suspects, measure)}

    # ------------------------------------------------------------------ the model

    def models(self) -> dict:
        """Each feature set's champion card: metrics beside the reference recipe's, curves, evaluation figures."""
        shown, problems = [], []
        for feature_set in MODEL_FEATURE_SETS:
            try:
                champion = registry.champion(self.lake, feature_set)
            except (registry.ModelVersionNotFound, ValueError) as error:  # a pointer to a version that is not there
                problems.append({"feature_set": feature_set, "problem": str(error)})
                continue
            if champion is None:
                continue
            prefix = f"{champion.key}{registry.REPORT_FOLDER}/"
            files = [info.key[len(prefix):] for info in self.lake.list(prefix)]
            shown.append(queries.model_view(champion.card, files, f"/dashboard/api/models/{champion.version}/report/"))
        return {"models": shown, "problems": problems}

    def report_file(self, version: str, name: str) -> tuple[bytes, str]:
        """One file of a version's evaluation report and its media type."""
        try:
            folder = registry.version_key(version)
        except ValueError as error:
            raise ApiError(422, [problem(["path", "version"], str(error), "value_error")]) from None
        if not REPORT_FILE.match(name):
            raise ApiError(422, [problem(["path", "name"], f"{name[:60]!r} is not a report file name (letters, "
                                         "digits, _ . - ending .png or .html)", "value_error")])
        key = f"{folder}{registry.REPORT_FOLDER}/{name}"
        if not self.lake.exists(key):
            raise ApiError(404, [problem(["path", "name"], f"{version} has no report file {name}", "not_found")])
        return self.lake.read_bytes(key), REPORT_TYPES[name.rsplit(".", 1)[1]]
