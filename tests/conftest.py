"""Shared fixtures: every test that takes ``backend`` and ``dtype`` runs for every available
backend in float32 and float64."""

import numpy as np
import pytest

import lstmcpu

BACKENDS = lstmcpu.available_backends()
DTYPES = [np.float32, np.float64]

# Tolerances for comparing against the float64 oracle or PyTorch.
TOLERANCES = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    return request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def tol(dtype):
    return TOLERANCES[dtype]


def pytest_report_header(config):
    unavailable = lstmcpu.unavailable_backends()
    lines = [f"lstmcpu backends under test: {BACKENDS}"]
    lines += [f"  not available: {reason}" for reason in unavailable.values()]
    return lines
