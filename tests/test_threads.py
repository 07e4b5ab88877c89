"""Helper threads: work runs beside the caller, and still runs when no thread can be had."""

import threading

import pytest

from generation_studio.threads import HelperPool


def test_work_runs_on_a_helper_thread_and_its_result_or_error_comes_back():
    pool = HelperPool("test", 2)
    caller = threading.get_ident()
    where = pool.start(threading.get_ident)
    assert where() != caller

    def fails():
        raise OSError(5, "Input/output error")

    waits = pool.start(fails)
    with pytest.raises(OSError, match="Input/output error"):
        waits()


def test_work_runs_here_when_the_pool_takes_no_more():
    """At the interpreter's exit a pool refuses new work: it is done in the caller."""
    pool = HelperPool("test", 1)
    pool.start(int)()
    pool._pool.shutdown()
    caller = threading.get_ident()
    assert pool.start(threading.get_ident)() == caller
