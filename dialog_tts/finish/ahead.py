"""Mixer work done a step ahead, on a thread, while the caller works on what came before.

- :func:`ahead`: a render's blocks are mixed while the caller writes the ones it has;
- :func:`mapped`: each clip is made ready for the mix (trimmed, resampled, faded, and where no
  store keeps them, its true peaks read) while the caller measures the line before.

Both sides are NumPy, soxr and libsndfile (or PyAV) work, which let go of the GIL in their loops, so on
two cores they overlap.  Everything comes out in order and is made by the same calls, so the bytes do
not depend on the thread.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Generator, Iterable, Iterator, TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")

_END = object()      # what next() gives once the items run out


def ahead(items: Iterator[T], depth: int = 1) -> Generator[T, None, None]:
    """*items* in order, each made on a thread while the caller works on the ones before (at most
    *depth* made or being made: one already keeps both threads busy, and each more held is a render's
    block, 8 MiB of stereo float32, in the peak memory of any render).  An error raised making one is
    raised here, in its turn; leaving early (an error, an interrupt, ``close``) waits for the one being
    made, then closes *items*."""
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="dialog-tts-mix-ahead") as pool:
            pending = deque(pool.submit(next, items, _END) for _ in range(depth))
            try:
                while (item := pending.popleft().result()) is not _END:
                    pending.append(pool.submit(next, items, _END))
                    yield cast(T, item)
            finally:
                for future in pending:
                    future.cancel()
    finally:       # the thread is done with *items* here
        close = getattr(items, "close", None)
        if close is not None:
            close()


def mapped(make: Callable[[T], R], items: Iterable[T], depth: int = 2, threads: int = 1) -> Generator[R, None, None]:
    """``make(item)`` for each of *items*, in order, each made on one of *threads* threads while the
    caller works on the ones before (at most *depth* made or being made).  The items are taken here, in
    the caller's thread, so an interrupt or an error while taking one is raised here at once (before the
    few made ahead are given); an error raised making one is raised here, in its turn; leaving early
    waits only for the ones being made."""
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="dialog-tts-prepare") as pool:
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
