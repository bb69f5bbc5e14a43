"""The prediction API's answers: the stored one for a request id seen before, else a fresh one, recorded first.

`Answerer.answer` is one request's work: look up the items whose request id the client named (a repeated id gets
the stored prediction back, `replayed: true`, and nothing is scored or added), score the rest
(api_scoring.score_items), record them in the event store and buffer them for the lake (PredictionBuffer.add), then
answer in the items' order. `Answerer.answer_together` does the same for several requests at once — one lookup,
one scoring call per feature set, one store transaction — which is what lets concurrent requests share the fixed
cost of each step (see api_batching.py). A request that fails inside a shared pass is answered again on its own,
so its error (and only its) is what it gets.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pipelines.serving.api_schemas import ApiError, problem
from pipelines.serving.api_scoring import Item, Probabilities, in_process, score_items
from pipelines.serving.daily_context import DailyContext
from pipelines.serving.model_champions import ChampionModels
from pipelines.storage.event_store import PredictionEventStore
from pipelines.storage.predictions_zone import PredictionBuffer

log = logging.getLogger(__name__)


def prediction_view(row: dict) -> dict:
    """A stored prediction row as the API shows it (`date` is the as_of date)."""
    return {"request_id": row["request_id"], "vin": row["vin"], "date": row["as_of"],
            "feature_set": row["feature_set"], "model_version": row["model_version"],
            "probability": row["probability"], "alarm": row["alarm"], "threshold": row["threshold"],
            "suspect_cell": row["suspect_cell"], "reasons": row["reasons"] or [], "source": row["source"],
            "created_at": row["created_at"]}


class Answerer:
    """Answers checked request items from the champions, the daily context and the event store."""

    def __init__(self, context: DailyContext, champions: ChampionModels, store: PredictionEventStore,
                 buffer: PredictionBuffer, probabilities: Probabilities = in_process):
        self.context, self.champions, self.store, self.buffer = context, champions, store, buffer
        self.probabilities = probabilities

    def answer(self, items: Sequence[Item]) -> list[dict]:
        """Stored answers for request ids seen before, fresh ones (recorded, then buffered for the lake) for the rest."""
        stored = self.stored_answers([i for i in items if i.client_request_id])
        fresh = [i for i in items if i.key not in stored]
        rows = score_items(fresh, self.context, self.champions, probabilities=self.probabilities)
        if rows:
            try:
                new = self.buffer.add(rows)
            except Exception as error:
                log.exception("recording %d predictions failed", len(rows))
                raise ApiError(503, [problem(["store"], f"the prediction could not be recorded in the event store "
                                                        f"({type(error).__name__}): try again", "store_unavailable")]
                               ) from None
            if new < len(rows):  # another request with the same request id was recorded first: its answer stands
                stored |= self.stored_answers([i for i in fresh if i.client_request_id])
        made = {item.key: row for item, row in zip(fresh, rows, strict=True)}
        answers = []
        for item in items:
            ours, kept = made.get(item.key), stored.get(item.key)
            replayed = kept is not None and (ours is None or (kept["model_version"], kept["created_at"]) !=
                                             (ours["model_version"], ours["created_at"]))
            answers.append({**prediction_view(kept if replayed else ours), "replayed": replayed})
        return answers

    def answer_together(self, requests: Sequence[Sequence[Item]]) -> list[list[dict] | ApiError]:
        """Each request's answers (or its ApiError), sharing one pass among requests that can share it."""
        results: list[list[dict] | ApiError | None] = [None] * len(requests)
        for group in _passes(requests):
            merged = [item for n in group for item in requests[n]]
            try:
                answers = self.answer(merged)
            except ApiError as error:
                if len(group) == 1:
                    results[group[0]] = error
                    continue
                for n in group:  # find whose fault it was: each on its own
                    try:
                        results[n] = self.answer(requests[n])
                    except ApiError as own:
                        results[n] = own
                continue
            start = 0
            for n in group:
                results[n] = answers[start:start + len(requests[n])]
                start += len(requests[n])
        return [result for result in results if result is not None]

    def stored_answers(self, items: Sequence[Item]) -> dict[tuple, dict]:
        """The first stored API prediction of each item's (vin, date, feature set, request id)."""
        wanted = {item.key for item in items}
        found: dict[tuple, dict] = {}
        for row in self.store.api_predictions({(i.vin, i.as_of, i.request_id) for i in items}):  # oldest first
            key = (row["vin"], row["as_of"], row["feature_set"], row["request_id"])
            if key in wanted:
                found.setdefault(key, row)  # the first answer stands
        return found


def _passes(requests: Sequence[Sequence[Item]]) -> list[list[int]]:
    """Requests grouped in order so that no group holds one prediction key twice (a repeat waits for the next pass,
    where it finds the first one's answer stored, as it would have arriving alone)."""
    passes: list[tuple[list[int], set[tuple]]] = []
    for n, items in enumerate(requests):
        keys = {item.key for item in items}
        if passes and not (keys & passes[-1][1]):
            passes[-1][0].append(n)
            passes[-1][1].update(keys)
        else:
            passes.append(([n], keys))
    return [group for group, _ in passes]
