"""The engine's scheduling, knowing nothing of backends: lanes of work, the loop that keeps a
thread pool fed from them, and the in-order window of a streamed run (:meth:`Engine.stream`).

:mod:`dialog_tts.synth.engine` decides what the work is (cache reads, single lines, batches) and
keeps the books; this module only decides when each piece runs.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

R = TypeVar("R")     # what a task returns to the run loop
U = TypeVar("U")     # one line of work, as the lane's owner knows it
T = TypeVar("T")     # what a streamed run hands out per index

Task = Callable[[], R]


@dataclass
class Lane(Generic[U, R]):
    """One backend's queued work and how much of it may run at once (batches: one at a time, in order).

    Lines come in by :meth:`add` and leave as tasks: *cut* groups them (one line each, or
    a batching backend's batches), *task* makes a group's task.  A group smaller than
    *full* (a partial batch) is held back until more lines come or the lane would
    otherwise idle, so that a streamed run, fed a window at a time, still batches.
    """

    limit: int
    cut: Callable[[list[U]], list[list[U]]]
    task: Callable[[list[U]], Task[R]]
    full: int = 1
    tasks: deque[Task[R]] = field(default_factory=deque)
    held: list[U] = field(default_factory=list)
    running: int = 0

    def add(self, lines: list[U], *, whole: bool) -> None:
        """Queue *lines*; with *whole*, partial groups too (else they are held back)."""
        groups = self.cut(self.held + lines)
        ready = groups if whole else [g for g in groups if len(g) >= self.full]
        self.held = [] if whole else [line for g in groups if len(g) < self.full for line in g]
        self.tasks.extend(self.task(group) for group in ready)

    def ready(self) -> bool:
        if not self.tasks and self.held and self.running < self.limit:
            self.add([], whole=True)        # the lane would idle: what is held goes as it is
        return bool(self.tasks) and self.running < self.limit


def steps(pool: ThreadPoolExecutor, lanes: deque[Lane[U, R]], workers: int,
          collect: Callable[[R], None]) -> Iterator[None]:
    """Run the lanes' tasks, pausing (``yield``) after each round of results handed to *collect*.

    At most ``workers`` tasks are in the pool (so an interrupt has nothing queued to wait
    for), taken from the lanes in turn so that no backend waits behind another's lines.
    Lanes may be given more work between rounds; it ends when nothing runs and no lane is ready.
    """
    running: dict[Future[R], Lane[U, R]] = {}
    while True:
        idle = 0
        while len(running) < workers and idle < len(lanes):
            lane = lanes[0]
            lanes.rotate(-1)
            if lane.ready():
                running[pool.submit(lane.tasks.popleft())] = lane
                lane.running += 1
                idle = 0
            else:
                idle += 1
        if not running:
            return
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            running.pop(future).running -= 1
            collect(future.result())
        yield


@contextmanager
def worker_pool(workers: int, stop: threading.Event) -> Iterator[ThreadPoolExecutor]:
    """A pool of *workers* threads, shut down (its threads joined) when the block ends.

    If the block ends by an exception (Ctrl-C, a callback that raised, a streamed run's
    consumer that stopped early: GeneratorExit), *stop* is set first and the tasks not
    started are cancelled: nothing new starts, the ones in flight finish.
    """
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dialog-tts")
    try:
        yield pool
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def in_order(total: int, window: int, admit: Callable[[int], None], rounds: Iterator[None],
             take: Callable[[int], T | None], *, ramp: bool = False) -> Iterator[tuple[int, T]]:
    """``(index, item)`` for indices ``0 .. total-1`` in order, each once it and all before it are done.

    *admit(limit)* lets work for the indices below *limit* start: first ``window``, then
    ``window`` past the last index handed out, so work never runs more than *window*
    indices ahead of the consumer.  With *ramp*, index 0 starts alone (it has the machine
    to itself and comes first) and the window then grows with each index handed out.
    *rounds* runs the admitted work (see :func:`steps`); *take(i)* is index *i*'s item, or
    None while it is not done.
    """
    position = 0
    admit(1 if ramp else window)
    for _ in rounds:
        while position < total and (item := take(position)) is not None:
            yield position, item
            position += 1
        admit(position + (min(window, position + 1) if ramp else window))
    while position < total and (item := take(position)) is not None:   # nothing ran (e.g. no jobs)
        yield position, item
        position += 1
    if position < total:
        raise RuntimeError(f"streamed run ended at index {position} of {total}")
