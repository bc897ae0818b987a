"""Structured logs: one JSON object per line and per event, on stderr.

Every record carries time (UTC, ISO-8601), level, logger and message; fields passed with
``extra=`` (``request_id``, ``op``, ``transport``, ...) are added as keys, so a log line can be
matched to the request it is about. Secrets never reach a log call: credentials are logged, if at
all, as their ``index:handle`` identity (``Credential.__repr__`` hides the secret).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

#: attributes every LogRecord has; anything else on a record came from ``extra=``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JSONFormatter(logging.Formatter):
    """Formats a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                event[key] = value if isinstance(value, int | float | str | bool) else repr(value)
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False)


def setup(level: str) -> None:
    """Send every log record to stderr as JSON, at ``level`` and above."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
