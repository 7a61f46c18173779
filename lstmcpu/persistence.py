"""Safe model files: a fitted estimator (or a layer) as one ``.npz`` of plain arrays plus a
JSON header.

:func:`save` writes, and :func:`load` reads, a zip archive (NumPy's ``.npz``) whose members
are numeric or fixed-width string arrays and one ``header`` member: UTF-8 JSON bytes with

- ``format`` (``"lstmcpu-model"``), ``format_version`` (:data:`FORMAT_VERSION`) and the
  ``lstmcpu_version`` that wrote the file;
- ``class``: ``"LSTMClassifier"`` or ``"LSTMRegressor"`` (or a layer's ``"LSTM"``,
  ``"GRU"``, ``"RNN"``, whose file holds its constructor arguments, its training mode and
  its weights);
- ``params``: the estimator's ``get_params()`` (a ``Backend`` object is stored by its name,
  a NumPy dtype by its name, a ``RandomState`` by its state arrays);
- ``attributes``: the fitted scalars and lists (``n_iter_``, ``loss_curve_``, ...).

The arrays hold the network's weights under PyTorch's ``state_dict`` names
(``weight/weight_ih_l0``, ...) plus ``weight/head.weight`` and ``weight/head.bias``, the
optimizer's state (so that ``partial_fit`` continues exactly as it would have), and the
fitted arrays (``classes_``, ``feature_names_in_``, the regressor's target mean and scale).
The weights do not depend on the backend that trained them.

Loading never executes code from the file: the archive is read with
``numpy.load(allow_pickle=False)``, the class is picked from a fixed list (nothing is
imported by name), and every value is checked before it is used. Pickling an estimator
still works, but unpickling runs whatever code the file asks for: only unpickle files you
trust.
"""

import inspect
import io
import json
import numbers
import zipfile
import zlib

import numpy as np

from ._version import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "load", "save"]

#: The ``format`` field of every lstmcpu model file.
FORMAT = "lstmcpu-model"
#: The newest file format this version reads and the one it writes.
FORMAT_VERSION = 1

# Fitted attributes stored in the JSON header when present, with the check of their value.
_SCALAR_ATTRIBUTES = {
    "n_features_in_": lambda v: _is_int(v) and v >= 1,
    "_n_step_features": lambda v: _is_int(v) and v >= 1,
    "n_iter_": lambda v: _is_int(v) and v >= 0,
    "_no_improvement_count": lambda v: _is_int(v) and v >= 0,
    "backend_": lambda v: isinstance(v, str),
    "_fitted_on_table": lambda v: isinstance(v, bool),
    "_y_one_d": lambda v: isinstance(v, bool),
    "best_loss_": lambda v: _is_real(v),
    "best_validation_score_": lambda v: v is None or _is_real(v),
    "loss_curve_": lambda v: isinstance(v, list) and all(_is_real(x) for x in v),
    "validation_scores_": lambda v: v is None or (isinstance(v, list) and all(_is_real(x) for x in v)),
}
_LAYERS = ("LSTM", "GRU", "RNN")
# Fitted attributes stored as arrays when present.
_ARRAY_ATTRIBUTES = ("_y_mean", "_y_scale", "_best_flat")


