"""``brs-run --check``: is this configuration going to work? Assume the role once and say.

Prints the resolved settings (secrets hidden), unknown ``BRS_*`` variables (errors: the
check fails), the boto3/botocore versions, the STS endpoint and region, where the source
credentials come from and who they belong to (GetCallerIdentity signed with them, before
assuming), then assumes the role once, asks STS who the new credentials belong to and
prints the expiry and the refresh windows in force. Exit status 0 when all is well, 1 with the reason
otherwise. Never printed: a secret key, a session token, an external ID, a full
access key ID (only its last four characters).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

from .._version import __version__
from ..errors import ConfigError, CredentialRefreshError

if TYPE_CHECKING:
    from ..credentials.engine import RoleCredentials
    from ..plan import Plan

MIN_VERSION = (1, 34)
# The (major, minor) ranges scripts/test-matrix and the main venv test; keep in step
# with pyproject.toml and docs/development.md (tests/test_docs.py compares them).
# Inside: "tested"; newer: supported, not tested.
TESTED: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "boto3": ((1, 34), (1, 44)),
    "botocore": ((1, 34), (1, 44)),
    "aiobotocore": ((2, 25), (3, 10)),
    "aioboto3": ((15, 5), (15, 5)),
    "s3fs": ((2026, 9), (2026, 9)),
}
PROG = "brs-run --check"


class CheckFailed(Exception):
    """A check that failed; the message is the reason, one line."""


class Report:
    """Aligned ``name  value`` lines on stdout."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def line(self, name: str, value: str) -> None:
        self.out.write(f"{name:<22} {value}\n")
        self.out.flush()


def parse_version(text: str) -> tuple[int, ...]:
    """``"1.44.8"`` -> ``(1, 44, 8)``; stops at the first part that is not a number."""
    numbers: list[int] = []
    for part in text.split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        numbers.append(int(digits))
        if len(digits) != len(part):
            break
    return tuple(numbers)


