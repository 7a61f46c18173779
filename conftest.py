"""Doctests of modules whose optional dependencies are missing are not collected.

Their tests in tests/ skip with ``pytest.importorskip`` instead; CI installs every extra.
"""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("dask") else ["lstmcpu/dask.py"]
