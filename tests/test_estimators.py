"""LSTMClassifier and LSTMRegressor: learning, input forms, training features, errors."""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import lstmcpu
from lstmcpu import LSTMClassifier, LSTMRegressor, registry

BACKENDS = lstmcpu.available_backends()

# Short trainings on purpose; tests about convergence use pytest.warns explicitly.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


@pytest.fixture
def register():
    """``register(name, backend_class)`` for one test; the registry forgets it afterwards."""
    yield lambda name, factory: lstmcpu.register_backend(name, factory, replace=True)
    registry._reset_for_tests()


def sign_task(n=120, T=6, F=2, seed=0):
    """Label: is the sum of feature 0 over the sequence positive?"""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, F))
    y = np.where(X[:, :, 0].sum(axis=1) > 0, "up", "down")
    return X, y


def variable_length_list(n=30, F=2, max_T=7, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(t), F)) for t in rng.integers(1, max_T + 1, size=n)]


def small(est_class, **params):
    defaults = dict(hidden_size=8, max_iter=3, random_state=0)
    return est_class(**{**defaults, **params})


# ---------------------------------------------------------------------- learning


def test_classifier_digits_as_sequences():
    # Each 8x8 image is read as 8 time steps of 8 pixels.
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 8, 8)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    clf = LSTMClassifier(hidden_size=64, max_iter=15, random_state=0)
    with pytest.warns(ConvergenceWarning):
        clf.fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.95


def test_regressor_noisy_sine():
    # Predict the next value of a noisy sine wave from the 20 previous ones: R^2 >= 0.95.
    rng = np.random.default_rng(0)
    t = np.arange(2000) * 0.1
    series = np.sin(t) + 0.1 * rng.standard_normal(t.size)
    windows = np.lib.stride_tricks.sliding_window_view(series, 21)
    X, y = windows[:, :20, None], windows[:, 20]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    reg = LSTMRegressor(hidden_size=16, max_iter=15, random_state=0)
    with pytest.warns(ConvergenceWarning):
        reg.fit(X_train, y_train)
    # The noise alone (std 0.1 on a sine of variance 0.5) caps R^2 near 0.98.
    assert reg.score(X_test, y_test) >= 0.95


def test_classifier_per_step_labels():
    # output="sequence": label each step by the sign of its first feature.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 8, 2))
    y = (X[:, :, 0] > 0).astype(int)
    clf = LSTMClassifier(hidden_size=16, max_iter=20, output="sequence", random_state=0).fit(X, y)
    assert clf.predict(X).shape == (200, 8)
    assert clf.predict_proba(X).shape == (200, 8, 2)
    assert clf.score(X, y) > 0.95


def test_regressor_sequence_to_sequence():
    # output="sequence" with (n, T, k) targets: running mean and the current value.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 10, 1))
    running_mean = np.cumsum(X[:, :, 0], axis=1) / np.arange(1, 11)
    y = np.stack([running_mean, X[:, :, 0]], axis=2)
    reg = LSTMRegressor(hidden_size=16, max_iter=40, output="sequence", random_state=0).fit(X, y)
    assert reg.predict(X).shape == (200, 10, 2)
    assert reg.score(X, y) > 0.9


def test_classifier_labels_and_probabilities():
    X, y = sign_task()
    clf = small(LSTMClassifier, max_iter=30).fit(X, y)
    assert_array_equal(clf.classes_, ["down", "up"])
    proba = clf.predict_proba(X)
    assert proba.shape == (120, 2)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert_allclose(clf.predict_log_proba(X), np.log(proba))
    assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    assert clf.score(X, y) > 0.9


def test_regressor_multi_target_shapes():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4, 3))
    reg = small(LSTMRegressor).fit(X, X.sum(axis=1))
    pred = reg.predict(X)
    assert pred.shape == (50, 3) and pred.dtype == np.float64
    assert small(LSTMRegressor).fit(X, X[:, 0, 0]).predict(X).shape == (50,)


# ---------------------------------------------------------------------- input forms


