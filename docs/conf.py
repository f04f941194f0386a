"""Sphinx configuration of the atomscale-bluesky documentation (Markdown pages through myst-parser)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "atomscale-bluesky"
author = "atomscale-bluesky developers"
copyright = "atomscale-bluesky developers, BSD-3-Clause"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Markdown: fenced ```{directive} blocks, ::: fences for admonitions, heading anchors for links.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# The API reference follows the code: members in source order, type hints in the description.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Optional stacks (bluesky, ophyd, caproto, tiled, zmq) are installed in the dev environment;
# should one be missing, its modules still document instead of failing the build.
autodoc_mock_imports: list[str] = []
napoleon_numpy_docstring = True
napoleon_google_docstring = False

# Cross-references to names outside this project (numpy, httpx, bluesky) are not resolved:
# there is no intersphinx inventory download in CI.
nitpicky = False

html_theme = "alabaster"
html_title = "atomscale-bluesky"
html_static_path: list[str] = []
