"""Checks that need botocore: AssumeRole parameters against the STS service model,
STS client keywords against ``Session.create_client`` (their ``config`` values:
:mod:`brs_autopatch.config.client_config`).

No hand-kept list of AssumeRole or client keys: a new parameter in botocore's model
or signature is accepted the day botocore ships it. Only :mod:`brs_autopatch.plan`
calls this module.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.model import OperationModel
from botocore.validate import ParamValidator

from ..errors import ConfigError
from .client_config import check_config_values, make_config
from .variables import ENDPOINT_URL_FORM, endpoint_url_problem

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

# Python types in botocore's reports -> words a user of JSON understands.
_TYPE_NAMES = {
    "str": "a string",
    "list": "a list",
    "tuple": "a list",
    "dict": "an object",
    "bool": "true or false",
    "int": "an integer",
    "float": "a number",
    "Decimal": "a number",
    "datetime": "a timestamp",
    "bytes": "bytes",
    "bytearray": "bytes",
}


def type_names(types: Any) -> str:
    """``[<class 'list'>, <class 'tuple'>]`` -> ``"a list"``; ``str`` -> ``"a string"``."""
    words: list[str] = []
    for kind in types if isinstance(types, (list, tuple)) else [types]:
        # botocore's report holds str(type): "<class 'list'>".
        text = getattr(kind, "__name__", str(kind))
        name = re.sub(r"^<class '(?:[\w.]+\.)?(\w+)'>$", r"\1", text)
        word = _TYPE_NAMES.get(name, name)
        if word not in words:
            words.append(word)
    return " or ".join(words)


def _shown(key: str, value: Any) -> str:
    if re.split(r"[.\[]", key, maxsplit=1)[0] in _SECRET_KEYS:
        return ""
    text = repr(value)
    return "=" + (text if len(text) <= 80 else text[:80] + "...")


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
        raise ConfigError(
            f"{origin} key {name}{_shown(name, details['param'])} has the wrong type: "
            f"expected {type_names(details['valid_types'])}"
        )
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
    for key in ("region_name", "endpoint_url", "aws_access_key_id", "aws_secret_access_key",
                "aws_session_token", "api_version"):
        if kwargs.get(key) is not None and not isinstance(kwargs[key], str):
            raise ConfigError(f"{origin} key {key!r}{_shown(key, kwargs[key])} has the wrong type: "
                              "expected a string")
    if kwargs.get("use_ssl") is not None and not isinstance(kwargs["use_ssl"], bool):
        raise ConfigError(
            f"{origin} key 'use_ssl'={kwargs['use_ssl']!r} has the wrong type: expected true or false"
        )
    if kwargs.get("verify") is not None and not isinstance(kwargs["verify"], (bool, str)):
        raise ConfigError(f"{origin} key 'verify'={kwargs['verify']!r} has the wrong type: "
                          "expected true, false or the path of a CA bundle")
    url = kwargs.get("endpoint_url")
    problem = None if url is None else endpoint_url_problem(url)
    if problem is not None:
        raise ConfigError(f"{origin} key 'endpoint_url'={url!r} is not valid: expected {ENDPOINT_URL_FORM} "
                          f"({problem})")
    config = kwargs.get("config")
    if isinstance(config, Mapping):
        kwargs["config"] = make_config(config, f"{origin} key 'config'")
    elif isinstance(config, Config):
        # Python callers pass a Config: its values deserve the same checks.
        check_config_values({name: getattr(config, name) for name in Config.OPTION_DEFAULTS},
                            f"{origin} key 'config'")
    elif config is not None:
        raise ConfigError(
            f"{origin} key 'config' has the wrong type: expected an object or a botocore Config"
        )
    return kwargs
