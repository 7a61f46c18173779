"""Behaviour specific to the Cython backend: registration, argument checks at the kernel
entry, the GIL released during the loops, extreme inputs, and every code path vs the oracle.

The contract itself (oracle, lengths, edge shapes) is covered for every backend by
test_kernel_contract.py and test_torch_parity.py.
"""

import threading

import numpy as np
import pytest

import lstmcpu
from lstmcpu.backends.numpy_backend import NumpyBackend

from _lstm_helpers import random_problem, upstream_grads

cython_backend = pytest.importorskip(
    "lstmcpu.backends.cython", reason="the Cython extension is not built", exc_type=ImportError
)

ORACLE = NumpyBackend()
ARGS = ["x", "w_ih", "w_hh", "b", "h0", "c0"]


@pytest.fixture
def backend():
    return lstmcpu.get_backend("cython")


def forward(backend, p, need_cache=True):
    return backend.forward(*(p[k] for k in ARGS), p["lengths"], need_cache=need_cache)


def as64(p):
    return {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v) for k, v in p.items()}


def test_registry_lists_it_and_auto_picks_it(monkeypatch):
    monkeypatch.delenv(lstmcpu.registry.ENV_VAR, raising=False)
    assert "cython" in lstmcpu.available_backends()
    assert lstmcpu.get_backend("auto").name == "cython"
    assert lstmcpu.get_backend("auto", dtype=np.float64).name == "cython"


# ---------------------------------------------------------------- checks at the kernel entry


def test_valid_problem_runs(backend):
    y, h_n, c_n, cache = forward(backend, random_problem(3, 2, 4, 5, np.float32))
    assert y.shape == (3, 2, 5) and cache is not None


@pytest.mark.parametrize(
    "name, bad, error, match",
    [
        ("x", np.zeros((3, 2), np.float32), ValueError, "x must be a 3-D"),
        ("x", np.zeros((3, 2, 4), np.int64), TypeError, "float32 or float64"),
        ("x", np.zeros((0, 2, 4), np.float32), ValueError, "at least 1"),
        ("w_hh", np.zeros((20, 4), np.float32), ValueError, r"w_hh must be a 2-D ndarray of shape \(4H, H\)"),
        ("w_ih", np.zeros((20, 3), np.float32), ValueError, r"w_ih must have shape \(20, 4\)"),
        ("w_ih", np.zeros((20, 4), np.float64), TypeError, "w_ih must have dtype float32"),
        ("w_ih", [[0.0] * 4] * 20, TypeError, "w_ih must be a numpy.ndarray"),
        ("b", np.zeros(21, np.float32), ValueError, r"b must have shape \(20,\)"),
        ("h0", np.zeros((3, 5), np.float32), ValueError, r"h0 must have shape \(2, 5\)"),
        ("c0", np.zeros((5, 2), np.float32).T, ValueError, "c0 must be C-contiguous"),
        ("w_hh", np.zeros((5, 20), np.float32).T, ValueError, "w_hh must be C-contiguous"),
        ("lengths", np.array([3, 4]), ValueError, r"lengths must lie in \[1, 3\]"),
        ("lengths", np.array([3, 0]), ValueError, r"lengths must lie in \[1, 3\]"),
        ("lengths", np.array([3]), ValueError, r"lengths must have shape \(2,\)"),
        ("lengths", np.array([3.0, 1.0]), TypeError, "lengths must be an integer array"),
    ],
)
def test_forward_rejects_inconsistent_arguments(backend, name, bad, error, match):
    p = random_problem(3, 2, 4, 5, np.float32)
    p[name] = bad
    with pytest.raises(error, match=match):
        forward(backend, p)


