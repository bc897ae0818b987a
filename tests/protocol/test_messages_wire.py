"""Messages and the msgpack wire codec: golden vectors, round trips, TCP framing, UDP truncation."""

from __future__ import annotations

import inspect
import struct
from dataclasses import replace
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import messages as messages_module
from protocol.codes import AdminPermission, MessageFlag, OpCode, OpFlag, ResponseCode
from protocol.errors import (
    LimitExceeded,
    MalformedMessage,
    ProtocolError,
    UnsupportedOperation,
)
from protocol.messages import (
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
)
from protocol.records import (
    TTL_ABSOLUTE,
    TTL_RELATIVE,
    AdminValue,
    HandleValue,
    Reference,
)
from protocol.site import decode_site, site_value
from protocol.wire import (
    DEFAULT_LIMITS,
    NEED_DATA,
    PROTOCOL_VERSION,
    UDP_MAX_ANSWER_BYTES,
    Connection,
    WireLimits,
    after_request_id,
    decode_message,
    encode_body,
    encode_datagram,
    encode_message,
    encode_with_body,
    frame,
    request_id_end,
)

SETTINGS = settings(max_examples=200, deadline=None)

HANDLE = "88.118.8/A1"
PREFIX = "88.118.8"
T0 = 1795860000  # 2026-11-28T10:00:00Z

ADMIN_DATA = AdminValue("0.NA/88.118.8", 300, AdminPermission(0x7F3)).to_bytes()
URL_VALUE = HandleValue(1, "URL", b"https://example.com/a1", timestamp=T0)
ADMIN_VALUE = HandleValue(100, "HS_ADMIN", ADMIN_DATA, timestamp=T0, permissions=0xC)
REF_VALUE = HandleValue(
    2,
    "EMAIL",
    b"ops@example.com",
    ttl=1798452000,
    ttl_type=TTL_ABSOLUTE,
    timestamp=T0,
    permissions=0xF,
    references=(Reference("88.118.8/B2", 1), Reference("0.NA/88.118.8", 200)),
)
BINARY_VALUE = HandleValue(3, "HS_SECKEY", b"\x00\xff\x10", ttl=60, timestamp=T0 + 1)
CREDENTIAL = Credential("88.118.8/ADMIN", 300, "s3cret")
REFERRAL_SITE = SiteInfo(
    serial=2, hash_option=0, servers=(Server(1, "192.0.2.7", (Interface(3, 1, 2641),)),)
)


# ---------------------------------------------------------------------------------------------
# Golden vectors: one message of every kind, its exact bytes pasted as hex.


def golden_messages() -> dict[str, Message]:
    return {
        "resolve_request": ResolveRequest(
            request_id=1,
            flags=OpFlag.PUBLIC_ONLY | OpFlag.AUTHORITATIVE,
            handle=HANDLE,
            indexes=(1, 2),
            types=("URL", "EMAIL"),
        ),
        "get_siteinfo_request": GetSiteInfoRequest(request_id=2),
        "create_request_with_credential": CreateRequest(
            request_id=3,
            flags=OpFlag.OVERWRITE,
            credential=CREDENTIAL,
            handle=HANDLE,
            values=(URL_VALUE, ADMIN_VALUE),
        ),
        "delete_request": DeleteRequest(request_id=4, handle=HANDLE),
        "add_values_request": AddValuesRequest(request_id=5, handle=HANDLE, values=(REF_VALUE,)),
        "remove_values_request": RemoveValuesRequest(request_id=6, handle=HANDLE, indexes=(2, 3)),
        "modify_values_request": ModifyValuesRequest(
            request_id=7, handle=HANDLE, values=(BINARY_VALUE,)
        ),
        "list_handles_request": ListHandlesRequest(
            request_id=8, prefix=PREFIX, page=2, page_size=50
        ),
        "list_homed_prefixes_request": ListHomedPrefixesRequest(request_id=9),
        "home_prefix_request": HomePrefixRequest(request_id=10, prefix=PREFIX),
        "unhome_prefix_request": UnhomePrefixRequest(request_id=11, prefix=PREFIX),
        "resolve_response": ResolveResponse(
            request_id=1,
            flags=OpFlag.AUTHORITATIVE,
            handle=HANDLE,
            values=(URL_VALUE, REF_VALUE),
        ),
        "create_response": CreateResponse(request_id=3, handle=HANDLE, created=False),
        "done_response": DoneResponse(request_id=4, answers=OpCode.DELETE_HANDLE),
        "list_handles_response": ListHandlesResponse(
            request_id=8,
            prefix=PREFIX,
            total=1234,
            page=2,
            page_size=50,
            handles=("88.118.8/a", "88.118.8/b"),
        ),
        "list_prefixes_response": ListPrefixesResponse(
            request_id=9, prefixes=("88.118.8", "88.118.9")
        ),
        "site_info_response": SiteInfoResponse(
            request_id=2,
            site=SiteInfo(
                serial=7,
                hash_option=1,
                servers=(
                    Server(0, "192.0.2.1", (Interface(3, 1, 2641), Interface(2, 0, 2641))),
                    Server(1, "node.example", (Interface(3, 3, 443),)),
                ),
                primary=True,
                multi_primary=False,
            ),
        ),
        "error_response": ErrorResponse(
            request_id=12,
            code=ResponseCode.HANDLE_NOT_FOUND,
            answers=OpCode.RESOLUTION,
            message="Handle Not Found",
            handle="88.118.8/NOPE",
        ),
        "referral_response": ReferralResponse(
            request_id=14,
            code=ResponseCode.PREFIX_REFERRAL,
            answers=OpCode.RESOLUTION,
            handle="88.100.5/X",
            prefix_handle="0.NA/88.100",
            values=(site_value(REFERRAL_SITE),),
        ),
    }


