"""One recurrent layer: time of inference and of a training step, peak memory of a training
step, and the largest deviation from the float64 NumPy oracle."""

import numpy as np

from lstmcpu import bench

from .common import BACKENDS, CELLS, DTYPES, PRESETS, LayerBenchmark, make_layer, require


class TimeLayer(LayerBenchmark):
    """Wall time of one call, for every (backend, dtype, preset, cell)."""

    def time_forward(self, *params):
        self.runners["forward"]()

    def time_train_step(self, *params):
        self.runners["train"]()


class PeakMemLayer(LayerBenchmark):
    """Peak resident memory of a process that runs one training step."""

    modes = ("train",)

    def peakmem_train_step(self, *params):
        self.runners["train"]()


class OracleDeviation:
    """Largest deviation of each backend from the NumPy backend in float64 (the oracle).

    ``setup_cache`` runs the oracle once per (cell, preset) — inputs, weights, outputs and
    gradients — instead of once per backend and dtype; each benchmark then runs the backend
    under test on the same inputs and weights, cast to its dtype.
    """

    params = [BACKENDS, DTYPES, PRESETS, CELLS]
    param_names = ["backend", "dtype", "preset", "cell"]
    timeout = 300  # setup_cache runs the float64 oracle for every preset

    def setup_cache(self):
        rng = np.random.default_rng(0)
        references = {}
        for cell in CELLS:
            for preset in PRESETS:
                T, B, I, H = bench.PRESETS[preset]
                oracle = make_layer(cell, preset, "numpy", np.float64)
                x = rng.standard_normal((T, B, I))
                y, _ = oracle(x)
                dy = rng.standard_normal(y.shape)
                dx, _ = oracle.backward(dy)
                references[cell, preset] = {
                    "weights": oracle.state_dict(),
                    "x": x,
                    "dy": dy,
                    "y": y,
                    "grads": {"input": dx, **oracle.grads},
                }
        return references

    def setup(self, references, backend, dtype, preset, cell):
        require(backend, cell, dtype)
        self.reference = references[cell, preset]
        self.layer = make_layer(cell, preset, backend, dtype)
        self.layer.load_state_dict(self.reference["weights"])
        self.dtype = np.dtype(dtype)

    def track_forward_max_abs_error(self, *params):
        y, _ = self.layer(self.reference["x"].astype(self.dtype))
        return float(np.max(np.abs(y - self.reference["y"])))

    track_forward_max_abs_error.unit = "max |y - y_oracle|"

    def track_gradient_max_rel_error(self, *params):
        self.layer(self.reference["x"].astype(self.dtype))
        dx, _ = self.layer.backward(self.reference["dy"].astype(self.dtype))
        grads = {"input": dx, **self.layer.grads}
        return max(
            float(np.max(np.abs(grads[name] - ref)) / np.max(np.abs(ref)))
            for name, ref in self.reference["grads"].items()
        )

    track_gradient_max_rel_error.unit = "max |g - g_oracle| / max |g_oracle|"
