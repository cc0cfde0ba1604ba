"""What brs-run checked for the processes it starts, so that they need not check it again.

The launcher validates the settings before the program starts (:func:`brs_autopatch.plan.check`)
and writes into ``BRS_BOOTSTRAP`` the fingerprint of what it checked (:func:`mark`), or
``-`` when the plan would check more than it can. A Python child whose ``BRS_*``
variables still have that fingerprint has nothing new to check: it makes its validation
plan with the credentials, when the first session asks for them. That keeps the plan
(botocore's ``Config``, the STS parameters, the credential methods) off the start-up of
every process that imports boto3 and never makes a session. (When the program changed
no ``BRS_*`` variable the child does not even read its settings before its first
session: brs_autopatch.patch.deferred.)

The fingerprint does not cover, and the plan checks, when:

* a ``BRS_*`` variable was added, removed or changed since (by the program, or a parent);
* the settings run code the launcher does not run (``BRS_CUSTOM_METHOD``, a plugin);
* ``BRS_PROFILE`` is set: the role comes from the AWS config files, outside ``BRS_*``;
* ``BRS_ASSUME_ROLE_KWARGS`` / ``BRS_STS_CLIENT_KWARGS`` are set: those are secret (a policy,
  keys), so their values are not in the fingerprint, and they need botocore's model to check.

The fingerprint is a CRC-32 of the non-secret ``BRS_*`` names and values: a cache key, not
a security boundary (whoever can change this process's environment can change its settings).
Secret values are left out so that no function of them lands in the environment.
"""

from __future__ import annotations

from collections.abc import Mapping

from .variables import SECRET_VARIABLES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .settings import Settings

# Set by brs-run for the processes it starts (brs_autopatch.launch.main). The bootstrap
# (brs_autopatch/bootstrap/sitecustomize.py) spells it too: it runs before this package
# is imported, across versions (tests/launch/test_bootstrap.py checks the two agree).
BOOTSTRAP_ENV = "BRS_BOOTSTRAP"
# The methods whose whole check the launcher runs: no user code is imported for them.
_LAUNCHER_CHECKED_METHODS = ("sts", "web-identity", "served")

# The launcher's fingerprint as this process received it, kept by the bootstrap: with
# BRS_PROPAGATE=0 the variable is gone from os.environ before botocore is imported.
_received: str | None = None


def fingerprint(env: Mapping[str, str]) -> str:
    """Eight hex digits over the BRS_* names (all) and values (the non-secret ones)."""
    from zlib import crc32

    parts = sorted(
        name if name in SECRET_VARIABLES else f"{name}={value}"
        for name, value in env.items()
        if name.startswith("BRS_") and name != BOOTSTRAP_ENV
    )
    return f"{crc32(chr(0).join(parts).encode('utf-8', 'surrogateescape')):08x}"


def mark(env: Mapping[str, str]) -> str:
    """What brs-run writes for settings it checked: their fingerprint, or ``-`` when the
    plan would check more than the launcher did (then its Python children check them as
    botocore arrives, and the bootstrap does not let them wait for a session)."""
    from .from_env import from_env

    return fingerprint(env) if _launcher_checks_all(from_env(env)) else "-"


def _launcher_checks_all(settings: Settings) -> bool:
    return (
        settings.method in _LAUNCHER_CHECKED_METHODS
        and settings.custom_method is None
        and settings.profile is None  # resolved from the AWS config files, outside BRS_*
        and not settings.assume_role_kwargs
        and not settings.sts_client_kwargs
    )


def receive(bootstrap: str) -> None:
    """The bootstrap hands over the BRS_BOOTSTRAP value this process started with."""
    global _received
    _received = _fingerprint_of(bootstrap)


def _fingerprint_of(bootstrap: str) -> str | None:
    # "2:X.Y:<fingerprint>:<directory>:<prefix>" (brs_autopatch.launch.main.bootstrap_value)
    parts = bootstrap.split(":", 4)
    return parts[2] if len(parts) == 5 and parts[0] == "2" else None


def by_launcher(settings: Settings, env: Mapping[str, str]) -> bool:
    """Whether brs-run already ran every check the plan would make of ``settings`` from ``env``."""
    launcher = _received
    if launcher is None:
        value = env.get(BOOTSTRAP_ENV)
        launcher = _fingerprint_of(value) if value else None
    return launcher not in (None, "-") and _launcher_checks_all(settings) and launcher == fingerprint(env)