GOLDEN_HEX = {
    "resolve_request": (
        "9701010100ce810000000083a168ab38382e3131382e382f4131a169920102a17492a355524ca5454d41494c"
    ),
    "get_siteinfo_request": "9701020200000080",
    "create_request_with_credential": (
        "9701036400ce004000000083a168ab38382e3131382e382f4131a176929801a355524cc416687474"
        "70733a2f2f6578616d706c652e636f6d2f613100ce00015180ce6b0aa6200e909864a848535f4144"
        "4d494ec41707f30000000d302e4e412f38382e3131382e380000012c00ce00015180ce6b0aa6200c"
        "90a16193cd012cae38382e3131382e382f41444d494ea6733363726574"
    ),
    "delete_request": "9701046500000081a168ab38382e3131382e382f4131",
    "add_values_request": (
        "9701056600000082a168ab38382e3131382e382f4131a176919802a5454d41494cc40f6f70734065"
        "78616d706c652e636f6d01ce6b323320ce6b0aa6200f9292ab38382e3131382e382f42320192ad30"
        "2e4e412f38382e3131382e38ccc8"
    ),
    "remove_values_request": "9701066700000082a168ab38382e3131382e382f4131a169920203",
    "modify_values_request": (
        "9701076800000082a168ab38382e3131382e382f4131a176919803a948535f5345434b4559c40300"
        "ff10003cce6b0aa6210e90"
    ),
    "list_handles_request": "9701086900000083a170a838382e3131382e38a2706702a2707332",
    "list_homed_prefixes_request": "970109cd012e00000080",
    "home_prefix_request": "97010acd012c00000081a170a838382e3131382e38",
    "unhome_prefix_request": "97010bcd012d00000081a170a838382e3131382e38",
    "resolve_response": (
        "9701010101ce800000000082a168ab38382e3131382e382f4131a176929801a355524cc416687474"
        "70733a2f2f6578616d706c652e636f6d2f613100ce00015180ce6b0aa6200e909802a5454d41494c"
        "c40f6f7073406578616d706c652e636f6d01ce6b323320ce6b0aa6200f9292ab38382e3131382e38"
        "2f42320192ad302e4e412f38382e3131382e38ccc8"
    ),
    "create_response": "9701036401000082a168ab38382e3131382e382f4131a163c2",
    "done_response": "9701046501000080",
    "list_handles_response": (
        "9701086901000085a170a838382e3131382e38a16ecd04d2a2706702a2707332a2687392aa38382e"
        "3131382e382f61aa38382e3131382e382f62"
    ),
    "list_prefixes_response": "970109cd012e01000081a2707892a838382e3131382e38a838382e3131382e39",
    "site_info_response": (
        "9701020201000081a173950701c3c2929300a93139322e302e322e3192930301cd0a51930200cd0a"
        "519301ac6e6f64652e6578616d706c6591930303cd01bb"
    ),
    "error_response": (
        "97010c0164000082a16db048616e646c65204e6f7420466f756e64a168ad38382e3131382e382f4e4f5045"
    ),
    "referral_response": (
        "97010e01cd012f000083a168aa38382e3130302e352f58a27068ab302e4e412f38382e313030a17691"
        "9801a748535f53495445c4360001020b0002800000000000000000000000000100000001000000000000"
        "000000000000c00002070000000000000001030100000a5100ce00015180000e90"
    ),
}


def big_resolve_response() -> ResolveResponse:
    """An answer well over the 1400-byte UDP limit."""
    return ResolveResponse(
        request_id=13,
        flags=OpFlag.AUTHORITATIVE,
        handle=HANDLE,
        values=tuple(HandleValue(i, "URL", b"x" * 100, timestamp=T0) for i in range(1, 21)),
    )


TRUNCATED_DATAGRAM_HEX = "97010d0101ce80000000cd200080"


def concrete_message_classes() -> set[type[Message]]:
    """Every message class protocol/messages.py defines, bases excluded."""
    return {
        cls
        for _, cls in inspect.getmembers(messages_module, inspect.isclass)
        if issubclass(cls, Message)
        and cls not in (Message, Request, Response)
        and cls.__module__ == messages_module.__name__
    }


def test_golden_vectors_cover_every_message_class() -> None:
    covered = {type(m) for m in golden_messages().values()} | {TruncatedResponse}
    assert covered == concrete_message_classes()
    assert set(GOLDEN_HEX) == set(golden_messages())


@pytest.mark.parametrize("name", sorted(golden_messages()))
def test_golden_vector_encodes_exactly(name: str) -> None:
    message = golden_messages()[name]
    assert encode_message(message).hex() == GOLDEN_HEX[name]


@pytest.mark.parametrize("name", sorted(golden_messages()))
def test_golden_vector_decodes_to_the_message(name: str) -> None:
    decoded = decode_message(bytes.fromhex(GOLDEN_HEX[name]))
    assert type(decoded) is type(golden_messages()[name])
    assert decoded == golden_messages()[name]


