"""Write tests/data/torch_golden.npz from live PyTorch (run when the cases change).

    python tests/make_golden.py

The file holds, for every case of parity_cases.py, its inputs and weights and PyTorch's
float64 outputs and gradients;
test_torch_parity.py compares every backend with them even where torch is not installed.
"""

import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from parity_cases import CASES, make_case  # noqa: E402
from torch_reference import torch_reference  # noqa: E402

OUT = pathlib.Path(__file__).parent / "data" / "torch_golden.npz"


def main():
    import torch

    arrays = {"meta": np.array(json.dumps({"torch": torch.__version__, "cases": {k: CASES[k][0] for k in CASES}}))}
    for case_id in CASES:
        case = make_case(case_id)
        reference = torch_reference(
            case["module"], case["config"], case["state_dict"], case["x"], case["states0"], case["lengths"],
            case["grad_out"], case["grad_states"],
        )  # fmt: skip
        for name, value in reference.items():
            arrays[f"{case_id}/expected/{name}"] = value
        for name in ("x", "grad_out"):
            arrays[f"{case_id}/input/{name}"] = case[name]
        for k, (state, grad) in enumerate(zip(case["states0"], case["grad_states"])):
            arrays[f"{case_id}/input/state{k}"] = state
            arrays[f"{case_id}/input/grad_state{k}"] = grad
        if case["lengths"] is not None:
            arrays[f"{case_id}/input/lengths"] = case["lengths"]
        for name, value in case["state_dict"].items():
            arrays[f"{case_id}/param/{name}"] = value
    OUT.parent.mkdir(exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes) from torch {torch.__version__}")


if __name__ == "__main__":
    main()
