"""The pieces of the training loop: losses, the network's gradient, optimizers, clipping."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import lstmcpu
from lstmcpu._network import SequenceNetwork
from lstmcpu.heads import softmax_cross_entropy, squared_error
from lstmcpu.optim import SGD, Adam, clip_by_global_norm


def numerical_grad(f, x, eps=1e-6):
    """Central finite differences of the scalar ``f()`` w.r.t. every entry of ``x`` (in place)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_cross_entropy_gradient(weighted):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 4))
    targets = rng.integers(0, 4, 6)
    weights = None
    if weighted:
        weights = np.array([0.1, 0.2, 0.0, 0.3, 0.4, 0.0])
    _, grad = softmax_cross_entropy(logits.copy(), targets, weights)
    numeric = numerical_grad(lambda: softmax_cross_entropy(logits.copy(), targets, weights)[0], logits)
    assert_allclose(grad, numeric, atol=1e-8)
    # The value: mean (or weighted) negative log-likelihood.
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    nll = -log_p[np.arange(6), targets]
    expected = nll.mean() if weights is None else nll @ weights
    assert_allclose(softmax_cross_entropy(logits.copy(), targets, weights)[0], expected)


def test_softmax_cross_entropy_is_stable_for_large_logits():
    loss, grad = softmax_cross_entropy(np.array([[1000.0, 0.0]]), np.array([1]))
    assert_allclose(loss, 1000.0)
    assert_allclose(grad, [[1.0, -1.0]])


@pytest.mark.parametrize("weighted", [False, True])
def test_squared_error_gradient(weighted):
    rng = np.random.default_rng(1)
    pred, targets = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    weights = np.array([0.5, 0.0, 0.25, 0.25, 0.0]) if weighted else None
    loss, grad = squared_error(pred.copy(), targets, weights)
    numeric = numerical_grad(lambda: squared_error(pred.copy(), targets, weights)[0], pred)
    assert_allclose(grad, numeric, atol=1e-8)
    per_row = ((pred - targets) ** 2).mean(axis=1)
    assert_allclose(loss, 0.5 * (per_row.mean() if weights is None else per_row @ weights))


@pytest.mark.parametrize(
    "output, bidirectional, num_layers, with_lengths",
    [("last", False, 1, False), ("last", True, 2, True), ("sequence", False, 2, True),
     ("sequence", True, 1, False)],  # fmt: skip
)
def test_network_gradient_matches_finite_differences(backend_name, output, bidirectional, num_layers, with_lengths):
    T, B, F, H, K = 4, 3, 2, 3, 2
    rng = np.random.default_rng(0)
    net = SequenceNetwork("lstm", F, H, num_layers, bidirectional, 0.0, np.float64, backend_name,
                          K, output, np.random.RandomState(0))  # fmt: skip
    backend = lstmcpu.get_backend(backend_name)
    x = rng.standard_normal((T, B, F))
    lengths = np.array([4, 2, 1]) if with_lengths else None
    rows = B if output == "last" else T * B
    targets = rng.standard_normal((rows, K))
    weights = None
    if with_lengths and output == "sequence":
        mask = (np.arange(T)[:, None] < lengths).ravel()
        weights = mask / mask.sum()

    def loss():
        out, _ = net.forward(x, lengths, backend)
        return squared_error(out, targets, weights)[0]

    out, _ = net.forward(x, lengths, backend, training=True)
    grad = net.backward(squared_error(out, targets, weights)[1]).copy()
    numeric = numerical_grad(loss, net.flat)
    assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_adam_matches_its_definition():
    rng = np.random.default_rng(0)
    w = rng.standard_normal(5)
    w_ref = w.copy()
    opt = Adam(w, learning_rate=0.1, beta_1=0.8, beta_2=0.9, epsilon=1e-3)
    m = v = np.zeros(5)
    for t in range(1, 4):
        g = rng.standard_normal(5)
        m = 0.8 * m + 0.2 * g
        v = 0.9 * v + 0.1 * g * g
        m_hat, v_hat = m / (1 - 0.8**t), v / (1 - 0.9**t)
        w_ref = w_ref - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-3 / np.sqrt(1 - 0.9**t))
        opt.step(g.copy())
    assert_allclose(w, w_ref)


def test_sgd_momentum_matches_its_definition():
    rng = np.random.default_rng(0)
    w = rng.standard_normal(4)
    w_ref, velocity = w.copy(), np.zeros(4)
    opt = SGD(w, learning_rate=0.05, momentum=0.7)
    for _ in range(3):
        g = rng.standard_normal(4)
        velocity = 0.7 * velocity - 0.05 * g
        w_ref = w_ref + velocity
        opt.step(g.copy())
    assert_allclose(w, w_ref)


def test_clip_by_global_norm():
    g = np.array([3.0, 4.0, 0.0])
    assert clip_by_global_norm(g, None, 25.0) == 5.0 and g.tolist() == [3.0, 4.0, 0.0]
    assert clip_by_global_norm(g, 10.0, 25.0) == 5.0 and g.tolist() == [3.0, 4.0, 0.0]
    clip_by_global_norm(g, 2.5, 25.0)
    assert_allclose(g, [1.5, 2.0, 0.0])