def test_golden_vector_envelope_layout() -> None:
    """Spot-check the envelope the hex encodes: [version, rid, op, code, flags, mflags, body]."""
    envelope = msgpack.unpackb(bytes.fromhex(GOLDEN_HEX["create_request_with_credential"]))
    assert envelope[:6] == [PROTOCOL_VERSION, 3, 100, 0, 0x00400000, 0]
    body = envelope[6]
    assert body["h"] == HANDLE
    assert body["a"] == [300, "88.118.8/ADMIN", "s3cret"]
    assert body["v"][1] == [100, "HS_ADMIN", ADMIN_DATA, 0, 86400, T0, 0xC, []]
    assert ADMIN_DATA == bytes.fromhex("07f30000000d") + b"0.NA/88.118.8" + bytes.fromhex(
        "0000012c"
    )
    error = msgpack.unpackb(bytes.fromhex(GOLDEN_HEX["error_response"]))
    assert error == [1, 12, 1, 100, 0, 0, {"m": "Handle Not Found", "h": "88.118.8/NOPE"}]
    referral = msgpack.unpackb(bytes.fromhex(GOLDEN_HEX["referral_response"]))
    assert referral[:6] == [1, 14, 1, 303, 0, 0]
    assert list(referral[6]) == ["h", "ph", "v"]
    assert referral[6]["ph"] == "0.NA/88.100"
    [[index, type_, data, *rest]] = referral[6]["v"]
    assert (index, type_, rest) == (1, "HS_SITE", [0, 86400, 0, 0xE, []])
    assert decode_site(data) == REFERRAL_SITE


def test_golden_credential_survives_and_hides_its_secret() -> None:
    decoded = decode_message(bytes.fromhex(GOLDEN_HEX["create_request_with_credential"]))
    assert isinstance(decoded, CreateRequest)
    assert decoded.credential == CREDENTIAL
    assert decoded.credential is not None and decoded.credential.secret == "s3cret"
    assert "s3cret" not in repr(decoded.credential)
    assert repr(decoded.credential) == "Credential(300:88.118.8/ADMIN)"


def test_golden_truncated_datagram() -> None:
    big = big_resolve_response()
    assert len(encode_message(big)) > UDP_MAX_ANSWER_BYTES
    datagram = encode_datagram(big)
    assert datagram.hex() == TRUNCATED_DATAGRAM_HEX
    envelope = msgpack.unpackb(datagram)
    assert envelope[5] == int(MessageFlag.TRUNCATED) == 0x2000
    decoded = decode_message(bytes.fromhex(TRUNCATED_DATAGRAM_HEX))
    assert decoded == TruncatedResponse(
        request_id=13, flags=OpFlag.AUTHORITATIVE, code=1, answers=OpCode.RESOLUTION
    )
    assert decoded.op == OpCode.RESOLUTION


# ---------------------------------------------------------------------------------------------
# Message classes


def test_request_types_map_every_request_op() -> None:
    assert REQUEST_TYPES == {
        1: ResolveRequest,
        2: GetSiteInfoRequest,
        100: CreateRequest,
        101: DeleteRequest,
        102: AddValuesRequest,
        103: RemoveValuesRequest,
        104: ModifyValuesRequest,
        105: ListHandlesRequest,
        302: ListHomedPrefixesRequest,
        300: HomePrefixRequest,
        301: UnhomePrefixRequest,
    }
    for op, cls in REQUEST_TYPES.items():
        assert cls.op == op


def test_flag_properties_read_the_op_flags() -> None:
    resolve = ResolveRequest(handle=HANDLE, flags=OpFlag.PUBLIC_ONLY | OpFlag.RECURSIVE)
    assert (resolve.public_only, resolve.authoritative, resolve.recursive) == (True, False, True)
    plain = ResolveRequest(handle=HANDLE)
    assert (plain.public_only, plain.authoritative, plain.recursive) == (False, False, False)
    create = CreateRequest(handle=HANDLE, values=(), flags=OpFlag.MINT_SUFFIX)
    assert (create.overwrite, create.mint_suffix) == (False, True)
    add = AddValuesRequest(handle=HANDLE, values=(), flags=OpFlag.OVERWRITE)
    assert add.overwrite is True
    assert add.has(OpFlag.OVERWRITE) and not add.has(OpFlag.MINT_SUFFIX)


def test_responses_that_answer_another_op_report_it() -> None:
    assert DoneResponse(answers=OpCode.ADD_VALUE).op == OpCode.ADD_VALUE
    assert ErrorResponse(code=100, answers=OpCode.DELETE_HANDLE).op == OpCode.DELETE_HANDLE
    assert TruncatedResponse(answers=OpCode.LIST_HANDLES).op == OpCode.LIST_HANDLES
    referral = ReferralResponse(
        code=302, answers=OpCode.ADD_VALUE, prefix_handle="0.NA/88.100", values=()
    )
    assert (referral.op, referral.handle) == (OpCode.ADD_VALUE, "")
    assert ResolveResponse(handle=HANDLE, values=()).code == ResponseCode.SUCCESS
    assert ListHandlesRequest(prefix=PREFIX).page_size == 100


# ---------------------------------------------------------------------------------------------
# Hypothesis strategies for every message

TEXT = st.text(st.characters(codec="utf-8"), max_size=24)
INT32 = st.integers(-(2**31), 2**31 - 1)
UINT32 = st.integers(0, 2**32 - 1)
WIRE_INT = st.integers(-(2**63), 2**64 - 1)  # what msgpack carries

