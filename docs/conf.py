"""Sphinx configuration: ``sphinx-build -W -b html docs docs/_build/html``."""

import lstmcpu

project = "lstmcpu"
author = "lstmcpu developers"
release = lstmcpu.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
exclude_patterns = ["_build"]
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
autodoc_member_order = "bysource"
html_theme = "alabaster"
html_static_path = []
