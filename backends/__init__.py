"""Compute backends of lstmcpu: one module or folder per backend.

Each built-in backend module defines ``make_backend()``, which the registry
(:mod:`lstmcpu.registry`) calls on first use. Importing this package imports no backend.
"""