references = st.builds(Reference, TEXT, INT32)
handle_values = st.builds(
    HandleValue,
    index=st.one_of(INT32, WIRE_INT),
    type=TEXT,
    data=st.binary(max_size=80),
    ttl=st.one_of(UINT32, WIRE_INT),
    ttl_type=st.one_of(st.sampled_from([TTL_RELATIVE, TTL_ABSOLUTE]), st.integers(0, 255)),
    timestamp=st.one_of(UINT32, WIRE_INT),
    permissions=st.integers(0, 15),
    references=st.lists(references, max_size=3).map(tuple),
)
value_tuples = st.lists(handle_values, max_size=4).map(tuple)
credentials = st.builds(Credential, TEXT, INT32, TEXT)
ops = WIRE_INT.map(OpCode)
DONE_OPS = [
    OpCode.DELETE_HANDLE,
    OpCode.ADD_VALUE,
    OpCode.REMOVE_VALUE,
    OpCode.MODIFY_VALUE,
    OpCode.HOME_NA,
    OpCode.UNHOME_NA,
]


def request(cls: type[Request], **fields: Any) -> st.SearchStrategy[Message]:
    return st.builds(
        cls,
        request_id=UINT32,
        flags=UINT32,
        credential=st.none() | credentials,
        **fields,
    )


def success(cls: type[Response], **fields: Any) -> st.SearchStrategy[Message]:
    return st.builds(cls, request_id=UINT32, flags=UINT32, code=st.just(1), **fields)


interfaces = st.builds(Interface, st.integers(0, 3), st.integers(0, 3), st.integers(0, 65535))
servers = st.builds(Server, UINT32, TEXT, st.lists(interfaces, max_size=3).map(tuple))
sites = st.builds(
    SiteInfo,
    serial=WIRE_INT,
    hash_option=st.integers(0, 2),
    servers=st.lists(servers, max_size=3).map(tuple),
    primary=st.booleans(),
    multi_primary=st.booleans(),
)
error_codes = st.one_of(
    st.sampled_from([int(c) for c in ResponseCode if c > 1]), st.integers(2, 2**64 - 1)
)

STRATEGIES: dict[type[Message], st.SearchStrategy[Message]] = {
    ResolveRequest: request(
        ResolveRequest,
        handle=TEXT,
        indexes=st.lists(INT32, max_size=4).map(tuple),
        types=st.lists(TEXT, max_size=4).map(tuple),
    ),
    GetSiteInfoRequest: request(GetSiteInfoRequest),
    CreateRequest: request(CreateRequest, handle=TEXT, values=value_tuples),
    DeleteRequest: request(DeleteRequest, handle=TEXT),
    AddValuesRequest: request(AddValuesRequest, handle=TEXT, values=value_tuples),
    RemoveValuesRequest: request(
        RemoveValuesRequest, handle=TEXT, indexes=st.lists(INT32, max_size=4).map(tuple)
    ),
    ModifyValuesRequest: request(ModifyValuesRequest, handle=TEXT, values=value_tuples),
    ListHandlesRequest: request(ListHandlesRequest, prefix=TEXT, page=WIRE_INT, page_size=WIRE_INT),
    ListHomedPrefixesRequest: request(ListHomedPrefixesRequest),
    HomePrefixRequest: request(HomePrefixRequest, prefix=TEXT),
    UnhomePrefixRequest: request(UnhomePrefixRequest, prefix=TEXT),
    ResolveResponse: success(ResolveResponse, handle=TEXT, values=value_tuples),
    CreateResponse: success(CreateResponse, handle=TEXT, created=st.booleans()),
    DoneResponse: success(DoneResponse, answers=st.sampled_from(DONE_OPS), created=st.booleans()),
    ListHandlesResponse: success(
        ListHandlesResponse,
        prefix=TEXT,
        total=WIRE_INT,
        page=WIRE_INT,
        page_size=WIRE_INT,
        handles=st.lists(TEXT, max_size=5).map(tuple),
    ),
    ListPrefixesResponse: success(
        ListPrefixesResponse, prefixes=st.lists(TEXT, max_size=5).map(tuple)
    ),
    SiteInfoResponse: success(SiteInfoResponse, site=sites),
    ErrorResponse: st.builds(
        ErrorResponse,
        request_id=UINT32,
        flags=UINT32,
        code=error_codes,
        answers=ops,
        message=TEXT,
        handle=TEXT,
    ),
    ReferralResponse: st.builds(
        ReferralResponse,
        request_id=UINT32,
        flags=UINT32,
        code=st.sampled_from([302, 303]),
        answers=ops,
        handle=TEXT,
        prefix_handle=TEXT,
        values=value_tuples,
    ),
    TruncatedResponse: st.builds(
        TruncatedResponse,
        request_id=UINT32,
        flags=UINT32,
        code=st.integers(1, 2**64 - 1),
        answers=ops,
    ),
}
any_message = st.one_of(list(STRATEGIES.values()))


def encode(message: Message) -> bytes:
    """A TruncatedResponse only means something with the TRUNCATED envelope flag."""
    if isinstance(message, TruncatedResponse):
        return encode_message(message, MessageFlag.TRUNCATED)
    return encode_message(message)


def test_strategies_cover_every_message_class() -> None:
    assert set(STRATEGIES) == concrete_message_classes()


@pytest.mark.parametrize("cls", sorted(STRATEGIES, key=str))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_message_class_round_trips(cls: type[Message], data: st.DataObject) -> None:
    message = data.draw(STRATEGIES[cls])
    decoded = decode_message(encode(message))
    assert type(decoded) is cls
    assert decoded == message


@SETTINGS
@given(st.one_of([STRATEGIES[cls] for cls in STRATEGIES if issubclass(cls, Response)]))
def test_encode_with_cached_body_gives_the_same_bytes(message: Response) -> None:
    # a cache keeps encode_body per record; the answer must be byte-identical to a fresh one
    if not isinstance(message, TruncatedResponse):
        assert encode_with_body(message, encode_body(message)) == encode_message(message)
        assert encode_datagram(message, body=encode_body(message)) == encode_datagram(message)


