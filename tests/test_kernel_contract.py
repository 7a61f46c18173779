"""The kernel contract, checked for every available backend and both dtypes.

Every backend must agree with the float64 NumPy oracle; the oracle itself is checked by
finite differences here and against PyTorch in test_torch_parity.py.
"""

import numpy as np
import pytest

import lstmcpu
from lstmcpu.backends.numpy_backend import NumpyBackend

from _lstm_helpers import random_problem, upstream_grads

ORACLE = NumpyBackend()

SHAPES = [
    # (T, B, I, H): edge shapes first, then odd and ordinary ones
    (1, 1, 1, 1),
    (1, 3, 2, 5),
    (7, 1, 3, 1),
    (5, 4, 3, 7),
    (9, 3, 17, 13),
    (4, 8, 32, 64),
]


def run_forward(backend, p, need_cache=True):
    return backend.forward(
        p["x"], p["w_ih"], p["w_hh"], p["b"], p["h0"], p["c0"], p["lengths"], need_cache=need_cache
    )


def copy_problem(p):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in p.items()}


def as64(p):
    return {k: (v.astype(np.float64) if v is not None and v.dtype.kind == "f" else v) for k, v in p.items()}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}-B{}-I{}-H{}".format(*s))
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_forward_backward_match_oracle(backend_name, dtype, tol, shape, with_lengths):
    T, B, I, H = shape
    backend = lstmcpu.get_backend(backend_name, dtype=dtype)
    p = random_problem(T, B, I, H, dtype, lengths=with_lengths)
    y, h_n, c_n, cache = run_forward(backend, p)
    assert y.dtype == h_n.dtype == c_n.dtype == np.dtype(dtype)
    assert y.shape == (T, B, H) and h_n.shape == c_n.shape == (B, H)

    ref_y, ref_h, ref_c, ref_cache = run_forward(ORACLE, as64(p))
    np.testing.assert_allclose(y, ref_y, **tol)
    np.testing.assert_allclose(h_n, ref_h, **tol)
    np.testing.assert_allclose(c_n, ref_c, **tol)

    dy, dh_n, dc_n = upstream_grads(T, B, H, dtype)
    grads = backend.backward(dy, dh_n, dc_n, cache)
    ref_grads = ORACLE.backward(dy.astype(np.float64), dh_n.astype(np.float64), dc_n.astype(np.float64), ref_cache)
    names = ["dx", "dw_ih", "dw_hh", "db", "dh0", "dc0"]
    expected_shapes = [(T, B, I), (4 * H, I), (4 * H, H), (4 * H,), (B, H), (B, H)]
    for name, got, ref, shp in zip(names, grads, ref_grads, expected_shapes):
        assert got.shape == shp, name
        assert got.dtype == np.dtype(dtype), name
        # Weight gradients sum over T*B terms: scale the absolute tolerance with them.
        np.testing.assert_allclose(got, ref, rtol=tol["rtol"], atol=tol["atol"] * T * B, err_msg=name)


def test_inference_mode_matches_training_mode(backend_name, dtype):
    backend = lstmcpu.get_backend(backend_name, dtype=dtype)
    p = random_problem(6, 3, 4, 5, dtype, lengths=True)
    y, h_n, c_n, cache = run_forward(backend, p, need_cache=False)
    assert cache is None
    y2, h2, c2, _ = run_forward(backend, p, need_cache=True)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(h_n, h2)
    np.testing.assert_array_equal(c_n, c2)


def test_step_by_step_with_carried_state_equals_whole_sequence(backend_name, dtype, tol):
    backend = lstmcpu.get_backend(backend_name, dtype=dtype)
    p = random_problem(8, 3, 4, 6, dtype)
    y, h_n, c_n, _ = run_forward(backend, p, need_cache=False)
    h, c = p["h0"], p["c0"]
    for t in range(8):
        y_t, h, c, _ = backend.forward(p["x"][t : t + 1], p["w_ih"], p["w_hh"], p["b"], h, c, need_cache=False)
        np.testing.assert_allclose(y_t[0], y[t], **tol)
    np.testing.assert_allclose(h, h_n, **tol)
    np.testing.assert_allclose(c, c_n, **tol)