def test_2d_input_is_univariate_sequences():
    rng = np.random.default_rng(0)
    X2 = rng.standard_normal((40, 5))
    y = X2.sum(axis=1)
    a = small(LSTMRegressor).fit(X2, y)
    b = small(LSTMRegressor).fit(X2[:, :, None], y)
    assert a.n_features_in_ == 5  # columns, scikit-learn's convention for tables
    assert b.n_features_in_ == 1  # features per time step
    assert_array_equal(a.network_.flat, b.network_.flat)
    assert_allclose(a.predict(X2), b.predict(X2[:, :, None]))
    # A model fitted on a table also predicts longer sequences given as 3-D arrays.
    assert a.predict(rng.standard_normal((3, 9, 1))).shape == (3,)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_variable_length_list_has_no_padding_artefacts(bidirectional):
    X = variable_length_list()
    y = np.array([seq[:, 0].sum() > 0 for seq in X])
    clf = small(LSTMClassifier, bidirectional=bidirectional).fit(X, y)
    proba = clf.predict_proba(X)
    alone = np.concatenate([clf.predict_proba([seq]) for seq in X])
    assert_allclose(proba, alone, rtol=1e-5, atol=1e-6)


def test_bidirectional_last_reads_both_ends():
    # output="last" with a bidirectional layer: forward state at the last valid step,
    # reverse state at step 0, as PyTorch's h_n.
    X = variable_length_list(n=5)
    clf = small(LSTMClassifier, bidirectional=True, dtype="float64").fit(X, [0, 1, 0, 1, 1])
    net = clf.network_
    H = clf.hidden_size
    for seq in X:
        out, _ = net.rnn.eval().forward(seq)  # unbatched (T, 2H)
        features = np.concatenate([out[-1, :H], out[0, H:]])
        logits = features @ net.head_weight.T + net.head_bias
        expected = np.exp(logits - logits.max())
        assert_allclose(clf.predict_proba([seq])[0], expected / expected.sum(), rtol=1e-10)


def test_sequence_output_on_list_returns_per_sequence_arrays():
    X = variable_length_list()
    y = [(seq[:, 0] > 0).astype(int) for seq in X]
    clf = small(LSTMClassifier, output="sequence").fit(X, y)
    pred = clf.predict(X)
    assert [len(p) for p in pred] == [len(seq) for seq in X]
    for seq, p in zip(X, pred):
        assert_array_equal(p, clf.predict([seq])[0])
    reg = small(LSTMRegressor, output="sequence").fit(X, [seq[:, :1] for seq in X])
    assert [p.shape for p in reg.predict(X)] == [(len(seq), 1) for seq in X]
    assert np.isfinite(clf.score(X, y))


# ---------------------------------------------------------------------- training features


def test_same_random_state_same_weights():
    X, y = sign_task()
    a = small(LSTMClassifier, random_state=3).fit(X, y)
    b = small(LSTMClassifier, random_state=3).fit(X, y)
    c = small(LSTMClassifier, random_state=4).fit(X, y)
    assert_array_equal(a.network_.flat, b.network_.flat)
    assert a.loss_curve_ == b.loss_curve_
    assert not np.array_equal(a.network_.flat, c.network_.flat)


def test_loss_curve_and_stopping_on_training_loss():
    X, y = sign_task()
    clf = small(LSTMClassifier, max_iter=500, n_iter_no_change=2, tol=0.5).fit(X, y)
    assert clf.n_iter_ == len(clf.loss_curve_) < 500
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None


def test_convergence_warning_at_max_iter():
    X, y = sign_task()
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        small(LSTMClassifier, max_iter=2).fit(X, y)


