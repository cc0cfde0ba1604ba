"""Checks that need botocore: AssumeRole parameters against the STS service model,
STS client keywords against ``botocore.session.Session.create_client``.

No hand-kept list of keys: a new AssumeRole parameter in botocore's model is
accepted the day botocore ships it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from functools import cache
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.model import OperationModel
from botocore.validate import ParamValidator

from .errors import ConfigError

# Parameter values that must never be echoed in an error message.
_SECRET_KEYS = frozenset(
    {
        "ExternalId",
        "TokenCode",
        "WebIdentityToken",
        "SAMLAssertion",
        "aws_secret_access_key",
        "aws_session_token",
        "Policy",
    }
)


@cache
def _operation(name: str) -> OperationModel:
    return botocore.session.Session().get_service_model("sts").operation_model(name)


def validate_sts_params(params: Mapping[str, Any], origin: str, operation: str = "AssumeRole") -> None:
    """Raise ConfigError naming the first bad key of ``params`` for ``operation``."""
    shape = _operation(operation).input_shape
    assert shape is not None
    report = ParamValidator().validate(dict(params), shape)
    if not report.has_errors():
        return
    # botocore's report prints parameter values; build our own line without them.
    # (`_errors` is the report's list of (kind, name, details); there is no public accessor.)
    kind, name, details = report._errors[0]
    name = (name or "").lstrip(".") or "input"
    if kind == "unknown field":
        accepted = "one of " + ", ".join(details["valid_names"])
        raise ConfigError(f"{origin} has unknown key {details['unknown_param']!r}: expected {accepted}")
    if kind == "missing required field":
        raise ConfigError(f"{origin} is missing required key {details['required_name']!r}")
    if kind == "invalid type":
        shown = "" if name.split(".")[0] in _SECRET_KEYS else f"={details['param']!r}"
        types = ", ".join(details["valid_types"])
        raise ConfigError(f"{origin} key {name}{shown} has the wrong type: expected {types}")
    if kind in ("invalid range", "invalid length"):
        what = "value" if kind == "invalid range" else "length"
        raise ConfigError(
            f"{origin} key {name} is too small: expected a {what} of at least {details['min_allowed']}"
        )
    raise ConfigError(f"{origin} key {name} is not valid: {kind}")


def sts_client_kwargs(raw: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """Check keywords for ``create_client('sts', ...)``; a JSON ``config`` becomes a Config."""
    accepted = [
        name
        for name in inspect.signature(botocore.session.Session.create_client).parameters
        if name not in ("self", "service_name")
    ]
    kwargs = dict(raw)
    for key in kwargs:
        if key not in accepted:
            raise ConfigError(f"{origin} has unknown key {key!r}: expected one of {', '.join(accepted)}")
    config = kwargs.get("config")
    if isinstance(config, Mapping):
        try:
            kwargs["config"] = Config(**config)
        except TypeError as error:
            raise ConfigError(f"{origin} key 'config' is not valid: {error}") from None
    elif config is not None and not isinstance(config, Config):
        raise ConfigError(
            f"{origin} key 'config' has the wrong type: expected an object or a botocore Config"
        )
    for key in ("region_name", "endpoint_url", "aws_access_key_id", "api_version"):
        if kwargs.get(key) is not None and not isinstance(kwargs[key], str):
            raise ConfigError(f"{origin} key {key!r} has the wrong type: expected a string")
    return kwargs
