"""``BRS_PROFILE``: take the role from a profile of the AWS config file.

AWS users keep roles in ``~/.aws/config`` (``role_arn``, ``source_profile`` or
``credential_source``, ``mfa_serial``, ``external_id``, ``duration_seconds``,
``role_session_name``). ``BRS_PROFILE=prod brs-run python app.py`` reuses that profile
the way ``aws-vault exec prod`` does, instead of restating it as ``BRS_*`` variables.
Explicit ``BRS_*`` values win. A ``source_profile`` that is itself a role profile makes
a role chain. The file is read with botocore's own loader (``AWS_CONFIG_FILE`` and
``AWS_SHARED_CREDENTIALS_FILE`` honoured), when botocore is loaded anyway.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from . import nested
from .settings import Settings
from .variables import (
    _EXTERNAL_ID,
    _MFA_SERIAL,
    _SESSION_NAME,
    MAX_CHAINED_DURATION,
    MAX_DURATION,
    MIN_DURATION,
    parse_role_chain,
)

_CREDENTIAL_SOURCES = ("Environment", "Ec2InstanceMetadata", "EcsContainer")


def _profiles() -> tuple[dict[str, dict[str, Any]], str]:
    import botocore.session

    session = botocore.session.Session()
    path = str(session.get_config_variable("config_file"))
    profiles: dict[str, dict[str, Any]] = session.full_config.get("profiles", {})
    return profiles, path


def resolve(settings: Settings) -> tuple[Settings, dict[str, str]]:
    """``settings`` with the role taken from ``settings.profile``; and field -> origin.

    Raises ConfigError naming the profile and key for anything unusable.
    """
    if settings.profile is None:
        return settings, {}
    profiles, path = _profiles()
    name = settings.profile
    where = f"BRS_PROFILE={name!r}"
    hops: list[tuple[str, dict[str, Any]]] = []
    source_profile: str | None = None
    seen: set[str] = set()
    current = name
    while True:
        if current in seen:
            raise ConfigError(f"{where} is not valid: its source_profile chain loops at {current!r}")
        seen.add(current)
        conf = profiles.get(current)
        if conf is None:
            raise ConfigError(f"{where} is not valid: no profile {current!r} in {path}")
        if "role_arn" not in conf:
            if current == name and settings.method == "served":
                # Inside a brs-run --serve tree the copies of the AWS files hold no role
                # settings for the profiles that lead to the source (brs_autopatch.serve.awsfiles):
                # an SDK naming such a profile gets the served role from the endpoint, and so
                # does BRS_PROFILE naming it. No role of its own is asked for.
                return settings.replace(profile=None), {}
            if current == name:
                raise ConfigError(f"{where} is not valid: profile {name!r} in {path} has no role_arn")
            source_profile = current  # static keys (or SSO, a process...): the source
            break
        hops.insert(0, (current, conf))
        if conf.get("source_profile") and conf.get("credential_source"):
            raise ConfigError(
                f"{where} is not valid: profile {current!r} has both source_profile and credential_source"
            )
        if conf.get("credential_source"):
            if conf["credential_source"] not in _CREDENTIAL_SOURCES:
                raise ConfigError(
                    f"{where} is not valid: profile {current!r} has credential_source="
                    f"{conf['credential_source']!r}: expected one of {', '.join(_CREDENTIAL_SOURCES)}"
                )
            break  # botocore's default chain (environment, container, instance) is the source
        following = conf.get("source_profile")
        if not following:
            raise ConfigError(
                f"{where} is not valid: profile {current!r} has role_arn but no source_profile "
                "or credential_source"
            )
        if following == current:
            source_profile = current  # role_arn and the keys that assume it in one profile
            break
        current = following
    return _apply(settings, hops, source_profile, where)


def _apply(
    settings: Settings, hops: list[tuple[str, dict[str, Any]]], source_profile: str | None, where: str
) -> tuple[Settings, dict[str, str]]:
    origins: dict[str, str] = {}
    if settings.method == "served":
        # Inside a brs-run --serve tree the served credentials are the source of every role.
        source_profile = None
    values: dict[str, Any] = {"source_profile": source_profile}
    if source_profile is not None:
        origins["source_profile"] = f"profile {hops[0][0]!r} source_profile"
    if not settings.role_arns:
        arns = ",".join(str(conf["role_arn"]) for _, conf in hops)
        values["role_arns"] = parse_role_chain(arns) if arns else ()
        origins["role_arns"] = "role_arn of profile " + " -> ".join(repr(p) for p, _ in hops)
    first_name, first = hops[0]
    for later_name, later in hops[1:]:
        for key in ("mfa_serial", "external_id"):
            if later.get(key):
                raise ConfigError(
                    f"{where} is not valid: {key} in profile {later_name!r}, the second or later "
                    "role of the chain, is not supported (only on the first role assumed)"
                )
    last_name, last = hops[-1]
    for field, key, conf, profile, pattern in (
        ("external_id", "external_id", first, first_name, _EXTERNAL_ID),
        ("mfa_serial", "mfa_serial", first, first_name, _MFA_SERIAL),
        ("role_session_name", "role_session_name", last, last_name, _SESSION_NAME),
    ):
        raw = conf.get(key)
        if raw is None or getattr(settings, field) is not None:
            continue
        if not pattern.fullmatch(str(raw)):
            shown = "(value hidden)" if field == "external_id" else repr(raw)
            raise ConfigError(f"{where} is not valid: profile {profile!r} {key}={shown} is malformed")
        values[field] = str(raw)
        origins[field] = f"profile {profile!r} {key}"
    raw = last.get("duration_seconds")
    if raw is not None and settings.duration_seconds is None:
        arns = values.get("role_arns", settings.role_arns)
        # Inside a brs-run --serve tree, another role is chained from the served one.
        chained = len(arns) > 1 or bool(nested.chained_roles(settings.replace(role_arns=arns)))
        limit = MAX_CHAINED_DURATION if chained else MAX_DURATION
        if not str(raw).strip().isdigit() or not MIN_DURATION <= int(raw) <= limit:
            why = " (a chained role: AWS caps its session at 1 h)" if chained else ""
            raise ConfigError(
                f"{where} is not valid: profile {last_name!r} duration_seconds={raw!r}: "
                f"expected {MIN_DURATION}-{limit}{why}"
            )
        values["duration_seconds"] = int(raw)
        origins["duration_seconds"] = f"profile {last_name!r} duration_seconds"
    resolved = settings.replace(**values)
    if resolved.mfa_serial and not resolved.mfa_token_command and not nested.serves(resolved):
        # (Inside a brs-run --serve tree the served role needs no code here: the server has it.)
        raise ConfigError(
            f"{where} is not valid: profile {first_name!r} has mfa_serial: set BRS_MFA_TOKEN_COMMAND "
            "to a command that prints the 6-digit code"
        )
    return resolved, origins
