"""lstmcpu.LSTM / GRU / RNN equal torch.nn's, forward and every gradient, for every backend.

Two sources of truth: live torch when it is installed (CI installs torch==2.13.0), and the
golden fixtures written by make_golden.py from torch, which run everywhere.
"""

import json
import pathlib

import numpy as np
import pytest

import lstmcpu

from parity_cases import CASES, make_case, module_of

GOLDEN = pathlib.Path(__file__).parent / "data" / "torch_golden.npz"


def run_lstmcpu(case, backend_name, dtype):
    """lstmcpu's outputs and gradients, named as torch_reference names them."""
    layer = getattr(lstmcpu, case["module"])(**case["config"], dtype=dtype, backend=backend_name)
    layer.load_state_dict(case["state_dict"])
    is_lstm = case["module"] == "LSTM"
    hx = tuple(case["states0"]) if is_lstm else case["states0"][0]
    out, states_n = layer(case["x"], hx, lengths=case["lengths"])
    grad_state = tuple(case["grad_states"]) if is_lstm else case["grad_states"][0]
    grad_x, grad_states0 = layer.backward(case["grad_out"], grad_state)
    states_n, grad_states0 = (states_n, grad_states0) if is_lstm else ((states_n,), (grad_states0,))
    result = dict(out=out, grad_x=grad_x)
    for name, state, grad in zip("hc", states_n, grad_states0):
        result[f"{name}_n"] = state
        result[f"grad_{name}0"] = grad
    result.update({f"grad.{name}": g for name, g in layer.grads.items()})
    return result


def skip_unless_backend_runs(case_id, backend_name, dtype):
    config = CASES[case_id][0]
    layer_class = getattr(lstmcpu, module_of(case_id))
    probe = layer_class(**{**config, "num_layers": 1, "bidirectional": False}, backend="numpy")
    if not lstmcpu.get_backend(backend_name).can_run(probe._capabilities(), dtype):
        pytest.skip(f"backend {backend_name!r} does not implement {probe._capabilities()}")


def assert_matches(result, expected, dtype, n_terms):
    assert set(result) == set(expected)
    for name, value in expected.items():
        got = result[name]
        assert got.dtype == np.dtype(dtype), name
        assert got.shape == value.shape, name
        if dtype == np.float32:
            # Parameter gradients sum over all T*B steps: their absolute error grows with it.
            atol = 1e-5 * (n_terms if name.startswith("grad.") else 1)
            np.testing.assert_allclose(got, value, rtol=1e-4, atol=atol, err_msg=name)
        else:
            np.testing.assert_allclose(got, value, rtol=1e-10, atol=1e-12, err_msg=name)


def case_size(case_id):
    _, T, B, _ = CASES[case_id]
    return T * B


@pytest.mark.parametrize("case_id", list(CASES))
def test_matches_live_torch(case_id, backend_name, dtype):
    pytest.importorskip("torch")
    from torch_reference import torch_reference

    skip_unless_backend_runs(case_id, backend_name, dtype)
    case = make_case(case_id)
    expected = torch_reference(
        case["module"], case["config"], case["state_dict"], case["x"], case["states0"], case["lengths"],
        case["grad_out"], case["grad_states"],
    )  # fmt: skip
    assert_matches(run_lstmcpu(case, backend_name, dtype), expected, dtype, case_size(case_id))


def load_golden_case(golden, case_id):
    def group(kind):
        prefix = f"{case_id}/{kind}/"
        return {k[len(prefix) :]: golden[k] for k in golden.files if k.startswith(prefix)}

    inputs = group("input")
    n_states = 2 if module_of(case_id) == "LSTM" else 1
    case = dict(
        module=module_of(case_id),
        config=json.loads(str(golden["meta"]))["cases"][case_id],
        state_dict=group("param"),
        x=inputs["x"],
        grad_out=inputs["grad_out"],
        lengths=inputs.get("lengths"),
        states0=[inputs[f"state{k}"] for k in range(n_states)],
        grad_states=[inputs[f"grad_state{k}"] for k in range(n_states)],
    )
    return case, group("expected")


@pytest.mark.parametrize("case_id", list(CASES))
def test_matches_torch_golden_fixtures(case_id, backend_name, dtype):
    skip_unless_backend_runs(case_id, backend_name, dtype)
    with np.load(GOLDEN, allow_pickle=False) as golden:
        case, expected = load_golden_case(golden, case_id)
    assert_matches(run_lstmcpu(case, backend_name, dtype), expected, dtype, case_size(case_id))


def test_golden_fixtures_cover_every_case():
    with np.load(GOLDEN, allow_pickle=False) as golden:
        meta = json.loads(str(golden["meta"]))
    assert meta["torch"].startswith("2.13.0")
    assert list(meta["cases"]) == list(CASES), "cases changed: run python tests/make_golden.py"
    for case_id, (config, *_rest) in CASES.items():
        assert meta["cases"][case_id] == config, case_id


