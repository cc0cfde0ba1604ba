"""Inside a ``brs-run --serve`` tree: the role a process asks for, against the role served.

``brs-run --serve`` gives its tree ``BRS_METHOD=served`` and ``BRS_SERVED_ROLE_ARN``: the
role chain its server assumes (taken from ``BRS_PROFILE`` when a profile named it). A
process of that tree may ask for a role of its own (``brs-run --role-arn``, a changed
``BRS_ROLE_ARN``, a nested ``--serve`` or ``--credential-process``). Handing it the served
role would be a silent identity swap, so:

* the served role asked again (the same chain, or a chain ending in the served role) is
  the served role: its credentials come from the server, nothing is assumed again;
* a chain that starts with the whole served chain asks for the roles after it;
* any other role is assumed **on top of the served role** (role chaining: its first
  AssumeRole is signed with the served credentials), and AWS caps a chained session at
  one hour: a ``DurationSeconds`` above 3600 is refused before anything starts.

This module is pure (no botocore): the launcher, the plan and the profile resolution use
it. It is not the served method (:mod:`brs_autopatch.methods.served`), nor the server.
"""

from __future__ import annotations

from collections.abc import Mapping

from .settings import Settings
from .variables import MAX_CHAINED_DURATION, bad

SERVED_ROLE_ENV = "BRS_SERVED_ROLE_ARN"
# What the served tree's processes do not inherit from the launcher that started the
# server: they describe how the server gets the served role, not what a child asks for.
# BRS_ROLE_ARN and BRS_PROFILE become BRS_SERVED_ROLE_ARN (the profile resolved by the
# launcher: the AWS files the tree sees are copies without the profile's source), so
# that in the tree they mean only what a process asks for itself: an inherited
# BRS_ROLE_ARN would win over a child's own BRS_PROFILE and hand it the served role.
# BRS_DURATION_SECONDS is the served role's lifetime, which a role chained from it
# could not have (1 h at most).
NOT_INHERITED = ("BRS_ROLE_ARN", "BRS_PROFILE", "BRS_DURATION_SECONDS")


def chained_roles(settings: Settings) -> tuple[str, ...]:
    """The roles to assume on top of the served credentials; () when the served role is asked.

    Outside a served tree (any method but ``served``) nothing is chained. Where the
    served identity is not a role brs-run could name (a plugin's or custom method's own
    credentials) or not known (``BRS_METHOD=served`` set by hand), every role asked for
    is chained: it cannot be told from the served identity, and a role that turns out
    to be the same fails at STS rather than being handed out unchecked.
    """
    asked, served = settings.role_arns, settings.served_role_arns
    if settings.method != "served" or not asked:
        return ()
    if not served:
        return asked
    if asked[-1] == served[-1]:
        return ()  # the served identity: not another role
    if asked[: len(served)] == served:
        return asked[len(served) :]
    return asked


def check_chained(settings: Settings, chained: tuple[str, ...]) -> None:
    """ConfigError if the chained roles cannot be had: a lifetime beyond the chaining cap."""
    duration = settings.duration_seconds
    if chained and duration is not None and duration > MAX_CHAINED_DURATION:
        raise bad(
            settings.name_of("duration_seconds"),
            str(duration),
            f"at most {MAX_CHAINED_DURATION} for {chained[-1]} inside a brs-run --serve tree: "
            "it is chained from the served role (AWS caps chained sessions at 1 h)",
        )


def serves(settings: Settings) -> bool:
    """Whether these settings get the served credentials as they are (nothing assumed here)."""
    return settings.method == "served" and not chained_roles(settings)


def tree_environment(env: Mapping[str, str], resolved: Settings) -> dict[str, str]:
    """The served tree's environment: ``env`` (what :mod:`brs_autopatch.serve.start` made)
    saying which role is served, without the settings only the server's start needed.

    ``resolved``: the settings the server assumes with, ``BRS_PROFILE`` resolved.
    """
    child = {name: value for name, value in env.items() if name not in NOT_INHERITED}
    if resolved.role_arns:
        child[SERVED_ROLE_ENV] = ",".join(resolved.role_arns)
    return child