def test_backward_rejects_inconsistent_arguments(backend):
    p = random_problem(3, 2, 4, 5, np.float64)
    _, _, _, cache = forward(backend, p)
    dy, dh_n, dc_n = upstream_grads(3, 2, 5, np.float64)
    with pytest.raises(ValueError, match=r"dy must have shape \(3, 2, 5\)"):
        backend.backward(dy[:2].copy(), dh_n, dc_n, cache)
    with pytest.raises(TypeError, match="dh_n must have dtype float64"):
        backend.backward(dy, dh_n.astype(np.float32), dc_n, cache)
    with pytest.raises(ValueError, match="dc_n must be C-contiguous"):
        backend.backward(dy, dh_n, np.asfortranarray(dc_n), cache)
    with pytest.raises(TypeError, match="cache must be the one returned"):
        backend.backward(dy, dh_n, dc_n, {"x": p["x"]})
    with pytest.raises(TypeError, match="cache must be the one returned"):
        backend.backward(dy, dh_n, dc_n, None)
    backend.backward(dy, dh_n, dc_n, cache)  # the checks above left the cache intact
    with pytest.raises(ValueError, match="cache was spent by an earlier backward"):
        backend.backward(dy, dh_n, dc_n, cache)  # its gates now hold gradients


def test_cache_cannot_be_tampered_with(backend):
    _, _, _, cache = forward(backend, random_problem(3, 2, 4, 5, np.float32))
    with pytest.raises(AttributeError):
        cache.gates = np.zeros((1, 1, 1), np.float32)


# ---------------------------------------------------------------- GIL and extreme inputs


