"""A render's blocks mixed a step ahead, on a thread, while the caller writes the ones it has.

Mixing a block is NumPy work and writing one is NumPy (the quantizer) and libsndfile or PyAV work; all
of them let go of the GIL in their loops, so on two cores the two overlap.  The blocks come out in
order and are the same arrays the mixer makes, so the bytes written do not depend on the thread.
"""

from __future__ import annotations

import queue
import threading
from typing import Generic, Iterator, TypeVar, cast

T = TypeVar("T")

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


def ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
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
