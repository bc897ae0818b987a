"""Structured logs: one JSON object per line, request fields included, secrets never."""

from __future__ import annotations

import json
import logging

from node.logs import JSONFormatter
from node.service import _log_fields
from protocol.messages import CreateRequest, Credential


def test_a_record_is_one_line_of_json_with_its_fields() -> None:
    request = CreateRequest(
        request_id=42,
        handle='88.100.1/"quoted"\nline',
        values=(),
        credential=Credential("88.100.1/ADMIN", 300, "s3cret"),
    )
    record = logging.LogRecord(
        "idnode.service", logging.ERROR, __file__, 1, "store failure: %s", ("disk full",), None
    )
    for key, value in _log_fields(request).items():
        setattr(record, key, value)
    line = JSONFormatter().format(record)
    assert "\n" not in line
    event = json.loads(line)
    assert event["msg"] == "store failure: disk full"
    assert event["level"] == "ERROR" and event["logger"] == "idnode.service"
    assert event["request_id"] == 42 and event["op"] == "create_handle"
    assert event["handle"] == '88.100.1/"quoted"\nline'
    assert "s3cret" not in line


def test_exceptions_are_kept_in_the_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    event = json.loads(JSONFormatter().format(record))
    assert "ValueError: boom" in event["exc"]
