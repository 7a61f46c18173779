"""Fit the float32 polynomial of the Numba backend's ``exp`` (``_activations._FLOAT32_POLYNOMIAL``).

    python benchmarks/fit_exp_polynomial.py [--degree 5]

Finds ``P(r) = 1 + c1 r + ... + cd r^d`` approximating ``(exp(r) - 1) / r`` on
``|r| <= ln2 / 2`` with the least largest relative error: a linear program (SciPy's HiGHS)
over 4000 Chebyshev points, the constant term held at 1 so that ``exp(r) - 1 = r P(r)``
keeps its accuracy near 0. Prints the coefficients, the error of the fit, and the largest
error of ``exp(r) - 1`` evaluated in float32 by Horner's rule with fused multiply-adds (as
the kernels do), in float32 ulps.
"""

import argparse
import math

import numpy as np
from scipy.optimize import linprog

# The residuals are about 1e-8: scaled up so that HiGHS's feasibility tolerance (1e-7)
# does not swallow them.
SCALE = 1e8


def fit(degree, points=4000):
    """Coefficients ``c1 .. c_degree`` and the largest relative error of the fit."""
    half = math.log(2.0) / 2 * 1.0005  # a little past the range the kernels reduce to
    r = np.cos(np.linspace(0.0, np.pi, points)) * half
    r = r[np.abs(r) > 1e-12]
    target = np.expm1(r) / r
    # minimise E subject to |(1 + sum c_m r^m - target) / target| <= E
    powers = np.stack([r**m for m in range(1, degree + 1)], axis=1) / target[:, None] * SCALE
    offset = (target - 1.0) / target * SCALE
    column = -np.ones((len(r), 1))
    rows = np.vstack([np.hstack([powers, column]), np.hstack([-powers, column])])
    bounds = np.concatenate([offset, -offset])
    cost = np.zeros(degree + 1)
    cost[-1] = 1.0
    result = linprog(cost, A_ub=rows, b_ub=bounds, bounds=[(None, None)] * (degree + 1), method="highs")
    if not result.success:
        raise RuntimeError(result.message)
    return result.x[:degree], result.x[-1] / SCALE


def float32_error(coefficients, points=200001):
    """Largest relative error, in float32 ulps, of ``exp(r) - 1 = r P(r)`` evaluated in
    float32 with fused multiply-adds, over ``|r| <= ln2 / 2``."""
    c = np.float32(coefficients)
    r = np.linspace(-math.log(2.0) / 2, math.log(2.0) / 2, points).astype(np.float32)
    r = r[r != 0]
    p = np.full_like(r, c[-1])
    for coefficient in list(c[:-1][::-1]) + [np.float32(1.0)]:
        p = (p.astype(np.float64) * r + coefficient).astype(np.float32)  # one rounding, as an FMA
    q = (p.astype(np.float64) * r).astype(np.float32)
    exact = np.expm1(r.astype(np.float64))
    return float(np.max(np.abs(q - exact) / np.abs(exact)) / np.finfo(np.float32).eps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degree", type=int, default=5)
    args = parser.parse_args()
    coefficients, error = fit(args.degree)
    print("coefficients c1 ..:", ", ".join(repr(float(c)) for c in coefficients))
    print(f"largest relative error of the fit: {error:.3g}")
    print(f"exp(r) - 1 in float32: within {float32_error(coefficients):.2f} ulp")


if __name__ == "__main__":
    main()
