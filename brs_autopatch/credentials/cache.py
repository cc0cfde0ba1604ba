"""Cross-process credential cache (``BRS_CACHE_DIR``): a fetch wrapper around STS.

Pre-fork servers and worker pools start many processes at once; without sharing,
each one calls AssumeRole. :meth:`FileCache.fetch` works like botocore's
``CachedCredentialFetcher``: under a per-key lock, read the entry, return it if the
caller finds it usable, else fetch, store and return the fresh credentials.

What a shared directory needs, and why it is done this way:

* The directory must be ours (owned by our uid, not a symlink, not group- or
  world-writable), else a :class:`ConfigError`. An existing directory is never
  chmodded; a missing one is created 0700. Every file is opened relative to a
  descriptor of the checked directory, with ``O_NOFOLLOW | O_NONBLOCK``, and must be
  a regular file of ours: a planted symlink, FIFO or directory is a miss (cache file)
  or "no lock" (lock file) — nothing blocks, nothing is created outside.
* Entries are validated in one place (:func:`valid_entry`); anything else is a miss
  that gets overwritten. Writes are atomic (temp file 0600 + fsync + ``os.replace``).
  A failed write never costs the credentials STS just issued: one WARNING, serve them.
* The per-key lock (:mod:`brs_autopatch.credentials.filelock`) is a POSIX record lock that a
  forked child does not inherit, plus a mutex for our own threads; waits are bounded
  (:attr:`FileCache.lock_timeout`), then the cache goes on without it (one WARNING).
  A hit needs no lock: entries are read first without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import secrets
import stat
from collections.abc import Callable, Mapping
from typing import Any

from dateutil.parser import isoparse  # botocore's own dependency; credentials.py parses the same way

from ..errors import ConfigError
from . import filelock

logger = logging.getLogger("brs_autopatch")

_REQUIRED = ("access_key", "secret_key", "token")
_OPTIONAL = ("account_id", "session_name")
_MAX_ENTRY_BYTES = 64 * 1024
# Never follow a symlink planted in the directory, never wait on a FIFO or device,
# never leak a descriptor into an exec'd program.
_SAFE = filelock.SAFE_OPEN
_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")
_ACCEPTED = (
    "a directory owned by you, not a symlink, not group- or world-writable (e.g. mode 0700), "
    "or a path to create under an existing writable directory"
)


def check_directory(path: str, origin: str = "BRS_CACHE_DIR") -> None:
    """Raise a one-line :class:`ConfigError` unless ``path`` can be our cache directory.

    Accepted: an existing directory that is ours (see the module docstring), or a
    missing one whose nearest existing ancestor is a directory we may create it in
    (missing levels are created 0700). No side effects: nothing is created or changed.
    """
    problem = _directory_problem(os.path.abspath(path))
    if problem is not None:
        raise ConfigError(f"{origin}={path!r} is not valid: {problem}; expected {_ACCEPTED}")


def _directory_problem(path: str) -> str | None:
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return _creation_problem(path)
    except OSError as error:
        return f"it cannot be examined ({error.strerror})"
    return _ownership_problem(info)


def _ownership_problem(info: os.stat_result) -> str | None:
    uid = os.geteuid()
    if stat.S_ISLNK(info.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    if info.st_uid != uid:
        return f"it is owned by uid {info.st_uid}, not by uid {uid}"
    if info.st_mode & 0o022:
        return f"it is group- or world-writable (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def _creation_problem(path: str) -> str | None:
    # Ancestors are the system's (/tmp, a home behind a symlink): followed on purpose.
    ancestor = os.path.dirname(path)
    while True:
        try:
            info = os.stat(ancestor)
            break
        except (FileNotFoundError, NotADirectoryError):
            if ancestor == os.path.dirname(ancestor):
                return "no part of it exists"
            ancestor = os.path.dirname(ancestor)
        except OSError as error:
            return f"{ancestor} cannot be examined ({error.strerror})"
    if not stat.S_ISDIR(info.st_mode):
        return f"it does not exist and {ancestor} is not a directory"
    effective = os.access in os.supports_effective_ids
    if not os.access(ancestor, os.W_OK | os.X_OK, effective_ids=effective):
        return f"it does not exist and cannot be created in {ancestor} (not writable)"
    return None


def valid_entry(raw: object) -> dict[str, Any] | None:
    """The one check of a cache entry: a copy if well-formed, else None (a miss).

    Well-formed: non-empty strings for the keys, ``expiry_time`` an ISO-8601 time with
    an offset, ``issued_at`` a finite number of epoch seconds before it, optional
    ``account_id``/``session_name`` strings. Every reader may then parse it unguarded.
    """
    if not isinstance(raw, dict):
        return None
    if not all(isinstance(raw.get(name), str) and raw[name] for name in _REQUIRED):
        return None
    if any(name in raw and not isinstance(raw[name], str) for name in _OPTIONAL):
        return None
    expiry_text, issued = raw.get("expiry_time"), raw.get("issued_at")
    if not isinstance(expiry_text, str) or isinstance(issued, bool) or not isinstance(issued, (int, float)):
        return None
    try:
        expiry = isoparse(expiry_text)
        if expiry.utcoffset() is None:
            return None
        expiry_ts = expiry.timestamp()
        issued_ts = float(issued)
    except (ValueError, OverflowError, TypeError):
        return None
    if not (math.isfinite(issued_ts) and math.isfinite(expiry_ts) and issued_ts < expiry_ts):
        return None
    return dict(raw)


class _Unusable(Exception):
    """The directory is not (or no longer) ours: the cache steps aside."""


class FileCache:
    """Credentials by key in a private directory; safe across threads, processes and forks."""

    # Longest wait for another thread or process refilling the same entry (its STS call
    # is bounded by the STS client's timeouts); after it, go on without the lock.
    lock_timeout = 10.0

    def __init__(self, directory: str, origin: str = "BRS_CACHE_DIR") -> None:
        check_directory(directory, origin)
        self.directory = os.path.abspath(directory)
        self._warned: set[str] = set()
        with contextlib.suppress(OSError):  # fetch() retries and reports a directory it cannot use
            self._create_missing()

    def __repr__(self) -> str:
        return f"<FileCache {self.directory}>"

    @staticmethod
    def key_for(*parts: str) -> str:
        """A file-name-safe key; hashing keeps role names and secrets out of file names."""
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]

    def fetch(
        self,
        key: str,
        fetch: Callable[[], dict[str, Any]],
        usable: Callable[[Mapping[str, Any]], bool],
    ) -> tuple[dict[str, Any], str]:
        """``(entry, "cache")`` if the cached entry is valid and ``usable``, else
        ``(fetch(), "STS")`` stored for the next reader. Exceptions of ``fetch`` propagate.
        """
        if not _KEY.fullmatch(key):
            raise ValueError(f"cache key {key!r} is not a plain file name")
        try:
            dir_fd = self._open_directory()
        except (OSError, _Unusable) as error:
            self._warn_once(
                "directory", "cache directory %s is unusable (%s): not caching", self.directory, _why(error)
            )
            return fetch(), "STS"
        self._warned.discard("directory")

        def hit() -> dict[str, Any] | None:
            entry = self._read(dir_fd, key)
            return entry if entry is not None and _is_usable(usable, entry) else None

        try:
            # First without the lock (writes are atomic renames): a hit needs no lock, so
            # processes reading one entry, 50 forked workers say, do not queue for it.
            entry = hit()
            if entry is not None:
                return entry, "cache"
            name = key + ".json.lock"
            with filelock.exclusive(dir_fd, name, self.lock_timeout, hit) as lock:
                if lock.problem is not None:
                    self._warn_once(
                        "lock",
                        "cache lock file %s/%s %s: going on without it",
                        self.directory,
                        name,
                        lock.problem,
                    )
                elif lock.held:
                    self._warned.discard("lock")
                # Served while waiting, else look again now that the lock is ours.
                entry = lock.served if lock.served is not None else hit()
                if entry is not None:
                    return entry, "cache"
                metadata = fetch()
                self._write(dir_fd, key, metadata)
                return metadata, "STS"
        finally:
            os.close(dir_fd)

    # -- the directory ---------------------------------------------------------------
    def _create_missing(self) -> None:
        # mkdir each missing level 0700; never chmod one that exists (someone else's
        # or a shared one). FileExistsError: another process won the race, and the
        # descriptor check in _open_directory decides whether it is ours.
        missing: list[str] = []
        path = self.directory
        while not os.path.lexists(path) and path != os.path.dirname(path):
            missing.append(path)
            path = os.path.dirname(path)
        for level in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(level, 0o700)

    def _open_directory(self) -> int:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.directory, flags)
        except FileNotFoundError:  # removed since start-up: create it again
            self._create_missing()
            fd = os.open(self.directory, flags)
        problem = _ownership_problem(os.fstat(fd))
        if problem is not None:
            os.close(fd)
            raise _Unusable(problem)
        return fd

    # -- entries -----------------------------------------------------------------------
    def _read(self, dir_fd: int, key: str) -> dict[str, Any] | None:
        try:
            fd = os.open(key + ".json", os.O_RDONLY | _SAFE, dir_fd=dir_fd)
        except OSError:  # missing, a symlink, unreadable: a miss, overwritten below
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                logger.debug(
                    "cache file %s/%s.json is not a regular file of ours: a miss", self.directory, key
                )
                return None
            chunks: list[bytes] = []
            size = 0
            while size <= _MAX_ENTRY_BYTES:
                chunk = os.read(fd, 16384)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > _MAX_ENTRY_BYTES:
                return None
            raw = json.loads(b"".join(chunks))
        except (OSError, ValueError, RecursionError):  # ValueError covers bad JSON and UTF-8
            return None
        finally:
            os.close(fd)
        return valid_entry(raw)

    def _write(self, dir_fd: int, key: str, metadata: Mapping[str, Any]) -> None:
        if valid_entry(dict(metadata)) is None:
            # No reader would accept it; judging the answer is the engine's job.
            logger.debug("credentials not cached: the answer is not a valid cache entry")
            return
        try:
            data = json.dumps(dict(metadata)).encode()
        except (TypeError, ValueError) as error:
            self._warn_once("write", "credentials not cached (%s)", type(error).__name__)
            return
        temp = f".{key}.{secrets.token_hex(8)}.tmp"
        created = False
        try:
            fd = os.open(
                temp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=dir_fd,
            )
            created = True
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, key + ".json", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as error:  # disk full, read-only, a directory in the file's place
            if created:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=dir_fd)
            self._warn_once(
                "write",
                "could not write cache file %s/%s.json (%s): using the new credentials without caching them",
                self.directory,
                key,
                _why(error),
            )
            return
        self._warned.discard("write")

    def _warn_once(self, kind: str, message: str, *args: object) -> None:
        # One WARNING per kind of trouble until it goes away, not one per refresh.
        if kind in self._warned:
            logger.debug(message, *args)
        else:
            self._warned.add(kind)
            logger.warning(message, *args)


def _is_usable(usable: Callable[[Mapping[str, Any]], bool], entry: Mapping[str, Any]) -> bool:
    try:
        return bool(usable(entry))
    except Exception as error:  # an entry the caller cannot judge is a miss, then replaced
        logger.debug("cache entry not usable (%s): a miss", type(error).__name__)
        return False


def _why(error: BaseException) -> str:
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return str(error)
