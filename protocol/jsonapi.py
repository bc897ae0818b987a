"""JSON shapes of the Handle.net REST API (``/api/handles``): values, records, answers, errors.

Follows the CNRI HANDLE.NET JSON servlet as collected in ``shared/reference/handle-system.md``:
``data`` is ``{"format", "value"}`` (a bare string on input means format string), timestamps are
ISO-8601 UTC, ``permissions`` appears only when not the default 1110, ``ttl`` defaults to 86400.
A body of the wrong shape is PROTOCOL_ERROR (4), as the reference server answers; a value that has
the right shape but breaks a rule is INVALID_VALUE (202). A referral (302, 303) names the prefix
record under ``"referral"`` and carries its HS_SITE values, shown as ``"format": "site"``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from protocol.codes import DEFAULT_PERMISSIONS, OpCode, ResponseCode
from protocol.errors import InvalidValue, MalformedMessage, ProtocolError
from protocol.identifiers import parse_handle
from protocol.messages import (
    CreateResponse,
    ErrorResponse,
    ListHandlesResponse,
    ReferralResponse,
    ResolveResponse,
    Response,
)
from protocol.records import (
    DEFAULT_TTL_S,
    FORMATS,
    REGISTRY,
    TTL_ABSOLUTE,
    TTL_RELATIVE,
    HandleValue,
    Reference,
    new_value,
)

MIN_TIMESTAMP = -62135596800  #: 0001-01-01T00:00:00Z, the first second a timestamp can show
MAX_TIMESTAMP = 253402300799  #: 9999-12-31T23:59:59Z, the last
_REFERRALS = (ResponseCode.SERVICE_REFERRAL, ResponseCode.PREFIX_REFERRAL)


@lru_cache(maxsize=4096)  # values written together share timestamps: format each once
def iso_timestamp(seconds: int) -> str:
    """``2026-11-28T10:00:00Z`` for seconds since the epoch (always a 4-digit year)."""
    shown = datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
    return shown.isoformat(timespec="seconds") + "Z"


def parse_timestamp(text: Any) -> int:
    """Seconds since the epoch from an ISO-8601 string (or an integer, passed through)."""
    if type(text) is int:
        seconds = text
    elif isinstance(text, str):
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise MalformedMessage(f"timestamp {text[:40]!r} is not ISO-8601") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = int(parsed.timestamp())
    else:
        raise MalformedMessage("timestamp must be an ISO-8601 string")
    if not MIN_TIMESTAMP <= seconds <= MAX_TIMESTAMP:
        raise MalformedMessage("timestamp is outside years 1 to 9999")
    return seconds


def value_to_json(value: HandleValue) -> dict[str, Any]:
    """One value in the REST shape."""
    out: dict[str, Any] = {
        "index": value.index,
        "type": value.type,
        "data": REGISTRY.data_to_json(value.type, value.data),
    }
    if value.permissions != DEFAULT_PERMISSIONS:
        out["permissions"] = format(value.permissions, "04b")
    if value.ttl_type == TTL_ABSOLUTE:
        out["ttlType"] = TTL_ABSOLUTE
    out["ttl"] = value.ttl
    out["timestamp"] = iso_timestamp(value.timestamp)
    if value.references:
        out["references"] = [{"handle": r.handle, "index": r.index} for r in value.references]
    return out


def _int_field(obj: dict[str, Any], key: str, default: int | None = None) -> int:
    v = obj.get(key, default)
    if type(v) is not int:
        raise MalformedMessage(f"value field {key!r} must be an integer")
    return v


def value_from_json(obj: Any) -> HandleValue:
    """Parse one value; the timestamp is kept if given (the node overwrites it on writes)."""
    if not isinstance(obj, dict):
        raise MalformedMessage("a value must be a JSON object")
    index = _int_field(obj, "index")
    type_ = obj.get("type")
    if not isinstance(type_, str):
        raise MalformedMessage("value field 'type' must be a string")
    data = obj.get("data", "")
    if isinstance(data, str):
        raw = FORMATS["string"].from_json(data)
    elif isinstance(data, dict):
        fmt = data.get("format", "string")
        codec = FORMATS.get(fmt) if isinstance(fmt, str) else None
        if codec is None:
            raise InvalidValue(f"value {index} has unsupported data format {fmt!r}")
        raw = codec.from_json(data.get("value"))
    else:
        raise MalformedMessage(f"value {index} data must be an object or a string")
    permissions = DEFAULT_PERMISSIONS
    if "permissions" in obj:
        bits = obj["permissions"]
        if not isinstance(bits, str) or len(bits) != 4 or set(bits) - {"0", "1"}:
            raise InvalidValue(f"value {index} permissions must be 4 bits such as 1110")
        permissions = int(bits, 2)
    ttl_type = _int_field(obj, "ttlType", TTL_RELATIVE)
    ttl = _int_field(obj, "ttl", DEFAULT_TTL_S)
    timestamp = parse_timestamp(obj["timestamp"]) if "timestamp" in obj else 0
    refs = obj.get("references", [])
    if not isinstance(refs, list):
        raise MalformedMessage("references must be a list")
    references = []
    for ref in refs:
        if not isinstance(ref, dict):
            raise MalformedMessage("a reference must be an object")
        handle = ref.get("handle")
        if not isinstance(handle, str):
            raise MalformedMessage("a reference needs a string handle")
        references.append(Reference(handle, _int_field(ref, "index")))
    # every field given, in order: the fast constructor builds the same value as ``HandleValue``
    value: HandleValue = new_value(
        index, type_, raw, ttl, ttl_type, timestamp, permissions, tuple(references)
    )
    return value


def _same_handle(a: str, b: str, case_sensitive_suffix: bool) -> bool:
    """Whether ``a`` and ``b`` name one handle, as a node with that case rule compares them
    (``hdl:`` wrappers off, ASCII case folded only)."""
    try:
        keys = [parse_handle(h).key(case_sensitive_suffix=case_sensitive_suffix) for h in (a, b)]
    except ProtocolError:
        return a == b
    return keys[0] == keys[1]


def values_from_body(
    body: Any, handle: str, *, case_sensitive_suffix: bool = False
) -> tuple[HandleValue, ...]:
    """The values of a PUT body: ``{"values": [...]}``, a bare array, or one value object.

    A body that names a different handle (by the node's case rule) is refused, as the
    reference server does.
    """
    if isinstance(body, dict) and "values" in body:
        named = body.get("handle")
        if named is not None and (
            not isinstance(named, str) or not _same_handle(named, handle, case_sensitive_suffix)
        ):
            raise MalformedMessage(f"the body names handle {named!r}, not {handle!r}")
        items = body["values"]
    elif isinstance(body, dict):
        items = [body]
    else:
        items = body
    if not isinstance(items, list):
        raise MalformedMessage("values must be a JSON array")
    return tuple(value_from_json(item) for item in items)


def response_to_json(response: Response) -> dict[str, Any]:
    """A response in the REST shape (``responseCode`` first, as the reference server writes)."""
    if isinstance(response, ResolveResponse):
        return {
            "responseCode": int(response.code),
            "handle": response.handle,
            "values": [value_to_json(v) for v in response.values],
        }
    if isinstance(response, CreateResponse):
        return {"responseCode": int(response.code), "handle": response.handle}
    if isinstance(response, ListHandlesResponse):
        return {
            "responseCode": int(response.code),
            "prefix": response.prefix,
            "totalCount": str(response.total),
            "page": response.page,
            "pageSize": response.page_size,
            "handles": list(response.handles),
        }
    if isinstance(response, ReferralResponse):
        out: dict[str, Any] = {"responseCode": int(response.code)}
        if response.handle:
            out["handle"] = response.handle
        out["referral"] = response.prefix_handle
        out["values"] = [value_to_json(v) for v in response.values]
        return out
    if isinstance(response, ErrorResponse):
        out = {"responseCode": int(response.code)}
        if response.handle:
            out["handle"] = response.handle
        if response.code == ResponseCode.VALUES_NOT_FOUND and response.op == OpCode.RESOLUTION:
            out["values"] = []
        if response.message:
            out["message"] = response.message
        return out
    return {"responseCode": int(response.code)}


def response_from_json(obj: Any, op: OpCode) -> Response:
    """Parse a REST answer to ``op`` (what a client SDK does with the body)."""
    if not isinstance(obj, dict) or type(obj.get("responseCode")) is not int:
        raise MalformedMessage("an answer must be an object with an integer responseCode")
    code = obj["responseCode"]
    handle = obj.get("handle", "")
    if not isinstance(handle, str):
        raise MalformedMessage("handle must be a string")
    referral, values = obj.get("referral"), obj.get("values")
    if code in _REFERRALS and isinstance(referral, str) and isinstance(values, list):
        return ReferralResponse(
            code=ResponseCode(code),
            answers=op,
            handle=handle,
            prefix_handle=referral,
            values=tuple(value_from_json(v) for v in values),
        )
    if code != ResponseCode.SUCCESS:
        message = obj.get("message", "")
        return ErrorResponse(
            code=ResponseCode(code),
            answers=op,
            handle=handle,
            message=message if isinstance(message, str) else "",
        )
    if op == OpCode.RESOLUTION:
        if not isinstance(values, list):
            raise MalformedMessage("values must be a list")
        return ResolveResponse(handle=handle, values=tuple(value_from_json(v) for v in values))
    if op == OpCode.CREATE_HANDLE:
        return CreateResponse(handle=handle)
    if op == OpCode.LIST_HANDLES:
        try:
            return ListHandlesResponse(
                prefix=str(obj["prefix"]),
                total=int(obj["totalCount"]),
                page=int(obj["page"]),
                page_size=int(obj["pageSize"]),
                handles=tuple(str(h) for h in obj["handles"]),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise MalformedMessage("a list answer needs prefix, totalCount, page, handles") from exc
    raise MalformedMessage(f"no JSON answer shape for op {int(op)}")
