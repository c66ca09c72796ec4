"""One JSON object per log line, for log collectors (Loki, CloudWatch, Stackdriver) to parse.

BentoML configures its own text formatter in every server process; this swaps the formatter of
the handlers it installed, keeping its filters (which add the request and trace ids).
"""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter

FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
RENAMES = {"asctime": "time", "levelname": "level", "name": "logger"}
LOGGERS = ("", "bentoml", "uvicorn", "uvicorn.error", "uvicorn.access", "circus")


def json_formatter() -> logging.Formatter:
    """The formatter used for every line: time, level, logger, message, plus any extras."""
    return JsonFormatter(FIELDS, rename_fields=RENAMES, timestamp=False)


def use_json_logs() -> None:
    """Make the handlers of the root, BentoML and uvicorn loggers write JSON lines."""
    formatter = json_formatter()
    seen: set[int] = set()
    for name in LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if id(handler) not in seen:
                seen.add(id(handler))
                handler.setFormatter(formatter)