def library_version(name: str) -> str | None:
    """The installed version of ``name``, without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _tail(access_key_id: str) -> str:
    return "..." + access_key_id[-4:] if len(access_key_id) > 4 else "(short)"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 0:
        return f"{-seconds} s ago"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s"


def _describe(error: BaseException, where: str | None = None) -> str:
    """One line for an unexpected exception, never quoting an STS answer (see failures)."""
    from ..credentials.failures import describe_error

    return describe_error(error, where)[0]


def _scrub(text: str) -> str:
    from ..util.redact import scrub

    return scrub(" ".join(text.split()))


def run_check(environ: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    """Run every check against ``environ`` (default ``os.environ``); the exit status."""
    env = dict(os.environ if environ is None else environ)
    report = Report(sys.stdout if out is None else out)
    report.line("brs_autopatch", f"{__version__} ({os.path.dirname(os.path.abspath(__file__))})")
    report.line("python", f"{sys.version.split()[0]} ({sys.executable})")
    try:
        ok = _checks(env, report)
    except CheckFailed as failure:
        reason = _scrub(str(failure))  # the last line of defence for what we print
        report.line("result", f"FAILED: {reason}")
        sys.stderr.write(f"{PROG}: FAILED: {reason}\n")
        return 1
    if ok:
        report.line("result", "OK")
    return 0


def _checks(env: dict[str, str], report: Report) -> bool:
    from ..config.from_env import from_env
    from ..config.variables import describe_unknown, unknown_variables

    # Typos first: a mistyped variable is ignored, which explains many a failure below.
    unknown = unknown_variables(env)
    for name, close in unknown:
        report.line("error", f"unknown variable {name}" + (f": did you mean {close}?" if close else ""))
    if env.get("AWS_ROLE_ARN", "").strip() and not env.get("BRS_ROLE_ARN", "").strip():
        report.line(
            "hint",
            "AWS_ROLE_ARN is set, BRS_ROLE_ARN is not: AWS_ROLE_ARN belongs to botocore's "
            "web-identity provider (EKS sets it); brs_autopatch assumes BRS_ROLE_ARN",
        )
    typos = f" (unknown: {describe_unknown(unknown)})" if unknown else ""
    try:
        settings = from_env(env)
    except ConfigError as error:
        raise CheckFailed(f"{error}{typos}") from None
    shown = settings.redacted()
    report.line("settings", "(BRS_* variables and options)" if shown else "(all defaults)")
    for name, value in shown.items():
        report.line(f"  {name}", value)
    if not settings.enabled:
        report.line("result", "not checked: BRS_ENABLED is false, programs run unpatched")
        return False
    if settings.profile:
        from ..config import profiles

        try:
            resolved, origins = profiles.resolve(settings)
        except ConfigError as error:
            raise CheckFailed(str(error)) from None
        shown = resolved.redacted()
        for name, origin in origins.items():
            report.line(f"  {name}", f"{shown.get(name, '')} (from {origin})")
    if not settings.active:
        raise CheckFailed(f"BRS_ROLE_ARN is not set: expected the role to assume (or --role-arn){typos}")

    _check_libraries(report)
    _quiet_logs(settings.log_level)
    # Importing brs_autopatch may have installed the patch in this process: the check
    # wants plain botocore sessions (its own source, its own STS client), so undo it
    # before botocore arrives. Programs are not affected.
    if "brs_autopatch.patch.install" in sys.modules:
        from ..patch import install as patch

        patch.unpatch()

    from .. import build as factory
    from .. import plan
    from ..credentials.answers import iso

    # The same validation plan as install() and the launcher: every bad value, here.
    try:
        planned = plan.make(settings)
    except ConfigError as error:
        raise CheckFailed(str(error)) from None
    settings = planned.settings  # BRS_PROFILE resolved
    session, client, where = _sts_endpoint(planned, report)
    if settings.method == "sts":
        _check_source(env, session, client, where, report)
    if settings.cache_dir:
        report.line("cache directory", f"{settings.cache_dir} (usable)")

    # The check itself: one real AssumeRole (never from the file cache), lazily built.
    checked = planned._replace(settings=settings.replace(defer_refresh=True, cache_dir=None), cache_dir=None)
    credentials = factory.build_from_plan(checked)
    started = time.monotonic()
    try:
        frozen = credentials.get_frozen_credentials()
    except (CredentialRefreshError, ConfigError) as error:
        raise CheckFailed(str(error)) from None
    except Exception as error:
        raise CheckFailed(f"could not assume {credentials.label}: {_describe(error)}") from None
    elapsed = (time.monotonic() - started) * 1000
    chain = f" (chain of {len(settings.role_arns)})" if len(settings.role_arns) > 1 else ""
    report.line("assume role", f"ok in {elapsed:.0f} ms: {settings.role_arn or credentials.label}{chain}")
    report.line("access key", _tail(frozen.access_key or ""))

    identity = _caller_identity(checked, credentials)
    arn = str(identity.get("Arn", ""))
    report.line("caller identity", arn)
    report.line("account", str(identity.get("Account", "")))
    if settings.role_arn is not None:
        role_name = settings.role_arn.rsplit("/", 1)[-1]
        if f":assumed-role/{role_name}/" not in arn:
            raise CheckFailed(f"the credentials belong to {arn}, not to role {settings.role_arn}")

    expiry = credentials.expiry_time
    remaining = (expiry - datetime.now(timezone.utc)).total_seconds()
    report.line("expires", f"{iso(expiry)} (in {_duration(remaining)})")
    chosen = credentials.schedule
    due = datetime.fromtimestamp(credentials.next_refresh_time(), timezone.utc)
    report.line(
        "refresh windows",
        f"advisory {chosen.advisory:.0f} s, mandatory {chosen.mandatory:.0f} s before expiry "
        f"(next refresh at {iso(due)}, a random point in the advisory window)",
    )
    report.line(
        "refresh mode",
        "on first use after the advisory window (BRS_DEFER_REFRESH=true)"
        if settings.defer_refresh
        else "background thread ahead of the advisory window (BRS_DEFER_REFRESH=false)",
    )
    if unknown:
        raise CheckFailed(f"unknown variable{'s' if len(unknown) > 1 else ''} {describe_unknown(unknown)}")
    return True


def _quiet_logs(level: str | None) -> None:
    """The report says what failed; the refresh warnings say it again, unless asked for."""
    import logging

    from ..util import logs

    logger = logs.configure(level)
    if level is None and not logger.handlers:
        logger.addHandler(logging.NullHandler())


def tested(name: str, found: str) -> str:
    """``"tested"`` inside the TESTED range of ``name``, else ``"outside CI's range A-B"``."""
    low, high = TESTED[name]
    if low <= parse_version(found)[:2] <= high:
        return "tested"
    return f"outside CI's range {'.'.join(map(str, low))}-{'.'.join(map(str, high))}"


def _check_libraries(report: Report) -> None:
    wanted = ".".join(map(str, MIN_VERSION))
    problems: list[str] = []
    for name in ("boto3", "botocore"):
        found = library_version(name)
        if found is None:
            report.line(name, "not installed")
            if name == "botocore":
                problems.append("botocore is not installed")
            continue
        supported = parse_version(found)[:2] >= MIN_VERSION
        verdict = f"supported, {tested(name, found)}" if supported else f"NOT supported: needs >= {wanted}"
        report.line(name, f"{found} ({verdict})")
        if not supported:
            problems.append(f"{name} {found} is too old: brs_autopatch needs >= {wanted}")
    for name in ("aiobotocore", "aioboto3", "s3fs"):  # the async stack, when installed
        found = library_version(name)
        if found is not None:
            report.line(name, f"{found} ({tested(name, found)})")
    if problems:
        raise CheckFailed("; ".join(problems))


def _sts_endpoint(planned: Plan, report: Report) -> tuple[Any, Any, str]:
    """The STS client the refresh engine would build (same keywords, same source session).

    Its endpoint and region are the ones AssumeRole will use; building it calls nothing.
    """
    import functools

    from .. import build as factory
    from ..credentials import sources

    try:
        source = functools.partial(sources.plain_session, planned.settings.source_profile)
        session = source()
        client: Any = session.create_client("sts", **factory.client_kwargs(planned, source))
    except ConfigError as error:
        raise CheckFailed(str(error)) from None
    except Exception as error:
        raise CheckFailed(f"could not build the STS client: {_describe(error)}") from None
    where = f"{client.meta.endpoint_url} (region {client.meta.region_name})"
    report.line("sts endpoint", where)
    return session, client, where


def _check_source(env: Mapping[str, str], session: Any, client: Any, where: str, report: Report) -> None:
    """Who the credentials that call AssumeRole belong to, asked before assuming."""
    try:
        found = session.get_credentials()
    except Exception as error:
        raise CheckFailed(f"could not load the source credentials: {_describe(error)}") from None
    if found is None:
        raise CheckFailed(
            "no source credentials: botocore's credential chain found none to call AssumeRole "
            "with (environment, AWS_PROFILE, config files, container or instance role)"
        )
    access_key = getattr(found, "access_key", None) or ""
    report.line("source credentials", f"{found.method} ({_tail(access_key)})")
    profile = env.get("AWS_PROFILE", "").strip() or env.get("AWS_DEFAULT_PROFILE", "").strip()
    if profile and found.method == "env":
        # botocore's chain asks the environment before the profile: a classic surprise.
        report.line(
            "warning",
            f"AWS_PROFILE={profile} is ignored: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are "
            "set and botocore uses them first (unset them to use the profile)",
        )
    try:
        identity: dict[str, Any] = client.get_caller_identity()
    except Exception as error:
        raise CheckFailed(
            f"GetCallerIdentity with the source credentials failed at {where}: {_describe(error)}"
        ) from None
    report.line("source identity", str(identity.get("Arn", "")))


def _caller_identity(checked: Plan, credentials: RoleCredentials) -> dict[str, Any]:
    """GetCallerIdentity signed with the role credentials, through the configured STS endpoint."""
    from .. import build as factory
    from ..credentials import sources
    from ..credentials.failures import where_of

    client: Any = None
    try:
        kwargs = factory.client_kwargs(checked, sources.plain_session)
        client = sources.session_with(credentials).create_client("sts", **kwargs)
        answer: dict[str, Any] = client.get_caller_identity()
    except Exception as error:
        raise CheckFailed(
            f"GetCallerIdentity with the role credentials failed: {_describe(error, where_of(client))}"
        ) from None
    return answer
