"""Sphinx configuration: a guide, and the API pages generated from the docstrings.

The examples in the guide are doctests; pytest runs them (``docs/conftest.py``).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from zmqchan_green import __version__

project = "zmqchan_green"
author = "The zmqchan_green developers"
copyright = "2026, The zmqchan_green developers"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

exclude_patterns = ["_build"]

html_theme = "furo"
html_title = f"zmqchan_green {release}"
