"""The program's copies of the AWS config and credentials files under ``brs-run --serve``.

SDKs look at the shared files *before* the container endpoint, so the copies must hold
nothing that resolves to the source identity, for any way an SDK reads them:

* **Parsed by botocore itself** (:mod:`brs_autopatch.serve.awsread`: ``raw_config_parse``
  on the bytes read safely, then :func:`~botocore.configloader.build_profile_map`, merged
  the way ``botocore.session.Session.full_config`` merges the credentials file), so
  ``[DEFAULT]`` inheritance and every spelling of a profile name (``[profile "default"]``,
  ``[profile  default]``, ``[profiles default]``…) mean here exactly what they mean to
  botocore. The copies are then *written* canonically (``[default]``,
  ``[profile NAME]``, one line per setting, no ``[DEFAULT]``), so the JavaScript SDK's
  own line parser reads the same profiles out of them.
* **Stripped of the source's credential material** in every profile that resolves to it
  (:mod:`brs_autopatch.serve.awssource` says which). Such a profile keeps its other
  settings and resolves, through the chain, to the container endpoint: the role. Named
  profiles with other identities stay.
* **The program's ``[default]``** holds the non-credential settings (region included)
  of the profile botocore would have used, so its region is the one botocore would have
  picked.

Not here: the environment variables (``brs_autopatch.serve.start``), and any network access.
"""

from __future__ import annotations

import locale
import re
import shlex
from collections.abc import Iterable, Mapping

from botocore.configloader import build_profile_map

from .awsread import Section, config_paths, merged, parse, read_file
from .awssource import CREDENTIAL_KEYS, env_material, selected_profile, source_profiles

# Section and profile names written as they are: what botocore's shlex split and the
# JavaScript SDK's section pattern both read back unchanged.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_\-@+.%:/]+")


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
    every = merged(profiles, credentials)
    stripped = source_profiles(every, sso_sessions, [profile, *also], material)

    config_sections: list[tuple[str, list[str]]] = [
        ("default", _lines(_without_credentials(every.get(profile, {}))))
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
