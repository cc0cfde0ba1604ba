"""The program's copies of the AWS config and credentials files under ``brs-run --serve``.

SDKs look at the shared files *before* the container endpoint, so the copies must hold
nothing that resolves to the source identity, for any way an SDK reads them:

* **Parsed by botocore itself** (:func:`botocore.configloader.raw_config_parse` and
  :func:`~botocore.configloader.build_profile_map`, merged the way
  ``botocore.session.Session.full_config`` merges the credentials file), so ``[DEFAULT]``
  inheritance and every spelling of a profile name (``[profile "default"]``,
  ``[profile  default]``, ``[profiles default]``…) mean here exactly what they mean to
  botocore. The copies are then *written* canonically (``[default]``,
  ``[profile NAME]``, one line per setting, no ``[DEFAULT]``), so the JavaScript SDK's
  own line parser reads the same profiles out of them.
* **Stripped of the source's credential material** (:data:`CREDENTIAL_KEYS`) in: every
  default profile, the selected source profile (botocore's precedence:
  ``AWS_DEFAULT_PROFILE``, then ``AWS_PROFILE``), its ``source_profile`` chain, any
  profile holding the same access key id, ``credential_process``, SSO account+role,
  web-identity file or role, and any profile whose ``source_profile`` chain reaches a
  stripped one. Such a profile keeps its other settings and resolves, through the chain,
  to the container endpoint: the role. Named profiles with other identities stay.
  Identities are compared by what the files *say*: keys that a source
  ``credential_process`` or SSO login would return are not known here (finding out would
  run the process or log in), so static keys equal to them elsewhere are not recognised.
* **The program's ``[default]``** holds the non-credential settings (region included)
  of the profile botocore would have used, so its region is the one botocore would have
  picked.
* **Read safely**: only regular files (a FIFO, a device, a directory is absent, as
  ``os.path.isfile`` makes it for botocore), opened without blocking, at most
  :data:`MAX_BYTES`; a file that does not parse is reported as path + line number,
  never the line's text (it can hold a secret key).

Not here: the environment variables (``brs_autopatch.serve.start``), and any network access.
"""

from __future__ import annotations

import copy
import locale
import os
import re
import shlex
import stat
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

from botocore.configloader import build_profile_map, raw_config_parse
from botocore.exceptions import ConfigNotFound, ConfigParseError

MAX_BYTES = 4 * 1024 * 1024  # AWS files are a few KiB; a bound keeps /dev/zero-like input out

# Profile settings that name or produce credentials (botocore's and the other SDKs').
CREDENTIAL_KEYS = frozenset(
    {
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_security_token",
        "aws_credential_expiration",
        "role_arn",
        "source_profile",
        "credential_source",
        "credential_process",
        "web_identity_token_file",
        "role_session_name",
        "external_id",
        "mfa_serial",
        "duration_seconds",
        "sso_session",
        "sso_start_url",
        "sso_region",
        "sso_account_id",
        "sso_role_name",
        "sso_registration_scopes",
        "login_session",
    }
)
# Section and profile names written as they are: what botocore's shlex split and the
# JavaScript SDK's section pattern both read back unchanged.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_\-@+.%:/]+")

Section = dict[str, Any]


class AwsFileError(Exception):
    """An AWS file brs-run cannot copy safely: one line, never a line of the file."""


# -- reading -------------------------------------------------------------------------------------


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


# -- what is the source ----------------------------------------------------------------------------


def selected_profile(env: Mapping[str, str]) -> str:
    """The profile botocore uses: ``AWS_DEFAULT_PROFILE`` before ``AWS_PROFILE`` (botocore's
    ``configprovider`` order; the first one *set* wins, an empty one meaning default)."""
    for name in ("AWS_DEFAULT_PROFILE", "AWS_PROFILE"):
        if name in env:
            return env[name] or "default"
    return "default"


