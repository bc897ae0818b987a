"""The one error root of ``protocol/`` and the response code each error answers with.

Like h11's ``error_status_hint`` and h2's ``error_code``: whoever raises knows what the peer
should be told, so the node maps any ``ProtocolError`` to an answer in one place
(``error.code``, ``error.message``) without a per-transport table. Decoders never let another
exception type escape.
"""

from __future__ import annotations

from protocol.codes import ResponseCode


class ProtocolError(Exception):
    """Root of every error the protocol layer raises; ``code`` is the response code to answer."""

    code: ResponseCode = ResponseCode.PROTOCOL_ERROR

    #: the request id and op of the message that failed, when the decoder got that far
    request_id: int = 0
    op: int = 0
    #: True when the byte stream cannot be resynchronised (a bad frame length): close after answering
    fatal: bool = False

    def __init__(self, message: str, *, code: ResponseCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class MalformedMessage(ProtocolError):
    """Bytes that are not a well-formed message: truncated, not msgpack, wrong field types."""

    code = ResponseCode.PROTOCOL_ERROR


class LimitExceeded(MalformedMessage):
    """A frame, string, array or nesting depth above its configured limit."""


class UnsupportedOperation(ProtocolError):
    """An op code this node does not implement."""

    code = ResponseCode.OPERATION_NOT_SUPPORTED


class InvalidHandle(ProtocolError):
    """An identifier that breaks the grammar or a length limit."""

    code = ResponseCode.INVALID_HANDLE


class InvalidValue(ProtocolError):
    """A handle value or record that breaks a rule (index, type, size, count, format)."""

    code = ResponseCode.INVALID_VALUE
