"""Numba-specific behaviour: both recurrent-product routes, thread-count independence, the
pure-Python mode (NUMBA_DISABLE_JIT=1), the activations and the error without numba, for
every cell variant.

The backend-parametrized contract and parity tests cover numba too (see conftest.py)."""

import mmap
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import lstmcpu
from lstmcpu import registry
from lstmcpu.backends.numpy_backend import NumpyBackend

from _cells import VARIANTS, make_inputs, random_upstream, run_backward, run_forward
from _lstm_helpers import random_problem, upstream_grads

numba = pytest.importorskip("numba")
nb = pytest.importorskip("lstmcpu.backends.numba_backend")
activations = pytest.importorskip("lstmcpu.backends.numba_backend._activations")
products = pytest.importorskip("lstmcpu.backends.numba_backend._products")
step = pytest.importorskip("lstmcpu.backends.numba_backend._lstm_step")

ORACLE = NumpyBackend()
TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}
GRAD_NAMES = ["dx", "dw_ih", "dw_hh", "db", "dh0", "dc0"]


def forward_backward(backend, p, dtype):
    y, h_n, c_n, cache = backend.forward(p["x"], p["w_ih"], p["w_hh"], p["b"], p["h0"], p["c0"], p["lengths"])
    T, B, _ = p["x"].shape
    grads = backend.backward(*upstream_grads(T, B, p["w_hh"].shape[1], dtype), cache)
    return (y, h_n, c_n, *grads)


def assert_matches_oracle(got, p, dtype):
    p64 = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v) for k, v in p.items()}
    ref = forward_backward(ORACLE, p64, np.float64)
    T, B = p["x"].shape[:2]
    tol = TOL[dtype]
    for name, a, r in zip(["y", "h_n", "c_n"] + GRAD_NAMES, got, ref):
        assert a.dtype == np.dtype(dtype), name
        np.testing.assert_allclose(a, r, rtol=tol["rtol"], atol=tol["atol"] * T * B, err_msg=name)


def variant_forward_backward(backend, variant_id, shape, dtype, with_lengths, seed=5):
    """Outputs and gradients of one variant's kernels, as one dict."""
    variant = VARIANTS[variant_id]
    T, B, I, H = shape
    inputs, lengths = make_inputs(variant, T, B, I, H, dtype, seed=seed, lengths=with_lengths and B > 1)
    outputs, cache = run_forward(backend, variant, inputs, lengths)
    grads = run_backward(backend, variant, random_upstream(variant, T, B, H, dtype), cache)
    return {**outputs, **{"d" + name: g for name, g in grads.items()}}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("route", ["panel", "blas"])
@pytest.mark.parametrize("shape", [(6, 1, 5, 7), (5, 3, 4, 6), (4, 2, 3, 9), (3, 21, 6, 5)], ids=str)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_both_product_routes_match_the_oracle(monkeypatch, dtype, route, shape, with_lengths):
    # SMALL_BATCH decides the route: 0 sends every batch to BLAS, a huge value none (and
    # no least number of steps for a single sequence).
    monkeypatch.setattr(nb, "SMALL_BATCH", 10**9 if route == "panel" else 0)
    monkeypatch.setattr(nb, "MIN_PANEL_STEPS", 0)
    T, B, I, H = shape
    assert nb.use_blas(B) == (route == "blas")
    p = random_problem(T, B, I, H, dtype, seed=5, lengths=with_lengths and B > 1)
    assert_matches_oracle(forward_backward(nb.NumbaBackend(), p, dtype), p, dtype)


@pytest.mark.parametrize("variant_id", [v for v in VARIANTS if v != "lstm"])
@pytest.mark.parametrize("route", ["panel", "blas"])
@pytest.mark.parametrize("shape", [(6, 1, 5, 7), (3, 21, 6, 5)], ids=str)
def test_both_product_routes_match_the_oracle_for_every_variant(monkeypatch, variant_id, route, shape):
    monkeypatch.setattr(nb, "SMALL_BATCH", 10**9 if route == "panel" else 0)
    monkeypatch.setattr(nb, "MIN_PANEL_STEPS", 0)
    got = variant_forward_backward(nb.NumbaBackend(), variant_id, shape, np.float64, with_lengths=True)
    want = variant_forward_backward(ORACLE, variant_id, shape, np.float64, with_lengths=True)
    assert set(got) == set(want)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-10, atol=1e-12 * shape[0] * shape[1], err_msg=name)


def test_default_crossover_sends_small_chunks_to_the_panel_kernel_and_large_ones_to_blas():
    small, large = nb.SMALL_BATCH, nb.L2_WEIGHTS + 1
    assert not nb.use_blas(1) and not nb.use_blas(small)
    assert nb.use_blas(small + 1)
    # The route follows the rows per chunk (one chunk per thread).
    assert not nb.use_blas(2 * small, 2) and nb.use_blas(2 * small + 1, 2)
    # Weights beyond L2: only an eighth as many rows; weights below SMALL_WEIGHTS 8 times.
    assert not nb.use_blas(small // 8, 1, large) and nb.use_blas(small // 8 + 1, 1, large)
    tiny = nb.SMALL_WEIGHTS - 1
    assert not nb.use_blas(small * 8, 1, tiny) and nb.use_blas(small * 8 + 1, 1, tiny)
    # A single sequence of a few steps: BLAS (the packing of w_hh.T is not repaid).
    steps = nb.MIN_PANEL_STEPS
    assert nb.use_blas(1, 1, tiny, steps - 1) and not nb.use_blas(1, 1, tiny, steps)
    assert not nb.use_blas(2, 2, tiny, 1)  # chunks of one row: the route of the batch


@pytest.mark.parametrize("route", ["panel", "blas"])
def test_backward_products_read_weights_from_fresh_pages_on_the_panel_route(monkeypatch, route):
    """The LSTM's backward loop reads w_hh at every step: on the panel route from a copy in
    the buffer cache's own mappings (not wherever the caller's array lies), on the BLAS
    route from the caller's array (BLAS packs what it reads)."""
    monkeypatch.setattr(nb, "use_blas", lambda *args: route == "blas")
    p = random_problem(6, 3, 5, 128, np.float32)  # w_hh of 256 KiB: an array the cache keeps
    seen = {}
    backward_rows = nb._lstm.backward_rows

    def spy(lo, hi, blas, dG, dy, gates, c_all, tanh_c_all, c0, w_hh, *rest):
        seen["w_hh"] = w_hh
        return backward_rows(lo, hi, blas, dG, dy, gates, c_all, tanh_c_all, c0, w_hh, *rest)

    monkeypatch.setattr(nb._lstm, "backward_rows", spy)
    backend = nb.NumbaBackend(n_threads=1)
    y, h_n, c_n, cache = backend.forward(p["x"], p["w_ih"], p["w_hh"], p["b"], p["h0"], p["c0"])
    grads = backend.backward(*upstream_grads(6, 3, 128, np.float32), cache)
    np.testing.assert_array_equal(seen["w_hh"], p["w_hh"])
    if route == "blas":
        assert seen["w_hh"] is p["w_hh"]
    else:
        assert not np.shares_memory(seen["w_hh"], p["w_hh"])
        assert isinstance(seen["w_hh"].base.base.obj, mmap.mmap)
    assert_matches_oracle((y, h_n, c_n, *grads), p, np.float32)
    small = np.ones((64, 16), np.float32)  # 4 KiB: a copy would land on malloc's heap all the same
    assert nb._read_weights(small, (1, False)) is small


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (7, 5), (1600, 256), (3, 1000)], ids=str)
def test_column_sums_are_numpys_to_the_bit(dtype, shape):
    a = np.random.default_rng(sum(shape)).standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(products.column_sums(a), a.sum(axis=0))
    assert products.column_sums(a).dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("N, K", [(1, 1), (7, 5), (16, 16), (33, 17), (75, 40), (256, 64)], ids=str)
