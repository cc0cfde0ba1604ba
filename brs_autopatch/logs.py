"""The ``brs_autopatch`` logger: stdlib logging, stderr only when BRS_LOG_LEVEL asks.

Without BRS_LOG_LEVEL the logger has no handler of its own: the application's
logging configuration decides, and warnings still reach stderr through logging's
last-resort handler. Nothing here ever writes to stdout. Our lines carry the PID:
gunicorn/uWSGI/Celery workers each refresh on their own and must not look like duplicates.
"""

from __future__ import annotations

import logging

LOGGER_NAME = "brs_autopatch"
_HANDLER_MARK = "_brs_autopatch_handler"
FORMAT = "%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s"


def configure(level: str | None) -> logging.Logger:
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
