"""The scikit-learn estimators: one training epoch (``fit`` with ``max_iter=1``) and ``predict``.

Each benchmark skips (asv's NotImplementedError convention) while its estimator class is not
part of lstmcpu, and reports as soon as it is.
"""

import warnings

import numpy as np

import lstmcpu
from lstmcpu import bench

from .common import BACKENDS, PRESETS, limit_threads

ESTIMATORS = ["LSTMClassifier", "LSTMRegressor"]
#: Sequences given to ``fit`` and ``predict``: four minibatches of 32.
N_SAMPLES = 128


class EstimatorBenchmark:
    """Base: an estimator with the preset's hidden size, on ``N_SAMPLES`` random sequences of
    the preset's length and input features (the preset's batch size plays no part)."""

    params = [ESTIMATORS, BACKENDS, PRESETS]
    param_names = ["estimator", "backend", "preset"]

    def setup(self, estimator, backend, preset):
        self.limits = limit_threads()  # first: asv calls teardown after a skip too
        cls = getattr(lstmcpu, estimator, None)
        if cls is None:
            raise NotImplementedError(f"lstmcpu.{estimator} does not exist yet")
        T, _, I, H = bench.PRESETS[preset]
        rng = np.random.default_rng(0)
        self.X = rng.standard_normal((N_SAMPLES, T, I)).astype(np.float32)
        signal = self.X[:, :, 0].mean(axis=1)
        self.y = (signal > 0).astype(np.int64) if estimator == "LSTMClassifier" else signal
        self.estimator = cls(hidden_size=H, max_iter=1, batch_size=32, backend=backend, random_state=0)

    def teardown(self, *params):
        self.limits.restore_original_limits()

    def fit_one_epoch(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one epoch does not converge, and may say so
            self.estimator.fit(self.X, self.y)


class TimeFit(EstimatorBenchmark):
    def time_fit_epoch(self, *params):
        self.fit_one_epoch()


class TimePredict(EstimatorBenchmark):
    def setup(self, estimator, backend, preset):
        super().setup(estimator, backend, preset)
        self.fit_one_epoch()

    def time_predict(self, *params):
        self.estimator.predict(self.X)
