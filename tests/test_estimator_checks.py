"""scikit-learn's own estimator checks over both estimators, with their default parameters.

No check is marked as an expected failure.
"""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from lstmcpu import LSTMClassifier, LSTMRegressor


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # The checks' matrices are tiny: BLAS threads only add contention on a shared machine.
    with threadpool_limits(1):
        yield


@parametrize_with_checks([LSTMClassifier(), LSTMRegressor()])
def test_sklearn_compatible(estimator, check):
    check(estimator)