@SETTINGS
@given(any_message)
def test_decode_encode_is_identity(message: Message) -> None:
    assert decode_message(encode(message)) == message
    if not isinstance(message, TruncatedResponse):
        assert encode_message(decode_message(encode_message(message))) == encode_message(message)


def test_truncated_response_round_trips_without_explicit_flag() -> None:
    stub = TruncatedResponse(request_id=1, code=1, answers=OpCode.RESOLUTION)
    assert decode_message(encode_message(stub)) == stub


# ---------------------------------------------------------------------------------------------
# TCP framing


def test_frame_is_a_big_endian_length_prefix() -> None:
    payload = encode_message(golden_messages()["delete_request"])
    assert frame(payload) == struct.pack(">I", len(payload)) + payload
    assert frame(payload)[:4] == bytes([0, 0, 0, len(payload)])
    message = golden_messages()["delete_request"]
    assert Connection().send(message) == frame(payload)


def drain(connection: Connection) -> list[Message]:
    out: list[Message] = []
    while True:
        event = connection.next_event()
        if event is NEED_DATA:
            return out
        assert isinstance(event, Message)
        out.append(event)


def test_messages_fed_byte_by_byte_come_out_in_order() -> None:
    sent = list(golden_messages().values())
    stream = b"".join(frame(encode_message(m)) for m in sent)
    connection = Connection()
    received: list[Message] = []
    for i in range(len(stream)):
        connection.receive_data(stream[i : i + 1])
        received.extend(drain(connection))
    assert received == sent
    assert connection.next_event() is NEED_DATA
    assert connection.closed is False


def test_need_data_until_the_frame_is_complete() -> None:
    data = frame(encode_message(golden_messages()["delete_request"]))
    connection = Connection()
    assert connection.next_event() is NEED_DATA
    connection.receive_data(data[:3])
    assert connection.next_event() is NEED_DATA
    connection.receive_data(data[3:4])
    assert connection.next_event() is NEED_DATA
    connection.receive_data(data[4:-1])
    assert connection.next_event() is NEED_DATA
    connection.receive_data(data[-1:])
    assert connection.next_event() == golden_messages()["delete_request"]
    assert connection.next_event() is NEED_DATA
    assert repr(NEED_DATA) == "NEED_DATA"


def test_empty_read_marks_the_connection_closed() -> None:
    connection = Connection()
    connection.receive_data(b"")
    assert connection.closed is True
    assert connection.next_event() is NEED_DATA


@SETTINGS
@given(
    st.lists(any_message, min_size=1, max_size=6),
    st.lists(st.integers(0, 10_000), max_size=20),
)
def test_messages_in_arbitrary_chunks_come_out_in_order(
    sent: list[Message], cuts: list[int]
) -> None:
    stream = b"".join(frame(encode(m)) for m in sent)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    connection = Connection()
    received: list[Message] = []
    for start, end in zip(points, points[1:], strict=False):
        connection.receive_data(stream[start:end])
        received.extend(drain(connection))
    assert received == sent


@pytest.mark.parametrize(("limit", "length"), [(65536, 65537), (100, 101), (100, 0xFFFFFFFF)])
def test_oversized_frame_length_is_fatal(limit: int, length: int) -> None:
    connection = Connection(WireLimits(max_frame_bytes=limit))
    connection.receive_data(struct.pack(">I", length))
    with pytest.raises(LimitExceeded) as info:
        connection.next_event()
    assert info.value.fatal is True
    assert info.value.code == int(ResponseCode.PROTOCOL_ERROR) == 4
    assert f"frame of {length} bytes is over the limit of {limit}" in str(info.value)


def test_frame_at_the_limit_is_not_an_error() -> None:
    connection = Connection()
    connection.receive_data(struct.pack(">I", DEFAULT_LIMITS.max_frame_bytes))
    assert connection.next_event() is NEED_DATA


GOOD = golden_messages()["resolve_request"]


@pytest.mark.parametrize(
    "bad_payload",
    [
        b"\xc1",  # never valid msgpack
        b"",  # an empty frame
        msgpack.packb([1, 7, 1, 0, 0, 0, {"h": 5}]),  # a field of the wrong type
        msgpack.packb([1, 7, 999, 0, 0, 0, {}]),  # unknown op
        msgpack.packb("not an envelope"),
    ],
)
def test_bad_message_in_a_good_frame_leaves_the_stream_usable(bad_payload: bytes) -> None:
    connection = Connection()
    connection.receive_data(frame(bad_payload) + frame(encode_message(GOOD)))
    with pytest.raises(ProtocolError) as info:
        connection.next_event()
    assert info.value.fatal is False
    assert connection.next_event() == GOOD
    assert connection.next_event() is NEED_DATA


def test_malformed_frame_error_carries_the_request_id() -> None:
    connection = Connection()
    connection.receive_data(frame(msgpack.packb([1, 7, 1, 0, 0, 0, {"h": 5}])))
    with pytest.raises(MalformedMessage) as info:
        connection.next_event()
    assert (info.value.request_id, info.value.op, info.value.code) == (7, 1, 4)


# ---------------------------------------------------------------------------------------------
# Decoding errors


@pytest.mark.parametrize("op", [999, 3, 2000, 106])
def test_unknown_request_op_is_unsupported_with_the_request_id(op: int) -> None:
    payload = msgpack.packb([1, 42, op, 0, 0, 0, {"h": "88.118.8/A1"}])
    with pytest.raises(UnsupportedOperation) as info:
        decode_message(payload)
    error = info.value
    assert error.code == int(ResponseCode.OPERATION_NOT_SUPPORTED) == 5
    assert (error.request_id, error.op, error.fatal) == (42, op, False)
    assert error.message == f"unknown op code {op}"


