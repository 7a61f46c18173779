"""lstmcpu.LSTM equals torch.nn.LSTM, forward and every gradient, for every backend.

Two sources of truth: live torch when it is installed (CI installs torch==2.13.0), and the
golden fixtures written by make_golden.py from torch, which run everywhere.
"""

import json
import pathlib

import numpy as np
import pytest

import lstmcpu

from parity_cases import CASES, make_case

GOLDEN = pathlib.Path(__file__).parent / "data" / "torch_lstm_golden.npz"


def run_lstmcpu(case, backend_name, dtype):
    layer = lstmcpu.LSTM(**case["config"], dtype=dtype, backend=backend_name)
    layer.load_state_dict(case["state_dict"])
    out, (h_n, c_n) = layer(case["x"], (case["h0"], case["c0"]), lengths=case["lengths"])
    grad_x, (grad_h0, grad_c0) = layer.backward(case["grad_out"], (case["grad_h_n"], case["grad_c_n"]))
    result = dict(out=out, h_n=h_n, c_n=c_n, grad_x=grad_x, grad_h0=grad_h0, grad_c0=grad_c0)
    result.update({f"grad.{name}": g for name, g in layer.grads.items()})
    return result


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
    from torch_reference import torch_lstm_reference

    case = make_case(case_id)
    expected = torch_lstm_reference(
        case["config"], case["state_dict"], case["x"], case["h0"], case["c0"], case["lengths"],
        case["grad_out"], case["grad_h_n"], case["grad_c_n"],
    )  # fmt: skip
    assert_matches(run_lstmcpu(case, backend_name, dtype), expected, dtype, case_size(case_id))


def load_golden_case(golden, case_id):
    def group(kind):
        prefix = f"{case_id}/{kind}/"
        return {k[len(prefix) :]: golden[k] for k in golden.files if k.startswith(prefix)}

    inputs = group("input")
    case = dict(config=json.loads(str(golden["meta"]))["cases"][case_id], state_dict=group("param"))
    case.update(inputs, lengths=inputs.get("lengths"))
    return case, group("expected")


@pytest.mark.parametrize("case_id", list(CASES))
def test_matches_torch_golden_fixtures(case_id, backend_name, dtype):
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
