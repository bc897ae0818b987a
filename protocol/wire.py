"""The msgpack wire protocol (``protocol/SPEC.md``): message codec, TCP framing, UDP datagrams.

Sans-I/O like h11: ``Connection.receive_data(bytes)`` feeds bytes, ``next_event()`` returns a message
or ``NEED_DATA``, ``send(message)`` returns the bytes to write. Every length is checked against
``WireLimits`` before anything is allocated for it, and any decoding failure surfaces as a
``ProtocolError`` subclass (dnspython wraps its parser the same way), carrying the request id and op
whenever the decoder got far enough to read them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from protocol.codes import MessageFlag, OpCode, ResponseCode
from protocol.errors import LimitExceeded, MalformedMessage, ProtocolError, UnsupportedOperation
from protocol.messages import (
    MAX_PAGE_SIZE,
    REQUEST_TYPES,
    AddValuesRequest,
    CreateRequest,
    CreateResponse,
    Credential,
    DeleteRequest,
    DoneResponse,
    ErrorResponse,
    GetSiteInfoRequest,
    HomePrefixRequest,
    Interface,
    ListHandlesRequest,
    ListHandlesResponse,
    ListHomedPrefixesRequest,
    ListPrefixesResponse,
    Message,
    ModifyValuesRequest,
    ReferralResponse,
    RemoveValuesRequest,
    Request,
    ResolveRequest,
    ResolveResponse,
    Response,
    Server,
    SiteInfo,
    SiteInfoResponse,
    TruncatedResponse,
    UnhomePrefixRequest,
    new_resolve_request,
    new_resolve_response,
)
from protocol.records import (
    MAX_DATA_BYTES,
    MAX_REFERENCES,
    MAX_VALUES,
    HandleValue,
    Reference,
    fast_constructor,
    new_value,
)

PROTOCOL_VERSION: Final = 1  #: the version this module speaks
FRAME_HEADER = struct.Struct(">I")  #: a TCP frame's 4-byte big-endian length
UDP_MAX_ANSWER_BYTES: Final = 1400  #: answers above this go out truncated
# plain ints and a dict: ``mflags & MessageFlag.TRUNCATED`` builds a flag object (1 us), and
# calling an enum or reading a member off its class costs more than the rest of a check
_TRUNCATED: Final = int(MessageFlag.TRUNCATED)
_SUCCESS: Final = int(ResponseCode.SUCCESS)
_REFERRALS: Final = frozenset((302, 303))  #: SERVICE_REFERRAL, PREFIX_REFERRAL
_OP_CODES: dict[int, OpCode] = {int(op): op for op in OpCode}


@dataclass(frozen=True, slots=True)
class WireLimits:
    """Bounds checked before allocation; anything above them is refused with PROTOCOL_ERROR."""

    max_frame_bytes: int = 65536  #: one msgpack message (TCP frame payload or UDP datagram)
    max_str_bytes: int = 65536  #: one string or binary field
    max_array_len: int = 4096  #: one array (values of a record, handles of a page)
    max_map_len: int = 16  #: one map (message bodies have at most 6 keys)

    @property
    def small_bytes(self) -> int:
        """Payloads this long cannot break the string, binary or array limits."""
        return min(self.max_str_bytes, self.max_array_len)

    #: values plus all their references, or servers plus all their interfaces, in one message:
    #: each becomes a Python object, so this bounds decoding time (a record has at most 2048 values)
    max_items: int = 4096


DEFAULT_LIMITS = WireLimits()
#: what a client accepts in answers, which are as long as what they carry (section 1.1): bounded
#: by the record and page limits, not by the request limits above. The frame holds the largest
#: record (2048 values of 256 KiB data each, 512 MiB) with room for its envelope.
ANSWER_LIMITS = WireLimits(
    max_frame_bytes=2**30,
    max_str_bytes=MAX_DATA_BYTES,
    max_array_len=MAX_PAGE_SIZE,
    max_items=MAX_VALUES * (1 + MAX_REFERENCES),
)


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()  #: ``next_event`` has no complete message yet


# ---------------------------------------------------------------------------------------------
# Encoding

_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def _value(v: HandleValue) -> list[Any]:
    refs = [[r.handle, r.index] for r in v.references] if v.references else []
    return [v.index, v.type, v.data, v.ttl_type, v.ttl, v.timestamp, v.permissions, refs]


def _credential_body(m: Request, body: dict[str, Any]) -> dict[str, Any]:
    if m.credential is not None:
        c = m.credential
        body["a"] = [c.index, c.handle, c.secret]
    return body


def _resolve_body(m: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"h": m.handle}
    if m.indexes:
        body["i"] = list(m.indexes)
    if m.types:
        body["t"] = list(m.types)
    return body


def _site(site: SiteInfo) -> list[Any]:
    servers = [
        [s.server_id, s.address, [[i.kind, i.protocol, i.port] for i in s.interfaces]]
        for s in site.servers
    ]
    return [site.serial, site.hash_option, site.primary, site.multi_primary, servers]


_ENCODERS: dict[type[Message], Callable[[Any], dict[str, Any]]] = {
    ResolveRequest: _resolve_body,
    GetSiteInfoRequest: lambda m: {},
    CreateRequest: lambda m: {"h": m.handle, "v": [_value(v) for v in m.values]},
    DeleteRequest: lambda m: {"h": m.handle},
    AddValuesRequest: lambda m: {"h": m.handle, "v": [_value(v) for v in m.values]},
    RemoveValuesRequest: lambda m: {"h": m.handle, "i": list(m.indexes)},
    ModifyValuesRequest: lambda m: {"h": m.handle, "v": [_value(v) for v in m.values]},
    ListHandlesRequest: lambda m: {"p": m.prefix, "pg": m.page, "ps": m.page_size},
    ListHomedPrefixesRequest: lambda m: {},
    HomePrefixRequest: lambda m: {"p": m.prefix},
    UnhomePrefixRequest: lambda m: {"p": m.prefix},
    ResolveResponse: lambda m: {"h": m.handle, "v": [_value(v) for v in m.values]},
    CreateResponse: lambda m: {"h": m.handle, "c": m.created},
    DoneResponse: lambda m: {"c": True} if m.created else {},
    ListHandlesResponse: lambda m: {
        "p": m.prefix,
        "n": m.total,
        "pg": m.page,
        "ps": m.page_size,
        "hs": list(m.handles),
    },
    ListPrefixesResponse: lambda m: {"px": list(m.prefixes)},
    SiteInfoResponse: lambda m: {"s": _site(m.site)},
    ErrorResponse: lambda m: {"m": m.message, "h": m.handle},
    ReferralResponse: lambda m: {
        "h": m.handle,
        "ph": m.prefix_handle,
        "v": [_value(v) for v in m.values],
    },
    TruncatedResponse: lambda m: {},
}


def encode_message(message: Message, message_flags: int = 0) -> bytes:
    """One message as msgpack bytes (without the TCP length prefix)."""
    if (
        type(message) is ResolveRequest
        and not (message.indexes or message.types)
        and message.credential is None
    ):  # the most common message of all, packed without the generic dispatch
        plain: bytes = _packb(
            [
                PROTOCOL_VERSION,
                message.request_id,
                1,
                0,
                message.flags,
                message_flags,
                {"h": message.handle},
            ]
        )
        return plain
    body = _ENCODERS[type(message)](message)
    if isinstance(message, Request):
        code = 0
        if message.credential is not None:
            _credential_body(message, body)
    else:
        code = message.code  # type: ignore[attr-defined]
    # msgpack packs the IntEnum op and code as the plain ints they are, without int() calls
    envelope = [
        PROTOCOL_VERSION,
        message.request_id,
        message.op,
        code,
        message.flags,
        message_flags,
        body,
    ]
    if type(message) is TruncatedResponse:
        envelope[5] = message_flags | MessageFlag.TRUNCATED
    payload: bytes = _packb(envelope)
    return payload


def encode_body(message: Message) -> bytes:
    """The packed body of ``message`` alone, for a cache of answers that differ only in header."""
    body: bytes = _packb(_ENCODERS[type(message)](message))
    return body


def encode_with_body(message: Response, body: bytes) -> bytes:
    """``encode_message(message)`` given its ``encode_body`` bytes: only the header is packed."""
    header: bytes = _packb(
        (PROTOCOL_VERSION, message.request_id, message.op, message.code, message.flags, 0)
    )
    return b"\x97" + header[1:] + body  # a 6-element fixarray header grows to the 7 of a message


#: where the bytes after the request id start, by the byte that begins the request id: the
#: unsigned msgpack forms (positive fixint, uint8, uint16, uint32)
_RID_END = {**{b: 3 for b in range(0x80)}, 0xCC: 4, 0xCD: 5, 0xCE: 7}


def request_id_end(payload: bytes) -> int:
    """The offset of what follows the request id in a message whose head is the usual
    ``[1, rid,`` (version 1, an unsigned request id); 0 for any other.

    Two messages whose bytes agree from there on decode alike but for the request id, so a
    server may answer the second as it answered the first, under the second's request id (what
    DNS servers call a packet cache).
    """
    if len(payload) < 8 or payload[0] != 0x97 or payload[1] != PROTOCOL_VERSION:
        return 0
    return _RID_END.get(payload[2], 0)


def after_request_id(message: Response) -> bytes:
    """What ``encode_with_body(message, body)`` holds between the request id and ``body``."""
    packed: bytes = _packb((message.op, message.code, message.flags, 0))
    return packed[1:]  # the items without their 4-element array header


def frame(payload: bytes) -> bytes:
    """Prefix a payload with its 4-byte big-endian length."""
    return FRAME_HEADER.pack(len(payload)) + payload


def encode_datagram(
    message: Message, max_bytes: int = UDP_MAX_ANSWER_BYTES, body: bytes | None = None
) -> bytes:
    """A UDP payload; an answer over ``max_bytes`` becomes a TRUNCATED stub (retry over TCP).

    ``body``, when given, is the answer's ``encode_body`` (from a cache).
    """
    if body is not None and isinstance(message, Response):
        payload = encode_with_body(message, body)
    else:
        payload = encode_message(message)
    if len(payload) <= max_bytes or not isinstance(message, Response):
        return payload
    stub = TruncatedResponse(
        request_id=message.request_id, flags=message.flags, code=message.code, answers=message.op
    )
    return encode_message(stub)


# ---------------------------------------------------------------------------------------------
# Decoding


_new_reference = fast_constructor(Reference)
_new_interface = fast_constructor(Interface)
_new_server = fast_constructor(Server)


def _bad(what: str) -> MalformedMessage:
    return MalformedMessage(f"field {what} has the wrong type")


def _str(body: dict[str, Any], key: str, default: str | None = None) -> str:
    v = body.get(key, default)
    if type(v) is not str:
        raise _bad(key)
    return v


def _int(body: dict[str, Any], key: str, default: int | None = None) -> int:
    v = body.get(key, default)
    if type(v) is not int:
        raise _bad(key)
    return v


def _bool(body: dict[str, Any], key: str) -> bool:
    v = body.get(key, True)
    if type(v) is not bool:
        raise _bad(key)
    return v


def _tuple(body: dict[str, Any], key: str, item: type, required: bool = False) -> tuple[Any, ...]:
    v = body.get(key, None if required else ())
    if type(v) is not tuple or v and any(type(x) is not item for x in v):
        raise _bad(key)
    return v


def _decode_value(v: Any) -> HandleValue:
    if type(v) is not tuple or len(v) != 8:
        raise MalformedMessage("a value must be an array of 8 fields")
    index, type_, data, ttl_type, ttl, timestamp, permissions, refs = v
    if (
        type(index) is not int
        or type(type_) is not str
        or type(data) is not bytes
        or type(ttl_type) is not int
        or type(ttl) is not int
        or type(timestamp) is not int
        or type(permissions) is not int
        or type(refs) is not tuple
    ):
        raise MalformedMessage(f"value {index!r} has a field of the wrong type")
    references: tuple[Reference, ...] = ()
    if refs:
        references = tuple([_decode_reference(r) for r in refs])
    value: HandleValue = new_value(
        index, type_, data, ttl, ttl_type, timestamp, permissions, references
    )
    return value


def _decode_reference(r: Any) -> Reference:
    if type(r) is not tuple or len(r) != 2 or type(r[0]) is not str or type(r[1]) is not int:
        raise MalformedMessage("a reference must be an array [handle, index]")
    reference: Reference = _new_reference(r[0], r[1])
    return reference


def _values(body: dict[str, Any]) -> tuple[HandleValue, ...]:
    v = body.get("v")
    if type(v) is not tuple:
        raise _bad("v")
    return tuple([_decode_value(x) for x in v])


def _decode_site(s: Any) -> SiteInfo:
    try:
        serial, hash_option, primary, multi, servers = s
        parsed = []
        for server_id, address, interfaces in servers:
            ifaces = tuple([_new_interface(int(k), int(p), int(port)) for k, p, port in interfaces])
            if type(server_id) is not int or type(address) is not str:
                raise TypeError
            parsed.append(_new_server(server_id, address, ifaces))
        if type(serial) is not int or type(hash_option) is not int:
            raise TypeError
        return SiteInfo(serial, hash_option, tuple(parsed), bool(primary), bool(multi))
    except (TypeError, ValueError, OverflowError) as exc:  # int() of inf is an OverflowError
        raise MalformedMessage("site info has the wrong shape") from exc


def _count_items(body: dict[str, Any]) -> int:
    """Values and references, or servers and interfaces, that decoding ``body`` would build."""
    count = 0
    values = body.get("v")
    if type(values) is tuple:
        count = len(values)
        for v in values:
            if type(v) is tuple and len(v) == 8 and type(v[7]) is tuple:
                count += len(v[7])
    site = body.get("s")
    if type(site) is tuple and len(site) == 5 and type(site[4]) is tuple:
        count += len(site[4])
        for server in site[4]:
            if type(server) is tuple and len(server) == 3 and type(server[2]) is tuple:
                count += len(server[2])
    return count


def _credential(body: dict[str, Any]) -> Credential:
    a = body.get("a")  # present: nil is not an absent credential but one of the wrong type
    if (
        type(a) is not tuple
        or len(a) != 3
        or type(a[0]) is not int
        or type(a[1]) is not str
        or type(a[2]) is not str
    ):
        raise MalformedMessage("credential must be an array [index, handle, secret]")
    return Credential(a[1], a[0], a[2])


def _resolve_request(b: dict[str, Any], rid: int, f: int, c: Credential | None) -> Request:
    # the hot path, so the checks of _str and _tuple are inlined
    handle, indexes, types = b.get("h"), b.get("i", ()), b.get("t", ())
    if type(handle) is not str:
        raise _bad("h")
    if type(indexes) is not tuple or indexes and any(type(x) is not int for x in indexes):
        raise _bad("i")
    if type(types) is not tuple or types and any(type(x) is not str for x in types):
        raise _bad("t")
    request: ResolveRequest = new_resolve_request(rid, f, c, handle, indexes, types)
    return request


_RequestDecoder = Callable[[dict[str, Any], int, int, Credential | None], Request]

_REQUEST_DECODERS: dict[int, _RequestDecoder] = {
    OpCode.RESOLUTION: _resolve_request,
    OpCode.GET_SITEINFO: lambda b, rid, f, c: GetSiteInfoRequest(
        request_id=rid, flags=f, credential=c
    ),
    OpCode.CREATE_HANDLE: lambda b, rid, f, c: CreateRequest(
        request_id=rid, flags=f, credential=c, handle=_str(b, "h"), values=_values(b)
    ),
    OpCode.DELETE_HANDLE: lambda b, rid, f, c: DeleteRequest(
        request_id=rid, flags=f, credential=c, handle=_str(b, "h")
    ),
    OpCode.ADD_VALUE: lambda b, rid, f, c: AddValuesRequest(
        request_id=rid, flags=f, credential=c, handle=_str(b, "h"), values=_values(b)
    ),
    OpCode.REMOVE_VALUE: lambda b, rid, f, c: RemoveValuesRequest(
        request_id=rid,
        flags=f,
        credential=c,
        handle=_str(b, "h"),
        indexes=_tuple(b, "i", int, True),
    ),
    OpCode.MODIFY_VALUE: lambda b, rid, f, c: ModifyValuesRequest(
        request_id=rid, flags=f, credential=c, handle=_str(b, "h"), values=_values(b)
    ),
    OpCode.LIST_HANDLES: lambda b, rid, f, c: ListHandlesRequest(
        request_id=rid,
        flags=f,
        credential=c,
        prefix=_str(b, "p"),
        page=_int(b, "pg", 0),
        page_size=_int(b, "ps", 100),
    ),
    OpCode.LIST_HOMED_NAS: lambda b, rid, f, c: ListHomedPrefixesRequest(
        request_id=rid, flags=f, credential=c
    ),
    OpCode.HOME_NA: lambda b, rid, f, c: HomePrefixRequest(
        request_id=rid, flags=f, credential=c, prefix=_str(b, "p")
    ),
    OpCode.UNHOME_NA: lambda b, rid, f, c: UnhomePrefixRequest(
        request_id=rid, flags=f, credential=c, prefix=_str(b, "p")
    ),
}
assert set(_REQUEST_DECODERS) == set(REQUEST_TYPES)

_ResponseDecoder = Callable[[dict[str, Any], int, int, int], Response]

_SUCCESS_DECODERS: dict[int, _ResponseDecoder] = {
    OpCode.RESOLUTION: lambda b, rid, f, rc: new_resolve_response(
        request_id=rid, flags=f, code=_SUCCESS, handle=_str(b, "h"), values=_values(b)
    ),
    OpCode.CREATE_HANDLE: lambda b, rid, f, rc: CreateResponse(
        request_id=rid, flags=f, code=_SUCCESS, handle=_str(b, "h"), created=_bool(b, "c")
    ),
    OpCode.LIST_HANDLES: lambda b, rid, f, rc: ListHandlesResponse(
        request_id=rid,
        flags=f,
        code=_SUCCESS,
        prefix=_str(b, "p"),
        total=_int(b, "n"),
        page=_int(b, "pg"),
        page_size=_int(b, "ps"),
        handles=_tuple(b, "hs", str, True),
    ),
    OpCode.LIST_HOMED_NAS: lambda b, rid, f, rc: ListPrefixesResponse(
        request_id=rid, flags=f, code=_SUCCESS, prefixes=_tuple(b, "px", str, True)
    ),
    OpCode.GET_SITEINFO: lambda b, rid, f, rc: SiteInfoResponse(
        request_id=rid, flags=f, code=_SUCCESS, site=_decode_site(b.get("s"))
    ),
}
_DONE_OPS = frozenset(REQUEST_TYPES) - frozenset(_SUCCESS_DECODERS)


def _unpack_error(exc: Exception) -> MalformedMessage:
    """The error to raise for what ``msgpack.unpackb`` raised."""
    if isinstance(exc, msgpack.exceptions.StackError):
        return LimitExceeded("message nesting is too deep")
    if isinstance(exc, msgpack.exceptions.ExtraData):
        return MalformedMessage("bytes after the end of the message")
    if isinstance(exc, ValueError) and "exceeds max" in str(exc):  # msgpack's size limits
        return LimitExceeded(f"a field is over its limit: {exc}")
    if isinstance(exc, ValueError):  # also UnicodeDecodeError, FormatError
        return MalformedMessage(f"not a valid msgpack message: {exc}")
    # msgpack raises TypeError and others on hostile input
    return MalformedMessage(f"not a valid msgpack message: {type(exc).__name__}")


def decode_message(payload: bytes, limits: WireLimits = DEFAULT_LIMITS) -> Message:
    """Decode one msgpack message (a TCP frame's payload or a UDP datagram)."""
    if len(payload) > limits.max_frame_bytes:
        raise LimitExceeded(
            f"message of {len(payload)} bytes is over the limit of {limits.max_frame_bytes}"
        )
    try:  # inline rather than in a helper: this call is a fifth of decoding a small request
        if len(payload) <= limits.small_bytes:
            # no string, binary or array can be longer than the payload, which is within their
            # limits: msgpack's own defaults (the payload's length) bound them; fewer arguments
            # make the common small message cheaper to decode
            envelope = msgpack.unpackb(
                payload, use_list=False, max_map_len=limits.max_map_len, max_ext_len=0
            )
        else:
            envelope = msgpack.unpackb(
                payload,
                use_list=False,
                max_str_len=limits.max_str_bytes,
                max_bin_len=limits.max_str_bytes,
                max_array_len=limits.max_array_len,
                max_map_len=limits.max_map_len,
                max_ext_len=0,
            )
    except Exception as exc:
        raise _unpack_error(exc) from exc
    if type(envelope) is not tuple or len(envelope) != 7:
        raise MalformedMessage("a message must be an array of 7 fields")
    version, rid, op, rc, flags, mflags, body = envelope
    if type(rid) is not int or not 0 <= rid <= 0xFFFFFFFF:
        raise MalformedMessage("request id must be an unsigned 32-bit integer")
    try:
        if type(version) is not int or version != PROTOCOL_VERSION:
            raise MalformedMessage(f"unsupported protocol version {version!r}")
        if type(op) is not int or type(rc) is not int or rc < 0:
            raise MalformedMessage("op code and response code must be integers")
        if type(flags) is not int or not 0 <= flags <= 0xFFFFFFFF:
            raise MalformedMessage("op flags must be an unsigned 32-bit integer")
        if type(mflags) is not int or type(body) is not dict:
            raise MalformedMessage("message flags must be an integer and the body a map")
        for key in body:  # msgpack refuses keys but str and bin: a bin one is refused here
            if type(key) is not str:
                raise MalformedMessage("map keys must be strings")
        # a value, reference, server or interface that can be built takes 3 bytes or more, so a
        # message of at most 3 * max_items bytes cannot build too many: no need to count
        too_many = None  # the error for a message that would build too many items
        if len(payload) > 3 * limits.max_items and _count_items(body) > limits.max_items:
            too_many = LimitExceeded(f"message holds over {limits.max_items} values and references")
        if rc == 0:
            decoder = _REQUEST_DECODERS.get(op)
            if decoder is None:
                raise UnsupportedOperation(f"unknown op code {op}")
            if too_many:
                raise too_many
            return decoder(body, rid, flags, None if "a" not in body else _credential(body))
        answers = _OP_CODES.get(op) or OpCode(op)
        if mflags & _TRUNCATED:
            return TruncatedResponse(request_id=rid, flags=flags, code=rc, answers=answers)
        if rc != _SUCCESS:
            if rc in _REFERRALS and "ph" in body:  # a referral without service info is an error
                if too_many:
                    raise too_many
                return ReferralResponse(
                    request_id=rid,
                    flags=flags,
                    code=ResponseCode(rc),
                    answers=answers,
                    handle=_str(body, "h", ""),
                    prefix_handle=_str(body, "ph"),
                    values=_values(body),
                )
            return ErrorResponse(
                request_id=rid,
                flags=flags,
                code=ResponseCode(rc),
                answers=answers,
                message=_str(body, "m", ""),
                handle=_str(body, "h", ""),
            )
        response_decoder = _SUCCESS_DECODERS.get(op)
        if response_decoder is not None:
            if too_many:
                raise too_many
            return response_decoder(body, rid, flags, rc)
        if op in _DONE_OPS:
            created = _bool(body, "c") if "c" in body else False
            return DoneResponse(
                request_id=rid, flags=flags, code=_SUCCESS, answers=answers, created=created
            )
        raise UnsupportedOperation(f"unknown op code {op}")
    except ProtocolError as exc:
        exc.request_id = rid
        exc.op = op if type(op) is int else 0
        raise


class Connection:
    """One TCP stream of length-prefixed msgpack messages, either side, with no I/O of its own."""

    def __init__(self, limits: WireLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        # unread bytes are ``_data[_at:]``: a chunk that holds whole frames (the common case) is
        # read in place; only a partial frame is copied, into a bytearray that later chunks extend
        # (amortised linear however small the pieces come)
        self._data: bytes | bytearray = b""
        self._at = 0
        self.closed = False  #: the peer sent EOF

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` means the peer closed its side."""
        if not data:
            self.closed = True
        buffered = self._data
        if self._at >= len(buffered):
            self._data = bytes(data)
        elif type(buffered) is bytearray:
            del buffered[: self._at]
            buffered += data
        else:
            self._data = bytearray(memoryview(buffered)[self._at :])
            self._data += data
        self._at = 0

    def buffered(self) -> int:
        """Bytes received and not yet taken by ``next_payload`` (a partial frame, or frames not
        asked for yet)."""
        return len(self._data) - self._at

    def next_event(self) -> Message | _NeedData:
        """The next complete message, or ``NEED_DATA``; raises ``ProtocolError`` for a bad one.

        A bad message inside a well-formed frame leaves the stream usable (``fatal`` False); a frame
        length over the limit cannot be skipped safely, so that error is ``fatal``.
        """
        payload = self.next_payload()
        if type(payload) is not bytes:
            return NEED_DATA
        return decode_message(payload, self.limits)

    def next_payload(self) -> bytes | _NeedData:
        """The next complete frame's payload, undecoded, or ``NEED_DATA``; raises as
        ``next_event`` does for a frame over the limit or an empty one."""
        data, at = self._data, self._at
        if len(data) - at < 4:
            return NEED_DATA
        (length,) = FRAME_HEADER.unpack_from(data, at)
        if length > self.limits.max_frame_bytes:
            error = LimitExceeded(
                f"frame of {length} bytes is over the limit of {self.limits.max_frame_bytes}"
            )
            error.fatal = True
            raise error
        end = at + 4 + length
        if len(data) < end:
            return NEED_DATA
        self._at = end
        if not length:
            raise MalformedMessage("empty frame")
        payload = data[at + 4 : end]
        return payload if type(payload) is bytes else bytes(payload)

    def send(self, message: Message) -> bytes:
        """The framed bytes to write for ``message``."""
        return frame(encode_message(message))
