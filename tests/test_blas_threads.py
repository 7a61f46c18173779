"""The shared one-BLAS-thread limit holds for every Python thread inside it, whichever entered
first, and the user's setting comes back afterwards (the estimators' side of it is tested in
test_estimators.py::test_blas_runs_on_one_thread_and_the_setting_is_restored)."""

import threading

import pytest
import threadpoolctl
from threadpoolctl import ThreadpoolController, threadpool_info

from lstmcpu._blas_threads import ONE_BLAS_THREAD


def blas_threads():
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


@pytest.fixture
def two_blas_threads():
    """BLAS at two threads, set the way a user's earlier call leaves it: the main thread stays
    threadpoolctl's controlling thread (a limit made outside a ``with`` block never hands
    control back), which is what made limits from worker threads silently do nothing."""
    limiter = ThreadpoolController().select(user_api="blas").limit(limits=2)
    if blas_threads() != {2}:
        limiter.restore_original_limits()
        pytest.skip("this BLAS cannot run two threads here")
    yield
    clear = getattr(threadpoolctl.OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)
    limiter.restore_original_limits()


def test_overlapping_threads_get_one_blas_thread_and_the_last_restores(two_blas_threads):
    inside = {}
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with ONE_BLAS_THREAD:
            inside["first"] = blas_threads()
            first_in.set()
            second_in.wait()
        first_out.set()

    def second():
        first_in.wait()
        with ONE_BLAS_THREAD:
            second_in.set()
            first_out.wait()  # the first thread has left: the limit must hold for this one
            inside["second"] = blas_threads()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert inside == {"first": {1}, "second": {1}}
    assert blas_threads() == {2}



def test_the_thread_budget_is_the_users_limit_even_while_blas_is_held_at_one(two_blas_threads):
    """The estimators hold BLAS at one thread; the Cython kernels' own second thread follows
    the user's limit (2 here), not that hold."""
    from lstmcpu._blas_threads import thread_budget
    from lstmcpu.backends.cython._entry import step_threads

    assert thread_budget() == 2
    with ONE_BLAS_THREAD:
        assert blas_threads() == {1}
        assert thread_budget() == 2
        assert step_threads(B=512, H=64, need_cache=False) == 2
        assert step_threads(B=512, H=64, need_cache=True) == 2
    with threadpoolctl.threadpool_limits(1):
        with ONE_BLAS_THREAD:
            assert thread_budget() == 1  # the user's own limit of one is kept
            assert step_threads(B=512, H=64, need_cache=False) == 1
