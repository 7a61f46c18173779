"""lstmcpu.LSTM: shapes and layouts, modes, parameters, and clear errors on bad input."""

import pickle

import numpy as np
import pytest

import lstmcpu


def make(**kwargs):
    defaults = dict(input_size=3, hidden_size=4, random_state=0)
    return lstmcpu.LSTM(**{**defaults, **kwargs})


def test_parameters_follow_pytorch_names_shapes_and_init():
    layer = make(num_layers=2, bidirectional=True, hidden_size=4)
    expected = {}
    for k in range(2):
        layer_in = 3 if k == 0 else 8
        for sfx in ("", "_reverse"):
            expected.update({f"weight_ih_l{k}{sfx}": (16, layer_in), f"weight_hh_l{k}{sfx}": (16, 4),
                             f"bias_ih_l{k}{sfx}": (16,), f"bias_hh_l{k}{sfx}": (16,)})  # fmt: skip
    assert {k: v.shape for k, v in layer.params.items()} == expected
    assert list(layer.params) == list(expected)
    bound = 1 / np.sqrt(4)
    for value in layer.params.values():
        assert value.dtype == np.float32
        assert np.all(np.abs(value) <= bound)
    assert make(bias=False).params.keys() == {"weight_ih_l0", "weight_hh_l0"}


def test_random_state_makes_initialisation_reproducible():
    a, b, c = make(random_state=7), make(random_state=7), make(random_state=8)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    assert not np.array_equal(a.params["weight_ih_l0"], c.params["weight_ih_l0"])


def test_batch_first_equals_time_major(backend_name, dtype):
    x = np.random.default_rng(0).standard_normal((5, 3, 3))
    tm = make(dtype=dtype, backend=backend_name)
    bf = make(dtype=dtype, backend=backend_name, batch_first=True)
    out, (h, c) = tm(x)
    out_bf, (h_bf, c_bf) = bf(x.transpose(1, 0, 2))
    np.testing.assert_array_equal(out_bf, out.transpose(1, 0, 2))
    np.testing.assert_array_equal(h_bf, h)
    g = np.random.default_rng(1).standard_normal(out.shape)
    gx, _ = tm.backward(g)
    gx_bf, _ = bf.backward(g.transpose(1, 0, 2))
    np.testing.assert_array_equal(gx_bf, gx.transpose(1, 0, 2))


def test_unbatched_input_matches_batch_of_one(backend_name):
    layer = make(num_layers=2, bidirectional=True, backend=backend_name)
    x = np.random.default_rng(0).standard_normal((6, 3))
    h0 = np.random.default_rng(1).standard_normal((4, 4))
    out, (h_n, c_n) = layer(x, (h0, h0))
    assert out.shape == (6, 8) and h_n.shape == c_n.shape == (4, 4)
    out_b, (h_b, _) = layer(x[:, None], (h0[:, None], h0[:, None]))
    np.testing.assert_array_equal(out, out_b[:, 0])
    np.testing.assert_array_equal(h_n, h_b[:, 0])
    gx, (gh0, gc0) = layer.backward(np.ones_like(out_b))
    assert gx.shape == (6, 1, 3) and gh0.shape == (4, 1, 4)


def test_output_dtype_is_the_layer_dtype_and_ints_are_cast(dtype):
    layer = make(dtype=dtype)
    out, (h, c) = layer(np.ones((2, 1, 3), dtype=np.int64))
    assert out.dtype == h.dtype == c.dtype == np.dtype(dtype)
    out16, _ = layer(np.ones((2, 1, 3), dtype=np.float16))
    np.testing.assert_array_equal(out16, out)


def test_eval_keeps_no_cache_and_backward_needs_training_forward():
    layer = make().eval()
    layer(np.ones((2, 1, 3)))
    with pytest.raises(RuntimeError, match="training mode"):
        layer.backward(np.ones((2, 1, 4)))
    layer.train()
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones((2, 1, 4)))  # no forward since train()
    out, _ = layer(np.ones((2, 1, 3)))
    layer.backward(np.ones_like(out))
    with pytest.raises(RuntimeError, match="one backward"):
        layer.backward(np.ones_like(out))


