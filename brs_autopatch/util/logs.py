"""The ``brs_autopatch`` logger: stdlib logging, stderr only when BRS_LOG_LEVEL asks.

Without BRS_LOG_LEVEL the logger has no handler of its own: the application's
logging configuration decides, and warnings still reach stderr through logging's
last-resort handler. Nothing here ever writes to stdout. Either way the logger carries
:class:`brs_autopatch.util.redact.ScrubFilter`: no record of ours shows a known secret. Our
lines carry the PID: gunicorn/uWSGI/Celery workers each refresh on their own and must
not look like duplicates.
"""

from __future__ import annotations

import logging

from . import redact

LOGGER_NAME = "brs_autopatch"
_HANDLER_MARK = "_brs_autopatch_handler"
FORMAT = "%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s"


def configure(level: str | None) -> logging.Logger:
    # Masks secrets in every record that passes the level, with or without BRS_LOG_LEVEL
    # (redact installs it at import already; this keeps it explicit and idempotent).
    redact.install_log_filter(LOGGER_NAME)
    logger = logging.getLogger(LOGGER_NAME)
    if level is None:
        return logger
    logger.setLevel(level)
    if not any(getattr(h, _HANDLER_MARK, False) for h in logger.handlers):
        handler = logging.StreamHandler()  # stderr
        handler.setFormatter(logging.Formatter(FORMAT))
        setattr(handler, _HANDLER_MARK, True)
        logger.addHandler(handler)
    return logger
