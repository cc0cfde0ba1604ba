"""The last line of defence: mask secret values in our log records and exception texts.

Descriptions are built not to contain secrets in the first place
(:mod:`brs_autopatch.credentials.failures`). This module catches what slips through anyway:

* a registry of secret values seen by this process — every issued secret key and
  session token (:func:`remember`, called when credentials are installed) and the
  configured secrets (external id, MFA command arguments, web identity tokens as
  read). Any of them, raw, URL-encoded or JSON-escaped, becomes ``(redacted)``;
* patterns for credentials next to their names (``<SecretAccessKey>…``,
  ``"SessionToken": "…"``, ``SecretAccessKey=…``), which also mask values never
  remembered: an answer cut short is never installed, yet its body carries a fresh
  secret key;
* a :class:`logging.Filter` on the ``brs_autopatch`` logger, installed when this
  module is imported (so without BRS_LOG_LEVEL too), scrubbing the message,
  exception text and stack of every record. Logger filters run only for records
  that passed the level check: nothing is spent on suppressed DEBUG lines.

Bounds. Values shorter than :data:`MIN_LENGTH` are not remembered (masking "ab"
everywhere would garble every message; the patterns still cover them next to their
names). Issued values are kept for the last :data:`MAX_ISSUED` of them, oldest
forgotten first: without a bound a process refreshing every few minutes for months
would grow, and slow every scrub, forever. A value only needs masking while it can
still sign, and STS credentials live at most 12 h; 512 values are 256 credential sets,
more than all the unexpired sets of dozens of credential objects refreshing at the
shortest plausible period (5-minute credentials from a plugin). Web identity tokens
rotate too and are kept the same way. The external id and the MFA command are few and
do not rotate: they are *pinned* in a pool of their own (:data:`MAX_PINNED`) so that
refreshes never push them out. Cost: remember() rebuilds a prefix index (microseconds
for a few values, ~17 ms with 512 one-kilobyte tokens); scrub() is one dict probe per
character of the text.

Standard library only, no botocore: errors.py scrubs exception texts with it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable

from .patterns import LazyPattern

REDACTED = "(redacted)"
MIN_LENGTH = 8
MAX_ISSUED = 512
MAX_PINNED = 64
LOGGER_NAME = "brs_autopatch"

# A credential value right after its name: XML elements (also HTML-escaped and cut
# short), JSON / Python reprs, query strings and ``name: value`` lines. Only the value
# is replaced; the name stays so the text still says what was there. The bare word
# "token" counts only as an element or a quoted key: a path ending in /token followed
# by ": No such file" is not a credential.
_NAMES = (
    "SecretAccessKey|SessionToken|SecretKey|WebIdentityToken|ExternalId|TokenCode|"
    "aws_secret_access_key|aws_session_token|secret_access_key|session_token|secret_key"
)
_QUOTE = r"(?:\\{0,2}[\"'])"
_NEXT_TO_NAME = LazyPattern(
    r"(?P<lead>(?<![A-Za-z0-9_])(?:"
    rf"(?:{_NAMES}){_QUOTE}?\s*(?:>|&gt;|=|:)\s*{_QUOTE}?"
    r"|(?<=[<;])(?:Token|token)(?:>|&gt;)"
    rf"|(?<=[\"'])(?:Token|token){_QUOTE}\s*:\s*{_QUOTE}?"
    r"))"
    r"(?P<value>[^\s\"'<&,;}\]\\]+)"
)


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT_ASCII = {code: f"%{code:02X}" for code in range(128) if chr(code) not in _UNRESERVED}


def _forms(value: str) -> frozenset[str]:
    """The ways a value appears in text: raw, URL-encoded (either hex case), JSON-escaped."""
    if value.isascii():
        encoded = value.translate(_PERCENT_ASCII)
    else:
        encoded = "".join(
            char if char in _UNRESERVED else "".join(f"%{b:02X}" for b in char.encode("utf-8"))
            for char in value
        )
    lower = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded) if "%" in encoded else encoded
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return frozenset({value, escaped, encoded, lower})


class Registry:
    """Secret values to mask, bounded. Thread-safe; scrub() takes no lock.

    Lookup is by each form's first MIN_LENGTH characters: a scrub costs one dict
    probe per character of the text, however many values are remembered (a regex
    alternation of hundreds of 1 kB tokens takes minutes to compile).
    """

    def __init__(self, max_issued: int = MAX_ISSUED, max_pinned: int = MAX_PINNED) -> None:
        self._lock = threading.Lock()
        _registries.add(self)
        # value -> its forms (computed once), oldest first.
        self._issued: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._pinned: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._limits = (max_issued, max_pinned)
        # prefix -> forms starting with it, longest first. Rebuilt on every change (a
        # refresh: rare) and swapped in whole, so scrub() reads it without the lock.
        self._index: dict[str, tuple[str, ...]] = {}

    def remember(self, *values: str | None, pinned: bool = False) -> None:
        """Mask these values from now on. ``pinned``: configured secrets, never evicted
        by issued ones. None, non-strings and values shorter than MIN_LENGTH are skipped."""
        wanted = [v for v in values if isinstance(v, str) and len(v.strip()) >= MIN_LENGTH]
        if not wanted:
            return
        with self._lock:
            pool = self._pinned if pinned else self._issued
            limit = self._limits[1] if pinned else self._limits[0]
            changed = False
            for value in wanted:
                if value in pool:
                    pool.move_to_end(value)
                    continue
                pool[value] = _forms(value)
                changed = True
                while len(pool) > limit:
                    pool.popitem(last=False)
            if changed:
                self._index = self._build([*self._pinned.values(), *self._issued.values()])

    @staticmethod
    def _build(all_forms: Iterable[frozenset[str]]) -> dict[str, tuple[str, ...]]:
        grouped: dict[str, set[str]] = {}
        for forms in all_forms:
            for form in forms:
                grouped.setdefault(form[:MIN_LENGTH], set()).add(form)
        # Longest first: a value that contains another is masked whole.
        return {key: tuple(sorted(forms, key=len, reverse=True)) for key, forms in grouped.items()}

    def forget_all(self) -> None:
        """Drop every remembered value (tests)."""
        with self._lock:
            self._issued.clear()
            self._pinned.clear()
            self._index = {}

    def __len__(self) -> int:
        return len(self._issued) + len(self._pinned)

    def scrub(self, text: str) -> str:
        """``text`` with every remembered value and every value next to a credential
        name replaced by ``(redacted)``."""
        if not text:
            return text
        index = self._index
        if index and len(text) >= MIN_LENGTH:
            text = _replace_known(text, index)
        return _NEXT_TO_NAME.sub(_mask_value, text)


def _replace_known(text: str, index: dict[str, tuple[str, ...]]) -> str:
    """Leftmost-longest replacement of the indexed forms."""
    pieces: list[str] = []
    start = position = 0
    end = len(text) - MIN_LENGTH
    while position <= end:
        forms = index.get(text[position : position + MIN_LENGTH])
        if forms is not None:
            for form in forms:
                if text.startswith(form, position):
                    pieces += (text[start:position], REDACTED)
                    position = start = position + len(form)
                    break
            else:
                position += 1
            continue
        position += 1
    if not pieces:
        return text
    pieces.append(text[start:])
    return "".join(pieces)


def _mask_value(match: re.Match[str]) -> str:
    return match.group("lead") + REDACTED


_registries: weakref.WeakSet[Registry] = weakref.WeakSet()


def _reset_after_fork() -> None:
    # A parent thread may have been remembering a new key (a refresh) at fork time.
    for registry in list(_registries):
        registry._lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)

_REGISTRY = Registry()


def remember(*values: str | None, pinned: bool = False) -> None:
    """Mask these values in every later log record and exception text of this process."""
    _REGISTRY.remember(*values, pinned=pinned)


def scrub(text: str) -> str:
    """``text`` without any remembered secret or credential-shaped value."""
    return _REGISTRY.scrub(text)


# -- the logging filter ------------------------------------------------------------------
_FORMATTER = logging.Formatter()


class ScrubFilter(logging.Filter):
    """Scrubs message, exception text and stack of each record; makes the message one line.

    An exception whose text needed scrubbing is kept as text only (``exc_text``): a
    handler formatting ``exc_info`` itself would otherwise print the original.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem, not ours
            return True
        clean = scrub(" ".join(message.split()) if "\n" in message or "\r" in message else message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = record.exc_text or _FORMATTER.formatException(record.exc_info)
            clean_text = scrub(text)
            if clean_text != text:
                record.exc_text, record.exc_info = clean_text, None
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


_FILTER = ScrubFilter()


def install_log_filter(logger_name: str = LOGGER_NAME) -> None:
    """Put the scrub filter on our logger (idempotent; done at import)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(existing, ScrubFilter) for existing in logger.filters):
        logger.addFilter(_FILTER)


install_log_filter()