def _material(values: Section, sso_sessions: Mapping[str, Section]) -> set[tuple[str, ...]]:
    """What makes a profile's identity: the same item in two profiles, the same identity."""
    found: set[tuple[str, ...]] = set()

    def text(name: str) -> str:
        value = values.get(name)
        return value.strip() if isinstance(value, str) else ""

    if text("aws_access_key_id"):
        found.add(("key", text("aws_access_key_id")))
    if text("credential_process"):
        found.add(("process", text("credential_process")))
    if text("role_arn"):
        found.add(("role", text("role_arn")))
    if text("web_identity_token_file"):  # the same token file for another role: another identity
        found.add(("web", text("web_identity_token_file"), text("role_arn")))
    if text("login_session"):
        found.add(("login", text("login_session")))
    if text("sso_account_id") or text("sso_role_name"):
        session = sso_sessions.get(text("sso_session"), {})
        start = text("sso_start_url") or str(session.get("sso_start_url", "")).strip() or text("sso_session")
        found.add(("sso", start, text("sso_account_id"), text("sso_role_name")))
    return found


def env_material(env: Mapping[str, str]) -> set[tuple[str, ...]]:
    """The source identity's material in the launcher's environment (static keys, web identity)."""
    found: set[tuple[str, ...]] = set()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY"):
        if env.get(name, "").strip():
            found.add(("key", env[name].strip()))
    if env.get("AWS_ROLE_ARN", "").strip() and env.get("AWS_WEB_IDENTITY_TOKEN_FILE", "").strip():
        found.add(("role", env["AWS_ROLE_ARN"].strip()))
        found.add(("web", env["AWS_WEB_IDENTITY_TOKEN_FILE"].strip(), env["AWS_ROLE_ARN"].strip()))
    return found


def _merged(config_profiles: Mapping[str, Section], credentials: Mapping[str, Section]) -> dict[str, Section]:
    # As botocore.session.Session.full_config: credentials-file values over config ones.
    merged = copy.deepcopy(dict(config_profiles))
    for name, values in credentials.items():
        if name not in merged:
            merged[name] = dict(values)
        else:
            merged[name].update(values)
    return merged


def source_profiles(
    merged: Mapping[str, Section],
    sso_sessions: Mapping[str, Section],
    profiles: Iterable[str],
    material: Iterable[tuple[str, ...]] = (),
) -> set[str]:
    """The profiles that resolve to the source identity (always ``default``, see module doc).

    ``profiles`` are where the source starts: botocore's selected profile and, with
    ``BRS_PROFILE``, the role profile whose ``source_profile`` chain calls STS.
    """
    chain: list[str] = []
    for start in profiles:
        name: Any = start
        while isinstance(name, str) and name not in chain:
            chain.append(name)
            name = merged.get(name, {}).get("source_profile")
    source = set(material)
    for name in chain:
        source |= _material(merged.get(name, {}), sso_sessions)
    stripped = {"default", *chain}
    changed = True
    while changed:  # a fixpoint: chains through stripped profiles are stripped too
        changed = False
        for name, values in merged.items():
            if name in stripped:
                continue
            if _material(values, sso_sessions) & source or values.get("source_profile") in stripped:
                stripped.add(name)
                changed = True
    return stripped


# -- writing ---------------------------------------------------------------------------------------


def _without_credentials(values: Section, keep: frozenset[str] = frozenset()) -> Section:
    return {key: value for key, value in values.items() if key.lower() not in CREDENTIAL_KEYS - keep}


# What an [sso-session] section is for; anything else there (such as keys inherited
# from [DEFAULT]) goes.
_SSO_SESSION_KEYS = frozenset({"sso_start_url", "sso_region", "sso_registration_scopes"})


def _lines(values: Section) -> list[str]:
    out = []
    for key, value in values.items():
        if "\n" in key or "\r" in key or not key.strip():
            continue
        if isinstance(value, dict):
            out.append(f"{key} =")
            out.extend(
                f"    {sub} = {item}"
                for sub, item in value.items()
                if isinstance(item, str) and not any(ch in sub + item for ch in "\r\n")
            )
        elif isinstance(value, str) and not any(ch in value for ch in "\r\n"):
            out.append(f"{key} = {value}")
        # A multi-line plain value: an SDK reading line by line would take its
        # continuation lines for settings of their own; no AWS setting has one.
    return out


def _quoted(kind: str, name: str) -> str | None:
    """``kind NAME`` as a section name botocore's shlex split reads back as ``name``."""
    if not name or any(ch in name for ch in "\r\n"):
        return None
    text = f"{kind} {name}" if _PLAIN_NAME.fullmatch(name) else f"{kind} {shlex.quote(name)}"
    try:
        ok = shlex.split(text) == [kind, name]
    except ValueError:
        ok = False
    return text if ok else None


