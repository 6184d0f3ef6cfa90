"""Dynamic batching: concurrent requests gathered into one forward pass, answers sent back to each caller.

A :class:`Batcher` owns a queue. Each request puts its item (one preprocessed image) with a
future and waits on the future. One task per event loop takes the first waiting item, then
keeps taking items until it holds ``max_batch`` of them, or ``max_wait_ms`` have passed
since that first item arrived, or no other item is on its way; it runs the batch and gives
row ``i`` of the result to the caller of item ``i``. An item is on its way while its request
is still being read and decoded (:meth:`Batcher.submit` given an awaitable). So a lone
request runs at once, without waiting for company that is not coming; requests arriving
together wait for each other, at most ``max_wait_ms``; and while a batch runs, new
requests queue up and form the next one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

log = logging.getLogger("swinkit.serve")


class QueueFullError(RuntimeError):
    """More requests are waiting than the batcher accepts (``max_queue``); the caller should retry later."""


@dataclasses.dataclass
class BatchStats:
    """What a :class:`Batcher` has run so far: batches, items, the largest batch, items waiting now."""

    batches: int = 0
    items: int = 0
    largest: int = 0
    waiting: int = 0

    def to_dict(self) -> dict[str, int]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class _Pending(Generic[Item, Result]):
    item: Item
    future: asyncio.Future[Result]
    arrived: float


class Batcher(Generic[Item, Result]):
    """Gather items submitted concurrently into batches of at most ``max_batch``, waiting at most ``max_wait_ms``.

    A batch leaves as soon as it is full, or ``max_wait_ms`` after its first item arrived,
    or when the queue is empty and no item is on its way (see :meth:`submit`).

    ``run_batch`` takes the list of items of one batch and returns one result per item, in
    order (an awaitable, so it can run the model in a thread and leave the event loop free).
    ``max_batch`` 1 turns batching off: every item runs alone, in arrival order.
    ``max_queue`` bounds how many items may wait; :meth:`submit` raises
    :class:`QueueFullError` beyond it. If ``run_batch`` raises, every caller of that batch
    gets the exception and later batches run normally. The worker task starts on the first
    :meth:`submit` in an event loop (a new loop, as a test client may use, gets its own);
    :meth:`close` stops it.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        max_batch: int = 8,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1 (1 turns batching off), got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        self.run_batch = run_batch
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.max_queue = int(max_queue)
        self.stats = BatchStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Pending[Item, Result]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._coming = 0
        self._news: asyncio.Event | None = None

    async def submit(self, item: Item | Awaitable[Item]) -> Result:
        """Queue ``item`` for the next batch and wait for its result (or the batch's exception).

        ``item`` may be an awaitable giving the item (e.g. reading and decoding a request):
        while it is awaited, the item counts as on its way, and a batch gathering meanwhile
        waits for it (within ``max_wait_ms``). If the awaitable raises, nothing is queued.
        """
        queue = self._queue_for_running_loop()
        if inspect.isawaitable(item):
            self._coming += 1
            try:
                item = await item
            finally:
                self._coming -= 1
                self._tell()
        if queue.qsize() >= self.max_queue:
            raise QueueFullError(f"{queue.qsize()} requests are already waiting (the limit is {self.max_queue})")
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        queue.put_nowait(_Pending(item, future, time.perf_counter()))
        self.stats.waiting = queue.qsize()
        self._tell()
        return await future

    def _tell(self) -> None:
        """Wake the gathering batch: an item was queued, or one on its way arrived or failed."""
        if self._news is not None:
            self._news.set()

    def _queue_for_running_loop(self) -> asyncio.Queue[_Pending[Item, Result]]:
        loop = asyncio.get_running_loop()
        if self._queue is not None and self._loop is loop and self._worker is not None and not self._worker.done():
            return self._queue
        queue: asyncio.Queue[_Pending[Item, Result]] = asyncio.Queue()
        news = asyncio.Event()
        self._loop, self._queue, self._news = loop, queue, news
        self._worker = loop.create_task(self._work(queue, news), name="swinkit-serve-batcher")
        return queue

    async def _gather(
        self, queue: asyncio.Queue[_Pending[Item, Result]], news: asyncio.Event
    ) -> list[_Pending[Item, Result]]:
        """The next batch: the first waiting item, then more until full, ``max_wait`` after it, or none coming."""
        batch = [await queue.get()]
        deadline = batch[0].arrived + self.max_wait
        while len(batch) < self.max_batch:
            news.clear()
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - time.perf_counter()
            if self._coming == 0 or remaining <= 0:
                break
            try:
                await asyncio.wait_for(news.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return batch

    async def _work(self, queue: asyncio.Queue[_Pending[Item, Result]], news: asyncio.Event) -> None:
        while True:
            batch = await self._gather(queue, news)
            self.stats.waiting = queue.qsize()
            live = [pending for pending in batch if not pending.future.done()]  # callers gone are skipped
            if not live:
                continue
            try:
                results = await self.run_batch([pending.item for pending in live])
                if len(results) != len(live):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(live)} items")
            except asyncio.CancelledError:
                for pending in live:
                    pending.future.cancel()
                raise
            except Exception as error:  # noqa: BLE001 - handed to every caller of this batch, the worker goes on
                log.exception("a batch of %d failed", len(live))
                for pending in live:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            self.stats.batches += 1
            self.stats.items += len(live)
            self.stats.largest = max(self.stats.largest, len(live))
            for pending, result in zip(live, results):
                if not pending.future.done():
                    pending.future.set_result(result)

    async def close(self) -> None:
        """Stop the worker task; callers still waiting get ``CancelledError``."""
        worker, self._worker = self._worker, None
        if worker is None or worker.done():
            return
        if worker.get_loop() is not asyncio.get_running_loop():
            worker.get_loop().call_soon_threadsafe(worker.cancel)
            return
        worker.cancel()
        try:
            await worker
        except asyncio.CancelledError:
            pass
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait().future.cancel()
