"""Peephole and coupled LSTMs (which PyTorch lacks) against ONNX Runtime's LSTM operator.

ONNX Runtime computes only the forward pass in float32; the gradients of these variants
are checked by finite differences in test_cell_variants.py.
"""

import numpy as np
import pytest

import lstmcpu
from lstmcpu.interop import onnx_lstm_weights

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

CASES = {
    "plain": dict(),
    "peephole": dict(peephole=True),
    "coupled": dict(coupled=True),
    "peephole-coupled": dict(peephole=True, coupled=True),
    "peephole-bidirectional": dict(peephole=True, bidirectional=True),
    "coupled-no-bias": dict(coupled=True, bias=False),
    "peephole-coupled-bidirectional": dict(peephole=True, coupled=True, bidirectional=True),
}


def run_onnxruntime(layer, x, h0, c0, lengths):
    from onnx import TensorProto, helper, numpy_helper

    weights = onnx_lstm_weights(layer)
    inputs = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P" if "P" in weights else ""]
    node = helper.make_node(
        "LSTM", inputs, ["Y", "Y_h", "Y_c"], hidden_size=layer.hidden_size,
        direction="bidirectional" if layer.bidirectional else "forward", **weights["attributes"],
    )  # fmt: skip
    initializers = [numpy_helper.from_array(weights[k].astype(np.float32), k) for k in ("W", "R", "B", "P") if k in weights]
    graph = helper.make_graph(
        [node], "lstm",
        [helper.make_tensor_value_info(name, kind, None) for name, kind in
         (("X", TensorProto.FLOAT), ("sequence_lens", TensorProto.INT32), ("initial_h", TensorProto.FLOAT),
          ("initial_c", TensorProto.FLOAT))],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("Y", "Y_h", "Y_c")],
        initializer=initializers,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"X": x.astype(np.float32), "sequence_lens": lengths.astype(np.int32),
             "initial_h": h0.astype(np.float32), "initial_c": c0.astype(np.float32)}  # fmt: skip
    Y, Y_h, Y_c = session.run(None, feeds)
    T, D, B, H = Y.shape
    return Y.transpose(0, 2, 1, 3).reshape(T, B, D * H), Y_h, Y_c  # ONNX's Y is (T, D, B, H)


@pytest.mark.parametrize("case_id", list(CASES))
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_lstm_variants_match_onnxruntime(case_id, with_lengths, backend_name, dtype):
    config = dict(input_size=3, hidden_size=5, **CASES[case_id])
    backend = lstmcpu.get_backend(backend_name)
    probe = lstmcpu.LSTM(**config, backend="numpy")
    if not backend.can_run(probe._capabilities(), dtype):
        pytest.skip(f"backend {backend_name!r} does not implement {probe._capabilities()}")
    layer = lstmcpu.LSTM(**config, dtype=dtype, backend=backend_name, random_state=1).eval()
    T, B = 6, 4
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, B, 3))
    D = layer.num_directions
    h0, c0 = 0.5 * rng.standard_normal((2, D, B, 5))
    lengths = np.array([6, 2, 5, 1]) if with_lengths else np.full(B, T)
    out, (h_n, c_n) = layer(x, (h0, c0), lengths=lengths)
    ref_out, ref_h, ref_c = run_onnxruntime(layer, x, h0, c0, lengths)
    np.testing.assert_allclose(out, ref_out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h_n, ref_h, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c_n, ref_c, rtol=1e-4, atol=1e-5)


def test_projection_cannot_be_converted():
    with pytest.raises(ValueError, match="no projection"):
        onnx_lstm_weights(lstmcpu.LSTM(3, 5, proj_size=2))