def assert_concurrent_runs_match_serial(run, n=4):
    """Run problems ``run(0) .. run(n - 1)`` in n threads, each n times: every result must
    equal the serial one bit for bit."""
    serial = [run(k) for k in range(n)]
    results = [[None] * n for _ in range(n)]

    def worker(k):
        for repeat in range(n):
            results[k][repeat] = run(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(n):
        for repeat in range(n):
            for got, ref in zip(results[k][repeat], serial[k]):
                np.testing.assert_array_equal(got, ref)


def test_threads_running_concurrently_match_serial_results(backend):
    """The loops run without the GIL: concurrent calls must not share any workspace."""
    problems = [random_problem(20, 3, 8, 16, np.float32, seed=s, lengths=s % 2 == 1) for s in range(4)]
    grads = [upstream_grads(20, 3, 16, np.float32, seed=s) for s in range(4)]

    def run(k):
        y, h_n, c_n, cache = forward(backend, problems[k])
        return (y, h_n, c_n) + backend.backward(*grads[k], cache)

    assert_concurrent_runs_match_serial(run)


@pytest.mark.parametrize("scale", [1e3, 1e6, 1e30])
def test_huge_pre_activations_stay_finite_and_saturate(backend, dtype, scale):
    p = random_problem(4, 3, 5, 6, dtype)
    p["x"] = p["x"] * dtype(scale)
    y, h_n, c_n, cache = forward(backend, p)
    grads = backend.backward(*upstream_grads(4, 3, 6, dtype), cache)
    assert np.isfinite(y).all() and np.isfinite(h_n).all() and np.isfinite(c_n).all()
    assert all(np.isfinite(g).all() for g in grads)
    ref = forward(ORACLE, as64(p))
    np.testing.assert_allclose(y, ref[0], rtol=1e-5, atol=1e-6)


def test_gate_functions_are_accurate_to_rounding(backend, dtype):
    """One step from zero state: c = sigmoid(a) * tanh(a'), h = sigmoid(.) * tanh(c).

    With w_hh = 0, b = 0 and identity-like input weights, the gates see exactly the inputs,
    so the outputs test sigmoid and tanh over a wide range of arguments (tiny, ordinary,
    saturated) against float64 NumPy to within 2 units in the last place.
    """
    args = np.concatenate([np.geomspace(1e-30, 90, 300), -np.geomspace(1e-30, 90, 300), [0.0]])
    H = args.size
    x = args.astype(dtype).reshape(1, 1, H)
    w_ih = np.zeros((4 * H, H), dtype)
    w_ih[np.arange(4 * H), np.tile(np.arange(H), 4)] = 1  # every gate sees x
    zeros = np.zeros((1, H), dtype)
    y, _, c_n, cache = backend.forward(x, w_ih, np.zeros((4 * H, H), dtype), np.zeros(4 * H, dtype),
                                       zeros, zeros)  # fmt: skip
    a = x[0, 0].astype(np.float64)
    sig = 1 / (1 + np.exp(-a))
    gates = cache.gates[0, 0]
    ulp = np.finfo(dtype).eps
    for got, want in [(gates[:H], sig), (gates[2 * H : 3 * H], np.tanh(a)), (cache.tanh_c[0, 0], np.tanh(c_n[0].astype(np.float64)))]:
        np.testing.assert_allclose(got, want.astype(dtype), rtol=2 * ulp, atol=0)


# ---------------------------------------------------------------- code paths vs the oracle


@pytest.fixture
def narrow_blocking():
    """The LSTM kernels block as on a CPU without AVX-512 for the test's duration."""
    from lstmcpu.backends.cython import _lstm

    _lstm._set_narrow_blocking(True)
    yield
    _lstm._set_narrow_blocking(False)


# Without AVX-512 the panel kernel takes rows in blocks of 4, not 8, and the single-sequence
# step reads w_hh (packed differently: T is long enough to pack) in 256-bit vectors: the
# paths such a CPU runs.
@pytest.mark.parametrize("B, H", [(1, 67), (1, 256), (9, 45), (13, 67)], ids=str)
def test_blockings_without_avx512_match_oracle(backend, dtype, tol, B, H, narrow_blocking):
    p = random_problem(20, B, 40, H, dtype, seed=B, lengths=B > 1)
    p["w_hh"] *= dtype(0.2)
    assert_lstm_matches_oracle(backend, p, dtype, tol)


def test_panel_blockings_give_identical_results(backend, dtype):
    """Every output of the panel kernel sums its products in the same order whatever the
    rows per block, so both blockings give the same bits."""
    from lstmcpu.backends.cython import _lstm

    p = random_problem(12, 13, 40, 67, dtype, seed=1)
    wide = forward(backend, p, need_cache=False)[:3]
    _lstm._set_narrow_blocking(True)
    try:
        narrow = forward(backend, p, need_cache=False)[:3]
    finally:
        _lstm._set_narrow_blocking(False)
    for a, b in zip(wide, narrow):
        np.testing.assert_array_equal(a, b)


# A single sequence takes the fused kernel of lstm_fused.h, larger batches the panel kernel
# of lstm_panel.h (rows in blocks of up to 8: full and partial blocks). The hidden sizes
# exercise the vector main loops and their scalar tails (H % 8, H % 32); H = 300 makes
# w_hh (and, backward, w_hh.T) larger than one span of panels that the kernel keeps in L2.
@pytest.mark.parametrize(
    "B, H", [(1, 256), (2, 256), (3, 45), (4, 100), (1, 67), (5, 256), (33, 256), (9, 300)], ids=str
)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_larger_shapes_match_oracle(backend, dtype, tol, B, H, with_lengths):
    T, I = 12, 40
    p = random_problem(T, B, I, H, dtype, seed=B, lengths=with_lengths)
    p["w_hh"] *= dtype(0.2)  # keep the recurrence from saturating so the test is sensitive
    assert_lstm_matches_oracle(backend, p, dtype, tol)


# A single sequence takes the fused kernel of lstm_fused.h (blocks of 8 float / 4 double
# units, rows summed in vectors of 8 / 4): hidden sizes below, at and across a block and its
# column tails, and a sequence that ends before T. T = 19 packs w_hh for the kernel (the
# shorter sequences of test_larger_shapes_match_oracle read it in place).
@pytest.mark.parametrize("H", [1, 3, 4, 8, 13, 67, 256])
@pytest.mark.parametrize("with_length", [False, True], ids=["full", "length"])
def test_single_long_sequence_matches_oracle(backend, dtype, tol, H, with_length):
    T = 19
    p = random_problem(T, 1, 9, H, dtype, seed=H)
    p["w_hh"] *= dtype(1.6 / np.sqrt(H))  # spectral radius about 0.8, as below
    if with_length:
        p["lengths"] = np.array([T - 4])
    assert_lstm_matches_oracle(backend, p, dtype, tol)
    inference = forward(backend, p, need_cache=False)
    training = forward(backend, p, need_cache=True)
    for a, b in zip(inference[:3], training[:3]):
        np.testing.assert_array_equal(a, b)


# With BLAS allowed two threads the time loops split a single sequence's units, or a
# batch's sequences in blocks of 8 (the second thread gets a scalar tail of units / a
# partial block), and the input projection's rows; training also splits its backward steps
# (a batch's sequences) and the halves of its gradient GEMMs.
@pytest.mark.parametrize("B, H", [(1, 133), (13, 67)], ids=str)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_two_threads_give_the_results_of_one(backend, dtype, tol, B, H, with_lengths):
    """The loops compute every output as on one thread, so the states are identical; the
    gradients differ at most by rounding (BLAS may round a half of a GEMM differently)."""
    from threadpoolctl import threadpool_limits

    from lstmcpu.backends.cython._entry import step_threads

    p = random_problem(30, B, 5, H, dtype, seed=3, lengths=with_lengths)
    p["w_hh"] *= dtype(1.6 / np.sqrt(H))
    if with_lengths and B == 1:
        p["lengths"] = np.array([26])
    upstream = upstream_grads(30, B, H, dtype)
    inference, training = {}, {}
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="blas"):
            assert step_threads(B, H, need_cache=False) == threads
            assert step_threads(B, H, need_cache=True) == threads
            inference[threads] = forward(backend, p, need_cache=False)[:3]
            y, h_n, c_n, cache = forward(backend, p, need_cache=True)
            training[threads] = (y, h_n, c_n) + backend.backward(*upstream, cache)
    for a, b in zip(inference[1] + training[1][:3], inference[2] + training[2][:3]):
        np.testing.assert_array_equal(a, b)
    eps = np.finfo(dtype).eps
    for a, b in zip(training[1][3:], training[2][3:]):
        np.testing.assert_allclose(a, b, rtol=8 * eps, atol=8 * eps * np.abs(a).max())
    ref = forward(ORACLE, as64(p))
    for got, want in zip(inference[2], ref[:3]):
        np.testing.assert_allclose(got, want, **tol)


