"""botocore ``Config`` values: checked option by option before a Config is made.

botocore's ``Config(**values)`` accepts any value and finds most mistakes only when a
client is created or a request is sent (``retries: "x"`` is an AttributeError inside
botocore at the first refresh). The table below says what each option accepts, from
``Config``'s docstring and the checks botocore runs at client creation; botocore's own
lists of choices are used where the installed version has them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import botocore.args
from botocore import UNSIGNED
from botocore.config import Config

from ..errors import ConfigError
from .variables import endpoint_url_problem

# Values never echoed: proxy URLs may carry a user and password.
_SECRET_OPTIONS = frozenset({"proxies", "proxies_config"})

Check = Callable[[Any], str | None]  # value -> None if fine, else the accepted form


def _is(kind: type | tuple[type, ...], form: str) -> Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _tuple(kind))
        return None if ok else form

    return check


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _integer(low: int, high: int | None = None) -> Check:
    form = f"an integer from {low} to {high}" if high is not None else f"an integer of at least {low}"

    def check(value: Any) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
        return None if ok and (high is None or value <= high) else form

    return check


def _seconds(value: Any) -> str | None:
    # urllib3 refuses a zero or negative timeout, and JSON can spell Infinity and NaN.
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return None if ok and value > 0 else "a number of seconds greater than 0"


def _one_of(options: Any) -> Check:
    choices = tuple(options)
    form = "one of " + ", ".join(map(str, choices))
    return lambda value: None if isinstance(value, str) and value.lower() in choices else form


def _text_or_pair(value: Any) -> str | None:
    if isinstance(value, str) or (
        isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, str) for v in value)
    ):
        return None
    return "a path, or a list of two paths (certificate, key)"


def _proxy_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    # botocore adds http:// to a proxy given as host:port.
    return endpoint_url_problem(value if "://" in value else "http://" + value) is None


def _proxies(value: Any) -> str | None:
    form = 'an object of protocol or host -> proxy URL, such as {"https": "http://proxy:3128"}'
    if not isinstance(value, Mapping):
        return form
    ok = all(isinstance(key, str) and _proxy_url(url) for key, url in value.items())
    return None if ok else form


_PROXIES_CONFIG: dict[str, Check] = {
    "proxy_ca_bundle": _is(str, "a path"),
    "proxy_client_cert": _text_or_pair,
    "proxy_use_forwarding_for_https": _is(bool, "true or false"),
}
_RETRIES: dict[str, Check] = {
    "mode": _one_of(("legacy", "standard", "adaptive")),
    "max_attempts": _integer(0),
    "total_max_attempts": _integer(1),
}


def _keyed(table: dict[str, Check], example: str) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, Mapping):
            return f"an object such as {example}"
        for key, item in value.items():
            if key not in table:
                return f"an object with keys among {', '.join(table)}"
            problem = table[key](item)
            if problem is not None:
                return f"{key!r} to be {problem}"
        return None

    return check


def _s3(value: Any) -> str | None:
    # Many keys (botocore adds some); the two with a closed set of values are checked.
    if not isinstance(value, Mapping):
        return 'an object such as {"addressing_style": "path"}'
    for key, options in (("addressing_style", ("auto", "virtual", "path")),
                         ("us_east_1_regional_endpoint", ("regional", "legacy"))):
        if key in value and value[key] not in options:
            return f"{key!r} to be one of {', '.join(options)}"
    return None


_WHEN = ("when_supported", "when_required")


def _botocore_choices(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(getattr(botocore.args, f"VALID_{name}_CONFIG", default))


_TEXT = _is(str, "a string")
_BOOL = _is(bool, "true or false")
_OBJECT = _is(Mapping, "an object")

# What botocore's Config accepts, option by option (its docstring's ":type" lines and
# the checks botocore runs when it creates a client). Options botocore adds later and
# this table does not know yet are left to botocore.
CONFIG_CHECKS: dict[str, Check] = {
    "region_name": _TEXT,
    "signature_version": lambda value: None if value is UNSIGNED or isinstance(value, str) else "a string",
    "user_agent": _TEXT,
    "user_agent_extra": _TEXT,
    "user_agent_appid": _TEXT,
    "connect_timeout": _seconds,
    "read_timeout": _seconds,
    "parameter_validation": _BOOL,
    "max_pool_connections": _integer(1),
    "proxies": _proxies,
    "proxies_config": _keyed(_PROXIES_CONFIG, '{"proxy_ca_bundle": "/path/ca.pem"}'),
    "s3": _s3,
    "s3_disable_express_session_auth": _BOOL,
    "retries": _keyed(_RETRIES, '{"mode": "standard", "max_attempts": 3}'),
    "client_cert": _text_or_pair,
    "inject_host_prefix": _BOOL,
    "endpoint_discovery_enabled": lambda value: None
    if isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false", "auto"))
    else "true, false or \"auto\"",
    "use_dualstack_endpoint": _BOOL,
    "use_fips_endpoint": _BOOL,
    "ignore_configured_endpoint_urls": _BOOL,
    "defaults_mode": _TEXT,
    "tcp_keepalive": _BOOL,
    "request_min_compression_size_bytes": _integer(1, 1048576),
    "disable_request_compression": _BOOL,
    "client_context_params": _OBJECT,
    "sigv4a_signing_region_set": _TEXT,
    # botocore's own lists where it has them (older versions lack some: same values).
    "request_checksum_calculation": _one_of(_botocore_choices("REQUEST_CHECKSUM_CALCULATION", _WHEN)),
    "response_checksum_validation": _one_of(_botocore_choices("RESPONSE_CHECKSUM_VALIDATION", _WHEN)),
    "account_id_endpoint_mode": _one_of(
        _botocore_choices("ACCOUNT_ID_ENDPOINT_MODE", ("preferred", "disabled", "required"))
    ),
    "auth_scheme_preference": _TEXT,
}
# Options where botocore wants a tuple and JSON can only give a list.
_PAIRS = ("client_cert",)


def check_config_values(values: Mapping[str, Any], origin: str) -> None:
    """ConfigError for the first option whose value botocore's Config would choke on."""
    for name, value in values.items():
        if name not in Config.OPTION_DEFAULTS:
            options = ", ".join(Config.OPTION_DEFAULTS)
            raise ConfigError(f"{origin} has unknown option {name!r}: expected one of {options}")
        check = CONFIG_CHECKS.get(name)
        problem = None if value is None or check is None else check(value)
        if problem is not None:
            shown = "" if name in _SECRET_OPTIONS else "=" + _short(value)
            raise ConfigError(f"{origin} option {name!r}{shown} is not valid: expected {problem}")


def make_config(values: Mapping[str, Any], origin: str) -> Config:
    """A botocore Config from JSON values, after checking every one of them."""
    check_config_values(values, origin)
    options = dict(values)
    for name in _PAIRS:
        if isinstance(options.get(name), list):
            options[name] = tuple(options[name])
    proxies = options.get("proxies_config")
    if isinstance(proxies, Mapping) and isinstance(proxies.get("proxy_client_cert"), list):
        options["proxies_config"] = {**proxies, "proxy_client_cert": tuple(proxies["proxy_client_cert"])}
    try:
        return Config(**options)
    except Exception as error:  # botocore's own checks (s3 addressing style...): one line
        text = " ".join(str(error).split())
        raise ConfigError(f"{origin} is not valid: expected what botocore accepts ({text})") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."