def test_pytorch_documentation_example():
    """torch.nn.LSTM's documented example, unchanged but for the import."""
    rnn = lstmcpu.LSTM(input_size=6, hidden_size=3, num_layers=2)
    input = np.random.randn(5, 4, 6)
    h0 = np.random.randn(2, 4, 3)
    c0 = np.random.randn(2, 4, 3)
    output, (hn, cn) = rnn(input, (h0, c0))
    assert output.shape == (5, 4, 3)
    assert hn.shape == (2, 4, 3) and cn.shape == (2, 4, 3)
    np.testing.assert_array_equal(hn[-1], output[-1])


def test_state_dict_round_trip_with_live_torch():
    torch = pytest.importorskip("torch")
    ours = lstmcpu.LSTM(4, 3, num_layers=2, bidirectional=True, random_state=0)
    theirs = torch.nn.LSTM(4, 3, num_layers=2, bidirectional=True)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    back = lstmcpu.LSTM(4, 3, num_layers=2, bidirectional=True)
    back.load_state_dict(theirs.state_dict())  # tensors load directly
    for name, value in ours.state_dict().items():
        np.testing.assert_array_equal(back.params[name], value)


def test_torch_state_dict_round_trip_gives_identical_outputs():
    torch = pytest.importorskip("torch")
    from lstmcpu.interop import torch_state_dict

    ours = lstmcpu.LSTM(4, 6, num_layers=2, proj_size=3, bidirectional=True, dtype=np.float64, random_state=0)
    theirs = torch.nn.LSTM(4, 6, num_layers=2, proj_size=3, bidirectional=True, dtype=torch.float64)
    theirs.load_state_dict(torch_state_dict(ours))
    back = lstmcpu.LSTM(4, 6, num_layers=2, proj_size=3, bidirectional=True, dtype=np.float64)
    back.load_state_dict(theirs.state_dict())
    x = np.random.default_rng(0).standard_normal((5, 2, 4))
    with torch.no_grad():
        torch_out, _ = theirs(torch.from_numpy(x))
    np.testing.assert_array_equal(back.eval()(x)[0], ours.eval()(x)[0])
    np.testing.assert_allclose(back(x)[0], torch_out.numpy(), rtol=1e-12, atol=1e-13)
    with pytest.raises(ValueError, match="no peephole"):
        torch_state_dict(lstmcpu.LSTM(2, 3, peephole=True))


@pytest.mark.parametrize("module", ["LSTM", "GRU", "RNN"])
def test_torch_to_lstmcpu_to_torch_gives_identical_outputs(module):
    torch = pytest.importorskip("torch")
    from lstmcpu.interop import torch_state_dict

    torch.manual_seed(0)
    config = dict(num_layers=2, bidirectional=True)
    original = getattr(torch.nn, module)(3, 5, **config, dtype=torch.float64)
    ours = getattr(lstmcpu, module)(3, 5, **config, dtype=np.float64)
    ours.load_state_dict(original.state_dict())
    back = getattr(torch.nn, module)(3, 5, **config, dtype=torch.float64)
    back.load_state_dict(torch_state_dict(ours))
    x = np.random.default_rng(0).standard_normal((6, 2, 3))
    with torch.no_grad():
        expected, _ = original(torch.from_numpy(x))
        got, _ = back(torch.from_numpy(x))
    np.testing.assert_array_equal(got.numpy(), expected.numpy())
    np.testing.assert_allclose(ours.eval()(x)[0], expected.numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_fitted_estimator_network_runs_in_torch(cell):
    torch = pytest.importorskip("torch")
    from lstmcpu.interop import torch_state_dict

    X = np.random.default_rng(0).standard_normal((10, 4, 2))
    reg = lstmcpu.LSTMRegressor(hidden_size=3, cell=cell, bidirectional=True, dtype="float64", max_iter=2,
                                random_state=0)  # fmt: skip
    with pytest.warns(Warning):  # two epochs do not converge
        reg.fit(X, X.sum(axis=(1, 2)))
    net = reg.network_
    module = getattr(torch.nn, cell.upper())(2, 3, bidirectional=True, batch_first=True, dtype=torch.float64)
    module.load_state_dict(torch_state_dict(net.rnn))
    with torch.no_grad():
        h_n = module(torch.from_numpy(X))[1]
    h_n = (h_n[0] if cell == "lstm" else h_n).numpy()
    features = np.concatenate([h_n[-2], h_n[-1]], axis=1)
    pred = (features @ net.head_weight.T + net.head_bias)[:, 0] * reg._y_scale[0] + reg._y_mean[0]
    np.testing.assert_allclose(pred, reg.predict(X), rtol=1e-10, atol=1e-10)
