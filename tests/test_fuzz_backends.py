"""Property-based fuzzing of every backend against the float64 NumPy oracle.

Random sizes (including 1), cell variants, dtypes, lengths and initial states; forward and
backward must agree with the oracle and nothing may crash. The example budget is fixed for
CI; raise it locally with ``LSTMCPU_FUZZ_EXAMPLES=2000 python -m pytest tests/test_fuzz_backends.py``.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lstmcpu
from lstmcpu.backends.numpy_backend import NumpyBackend

from _cells import VARIANTS, capabilities, make_inputs, random_upstream, run_backward, run_forward

ORACLE = NumpyBackend()
EXAMPLES = int(os.environ.get("LSTMCPU_FUZZ_EXAMPLES", "40"))
TOLERANCES = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}


def _size(small, large):
    """Mostly small sizes (edge cases, 1 included), sometimes larger ones, so that the compiled
    kernels' vector blocks, their remainders and the switch from the small-batch kernels to
    BLAS are all exercised."""
    return st.one_of(st.integers(1, small), st.integers(small + 1, large))


@st.composite
def problems(draw):
    variant_id = draw(st.sampled_from(sorted(VARIANTS)))
    variant = dict(VARIANTS[variant_id])
    H = draw(_size(9, 70))
    if variant.get("proj"):
        if H == 1:
            H = 2
        variant["proj"] = draw(st.integers(1, H - 1))
    return dict(
        variant_id=variant_id,
        variant=variant,
        T=draw(st.integers(1, 8)),
        B=draw(_size(6, 40)),
        I=draw(_size(7, 40)),
        H=H,
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        lengths=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


@pytest.mark.parametrize("backend_name", lstmcpu.available_backends())
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems())
def test_backend_agrees_with_oracle(backend_name, problem):
    variant, dtype = problem["variant"], problem["dtype"]
    backend = lstmcpu.get_backend(backend_name)
    if not backend.can_run(capabilities(variant), dtype):
        return  # nothing to compare: the backend does not claim this variant
    T, B, I, H = (problem[k] for k in "TBIH")
    inputs, lengths = make_inputs(variant, T, B, I, H, dtype, seed=problem["seed"], lengths=problem["lengths"])
    outputs, cache = run_forward(backend, variant, inputs, lengths)
    ref_outputs, ref_cache = run_forward(ORACLE, variant, {k: v.astype(np.float64) for k, v in inputs.items()}, lengths)
    tol = TOLERANCES[dtype]
    for name, value in ref_outputs.items():
        assert_close_to_scale(outputs[name], value, **tol, err_msg=f"{problem['variant_id']} {name}")
    upstream = random_upstream(variant, T, B, H, dtype, seed=problem["seed"] + 1)
    grads = run_backward(backend, variant, upstream, cache)
    ref_grads = run_backward(ORACLE, variant, {k: v.astype(np.float64) for k, v in upstream.items()}, ref_cache)
    for name, value in ref_grads.items():
        assert_close_to_scale(
            grads[name], value, rtol=tol["rtol"], atol=tol["atol"] * T * B, err_msg=f"{problem['variant_id']} d{name}"
        )


def assert_close_to_scale(actual, desired, rtol, atol, err_msg):
    """``assert_allclose`` with ``atol`` relative to the largest magnitude in ``desired``
    (when above 1): rounding in a sum is proportional to its terms, so an element that cancels
    to near zero among large ones carries their absolute error, not its own relative one."""
    scale = max(1.0, float(np.max(np.abs(desired), initial=0.0)))
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol * scale, err_msg=err_msg)
