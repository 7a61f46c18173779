"""scikit-learn's own estimator checks over both estimators.

The defaults (float32) pass every check but one, listed below with its reason; the float64
regressor passes that one too, which shows the difference is float32 rounding only.
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


def expected_failed_checks(estimator):
    if isinstance(estimator, LSTMRegressor) and estimator.dtype == "float32":
        return {
            "check_methods_subset_invariance": (
                "float32 predictions of one sequence differ by rounding (~1e-7 absolute) with the batch "
                "it is predicted in, because the compiled backends pick a kernel by batch size; the "
                "check's atol=1e-7 is at float32 resolution (the float64 instance passes it)"
            )
        }
    return {}


@parametrize_with_checks(
    [LSTMClassifier(), LSTMRegressor(), LSTMRegressor(dtype="float64")],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
