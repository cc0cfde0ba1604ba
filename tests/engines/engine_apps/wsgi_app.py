"""A WSGI app for the gunicorn and uWSGI tests: each request answers whoami() as JSON.

``?delay=S`` keeps the worker busy S seconds first, so concurrent requests spread over
the workers. With ENGINE_TEST_CALL_AT_IMPORT=1 the module signs one call when it is
loaded, as apps that build their clients at import do: under gunicorn --preload (and
uWSGI without --lazy-apps) that happens in the master, before the fork.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from brs_probe import whoami

LOADED_IN = os.getpid()
AT_IMPORT = whoami() if os.environ.get("ENGINE_TEST_CALL_AT_IMPORT") == "1" else None


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    delay = float(parse_qs(environ.get("QUERY_STRING", "")).get("delay", ["0"])[0])
    time.sleep(min(delay, 5.0))
    answer = {**whoami(), "loaded_in": LOADED_IN}
    body = json.dumps(answer).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
