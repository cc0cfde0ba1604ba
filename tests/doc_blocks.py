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


def all_fenced(doc: str | Path) -> list[tuple[str, str, str]]:
    """Every fenced block of ``doc``: (language, the nearest heading above it, its text)."""
    text = (ROOT / doc).read_text()
    blocks: list[tuple[str, str, str]] = []
    heading = ""
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("#") and not line.startswith("#!"):
            heading = line.lstrip("#").strip()
            continue
        opening = re.fullmatch(r"\s*```(\S*).*", line)
        if opening is None:
            continue
        body: list[str] = []
        for inner in lines:
            if re.fullmatch(r"\s*```\s*", inner):
                break
            body.append(inner)
        blocks.append((opening.group(1), heading, "\n".join(body)))
    return blocks


def settings_table() -> tuple[list[str], frozenset[str], frozenset[str]]:
    """The code's table of settings: every ``BRS_*`` variable in order, the boolean ones,
    the secret ones. The one place the docs' tests import it from (it moves with the
    package's layout: fix the import here, nowhere else)."""
    from brs_autopatch.config.variables import BOOLEAN_VARIABLES, SECRET_VARIABLES, VARIABLES

    return list(VARIABLES), frozenset(BOOLEAN_VARIABLES), frozenset(SECRET_VARIABLES)