def test_dropout_acts_only_in_training_mode():
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    layer = make(num_layers=2, dropout=0.5, dtype=np.float64)
    out_train, _ = layer(x)
    grad_x, _ = layer.backward(np.ones_like(out_train))
    layer.eval()
    out_a, _ = layer(x)
    out_b, _ = layer(x)
    np.testing.assert_array_equal(out_a, out_b)
    assert not np.allclose(out_train, out_a)
    # In eval mode the dropout layer computes exactly what a layer without dropout does.
    no_drop = make(num_layers=2, dropout=0.0, dtype=np.float64)
    no_drop.load_state_dict(layer.state_dict())
    out_nd, _ = no_drop(x)
    np.testing.assert_array_equal(out_nd, out_a)
    assert grad_x.shape == x.shape


def test_dropout_gradient_matches_finite_differences_with_fixed_mask():
    layer = make(num_layers=2, dropout=0.4, dtype=np.float64, random_state=3)
    x = np.random.default_rng(0).standard_normal((3, 2, 3))
    state = layer._rng.bit_generator.state
    out, _ = layer(x)
    w = np.random.default_rng(5).standard_normal(out.shape)
    grad_x, _ = layer.backward(w)

    def loss(x_):
        layer._rng.bit_generator.state = state  # replay the same dropout mask
        o, _ = layer(x_)
        layer._tape = None
        return float(np.sum(o * w))

    eps = 1e-6
    numeric = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        numeric[idx] = (loss(xp) - loss(xm)) / (2 * eps)
    np.testing.assert_allclose(grad_x, numeric, rtol=1e-6, atol=1e-9)


def test_state_dict_is_a_copy_and_loads_back():
    a, b = make(random_state=1), make(random_state=2)
    sd = a.state_dict()
    sd["weight_ih_l0"][...] = 0
    assert not np.all(a.params["weight_ih_l0"] == 0)
    b.load_state_dict(a.state_dict())
    x = np.ones((3, 2, 3))
    np.testing.assert_array_equal(a(x)[0], b(x)[0])


def test_load_state_dict_errors():
    layer = make()
    sd = layer.state_dict()
    with pytest.raises(KeyError, match="missing keys \\['bias_hh_l0'\\]"):
        layer.load_state_dict({k: v for k, v in sd.items() if k != "bias_hh_l0"})
    with pytest.raises(KeyError, match="unexpected keys \\['extra'\\]"):
        layer.load_state_dict({**sd, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match="weight_hh_l0.*shape \\(16, 5\\), expected \\(16, 4\\)"):
        layer.load_state_dict({**sd, "weight_hh_l0": np.zeros((16, 5))})
    with pytest.raises(ValueError, match="NaN"):
        layer.load_state_dict({**sd, "bias_ih_l0": np.full(16, np.nan)})


def test_layer_pickles():
    layer = make(num_layers=2)
    clone = pickle.loads(pickle.dumps(layer))
    x = np.ones((3, 2, 3))
    np.testing.assert_array_equal(layer.eval()(x)[0], clone.eval()(x)[0])


def test_repr():
    assert repr(make()) == "LSTM(3, 4)"
    assert repr(make(num_layers=2, bidirectional=True, dtype=np.float64)) == (
        "LSTM(3, 4, num_layers=2, bidirectional=True, dtype=float64)"
    )


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "x, error, match",
    [
        (np.ones((2, 3, 4, 3)), ValueError, "x must be 3-D"),
        (np.ones(3), ValueError, "x must be 3-D"),
        (np.ones((2, 1, 5)), ValueError, "5 features per step, but this layer has input_size=3"),
        (np.ones((0, 1, 3)), ValueError, "at least one time step"),
        (np.ones((2, 0, 3)), ValueError, "at least one time step and one sequence"),
        (np.ones((2, 1, 3), dtype=complex), TypeError, "real-valued"),
        (np.array([[["a", "b", "c"]]]), TypeError, "numeric"),
        (np.full((2, 1, 3), np.nan), ValueError, "NaN or infinity"),
        (np.full((2, 1, 3), np.inf), ValueError, "NaN or infinity"),
    ],
)
def test_bad_input_is_a_clear_error(x, error, match):
    with pytest.raises(error, match=match):
        make()(x)