def _is_default_name(name: str) -> bool:
    # "default" however an SDK may spell it: [default], [profile default],
    # [profile "default"], [profile.default], [ default ]...
    words = re.sub(r"[\s\"'.]+", " ", name).split()
    return bool(words) and words[-1] == "default" and len(words) <= 2


def _dump(sections: Iterable[tuple[str, list[str]]]) -> str:
    return "".join(f"[{name}]\n" + "".join(f"{line}\n" for line in lines) + "\n" for name, lines in sections)


def stripped_files(
    config: Mapping[str, Section],
    credentials: Mapping[str, Section],
    profile: str,
    material: Iterable[tuple[str, ...]] = (),
    also: Iterable[str] = (),
) -> tuple[str, str]:
    """The program's (config, credentials) file texts from botocore's parse of the originals.

    ``profile`` is the one botocore selects (its settings become ``[default]``); ``also``
    names other profiles the source comes from (``BRS_PROFILE``'s role profile).
    """
    built = build_profile_map(dict(config))
    profiles: dict[str, Section] = built.pop("profiles")
    sso_sessions: dict[str, Section] = built.pop("sso_sessions")
    services: dict[str, Section] = built.pop("services")
    merged = _merged(profiles, credentials)
    stripped = source_profiles(merged, sso_sessions, [profile, *also], material)

    config_sections: list[tuple[str, list[str]]] = [
        ("default", _lines(_without_credentials(merged.get(profile, {}))))
    ]
    wanted_sessions: set[str] = set()
    for name, values in profiles.items():
        if name == "default":
            continue
        header = _quoted("profile", name)
        if header is None:
            continue
        kept = _without_credentials(values) if name in stripped else dict(values)
        if isinstance(kept.get("sso_session"), str):
            wanted_sessions.add(kept["sso_session"].strip())
        config_sections.append((header, _lines(kept)))
    for name, values in sso_sessions.items():
        header = _quoted("sso-session", name)
        if header is not None and name in wanted_sessions:
            config_sections.append((header, _lines(_without_credentials(values, _SSO_SESSION_KEYS))))
    for name, values in services.items():
        header = _quoted("services", name)
        if header is not None:
            config_sections.append((header, _lines(_without_credentials(values))))
    for name, values in built.items():  # other sections botocore keeps ([plugins], [preview])
        if isinstance(values, dict) and _PLAIN_NAME.fullmatch(name) and "." not in name:
            config_sections.append((name, _lines(_without_credentials(values))))

    credential_sections: list[tuple[str, list[str]]] = []
    for name, values in credentials.items():
        if _is_default_name(name) or any(ch in name for ch in "\r\n[]") or name != name.strip() or not name:
            continue
        kept = _without_credentials(values) if name in stripped else dict(values)
        credential_sections.append((name, _lines(kept)))
    return _dump(config_sections), _dump(credential_sections)


def program_files(env: Mapping[str, str], workdir: str | None = None) -> tuple[str, str]:
    """Read, parse and strip the AWS files ``env`` points botocore at (see the module doc).

    Raises :class:`AwsFileError` (one line, no file content) for a file that does not
    parse or is larger than :data:`MAX_BYTES`.
    """
    config_path, credentials_path = config_paths(env)
    config = parse(read_file(config_path, "AWS_CONFIG_FILE"), config_path, "AWS_CONFIG_FILE", workdir)
    credentials = parse(
        read_file(credentials_path, "AWS_SHARED_CREDENTIALS_FILE"),
        credentials_path,
        "AWS_SHARED_CREDENTIALS_FILE",
        workdir,
    )
    role_profile = env.get("BRS_PROFILE", "").strip()
    also = [role_profile] if role_profile else []
    return stripped_files(config, credentials, selected_profile(env), env_material(env), also)


def parse_text(text: str) -> dict[str, Section]:
    """botocore's parse of a file holding ``text`` (for callers holding text, and tests)."""
    return parse(text.encode(locale.getpreferredencoding(False)), "<text>", "text")


def stripped_config(text: str, profile: str, credentials: str = "") -> str:
    """The program's config file for a config file ``text`` and source ``profile``."""
    return stripped_files(parse_text(text), parse_text(credentials), profile)[0]


def stripped_credentials(text: str, profile: str = "default", config: str = "") -> str:
    """The program's credentials file for a credentials file ``text``."""
    return stripped_files(parse_text(config), parse_text(text), profile)[1]
