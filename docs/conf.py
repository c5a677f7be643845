"""Sphinx configuration of the gilfree documentation (MyST Markdown pages).

Built by scripts/test.sh with ``sphinx-build -W --keep-going -b html docs <out>`` against the
installed gilfree package (autodoc imports it); every ```python block of the pages is run by
tests/python/test_docs.py.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))

import gilfree  # noqa: E402  (the installed package: the reference documents what users get)

project = "gilfree"
author = "the gilfree engineers"
copyright = "the gilfree engineers"
release = version = gilfree.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "gilfree_api",     # gilfree-automodule: a module's own public names, stub signatures
    "gilfree_header",  # gilfree-c-header: the C API from include/gilfree.h
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "README.md"]
myst_heading_anchors = 3

# The modules of the API reference (docs/api.md has a section for each; tests/python/
# test_docs.py checks that every public module of the package is here).
gilfree_api_modules = [
    "gilfree", "gilfree.process", "gilfree.context", "gilfree.queues", "gilfree.connection",
    "gilfree.synchronize", "gilfree.sharedctypes", "gilfree.pool", "gilfree.futures",
    "gilfree.managers", "gilfree.containers", "gilfree.shared_memory", "gilfree.util",
    "gilfree.reduction", "gilfree.heap", "gilfree.dummy", "gilfree.resource_tracker",
    "gilfree.resource_sharer", "gilfree._core", "gilfree.cluster", "gilfree.cluster.pool",
    "gilfree.cluster.dask",
]

autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autodoc_docstring_signature = True
autosummary_generate = False

# The C API page reads the public header of the source tree this page belongs to.
gilfree_header = os.path.join(os.path.dirname(__file__), "..", "include", "gilfree.h")

html_theme = "alabaster"
html_title = "gilfree %s" % release
html_theme_options = {"description": "Parallel Python past the GIL, on a C core",
                      "fixed_sidebar": True}
html_static_path = []

# Signatures show `Lock`, not `gilfree.synchronize.Lock` (the link still goes to its entry).
python_use_unqualified_type_names = True