def test_success_answer_to_an_unknown_op_is_unsupported() -> None:
    with pytest.raises(UnsupportedOperation) as info:
        decode_message(msgpack.packb([1, 43, 999, 1, 0, 0, {}]))
    assert (info.value.code, info.value.request_id) == (5, 43)


def test_error_answer_to_an_unknown_op_decodes() -> None:
    decoded = decode_message(msgpack.packb([1, 44, 999, 777, 0, 0, {"m": "?"}]))
    assert decoded == ErrorResponse(request_id=44, code=777, answers=OpCode(999), message="?")
    assert isinstance(decoded, ErrorResponse)
    assert decoded.answers.name == "UNKNOWN_999" and not decoded.answers.known
    assert ResponseCode(decoded.code).name == "UNKNOWN_777"


def _pack(*envelope: Any) -> bytes:
    payload: bytes = msgpack.packb(list(envelope), use_bin_type=True)
    return payload


VALUE_OK = [1, "URL", b"x", 0, 86400, 0, 14, []]

MALFORMED = [
    # (payload, request id the error carries, text in its message)
    (b"\xc1", 0, "not a valid msgpack message"),
    (_pack(1, 1, 1, 0, 0, 0, {"h": "x"}) + b"\x00", 0, "bytes after the end of the message"),
    (msgpack.packb({"a": 1}), 0, "a message must be an array of 7 fields"),
    (_pack(1, 1, 1, 0, 0, 0), 0, "a message must be an array of 7 fields"),
    (_pack(1, "x", 1, 0, 0, 0, {}), 0, "request id must be an unsigned 32-bit integer"),
    (_pack(1, -1, 1, 0, 0, 0, {}), 0, "request id must be an unsigned 32-bit integer"),
    (_pack(1, 2**32, 1, 0, 0, 0, {}), 0, "request id must be an unsigned 32-bit integer"),
    (_pack(2, 5, 1, 0, 0, 0, {"h": "x"}), 5, "unsupported protocol version 2"),
    (_pack(True, 5, 1, 0, 0, 0, {"h": "x"}), 5, "unsupported protocol version True"),
    (_pack(1, 5, "1", 0, 0, 0, {}), 5, "op code and response code must be integers"),
    (_pack(1, 5, 1, -1, 0, 0, {}), 5, "op code and response code must be integers"),
    (_pack(1, 5, 1, 0, 2**32, 0, {}), 5, "op flags must be an unsigned 32-bit integer"),
    (_pack(1, 5, 1, 0, "x", 0, {}), 5, "op flags must be an unsigned 32-bit integer"),
    (_pack(1, 5, 1, 0, 0, "x", {}), 5, "message flags must be an integer and the body a map"),
    (_pack(1, 5, 1, 0, 0, 0, []), 5, "message flags must be an integer and the body a map"),
    (_pack(1, 5, 1, 0, 0, 0, {}), 5, "field h has the wrong type"),
    (_pack(1, 5, 1, 0, 0, 0, {"h": 5}), 5, "field h has the wrong type"),
    (_pack(1, 5, 1, 0, 0, 0, {"h": b"x"}), 5, "field h has the wrong type"),
    (_pack(1, 5, 1, 0, 0, 0, {"h": "x", "i": ["a"]}), 5, "field i has the wrong type"),
    (_pack(1, 5, 1, 0, 0, 0, {"h": "x", "i": [True]}), 5, "field i has the wrong type"),
    (_pack(1, 5, 1, 0, 0, 0, {"h": "x", "t": "URL"}), 5, "field t has the wrong type"),
    (_pack(1, 5, 100, 0, 0, 0, {"h": "x"}), 5, "field v has the wrong type"),
    (_pack(1, 5, 100, 0, 0, 0, {"h": "x", "v": 5}), 5, "field v has the wrong type"),
    (_pack(1, 5, 100, 0, 0, 0, {"h": "x", "v": [VALUE_OK[:7]]}), 5, "array of 8 fields"),
    (
        _pack(1, 5, 100, 0, 0, 0, {"h": "x", "v": [[1, "URL", "x", 0, 86400, 0, 14, []]]}),
        5,
        "value 1 has a field of the wrong type",
    ),
    (
        _pack(1, 5, 100, 0, 0, 0, {"h": "x", "v": [[1, "URL", b"x", 0, 1.5, 0, 14, []]]}),
        5,
        "value 1 has a field of the wrong type",
    ),
    (
        _pack(1, 5, 100, 0, 0, 0, {"h": "x", "v": [[1, "URL", b"x", 0, 1, 0, 14, [["h"]]]]}),
        5,
        "a reference must be an array [handle, index]",
    ),
    (
        _pack(1, 5, 101, 0, 0, 0, {"h": "x", "a": [300, "88.1/ADMIN"]}),
        5,
        "credential must be an array [index, handle, secret]",
    ),
    (
        _pack(1, 5, 101, 0, 0, 0, {"h": "x", "a": ["300", "88.1/ADMIN", "s"]}),
        5,
        "credential must be an array [index, handle, secret]",
    ),
    (
        _pack(1, 5, 101, 0, 0, 0, {"h": "x", "a": None}),  # present, so not an absent credential
        5,
        "credential must be an array [index, handle, secret]",
    ),
    (_pack(1, 5, 1, 0, 0, 0, {"h": "x", b"z": 1}), 5, "map keys must be strings"),  # a bin key
    (_pack(1, 5, 2, 0, 0, 0, {b"z": 1}), 5, "map keys must be strings"),
    (_pack(1, 5, 1, 0, 0, 0, {"h": "x", 3: 1}), 0, "not a valid msgpack message"),  # msgpack's
    (_pack(1, 5, 103, 0, 0, 0, {"h": "x"}), 5, "field i has the wrong type"),
    (_pack(1, 5, 105, 0, 0, 0, {"p": "88", "pg": "0"}), 5, "field pg has the wrong type"),
    (_pack(1, 5, 105, 1, 0, 0, {"p": "88", "pg": 0, "ps": 1, "hs": []}), 5, "field n"),
    (_pack(1, 5, 100, 1, 0, 0, {"h": "x", "c": "yes"}), 5, "field c has the wrong type"),
    (_pack(1, 5, 2, 1, 0, 0, {}), 5, "site info has the wrong shape"),
    (_pack(1, 5, 2, 1, 0, 0, {"s": [1, 0, True, False, 5]}), 5, "site info has the wrong shape"),
    (_pack(1, 5, 1, 100, 0, 0, {"m": 5}), 5, "field m has the wrong type"),
    (_pack(1, 5, 302, 1, 0, 0, {}), 5, "field px has the wrong type"),
    (_pack(1, 5, 1, 303, 0, 0, {"ph": 5, "v": []}), 5, "field ph has the wrong type"),
    (_pack(1, 5, 1, 303, 0, 0, {"ph": "0.NA/88"}), 5, "field v has the wrong type"),
    (_pack(1, 5, 1, 302, 0, 0, {"ph": "0.NA/88", "v": [], "h": 1}), 5, "field h"),
    (_pack(1, 5, 1, 302, 0, 0, {"ph": "0.NA/88", "v": [[1]]}), 5, "array of 8 fields"),
]