def test_lengths_equal_running_each_sequence_alone(backend_name, dtype, tol):
    backend = lstmcpu.get_backend(backend_name, dtype=dtype)
    T, B, I, H = 7, 4, 3, 5
    p = random_problem(T, B, I, H, dtype)
    p["lengths"] = np.array([7, 1, 4, 6])
    y, h_n, c_n, cache = run_forward(backend, p)
    dy, dh_n, dc_n = upstream_grads(T, B, H, dtype)
    dx, dw_ih, dw_hh, db, dh0, dc0 = backend.backward(dy, dh_n, dc_n, cache)
    sum_dw_ih, sum_dw_hh, sum_db = 0, 0, 0
    for k, n in enumerate(p["lengths"]):
        alone = dict(p, x=np.ascontiguousarray(p["x"][:n, k : k + 1]), h0=p["h0"][k : k + 1],
                     c0=p["c0"][k : k + 1], lengths=None)  # fmt: skip
        y1, h1, c1, cache1 = run_forward(backend, alone)
        np.testing.assert_allclose(y[:n, k], y1[:, 0], **tol)
        assert np.all(y[n:, k] == 0), "outputs past a sequence's length must be zero"
        np.testing.assert_allclose(h_n[k], h1[0], **tol)
        np.testing.assert_allclose(c_n[k], c1[0], **tol)
        g1 = backend.backward(
            np.ascontiguousarray(dy[:n, k : k + 1]), dh_n[k : k + 1], dc_n[k : k + 1], cache1
        )
        np.testing.assert_allclose(dx[:n, k], g1[0][:, 0], **tol)
        assert np.all(dx[n:, k] == 0), "padded steps get no input gradient"
        np.testing.assert_allclose(dh0[k], g1[4][0], **tol)
        np.testing.assert_allclose(dc0[k], g1[5][0], **tol)
        sum_dw_ih, sum_dw_hh, sum_db = sum_dw_ih + g1[1], sum_dw_hh + g1[2], sum_db + g1[3]
    atol = tol["atol"] * T * B
    np.testing.assert_allclose(dw_ih, sum_dw_ih, rtol=tol["rtol"], atol=atol)
    np.testing.assert_allclose(dw_hh, sum_dw_hh, rtol=tol["rtol"], atol=atol)
    np.testing.assert_allclose(db, sum_db, rtol=tol["rtol"], atol=atol)


def test_saturated_gates_stay_finite(backend_name, dtype):
    backend = lstmcpu.get_backend(backend_name, dtype=dtype)
    p = random_problem(5, 2, 3, 4, dtype)
    p["x"] = p["x"] * dtype(1e4)
    y, h_n, c_n, cache = run_forward(backend, p)
    grads = backend.backward(*upstream_grads(5, 2, 4, dtype), cache)
    assert np.isfinite(y).all() and np.isfinite(c_n).all()
    assert all(np.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_all_finite_finds_one_non_finite_value_anywhere(backend_name, dtype, bad):
    backend = lstmcpu.get_backend(backend_name, dtype=dtype)
    finite = np.random.default_rng(0).standard_normal((7, 5, 33)).astype(dtype)
    finite[0, 0, :2] = np.finfo(dtype).max, np.finfo(dtype).smallest_subnormal
    assert backend.all_finite(finite) is True
    for index in (0, 1, 16, finite.size // 2, finite.size - 1):
        a = finite.copy()
        a.flat[index] = bad
        assert backend.all_finite(a) is False, index
    a = finite.copy()
    a[3, 2, 5] = bad
    assert backend.all_finite(a[:, ::2]) is False  # a strided view
    assert backend.all_finite(a[:, 1::2]) is True
    assert backend.all_finite(np.arange(6).reshape(2, 3)) is True  # integers are finite


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_oracle_gradients_match_finite_differences(with_lengths):
    """Central differences of L = sum(y*Ry) + sum(h_n*Rh) + sum(c_n*Rc) in float64."""
    T, B, I, H = 4, 3, 2, 3
    p = random_problem(T, B, I, H, np.float64, seed=3, lengths=with_lengths)
    dy, dh_n, dc_n = upstream_grads(T, B, H, np.float64, seed=4)

    def loss(q):
        y, h_n, c_n, _ = run_forward(ORACLE, q, need_cache=False)
        return np.sum(y * dy) + np.sum(h_n * dh_n) + np.sum(c_n * dc_n)

    _, _, _, cache = run_forward(ORACLE, p)
    analytic = dict(zip(["x", "w_ih", "w_hh", "b", "h0", "c0"], ORACLE.backward(dy, dh_n, dc_n, cache)))
    eps = 1e-6
    for name, grad in analytic.items():
        numeric = np.empty_like(grad)
        for idx in np.ndindex(grad.shape):
            plus, minus = copy_problem(p), copy_problem(p)
            plus[name][idx] += eps
            minus[name][idx] -= eps
            numeric[idx] = (loss(plus) - loss(minus)) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8, err_msg=name)
