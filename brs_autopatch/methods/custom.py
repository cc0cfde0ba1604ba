"""The built-in ``custom`` method: ``BRS_CUSTOM_METHOD=package.module:callable``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .base import Fetch, MethodContext, check_answer, import_callable


def custom_method(context: MethodContext) -> Fetch:
    """``custom``: ``BRS_CUSTOM_METHOD=package.module:callable`` returns the credentials.

    The callable takes no argument and returns either botocore's metadata keys
    (``access_key``, ``secret_key``, ``token``, ``expiry_time``) or the STS
    ``Credentials`` shape (``AccessKeyId``, ``SecretAccessKey``, ``SessionToken``,
    ``Expiration``). Clients it creates sign with the source credentials.
    """
    path = context.settings.custom_method
    if path is None:
        raise ConfigError("BRS_CUSTOM_METHOD is not set: expected package.module:callable")
    target = import_callable(path, "BRS_CUSTOM_METHOD")

    def fetch() -> Mapping[str, Any]:
        return check_answer(path, target())

    return fetch