def assert_lstm_matches_oracle(backend, p, dtype, tol):
    """Forward and backward of one LSTM problem against the float64 oracle."""
    T, B, _ = p["x"].shape
    H = p["h0"].shape[1]
    y, h_n, c_n, cache = forward(backend, p)
    ref = forward(ORACLE, as64(p))
    for got, want in zip((y, h_n, c_n), ref[:3]):
        np.testing.assert_allclose(got, want, **tol)
    dy, dh_n, dc_n = upstream_grads(T, B, H, dtype, seed=B)
    grads = backend.backward(dy, dh_n, dc_n, cache)
    ref_grads = ORACLE.backward(dy.astype(np.float64), dh_n.astype(np.float64), dc_n.astype(np.float64), ref[3])
    for name, got, want in zip(["dx", "dw_ih", "dw_hh", "db", "dh0", "dc0"], grads, ref_grads):
        np.testing.assert_allclose(got, want, rtol=tol["rtol"] * 10, atol=tol["atol"] * T * B, err_msg=name)


@pytest.mark.parametrize("B", [1, 3, 33])
def test_inference_mode_matches_training_mode_at_larger_shapes(backend, dtype, B):
    p = random_problem(9, B, 7, 40, dtype, seed=B, lengths=B > 1)
    inference = forward(backend, p, need_cache=False)
    training = forward(backend, p, need_cache=True)
    for a, b in zip(inference[:3], training[:3]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("T, B", [(70, 33), (300, 5), (300, 4)], ids=str)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_inference_in_input_chunks_matches_oracle(backend, dtype, tol, T, B, with_lengths):
    """Inference projects the input a chunk of steps at a time (INPUT_CHUNK_ROWS rows):
    these shapes span several chunks, the last one partial."""
    from lstmcpu.backends.cython._entry import INPUT_CHUNK_ROWS

    assert T * B > INPUT_CHUNK_ROWS and (T * B) % INPUT_CHUNK_ROWS
    p = random_problem(T, B, 6, 9, dtype, seed=T, lengths=with_lengths)
    got = forward(backend, p, need_cache=False)
    ref = forward(ORACLE, as64(p), need_cache=False)
    for a, b in zip(got[:3], ref[:3]):
        np.testing.assert_allclose(a, b, **tol)


# ---------------------------------------------------------------- GRU and RNN kernels

GRU_RNN = ["gru", "rnn-tanh", "rnn-relu"]


def cell_problem(variant_id, T, B, I, H, dtype, seed=0, lengths=False):
    from _cells import VARIANTS, make_inputs

    variant = VARIANTS[variant_id]
    inputs, lengths_array = make_inputs(variant, T, B, I, H, dtype, seed=seed, lengths=lengths)
    return variant, inputs, lengths_array


def assert_cell_matches_oracle(backend, variant, p, lengths, dtype, tol, seed):
    """Forward and backward of one problem (float32 or float64) against the float64 oracle."""
    from _cells import random_upstream, run_backward, run_forward

    T, B, _ = p["x"].shape
    H = p["c0"].shape[1] if "c0" in p else p["h0"].shape[1]
    outputs, cache = run_forward(backend, variant, p, lengths)
    ref_outputs, ref_cache = run_forward(ORACLE, variant, as64(p), lengths)
    for name, want in ref_outputs.items():
        np.testing.assert_allclose(outputs[name], want, **tol, err_msg=name)
    upstream = random_upstream(variant, T, B, H, dtype, seed=seed)
    grads = run_backward(backend, variant, upstream, cache)
    ref_grads = run_backward(ORACLE, variant, as64(upstream), ref_cache)
    for name, want in ref_grads.items():
        np.testing.assert_allclose(grads[name], want, rtol=tol["rtol"] * 10, atol=tol["atol"] * T * B, err_msg=name)


def assert_inference_in_chunks_matches(backend, variant, p, lengths, tol):
    """Inference (input projected a chunk at a time) equals training bit for bit, and the
    oracle to ``tol``."""
    from _cells import run_forward

    from lstmcpu.backends.cython._entry import INPUT_CHUNK_ROWS

    T, B, _ = p["x"].shape
    assert T * B > INPUT_CHUNK_ROWS and (T * B) % INPUT_CHUNK_ROWS
    inference, cache = run_forward(backend, variant, p, lengths, need_cache=False)
    training, _ = run_forward(backend, variant, p, lengths, need_cache=True)
    ref, _ = run_forward(ORACLE, variant, as64(p), lengths, need_cache=False)
    assert cache is None
    for name in ref:
        np.testing.assert_array_equal(inference[name], training[name])
        np.testing.assert_allclose(inference[name], ref[name], **tol, err_msg=name)


@pytest.mark.parametrize(
    "name, bad, error, match",
    [
        ("x", np.zeros((3, 2), np.float32), ValueError, "x must be a 3-D"),
        ("x", np.zeros((3, 2, 4), np.int32), TypeError, "float32 or float64"),
        ("x", np.zeros((3, 0, 4), np.float32), ValueError, "at least 1"),
        ("x", np.zeros((3, 4, 2), np.float32).transpose(0, 2, 1), ValueError, "x must be C-contiguous"),
        ("w_hh", np.zeros((20, 5), np.float32), ValueError, r"w_hh must be a 2-D ndarray of shape \(3H, H\)"),
        ("w_hh", np.zeros((15, 5), np.float64), TypeError, "w_hh must have dtype float32"),
        ("w_ih", np.zeros((15, 3), np.float32), ValueError, r"w_ih must have shape \(15, 4\)"),
        ("b", np.zeros(20, np.float32), ValueError, r"b must have shape \(15,\)"),
        ("b_hn", np.zeros(15, np.float32), ValueError, r"b_hn must have shape \(5,\)"),
        ("b_hn", None, TypeError, "b_hn must be a numpy.ndarray"),
        ("h0", np.zeros((5, 2), np.float32).T, ValueError, "h0 must be C-contiguous"),
    ],
)
def test_gru_forward_rejects_inconsistent_arguments(backend, name, bad, error, match):
    variant, p, _ = cell_problem("gru", 3, 2, 4, 5, np.float32)
    p[name] = bad
    with pytest.raises(error, match=match):
        backend.gru_forward(p["x"], p["w_ih"], p["w_hh"], p["b"], p["b_hn"], p["h0"], np.array([3, 1]))


@pytest.mark.parametrize(
    "name, bad, error, match",
    [
        ("w_hh", np.zeros((10, 5), np.float32), ValueError, r"w_hh must be a 2-D ndarray of shape \(H, H\)"),
        ("w_ih", np.zeros((5, 4), np.float64), TypeError, "w_ih must have dtype float32"),
        ("b", np.zeros(4, np.float32), ValueError, r"b must have shape \(5,\)"),
        ("h0", np.zeros((3, 5), np.float32), ValueError, r"h0 must have shape \(2, 5\)"),
        ("lengths", np.array([4, 1]), ValueError, r"lengths must lie in \[1, 3\]"),
        ("nonlinearity", "sigmoid", ValueError, "nonlinearity must be 'tanh' or 'relu'"),
    ],
)
def test_rnn_forward_rejects_inconsistent_arguments(backend, name, bad, error, match):
    variant, p, _ = cell_problem("rnn-tanh", 3, 2, 4, 5, np.float32)
    p["lengths"], p["nonlinearity"] = None, "tanh"
    p[name] = bad
    with pytest.raises(error, match=match):
        backend.rnn_forward(p["x"], p["w_ih"], p["w_hh"], p["b"], p["h0"], p["lengths"],
                            nonlinearity=p["nonlinearity"])  # fmt: skip


@pytest.mark.parametrize("variant_id", GRU_RNN)
def test_gru_rnn_backward_reject_inconsistent_arguments(backend, variant_id):
    from _cells import run_forward

    variant, p, _ = cell_problem(variant_id, 3, 2, 4, 5, np.float64)
    _, cache = run_forward(backend, variant, p, None)
    kernel = backend.gru_backward if variant["cell"] == "gru" else backend.rnn_backward
    dy, dh_n = np.zeros((3, 2, 5)), np.zeros((2, 5))
    with pytest.raises(ValueError, match=r"dy must have shape \(3, 2, 5\)"):
        kernel(dy[:, :1].copy(), dh_n, cache)
    with pytest.raises(TypeError, match="dh_n must have dtype float64"):
        kernel(dy, dh_n.astype(np.float32), cache)
    with pytest.raises(ValueError, match="dh_n must be C-contiguous"):
        kernel(dy, np.zeros((5, 2)).T, cache)
    _, _, _, lstm_cache = forward(backend, random_problem(3, 2, 4, 5, np.float64))
    with pytest.raises(TypeError, match="cache must be the one returned"):
        kernel(dy, dh_n, lstm_cache)
    with pytest.raises(TypeError, match="cache must be the one returned"):
        backend.backward(dy, dh_n, dh_n, cache)


# Batches of at most 4 take the small-batch kernels of recurrent.h, larger ones BLAS; the
# hidden sizes exercise the vector main loops and their scalar tails (3H % 4 and H % 4 rows,
# H % 8 and H % 32 columns).
@pytest.mark.parametrize("variant_id", GRU_RNN)
@pytest.mark.parametrize(
    "B, H", [(1, 256), (2, 256), (3, 45), (4, 100), (1, 67), (4, 33), (5, 256), (33, 256)], ids=str
)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_gru_rnn_code_paths_match_oracle(backend, dtype, tol, variant_id, B, H, with_lengths):
    variant, p, lengths = cell_problem(variant_id, 12, B, 40, H, dtype, seed=B, lengths=with_lengths)
    # Spectral radius about 0.8 (w_hh has std 0.5, times 1.6 / sqrt(H)): the recurrence matters but
    # neither saturates nor, with relu, grows, so float32 rounding is not amplified.
    p["w_hh"] *= dtype(1.6 / np.sqrt(H))
    assert_cell_matches_oracle(backend, variant, p, lengths, dtype, tol, seed=B)


@pytest.mark.parametrize("variant_id", GRU_RNN)
@pytest.mark.parametrize("T, B", [(70, 33), (300, 4)], ids=str)
def test_gru_rnn_inference_in_input_chunks_matches_training_and_oracle(backend, dtype, tol, variant_id, T, B):
    variant, p, lengths = cell_problem(variant_id, T, B, 6, 9, dtype, seed=T, lengths=True)
    p["w_hh"] *= dtype(1.6 / 3)  # a contractive recurrence (see above) over these long sequences
    assert_inference_in_chunks_matches(backend, variant, p, lengths, tol)


@pytest.mark.parametrize("variant_id", GRU_RNN)
def test_gru_rnn_threads_running_concurrently_match_serial_results(backend, variant_id):
    """The loops run without the GIL: concurrent calls must not share any workspace."""
    from _cells import random_upstream, run_backward, run_forward

    problems = [cell_problem(variant_id, 20, 3, 8, 16, np.float32, seed=s, lengths=s % 2 == 1) for s in range(4)]

    def run(k):
        variant, p, lengths = problems[k]
        outputs, cache = run_forward(backend, variant, p, lengths)
        grads = run_backward(backend, variant, random_upstream(variant, 20, 3, 16, np.float32, seed=k), cache)
        return list(outputs.values()) + list(grads.values())

    assert_concurrent_runs_match_serial(run)


@pytest.mark.parametrize("variant_id", ["gru", "rnn-tanh"])
@pytest.mark.parametrize("scale", [1e3, 1e30])
def test_gru_rnn_huge_pre_activations_stay_finite_and_saturate(backend, dtype, variant_id, scale):
    from _cells import random_upstream, run_backward, run_forward

    variant, p, lengths = cell_problem(variant_id, 4, 3, 5, 6, dtype, lengths=True)
    p["x"] = p["x"] * dtype(scale)
    outputs, cache = run_forward(backend, variant, p, lengths)
    grads = run_backward(backend, variant, random_upstream(variant, 4, 3, 6, dtype), cache)
    assert all(np.isfinite(v).all() for v in outputs.values())
    assert all(np.isfinite(g).all() for g in grads.values())
    ref, _ = run_forward(ORACLE, variant, as64(p), lengths)
    np.testing.assert_allclose(outputs["y"], ref["y"], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- LSTM variant kernels

LSTM_VARIANTS = ["lstm-peephole", "lstm-coupled", "lstm-peephole-coupled", "lstm-proj", "lstm-proj-peephole"]


def run_variant(backend, variant_id, p, lengths, need_cache=True):
    from _cells import VARIANTS, run_forward

    return run_forward(backend, VARIANTS[variant_id], p, lengths, need_cache)


@pytest.mark.parametrize(
    "name, bad, error, match",
    [
        ("w_hr", np.zeros((3,), np.float32), ValueError, r"w_hr must be a 2-D ndarray of shape \(P, H\)"),
        ("w_hr", np.zeros((0, 5), np.float32), ValueError, r"w_hr must be a 2-D ndarray"),
        ("w_hr", np.zeros((3, 5), np.float64), TypeError, "w_hr must have dtype float32"),
        ("w_hr", np.zeros((5, 3), np.float32).T, ValueError, "w_hr must be C-contiguous"),
        ("w_hr", np.zeros((3, 6), np.float32), ValueError, r"w_ih must have shape \(24, 4\)"),
        ("w_hh", np.zeros((20, 5), np.float32), ValueError, r"w_hh must have shape \(20, 3\)"),
        ("h0", np.zeros((2, 5), np.float32), ValueError, r"h0 must have shape \(2, 3\)"),
        ("peephole", np.zeros((4, 5), np.float32), ValueError, r"peephole must have shape \(3, 5\)"),
        ("peephole", np.zeros((3, 5)), TypeError, "peephole must have dtype float32"),
    ],
)
def test_lstm_variant_forward_rejects_inconsistent_arguments(backend, name, bad, error, match):
    _, p, _ = cell_problem("lstm-proj-peephole", 3, 2, 4, 5, np.float32)
    p[name] = bad
    with pytest.raises(error, match=match):
        run_variant(backend, "lstm-proj-peephole", p, np.array([3, 1]))


def test_coupled_lstm_rejects_four_gate_weights(backend):
    _, p, _ = cell_problem("lstm", 3, 2, 4, 5, np.float32)
    with pytest.raises(ValueError, match=r"w_hh must be a 2-D ndarray of shape \(3H, H\)"):
        run_variant(backend, "lstm-coupled", p, None)


def test_lstm_variant_backward_rejects_inconsistent_arguments(backend):
    _, p, _ = cell_problem("lstm-proj", 3, 2, 4, 5, np.float64)
    _, cache = run_variant(backend, "lstm-proj", p, None)
    dy, dh_n, dc_n = np.zeros((3, 2, 2)), np.zeros((2, 2)), np.zeros((2, 5))
    with pytest.raises(ValueError, match=r"dy must have shape \(3, 2, 2\)"):
        backend.backward(np.zeros((3, 2, 5)), dh_n, dc_n, cache)
    with pytest.raises(ValueError, match=r"dh_n must have shape \(2, 2\)"):
        backend.backward(dy, dc_n, dc_n, cache)
    with pytest.raises(TypeError, match="dc_n must have dtype float64"):
        backend.backward(dy, dh_n, dc_n.astype(np.float32), cache)
    with pytest.raises(TypeError, match="cache must be the one returned"):
        backend.gru_backward(dy, dh_n, cache)


# The variants' products run through the same small-batch kernels (B <= 4) or BLAS as the
# plain LSTM's, including the projection h = m @ w_hr.T with its P rows (odd P: row tails).
@pytest.mark.parametrize("variant_id", LSTM_VARIANTS)
@pytest.mark.parametrize("B, H, P", [(1, 256, 128), (2, 256, 67), (3, 45, 7), (4, 100, 33), (5, 256, 128), (33, 256, 45)], ids=str)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_lstm_variant_code_paths_match_oracle(backend, dtype, tol, variant_id, B, H, P, with_lengths):
    from _cells import VARIANTS, make_inputs

    variant = dict(VARIANTS[variant_id])
    if variant.get("proj"):
        variant["proj"] = P
    p, lengths = make_inputs(variant, 12, B, 40, H, dtype, seed=B, lengths=with_lengths)
    p["w_hh"] *= dtype(1.6 / np.sqrt(p["w_hh"].shape[1]))  # a contractive recurrence, as above
    if variant.get("proj"):
        p["w_hr"] *= dtype(2 / np.sqrt(H))
    assert_cell_matches_oracle(backend, variant, p, lengths, dtype, tol, seed=B)


@pytest.mark.parametrize("variant_id", ["lstm-peephole-coupled", "lstm-proj-peephole"])
@pytest.mark.parametrize("T, B", [(70, 33), (300, 4)], ids=str)
def test_lstm_variant_inference_in_input_chunks_matches_training_and_oracle(backend, dtype, tol, variant_id, T, B):
    variant, p, lengths = cell_problem(variant_id, T, B, 6, 9, dtype, seed=T, lengths=True)
    assert_inference_in_chunks_matches(backend, variant, p, lengths, tol)


def test_backward_needs_no_memory_beyond_the_cache_and_the_gradients(backend):
    """The gate gradients overwrite the spent cache: backward allocates only what it returns
    (and the packed w_hh.T), not another (T, B, 4H) buffer."""
    import tracemalloc

    T, B, I, H = 40, 16, 8, 64
    p = random_problem(T, B, I, H, np.float32)
    grads = upstream_grads(T, B, H, np.float32)
    _, _, _, cache = forward(backend, p)
    lstmcpu.release_buffers()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = backend.backward(*grads, cache)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    returned = sum(g.nbytes for g in out)
    packed = 4 * H * H * 4 + 64 * 1024  # w_hh.T panels and slack for small objects
    assert peak <= returned + packed < T * B * 4 * H * 4, (peak, returned)
