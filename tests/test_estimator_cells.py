"""The estimators with every cell: GRU, RNN, and the LSTM variants."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from lstmcpu import LSTMClassifier, LSTMRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

CELL_PARAMS = {
    "gru": dict(cell="gru"),
    "rnn": dict(cell="rnn"),
    "lstm-peephole": dict(peephole=True),
    "lstm-coupled": dict(coupled=True),
    "lstm-peephole-coupled": dict(peephole=True, coupled=True),
    "lstm-proj": dict(proj_size=4),
    "lstm-proj-bidirectional": dict(proj_size=3, bidirectional=True),
}


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def sign_task(n=160, T=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, 2))
    return X, (X[:, :, 0].sum(axis=1) > 0).astype(int)


@pytest.mark.parametrize("params_id", list(CELL_PARAMS))
def test_every_cell_learns_and_its_layer_is_the_right_kind(params_id):
    X, y = sign_task()
    clf = LSTMClassifier(hidden_size=8, max_iter=30, learning_rate=0.02, random_state=0, **CELL_PARAMS[params_id])
    clf.fit(X[:120], y[:120])
    assert clf.score(X[120:], y[120:]) > 0.75, "well above chance on held-out sequences"
    layer = clf.network_.rnn
    expected_class = {"gru": "GRU", "rnn": "RNN"}.get(clf.cell, "LSTM")
    assert type(layer).__name__ == expected_class
    for name in ("peephole", "coupled", "proj_size"):
        if name in CELL_PARAMS[params_id]:
            assert getattr(layer, name) == CELL_PARAMS[params_id][name]


@pytest.mark.parametrize("params_id", ["gru", "rnn", "lstm-proj", "lstm-peephole-coupled"])
def test_streaming_equals_all_at_once_for_every_cell(params_id):
    X, y = sign_task(n=40)
    reg = LSTMRegressor(hidden_size=6, max_iter=2, random_state=0, output="sequence", **CELL_PARAMS[params_id])
    reg.fit(X, X[:, :, 0].cumsum(axis=1))
    whole = reg.predict(X)
    state, chunks = None, []
    for start in range(0, 6, 2):
        part, state = reg.predict_stream(X[:, start : start + 2], state)
        chunks.append(part)
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(cell="gru", peephole=True), "\\['peephole'\\] only apply to cell='lstm'"),
        (dict(cell="rnn", proj_size=2, coupled=True), "\\['coupled', 'proj_size'\\] only apply to cell='lstm'"),
        (dict(hidden_size=4, proj_size=4), "proj_size must be smaller than hidden_size \\(4\\)"),
    ],
)
def test_inconsistent_cell_options_are_a_clear_error(params, match):
    X, y = sign_task(n=20)
    with pytest.raises(ValueError, match=match):
        LSTMClassifier(max_iter=1, **params).fit(X, y)


def test_unknown_cell_is_a_clear_error():
    X, y = sign_task(n=20)
    with pytest.raises(ValueError, match="'cell' parameter"):
        LSTMClassifier(cell="transformer", max_iter=1).fit(X, y)


@pytest.mark.parametrize("coupled", [False, True])
def test_forget_bias_initialises_every_forget_gate(coupled):
    X, y = sign_task(n=20)
    clf = LSTMClassifier(hidden_size=5, num_layers=2, bidirectional=True, coupled=coupled, forget_bias=2.5,
                         max_iter=1, learning_rate=1e-12, solver="sgd", momentum=0.0, random_state=0)  # fmt: skip
    clf.fit(X, y)
    params = clf.network_.rnn.params
    f = slice(0, 5) if coupled else slice(5, 10)
    for name in params:
        if name.startswith("bias_ih"):
            total = params[name][f] + params[name.replace("bias_ih", "bias_hh")][f]
            np.testing.assert_allclose(total, 2.5, atol=1e-6)