@pytest.mark.parametrize(("payload", "request_id", "text"), MALFORMED)
def test_wrong_field_types_are_malformed(payload: bytes, request_id: int, text: str) -> None:
    with pytest.raises(MalformedMessage) as info:
        decode_message(payload)
    error = info.value
    assert type(error) is MalformedMessage
    assert error.code == int(ResponseCode.PROTOCOL_ERROR) == 4
    assert error.fatal is False
    assert error.request_id == request_id
    assert text in error.message


def test_payload_over_the_frame_limit_is_refused_before_parsing() -> None:
    payload = encode_message(GOOD)
    with pytest.raises(LimitExceeded) as info:
        decode_message(payload, WireLimits(max_frame_bytes=len(payload) - 1))
    assert info.value.code == 4 and info.value.fatal is False
    assert decode_message(payload, WireLimits(max_frame_bytes=len(payload))) == GOOD


def test_deep_nesting_is_a_limit() -> None:
    with pytest.raises(LimitExceeded) as info:
        decode_message(b"\x91" * 5000 + b"\xc0")
    assert info.value.code == 4
    assert "nesting" in info.value.message


@pytest.mark.parametrize(
    "payload",
    [
        _pack(1, 1, 1, 0, 0, 0, {"h": "x" * 101}),
        _pack(1, 1, 1, 0, 0, 0, {"h": "x", "i": list(range(11))}),
    ],
)
def test_strings_and_arrays_over_their_limits_are_refused(payload: bytes) -> None:
    limits = WireLimits(max_str_bytes=100, max_array_len=10)
    with pytest.raises(MalformedMessage) as info:
        decode_message(payload, limits)
    assert info.value.code == 4


def test_string_over_its_limit_is_limit_exceeded() -> None:
    with pytest.raises(LimitExceeded):
        decode_message(_pack(1, 1, 1, 0, 0, 0, {"h": "x" * 101}), WireLimits(max_str_bytes=100))


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes) -> None:
    try:
        message = decode_message(data)
    except ProtocolError as exc:
        assert exc.code in (ResponseCode.PROTOCOL_ERROR, ResponseCode.OPERATION_NOT_SUPPORTED)
    else:
        assert isinstance(message, Message)


# ---------------------------------------------------------------------------------------------
# UDP datagrams


def _response_with_data(size: int) -> ResolveResponse:
    return ResolveResponse(
        request_id=99,
        flags=OpFlag.AUTHORITATIVE,
        handle=HANDLE,
        values=(HandleValue(1, "URL", b"x" * size, timestamp=T0),),
    )


def test_datagram_of_exactly_1400_bytes_is_unchanged_and_1401_is_truncated() -> None:
    assert UDP_MAX_ANSWER_BYTES == 1400
    size = 1400 - len(encode_message(_response_with_data(1000))) + 1000
    fits, over = _response_with_data(size), _response_with_data(size + 1)
    assert len(encode_message(fits)) == 1400
    assert encode_datagram(fits) == encode_message(fits)
    assert decode_message(encode_datagram(fits)) == fits
    assert len(encode_message(over)) == 1401
    datagram = encode_datagram(over)
    assert msgpack.unpackb(datagram)[5] == MessageFlag.TRUNCATED
    assert decode_message(datagram) == TruncatedResponse(
        request_id=99, flags=OpFlag.AUTHORITATIVE, code=1, answers=OpCode.RESOLUTION
    )


def test_error_answer_keeps_its_code_when_truncated() -> None:
    error = ErrorResponse(
        request_id=5,
        code=ResponseCode.INVALID_VALUE,
        answers=OpCode.CREATE_HANDLE,
        message="e" * 2000,
    )
    decoded = decode_message(encode_datagram(error))
    assert decoded == TruncatedResponse(request_id=5, code=202, answers=OpCode.CREATE_HANDLE)