def save(model, path):
    """Write a fitted estimator or a layer to ``path`` as a safe model file (see the module
    docstring).

    Parameters
    ----------
    model : LSTMClassifier or LSTMRegressor (fitted), or an LSTM, GRU or RNN layer
    path : str or path-like
        Written as given (``.npz`` is the customary suffix, not added).

    Raises
    ------
    ValueError
        When a parameter or a class label has no representation in the file (for
        example labels that are arbitrary Python objects).

    Examples
    --------
    >>> import numpy as np, lstmcpu, tempfile, os
    >>> X = np.random.default_rng(0).standard_normal((20, 4, 1))
    >>> reg = lstmcpu.LSTMRegressor(hidden_size=3, max_iter=2, random_state=0)
    >>> reg = reg.fit(X, X[:, :, 0].sum(axis=1))
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> save(reg, path)
    >>> bool(np.array_equal(load(path).predict(X), reg.predict(X)))
    True
    """
    kind = _model_classes().get(type(model).__name__)
    if kind is None or not isinstance(model, kind):
        raise TypeError(
            f"save takes a fitted LSTMClassifier or LSTMRegressor or an LSTM, GRU or RNN layer, "
            f"got {type(model).__name__}"
        )
    arrays = {}
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lstmcpu_version": __version__,
        "class": type(model).__name__,
    }
    if type(model).__name__ in _LAYERS:
        header.update(_layer_to_file(model, arrays))
    else:
        header.update(_estimator_to_file(model, arrays))
    arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def load(path):
    """Read a model written by :func:`save` (or ``model.save``), without running code.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    LSTMClassifier, LSTMRegressor, LSTM, GRU or RNN
        An estimator comes back fitted, predicting exactly as the saved one and able to
        continue training; a layer comes back with its weights and mode.

    Raises
    ------
    ValueError
        When the file is not an lstmcpu model file, is truncated or corrupt, holds an
        object array (a pickle payload), or was written in a newer format version.
    """
    arrays, header = _read(path)
    classes = _model_classes()
    cls = classes.get(header.get("class"))
    if cls is None:
        raise ValueError(f"{path}: unknown model class {header.get('class')!r}; expected one of {sorted(classes)}")
    if cls.__name__ in _LAYERS:
        return _layer_from_file(cls, header, arrays, path)
    return _estimator_from_file(cls, header, arrays, path)


# ---------------------------------------------------------------------- estimators


def _estimator_to_file(estimator, arrays):
    """The header fields of a fitted estimator; its arrays go into ``arrays``."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator)
    fields = {"params": _params_to_json(estimator.get_params(deep=False), arrays), "attributes": {}}
    for name in _SCALAR_ATTRIBUTES:
        if hasattr(estimator, name):
            fields["attributes"][name] = _json_value(getattr(estimator, name), name)
    for name in _ARRAY_ATTRIBUTES:
        if hasattr(estimator, name):
            arrays[name] = np.asarray(getattr(estimator, name))
    if hasattr(estimator, "classes_"):
        arrays["classes_"], fields["classes_object"] = _labels_to_array(estimator.classes_)
    if hasattr(estimator, "feature_names_in_"):
        arrays["feature_names_in_"] = np.asarray(estimator.feature_names_in_, dtype=str)
    for name, value in estimator.network_._views.items():
        arrays[f"weight/{name}"] = value
    fields["optimizer"] = _optimizer_to_arrays(estimator, arrays)
    return fields


def _estimator_from_file(cls, header, arrays, path):
    params = _params_from_json(header.get("params"), arrays, set(cls().get_params(deep=False)), cls, path)
    estimator = cls(**params)
    estimator._validate_params()
    attributes = header.get("attributes")
    if not isinstance(attributes, dict):
        raise ValueError(f"{path}: the header's attributes must be a JSON object")
    for name, check in _SCALAR_ATTRIBUTES.items():
        if name in attributes:
            if not check(attributes[name]):
                raise ValueError(f"{path}: the fitted attribute {name}={attributes[name]!r} is invalid")
            setattr(estimator, name, attributes[name])
    for name in _ARRAY_ATTRIBUTES:
        if name in arrays:
            setattr(estimator, name, _numeric(arrays, name, path))
    if "classes_" in arrays:
        classes_ = arrays["classes_"]
        estimator.classes_ = classes_.astype(object) if header.get("classes_object") else classes_
    if "feature_names_in_" in arrays:
        estimator.feature_names_in_ = arrays["feature_names_in_"].astype(object)
    estimator.network_ = _network(estimator, arrays, path)
    estimator._architecture = estimator._architecture_params()
    _optimizer_from_arrays(estimator, header.get("optimizer"), arrays, path)
    return estimator


# ---------------------------------------------------------------------- layers


def _layer_to_file(layer, arrays):
    """The header fields of a layer (its constructor arguments, mode); weights into ``arrays``."""
    params = {name: getattr(layer, name) for name in _layer_arguments(type(layer))}
    for name, value in layer.params.items():
        arrays[f"weight/{name}"] = value
    return {"params": _params_to_json(params, arrays), "training": layer.training}


def _layer_from_file(cls, header, arrays, path):
    params = _params_from_json(header.get("params"), arrays, _layer_arguments(cls), cls, path)
    try:
        layer = cls(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid {cls.__name__} parameters ({exc})") from exc
    weights = {name[len("weight/") :]: value for name, value in arrays.items() if name.startswith("weight/")}
    try:
        layer.load_state_dict(weights)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the weights do not fit a {layer!r}: {exc}") from exc
    return layer.train(header.get("training") is True)


def _layer_arguments(cls):
    """Constructor arguments a layer keeps as attributes (all but the consumed random_state)."""
    return [name for name in inspect.signature(cls).parameters if name != "random_state"]


# ---------------------------------------------------------------------- reading


def _read(path):
    """The archive's arrays (all read, pickle refused) and its parsed, checked header."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ValueError(f"cannot read lstmcpu model file {path}: {exc}") from exc
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ValueError(
            f"{path} is not an lstmcpu model file, or is truncated: expected a complete .npz (zip) "
            "archive written by lstmcpu.save"
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(
                f"{path} holds an object array (a pickle payload, which could run code); lstmcpu "
                "model files hold only numeric and string arrays, so the file was not loaded"
            ) from exc
        raise ValueError(f"{path} is truncated or corrupt: {exc}") from exc
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error, KeyError, MemoryError) as exc:
        # (MemoryError: a member whose header declares an impossibly large shape.)
        raise ValueError(f"{path} is truncated or corrupt: {exc!r}") from exc
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):
            raise ValueError(f"{path}: member {name!r} is not a .npy array; an lstmcpu model file holds only arrays")
        if value.dtype.kind not in "biufU":
            raise ValueError(f"{path}: array {name!r} has dtype {value.dtype}; expected numeric or string arrays")
    if "header" not in arrays or arrays["header"].dtype != np.uint8:
        raise ValueError(f"{path} is not an lstmcpu model file: it has no lstmcpu header")
    try:
        header = json.loads(arrays.pop("header").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: the lstmcpu header is corrupt ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path} is not an lstmcpu model file: its header has no format {FORMAT!r}")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"{path}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {version}, written by lstmcpu {header.get('lstmcpu_version')}; "
            f"this lstmcpu ({__version__}) reads versions up to {FORMAT_VERSION}: upgrade lstmcpu"
        )
    if version < 1:
        raise ValueError(f"{path}: format_version must be at least 1, got {version}")
    return arrays, header


