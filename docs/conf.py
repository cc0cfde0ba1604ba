"""Sphinx configuration of the docs site: MyST Markdown pages, the furo theme.

Built by scripts/test's "docs (sphinx -W)" stage with warnings as errors and nitpicky
references (`sphinx-build -W --keep-going -n -b html docs OUT`), so a broken link, a
missing page or an unresolved reference fails CI. Offline: no intersphinx, nothing fetched.
"""

from __future__ import annotations

import os
import sys

# autodoc imports the checkout the docs describe, not some installed copy.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from brs_autopatch import __version__

project = "brs_autopatch"
author = "brs_autopatch developers"
copyright = "brs_autopatch developers, MIT licence"
version = release = __version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# `[text](page.md#a-heading)` links: GitHub's slugs, so the same links work on GitHub.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

html_theme = "furo"
html_title = f"brs_autopatch {release}"
html_show_sourcelink = False

# autodoc: the public paths only (docs/api.md). Signatures show the annotations as
# written; types from boto3, botocore and the standard library are not documented
# here, so nitpicky mode is told to expect them rather than a dangling reference.
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
nitpicky = True
nitpick_ignore_regex = [
    # Docstrings name internal modules and helpers (brs_autopatch.credentials.X, or a bare
    # FIELDS); only the public paths are documented, so those have no page to link to.
    (r"py:.*", r"brs_autopatch\.(?!methods\b)(?!(install|unpatch|patched|from_env)$)[a-z_]+(\..*)?"),
    (r"py:(data|attr|meth|func|class|mod)", r"[A-Za-z_]+"),
    (r"py:.*", r"(boto3|botocore|collections|typing|datetime|concurrent|os|types|pathlib)(\..*)?"),
    (r"py:class", r"(Any|Callable|Mapping|Iterator|Sequence|Self|NoneType|TracebackType)"),
]
