"""pipelines/serving/api_batching.py: concurrent requests answered in shared passes, each hearing its own result."""

from __future__ import annotations

import asyncio
import threading
from datetime import date

import pytest

from pipelines.serving.api_batching import RequestBatcher
from pipelines.serving.api_schemas import ApiError, problem
from pipelines.serving.api_scoring import Item


def item(vin: str, request_id: str = "r") -> Item:
    return Item(loc=("body",), vin=vin, as_of=date(2026, 3, 1), features=None, request_id=request_id,
                client_request_id=False)


class Recorder:
    """An answer_together that records its passes; it can hold the first pass until released."""

    def __init__(self, hold_first: bool = False):
        self.passes: list[list[str]] = []
        self.entered, self.release = threading.Event(), threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, requests):
        self.passes.append([items[0].vin for items in requests])
        self.entered.set()
        self.release.wait(10)
        return [ApiError(404, [problem(["body", "vin"], f"unknown {items[0].vin}", "unknown_vehicle")])
                if items[0].vin.startswith("BAD") else [{"vin": i.vin} for i in items] for items in requests]


def test_requests_waiting_together_share_one_pass_and_get_their_own_answers() -> None:
    recorder = Recorder(hold_first=True)
    batcher = RequestBatcher(recorder, workers=1)

    async def scenario():
        first = asyncio.create_task(batcher.submit([item("FIRST")]))
        await asyncio.to_thread(recorder.entered.wait, 10)  # the worker is busy with the first request
        waiting = [asyncio.create_task(batcher.submit([item(f"V{n}"), item(f"V{n}x")])) for n in range(5)]
        await asyncio.sleep(0.05)
        recorder.release.set()
        return await first, await asyncio.gather(*waiting)

    first, waiting = asyncio.run(scenario())
    batcher.close()
    assert first == [{"vin": "FIRST"}]
    assert waiting == [[{"vin": f"V{n}"}, {"vin": f"V{n}x"}] for n in range(5)]
    assert recorder.passes == [["FIRST"], [f"V{n}" for n in range(5)]]


def test_a_pass_holds_at_most_max_items_items() -> None:
    recorder = Recorder(hold_first=True)
    batcher = RequestBatcher(recorder, max_items=4, workers=1)

    async def scenario():
        first = asyncio.create_task(batcher.submit([item("FIRST")]))
        await asyncio.to_thread(recorder.entered.wait, 10)
        waiting = [asyncio.create_task(batcher.submit([item(f"V{n}"), item(f"V{n}x")])) for n in range(4)]
        await asyncio.sleep(0.05)
        recorder.release.set()
        await first
        return await asyncio.gather(*waiting)

    asyncio.run(scenario())
    batcher.close()
    assert recorder.passes == [["FIRST"], ["V0", "V1"], ["V2", "V3"]]


def test_an_error_reaches_only_its_request() -> None:
    batcher = RequestBatcher(Recorder())

    async def scenario():
        return await asyncio.gather(batcher.submit([item("GOOD")]), batcher.submit([item("BAD1")]),
                                    return_exceptions=True)

    good, bad = asyncio.run(scenario())
    batcher.close()
    assert good == [{"vin": "GOOD"}]
    assert isinstance(bad, ApiError) and bad.status == 404 and bad.problems[0]["msg"] == "unknown BAD1"


def test_a_failed_pass_fails_every_request_in_it_and_the_worker_goes_on() -> None:
    calls = []

    def failing_once(requests):
        calls.append(len(requests))
        if len(calls) == 1:
            raise RuntimeError("the store went away")
        return [[{"vin": i.vin} for i in items] for items in requests]

    batcher = RequestBatcher(failing_once, workers=1)

    async def scenario():
        with pytest.raises(RuntimeError, match="the store went away"):
            await batcher.submit([item("A")])
        return await batcher.submit([item("B")])

    assert asyncio.run(scenario()) == [{"vin": "B"}]
    batcher.close()


def test_close_answers_what_is_queued_then_stops_the_workers() -> None:
    recorder = Recorder(hold_first=True)
    batcher = RequestBatcher(recorder, workers=2)

    async def scenario():
        tasks = [asyncio.create_task(batcher.submit([item(f"V{n}")])) for n in range(6)]
        await asyncio.to_thread(recorder.entered.wait, 10)
        closing = asyncio.create_task(asyncio.to_thread(batcher.close))
        await asyncio.sleep(0.05)
        recorder.release.set()
        await closing
        return await asyncio.gather(*tasks)

    answers = asyncio.run(scenario())
    assert answers == [[{"vin": f"V{n}"}] for n in range(6)]
    assert not any(worker.is_alive() for worker in batcher._workers)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="max_items >= 1 and workers >= 1"):
        RequestBatcher(Recorder(), max_items=0)
