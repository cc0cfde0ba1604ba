"""The contenders, each built the way its documentation says, against the local STS.

A candidate builds a ``boto3.Session`` signing with refreshing AssumeRole
credentials for ``ROLE_ARN`` (``DurationSeconds`` given) and hands back the
credentials object behind it, so scenarios can time ``get_frozen_credentials()``
and the fake clock can be attached to it. Competitors are imported here only:
they are installed by the ``bench`` extra and never by brs_autopatch itself.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3

from .env import ROLE_ARN, profile_name

_installs = itertools.count(1)


@dataclass
class Built:
    session: boto3.Session
    credentials: Any  # a botocore Credentials subclass: get_frozen_credentials()
    close: Callable[[], None] = field(default=lambda: None)


@dataclass(frozen=True)
class Candidate:
    key: str
    label: str
    engine: str  # one line: what refreshes the credentials
    build: Callable[[int, str], Built]
    # For "many sessions in one process": a scope inside which build() is called from
    # many threads (the autopatch installs once for all of them).
    scope: Callable[[int, str], contextlib.AbstractContextManager[Any]] = field(
        default=lambda duration, tag: contextlib.nullcontext()
    )
    ours: bool = False


def _botocore_profile(duration: int, tag: str) -> Built:
    # A config-file role profile (role_arn + source_profile + duration_seconds);
    # profile_name is explicit, so static AWS_* keys in the environment cannot win.
    session = boto3.Session(profile_name=profile_name(duration))
    return Built(session, session.get_credentials())


def _b3rs(defer: bool) -> Callable[[int, str], Built]:
    def build(duration: int, tag: str) -> Built:
        from boto3_refresh_session import RefreshableSession as B3RS

        session = B3RS(
            method="sts",
            assume_role_kwargs={
                "RoleArn": ROLE_ARN,
                "RoleSessionName": "bench-b3rs",
                "DurationSeconds": duration,
            },
            defer_refresh=defer,
        )
        return Built(session, session._credentials)

    return build


def _assume_role_lib(duration: int, tag: str) -> Built:
    from aws_assume_role_lib.aws_assume_role_lib import assume_role

    session = assume_role(
        boto3.Session(), ROLE_ARN, RoleSessionName="bench-aarl", DurationSeconds=duration
    )
    return Built(session, session.get_credentials())


def _ours(defer: bool) -> Callable[[int, str], Built]:
    def build(duration: int, tag: str) -> Built:
        from brs_autopatch import RefreshableSession

        session = RefreshableSession(
            {"RoleArn": ROLE_ARN, "RoleSessionName": "bench-brs", "DurationSeconds": duration},
            defer_refresh=defer,
        )
        credentials = session.refreshable_credentials
        return Built(session, credentials, credentials.stop)

    return build


def _autopatch_settings(duration: int, tag: str) -> Any:
    from brs_autopatch import Settings

    # A session name per installation: the autopatch shares one credentials object
    # per settings (for the life of the process), and each build must start from
    # nothing like the others do.
    return Settings(
        role_arns=(ROLE_ARN,), role_session_name=f"bench-ap-{next(_installs)}-{tag}"[:64],
        duration_seconds=duration,
    )


@contextlib.contextmanager
def _autopatch_scope(duration: int, tag: str) -> Iterator[None]:
    from brs_autopatch import install, unpatch

    install(_autopatch_settings(duration, tag))
    try:
        yield
    finally:
        unpatch()


def _autopatch(duration: int, tag: str) -> Built:
    from brs_autopatch.patch import install as patch

    def plain() -> Built:
        # What application code does: a plain boto3.Session(), nothing else.
        session = boto3.Session()
        credentials: Any = session.get_credentials()  # the shared RoleCredentials
        return Built(session, credentials, credentials.stop)

    if patch.current() is not None:
        return plain()
    # Installed for the construction only: the session keeps the shared credentials
    # after unpatch(), and other candidates' sessions stay unpatched.
    with _autopatch_scope(duration, tag):
        return plain()


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("botocore", "botocore profile", "config file role_arn/source_profile",
              _botocore_profile),
    Candidate("b3rs-defer", "b3rs defer", "boto3-refresh-session, defer_refresh=True",
              _b3rs(True)),
    Candidate("b3rs-eager", "b3rs eager", "boto3-refresh-session, defer_refresh=False",
              _b3rs(False)),
    Candidate("aarl", "assume-role-lib", "aws-assume-role-lib assume_role()", _assume_role_lib),
    Candidate("ours-defer", "brs_autopatch defer", "RefreshableSession(defer_refresh=True)",
              _ours(True), ours=True),
    Candidate("ours-eager", "brs_autopatch eager", "RefreshableSession(defer_refresh=False)",
              _ours(False), ours=True),
    Candidate("autopatch", "brs_autopatch autopatch", "install(Settings(...)); boto3.Session()",
              _autopatch, scope=_autopatch_scope, ours=True),
)


def select(keys: str | None) -> tuple[Candidate, ...]:
    if not keys:
        return CANDIDATES
    wanted = [k.strip() for k in keys.split(",") if k.strip()]
    unknown = set(wanted) - {c.key for c in CANDIDATES}
    if unknown:
        raise SystemExit(f"unknown candidates: {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(c.key for c in CANDIDATES)}")
    return tuple(c for c in CANDIDATES if c.key in wanted)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for dist in ("boto3", "botocore", "moto", "boto3-refresh-session", "aws-assume-role-lib",
                 "brs_autopatch"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = "not installed"
    return found