def test_early_stopping_restores_best_weights():
    X, y = sign_task(n=200)
    params = dict(early_stopping=True, n_iter_no_change=3, learning_rate=0.05, max_iter=60)
    clf = small(LSTMClassifier, **params).fit(X, y)
    scores = clf.validation_scores_
    assert len(scores) == clf.n_iter_ and clf.best_validation_score_ == max(scores)
    best_epoch = int(np.argmax(scores)) + 1
    assert best_epoch < clf.n_iter_  # training went on past the best epoch
    # The same training cut at the best epoch ends with the weights that were restored.
    with pytest.warns(ConvergenceWarning):
        cut = small(LSTMClassifier, **{**params, "max_iter": best_epoch}).fit(X, y)
    assert_array_equal(clf.network_.flat, cut.network_.flat)


def test_partial_fit_with_classes():
    X, y = sign_task()
    clf = small(LSTMClassifier)
    clf.partial_fit(X[:40], y[:40], classes=["down", "up", "flat"])
    clf.partial_fit(X[40:], y[40:])
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2
    assert_array_equal(clf.classes_, ["down", "flat", "up"])
    assert clf.predict_proba(X).shape == (120, 3)
    with pytest.raises(ValueError, match="not in classes_"):
        clf.partial_fit(X[:5], ["sideways"] * 5)


def test_partial_fit_regressor_continues_training():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 5, 1))
    y = X.sum(axis=(1, 2))
    reg = small(LSTMRegressor)
    for _ in range(20):
        reg.partial_fit(X, y)
    assert reg.n_iter_ == 20
    assert reg.loss_curve_[-1] < reg.loss_curve_[0]


def test_warm_start_continues_and_cold_start_resets():
    X, y = sign_task()
    with pytest.warns(ConvergenceWarning):
        warm = small(LSTMClassifier, warm_start=True).fit(X, y)
        first = warm.network_.flat.copy()
        warm.fit(X, y)
    assert warm.n_iter_ == 6 and len(warm.loss_curve_) == 6
    with pytest.warns(ConvergenceWarning):
        cold = small(LSTMClassifier).fit(X, y)
        assert_array_equal(cold.network_.flat, first)
        cold.fit(X, y)
    assert cold.n_iter_ == 3
    assert_array_equal(cold.network_.flat, first)


def test_non_finite_loss_stops_with_clear_error_and_finite_weights():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 5, 2)), rng.standard_normal(64)
    reg = small(LSTMRegressor, solver="sgd", learning_rate=1e30, clip_norm=None)
    with pytest.raises(FloatingPointError, match="loss became .*last weights whose loss was finite"):
        reg.fit(X, y)
    assert np.isfinite(reg.network_.flat).all()
    assert np.isfinite(reg.predict(X)).all()


def test_gradient_clipping_and_l2_change_training():
    X, y = sign_task()
    base = small(LSTMClassifier, clip_norm=None, max_iter=1).fit(X, y)
    clipped = small(LSTMClassifier, clip_norm=1e-3, max_iter=1).fit(X, y)
    l2 = small(LSTMClassifier, clip_norm=None, alpha=1.0, max_iter=1).fit(X, y)
    assert not np.allclose(base.network_.flat, clipped.network_.flat)
    assert not np.allclose(base.network_.flat, l2.network_.flat)
    # The L2 penalty is part of the reported loss.
    assert l2.loss_curve_[0] > base.loss_curve_[0]


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("options", [dict(num_layers=2, dropout=0.2), dict(bidirectional=True)])
def test_solvers_and_architectures_learn(solver, options):
    X, y = sign_task(n=200)
    lr = 0.01 if solver == "adam" else 0.1
    clf = small(LSTMClassifier, solver=solver, learning_rate=lr, max_iter=40, **options).fit(X, y)
    assert clf.score(X, y) > 0.85


def test_float64(backend_name):
    X, y = sign_task()
    clf = small(LSTMClassifier, dtype=np.float64, backend=backend_name).fit(X, y)
    assert clf.network_.flat.dtype == np.float64
    assert clf.backend_ == backend_name


def test_verbose_shows_progress_and_quiet_prints_nothing(capsys):
    X, y = sign_task()
    small(LSTMClassifier, verbose=0).fit(X, y)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    small(LSTMClassifier, verbose=1, early_stopping=True).fit(X, y)
    err = capsys.readouterr().err
    assert "LSTMClassifier" in err and "loss=" in err and "val_score=" in err