def test_packed_panels_hold_the_transpose_and_zeros_past_it(dtype, N, K):
    """Tiles transposed in registers give ``panels[q, k, j] = w[q W + j, k]``, zeros past the
    N rows of ``w`` even in reused (dirty) memory."""
    rng = np.random.default_rng(N * K)
    w = rng.standard_normal((N, K)).astype(dtype)
    W = products.panel_width(dtype)
    n_panels = -(-N // W)
    want = np.zeros((n_panels * W, K), dtype=dtype)
    want[:N] = w
    want = want.reshape(n_panels, W, K).transpose(0, 2, 1)
    for _ in range(2):  # the second packing gets the first one's memory back, then garbage
        packed = products.pack_panels(w)
        np.testing.assert_array_equal(packed, want)
        packed.fill(np.nan)
        del packed


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("N, K, k_out", [(1, 1, 0), (7, 5, 3), (40, 17, 2), (75, 40, 9)], ids=str)
def test_packed_rows_come_in_any_order_into_their_block_of_columns(dtype, N, K, k_out):
    """``pack_rows`` puts ``w[rows[p]]`` in the p-th packed row, zero where ``rows[p]`` is not
    a row of ``w`` (-1 or past its end), within the columns ``k_out:k_out + K``: the other
    columns keep what they held."""
    rng = np.random.default_rng(N + K)
    w = rng.standard_normal((N, K)).astype(dtype)
    W = products.panel_width(dtype)
    n_packed = (-(-(N + 3) // W)) * W
    rows = rng.permutation(np.r_[np.arange(N), [-1, N, 10**6]])
    rows = np.r_[rows, np.full(n_packed - rows.size, -1)].astype(np.int64)
    panels = np.full((n_packed // W, k_out + K + 2, W), np.nan, dtype=dtype)
    products.pack_rows(w, rows, panels, k_out)
    packed = panels.transpose(0, 2, 1).reshape(n_packed, -1)
    for p, row in enumerate(rows):
        want = w[row] if 0 <= row < N else np.zeros(K, dtype)
        np.testing.assert_array_equal(packed[p, k_out : k_out + K], want)
    assert np.isnan(packed[:, :k_out]).all() and np.isnan(packed[:, k_out + K :]).all()
    with pytest.raises(ValueError, match="do not fit"):
        products.pack_rows(w, rows[1:], panels, k_out)
    with pytest.raises(ValueError, match="do not fit"):
        products.pack_rows(w, rows, panels, k_out + 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(
    "B, K, N", [(1, 5, 7), (3, 37, 75), (9, 64, 256), (6, 20, 160), (5, 3, 16), (13, 37, 75), (20, 9, 100)], ids=str
)
def test_panel_kernel_is_exact_in_any_blocking(dtype, B, K, N):
    """Blocks of 8 rows by 1 panel, 4 rows by 2 and by 1 panel, 1 row by 4 panels and 1 by 1,
    full and partial panels:
    the product matches float64, reading ``m`` itself equals reading its packed panels to
    the bit, and so does any cut of the rows (each output is the same chain of
    multiply-adds whatever the blocking)."""
    rng = np.random.default_rng(B * K + N)
    A, w = rng.standard_normal((B, K)).astype(dtype), rng.standard_normal((N, K)).astype(dtype)
    start = rng.standard_normal((B, N)).astype(dtype)
    none = np.empty((0, 0), dtype=dtype)

    def product(m_hand, cuts):
        out = start.copy()
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            products.matmul_add(False, A, w.T, m_hand, out, lo, hi, none)
        return out

    packed = product(products.pack_panels(w), [0, B])
    want = start.astype(np.float64) + A.astype(np.float64) @ w.T.astype(np.float64)
    np.testing.assert_allclose(packed, want, rtol=0, atol=10 * K * np.finfo(dtype).eps * np.abs(want).max())
    np.testing.assert_array_equal(product(np.ascontiguousarray(w.T), [0, B]), packed)
    np.testing.assert_array_equal(product(products.pack_panels(w), [0, B // 2, B - 1, B]), packed)
    # out = A @ m, out not read: the same sums from zero
    out = np.full((B, N), np.nan, dtype=dtype)
    products.panel_matmul(A, products.pack_panels(w), True, out, 0, B)
    zero_start = np.zeros((B, N), dtype=dtype)
    products.matmul_add(False, A, w.T, products.pack_panels(w), zero_start, 0, B, none)
    np.testing.assert_array_equal(out, zero_start)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("H", [1, 7, 8, 16, 17, 64, 75])
@pytest.mark.parametrize("store", [True, False], ids=["store", "no-store"])
def test_vectorised_gate_pass_matches_its_python_source(dtype, H, store):
    """The LSTM gate pass, emitted as IR in 512-bit vectors (the last one masked), gives
    what its Python source gives with the scalar activations, to an ulp, for
    pre-activations from tiny to huge; without ``store`` it leaves ``c_out`` and
    ``tanh_c_out`` alone, and it writes nothing past the ends of its rows."""
    from numba import njit

    from lstmcpu.backends.numba_backend._lstm_gates import gate_row

    @njit
    def compiled(gates, bias, h, c, y, c_out, tanh_c_out, store, k):  # gate_row is inlined: no *args
        gate_row(gates, bias, h, c, y, c_out, tanh_c_out, store, k)

    rng = np.random.default_rng(H)
    scale = np.array([1e-30, 1e-3, 1.0, 5.0, 30.0, 1e4])[rng.integers(0, 6, 5 * H)]
    values = (rng.standard_normal(5 * H) * scale).astype(dtype)
    k = activations.constants(np.dtype(dtype))
    results = []
    for run in (compiled, gate_row):
        # Each row sits in a longer array whose ends must stay untouched.
        padded = {name: np.full(n + 2, 7.0, dtype=dtype) for name, n in
                  [("gates", 4 * H), ("bias", 4 * H), ("h", H), ("c", H), ("y", H), ("c_out", H), ("tanh_c", H)]}
        rows = {name: a[1:-1] for name, a in padded.items()}
        rows["gates"][:] = values[: 4 * H]
        rows["bias"][:] = rng.standard_normal(4 * H) if run is compiled else results[0]["bias"]
        rows["c"][:] = values[4 * H :]
        rows["h"][:] = 0
        run(rows["gates"], rows["bias"], rows["h"], rows["c"], rows["y"], rows["c_out"], rows["tanh_c"], store, k)
        for name, a in padded.items():
            assert a[0] == a[-1] == 7, name
        results.append({name: a.copy() for name, a in rows.items()})
    got, want = results
    ulp = np.finfo(dtype).eps
    np.testing.assert_allclose(got["gates"], want["gates"], rtol=2 * ulp, atol=0)
    # c = f c + i g: one fused multiply-add against two roundings in NumPy, which differ by
    # an ulp of the terms, not of c where they cancel; tanh(c) and h inherit that.
    i, f, g = want["gates"].astype(np.float64).reshape(4, H)[:3]
    terms = np.abs(f * values[4 * H :]) + np.abs(i * g)
    for name in ("h", "c", "y") + (("c_out", "tanh_c") if store else ()):
        assert np.isfinite(got[name]).all(), name
        bound = 2 * ulp * (np.abs(want[name]) + terms)
        assert (np.abs(got[name] - want[name]) <= bound).all(), name
    if not store:
        assert (got["c_out"] == 7).all() and (got["tanh_c"] == 7).all()
    np.testing.assert_array_equal(got["y"], got["h"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("H", [1, 7, 8, 16, 17, 64, 75])
def test_vectorised_gate_gradients_match_their_python_source(dtype, H):
    """The LSTM gate pass's gradient, emitted as IR in 512-bit vectors, gives what its
    Python source gives, to an ulp of the terms, zeroes ``dh`` and writes nothing past the
    ends of its rows."""
    from numba import njit

    from lstmcpu.backends.numba_backend._lstm_gates import gate_gradient_row

    @njit
    def compiled(dy, gates, c_prev, tanh_c, dh, dc, dgates):  # inlined: no *args
        gate_gradient_row(dy, gates, c_prev, tanh_c, dh, dc, dgates)

    rng = np.random.default_rng(H)
    inputs = {"dy": rng.standard_normal(H), "gates": rng.random(4 * H), "c_prev": 3 * rng.standard_normal(H),
              "tanh_c": np.tanh(rng.standard_normal(H)), "dh": rng.standard_normal(H), "dc": rng.standard_normal(H),
              "dgates": np.zeros(4 * H)}  # fmt: skip
    results = []
    for run in (compiled, gate_gradient_row):
        padded = {name: np.concatenate([[7.0], a, [7.0]]).astype(dtype) for name, a in inputs.items()}
        run(*(a[1:-1] for a in padded.values()))
        for name, a in padded.items():
            assert a[0] == a[-1] == 7, name
        results.append({name: a[1:-1] for name, a in padded.items()})
    got, want = results
    assert (got["dh"] == 0).all() and (want["dh"] == 0).all()
    # Each output is a product of a few terms after one sum (dh + dy, then dc): a fused
    # multiply-add against NumPy's two roundings differs by an ulp of those terms.
    dh = np.abs(inputs["dh"]) + np.abs(inputs["dy"])
    i, f, g, o = inputs["gates"].reshape(4, H)
    dc = np.abs(inputs["dc"]) + dh * o * (1 - inputs["tanh_c"] ** 2)
    scale = {"dc": dc * f, "dgates": np.concatenate([dc * g, dc * np.abs(inputs["c_prev"]), dc * i, dh])}
    for name, size in scale.items():
        assert (np.abs(got[name] - want[name]) <= 8 * np.finfo(dtype).eps * size).all(), name


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("H", [1, 7, 16, 17, 40, 64, 75])
def test_vectorised_gru_gate_pass_and_gradient_match_their_python_source(dtype, H):
    """The GRU gate pass and its gradient, emitted as IR two registers at a time (single
    ones and a masked last vector for the rest), give what their Python source gives with
    the scalar activations, to a few ulps of the terms, for pre-activations from tiny to
    huge, and write nothing past the ends of their rows."""
    from numba import njit

    from lstmcpu.backends.numba_backend._gru_gates import gate_gradient_row, gate_row

    @njit
    def compiled_pass(gates, hidden, bias, b_hn, h, y, hn, k):  # inlined: no *args
        gate_row(gates, hidden, bias, b_hn, h, y, hn, k)

    @njit
    def compiled_gradient(dy, gates, hn, h_prev, dh, dgates, dn_input):
        gate_gradient_row(dy, gates, hn, h_prev, dh, dgates, dn_input)

    rng = np.random.default_rng(H)
    scale = np.array([1e-30, 1e-3, 1.0, 5.0, 30.0, 1e4])[rng.integers(0, 6, 3 * H)]
    inputs = {"gates": rng.standard_normal(3 * H) * scale, "hidden": 3 * rng.standard_normal(3 * H),
              "bias": rng.standard_normal(3 * H), "b_hn": rng.standard_normal(H), "h": rng.uniform(-1, 1, H),
              "y": np.zeros(H), "hn": np.zeros(H)}  # fmt: skip
    k = activations.constants(np.dtype(dtype))
    results = []
    for run in (compiled_pass, gate_row):
        padded = {name: np.concatenate([[7.0], a, [7.0]]).astype(dtype) for name, a in inputs.items()}
        run(*(a[1:-1] for a in padded.values()), k)
        for name, a in padded.items():
            assert a[0] == a[-1] == 7, name
        results.append({name: a[1:-1] for name, a in padded.items()})
    got, want = results
    ulp = np.finfo(dtype).eps
    np.testing.assert_allclose(got["gates"][: 2 * H], want["gates"][: 2 * H], rtol=2 * ulp, atol=0)  # r, z
    np.testing.assert_allclose(got["hn"], want["hn"], rtol=ulp, atol=0)
    # n = tanh(G_n + b_n + r hn) and h' = n + z (h - n): a fused multiply-add against two
    # roundings differs by an ulp of the terms; n inherits it through tanh (slope <= 1).
    r, z, n = want["gates"].astype(np.float64).reshape(3, H)
    pre_n = np.abs(inputs["gates"][2 * H :]) + np.abs(inputs["bias"][2 * H :]) + np.abs(r * want["hn"])
    assert (np.abs(got["gates"][2 * H :] - n) <= 2 * ulp * (np.abs(n) + pre_n)).all()
    h_terms = np.abs(n) + np.abs(z * (inputs["h"] - n))
    bound = 4 * ulp * (np.abs(want["h"]) + h_terms + pre_n)
    assert (np.abs(got["h"] - want["h"]) <= bound).all()
    np.testing.assert_array_equal(got["y"], got["h"])

    gradient_inputs = {"dy": rng.standard_normal(H), "gates": rng.random(3 * H), "hn": 3 * rng.standard_normal(H),
                       "h_prev": rng.uniform(-1, 1, H), "dh": rng.standard_normal(H), "dgates": np.zeros(3 * H),
                       "dn_input": np.zeros(H)}  # fmt: skip
    results = []
    for run in (compiled_gradient, gate_gradient_row):
        padded = {name: np.concatenate([[7.0], a, [7.0]]).astype(dtype) for name, a in gradient_inputs.items()}
        run(*(a[1:-1] for a in padded.values()))
        for name, a in padded.items():
            assert a[0] == a[-1] == 7, name
        results.append({name: a[1:-1] for name, a in padded.items()})
    got, want = results
    # Products of a few terms after one sum (dh + dy): a few ulps of that sum's terms.
    d = np.abs(gradient_inputs["dh"]) + np.abs(gradient_inputs["dy"])
    r, z, n = gradient_inputs["gates"].reshape(3, H)
    scale = {"dh": d, "dn_input": d, "dgates": np.concatenate([d * np.abs(gradient_inputs["hn"]), d * 2, d])}
    for name, size in scale.items():
        assert (np.abs(got[name] - want[name]) <= 8 * ulp * size).all(), name


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("H", [1, 7, 16, 17, 40, 75])
@pytest.mark.parametrize("relu", [False, True], ids=["tanh", "relu"])
def test_vectorised_rnn_activation_and_gradient_match_their_python_source(dtype, H, relu):
    """The RNN's activation and its gradient, emitted as IR, give what their Python source
    gives (tanh to an ulp, relu exactly, NaN kept by relu) and write nothing past the ends
    of their rows."""
    from numba import njit

    from lstmcpu.backends.numba_backend._rnn_gates import gate_gradient_row, gate_row

    @njit
    def compiled_pass(gates, bias, relu, h, y, k):  # inlined: no *args
        gate_row(gates, bias, relu, h, y, k)

    @njit
    def compiled_gradient(dy, act, relu, dh, dgates):
        gate_gradient_row(dy, act, relu, dh, dgates)

    rng = np.random.default_rng(H)
    gates = rng.standard_normal(H) * np.array([1e-30, 1e-3, 1.0, 30.0, 1e4])[rng.integers(0, 5, H)]
    gates[H // 2] = np.nan
    inputs = {"gates": gates, "bias": rng.standard_normal(H), "h": np.zeros(H), "y": np.zeros(H)}
    k = activations.constants(np.dtype(dtype))
    results = []
    for run in (compiled_pass, gate_row):
        padded = {name: np.concatenate([[7.0], a, [7.0]]).astype(dtype) for name, a in inputs.items()}
        rows = [a[1:-1] for a in padded.values()]
        run(rows[0], rows[1], relu, rows[2], rows[3], k)
        assert all(a[0] == a[-1] == 7 for a in padded.values())
        results.append(rows[0].copy())
        np.testing.assert_array_equal(rows[2], rows[0])
        np.testing.assert_array_equal(rows[3], rows[0])
    got, want = results
    assert np.isnan(got[H // 2]) and np.isnan(want[H // 2])
    np.testing.assert_allclose(got, want, rtol=0 if relu else np.finfo(dtype).eps, atol=0)

    inputs = {"dy": rng.standard_normal(H), "act": want.astype(np.float64), "dh": rng.standard_normal(H),
              "dgates": np.zeros(H)}  # fmt: skip
    inputs["act"][H // 2] = 0.5
    results = []
    for run in (compiled_gradient, gate_gradient_row):
        padded = {name: np.concatenate([[7.0], a, [7.0]]).astype(dtype) for name, a in inputs.items()}
        rows = [a[1:-1] for a in padded.values()]
        run(rows[0], rows[1], relu, rows[2], rows[3])
        assert all(a[0] == a[-1] == 7 for a in padded.values())
        assert (rows[2] == 0).all()
        results.append(rows[3].copy())
    got, want = results
    np.testing.assert_allclose(got, want, rtol=2 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("H", [1, 7, 17, 40, 75])
@pytest.mark.parametrize("coupled", [False, True], ids=["separate", "coupled"])
def test_vectorised_variant_gate_pass_and_gradient_match_their_python_source(dtype, H, coupled):
    """The LSTM variants' gate pass (peepholes, coupled gates) and its gradient, emitted as
    IR, give what their Python source gives, to an ulp or two of the terms, and write
    nothing past the ends of their rows (nor ``c_out``, ``tanh_c_out`` without ``store``).
    The peephole weights are powers of two, so that their products are exact and a fused
    multiply-add rounds them as NumPy's product and sum do."""
    from numba import njit

    from lstmcpu.backends.numba_backend._variant_gates import gate_gradient_row, gate_row

    @njit
    def compiled_pass(gates, bias, p_i, p_f, p_o, coupled, c, m, c_out, tanh_c_out, store, k):  # inlined: no *args
        gate_row(gates, bias, p_i, p_f, p_o, coupled, c, m, c_out, tanh_c_out, store, k)

    @njit
    def compiled_gradient(dm, gates, c_prev, tanh_c, p_i, p_f, p_o, coupled, dc, dgates):
        gate_gradient_row(dm, gates, c_prev, tanh_c, p_i, p_f, p_o, coupled, dc, dgates)

    n = 3 if coupled else 4
    rng = np.random.default_rng(H)
    scale = np.array([1e-30, 1e-3, 1.0, 5.0, 30.0, 1e4])[rng.integers(0, 6, n * H)]
    k = activations.constants(np.dtype(dtype))
    ulp = np.finfo(dtype).eps

    def peepholes():
        return {name: rng.choice([-2.0, -0.5, 0.25, 1.0, 2.0], H) for name in ("p_i", "p_f", "p_o")}

    for store in (True, False):
        inputs = {"gates": rng.standard_normal(n * H) * scale, "bias": rng.standard_normal(n * H), **peepholes(),
                  "c": 3 * rng.standard_normal(H), "m": np.zeros(H), "c_out": np.zeros(H),
                  "tanh_c": np.zeros(H)}  # fmt: skip
        results = []
        for run in (compiled_pass, gate_row):
            padded = {name: np.concatenate([[7.0], a, [7.0]]).astype(dtype) for name, a in inputs.items()}
            rows = {name: a[1:-1] for name, a in padded.items()}
            run(*list(rows.values())[:5], coupled, *list(rows.values())[5:], store, k)
            assert all(a[0] == a[-1] == 7 for a in padded.values())
            results.append(rows)
        got, want = results
        np.testing.assert_allclose(got["gates"][: (n - 1) * H], want["gates"][: (n - 1) * H], rtol=2 * ulp, atol=0)
        # c = f c + i g: one fused multiply-add against two roundings, an ulp of the terms;
        # o (through its peephole, weight <= 2, slope <= 1/4), tanh(c) and m inherit it.
        gates = want["gates"].astype(np.float64).reshape(n, H)
        f, g = gates[n - 3], gates[n - 2]
        i = 1 - f if coupled else gates[0]
        terms = np.abs(f * inputs["c"]) + np.abs(i * g)
        for name in ("c", "m") + (("c_out", "tanh_c") if store else ()):
            assert (np.abs(got[name] - want[name]) <= 4 * ulp * (np.abs(want[name]) + terms)).all(), name
        assert (np.abs(got["gates"][(n - 1) * H :] - gates[n - 1]) <= 4 * ulp * (gates[n - 1] + terms)).all()
        if not store:
            assert (got["c_out"] == 0).all() and (got["tanh_c"] == 0).all()

    inputs = {"dm": rng.standard_normal(H), "gates": rng.random(n * H), "c_prev": 3 * rng.standard_normal(H),
              "tanh_c": np.tanh(rng.standard_normal(H)), **peepholes(), "dc": rng.standard_normal(H),
              "dgates": np.zeros(n * H)}  # fmt: skip
    results = []
    for run in (compiled_gradient, gate_gradient_row):
        padded = {name: np.concatenate([[7.0], a, [7.0]]).astype(dtype) for name, a in inputs.items()}
        rows = list(a[1:-1] for a in padded.values())
        run(*rows[:7], coupled, *rows[7:])
        assert all(a[0] == a[-1] == 7 for a in padded.values())
        results.append({name: a[1:-1] for name, a in padded.items()})
    got, want = results
    # Products of a few terms after one or two sums: a few ulps of the terms of dc, which
    # every output carries (times at most |c_prev| + 1 and the peepholes).
    dc = np.abs(inputs["dc"]) + 3 * np.abs(inputs["dm"])
    size = dc * (1 + np.abs(inputs["c_prev"])) * 3
    assert (np.abs(got["dc"] - want["dc"]) <= 8 * ulp * size).all()
    assert (np.abs(got["dgates"] - want["dgates"]) <= 8 * ulp * np.tile(size, n)).all()


@pytest.mark.parametrize("variant_id", list(VARIANTS))
@pytest.mark.parametrize("route", ["panel", "blas"])
def test_saturated_gates_stay_finite_on_both_routes(monkeypatch, variant_id, route):
    monkeypatch.setattr(nb, "SMALL_BATCH", 10**9 if route == "panel" else 0)
    variant = VARIANTS[variant_id]
    inputs, lengths = make_inputs(variant, 4, 3, 3, 5, np.float32, lengths=True)
    inputs["x"] *= np.float32(1e6 if variant_id != "rnn-relu" else 1e3)  # relu is unbounded
    outputs, cache = run_forward(nb.NumbaBackend(), variant, inputs, lengths)
    grads = run_backward(nb.NumbaBackend(), variant, random_upstream(variant, 4, 3, 5, np.float32), cache)
    assert all(np.isfinite(a).all() for a in [*outputs.values(), *grads.values()])


@pytest.mark.parametrize("variant_id", list(VARIANTS))
def test_result_does_not_depend_on_the_number_of_threads(monkeypatch, variant_id):
    """The batch is cut into one chunk per thread (here every call is split: the least work
    per chunk is set to one). On the panel route every output is computed by the same
    instructions whatever the chunking, so the results are identical; on the BLAS route the
    library may round differently for other matrix sizes."""
    monkeypatch.setattr(nb, "MIN_CHUNK_WORK", 1)
    monkeypatch.setattr(nb, "FUSED_MIN_ROWS", 1)  # chunks of every size fuse the input projection
    shape = (7, 11, 4, 6)

    def results(n_threads):
        return variant_forward_backward(nb.NumbaBackend(n_threads=n_threads), variant_id, shape, np.float32, True, seed=2)

    serial = results(1)
    for n in (2, 3, 11):
        for name, value in results(n).items():
            np.testing.assert_array_equal(value, serial[name], err_msg=name)
    monkeypatch.setattr(nb, "SMALL_BATCH", 0)
    serial = results(1)
    for n in (2, 3):
        for name, value in results(n).items():
            np.testing.assert_allclose(value, serial[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("fused_min_rows", [1, 10**6], ids=["fused", "unfused"])
def test_inference_chunks_share_one_step_of_gates(monkeypatch, fused_min_rows):
    """Without a cache, the panel route that computes the input projection with each step
    keeps one step of gates, which every chunk (thread) writes in its own rows: the
    outputs equal the one-thread call's and the cached call's, fused or not."""
    monkeypatch.setattr(nb, "MIN_CHUNK_WORK", 1)
    monkeypatch.setattr(nb, "FUSED_MIN_ROWS", fused_min_rows)
    p = random_problem(9, 10, 3, 20, np.float32, lengths=True, seed=4)
    args = (p["x"], p["w_ih"], p["w_hh"], p["b"], p["h0"], p["c0"], p["lengths"])
    cached = nb.NumbaBackend(n_threads=1).forward(*args)[:3]
    for n_threads in (1, 2, 3):
        inference = nb.NumbaBackend(n_threads=n_threads).forward(*args, need_cache=False)[:3]
        for got, want in zip(inference, cached):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("I, H", [(1, 1), (3, 8), (5, 17), (32, 64)], ids=str)
def test_gate_groups_pack_the_four_gates_of_each_group_of_units(dtype, I, H):
    """Panel 2q holds the rows i and f of the units qL .. qL + L - 1 of [w_ih, w_hh], panel
    2q + 1 their rows g and o, transposed; rows of units past H are zero."""
    rng = np.random.default_rng(I * H)
    w_ih, w_hh = rng.standard_normal((4 * H, I)).astype(dtype), rng.standard_normal((4 * H, H)).astype(dtype)
    panels = step.pack_gate_groups(w_ih, w_hh)
    L = products.panel_width(dtype) // 2
    w = np.hstack([w_ih, w_hh])
    assert panels.shape == (2 * -(-H // L), I + H, 2 * L)
    for q in range(panels.shape[0] // 2):
        for gate in range(4):
            for j in range(L):
                unit = q * L + j
                want = w[gate * H + unit] if unit < H else np.zeros(I + H, dtype)
                np.testing.assert_array_equal(panels[2 * q + gate // 2, :, gate % 2 * L + j], want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("store", [True, False], ids=["store", "no-store"])
@pytest.mark.parametrize(
    "T, B, I, H, lengths", [(3, 8, 1, 1, False), (4, 13, 3, 17, True), (5, 32, 32, 64, True), (2, 9, 5, 40, False)],
    ids=str,
)
def test_fused_step_gives_the_unfused_results_to_the_bit(monkeypatch, dtype, store, T, B, I, H, lengths):
    """The gate pass in the epilogue of each block of the product (blocks of 8, 4 and 1
    rows, the last group of units partial, rows past their length) computes every output
    with the operations of the unfused panel route: the same outputs, cache and final
    states to the bit (the gates at steps past a row's length are not kept)."""
    p = random_problem(T, B, I, H, dtype, lengths=lengths, seed=B + H)
    args = (p["x"], p["w_ih"], p["w_hh"], p["b"], p["h0"], p["c0"], p["lengths"], store)
    results = {}
    for fused_min_rows in (1, 10**6):
        monkeypatch.setattr(nb, "FUSED_MIN_ROWS", fused_min_rows)
        results[fused_min_rows] = nb.NumbaBackend(n_threads=1).forward(*args)
    (fused, unfused) = results.values()
    for got, want in zip(fused[:3], unfused[:3]):
        np.testing.assert_array_equal(got, want)
    if store:
        active = np.arange(T)[:, None] < (p["lengths"] if lengths else np.full(B, T))[None, :]
        for name in ("c", "tanh_c", "y"):
            np.testing.assert_array_equal(fused[3][name], unfused[3][name], err_msg=name)
        np.testing.assert_array_equal(fused[3]["gates"][active], unfused[3]["gates"][active])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("B, H, lengths", [(1, 7, None), (1, 40, [5]), (3, 9, [7, 2, 5])], ids=str)
def test_units_split_between_two_threads_give_the_one_thread_result(monkeypatch, dtype, B, H, lengths):
    """A batch that is not cut into chunks has each step's units split between the calling
    thread and a pool thread, synchronised per step, forward and backward; every output and
    gradient equals the one-thread result to the bit."""
    monkeypatch.setattr(nb, "MIN_STEP_WORK", 1)
    monkeypatch.setattr(nb, "MIN_PANEL_STEPS", 0)
    monkeypatch.setattr(nb, "MAX_SPLIT_ROWS", 3)
    monkeypatch.setattr(nb.SplitTimes, "choose", lambda self, key: True)  # split, however fast it ran
    threads = []

    def recording(team):
        def run(me, n_steps, args, progress):
            threads.append((team.__name__, me, threading.current_thread().name.startswith("lstmcpu-numba")))
            team(me, n_steps, args, progress)

        return run

    for name in ("forward_team", "backward_team"):
        monkeypatch.setattr(nb._lstm, name, recording(getattr(nb._lstm, name)))
    p = random_problem(7, B, 5, H, dtype, seed=4)
    p["lengths"] = None if lengths is None else np.array(lengths)
    serial = forward_backward(nb.NumbaBackend(n_threads=1), p, dtype)
    assert not threads
    split = forward_backward(nb.NumbaBackend(n_threads=2), p, dtype)
    assert sorted(threads) == [("backward_team", 0, False), ("backward_team", 1, True),
                               ("forward_team", 0, False), ("forward_team", 1, True)]  # fmt: skip
    for name, a, b in zip(["y", "h_n", "c_n"] + GRAD_NAMES, split, serial):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert_matches_oracle(split, p, dtype)


def test_only_a_single_sequence_with_enough_work_per_step_may_be_split():
    backend, plan = nb.NumbaBackend(), (1, False)
    online, demo = np.zeros((1024, 256), np.float32), np.zeros((4 * 182, 182), np.float32)
    assert backend._may_split_units(plan, 1, online, 2)
    assert not backend._may_split_units(plan, 2, online, 2)  # two sequences: one thread
    assert not backend._may_split_units(plan, 1, demo, 2)  # 132k multiply-adds a step: too little
    assert not backend._may_split_units(plan, 1, online, 1)
    assert not backend._may_split_units((1, True), 1, online, 2)  # BLAS route


def test_a_call_that_may_split_takes_the_way_that_ran_faster_lately():
    """Each way is timed (split first); then the way of the fastest of the latest times;
    the other is tried again at the RETRY_CALLS-th call and the next; a call that changes
    way (the first of each, which pays for compiling and starting threads; the first of a
    retry, which finds the other thread asleep) is not counted; kinds of call apart."""
    from lstmcpu.backends.numba_backend import _split_timing

    times = _split_timing.SplitTimes()

    def call(key, seconds):
        """One call of kind ``key``: the way chosen, its time recorded."""
        split = times.choose(key)
        times.record(key, split, seconds(split) if callable(seconds) else seconds)
        return split

    assert [call("a", 100.0), call("a", 3.0)] == [True, True]  # the first not counted
    assert [call("a", 100.0), call("a", 2.0)] == [False, False]
    assert times.choose("b") is True  # another kind: its own times
    # One thread is faster: the split is tried at the RETRY_CALLS-th call and the next.
    ways = [call("a", lambda split: 3.0 if split else 2.0) for _ in range(2 * _split_timing.RETRY_CALLS + 2)]
    retry = _split_timing.RETRY_CALLS - 1
    assert [i for i, split in enumerate(ways) if split] == [retry, retry + 1, 2 * retry + 2, 2 * retry + 3]
    # A retry's first call is slow (the other thread asleep), its second fast: the split is
    # faster now, and the retry's first call did not count.
    times._calls["a"] = _split_timing.RETRY_CALLS - 1
    assert [call("a", 50.0), call("a", 1.0)] == [True, True]
    assert times.choose("a") is True
    times.record("a", True, 9.0)  # one slow split call (the other core busy a while): still split
    assert [call("a", 9.0), call("a", 9.0)] == [True, True]
    assert call("a", 9.0) is False  # three slow: the fast one is no longer among the latest


def test_the_backend_times_both_ways_of_a_call_that_may_split(monkeypatch):
    """The first calls of a single sequence that may split try each way, twice (the results
    equal to the bit), and record their times per kind of call."""
    monkeypatch.setattr(nb, "MIN_STEP_WORK", 1)
    monkeypatch.setattr(nb, "MIN_PANEL_STEPS", 0)
    p = random_problem(6, 1, 4, 9, np.float64, seed=3)
    backend = nb.NumbaBackend(n_threads=2)
    first = forward_backward(backend, p, np.float64)
    for _ in range(3):
        later = forward_backward(backend, p, np.float64)
        for name, a, b in zip(["y", "h_n", "c_n"] + GRAD_NAMES, first, later):
            np.testing.assert_array_equal(a, b, err_msg=name)
    samples = backend._split_times._samples
    assert {key[0] for key in samples} == {"forward", "backward"}
    for split, alone in samples.values():
        assert len(split) >= 1 and len(alone) >= 1 and min(split) > 0 and min(alone) > 0


def test_small_calls_run_on_one_thread_and_large_ones_are_split():
    least = nb.MIN_CHUNK_WORK
    assert nb.chunk_count(2, 32, least - 1) == 1
    assert nb.chunk_count(2, 32, 2 * least) == 2
    assert nb.chunk_count(4, 32, 3 * least) == 3
    assert nb.chunk_count(8, 3, 100 * least) == 3  # never more chunks than rows
    assert nb.chunk_count(1, 32, 100 * least) == 1


def test_chunks_run_on_other_threads(monkeypatch):
    """A split call really runs its chunks beyond the first on the pool's threads."""
    monkeypatch.setattr(nb, "MIN_CHUNK_WORK", 1)
    seen = []

    def kernel(lo, hi, blas, out):
        seen.append((lo, hi, threading.current_thread().name))
        out[lo:hi] = lo

    out = np.zeros(7)
    nb._run_chunks(kernel, 3, 7, False, (out,))
    assert sorted(lo_hi for *lo_hi, _ in seen) == [[0, 2], [2, 4], [4, 7]]
    assert sum(name.startswith("lstmcpu-numba") for *_, name in seen) == 2
    np.testing.assert_array_equal(out, [0, 0, 2, 2, 4, 4, 4])


def test_default_threads_follow_numba_set_num_threads():
    backend = nb.NumbaBackend()
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert backend._threads() == 1
        if numba.config.NUMBA_NUM_THREADS >= 2:
            numba.set_num_threads(2)
            assert backend._threads() == 2
    finally:
        numba.set_num_threads(before)
    assert nb.NumbaBackend(n_threads=3)._threads() == 3


def test_blas_thread_limit_is_restored_after_a_threaded_call():
    from threadpoolctl import threadpool_info, threadpool_limits

    p = random_problem(3, 4, 2, 5, np.float64)
    with threadpool_limits(limits=2, user_api="blas"):
        before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        forward_backward(nb.NumbaBackend(n_threads=2), p, np.float64)
        after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert after == before


@pytest.mark.parametrize("n_threads", [0, -1, 1.5, True, "2"])
def test_bad_thread_count_is_a_clear_error(n_threads):
    with pytest.raises(ValueError, match="n_threads must be None or an integer >= 1"):
        nb.NumbaBackend(n_threads=n_threads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_activations_are_accurate_and_finite_everywhere(dtype):
    from scipy.special import expit

    k = activations.constants(np.dtype(dtype))
    v = np.concatenate([np.linspace(-30, 30, 2001), [0.0, 1e-30, -1e-30, 1e-7, -1e-7, 88, -88, 1e4, -1e4, 1e30, -1e30]])
    v = v.astype(dtype)
    sig = np.array([activations.sigmoid(a, k) for a in v])
    tanh = np.array([activations.tanh(a, k) for a in v])
    exact = v.astype(np.float64)
    eps = np.finfo(dtype).eps
    assert np.isfinite(sig).all() and np.isfinite(tanh).all()
    # A few ulps, relative: also for tiny tanh arguments and tiny sigmoid values (down to
    # exp(-80), the smallest value the kernels produce).
    wanted_sig = np.maximum(expit(exact), np.exp(-80.0))
    np.testing.assert_allclose(sig, wanted_sig, rtol=4 * eps, atol=0)
    np.testing.assert_allclose(tanh, np.tanh(exact), rtol=4 * eps, atol=0)


def test_float32_exp_polynomial_is_as_accurate_as_its_fit_says():
    """The float32 coefficients (from benchmarks/fit_exp_polynomial.py) approximate
    (exp(r) - 1) / r within 1.4e-8 relative over the reduced range, a tenth of an ulp."""
    coefficients = np.array(activations._FLOAT32_POLYNOMIAL)
    r = np.linspace(-np.log(2) / 2, np.log(2) / 2, 100001)
    r = r[r != 0]
    target = np.expm1(r) / r
    fitted = np.polynomial.polynomial.polyval(r, coefficients)
    assert coefficients[0] == 1.0
    assert np.max(np.abs(fitted - target) / target) < 1.4e-8


def test_kernels_run_as_pure_python_under_numba_disable_jit():
    """NUMBA_DISABLE_JIT=1 runs the kernels' Python source (for coverage and debugging)."""
    script = textwrap.dedent(
        """
        import numpy as np
        import numba
        assert numba.config.DISABLE_JIT
        from lstmcpu.backends import numba_backend as nb
        from lstmcpu.backends.numpy_backend import NumpyBackend
        from _cells import VARIANTS, make_inputs, random_upstream, run_backward, run_forward
        nb.MIN_CHUNK_WORK = 1  # split every call in chunks: the pool runs pure Python too
        nb.MIN_PANEL_STEPS = 0  # a single sequence takes the panel kernel however short
        nb.FUSED_MIN_ROWS = 1  # chunks of any size fuse each step's products and gate pass

        def difference(variant, B, with_lengths):
            inputs, lengths = make_inputs(variant, 4, B, 2, 5, np.float64, lengths=with_lengths)
            results = []
            for backend in (nb.NumbaBackend(n_threads=2), NumpyBackend()):
                outputs, cache = run_forward(backend, variant, inputs, lengths)
                grads = run_backward(backend, variant, random_upstream(variant, 4, B, 5, np.float64), cache)
                results.append({**outputs, **grads})
            return max(float(np.max(np.abs(results[0][name] - value))) for name, value in results[1].items())

        worst = 0.0
        for small_batch in (10**9, 0):  # panel route, then BLAS route
            nb.SMALL_BATCH = small_batch
            for variant in VARIANTS.values():
                worst = max(worst, difference(variant, 3, True))
        # A single sequence: its units split between two threads that spin on each other.
        nb.SMALL_BATCH, nb.MIN_STEP_WORK = 10**9, 1
        worst = max(worst, difference(VARIANTS["lstm"], 1, False))
        # The leader going on alone once the other thread keeps it waiting.
        from lstmcpu.backends.numba_backend import _sync
        _sync.SPINS, _sync.MAX_LATE = 0, 0
        worst = max(worst, difference(VARIANTS["lstm"], 1, False))
        print("max abs difference", worst)
        assert worst < 1e-12, worst
        """
    )
    tests_dir = os.path.dirname(__file__)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def registry_without_numba(monkeypatch):
    """The registry as it is on a machine where ``import numba`` fails."""
    monkeypatch.setitem(sys.modules, "numba", None)  # makes ``import numba`` raise ImportError
    monkeypatch.delitem(sys.modules, "lstmcpu.backends.numba_backend")
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    registry._reset_for_tests()
    yield
    monkeypatch.undo()
    registry._reset_for_tests()


def test_without_numba_the_backend_is_unavailable_with_the_fix(registry_without_numba):
    assert "numba" not in lstmcpu.available_backends()
    assert "numpy" in lstmcpu.available_backends()
    assert 'pip install "lstmcpu[numba]"' in lstmcpu.unavailable_backends()["numba"]
    with pytest.raises(lstmcpu.BackendUnavailableError, match=r'pip install "lstmcpu\[numba\]"'):
        lstmcpu.get_backend("numba")
    assert lstmcpu.get_backend("auto").name != "numba"


def test_numba_is_back_after_the_simulation():
    assert "numba" in lstmcpu.available_backends()


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(w_hh=np.zeros((12, 4))), ValueError, r"w_hh must have shape \(4H, H\)"),
        (dict(w_ih=np.zeros((20, 2))), ValueError, r"w_ih must have shape \(20, 3\)"),
        (dict(h0=np.zeros((3, 5))), ValueError, r"h0 must have shape \(2, 5\)"),
        (dict(b=np.zeros(20, np.float32)), TypeError, "b has dtype float32 but x has float64"),
        (dict(x=np.zeros((4, 2, 3), np.int64)), TypeError, "x must be float32 or float64"),
        (dict(lengths=np.array([5, 1])), ValueError, r"lengths must lie in \[1, 4\]"),
        (dict(lengths=np.array([0, 1])), ValueError, r"lengths must lie in \[1, 4\]"),
        (dict(lengths=np.array([1, 2, 3])), ValueError, r"lengths must have shape \(2,\)"),
        (dict(lengths=np.array([1.0, 2.0])), TypeError, "lengths must be integers"),
    ],
)
def test_bad_arguments_are_clear_errors(change, error, match):
    p = random_problem(4, 2, 3, 5, np.float64)
    p.update(change)
    with pytest.raises(error, match=match):
        nb.NumbaBackend().forward(p["x"], p["w_ih"], p["w_hh"], p["b"], p["h0"], p["c0"], p["lengths"])


def test_bad_upstream_gradient_is_a_clear_error():
    p = random_problem(4, 2, 3, 5, np.float64)
    backend = nb.NumbaBackend()
    _, _, _, cache = backend.forward(p["x"], p["w_ih"], p["w_hh"], p["b"], p["h0"], p["c0"])
    dy, dh, dc = upstream_grads(4, 2, 5, np.float64)
    with pytest.raises(ValueError, match=r"dy must have shape \(4, 2, 5\)"):
        backend.backward(dy[:3], dh, dc, cache)
    with pytest.raises(TypeError, match="dh_n has dtype float32 but the forward pass ran in float64"):
        backend.backward(dy, dh.astype(np.float32), dc, cache)


@pytest.mark.parametrize(
    "variant_id, change, error, match",
    [
        ("lstm-peephole", dict(peephole=np.zeros((2, 5))), ValueError, r"peephole must have shape \(3, 5\)"),
        ("lstm-coupled", dict(w_hh=np.zeros((20, 5))), ValueError, r"w_hh must have shape \(3H, H\)"),
        ("lstm-proj", dict(w_hr=np.zeros((2, 4))), ValueError, r"w_hr must have shape \(2, 5\)"),
        ("lstm-proj", dict(w_hr=np.zeros(5)), ValueError, r"w_hr must have shape \(P, H\)"),
        ("lstm-proj", dict(h0=np.zeros((2, 5))), ValueError, r"h0 must have shape \(2, 2\)"),
        ("gru", dict(b_hn=np.zeros(4)), ValueError, r"b_hn must have shape \(5,\)"),
        ("gru", dict(w_hh=np.zeros((20, 5))), ValueError, r"w_hh must have shape \(3H, H\)"),
        ("rnn-tanh", dict(w_hh=np.zeros((5, 4))), ValueError, r"w_hh must have shape \(H, H\)"),
        ("rnn-tanh", dict(b=np.zeros(5, np.float32)), TypeError, "b has dtype float32 but x has float64"),
    ],
)
def test_bad_variant_arguments_are_clear_errors(variant_id, change, error, match):
    variant = VARIANTS[variant_id]
    inputs, lengths = make_inputs(variant, 4, 2, 3, 5, np.float64)
    inputs.update(change)
    with pytest.raises(error, match=match):
        run_forward(nb.NumbaBackend(), variant, inputs, lengths)


def test_unknown_rnn_nonlinearity_is_a_clear_error():
    inputs, _ = make_inputs(VARIANTS["rnn-tanh"], 4, 2, 3, 5, np.float64)
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        nb.NumbaBackend().rnn_forward(*(inputs[k] for k in ("x", "w_ih", "w_hh", "b", "h0")), nonlinearity="sigmoid")


def _split_call_result(_):
    p = random_problem(6, 5, 3, 4, np.float64, seed=3)
    y, *_ = nb.NumbaBackend(n_threads=2).forward(p["x"], p["w_ih"], p["w_hh"], p["b"], p["h0"], p["c0"])
    return y


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_runs_split_calls_on_its_own_threads(monkeypatch):
    """The chunk pool's threads do not survive a fork: the child must start its own."""
    import multiprocessing

    monkeypatch.setattr(nb, "MIN_CHUNK_WORK", 1)
    parent = _split_call_result(None)  # starts the pool in this process
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.map_async(_split_call_result, [None]).get(timeout=120)[0]
    np.testing.assert_array_equal(child, parent)
