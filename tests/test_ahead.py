"""Mixer work a step ahead on a thread (dialog_tts.finish.ahead): the same items in the same order, the
producer's errors raised where the consumer reads, and a consumer that leaves early stops the thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from dialog_tts.finish.ahead import ahead, mapped


def test_the_items_come_in_order_and_are_the_producers_arrays():
    made = [np.full(5, i, np.float32) for i in range(50)]
    got = list(ahead(iter(made), depth=2))
    assert len(got) == 50
    assert all(a is b for a, b in zip(got, made))


def test_items_are_made_on_another_thread_never_more_than_depth_ahead():
    threads, taken = set(), []
    third, fourth = threading.Event(), threading.Event()

    def source():
        for i in range(10):
            threads.add(threading.get_ident())
            taken.append(i)
            (third if i == 2 else fourth if i == 3 else threading.Event()).set()
            yield i

    items = ahead(source(), depth=2)
    assert next(items) == 0
    # one taken, two made ahead (1 and 2); the fourth is made only once the reader takes another
    assert third.wait(10)
    assert not fourth.wait(0.05)
    assert len(taken) == 3
    assert list(items) == list(range(1, 10))
    assert threads and threading.get_ident() not in threads


def test_an_error_while_making_an_item_is_raised_to_the_reader_after_the_items_before_it():
    def source():
        yield 1
        yield 2
        raise ZeroDivisionError("made badly")

    items = ahead(source())
    assert next(items) == 1
    assert next(items) == 2
    with pytest.raises(ZeroDivisionError, match="made badly"):
        next(items)


def test_a_reader_that_stops_early_stops_the_thread_and_closes_the_source():
    closed = threading.Event()

    def source():
        try:
            yield from range(10 ** 9)
        finally:
            closed.set()

    before = threading.active_count()
    items = ahead(source(), depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert closed.is_set()
    assert threading.active_count() == before
    assert not any(t.name.startswith("dialog-tts-mix-ahead") for t in threading.enumerate())


def test_a_reader_that_fails_stops_the_thread():
    def source():
        yield from range(10 ** 9)

    with pytest.raises(KeyError):
        for i in ahead(source()):
            if i == 5:
                raise KeyError(i)
    assert not any(t.name.startswith("dialog-tts-mix-ahead") for t in threading.enumerate())


def test_mapped_makes_each_item_on_a_thread_in_order_and_takes_the_items_here():
    taker, makers = [], set()

    def items():
        for i in range(20):
            taker.append(threading.get_ident())
            yield i

    def make(i):
        makers.add(threading.get_ident())
        return i * i

    assert list(mapped(make, items(), depth=2)) == [i * i for i in range(20)]
    assert set(taker) == {threading.get_ident()}
    assert makers and threading.get_ident() not in makers


def test_mapped_raises_an_error_making_an_item_in_its_turn_and_one_taking_an_item_at_once():
    def make(i):
        if i == 3:
            raise ValueError("three")
        return i

    got = []
    with pytest.raises(ValueError, match="three"):
        for value in mapped(make, iter(range(10))):
            got.append(value)
    assert got == [0, 1, 2]

    def items():
        yield from range(2)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(mapped(lambda i: i, items()))
    assert not any(t.name.startswith("dialog-tts-prepare") for t in threading.enumerate())


def test_by_default_one_item_is_made_ahead():
    """A render holds one block made ahead of the one being written (each more would be 8 MiB more)."""
    taken = []
    second, third = threading.Event(), threading.Event()

    def source():
        for i in range(5):
            taken.append(i)
            (second if i == 1 else third if i == 2 else threading.Event()).set()
            yield i

    items = ahead(source())
    assert next(items) == 0
    assert second.wait(10)
    assert not third.wait(0.05)
    assert taken == [0, 1]
    assert list(items) == [1, 2, 3, 4]


def test_mapped_on_several_threads_makes_items_at_once_and_gives_them_in_order():
    both = threading.Barrier(2, timeout=10)     # broken (an error in make) unless two items are made at once
    threads = set()

    def make(i: int) -> int:
        threads.add(threading.get_ident())
        if i < 2:
            both.wait()
        return i * i

    assert list(mapped(make, range(20), depth=4, threads=2)) == [i * i for i in range(20)]
    assert len(threads) == 2 and threading.get_ident() not in threads
