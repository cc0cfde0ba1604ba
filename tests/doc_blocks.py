"""Fenced blocks of the docs, so that tests run recipes from the docs' own text."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fenced(doc: str | Path, after: str, lang: str) -> str:
    """The first ```lang block in ``doc`` (relative to the repo) that follows the text ``after``."""
    path = ROOT / doc
    text = path.read_text()
    start = text.index(after)
    match = re.compile(rf"^\s*```{re.escape(lang)}\n(.*?)^\s*```", re.S | re.M).search(text, start)
    assert match is not None, f"no {lang} block after {after!r} in {doc}"
    return match.group(1)
