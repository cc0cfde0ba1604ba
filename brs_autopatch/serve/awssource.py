"""Which profiles of the AWS files resolve to the source identity (for the program's copies).

SDKs look at the shared files *before* the container endpoint, so the program's copies
(:mod:`brs_autopatch.serve.awsfiles`) strip the source's credential material
(:data:`CREDENTIAL_KEYS`) from every profile that resolves to it: every default profile,
the selected source profile (botocore's precedence: ``AWS_DEFAULT_PROFILE``, then
``AWS_PROFILE``), its ``source_profile`` chain, any profile holding the same access key
id, ``credential_process``, SSO account+role, web-identity file or role, and any profile
whose ``source_profile`` chain reaches a stripped one (:func:`source_profiles`).
Identities are compared by what the files *say*: keys that a source
``credential_process`` or SSO login would return are not known here (finding out would
run the process or log in), so static keys equal to them elsewhere are not recognised.

Pure: works on botocore's parse of the files (:mod:`brs_autopatch.serve.awsread`) and the
environment. Not here: reading the files, writing the copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .awsread import Section

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
