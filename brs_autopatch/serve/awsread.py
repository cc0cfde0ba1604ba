"""Reading the AWS config and credentials files as botocore would, safely.

For the program's copies under ``brs-run --serve`` (:mod:`brs_autopatch.serve.awsfiles`):
the paths botocore would read (:func:`config_paths`), their bytes (:func:`read_file`:
only regular files, as ``os.path.isfile`` makes it for botocore, so a FIFO, a device or
a directory is absent; opened without blocking; at most :data:`MAX_BYTES`) and botocore's
own parse of them (:func:`parse`). A file that does not parse is reported as path + line
number, never the line's text (it can hold a secret key).

Not here: which profiles are the source (:mod:`brs_autopatch.serve.awssource`), writing
the copies (:mod:`brs_autopatch.serve.awsfiles`), any network access.
"""

from __future__ import annotations

import copy
import locale
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from typing import Any

from botocore.configloader import raw_config_parse
from botocore.exceptions import ConfigNotFound, ConfigParseError

MAX_BYTES = 4 * 1024 * 1024  # AWS files are a few KiB; a bound keeps /dev/zero-like input out

Section = dict[str, Any]


class AwsFileError(Exception):
    """An AWS file brs-run cannot copy safely: one line, never a line of the file."""


def config_paths(env: Mapping[str, str]) -> tuple[str, str]:
    """(config, credentials) file paths as botocore finds them in ``env``.

    botocore takes ``AWS_CONFIG_FILE`` / ``AWS_SHARED_CREDENTIALS_FILE`` when *set* (even
    empty: then there is no file), else ``~/.aws/…``, and expands ``$VARS`` and ``~``.
    """
    config = env.get("AWS_CONFIG_FILE", "~/.aws/config")
    credentials = env.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")
    return _expand(config, env), _expand(credentials, env)


def _expand(path: str, env: Mapping[str, str]) -> str:
    # os.path.expandvars/expanduser read os.environ; botocore runs in the program with
    # this environment, so expand from it. Unknown variables stay, as expandvars leaves them.
    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return env.get(name, match.group(0))

    path = re.sub(r"\$(?:(\w+)|\{([^}]*)\})", variable, path)
    if path == "~" or path.startswith("~/"):
        home = env.get("HOME") or os.path.expanduser("~")
        path = home + path[1:]
    elif path.startswith("~"):
        path = os.path.expanduser(path)
    return path


def read_file(path: str, variable: str) -> bytes | None:
    """The bytes of an AWS file, or None where botocore sees no file.

    botocore skips a path that is not a regular file (``os.path.isfile``) and one that
    cannot be opened (``configparser.read``). The file is opened non-blocking (a FIFO
    with no writer would otherwise hang here) and checked with ``fstat`` on that very
    descriptor; at most :data:`MAX_BYTES` are read.
    """
    if not path:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError):
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_size > MAX_BYTES:
            raise AwsFileError(_too_big(path, variable))
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, min(1 << 16, MAX_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_BYTES:  # grew while read
            raise AwsFileError(_too_big(path, variable))
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _too_big(path: str, variable: str) -> str:
    limit = MAX_BYTES // (1024 * 1024)
    return f"the AWS file {_shown(path)} ({variable}) is larger than {limit} MiB, too large for an AWS file"


def _shown(path: str) -> str:
    return repr(path) if any(ch in path for ch in "\r\n\t") else path


def parse(data: bytes | None, path: str, variable: str, workdir: str | None = None) -> dict[str, Section]:
    """``raw_config_parse`` of ``data`` (what botocore makes of the file), {} for no file.

    The bytes go to a private regular file first so that botocore's own loader reads
    them (decoding with the locale's encoding, as it does in the program).
    """
    if data is None:
        return {}
    line = _undecodable_line(data)
    if line is not None:
        raise AwsFileError(_does_not_parse(path, variable, line))
    handle, scratch = tempfile.mkstemp(prefix=".parse-", dir=workdir)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        try:
            parsed: dict[str, Section] = raw_config_parse(scratch)
        except ConfigNotFound:
            return {}
        except ConfigParseError as error:
            raise AwsFileError(_does_not_parse(path, variable, _error_line(error, data))) from None
    finally:
        os.unlink(scratch)
    return parsed


def _undecodable_line(data: bytes) -> int | None:
    try:
        data.decode(locale.getpreferredencoding(False))
    except UnicodeDecodeError as error:
        return data[: error.start].count(b"\n") + 1
    except LookupError:
        return None
    return None


def _error_line(error: ConfigParseError, data: bytes) -> int | None:
    cause = error.kwargs.get("error")
    line = getattr(cause, "lineno", None)
    if isinstance(line, int):
        return line
    errors = getattr(cause, "errors", None)
    if errors and isinstance(errors[0], tuple) and isinstance(errors[0][0], int):
        return int(errors[0][0])
    return _nested_error_line(data)


def _nested_error_line(data: bytes) -> int | None:
    # botocore's nested blocks (``s3 =`` then indented ``key = value`` lines) fail on an
    # indented line without "=": find the first such line, as configparser sees lines.
    nested = False
    for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        text = raw.strip()
        if not text or text.startswith(("#", ";")):
            continue
        if raw[:1].isspace():
            if nested and "=" not in text:
                return number
            continue
        nested = bool(re.fullmatch(r"[^=:\[]+[=:]", text))
    return None


def _does_not_parse(path: str, variable: str, line: int | None) -> str:
    where = f" at line {line}" if line is not None else ""
    # The path and a line number only: the line itself can be a secret key.
    return f"the AWS file {_shown(path)} ({variable}) does not parse{where}; botocore would refuse it too"


def merged(config_profiles: Mapping[str, Section], credentials: Mapping[str, Section]) -> dict[str, Section]:
    """The profiles of both files as botocore.session.Session.full_config merges them:
    credentials-file values over config ones."""
    merged = copy.deepcopy(dict(config_profiles))
    for name, values in credentials.items():
        if name not in merged:
            merged[name] = dict(values)
        else:
            merged[name].update(values)
    return merged
