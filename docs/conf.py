"""Sphinx configuration of the qkan_fast documentation (`scripts/build_docs.sh` builds it)."""

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
IN_TREE = os.path.join(ROOT, "python")



def _forget_qkan_fast():
    for name in [m for m in sys.modules if m == "qkan_fast" or m.startswith("qkan_fast.")]:
        del sys.modules[name]


# Document the checkout's sources: the in-tree package comes first on the path. Its compiled
# module is needed only to import the package; when it is not built in the tree (CI installs the
# package into a venv), use the installed qkan_fast, built from the same sources, and failing
# that stand in a mock for the compiled module (every docstring is in Python).
sys.path.insert(0, IN_TREE)
autodoc_mock_imports = []
try:
    import qkan_fast  # noqa: F401
except ImportError:
    _forget_qkan_fast()
    sys.path.remove(IN_TREE)
    try:
        import qkan_fast  # noqa: F401,F811
    except ImportError:
        _forget_qkan_fast()
        sys.path.insert(0, IN_TREE)
        autodoc_mock_imports = ["qkan_fast._C"]

project = "qkan_fast"
author = "the qkan_fast authors"
copyright = "the qkan_fast authors; Apache-2.0"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Markdown pages: $...$ maths, and anchors for ## and ### headings so pages can link to sections.
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

# Google-style docstrings.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Names in signatures that autodoc cannot link (torch, typing aliases) must not fail -W.
nitpicky = False

html_theme = "alabaster"
html_title = "qkan_fast"
