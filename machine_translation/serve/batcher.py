"""Dynamic batching: the sentences of all concurrent requests for one model go into one
bounded queue; a thread takes them out in token-bounded batches and translates each batch
with one call, off the event loop, and hands every sentence's request its result the moment
the search has it (the short sentences of a batch come back before its long ones end).

A batch holds sentences that share their search settings (beam, n-best, ...), first come
first served, up to `max_batch_sentences` and `max_batch_tokens` (the longest sentence times
the count: the padded batch); it waits at most `batch_delay_ms` after its first sentence for
company. Because a sentence translates the same alone or in any batch (the search's batch ==
single property, and int8 quantizes each row on its own), batching changes speed, never
results. A request that times out or whose client goes away has its sentences dropped from
the queue. The queue is bounded: a request that does not fit is refused (`QueueFull`).
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from machine_translation.base.options import SearchOptions, ServeOptions


class ModelThread:
    """The one thread that runs the served models: loading, every batch, every alignment.

    PyTorch's CPU kernels run on an OpenMP team that belongs to the thread calling them: a
    second calling thread gets a team of its own, and with more OpenMP threads than cores,
    libgomp stops spinning at its barriers and every parallel operation pays a futex wake.
    Measured on 2 cores once a second thread had used torch: a (64, 256) x (256, 1024)
    product 1.7x slower, a softmax 3.9x, beam search 2x, and `mt serve` at 32 clients
    0.46x offline instead of 0.68x (docs/benchmarks.md, Serving). So all the server's model
    work, for every model, goes through this one thread; the rest only waits for it."""

    def __init__(self):
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="mt-model")

    def call(self, fn, *args):
        """fn(*args) on the model thread, from any other thread; waits for the result."""
        return self._executor.submit(fn, *args).result()

    async def run(self, fn, *args):
        """fn(*args) on the model thread, awaited from the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


class QueueFull(Exception):
    """The model's queue has no room for the request's sentences."""


@dataclass(eq=False)
class Item:
    text: str
    n_tokens: int  # encoded source length, EOS included
    options: SearchOptions
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    queued_at: float


def _deliver(future: asyncio.Future, result=None, error: BaseException | None = None) -> None:
    """On the event loop: complete a request's future unless it was given up."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _send(item: Item, result, error: BaseException | None = None) -> None:
    """From any thread: answer a sentence's request on its event loop."""
    try:
        item.loop.call_soon_threadsafe(_deliver, item.future, result, error)
    except RuntimeError:  # the loop is closed: nobody waits for it
        pass


class Batcher:
    """One per served model. `translate` is any batch translation that keeps each sentence
    independent of its batch mates: (texts, SearchOptions, on_translation) -> one result per
    text, where it may tell `on_translation(i, result)` each result as soon as it has it."""

    def __init__(self, name: str, translate, options: ServeOptions, workers: int = 1):
        self.name = name
        self._translate = translate
        self.options = options
        self.workers = workers
        self._pending: list[Item] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)
        self.batch_sizes: Counter[int] = Counter()  # sentences per batch -> how many batches
        self.sentences_done = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Translate what is queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def depth(self) -> int:
        with self._cond:
            return len(self._pending)

    def submit(self, texts: list[str], lengths: list[int], options: SearchOptions) -> list[Item]:
        """Queue the sentences of one request (all or none), with their encoded lengths (EOS
        included); await `asyncio.gather(*(i.future ...))`."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        items = [Item(t, n, options, loop.create_future(), loop, now) for t, n in zip(texts, lengths)]
        with self._cond:
            if self._stopping:
                raise QueueFull("the server is stopping")
            if len(self._pending) + len(items) > self.options.queue_size:
                raise QueueFull(f"{len(self._pending)} sentences are waiting")
            self._pending.extend(items)
            self._cond.notify()
        return items

    def drop(self, items: list[Item]) -> int:
        """Remove a request's sentences that are still queued (timeout, client gone). Returns how many."""
        gone = set(map(id, items))
        with self._cond:
            before = len(self._pending)
            self._pending = [i for i in self._pending if id(i) not in gone]
            return before - len(self._pending)

    # -- the batching thread -------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._process(batch)

    def _next_batch(self) -> list[Item] | None:
        """Wait for a first sentence, then up to batch_delay_ms for company; take a batch."""
        delay = self.options.batch_delay_ms / 1000
        with self._cond:
            while not self._pending:
                if self._stopping:
                    return None
                self._cond.wait()
            deadline = self._pending[0].queued_at + delay
            while not self._stopping and not self._full() and time.monotonic() < deadline:
                self._cond.wait(max(0.0, deadline - time.monotonic()))
            return self._take()

    def _full(self) -> bool:
        return len(self._pending) >= self.options.max_batch_sentences or \
            sum(i.n_tokens for i in self._pending) >= self.options.max_batch_tokens

    def _take(self) -> list[Item]:
        """The first pending sentence and those after it with its settings, while the padded
        batch (count x longest) stays within the limits; the rest keep their places."""
        first = self._pending[0]
        batch, rest, longest = [], [], 0
        for item in self._pending:
            fits = len(batch) < self.options.max_batch_sentences and \
                (len(batch) + 1) * max(longest, item.n_tokens) <= self.options.max_batch_tokens
            if item.options == first.options and (fits or not batch):
                batch.append(item)
                longest = max(longest, item.n_tokens)
            else:
                rest.append(item)
        self._pending = rest
        return batch

    def _process(self, batch: list[Item]) -> None:
        """Translate a batch; each sentence is answered as soon as its translation is known
        (`on_translation`), so its client can send its next request while the batch's longer
        sentences are still decoding, and the next batch is fuller (docs/benchmarks.md, Serving)."""
        options = replace(batch[0].options, batch_size=max(1, -(-len(batch) // self.workers)))
        told: set[int] = set()

        def tell(i: int, result) -> None:
            told.add(i)
            _send(batch[i], result)

        try:
            results = self._translate([i.text for i in batch], options, tell)
            errors = [None] * len(batch)
        except Exception as e:  # a bug: every request not yet answered gets a 500 (logged there), the server goes on
            results, errors = [None] * len(batch), [e] * len(batch)
        with self._cond:
            self.batch_sizes[len(batch)] += 1
            self.sentences_done += len(batch)
        for i, (item, result, error) in enumerate(zip(batch, results, errors)):
            if i not in told:
                _send(item, result, error)

    def batch_counts(self) -> dict[int, int]:
        """{sentences per batch: how many batches}, a copy taken under the lock."""
        with self._cond:
            return dict(self.batch_sizes)

    def histogram(self) -> dict[str, int]:
        """Batches by size, in power-of-two bins ("1", "2-3", "4-7", ...)."""
        bins: Counter[str] = Counter()
        for size, count in self.batch_counts().items():
            low = 1 << (size.bit_length() - 1)
            bins[str(low) if low == 1 else f"{low}-{2 * low - 1}"] += count
        return dict(sorted(bins.items(), key=lambda kv: int(kv[0].split("-")[0])))
