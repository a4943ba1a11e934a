"""MkDocs hook: the docstrings use Sphinx roles (``:func:`name```) that mkdocstrings' Google parser
renders as literal text before the code span; drop the role so the page reads ``name``."""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|data|attr|exc|obj|const):(?=<code>)")


def on_page_content(html: str, page, config, files) -> str:
    return _ROLE.sub("", html)
