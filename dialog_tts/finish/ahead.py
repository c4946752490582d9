"""Mixer work done a step ahead, on a thread, while the caller works on what came before.

- :func:`ahead`: a render's blocks are mixed while the caller writes the ones it has;
- :func:`mapped`: each clip is made ready for the mix (trimmed, resampled, faded) while the caller
  measures the line before.

Both sides are NumPy, soxr and libsndfile (or PyAV) work, which let go of the GIL in their loops, so on
two cores they overlap.  Everything comes out in order and is made by the same calls, so the bytes do
not depend on the thread.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Generator, Generic, Iterable, Iterator, TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")

_POLL = 0.05       # seconds between the producer's looks at the stop flag while the queue is full


class _Producer(Generic[T]):
    """Takes *items* on its own thread into a queue of at most *depth*, until told to stop."""

    def __init__(self, items: Iterator[T], depth: int) -> None:
        self.items = items
        self.queue: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=depth)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dialog-tts-mix-ahead", daemon=True)

    def _run(self) -> None:
        try:
            for item in self.items:
                if not self._put((True, item)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put((False, exc))
            return
        self._put((False, None))

    def _put(self, entry: tuple[bool, object]) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(entry, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def stop(self) -> None:
        """Stop taking items (the one being made is finished first), then close the source."""
        self.stopping.set()
        self.thread.join()
        close = getattr(self.items, "close", None)
        if close is not None:
            close()


def ahead(items: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """*items* in order, each made on a thread while the caller works on the ones before (at most
    *depth* waiting).  An error raised making one is raised here, where it would have been; leaving
    early (an error, an interrupt, ``close``) stops the thread after the item it is making."""
    producer = _Producer(items, depth)
    producer.thread.start()
    try:
        while True:
            made, value = producer.queue.get()
            if made:
                yield cast(T, value)
            elif value is None:
                return
            else:
                assert isinstance(value, BaseException)
                raise value
    finally:
        producer.stop()


def mapped(make: Callable[[T], R], items: Iterable[T], depth: int = 2) -> Generator[R, None, None]:
    """``make(item)`` for each of *items*, in order, each made on a thread while the caller works on
    the ones before (at most *depth* made or being made).  The items are taken here, in the caller's
    thread, so an interrupt or an error while taking one is raised here at once (before the few made
    ahead are given); an error raised making one is raised here, in its turn; leaving early waits only
    for the one being made."""
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(1, thread_name_prefix="dialog-tts-prepare") as pool:
        try:
            for item in items:
                pending.append(pool.submit(make, item))
                if len(pending) > depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
