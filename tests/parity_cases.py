"""The layer configurations checked against PyTorch, live and through golden fixtures."""

import numpy as np

import lstmcpu

# id -> (layer config, T, B, variable lengths?); the module is LSTM unless the id says GRU/RNN
CASES = {
    "edge-T1-B1-H1": (dict(input_size=1, hidden_size=1), 1, 1, False),
    "T1-odd": (dict(input_size=3, hidden_size=5), 1, 3, False),
    "B1-I-neq-H": (dict(input_size=7, hidden_size=2), 6, 1, False),
    "H1-long": (dict(input_size=2, hidden_size=1), 11, 2, False),
    "one-layer": (dict(input_size=5, hidden_size=7), 6, 4, False),
    "no-bias": (dict(input_size=4, hidden_size=3, bias=False), 5, 2, False),
    "two-layers": (dict(input_size=3, hidden_size=6, num_layers=2), 5, 3, False),
    "three-layers-lengths": (dict(input_size=4, hidden_size=5, num_layers=3), 7, 4, True),
    "bidirectional": (dict(input_size=3, hidden_size=4, bidirectional=True), 6, 3, False),
    "bidirectional-lengths": (dict(input_size=3, hidden_size=4, bidirectional=True), 6, 5, True),
    "stacked-bidirectional-batch-first-lengths": (
        dict(input_size=5, hidden_size=3, num_layers=2, bidirectional=True, batch_first=True), 7, 4, True,
    ),
    "batch-first": (dict(input_size=2, hidden_size=9, batch_first=True), 4, 3, False),
    "odd-sizes": (dict(input_size=13, hidden_size=11, num_layers=2), 9, 7, True),
    "proj": (dict(input_size=4, hidden_size=6, proj_size=3), 5, 3, False),
    "proj-stacked-bidirectional-lengths": (
        dict(input_size=3, hidden_size=5, proj_size=2, num_layers=2, bidirectional=True), 6, 4, True,
    ),
    "proj-H2-P1-T1": (dict(input_size=1, hidden_size=2, proj_size=1), 1, 1, False),
    "GRU-edge-T1-B1-H1": (dict(input_size=1, hidden_size=1), 1, 1, False),
    "GRU-one-layer": (dict(input_size=5, hidden_size=7), 6, 4, False),
    "GRU-no-bias": (dict(input_size=3, hidden_size=4, bias=False), 4, 2, False),
    "GRU-stacked-bidirectional-batch-first-lengths": (
        dict(input_size=4, hidden_size=5, num_layers=2, bidirectional=True, batch_first=True), 7, 5, True,
    ),
    "RNN-edge-T1-B1-H1": (dict(input_size=1, hidden_size=1), 1, 1, False),
    "RNN-tanh-stacked-lengths": (dict(input_size=3, hidden_size=6, num_layers=3), 6, 4, True),
    "RNN-relu-bidirectional": (dict(input_size=5, hidden_size=4, nonlinearity="relu", bidirectional=True), 5, 3, True),
    "RNN-relu-no-bias": (dict(input_size=2, hidden_size=3, nonlinearity="relu", bias=False), 4, 2, False),
}


def module_of(case_id):
    """The torch.nn / lstmcpu class name of a case."""
    return case_id.split("-")[0] if case_id.split("-")[0] in ("GRU", "RNN") else "LSTM"


def make_case(case_id):
    """Weights, inputs and upstream gradients of one case (float64, seeded by its position)."""
    config, T, B, with_lengths = CASES[case_id]
    seed = list(CASES).index(case_id)
    rng = np.random.default_rng(seed)
    module = module_of(case_id)
    layer = getattr(lstmcpu, module)(**config, dtype=np.float64, backend="numpy", random_state=seed)
    D = 2 if config.get("bidirectional") else 1
    L, H = config.get("num_layers", 1), config["hidden_size"]
    R = config.get("proj_size") or H
    x_shape = (B, T, config["input_size"]) if config.get("batch_first") else (T, B, config["input_size"])
    out_shape = x_shape[:2] + (D * R,)
    state_shapes = [(D * L, B, R), (D * L, B, H)] if module == "LSTM" else [(D * L, B, H)]
    lengths = None
    if with_lengths:
        lengths = rng.integers(1, T + 1, size=B)
        lengths[rng.integers(B)] = T  # pad_packed_sequence needs one full-length sequence
    return dict(
        module=module,
        config=config,
        state_dict=layer.state_dict(),
        x=rng.standard_normal(x_shape),
        states0=[0.5 * rng.standard_normal(shape) for shape in state_shapes],
        lengths=lengths,
        grad_out=rng.standard_normal(out_shape),
        grad_states=[rng.standard_normal(shape) for shape in state_shapes],
    )
