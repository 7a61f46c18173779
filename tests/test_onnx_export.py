"""Exported ONNX models, run in ONNX Runtime, compute what the lstmcpu layers compute."""

import numpy as np
import pytest

import lstmcpu

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
from lstmcpu.onnx import export, layer_to_onnx  # noqa: E402

LAYERS = {
    "lstm": lambda: lstmcpu.LSTM(3, 4),
    "lstm-stacked-bidirectional": lambda: lstmcpu.LSTM(3, 4, num_layers=2, bidirectional=True),
    "lstm-peephole-coupled-stacked": lambda: lstmcpu.LSTM(3, 4, num_layers=2, peephole=True, coupled=True),
    "lstm-peephole-bidirectional-batch-first": lambda: lstmcpu.LSTM(3, 5, peephole=True, bidirectional=True,
                                                                    batch_first=True),  # fmt: skip
    "lstm-no-bias": lambda: lstmcpu.LSTM(3, 4, bias=False),
    "gru-stacked-bidirectional": lambda: lstmcpu.GRU(3, 4, num_layers=2, bidirectional=True),
    "gru-batch-first": lambda: lstmcpu.GRU(3, 6, batch_first=True),
    "rnn-tanh-stacked": lambda: lstmcpu.RNN(3, 4, num_layers=3),
    "rnn-relu-bidirectional": lambda: lstmcpu.RNN(3, 4, nonlinearity="relu", bidirectional=True),
}


def run(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


@pytest.mark.parametrize("layer_id", list(LAYERS))
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_exported_layer_matches_lstmcpu(layer_id, with_lengths):
    layer = LAYERS[layer_id]().eval()
    T, B = 5, 4
    x = np.random.default_rng(0).standard_normal((B, T, 3) if layer.batch_first else (T, B, 3)).astype(np.float32)
    lengths = np.array([5, 1, 3, 4]) if with_lengths else None
    out, states = layer(x, lengths=lengths)
    feeds = {"input": x}
    if with_lengths:
        feeds["sequence_lens"] = lengths.astype(np.int32)
    got = run(layer_to_onnx(layer, lengths=with_lengths), feeds)
    np.testing.assert_allclose(got["output"], out, rtol=1e-4, atol=1e-5)
    if isinstance(layer, lstmcpu.LSTM):
        np.testing.assert_allclose(got["h_n"], states[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got["c_n"], states[1], rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_allclose(got["h_n"], states, rtol=1e-4, atol=1e-5)


def test_export_writes_a_file_onnxruntime_loads(tmp_path):
    layer = lstmcpu.LSTM(2, 3, random_state=0).eval()
    path = tmp_path / "lstm.onnx"
    export(layer, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.ones((4, 1, 2), np.float32)
    np.testing.assert_allclose(session.run(["output"], {"input": x})[0], layer(x)[0], rtol=1e-5, atol=1e-6)


def test_export_refuses_what_onnx_cannot_express():
    with pytest.raises(ValueError, match="no projection"):
        layer_to_onnx(lstmcpu.LSTM(3, 4, proj_size=2))
    with pytest.raises(TypeError, match="LSTM, GRU or RNN layer, got dict"):
        layer_to_onnx({})
