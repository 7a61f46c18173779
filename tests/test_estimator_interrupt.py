"""Ctrl-C during fit, and many threads predicting with one fitted estimator."""


import numpy as np
import pytest

import lstmcpu
from lstmcpu import LSTMClassifier, registry
from lstmcpu.backends.numpy_backend import NumpyBackend

from _lstm_helpers import results_in_threads


class InterruptAt(NumpyBackend):
    """The oracle, raising KeyboardInterrupt (as Ctrl-C would) in its ``calls``-th forward."""

    name = "interrupt_at"

    def __init__(self, calls):
        self.remaining = calls

    def forward(self, *args, **kwargs):
        self.remaining -= 1
        if self.remaining == 0:
            raise KeyboardInterrupt
        return super().forward(*args, **kwargs)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 5, 2))
    return X, (X[:, :, 0].sum(axis=1) > 0).astype(int)


@pytest.fixture(autouse=True)
def _forget_registrations():
    yield
    registry._reset_for_tests()


@pytest.mark.parametrize("early_stopping", [False, True])
def test_keyboard_interrupt_stops_fit_and_leaves_a_usable_estimator(data, early_stopping):
    X, y = data
    # 64 samples in batches of 16: 4 forwards per epoch (+1 validation forward with early
    # stopping); the 11th forward falls in the third epoch.
    backend = InterruptAt(calls=11)
    clf = LSTMClassifier(hidden_size=4, batch_size=16, max_iter=50, backend=backend,
                         early_stopping=early_stopping, validation_fraction=0.25, random_state=0)  # fmt: skip
    with pytest.warns(UserWarning, match="fit interrupted \\(KeyboardInterrupt\\) after 2 complete epoch"):
        clf.fit(X, y)
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2
    assert np.isfinite(clf.network_.flat).all()
    clf.set_params(backend="numpy")
    assert clf.predict(X).shape == (64,)
    if early_stopping:
        assert len(clf.validation_scores_) == 2


def test_interrupt_restores_the_weights_from_before_the_cut_short_minibatch(data):
    X, y = data
    reference = LSTMClassifier(hidden_size=4, batch_size=16, max_iter=1, backend="numpy", random_state=0).fit(X, y)
    # An interrupt in the first minibatch of the second epoch keeps exactly the weights after
    # the first epoch.
    clf = LSTMClassifier(hidden_size=4, batch_size=16, max_iter=5, backend=InterruptAt(calls=5), random_state=0)
    with pytest.warns(UserWarning, match="after 1 complete epoch"):
        clf.fit(X, y)
    np.testing.assert_array_equal(clf.network_.flat, reference.network_.flat)


@pytest.mark.parametrize("backend_name", lstmcpu.available_backends())
def test_eight_threads_predicting_at_once_equal_serial_calls(data, backend_name):
    X, y = data
    clf = LSTMClassifier(hidden_size=8, max_iter=3, backend=backend_name, random_state=0).fit(X, y)
    batches = [X[k::8] for k in range(8)]
    serial = [clf.predict_proba(batch) for batch in batches]
    results = results_in_threads([lambda batch=batch: clf.predict_proba(batch) for batch in batches], repeats=5)
    for got, expected in zip(results, serial):
        np.testing.assert_array_equal(got, expected)


def test_interrupt_inside_the_optimizer_step_leaves_no_half_updated_weights(data, monkeypatch):
    from lstmcpu import optim

    X, y = data
    reference = LSTMClassifier(hidden_size=4, batch_size=16, max_iter=1, backend="numpy", random_state=0).fit(X, y)
    calls = {"n": 0}
    adam_step = optim.Adam.step

    def step_cut_short(self, grad):
        calls["n"] += 1
        if calls["n"] == 5:  # first update of the second epoch: half done, then Ctrl-C
            self.params[: self.params.size // 2] += 1.0
            raise KeyboardInterrupt
        adam_step(self, grad)

    monkeypatch.setattr(optim.Adam, "step", step_cut_short)
    clf = LSTMClassifier(hidden_size=4, batch_size=16, max_iter=5, backend="numpy", random_state=0)
    with pytest.warns(UserWarning, match="after 1 complete epoch"):
        clf.fit(X, y)
    np.testing.assert_array_equal(clf.network_.flat, reference.network_.flat)