@pytest.mark.parametrize(
    "lengths, error, match",
    [
        ([0, 2], ValueError, "lengths must lie in \\[1, 4\\]"),
        ([5, 2], ValueError, "lengths must lie in \\[1, 4\\]"),
        ([2, 2, 2], ValueError, "shape \\(2,\\)"),
        ([[2, 2]], ValueError, "shape \\(2,\\)"),
        ([1.5, 2], TypeError, "integers"),
        (["a", "b"], TypeError, "integers"),
    ],
)
def test_bad_lengths_are_a_clear_error(lengths, error, match):
    with pytest.raises(error, match=match):
        make()(np.ones((4, 2, 3)), lengths=lengths)


def test_bad_states_are_a_clear_error():
    layer = make(num_layers=2)
    x = np.ones((4, 2, 3))
    good = np.zeros((2, 2, 4))
    with pytest.raises(ValueError, match="h0 must have shape \\(2, 2, 4\\), got \\(1, 2, 4\\)"):
        layer(x, (np.zeros((1, 2, 4)), good))
    with pytest.raises(ValueError, match="c0 must have shape"):
        layer(x, (good, np.zeros((2, 2, 5))))
    with pytest.raises(TypeError, match="tuple \\(h0, c0\\)"):
        layer(x, good)
    with pytest.raises(ValueError, match="NaN"):
        layer(x, (good, np.full((2, 2, 4), np.nan)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_or_gradient_is_a_clear_error_on_every_backend(backend_name, dtype, bad):
    layer = make(backend=backend_name, dtype=dtype)
    x = np.ones((4, 2, 3), dtype=dtype)
    x[2, 1, 0] = bad
    with pytest.raises(ValueError, match="x contains NaN or infinity"):
        layer(x)
    out, _ = layer(np.ones((4, 2, 3), dtype=dtype))
    grad_out = np.ones_like(out)
    grad_out[3, 0, 3] = bad
    with pytest.raises(ValueError, match="grad_out contains NaN or infinity"):
        layer.backward(grad_out)


def test_bad_gradients_are_a_clear_error():
    layer = make()
    out, _ = layer(np.ones((4, 2, 3)))
    with pytest.raises(ValueError, match="grad_out must have the shape of out, \\(4, 2, 4\\)"):
        layer.backward(np.ones((4, 2, 5)))
    with pytest.raises(ValueError, match="grad_h_n must have shape"):
        layer.backward(np.ones_like(out), (np.ones((3, 2, 4)), None))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(input_size=0), ValueError, "input_size must be an integer >= 1"),
        (dict(hidden_size=2.5), TypeError, "hidden_size must be an integer"),
        (dict(num_layers=True), TypeError, "num_layers must be an integer"),
        (dict(dropout=1.0), ValueError, "dropout must be a number in \\[0, 1\\)"),
        (dict(dtype=np.int32), TypeError, "dtype must be float32 or float64"),
        (dict(dtype="complex128"), TypeError, "dtype must be float32 or float64"),
        (dict(backend="nope"), ValueError, "unknown backend 'nope'; available backends: \\['numpy'"),
        (dict(backend=3), TypeError, "backend must be a name"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        make(**kwargs)


def test_dropout_with_one_layer_warns():
    with pytest.warns(UserWarning, match="num_layers=1"):
        make(dropout=0.2)


# ---------------------------------------------------------------------- variants


def test_variant_parameter_names_and_shapes():
    peephole = lstmcpu.LSTM(3, 4, peephole=True)
    assert {k: v.shape for k, v in peephole.params.items() if k.startswith("weight_c")} == {
        "weight_ci_l0": (4,), "weight_cf_l0": (4,), "weight_co_l0": (4,)}  # fmt: skip
    coupled = lstmcpu.LSTM(3, 4, coupled=True, peephole=True)
    assert coupled.params["weight_ih_l0"].shape == (12, 3), "no input-gate rows"
    assert "weight_ci_l0" not in coupled.params
    proj = lstmcpu.LSTM(3, 4, proj_size=2, num_layers=2, bidirectional=True)
    assert proj.params["weight_hr_l1_reverse"].shape == (2, 4)
    assert proj.params["weight_hh_l0"].shape == (16, 2)
    assert proj.params["weight_ih_l1"].shape == (16, 4), "layer 1 reads 2 directions x proj_size"
    assert lstmcpu.GRU(3, 4).params["weight_hh_l0"].shape == (12, 4)
    assert lstmcpu.RNN(3, 4).params["bias_ih_l0"].shape == (4,)


def test_projection_shapes():
    layer = lstmcpu.LSTM(3, 5, proj_size=2, num_layers=2, bidirectional=True)
    out, (h_n, c_n) = layer(np.ones((4, 3, 3)))
    assert out.shape == (4, 3, 4) and h_n.shape == (4, 3, 2) and c_n.shape == (4, 3, 5)
    grad_x, (grad_h0, grad_c0) = layer.backward(np.ones_like(out))
    assert grad_x.shape == (4, 3, 3) and grad_h0.shape == (4, 3, 2) and grad_c0.shape == (4, 3, 5)


@pytest.mark.parametrize("layer_class", [lstmcpu.GRU, lstmcpu.RNN])
def test_single_state_layers_take_and_return_one_array(layer_class):
    layer = layer_class(3, 4, num_layers=2, random_state=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    out, h_n = layer(x, np.zeros((2, 2, 4)))
    assert out.shape == (5, 2, 4) and h_n.shape == (2, 2, 4)
    np.testing.assert_array_equal(h_n[-1], out[-1])
    grad_x, grad_h0 = layer.backward(np.ones_like(out), np.ones((2, 2, 4)))
    assert grad_x.shape == x.shape and grad_h0.shape == (2, 2, 4)
    with pytest.raises(ValueError, match="h0 must have shape \\(2, 2, 4\\)"):
        layer(x, np.zeros((1, 2, 4)))


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: lstmcpu.LSTM(3, 4, proj_size=4), ValueError, "proj_size must be smaller than hidden_size"),
        (lambda: lstmcpu.LSTM(3, 4, proj_size=-1), ValueError, "proj_size must be an integer >= 0"),
        (lambda: lstmcpu.RNN(3, 4, nonlinearity="sigmoid"), ValueError, "nonlinearity must be 'tanh' or 'relu'"),
    ],
)
def test_bad_variant_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_variant_reprs():
    assert repr(lstmcpu.LSTM(3, 4, proj_size=2, peephole=True)) == "LSTM(3, 4, proj_size=2, peephole=True)"
    assert repr(lstmcpu.RNN(3, 4, nonlinearity="relu")) == "RNN(3, 4, nonlinearity=relu)"
    assert repr(lstmcpu.GRU(3, 4, batch_first=True)) == "GRU(3, 4, batch_first=True)"


def test_torch_state_dicts_of_every_layer_type_load_both_ways():
    torch = pytest.importorskip("torch")
    for ours, theirs in [
        (lstmcpu.GRU(3, 4, num_layers=2, random_state=0), torch.nn.GRU(3, 4, num_layers=2)),
        (lstmcpu.RNN(3, 4, nonlinearity="relu", random_state=0), torch.nn.RNN(3, 4, nonlinearity="relu")),
        (lstmcpu.LSTM(3, 4, proj_size=2, bidirectional=True, random_state=0),
         torch.nn.LSTM(3, 4, proj_size=2, bidirectional=True)),
    ]:  # fmt: skip
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
        clone = type(ours)(**{k: getattr(ours, k) for k in ("input_size", "hidden_size", "num_layers")},
                           **({"proj_size": 2, "bidirectional": True} if isinstance(ours, lstmcpu.LSTM) else {}),
                           **({"nonlinearity": "relu"} if isinstance(ours, lstmcpu.RNN) else {}))  # fmt: skip
        clone.load_state_dict(theirs.state_dict())
        for name, value in ours.params.items():
            np.testing.assert_array_equal(clone.params[name], value)