# ---------------------------------------------------------------------- backends


def test_backend_recorded_and_object_accepted():
    X, y = sign_task()
    clf = small(LSTMClassifier).fit(X, y)
    assert clf.backend_ in BACKENDS
    backend = lstmcpu.get_backend("numpy")
    assert small(LSTMClassifier, backend=backend).fit(X, y).backend_ == "numpy"


@pytest.mark.parametrize("backend", BACKENDS)
def test_predictions_do_not_depend_on_backend(backend):
    X = variable_length_list(n=40)
    y = np.array([seq[:, 0].sum() > 0 for seq in X])
    clf = small(LSTMClassifier, backend="numpy", num_layers=2).fit(X, y)
    reference = clf.predict_proba(X)
    clf.set_params(backend=backend)
    assert_allclose(clf.predict_proba(X), reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_does_not_depend_on_backend(backend):
    X, y = sign_task(n=64)
    a = small(LSTMClassifier, backend="numpy", dtype="float64", max_iter=2).fit(X, y)
    b = small(LSTMClassifier, backend=backend, dtype="float64", max_iter=2).fit(X, y)
    assert_allclose(b.network_.flat, a.network_.flat, rtol=1e-8, atol=1e-10)


# ---------------------------------------------------------------------- streaming, pickling, clone


@pytest.mark.parametrize("output", ["last", "sequence"])
def test_predict_stream_in_chunks_equals_all_at_once(output):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 12, 2))
    y = X[:, :, 0].cumsum(axis=1) if output == "sequence" else X[:, :, 0].sum(axis=1)
    reg = small(LSTMRegressor, num_layers=2, output=output).fit(X, y)
    pieces, state = [], None
    for start, stop in [(0, 1), (1, 5), (5, 6), (6, 12)]:
        y_chunk, state = reg.predict_stream(X[:, start:stop], state)
        state = pickle.loads(pickle.dumps(state))  # the state survives pickling
        pieces.append(y_chunk)
        if output == "last":
            assert_allclose(y_chunk, reg.predict(X[:, :stop]), rtol=1e-5, atol=1e-6)
    if output == "sequence":
        assert_allclose(np.concatenate(pieces, axis=1), reg.predict(X), rtol=1e-5, atol=1e-6)
    assert state.n_steps == 12


@pytest.mark.parametrize("output", ["last", "sequence"])
def test_predict_proba_stream_in_chunks_equals_predict_proba(output):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 10, 2))
    labels = np.array(["a", "b", "c"])
    y = labels[(X[:, :, 0].cumsum(axis=1) > 0).astype(int) + (X[:, :, 1] > 1)]
    clf = small(LSTMClassifier, num_layers=2, output=output).fit(X, y if output == "sequence" else y[:, -1])
    pieces, state = [], None
    for start, stop in [(0, 1), (1, 4), (4, 10)]:
        proba, state = clf.predict_proba_stream(X[:, start:stop], state)
        if output == "last":
            assert_allclose(proba, clf.predict_proba(X[:, :stop]), rtol=1e-5, atol=1e-6)
        pieces.append(proba)
    if output == "sequence":
        assert_allclose(np.concatenate(pieces, axis=1), clf.predict_proba(X), rtol=1e-5, atol=1e-6)
    # predict_stream continues from the state predict_proba_stream returned, and vice versa
    head, state = clf.predict_proba_stream(X[:, :6])
    tail, _ = clf.predict_stream(X[:, 6:], state)
    full = clf.predict(X)
    assert_array_equal(tail, full[:, 6:] if output == "sequence" else full)
    assert_allclose(clf.predict_proba_stream(X[:, 6:], clf.predict_stream(X[:, :6])[1])[0],
                    clf.predict_proba(X)[:, 6:] if output == "sequence" else clf.predict_proba(X),
                    rtol=1e-5, atol=1e-6)  # fmt: skip


