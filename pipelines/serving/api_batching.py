"""Requests that arrive together are answered together, without waiting for company.

Each answer has fixed costs that do not grow with its size: an XGBoost call to predict and one to explain, an
event-store transaction. Under load many requests are waiting at once, so a worker thread takes every request
waiting when it becomes free (up to `max_items` items) and answers them in one pass (Answerer.answer_together).
A lone request is taken at once: batching adds no delay when there is no load, and under load it turns
per-request fixed costs into per-batch ones (opportunistic batching, as model servers such as Triton do it).
Two workers by default, so that a slow pass (the first request for a new date builds the fleet's windows) does
not hold up everything behind it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence

from pipelines.serving.api_scoring import Item

log = logging.getLogger(__name__)

AnswerTogether = Callable[[Sequence[Sequence[Item]]], Sequence[object]]
_Job = tuple[Sequence[Item], asyncio.Future, asyncio.AbstractEventLoop]


class RequestBatcher:
    """Answers submitted requests in shared passes on worker threads."""

    def __init__(self, answer_together: AnswerTogether, max_items: int = 512, workers: int = 2):
        if max_items < 1 or workers < 1:
            raise ValueError(f"a request batcher needs max_items >= 1 and workers >= 1, not {max_items}, {workers}")
        self.answer_together, self.max_items = answer_together, max_items
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._workers = [threading.Thread(target=self._work, name=f"api-answers-{n}", daemon=True)
                         for n in range(workers)]
        for worker in self._workers:
            worker.start()

    async def submit(self, items: Sequence[Item]) -> list[dict]:
        """The request's answers, in its items' order; its ApiError (or any failure of its pass) is raised here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._jobs.put((items, future, loop))
        return await future

    def close(self) -> None:
        """Answer what is queued, then stop the workers."""
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:
            worker.join()

    def _work(self) -> None:
        while (first := self._jobs.get()) is not None:
            jobs, size, stopping = [first], len(first[0]), False
            while size < self.max_items:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:  # close(): finish this pass, then stop
                    stopping = True
                    break
                jobs.append(job)
                size += len(job[0])
            try:
                results: Sequence[object] = self.answer_together([items for items, _, _ in jobs])
            except BaseException as error:  # noqa: BLE001 - every waiting request must hear of it, whatever it is
                log.debug("an answer pass failed", exc_info=error)
                results = [error] * len(jobs)
            for (_, future, loop), result in zip(jobs, results, strict=True):
                loop.call_soon_threadsafe(_settle, future, result)
            if stopping:
                return


def _settle(future: asyncio.Future, result: object) -> None:
    if future.cancelled():  # the client went away; its answer is recorded all the same
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