def _numeric(arrays, name, path, shape=None, dtype=None):
    """``arrays[name]``, checked to be a float array (of ``shape``), cast to ``dtype``."""
    if name not in arrays:
        raise ValueError(f"{path}: the array {name!r} is missing")
    value = arrays[name]
    if value.dtype.kind not in "biuf" or (shape is not None and value.shape != tuple(shape)):
        raise ValueError(
            f"{path}: array {name!r} is {value.dtype} of shape {value.shape}; expected a float array"
            + ("" if shape is None else f" of shape {tuple(shape)}")
        )
    return value if dtype is None else value.astype(dtype)


def _network(estimator, arrays, path):
    """The estimator's network, built from its parameters, with the file's weights."""
    from ._network import SequenceNetwork
    from ._validation import check_float_dtype
    from .backend import BackendUnavailableError

    if "weight/head.bias" not in arrays or not hasattr(estimator, "_n_step_features"):
        raise ValueError(f"{path}: the network's weights or its input size are missing")

    def build(backend):
        return SequenceNetwork(
            estimator.cell, estimator._n_step_features, estimator.hidden_size, estimator.num_layers,
            estimator.bidirectional, estimator.dropout, check_float_dtype(estimator.dtype), backend,
            arrays["weight/head.bias"].shape[0], estimator.output, np.random.RandomState(0),
            estimator._cell_options(),
        )  # fmt: skip

    try:
        net = build(estimator.backend)
    except (BackendUnavailableError, ValueError):
        # The saving machine's backend is missing here: the weights load all the same, and
        # predict names the missing backend until ``set_params(backend=...)`` picks another.
        net = build("auto")
    expected = {f"weight/{name}" for name in net._views}
    extra = sorted(name for name in arrays if name.startswith("weight/") and name not in expected)
    if extra:
        raise ValueError(f"{path}: weights {extra} do not belong to a network with these parameters")
    for name, view in net._views.items():
        view[...] = _numeric(arrays, f"weight/{name}", path, shape=view.shape, dtype=net.dtype)
    return net


