"""Cross-process credential cache (``BRS_CACHE_DIR``) on botocore's ``JSONFileCache``.

Pre-fork servers and worker pools start many processes at once; without sharing,
each one calls AssumeRole. botocore's JSONFileCache already writes atomically
(mkstemp 0600 + fsync + os.replace). On top of it this module adds what a shared
directory needs: a 0700 directory we own, files that are ours (a foreign-owned or
corrupt file is a miss, then replaced), and an ``flock`` so that processes missing
the cache together make one STS call, not one each.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import stat
from collections.abc import Iterator, Mapping
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from botocore.utils import JSONFileCache

logger = logging.getLogger("brs_autopatch")

_REQUIRED = ("access_key", "secret_key", "token", "expiry_time")


class FileCache:
    """Credentials by key in a private directory; every method is safe across processes."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.stat(directory)
        if info.st_uid != os.getuid():
            raise PermissionError(f"cache directory {directory} is owned by another user")
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.chmod(directory, 0o700)
        # Imported here: check_directory() runs in the brs-run launcher, without botocore.
        from botocore.utils import JSONFileCache

        self._files: JSONFileCache = JSONFileCache(directory)

    @staticmethod
    def key_for(*parts: str) -> str:
        """A file-name-safe key; hashing keeps role names and secrets out of file names."""
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]

    def _path(self, key: str) -> str:
        # JSONFileCache's own key -> path mapping (a private helper) so that our
        # ownership check looks at exactly the file botocore reads.
        return str(self._files._convert_cache_key(key))  # type: ignore[attr-defined]

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached entry, or None if missing, corrupt, incomplete or not ours."""
        path = self._path(key)
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return None
        if info.st_uid != os.getuid():
            logger.warning("ignoring cache file %s: owned by uid %d", path, info.st_uid)
            return None
        try:
            entry = self._files[key]
        except KeyError:  # JSONFileCache turns unreadable or corrupt files into a miss
            return None
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in _REQUIRED):
            return None
        return entry

    def put(self, key: str, metadata: Mapping[str, Any]) -> None:
        self._files[key] = dict(metadata)

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock for ``key`` while checking and refilling it."""
        fd = os.open(self._path(key) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock


def check_directory(path: str, origin: str = "BRS_CACHE_DIR") -> None:
    """ConfigError unless ``path`` is a directory we may use: ours, or missing with a usable parent.

    Ours: owned by us, not a symlink, not group- or world-writable. Nothing is
    created or changed here. (A minimal version for the validation plan; the cache
    rework provides the full one with the same signature.)
    """
    from .errors import ConfigError

    def refuse(reason: str) -> ConfigError:
        return ConfigError(
            f"{origin}={path!r} is not valid: {reason}; expected a directory owned by you, "
            "not a symlink, not writable by group or others (or a missing one whose parent is)"
        )

    try:
        info = os.lstat(path)
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(path)) or "/"
        if not os.path.isdir(parent):
            raise refuse("its parent directory does not exist") from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise refuse("it is missing and its parent directory is not writable") from None
        return
    except OSError as error:
        raise refuse(f"it cannot be examined ({error.strerror})") from None
    if stat.S_ISLNK(info.st_mode):
        raise refuse("it is a symlink")
    if not stat.S_ISDIR(info.st_mode):
        raise refuse("it is not a directory")
    if info.st_uid != os.getuid():
        raise refuse(f"it is owned by uid {info.st_uid}")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise refuse("it is writable by group or others")
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise refuse("you cannot read, write and enter it")