def test_pickle_round_trip_predicts_and_keeps_training_identically():
    X, y = sign_task()
    clf = small(LSTMClassifier).fit(X, y)
    copy = pickle.loads(pickle.dumps(clf))
    assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    clf.partial_fit(X, y)
    copy.partial_fit(X, y)
    assert_array_equal(copy.network_.flat, clf.network_.flat)
    assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))


def test_clone_gives_unfitted_copy_with_same_params():
    clf = LSTMClassifier(hidden_size=7, bidirectional=True, backend="numpy")
    fitted = clf.fit(*sign_task(n=40))
    twin = clone(fitted)
    assert twin.get_params() == clf.get_params()
    assert not hasattr(twin, "network_")


# ---------------------------------------------------------------------- meta-estimators


def test_pipeline_and_grid_search_with_two_jobs():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((90, 6))
    y = (X[:, :3].sum(axis=1) > 0).astype(int)
    pipe = make_pipeline(StandardScaler(), small(LSTMClassifier, max_iter=5))
    pipe.fit(X, y)
    assert pipe.predict(X).shape == (90,)
    search = GridSearchCV(small(LSTMRegressor), {"hidden_size": [4, 8]}, cv=2, n_jobs=2)
    search.fit(rng.standard_normal((60, 5, 2)), rng.standard_normal(60))
    assert search.best_params_["hidden_size"] in (4, 8)
    assert search.best_estimator_.backend_ in BACKENDS


# ---------------------------------------------------------------------- bad input


def _fit_clf(X, y=None, **params):
    y = np.arange(len(X)) % 2 if y is None else y
    return small(LSTMClassifier, max_iter=1, **params).fit(X, y)


GOOD_X = np.random.default_rng(0).standard_normal((10, 4, 2))


@pytest.mark.parametrize(
    "X, error, match",
    [
        (np.zeros(10), ValueError, "Expected 2D array"),
        (np.zeros((10, 4, 2, 1)), ValueError, "must be 3-D"),
        (np.where(np.arange(80).reshape(10, 4, 2) == 3, np.nan, 1.0), ValueError, "NaN"),
        (np.full((10, 4, 2), np.inf), ValueError, "infinity"),
        (np.ones((10, 4, 2), dtype=complex), ValueError, "Complex data not supported"),
        (np.zeros((10, 0, 2)), ValueError, "no time steps or no features"),
        (np.full((10, 4, 2), "a"), ValueError, "could not convert"),
        ([np.ones((3, 2))] * 5 + [np.ones((3, 1))] * 5, ValueError, "same number of features"),
        ([np.ones((3, 2))] * 9 + [np.ones((0, 2))], ValueError, "sequence 9 of X has no time steps"),
        ([np.ones(3)] * 9 + [np.ones(2)], ValueError, "list of 1-D arrays of different lengths"),
    ],
    ids=["1d", "4d", "nan", "inf", "complex", "no-steps", "strings", "mixed-features",
         "empty-sequence", "ragged-1d"],  # fmt: skip
)
def test_bad_X_in_fit(X, error, match):
    with pytest.raises(error, match=match):
        _fit_clf(X)


def test_sparse_X_is_rejected():
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="dense data is required"):
        _fit_clf(sparse.csr_matrix(np.ones((10, 4))), np.arange(10) % 2)


def test_predict_with_other_number_of_features():
    clf = _fit_clf(GOOD_X)
    with pytest.raises(ValueError, match="X has 3 features per time step, but LSTMClassifier was fitted on sequences with 2"):
        clf.predict(np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match=r"1 features per time step \(a 2-D X is read as univariate"):
        clf.predict(np.zeros((2, 4)))


def test_predict_table_with_other_number_of_columns():
    clf = _fit_clf(GOOD_X[:, :, 0])
    with pytest.raises(ValueError, match="X has 3 features, but LSTMClassifier is expecting 4"):
        clf.predict(np.zeros((2, 3)))


