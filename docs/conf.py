"""Sphinx configuration of the ignite-speed docs.

``sphinx-build -W -b doctest docs docs/_build/doctest`` runs every example; ``sphinx-build -n -W -b html docs
docs/_build/html`` builds the site with every cross-reference resolved (nitpicky).

Cross-references to Python, torch and Ignite resolve through intersphinx against inventories stored in
docs/_inventories/ (CI has no network): written by docs/_inventories/make_inventories.py for exactly the objects
these docs name, with their addresses on docs.python.org/3, pytorch.org/docs/stable and pytorch.org/ignite.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))  # the repository root: import ignite_speed from the checkout

import ignite_speed  # noqa: E402

project = "ignite-speed"
author = "the ignite-speed developers"
copyright = "2026, the ignite-speed developers"
version = release = ignite_speed.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
]

exclude_patterns = ["_build", "_inventories"]
nitpicky = True
html_theme = "furo"
html_title = f"ignite-speed {release}"

_INVENTORIES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_inventories")
intersphinx_mapping = {
    "python": ("https://docs.python.org/3/", os.path.join(_INVENTORIES, "python.inv")),
    "torch": ("https://pytorch.org/docs/stable/", os.path.join(_INVENTORIES, "torch.inv")),
    "ignite": ("https://pytorch.org/ignite/", os.path.join(_INVENTORIES, "ignite.inv")),
}

# The copy button leaves out prompts and doctest output.
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True

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


def setup(app):  # Sphinx's hook for a conf.py: the package's own names as links (docs/_xref.py)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _xref import connect

    connect(app)
