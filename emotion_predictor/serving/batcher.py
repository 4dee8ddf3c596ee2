"""Micro-batching: requests that arrive together share one forward pass, run in one worker thread.

Why: on a CPU, torch already spreads one batch over every core, and a forward pass over 32
histories costs far less than 32 passes over one (sorted by length, padded once). Running
requests' forward passes in parallel threads would only make them fight over the same cores and
over the predictor's cache of recent utterance embeddings, which is not thread-safe. So:

- each request puts a job (its histories) on an asyncio queue and awaits the job's future;
- one collector task takes the first waiting job, then gathers more until the batch holds
  `max_batch_items` histories or `max_wait_seconds` have passed since that first job arrived
  (jobs already waiting are taken at once);
- the batch runs as ONE call of `run` (for the service, `EmotionPredictor.predict_batch`) in a
  single worker thread, so the event loop keeps accepting requests meanwhile; those queue up and
  form the next batch, which therefore grows with the load by itself;
- each job gets its own slice of the results. When the batch call raises, each job of the batch is
  run again alone, so a request gets its own result or its own exception, never a neighbour's.

A job is never split: a batch request larger than `max_batch_items` runs as one call (the
predictor cuts it into forward passes of its own batch size).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Job:
    """One request's items, the future its result goes to, and when it arrived (monotonic seconds)."""

    items: list[Any]
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Gathers concurrent `submit` calls into batched calls of `run` in one worker thread."""

    def __init__(self, run: Callable[[list[Any]], list[Any]], max_batch_items: int, max_wait_seconds: float) -> None:
        self.run = run
        self.max_batch_items = max_batch_items
        self.max_wait_seconds = max_wait_seconds
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forecast")
        self.collector: asyncio.Task | None = None
        # `run` calls made and items they held: /health reports them, so batching can be seen from outside.
        self.calls = 0
        self.items = 0

    def start(self) -> None:
        """Start collecting (inside the running event loop, at the app's startup)."""
        self.collector = asyncio.get_running_loop().create_task(self.collect_forever())

    async def stop(self) -> None:
        """Stop collecting, fail the jobs still waiting, and let the worker finish its batch."""
        if self.collector is not None:
            self.collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.collector
        while not self.queue.empty():
            job = self.queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the service is shutting down"))
        self.worker.shutdown(wait=True)

    async def submit(self, items: list[Any]) -> list[Any]:
        """`run(items)`, batched with other requests' items: one result per item, in order."""
        job = Job(items, asyncio.get_running_loop().create_future())
        self.queue.put_nowait(job)
        return await job.future

    async def collect_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self.next_batch()
            outcomes = await loop.run_in_executor(self.worker, self.run_jobs, jobs)
            for job, outcome in zip(jobs, outcomes):
                if job.future.done():  # the request was cancelled (its client went away)
                    continue
                if isinstance(outcome, Exception):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    async def next_batch(self) -> list[Job]:
        """The next jobs to run together: the first waiting one and those that join it in time."""
        jobs = [await self.queue.get()]
        size = len(jobs[0].items)
        deadline = jobs[0].arrived + self.max_wait_seconds
        while size < self.max_batch_items:
            if self.queue.empty():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                job = self.queue.get_nowait()
            if not job.future.done():
                jobs.append(job)
                size += len(job.items)
        return jobs

    def run_jobs(self, jobs: list[Job]) -> list[list[Any] | Exception]:
        """In the worker thread: every job's results from one `run` call, or each job alone if it fails."""
        items = [item for job in jobs for item in job.items]
        self.calls += 1
        self.items += len(items)
        try:
            results = self.run(items)
        except Exception as err:
            if len(jobs) == 1:
                return [err]
            return [outcome for job in jobs for outcome in self.run_jobs([job])]
        outcomes: list[list[Any] | Exception] = []
        start = 0
        for job in jobs:
            outcomes.append(results[start : start + len(job.items)])
            start += len(job.items)
        return outcomes