# ---------------------------------------------------------------------- parameters


def _params_to_json(params, arrays):
    """``get_params()`` as JSON values; a RandomState goes to ``arrays``."""
    from .backend import Backend

    out = {}
    for name, value in params.items():
        if isinstance(value, Backend):
            value = value.name
        elif name == "dtype":
            value = np.dtype(value).name
        elif isinstance(value, np.random.RandomState):
            kind, keys, pos, has_gauss, cached = value.get_state(legacy=True)
            arrays["random_state/keys"] = keys
            value = {"RandomState": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": cached}
        out[name] = _json_value(value, name)
    return out


def _params_from_json(params, arrays, known, cls, path):
    """The constructor arguments of ``cls`` stored in the header, checked to be ``known``."""
    if not isinstance(params, dict):
        raise ValueError(f"{path}: the header's params must be a JSON object")
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"{path}: unknown parameters {unknown} for {cls.__name__}; expected some of {sorted(known)}")
    params = dict(params)
    state = params.get("random_state")
    if isinstance(state, dict):
        try:
            keys = arrays["random_state/keys"].astype(np.uint32)
            rng = np.random.RandomState()
            rng.set_state((state["RandomState"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: the stored random_state is corrupt ({exc})") from exc
        params["random_state"] = rng
    return params


def _json_value(value, name):
    """``value`` as a JSON-safe value (NumPy scalars and lists converted), else ValueError."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(item, name) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _json_value(item, name) for key, item in value.items()}
    raise ValueError(
        f"{name}={value!r} ({type(value).__name__}) cannot be stored in a safe model file; "
        "expected None, a bool, number or string (pickle the estimator instead, for trusted use only)"
    )


def _labels_to_array(classes):
    """``classes_`` as a numeric or string array, and whether it was an object array."""
    if classes.dtype.kind in "biufU":
        return classes, False
    if classes.dtype.kind == "O":
        for kind in (str, bool, numbers.Integral, numbers.Real):
            if all(isinstance(label, kind) for label in classes):
                return np.array(classes.tolist()), True
    raise ValueError(
        f"classes_ of dtype {classes.dtype} ({classes[:3].tolist()}...) cannot be stored in a safe model file; "
        "expected labels that are all numbers or all strings"
    )


# ---------------------------------------------------------------------- optimizer


def _optimizer_to_arrays(estimator, arrays):
    """The optimizer's state: its moment arrays into ``arrays``, its step count returned."""
    from .optim import Adam

    optimizer = getattr(estimator, "_optimizer", None)
    if optimizer is None:
        return None
    if isinstance(optimizer, Adam):
        arrays["optimizer/m"], arrays["optimizer/v"] = optimizer.m, optimizer.v
        return {"solver": "adam", "t": optimizer.t}
    arrays["optimizer/velocity"] = optimizer.velocity
    return {"solver": "sgd"}


def _optimizer_from_arrays(estimator, state, arrays, path):
    """Rebuild the optimizer on the loaded network's flat vector."""
    from .optim import make_optimizer

    if state is None:
        return
    solver = state.get("solver") if isinstance(state, dict) else None
    if solver not in ("adam", "sgd"):
        raise ValueError(f"{path}: the optimizer state is corrupt (solver {solver!r}, expected 'adam' or 'sgd')")
    flat = estimator.network_.flat
    optimizer = make_optimizer(solver, flat, estimator.learning_rate, estimator.momentum)
    if solver == "adam":
        optimizer.t = int(state.get("t", 0))
        optimizer.m[...] = _numeric(arrays, "optimizer/m", path, shape=flat.shape)
        optimizer.v[...] = _numeric(arrays, "optimizer/v", path, shape=flat.shape)
    else:
        optimizer.velocity[...] = _numeric(arrays, "optimizer/velocity", path, shape=flat.shape)
    estimator._optimizer = optimizer


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _model_classes():
    """The classes a model file may name: nothing else is ever instantiated."""
    from .estimators import LSTMClassifier, LSTMRegressor
    from .layers import GRU, LSTM, RNN

    return {"LSTMClassifier": LSTMClassifier, "LSTMRegressor": LSTMRegressor, "LSTM": LSTM, "GRU": GRU, "RNN": RNN}
