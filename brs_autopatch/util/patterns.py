"""Regular expressions compiled on first use.

:mod:`brs_autopatch.config.variables` and :mod:`brs_autopatch.util.redact` load in botocore's
import hook of every process under brs-run. Compiling their patterns at import cost
about 1 ms there, for checks most processes never make (a session name is matched
only when one is set; the redaction pattern only when a record is logged).
"""

from __future__ import annotations

import re
from collections.abc import Callable


class LazyPattern:
    """``re.compile(source, flags)``, done by the first match. Thread-safe: a race
    compiles twice and keeps either (``re`` returns equal patterns)."""

    __slots__ = ("_compiled", "_flags", "pattern")

    def __init__(self, source: str, flags: int = 0) -> None:
        self.pattern = source
        self._flags = flags
        self._compiled: re.Pattern[str] | None = None

    @property
    def compiled(self) -> re.Pattern[str]:
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = re.compile(self.pattern, self._flags)
        return compiled

    def fullmatch(self, string: str) -> re.Match[str] | None:
        return self.compiled.fullmatch(string)

    def sub(self, repl: str | Callable[[re.Match[str]], str], string: str) -> str:
        return self.compiled.sub(repl, string)

    def __repr__(self) -> str:
        return f"LazyPattern({self.pattern!r})"
