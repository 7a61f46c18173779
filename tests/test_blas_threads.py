"""BLAS runs on one thread inside the estimators' kernels, whichever Python thread calls them,
and the user's setting comes back afterwards."""

import threading

import numpy as np
import pytest
import threadpoolctl
from threadpoolctl import ThreadpoolController, threadpool_info

import lstmcpu
from lstmcpu import registry
from lstmcpu._blas_threads import ONE_BLAS_THREAD
from lstmcpu.backends.numpy_backend import NumpyBackend


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


class RecordingBackend(NumpyBackend):
    """The oracle, noting the BLAS thread counts it runs with."""

    name = "recording"
    seen = []

    def forward(self, *args, **kwargs):
        self.seen.append(blas_threads())
        return super().forward(*args, **kwargs)


@pytest.fixture
def recording_backend():
    RecordingBackend.seen = []
    lstmcpu.register_backend("recording", RecordingBackend, replace=True)
    yield RecordingBackend
    registry._reset_for_tests()


def test_predict_from_worker_threads_runs_blas_on_one_thread(two_blas_threads, recording_backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6, 3)).astype(np.float32)
    y = X[:, 0, 0] > 0
    clf = lstmcpu.LSTMClassifier(hidden_size=4, max_iter=1, backend="recording", random_state=0)
    clf.fit(X, y)  # in the main thread
    recording_backend.seen.clear()
    results = [None] * 4

    def work(k):
        results[k] = clf.predict(X)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(recording_backend.seen) == 4
    assert all(seen == {1} for seen in recording_backend.seen), recording_backend.seen
    assert all(np.array_equal(result, results[0]) for result in results)
    assert blas_threads() == {2}
