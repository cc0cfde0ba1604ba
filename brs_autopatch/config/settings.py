""":class:`Settings`: everything the ``BRS_*`` variables say, validated and immutable.

The value object only: its fields and defaults, equality, hashing, pickling, a repr
without secrets, and the key that tells which credentials two settings produce. Reading
the environment into one is :mod:`brs_autopatch.config.from_env`'s; checks that need
botocore are :mod:`brs_autopatch.plan`'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

# Settings field -> the variable it is read from (BRS_ + the field's name, but for these).
VARIABLE_OF: dict[str, str] = {"role_arns": "BRS_ROLE_ARN"}


# Fields that do not change which credentials the settings produce.
_NOT_IN_KEY = frozenset(
    {"enabled", "log_level", "on_error", "propagate", "adopt_own_keys", "serve", "origin"}
)


class Settings:
    """Everything the ``BRS_*`` variables say, validated. Build with :func:`from_env`.

    Immutable; ``settings.replace(field=value)`` makes a changed copy. A plain class with
    ``__slots__``, not a frozen dataclass: this module loads in botocore's import hook of
    every process under brs-run, where generating a 27-field dataclass cost about 4 ms.
    The keyword arguments of ``__init__`` are the fields (:data:`FIELDS`).
    """

    #: The field names, in order (set below, from ``__init__``'s keywords).
    FIELDS: ClassVar[tuple[str, ...]]

    __slots__ = (
        "adopt_own_keys",
        "advisory_refresh_seconds",
        "assume_role_kwargs",
        "cache_dir",
        "custom_method",
        "defer_refresh",
        "duration_seconds",
        "enabled",
        "external_id",
        "log_level",
        "mandatory_refresh_seconds",
        "method",
        "mfa_serial",
        "mfa_timeout_seconds",
        "mfa_token_command",
        "on_error",
        "origin",
        "profile",
        "propagate",
        "role_arns",
        "role_session_name",
        "serve",
        "served_role_arns",
        "source_profile",
        "sts_client_kwargs",
        "sts_endpoint_url",
        "sts_region",
        "web_identity_token_file",
    )

    role_arns: tuple[str, ...]
    role_session_name: str | None
    duration_seconds: int | None
    defer_refresh: bool
    external_id: str | None
    assume_role_kwargs: Mapping[str, Any]
    sts_region: str | None
    sts_endpoint_url: str | None
    sts_client_kwargs: Mapping[str, Any]
    enabled: bool
    log_level: str | None
    on_error: str
    propagate: bool
    advisory_refresh_seconds: int | None
    mandatory_refresh_seconds: int | None
    cache_dir: str | None
    mfa_serial: str | None
    mfa_token_command: tuple[str, ...]  # may hold a TOTP seed
    mfa_timeout_seconds: int
    method: str
    web_identity_token_file: str | None
    custom_method: str | None
    # An AWS config profile to take the role from (resolved when botocore is loaded).
    profile: str | None
    # The profile whose credentials call STS (a profile's source_profile).
    source_profile: str | None
    adopt_own_keys: bool
    serve: bool  # brs-run --serve (brs_autopatch.serve.start); no effect on the credentials
    # Inside a brs-run --serve tree: the role chain its server assumes (BRS_SERVED_ROLE_ARN,
    # set by brs-run). Another role asked for there is chained from it (brs_autopatch.config.nested).
    served_role_arns: tuple[str, ...]
    # Field -> what the user wrote for it, when that was not a BRS_* variable (a Python
    # argument: "assume_role_kwargs", "role_arns"...). Error messages use name_of().
    origin: Mapping[str, str]

    def __init__(
        self,
        *,
        role_arns: tuple[str, ...] = (),
        role_session_name: str | None = None,
        duration_seconds: int | None = None,
        defer_refresh: bool = True,
        external_id: str | None = None,
        assume_role_kwargs: Mapping[str, Any] | None = None,
        sts_region: str | None = None,
        sts_endpoint_url: str | None = None,
        sts_client_kwargs: Mapping[str, Any] | None = None,
        enabled: bool = True,
        log_level: str | None = None,
        on_error: str = "raise",
        propagate: bool = True,
        advisory_refresh_seconds: int | None = None,
        mandatory_refresh_seconds: int | None = None,
        cache_dir: str | None = None,
        mfa_serial: str | None = None,
        mfa_token_command: tuple[str, ...] = (),
        mfa_timeout_seconds: int = 30,
        method: str = "sts",
        web_identity_token_file: str | None = None,
        custom_method: str | None = None,
        profile: str | None = None,
        source_profile: str | None = None,
        adopt_own_keys: bool = True,
        serve: bool = False,
        served_role_arns: tuple[str, ...] = (),
        origin: Mapping[str, str] | None = None,
    ) -> None:
        values = dict(locals())
        del values["self"]
        # The mappings default to a new empty dict each, as a dataclass default_factory would.
        for name in ("assume_role_kwargs", "sts_client_kwargs", "origin"):
            if values[name] is None:
                values[name] = {}
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Settings are immutable: use settings.replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Settings are immutable")

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (field=value) applied; TypeError for an unknown field."""
        return Settings(**{**self.as_dict(), **changes})

    __replace__ = replace  # copy.replace(settings, ...) on Python 3.13+

    def as_dict(self) -> dict[str, Any]:
        """Field -> value, every field."""
        return {name: getattr(self, name) for name in FIELDS}

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _COMPARED)

    def __hash__(self) -> int:
        return hash(self.key())  # equal settings have equal keys

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in FIELDS if name not in _HIDDEN)
        return f"Settings({shown})"

    def __reduce__(self) -> tuple[Any, ...]:
        # __setattr__ refuses, so pickle and copy rebuild through __init__.
        return (_rebuild, (self.as_dict(),))

    def name_of(self, field_name: str) -> str:
        """The name to show in an error about ``field_name``: the argument, else the variable."""
        return self.origin.get(field_name) or VARIABLE_OF.get(field_name, "BRS_" + field_name.upper())

    @property
    def role_arn(self) -> str | None:
        """The role whose credentials the program gets (the last hop of a chain)."""
        return self.role_arns[-1] if self.role_arns else None

    @property
    def active(self) -> bool:
        """Whether patching should happen at all."""
        return self.enabled and bool(self.role_arns or self.profile or self.method != "sts")

    def key(self) -> str:
        """A stable string identifying the credentials these settings produce.

        Patched sessions share one credentials object per key; the file cache
        derives its file names from it (hashed, so no secret reaches a file name).
        """
        chosen = {name: getattr(self, name) for name in FIELDS if name not in _NOT_IN_KEY}
        return json.dumps(chosen, sort_keys=True, default=_jsonable)

    def redacted(self) -> dict[str, str]:
        """The non-default settings as printable strings; secrets never shown."""
        shown: dict[str, str] = {}
        for name in FIELDS:
            if name == "origin":
                continue
            value = getattr(self, name)
            default = _DEFAULTS[name]
            if value == default or (default is None and isinstance(value, Mapping) and not value):
                continue
            if name in ("external_id", "mfa_token_command"):
                shown[name] = "(set, hidden)"
            elif isinstance(value, Mapping):
                # Values may hold policies or keys: list the keys only.
                shown[name] = "keys: " + ", ".join(sorted(value))
            elif isinstance(value, tuple):
                shown[name] = ",".join(value)
            else:
                shown[name] = str(value)
        return shown


# The fields, in order, and their defaults: the keyword arguments of Settings.__init__.
_DEFAULTS: dict[str, Any] = dict(Settings.__init__.__kwdefaults__ or {})
FIELDS: tuple[str, ...] = tuple(_DEFAULTS)
# Public: users read the fields from the class (``Settings.FIELDS``), whatever module holds it.
Settings.FIELDS = FIELDS
# Not in the repr: secrets, or values that may hold them (policies, keys).
_HIDDEN = frozenset({"external_id", "assume_role_kwargs", "sts_client_kwargs", "mfa_token_command", "origin"})
# Equality ignores where a value came from.
_COMPARED = tuple(name for name in FIELDS if name != "origin")


def _rebuild(values: dict[str, Any]) -> Settings:
    return Settings(**values)


def _jsonable(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else str(value)
