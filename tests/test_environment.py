"""In CI, a missing backend or optional integration is a failure, not a silent skip.

``.ci/run`` sets ``LSTMCPU_REQUIRE="backends=a,b;modules=c,d"``; locally, without it, these
tests have nothing to require and pass.
"""

import importlib
import os

import pytest

import lstmcpu


def required(kind):
    spec = dict(
        part.split("=", 1) for part in os.environ.get("LSTMCPU_REQUIRE", "").split(";") if "=" in part
    )
    return [name for name in spec.get(kind, "").split(",") if name]


@pytest.mark.parametrize("name", required("backends") or ["numpy"])
def test_required_backend_is_available(name):
    assert name in lstmcpu.available_backends(), lstmcpu.unavailable_backends().get(name)


@pytest.mark.parametrize("name", required("modules") or ["numpy"])
def test_required_module_imports(name):
    importlib.import_module(name)
