"""Fitted estimators exported to ONNX and run in ONNX Runtime predict what the estimators predict."""

import warnings

import numpy as np
import pytest

import lstmcpu

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
from lstmcpu.onnx import export, to_onnx  # noqa: E402

NETWORKS = {
    "lstm": dict(cell="lstm"),
    "lstm-bidirectional": dict(cell="lstm", bidirectional=True),
    "lstm-stacked-bidirectional": dict(cell="lstm", num_layers=2, bidirectional=True),
    "lstm-peephole": dict(cell="lstm", peephole=True),
    "lstm-coupled-stacked": dict(cell="lstm", coupled=True, num_layers=2),
    "lstm-peephole-coupled-bidirectional": dict(cell="lstm", peephole=True, coupled=True, bidirectional=True),
    "gru-stacked-bidirectional": dict(cell="gru", num_layers=2, bidirectional=True),
    "gru": dict(cell="gru"),
    "rnn-bidirectional": dict(cell="rnn", bidirectional=True),
    "rnn-stacked": dict(cell="rnn", num_layers=2),
}
LENGTHS = [6, 2, 5, 1, 6, 3, 4, 6, 2, 5, 6, 3]


def variable_length_data(n_targets=1, output="last", seed=0):
    """A list of variable-length sequences (F=2) and targets, plus the padded array."""
    rng = np.random.default_rng(seed)
    X = [rng.standard_normal((length, 2)) for length in LENGTHS]
    if output == "last":
        y = np.array([x[:, 0].sum() for x in X])
    else:
        y = [np.cumsum(x[:, 0]) for x in X]
    padded = np.zeros((len(X), max(LENGTHS), 2), np.float32)
    for i, x in enumerate(X):
        padded[i, : len(x)] = x
    return X, y, padded, np.array(LENGTHS, np.int32)


def fit(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few epochs: ConvergenceWarning
        return estimator.fit(X, y)


def run(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize("network", list(NETWORKS))
@pytest.mark.parametrize("output", ["last", "sequence"])
def test_classifier_probabilities_match(network, output):
    X, y, padded, lengths = variable_length_data(output=output)
    labels = np.array(["neg", "pos"]) if output == "last" else None
    y = labels[(y > 0).astype(int)] if output == "last" else [(t > 0.5).astype(int) + (t > -0.5) for t in y]
    clf = fit(lstmcpu.LSTMClassifier(hidden_size=5, max_iter=3, random_state=0, output=output,
                                     **NETWORKS[network]), X, y)  # fmt: skip
    got = run(to_onnx(clf), {"input": padded, "sequence_lens": lengths})
    expected = clf.predict_proba(X)
    if output == "last":
        np.testing.assert_allclose(got, expected, atol=1e-5)
        np.testing.assert_array_equal(clf.classes_[got.argmax(-1)], clf.predict(X))
    else:
        assert got.shape == (len(X), max(LENGTHS), len(clf.classes_))
        for i, length in enumerate(LENGTHS):
            np.testing.assert_allclose(got[i, :length], expected[i], atol=1e-5)


@pytest.mark.parametrize("network", list(NETWORKS))
@pytest.mark.parametrize("output", ["last", "sequence"])
@pytest.mark.parametrize("n_targets", [1, 2], ids=["1d-y", "2-targets"])
def test_regressor_predictions_match(network, output, n_targets):
    X, y, padded, lengths = variable_length_data(output=output)
    if n_targets == 2:
        y = np.stack([y, 3 * y + 10], axis=-1) if output == "last" else [np.stack([t, 3 * t + 10], -1) for t in y]
    reg = fit(lstmcpu.LSTMRegressor(hidden_size=5, max_iter=3, random_state=0, output=output,
                                    **NETWORKS[network]), X, y)  # fmt: skip
    got = run(to_onnx(reg), {"input": padded, "sequence_lens": lengths})
    expected = reg.predict(X)
    if output == "last":
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    else:
        for i, length in enumerate(LENGTHS):
            np.testing.assert_allclose(got[i, :length], expected[i], rtol=1e-5, atol=1e-5)


def test_estimator_without_sequence_lens_and_float64(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((8, 5, 3))
    reg = fit(lstmcpu.LSTMRegressor(hidden_size=4, max_iter=2, dtype="float64", random_state=0), X, X.sum((1, 2)))
    path = tmp_path / "reg.onnx"
    export(reg, path, lengths=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["predictions"]
    got = session.run(None, {"input": X.astype(np.float32)})[0]
    np.testing.assert_allclose(got, reg.predict(X), rtol=1e-4, atol=1e-4)  # float32 graph


def test_model_fitted_on_a_table_takes_one_feature_per_step():
    X = np.random.default_rng(2).standard_normal((10, 6))
    clf = fit(lstmcpu.LSTMClassifier(hidden_size=3, max_iter=2, random_state=0), X, (X.sum(1) > 0).astype(int) + 3)
    got = run(to_onnx(clf, lengths=False), {"input": X[:, :, None].astype(np.float32)})
    np.testing.assert_allclose(got, clf.predict_proba(X), atol=1e-5)


def test_estimator_export_refuses_projection_and_unfitted():
    X, y, _, _ = variable_length_data()
    reg = fit(lstmcpu.LSTMRegressor(hidden_size=4, proj_size=2, max_iter=1, random_state=0), X, y)
    with pytest.raises(ValueError, match="no projection"):
        to_onnx(reg)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        to_onnx(lstmcpu.LSTMClassifier())
    with pytest.raises(TypeError, match="fitted LSTMClassifier / LSTMRegressor, got list"):
        to_onnx([])