@pytest.mark.parametrize(
    "y, match",
    [
        (np.arange(9) % 2, "inconsistent numbers of samples"),
        (np.linspace(0, 1, 10), "Unknown label type"),
        (np.where(np.arange(10) == 3, np.nan, 1.0), "NaN"),
        (None, "requires y to be passed"),
    ],
    ids=["length", "continuous", "nan", "none"],
)
def test_bad_y_for_classifier(y, match):
    with pytest.raises(ValueError, match=match):
        small(LSTMClassifier).fit(GOOD_X, y)


def test_bad_y_for_regressor():
    with pytest.raises(ValueError, match="NaN"):
        small(LSTMRegressor).fit(GOOD_X, np.where(np.arange(10) == 3, np.nan, 1.0))
    with pytest.raises(ValueError, match=r"must be \(n_samples,\) or \(n_samples, n_targets\)"):
        small(LSTMRegressor).fit(GOOD_X, np.zeros((10, 2, 2)))


def test_bad_sequence_targets():
    with pytest.raises(ValueError, match=r"y must have shape \(n_samples, n_timesteps, ...\) = \(10, 4, ...\)"):
        small(LSTMClassifier, output="sequence").fit(GOOD_X, np.zeros(10))
    with pytest.raises(ValueError, match="one label per time step"):
        small(LSTMClassifier, output="sequence").fit(GOOD_X, np.zeros((10, 4, 2)))
    X = variable_length_list(n=10)
    wrong = [np.zeros(len(seq) + 1) for seq in X]
    with pytest.raises(ValueError, match=r"y\[0\] must have one entry per time step"):
        small(LSTMRegressor, output="sequence").fit(X, wrong)


@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(cell="lstmp"), ValueError, "'cell' parameter of LSTMClassifier must be a str among"),
        (dict(backend="nonexistent"), ValueError, "nonexistent"),
        (dict(dtype="float16"), ValueError, "'dtype' parameter"),
        (dict(hidden_size=0), ValueError, "'hidden_size' parameter"),
        (dict(output="all"), ValueError, "'output' parameter"),
        (dict(solver="lbfgs"), ValueError, "'solver' parameter"),
        (dict(clip_norm=0), ValueError, "'clip_norm' parameter"),
        (dict(validation_fraction=1.0), ValueError, "'validation_fraction' parameter"),
    ],
)
def test_bad_parameters(params, error, match):
    with pytest.raises(error, match=match):
        _fit_clf(GOOD_X, **params)


