"""The estimators on a dask.distributed cluster: grid search and chunked batch prediction.

One LocalCluster of two single-threaded worker processes on loopback serves every test of
the module, configured as docs/scale-out.md recommends, and is always shut down.
"""

import os
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.model_selection import GridSearchCV

pytest.importorskip("dask.distributed", reason="needs the dask extra: pip install lstmcpu[dask]")
pytest.importorskip("dask_ml", reason="needs the dask extra: pip install lstmcpu[dask]")

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import joblib  # noqa: E402
from dask.distributed import Client, LocalCluster  # noqa: E402
from dask_ml.wrappers import ParallelPostFit  # noqa: E402

import lstmcpu.dask  # noqa: E402
from lstmcpu import LSTMClassifier, LSTMRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Environment of the worker processes, set before they start (docs/scale-out.md).
ONE_NUMBA_THREAD = "distributed.nanny.pre-spawn-environ.NUMBA_NUM_THREADS"


@pytest.fixture(scope="module")
def client():
    # The nanny writes pre-spawn-environ into this process's os.environ for good; put it back
    # once the workers exist, or Numba here would later see NUMBA_NUM_THREADS change under it.
    saved_environ = dict(os.environ)
    try:
        with warnings.catch_warnings(), dask.config.set({ONE_NUMBA_THREAD: 1}):
            # distributed warns about ports and its own deprecations while starting up.
            warnings.simplefilter("ignore")
            cluster = LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None,
            )  # fmt: skip
    finally:
        os.environ.clear()
        os.environ.update(saved_environ)
    with cluster, Client(cluster) as client:
        yield client
        for name in ("NUMBA_NUM_THREADS", "PYTHONHASHSEED"):
            assert os.environ.get(name) == saved_environ.get(name), f"the cluster changed {name} here"


def sign_task(n=48, T=5, F=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, F))
    y = np.where(X[:, :, 0].sum(axis=1) > 0, "up", "down")
    return X, y


def _kernel_threads():
    """Threads the kernels may use in the calling worker thread: Numba's and each BLAS's."""
    import numba
    from threadpoolctl import threadpool_info

    blas = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    return numba.get_num_threads(), blas


def test_workers_run_the_kernels_on_one_thread(client):
    numba_threads, blas_threads = client.submit(_kernel_threads, pure=False).result()
    assert numba_threads == 1
    assert blas_threads and set(blas_threads) == {1}


def test_grid_search_on_the_cluster_matches_the_serial_run(client):
    X, y = sign_task()
    grid = {"hidden_size": [3, 6], "learning_rate": [0.003, 0.03]}
    est = LSTMClassifier(max_iter=4, batch_size=16, random_state=0)
    serial = GridSearchCV(est, grid, cv=2).fit(X, y)
    with joblib.parallel_backend("dask"):
        distributed = GridSearchCV(est, grid, cv=2, n_jobs=-1).fit(X, y)
    assert distributed.best_params_ == serial.best_params_
    for key in ("split0_test_score", "split1_test_score", "mean_test_score", "rank_test_score"):
        assert_array_equal(distributed.cv_results_[key], serial.cv_results_[key])
    assert_array_equal(distributed.predict(X), serial.predict(X))


@pytest.mark.parametrize("output", ["last", "sequence"])
def test_chunked_prediction_equals_numpy_prediction(client, output):
    X, y = sign_task(n=90, T=4, F=3)
    if output == "sequence":
        y = np.where(X[:, :, 0] > 0, "up", "down")
    clf = LSTMClassifier(hidden_size=5, max_iter=3, output=output, random_state=0).fit(X, y)
    X_dask = da.from_array(X, chunks=(25, 2, 3))  # time is chunked too: the helper merges it
    for method in ("predict", "predict_proba"):
        result = lstmcpu.dask.predict(clf, X_dask, method=method)
        expected = getattr(clf, method)(X)
        assert result.shape == expected.shape and result.dtype == expected.dtype
        assert result.chunks[0] == (25, 25, 25, 15)
        computed = client.compute(result).result()
        assert computed.dtype == expected.dtype
        assert_array_equal(computed, expected)


def test_chunked_regression_with_several_targets(client):
    X, _ = sign_task(n=40)
    y = X.sum(axis=1)  # (n_samples, 2)
    reg = LSTMRegressor(hidden_size=4, max_iter=3, random_state=0).fit(X, y)
    result = lstmcpu.dask.predict(reg, da.from_array(X, chunks=(16, 5, 2)))
    assert result.shape == (40, 2)
    assert_array_equal(client.compute(result).result(), reg.predict(X))


def test_parallel_post_fit_predicts_univariate_tables(client):
    # dask-ml's wrapper handles 2-D X (univariate sequences); 3-D X needs lstmcpu.dask.predict.
    X, y = sign_task(n=60, F=1)
    X = X[:, :, 0]
    model = ParallelPostFit(LSTMClassifier(hidden_size=4, max_iter=3, random_state=0)).fit(X, y)
    X_dask = da.from_array(X, chunks=(20, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # dask-ml guesses the output metadata
        labels, proba = model.predict(X_dask), model.predict_proba(X_dask)
    assert_array_equal(client.compute(labels).result(), model.estimator.predict(X))
    assert_array_equal(client.compute(proba).result(), model.estimator.predict_proba(X))


def test_predict_rejects_what_it_cannot_chunk():
    X, y = sign_task(n=20)
    reg = LSTMRegressor(hidden_size=2, max_iter=1, random_state=0).fit(X, X.sum(axis=(1, 2)))
    with pytest.raises(TypeError, match="dask.array.Array"):
        lstmcpu.dask.predict(reg, X)
    with pytest.raises(TypeError, match="no method 'predict_proba'"):
        lstmcpu.dask.predict(reg, da.from_array(X), method="predict_proba")
    with pytest.raises(ValueError, match="method must be one of"):
        lstmcpu.dask.predict(reg, da.from_array(X), method="score")
    with pytest.raises(ValueError, match="got 4 dimensions"):
        lstmcpu.dask.predict(reg, da.from_array(X[..., None]))
