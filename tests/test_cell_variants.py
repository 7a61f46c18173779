"""Every cell variant's kernel: finite-difference gradients of the oracle, and every backend
that declares the variant against the oracle (float32 and float64, edge shapes, lengths)."""

import numpy as np
import pytest

import lstmcpu
from lstmcpu.backends.numpy_backend import NumpyBackend

from _cells import VARIANTS, capabilities, make_inputs, random_upstream, run_backward, run_forward

ORACLE = NumpyBackend()
variant_ids = pytest.mark.parametrize("variant_id", list(VARIANTS))


def loss(variant, inputs, lengths, upstream):
    outputs, _ = run_forward(ORACLE, variant, inputs, lengths, need_cache=False)
    return sum(float(np.sum(outputs[k] * upstream[k])) for k in upstream)


@variant_ids
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_oracle_gradients_match_finite_differences(variant_id, with_lengths):
    variant = VARIANTS[variant_id]
    T, B, I, H = 4, 3, 2, 3
    inputs, lengths = make_inputs(variant, T, B, I, H, np.float64, seed=3, lengths=with_lengths)
    upstream = random_upstream(variant, T, B, H, np.float64, seed=4)
    _, cache = run_forward(ORACLE, variant, inputs, lengths)
    analytic = run_backward(ORACLE, variant, upstream, cache)
    assert set(analytic) == set(inputs)
    eps = 1e-6
    for name, grad in analytic.items():
        assert grad.shape == inputs[name].shape, name
        numeric = np.empty_like(grad)
        for idx in np.ndindex(grad.shape):
            plus = {k: v.copy() for k, v in inputs.items()}
            minus = {k: v.copy() for k, v in inputs.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            numeric[idx] = (loss(variant, plus, lengths, upstream) - loss(variant, minus, lengths, upstream)) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8, err_msg=f"{variant_id}: d{name}")


@variant_ids
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (6, 4, 3, 5), (3, 9, 17, 13)], ids=lambda s: "T{}-B{}-I{}-H{}".format(*s))
def test_backend_matches_oracle(backend_name, dtype, tol, variant_id, shape):
    variant = VARIANTS[variant_id]
    backend = lstmcpu.get_backend(backend_name)
    if not backend.can_run(capabilities(variant), dtype):
        pytest.skip(f"backend {backend_name!r} does not implement {variant_id}")
    T, B, I, H = shape
    inputs, lengths = make_inputs(variant, T, B, I, H, dtype, lengths=B > 1)
    outputs, cache = run_forward(backend, variant, inputs, lengths)
    ref_inputs = {k: v.astype(np.float64) for k, v in inputs.items()}
    ref_outputs, ref_cache = run_forward(ORACLE, variant, ref_inputs, lengths)
    for name, value in ref_outputs.items():
        assert outputs[name].dtype == np.dtype(dtype)
        np.testing.assert_allclose(outputs[name], value, **tol, err_msg=name)
    upstream = random_upstream(variant, T, B, H, dtype)
    grads = run_backward(backend, variant, upstream, cache)
    ref_grads = run_backward(ORACLE, variant, {k: v.astype(np.float64) for k, v in upstream.items()}, ref_cache)
    for name, value in ref_grads.items():
        assert grads[name].dtype == np.dtype(dtype), name
        np.testing.assert_allclose(grads[name], value, rtol=tol["rtol"], atol=tol["atol"] * T * B, err_msg=name)


@variant_ids
def test_inference_mode_and_saturation(backend_name, dtype, variant_id):
    variant = VARIANTS[variant_id]
    backend = lstmcpu.get_backend(backend_name)
    if not backend.can_run(capabilities(variant), dtype):
        pytest.skip(f"backend {backend_name!r} does not implement {variant_id}")
    inputs, lengths = make_inputs(variant, 5, 3, 4, 6, dtype, lengths=True)
    inputs["x"] *= dtype(1e4)  # saturates every gate
    outputs, cache = run_forward(backend, variant, inputs, lengths, need_cache=False)
    assert cache is None
    trained, cache = run_forward(backend, variant, inputs, lengths)
    for name in outputs:
        np.testing.assert_array_equal(outputs[name], trained[name])
        if variant_id != "rnn-relu":  # relu is unbounded: huge inputs give huge finite outputs
            assert np.isfinite(outputs[name]).all()
    grads = run_backward(backend, variant, random_upstream(variant, 5, 3, 6, dtype), cache)
    if variant_id != "rnn-relu":
        assert all(np.isfinite(g).all() for g in grads.values())