def test_partial_fit_errors():
    y = np.arange(10) % 2
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        small(LSTMClassifier).partial_fit(GOOD_X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        small(LSTMClassifier, early_stopping=True).partial_fit(GOOD_X, y, classes=[0, 1])


def test_warm_start_rejects_architecture_change_and_new_classes():
    y = np.arange(10) % 2
    clf = _fit_clf(GOOD_X, y, warm_start=True)
    clf.set_params(hidden_size=5)
    with pytest.raises(ValueError, match="architecture cannot change.*hidden_size"):
        clf.fit(GOOD_X, y)
    clf.set_params(hidden_size=8)
    with pytest.raises(ValueError, match=r"labels \[2\] that are not in classes_"):
        clf.fit(GOOD_X, np.arange(10) % 3)


def test_early_stopping_needs_a_validation_set():
    with pytest.raises(ValueError, match="the validation set has 1 sequence"):
        _fit_clf(GOOD_X, early_stopping=True, validation_fraction=0.1)


def test_unfitted_estimator_raises_not_fitted():
    with pytest.raises(NotFittedError):
        LSTMClassifier().predict(GOOD_X)
    with pytest.raises(NotFittedError):
        LSTMRegressor().predict_stream(GOOD_X)


def test_predict_stream_errors():
    clf = _fit_clf(GOOD_X)
    with pytest.raises(ValueError, match="not a list of sequences"):
        clf.predict_stream(list(GOOD_X))
    with pytest.raises(TypeError, match="state must be None or the state returned by predict_stream"):
        clf.predict_stream(GOOD_X, state=(1, 2))
    _, state = clf.predict_stream(GOOD_X)
    with pytest.raises(ValueError, match="state holds 10 sequences .* X_chunk has 3"):
        clf.predict_stream(GOOD_X[:3], state)
    with pytest.raises(ValueError, match="X_chunk has 3 features per time step"):
        clf.predict_stream(np.zeros((10, 2, 3)), state)
    with pytest.raises(ValueError, match="needs a unidirectional network"):
        _fit_clf(GOOD_X, bidirectional=True).predict_stream(GOOD_X)


@pytest.mark.parametrize("output", ["last", "sequence"])
def test_predict_in_chunks_equals_one_call(monkeypatch, output):
    X = variable_length_list(n=25)
    y = [seq[:, 0] for seq in X] if output == "sequence" else [seq[:, 0].sum() for seq in X]
    reg = small(LSTMRegressor, output=output).fit(X, y)
    whole = reg.predict(X)
    monkeypatch.setattr("lstmcpu.estimators._PREDICT_CHUNK", 7)
    chunked = reg.predict(X)
    if output == "last":
        assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    else:
        for a, b in zip(chunked, whole):
            assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_blas_runs_on_one_thread_and_the_setting_is_restored(register):
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info

    from lstmcpu.backends.numpy_backend import NumpyBackend

    def blas_threads():
        return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    seen = []

    class Recording(NumpyBackend):
        name = "recording"

        def forward(self, *args, **kwargs):
            seen.append(blas_threads())
            return super().forward(*args, **kwargs)

    register("recording", Recording)
    X, y = sign_task(n=40)
    with threadpool_limits(2, user_api="blas"):
        clf = small(LSTMClassifier, backend="recording").fit(X, y)
        clf.predict(X)
        clf.predict_stream(X)
        # From worker threads too: threadpoolctl lets only one thread change OpenBLAS's limit,
        # and this main thread holds it inside threadpool_limits.
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda _: clf.predict(X), range(4)))
        assert len(seen) >= 6 and all(set(threads) == {1} for threads in seen), seen
        assert set(blas_threads()) == {2}
        # Concurrent fits: the last one to finish restores the setting.
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda seed: small(LSTMClassifier, random_state=seed).fit(X, y), range(4)))
        assert set(blas_threads()) == {2}


def test_kernels_only_receive_c_contiguous_arrays(register):
    # The kernel contract: time-major C-contiguous arrays. Minibatches, validation splits,
    # chunks and padded lists must all honour it (compiled backends refuse anything else).
    from lstmcpu.backends.numpy_backend import NumpyBackend

    class Strict(NumpyBackend):
        name = "strict"

        def forward(self, x, w_ih, w_hh, b, h0, c0, lengths=None, need_cache=True, **options):
            for name, a in dict(x=x, w_ih=w_ih, w_hh=w_hh, b=b, h0=h0, c0=c0).items():
                assert a.flags.c_contiguous, f"{name} is not C-contiguous"
            return super().forward(x, w_ih, w_hh, b, h0, c0, lengths, need_cache, **options)

        def backward(self, dy, dh_n, dc_n, cache, **options):
            for name, a in dict(dy=dy, dh_n=dh_n, dc_n=dc_n).items():
                assert a.flags.c_contiguous, f"{name} is not C-contiguous"
            return super().backward(dy, dh_n, dc_n, cache, **options)

    register("strict", Strict)
    X = variable_length_list(n=40)
    y = np.array([seq[:, 0].sum() > 0 for seq in X])
    for options in [dict(), dict(bidirectional=True, num_layers=2), dict(early_stopping=True)]:
        clf = small(LSTMClassifier, backend="strict", **options).fit(X, y)
        clf.predict(X)
    reg = small(LSTMRegressor, backend="strict", output="sequence").fit(X, [seq for seq in X])
    reg.predict(X)
    arrays = np.random.default_rng(0).standard_normal((40, 5, 2))
    reg = small(LSTMRegressor, backend="strict", early_stopping=True).fit(arrays, arrays[:, 0, 0])
    reg.predict_stream(arrays[:, :2], reg.predict_stream(arrays[:, :3])[1])
