"""Batch prediction of a Dask array of sequences (needs the ``dask`` extra:
``pip install "lstmcpu[dask]"``).

``dask_ml.wrappers.ParallelPostFit`` assumes a 2-D table and 1-D predictions: with 3-D
sequences ``(n_samples, n_timesteps, n_features)`` it guesses the output's metadata from a
``(1, n_timesteps)`` array (which the estimators read as univariate sequences and reject)
and declares the wrong output shape. :func:`predict` maps any prediction method over the
sample chunks of a 2-D or 3-D Dask array and declares the right shape and dtype, also for
``predict_proba`` and ``output="sequence"``. See docs/scale-out.md.
"""

import dask
import dask.array as da
import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["predict"]

_METHODS = ("predict", "predict_proba", "predict_log_proba")


def predict(estimator, X, method="predict"):
    """Lazily apply ``estimator.<method>`` to each chunk of samples of a Dask array.

    Each chunk of samples is predicted where it lives (a worker of a ``dask.distributed``
    cluster, or a local thread), so ``X`` never has to fit in one machine's memory. The
    fitted estimator enters the task graph once, shared by every chunk.

    Parameters
    ----------
    estimator : LSTMClassifier or LSTMRegressor
        A fitted estimator.
    X : dask.array.Array of shape (n_samples, n_timesteps, n_features) or (n_samples, n_timesteps)
        Sequences of equal length, chunked along samples; chunks along the other axes are
        merged (one chunk holds whole sequences).
    method : {"predict", "predict_proba", "predict_log_proba"}, default="predict"

    Returns
    -------
    dask.array.Array
        What ``estimator.<method>(X.compute())`` returns, with the chunks of ``X`` along
        samples: ``(n_samples,)``, ``(n_samples, n_classes)``, ``(n_samples, n_targets)``,
        or with ``output="sequence"`` ``(n_samples, n_timesteps[, ...])``.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from lstmcpu import LSTMClassifier
    >>> import lstmcpu.dask
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 5, 2))
    >>> y = np.where(X[:, :, 0].sum(axis=1) > 0, "up", "down")
    >>> clf = LSTMClassifier(hidden_size=8, random_state=0).fit(X, y)
    >>> X_big = da.from_array(X, chunks=(50, 5, 2))  # stands for data on disk or on a cluster
    >>> proba = lstmcpu.dask.predict(clf, X_big, method="predict_proba")
    >>> proba.shape, proba.chunks[0]
    ((200, 2), (50, 50, 50, 50))
    >>> bool(np.array_equal(proba.compute(), clf.predict_proba(X)))
    True
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if not hasattr(estimator, method):
        raise TypeError(f"{type(estimator).__name__} has no method {method!r}")
    if not isinstance(X, da.Array):
        raise TypeError(f"X must be a dask.array.Array, got {type(X).__name__}; call {method} directly")
    if X.ndim not in (2, 3):
        raise ValueError(
            "X must be (n_samples, n_timesteps, n_features) or (n_samples, n_timesteps); "
            f"got {X.ndim} dimensions"
        )
    check_is_fitted(estimator)
    # Whole sequences per chunk: the network reads every step of a sequence.
    X = X.rechunk({axis: -1 for axis in range(1, X.ndim)})
    # The shape and dtype of one sample's output, from a zero sample (no chunk is computed).
    sample = getattr(estimator, method)(np.zeros((1,) + X.shape[1:], dtype=X.dtype))
    extra = {}
    if sample.ndim < X.ndim:
        extra["drop_axis"] = list(range(sample.ndim, X.ndim))
    elif sample.ndim > X.ndim:
        extra["new_axis"] = list(range(X.ndim, sample.ndim))
    return da.map_blocks(
        _apply, X, dask.delayed(estimator, pure=True), method=method,
        chunks=(X.chunks[0],) + sample.shape[1:], dtype=sample.dtype,
        meta=np.empty((0,) * sample.ndim, dtype=sample.dtype), **extra,
    )  # fmt: skip


def _apply(block, estimator, method):
    return getattr(estimator, method)(block)