def test_requests_are_never_truncated() -> None:
    big = CreateRequest(request_id=1, handle=HANDLE, values=(HandleValue(1, "URL", b"x" * 3000),))
    assert encode_datagram(big) == encode_message(big)
    assert decode_message(encode_datagram(big)) == big


def test_datagram_limit_is_a_parameter() -> None:
    small = golden_messages()["create_response"]
    assert isinstance(decode_message(encode_datagram(small, max_bytes=10)), TruncatedResponse)
    assert encode_datagram(small, max_bytes=100) == encode_message(small)


@SETTINGS
@given(st.one_of([s for c, s in STRATEGIES.items() if issubclass(c, Response)]))
def test_datagram_is_the_message_or_a_truncated_stub(response: Message) -> None:
    assert isinstance(response, Response)
    full = encode(response)
    datagram = encode_datagram(response, max_bytes=300)
    if len(encode_message(response)) <= 300:
        assert datagram == encode_message(response)
    else:
        assert decode_message(datagram) == TruncatedResponse(
            request_id=response.request_id,
            flags=response.flags,
            code=response.code,
            answers=response.op,
        )
    assert decode_message(full) == response


def test_too_many_values_and_references_in_one_message_is_a_limit() -> None:
    limits = WireLimits(max_items=10)
    refs = tuple(Reference("88.1/r", i) for i in range(5))
    url = HandleValue(1, "URL", b"x", references=refs)
    fits = CreateRequest(request_id=21, handle=HANDLE, values=(url,))
    assert decode_message(encode_message(fits), limits) == fits  # 1 value + 5 references
    over = CreateRequest(
        request_id=21, handle=HANDLE, values=(url, HandleValue(2, "URL", b"y", references=refs))
    )
    with pytest.raises(LimitExceeded) as info:
        decode_message(encode_message(over), limits)
    assert (info.value.code, info.value.request_id, info.value.fatal) == (4, 21, False)
    assert decode_message(encode_message(over)) == over


# ---------------------------------------------------------------------------------------------
# Referrals


@pytest.mark.parametrize(
    ("code", "body"),
    [
        (302, {"m": "ask elsewhere", "h": HANDLE}),  # no service information: an error
        (303, {}),
        (301, {"ph": "0.NA/88.100", "v": []}),  # "ph" only means something with 302 and 303
        (200, {"ph": "0.NA/88.100", "v": []}),
    ],
)
def test_referral_codes_without_service_information_stay_errors(
    code: int, body: dict[str, Any]
) -> None:
    decoded = decode_message(_pack(1, 3, 1, code, 0, 0, body))
    assert type(decoded) is ErrorResponse
    assert (decoded.code, decoded.answers) == (code, OpCode.RESOLUTION)


def test_referral_handle_is_optional() -> None:
    decoded = decode_message(_pack(1, 3, 104, 302, 0, 0, {"ph": "0.NA/88.100", "v": []}))
    assert decoded == ReferralResponse(
        request_id=3,
        code=ResponseCode.SERVICE_REFERRAL,
        answers=OpCode.MODIFY_VALUE,
        prefix_handle="0.NA/88.100",
        values=(),
    )


def test_referral_values_count_against_the_item_limit() -> None:
    limits = WireLimits(max_items=10)
    values = tuple(HandleValue(i, "HS_SITE", b"x" * 40) for i in range(1, 12))
    referral = ReferralResponse(
        request_id=22, code=303, answers=OpCode.RESOLUTION, prefix_handle="0.NA/88", values=values
    )
    with pytest.raises(LimitExceeded) as info:
        decode_message(encode_message(referral), limits)
    assert (info.value.code, info.value.request_id) == (4, 22)
    assert decode_message(encode_message(referral)) == referral


def test_big_referral_is_truncated_over_udp() -> None:
    values = tuple(HandleValue(i, "HS_SITE", b"x" * 200) for i in range(1, 10))
    referral = ReferralResponse(
        request_id=23, code=303, answers=OpCode.RESOLUTION, prefix_handle="0.NA/88", values=values
    )
    assert decode_message(encode_datagram(referral)) == TruncatedResponse(
        request_id=23, code=303, answers=OpCode.RESOLUTION
    )


@SETTINGS
@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF))
def test_request_bytes_after_the_request_id_do_not_depend_on_it(rid: int, flags: int) -> None:
    """What a packet cache keys on: the same request under any request id, and the answer
    rebuilt from the request's head, ``after_request_id`` and the body."""
    request = ResolveRequest(request_id=rid, handle=HANDLE, flags=flags)
    payload = encode_message(request)
    end = request_id_end(payload)
    assert end and payload[end:] == encode_message(replace(request, request_id=0))[3:]
    response = ResolveResponse(
        request_id=rid, flags=flags, handle=HANDLE, values=(HandleValue(1, "URL", b"u"),)
    )
    body = encode_body(response)
    assert payload[:end] + after_request_id(response) + body == encode_with_body(response, body)
    assert decode_message(payload[:end] + after_request_id(response) + body) == response


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x97\x01\x05",  # too short to be a message
        msgpack.packb([2, 5, 1, 0, 0, 0, {"h": HANDLE}]),  # another version
        msgpack.packb([1, -5, 1, 0, 0, 0, {"h": HANDLE}]),  # a signed request id
        msgpack.packb([1, 5, 1, 0, 0, 0, {"h": HANDLE}, 0]),  # eight fields
        msgpack.packb({"h": HANDLE}),
    ],
)
def test_request_id_end_is_zero_for_other_heads(payload: bytes) -> None:
    assert request_id_end(payload) == 0
