"""Thread safety, determinism and bounded memory of the layers, on every backend."""

import tracemalloc

import numpy as np
import pytest

import lstmcpu

from _lstm_helpers import results_in_threads
from benchmarks.memory_growth import growth  # the loop behind docs/reliability.md


def test_concurrent_inference_equals_serial(backend_name):
    layer = lstmcpu.LSTM(8, 32, num_layers=2, bidirectional=True, backend=backend_name, random_state=0).eval()
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((20, 4, 8)).astype(np.float32) for _ in range(8)]
    lengths = [rng.integers(1, 21, size=4) for _ in range(8)]
    serial = [layer(x, lengths=n)[0] for x, n in zip(inputs, lengths)]
    results = results_in_threads([lambda k=k: layer(inputs[k], lengths=lengths[k])[0] for k in range(8)])
    for got, expected in zip(results, serial):
        np.testing.assert_array_equal(got, expected)


def test_same_seed_same_backend_is_bit_identical(backend_name, dtype):
    def train_steps():
        layer = lstmcpu.LSTM(3, 5, num_layers=2, dropout=0.3, dtype=dtype, backend=backend_name, random_state=4)
        x = np.random.default_rng(1).standard_normal((6, 3, 3))
        for _ in range(3):
            out, _ = layer(x)
            layer.backward(out)
            for name, g in layer.grads.items():
                layer.params[name] -= dtype(0.1) * g
        return layer.params

    first, second = train_steps(), train_steps()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


def test_repeated_training_steps_do_not_grow_memory(backend_name):
    layer = lstmcpu.LSTM(8, 16, backend=backend_name, random_state=0)
    x = np.random.default_rng(0).standard_normal((10, 4, 8)).astype(np.float32)

    def step():
        out, _ = layer(x)
        layer.backward(np.ones_like(out))

    for _ in range(20):  # warm up caches (numba, BLAS buffers, interned objects)
        step()
    tracemalloc.start()
    try:
        step()
        baseline, _ = tracemalloc.get_traced_memory()
        for _ in range(300):
            step()
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One step allocates ~10 kB of arrays; 300 leaked steps would be megabytes.
    assert current - baseline < 64 * 1024, f"memory grew by {current - baseline} bytes over 300 steps"


@pytest.mark.parametrize("scale", [1e3, 1e6])
def test_saturated_layer_stays_finite(backend_name, dtype, scale):
    layer = lstmcpu.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=dtype, backend=backend_name, random_state=0)
    x = scale * np.random.default_rng(0).standard_normal((5, 2, 3))
    out, (h_n, c_n) = layer(x)
    grad_x, _ = layer.backward(np.ones_like(out))
    for a in (out, h_n, c_n, grad_x, *layer.grads.values()):
        assert np.isfinite(a).all()



@pytest.mark.parametrize("rounds", [30, pytest.param(300, marks=pytest.mark.slow)])
def test_repeated_fit_and_predict_do_not_grow_memory(backend_name, rounds):
    traced, resident = growth(backend_name, rounds)
    # One round allocates ~1 MB of arrays (the big predict batch): leaked rounds would add
    # megabytes, a leaked cache or workspace per call at least 1.5 MB over 30 rounds.
    assert traced < 256 * 1024, f"traced memory grew by {traced} bytes over {rounds} fit/predict rounds"
    if resident is not None:
        assert resident < 16 * 2**20, f"resident memory grew by {resident / 2**20:.1f} MiB over {rounds} rounds"
