"""Peak memory of one LSTM training step, beside PyTorch's: the figures behind docs/benchmarks.md.

    python benchmarks/peak_memory.py [--impls cython,numba,numpy,torch] [--shapes small,medium]

Each (implementation, preset) runs in a fresh process (Linux: it reads /proc/self/status):
inputs and layer are built and one training step (forward, then backward of a sum loss, as
``python -m lstmcpu bench`` times it) warms up; then lstmcpu's buffer cache is emptied,
glibc returns its free memory (``malloc_trim``), the resident high-water mark is reset, and
one more step runs. Printed: the growth of resident memory during that step (peak minus
the resident memory before it), and the size of the forward cache the algorithm keeps for
the backward pass (``T*B*7H`` floats: the gates ``4H``, ``c``, ``tanh(c)`` and ``h``).
"""

import argparse
import ctypes
import json
import subprocess
import sys

import numpy as np

from lstmcpu import bench

MIB = 2**20


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def step_peak_bytes(impl, shape):
    """Resident bytes one training step adds at its peak, measured in this process."""
    T, B, I, H = bench.PRESETS[shape]
    rng = np.random.default_rng(0)
    if impl == "torch":
        step = bench.torch_runner("lstm", "train", T, B, I, H, np.float32, rng)
    else:
        step = bench.lstmcpu_runner(impl, "lstm", "train", T, B, I, H, np.float32, rng)
    step()
    import lstmcpu

    lstmcpu.release_buffers()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the resident high-water mark (VmHWM) to the current size
    before = _status_kib("VmRSS")
    step()
    return (_status_kib("VmHWM") - before) * 1024


def cache_bytes(shape):
    T, B, I, H = bench.PRESETS[shape]
    return T * B * 7 * H * 4


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impls", default="cython,numba,numpy,torch")
    parser.add_argument("--shapes", default="small,online,medium,large")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "SHAPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(step_peak_bytes(*args.child)))
        return
    print("| shape | forward cache (MiB) | " + " | ".join(f"{i} step peak (MiB)" for i in args.impls.split(",")) + " |")
    print("|---|---:|" + "---:|" * len(args.impls.split(",")))
    for shape in args.shapes.split(","):
        cells = []
        for impl in args.impls.split(","):
            out = subprocess.run([sys.executable, __file__, "--child", impl, shape],
                                 capture_output=True, text=True, check=True)  # fmt: skip
            cells.append(f"{json.loads(out.stdout.splitlines()[-1]) / MIB:.1f}")
        print(f"| {shape} | {cache_bytes(shape) / MIB:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
