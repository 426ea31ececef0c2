"""Sphinx configuration of the ignite-speed docs.

``sphinx-build -W -b doctest docs docs/_build/doctest`` runs every example; ``-b html`` builds the site.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))  # the repository root: import ignite_speed from the checkout

import ignite_speed  # noqa: E402

project = "ignite-speed"
author = "the ignite-speed authors"
copyright = "the ignite-speed authors"
version = release = ignite_speed.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]
nitpicky = False
html_theme = "alabaster"
html_theme_options = {"description": "Lightning-style speed controls for PyTorch Ignite"}

autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Every example runs on CPU in a second or two; logs and warnings stay out of the checked output.
doctest_global_setup = """
import logging
import warnings

import torch
import ignite

logging.getLogger("ignite").setLevel(logging.WARNING)
logging.getLogger("ignite_speed").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", category=FutureWarning)
torch.set_num_threads(1)
torch.manual_seed(0)
""" + open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_examples", "helpers.py"), encoding="utf-8").read()
doctest_test_doctest_blocks = ""  # only the explicit testcode / testoutput blocks are tests
