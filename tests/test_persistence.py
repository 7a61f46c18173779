"""Safe model files: save/load round trips, and clear refusals of malicious or broken files."""

import io
import json
import pickle
import warnings
import zipfile

import numpy as np
import pytest

import lstmcpu
from lstmcpu import persistence

VARIANTS = {
    "lstm": dict(cell="lstm"),
    "lstm-peephole": dict(cell="lstm", peephole=True),
    "lstm-coupled": dict(cell="lstm", coupled=True),
    "lstm-proj": dict(cell="lstm", proj_size=2),
    "gru": dict(cell="gru"),
    "rnn": dict(cell="rnn"),
}


def quiet_fit(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few epochs: ConvergenceWarning
        return estimator.fit(X, y)


def data(kind, output, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((14, 5, 2))
    signal = np.cumsum(X[:, :, 0], axis=1)
    if output == "last":
        signal = signal[:, -1]
    y = np.where(signal > 0, "up", "down") if kind == "classifier" else 5 * signal + 3
    return X, y


def make(kind, **params):
    cls = lstmcpu.LSTMClassifier if kind == "classifier" else lstmcpu.LSTMRegressor
    return cls(hidden_size=4, max_iter=3, batch_size=5, random_state=0, **params)


def assert_same_predictions(a, b, X):
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    if hasattr(a, "predict_proba"):
        np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    if not a.bidirectional:
        first_a, state_a = a.predict_stream(X[:, :3])
        first_b, state_b = b.predict_stream(X[:, :3])
        np.testing.assert_array_equal(first_a, first_b)
        np.testing.assert_array_equal(a.predict_stream(X[:, 3:], state_a)[0], b.predict_stream(X[:, 3:], state_b)[0])


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("output", ["last", "sequence"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_predicts_identically(kind, variant, bidirectional, output, dtype, tmp_path):
    X, y = data(kind, output)
    est = quiet_fit(make(kind, bidirectional=bidirectional, output=output, dtype=dtype, **VARIANTS[variant]), X, y)
    path = tmp_path / "model.npz"
    est.save(path)
    loaded = lstmcpu.load(path)
    assert type(loaded) is type(est)
    assert loaded.get_params() == est.get_params()
    assert loaded.n_iter_ == est.n_iter_ and loaded.loss_curve_ == est.loss_curve_
    assert_same_predictions(est, loaded, X)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_loaded_model_continues_training_like_the_original(kind, solver, tmp_path):
    X, y = data(kind, "last")
    est = quiet_fit(make(kind, solver=solver, num_layers=2), X, y)
    est.save(tmp_path / "model.npz")
    loaded = lstmcpu.load(tmp_path / "model.npz")
    est.partial_fit(X, y)
    loaded.partial_fit(X, y)
    np.testing.assert_array_equal(loaded.network_.flat, est.network_.flat)
    assert loaded.loss_curve_ == est.loss_curve_
    assert_same_predictions(est, loaded, X)


def test_random_state_instance_round_trips_its_state(tmp_path):
    X, y = data("regressor", "last")
    est = quiet_fit(make("regressor"), X, y).set_params(random_state=np.random.RandomState(7))
    est.save(tmp_path / "m.npz")
    loaded = lstmcpu.load(tmp_path / "m.npz")
    assert loaded.random_state.randint(10**9) == est.random_state.randint(10**9)


def test_object_labels_come_back_as_objects(tmp_path):
    X, y = data("classifier", "last")
    clf = quiet_fit(make("classifier"), X, y.astype(object))
    assert clf.classes_.dtype == object
    clf.save(tmp_path / "m.npz")
    loaded = lstmcpu.load(tmp_path / "m.npz")
    assert loaded.classes_.dtype == object and loaded.classes_.tolist() == clf.classes_.tolist()
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_table_input_keeps_its_feature_names(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.standard_normal((12, 4)), columns=["a", "b", "c", "d"])
    reg = quiet_fit(make("regressor"), X, X.sum(axis=1).to_numpy())
    reg.save(tmp_path / "m.npz")
    loaded = lstmcpu.load(tmp_path / "m.npz")
    assert loaded.feature_names_in_.tolist() == ["a", "b", "c", "d"] and loaded.n_features_in_ == 4
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(X.rename(columns={"a": "z"}))


def test_integer_labels_and_backend_object_are_stored(tmp_path):
    X, y = data("classifier", "last")
    clf = quiet_fit(make("classifier", backend=lstmcpu.get_backend("numpy")), X, (y == "up").astype(int) * 7)
    clf.save(tmp_path / "m.npz")
    loaded = lstmcpu.load(tmp_path / "m.npz")
    assert loaded.backend == "numpy"
    assert loaded.classes_.tolist() == [0, 7] and loaded.classes_.dtype.kind == "i"
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_model_of_a_backend_missing_here_loads_and_names_it(tmp_path):
    X, y = data("regressor", "last")
    reg = quiet_fit(make("regressor"), X, y)
    reg.save(tmp_path / "m.npz")
    rewrite(tmp_path / "m.npz", lambda arrays: set_header(arrays, params={**reg.get_params(), "backend": "gone"}))
    loaded = lstmcpu.load(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="gone"):
        loaded.predict(X)
    expected = reg.set_params(backend="numpy").predict(X)
    np.testing.assert_array_equal(loaded.set_params(backend="numpy").predict(X), expected)


def test_labels_without_a_safe_representation_are_refused(tmp_path):
    X, _ = data("classifier", "last")
    clf = quiet_fit(make("classifier"), X, np.arange(14) % 2)
    clf.classes_ = np.array([(0, 1), "b"], dtype=object)
    with pytest.raises(ValueError, match="classes_ of dtype object"):
        clf.save(tmp_path / "m.npz")


def test_unfitted_or_foreign_objects_are_refused(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        lstmcpu.LSTMRegressor().save(tmp_path / "m.npz")
    with pytest.raises(TypeError, match="LSTM, GRU or RNN layer, got dict"):
        persistence.save({}, tmp_path / "m.npz")


LAYERS = {
    "lstm-peephole-coupled-stacked": lambda: lstmcpu.LSTM(3, 4, num_layers=2, peephole=True, coupled=True),
    "lstm-proj-bidirectional-batch-first": lambda: lstmcpu.LSTM(3, 5, proj_size=2, bidirectional=True,
                                                                batch_first=True, dtype=np.float64),  # fmt: skip
    "lstm-no-bias": lambda: lstmcpu.LSTM(3, 4, bias=False, backend=lstmcpu.get_backend("numpy")),
    "gru-bidirectional": lambda: lstmcpu.GRU(3, 4, bidirectional=True, dropout=0.2, num_layers=2),
    "rnn-relu": lambda: lstmcpu.RNN(3, 4, nonlinearity="relu", dtype=np.float64),
}


@pytest.mark.parametrize("layer_id", list(LAYERS))
def test_layer_round_trip(layer_id, tmp_path):
    layer = LAYERS[layer_id]().eval()
    layer.save(tmp_path / "layer.npz")
    loaded = lstmcpu.load(tmp_path / "layer.npz")
    assert repr(loaded) == repr(layer) and loaded.training is False and loaded.dtype == layer.dtype
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    out, states = layer(x)
    got, got_states = loaded(x)
    np.testing.assert_array_equal(got, out)
    if not isinstance(states, tuple):  # GRU and RNN return h_n alone
        got_states, states = (got_states,), (states,)
    for got_state, state in zip(got_states, states, strict=True):
        np.testing.assert_array_equal(got_state, state)


def test_layer_file_with_foreign_weights_is_refused(tmp_path):
    lstmcpu.GRU(3, 4).save(tmp_path / "layer.npz")
    rewrite(tmp_path / "layer.npz", lambda arrays: arrays.update({"weight/weight_ci_l0": np.zeros(4, np.float32)}))
    with pytest.raises(ValueError, match="weights do not fit a GRU"):
        lstmcpu.load(tmp_path / "layer.npz")
    rewrite(tmp_path / "layer.npz", lambda arrays: set_header(arrays, params={"input_size": 3, "hidden_size": -1}))
    with pytest.raises(ValueError, match="invalid GRU parameters"):
        lstmcpu.load(tmp_path / "layer.npz")


# ---------------------------------------------------------------------- malicious / broken files


@pytest.fixture
def saved(tmp_path):
    X, y = data("classifier", "last")
    path = tmp_path / "model.npz"
    quiet_fit(make("classifier"), X, y).save(path)
    return path


def rewrite(path, change):
    """Rewrite the archive at ``path`` with ``change(arrays)`` applied (pickle allowed here)."""
    with np.load(path, allow_pickle=True) as archive:
        arrays = {name: archive[name] for name in archive.files}
    change(arrays)
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def set_header(arrays, **fields):
    header = json.loads(arrays["header"].tobytes())
    header.update(fields)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)


class Payload:
    """Unpickling this would run code (it appends to a list the test can see)."""

    ran = []

    def __reduce__(self):
        return (Payload.ran.append, ("executed",))


def test_pickle_payload_is_refused_without_running_it(saved):
    rewrite(saved, lambda arrays: arrays.update({"weight/head.bias": np.array([Payload()], dtype=object)}))
    with pytest.raises(ValueError, match="object array .*pickle payload"):
        lstmcpu.load(saved)
    assert Payload.ran == []


def test_a_plain_pickle_file_is_refused(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="not an lstmcpu model file"):
        lstmcpu.load(path)
    assert Payload.ran == []


def test_truncated_file_is_refused(saved):
    data_ = saved.read_bytes()
    saved.write_bytes(data_[: len(data_) // 2])
    with pytest.raises(ValueError, match="not an lstmcpu model file, or is truncated"):
        lstmcpu.load(saved)


def test_corrupted_member_is_refused(saved):
    data_ = bytearray(saved.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data_))) as archive:
        info = archive.getinfo("weight/head.weight.npy")
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    data_[middle] ^= 0xFF
    saved.write_bytes(bytes(data_))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        lstmcpu.load(saved)


def test_a_member_that_is_not_an_array_is_refused(saved):
    with zipfile.ZipFile(saved, "a") as archive:
        archive.writestr("payload.pkl", pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="member 'payload.pkl' is not a .npy array"):
        lstmcpu.load(saved)
    assert Payload.ran == []


def test_an_array_header_declaring_a_huge_shape_is_refused(saved):
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(2))
    big = f"({10**15},)".encode()
    # The same header length: the longer shape eats into the space padding.
    forged = buffer.getvalue().replace(b"(2,)", big, 1).replace(b" " * (len(big) - 4) + b"\n", b"\n", 1)
    with zipfile.ZipFile(saved, "a") as archive:
        archive.writestr("huge.npy", forged)
    with pytest.raises(ValueError, match="truncated or corrupt: MemoryError"):
        lstmcpu.load(saved)


def test_newer_format_version_is_refused(saved):
    rewrite(saved, lambda arrays: set_header(arrays, format_version=persistence.FORMAT_VERSION + 1))
    with pytest.raises(ValueError, match="format version 2, .* reads versions up to 1: upgrade lstmcpu"):
        lstmcpu.load(saved)


def test_files_that_are_not_lstmcpu_models_are_refused(tmp_path, saved):
    other = tmp_path / "other.npz"
    np.savez(other, a=np.arange(3))
    with pytest.raises(ValueError, match="no lstmcpu header"):
        lstmcpu.load(other)
    rewrite(saved, lambda arrays: set_header(arrays, format="something-else"))
    with pytest.raises(ValueError, match="not an lstmcpu model file"):
        lstmcpu.load(saved)
    with pytest.raises(ValueError, match="cannot read"):
        lstmcpu.load(tmp_path / "missing.npz")


def test_unknown_class_parameters_and_wrong_shapes_are_refused(saved):
    rewrite(saved, lambda arrays: set_header(arrays, **{"class": "os.system"}))
    with pytest.raises(ValueError, match="unknown model class 'os.system'"):
        lstmcpu.load(saved)
    rewrite(saved, lambda arrays: set_header(arrays, **{"class": "LSTMClassifier", "params": {"evil": 1}}))
    with pytest.raises(ValueError, match=r"unknown parameters \['evil'\]"):
        lstmcpu.load(saved)


def test_invalid_fitted_attributes_are_refused(saved):
    def change(arrays):
        header = json.loads(arrays["header"].tobytes())
        header["attributes"]["_n_step_features"] = "two"
        set_header(arrays, **header)

    rewrite(saved, change)
    with pytest.raises(ValueError, match="fitted attribute _n_step_features='two' is invalid"):
        lstmcpu.load(saved)


def test_weights_of_the_wrong_shape_are_refused(saved):
    rewrite(saved, lambda arrays: arrays.update({"weight/weight_hh_l0": np.zeros((3, 3), np.float32)}))
    with pytest.raises(ValueError, match="weight_hh_l0.*expected a float array of shape"):
        lstmcpu.load(saved)


def test_pickle_still_works(saved):
    est = lstmcpu.load(saved)
    X, _ = data("classifier", "last")
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(est)).predict(X), est.predict(X))
