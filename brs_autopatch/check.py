"""``brs-run --check``: is this configuration going to work? Assume the role once and say.

Prints the resolved settings (secrets hidden), the boto3/botocore versions, where the
source credentials come from, then assumes the role once, asks STS who the new
credentials belong to (GetCallerIdentity signed with them) and prints the expiry and
the refresh windows in force. Exit status 0 when all is well, 1 with the reason
otherwise. Never printed: a secret key, a session token, an external ID, a full
access key ID (only its last four characters).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

from ._version import __version__
from .errors import ConfigError, CredentialRefreshError

if TYPE_CHECKING:
    from .credentials import RoleCredentials
    from .settings import Settings

MIN_VERSION = (1, 34)
# The (major, minor) ranges scripts/test-matrix and the main venv test; keep in step
# with pyproject.toml and the README. Inside: "tested"; newer: supported, not tested.
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


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe(error: BaseException) -> str:
    """One line for an unexpected exception (botocore's messages name no secrets)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def run_check(environ: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    """Run every check against ``environ`` (default ``os.environ``); the exit status."""
    env = dict(os.environ if environ is None else environ)
    report = Report(sys.stdout if out is None else out)
    report.line("brs_autopatch", f"{__version__} ({os.path.dirname(os.path.abspath(__file__))})")
    report.line("python", f"{sys.version.split()[0]} ({sys.executable})")
    try:
        ok = _checks(env, report)
    except CheckFailed as failure:
        report.line("result", f"FAILED: {failure}")
        sys.stderr.write(f"{PROG}: FAILED: {failure}\n")
        return 1
    if ok:
        report.line("result", "OK")
    return 0


def _checks(env: dict[str, str], report: Report) -> bool:
    from .settings import from_env

    try:
        settings = from_env(env)
    except ConfigError as error:
        raise CheckFailed(str(error)) from None
    shown = settings.redacted()
    report.line("settings", "(BRS_* variables and options)" if shown else "(all defaults)")
    for name, value in shown.items():
        report.line(f"  {name}", value)
    if not settings.enabled:
        report.line("result", "not checked: BRS_ENABLED is false, programs run unpatched")
        return False
    if not settings.active:
        raise CheckFailed("BRS_ROLE_ARN is not set: expected the role to assume (or --role-arn)")

    _check_libraries(report)
    _quiet_logs(settings.log_level)
    # Importing brs_autopatch may have installed the patch in this process: the check
    # wants plain botocore sessions (its own source, its own STS client), so undo it
    # before botocore arrives. Programs are not affected.
    if "brs_autopatch.patch" in sys.modules:
        from . import patch

        patch.unpatch()

    from . import factory

    if settings.method == "sts":
        _check_source(report)
    if settings.cache_dir:
        _check_cache_dir(settings.cache_dir, report)

    # The check itself: one real AssumeRole (never from the file cache), lazily built.
    checked = replace(settings, defer_refresh=True, cache_dir=None)
    try:
        credentials = factory.build(checked)
    except ConfigError as error:
        raise CheckFailed(str(error)) from None
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

    identity = _caller_identity(settings, credentials)
    arn = str(identity.get("Arn", ""))
    report.line("caller identity", arn)
    report.line("account", str(identity.get("Account", "")))
    if settings.role_arn is not None:
        role_name = settings.role_arn.rsplit("/", 1)[-1]
        if f":assumed-role/{role_name}/" not in arn:
            raise CheckFailed(f"the credentials belong to {arn}, not to role {settings.role_arn}")

    expiry = credentials.expiry_time
    remaining = (expiry - datetime.now(timezone.utc)).total_seconds()
    report.line("expires", f"{_iso(expiry)} (in {_duration(remaining)})")
    advisory, mandatory = credentials.windows
    due = datetime.fromtimestamp(expiry.timestamp() - advisory, timezone.utc)
    report.line(
        "refresh windows",
        f"advisory {advisory} s, mandatory {mandatory} s before expiry "
        f"(next refresh from {_iso(due)})",
    )
    report.line(
        "refresh mode",
        "on first use after the advisory window (BRS_DEFER_REFRESH=true)"
        if settings.defer_refresh
        else "background thread ahead of the advisory window (BRS_DEFER_REFRESH=false)",
    )
    return True


def _quiet_logs(level: str | None) -> None:
    """The report says what failed; the refresh warnings say it again, unless asked for."""
    import logging

    from . import logs

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


def _check_source(report: Report) -> None:
    """Which of botocore's providers supplies the credentials that call AssumeRole."""
    from . import sources

    try:
        found = sources.plain_session().get_credentials()
    except Exception as error:
        raise CheckFailed(f"could not load the source credentials: {_describe(error)}") from None
    if found is None:
        raise CheckFailed(
            "no source credentials: botocore's credential chain found none to call AssumeRole "
            "with (environment, AWS_PROFILE, config files, container or instance role)"
        )
    access_key = getattr(found, "access_key", None) or ""
    report.line("source credentials", f"{found.method} ({_tail(access_key)})")


def _check_cache_dir(directory: str, report: Report) -> None:
    from .cache import FileCache

    try:
        FileCache(directory)
    except OSError as error:
        raise CheckFailed(f"BRS_CACHE_DIR={directory}: {_describe(error)}") from None
    report.line("cache directory", f"{directory} (usable)")


def _caller_identity(settings: Settings, credentials: RoleCredentials) -> dict[str, Any]:
    """GetCallerIdentity signed with the role credentials, through the configured STS endpoint."""
    from . import factory, sources

    try:
        kwargs = factory._client_kwargs(settings, sources.plain_session)
        client: Any = sources.session_with(credentials).create_client("sts", **kwargs)
        answer: dict[str, Any] = client.get_caller_identity()
    except Exception as error:
        raise CheckFailed(
            f"GetCallerIdentity with the role credentials failed: {_describe(error)}"
        ) from None
    return answer
