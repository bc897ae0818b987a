"""msgpack over TCP and UDP: the same answers as HTTP, pipelining, and hostile input.

Every operation is asked over HTTP and over the transport under test, and the typed answers are
compared (``protocol.jsonapi.response_from_json`` turns the REST body into the typed response).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import msgpack
import pytest

from node.transports.msgpack import answer_now
from node.transports.replies import Replies
from protocol.codes import MessageFlag, OpCode, OpFlag, ResponseCode
from protocol.jsonapi import response_from_json
from protocol.messages import (
    AddValuesRequest,
    CreateRequest,
    CreateResponse,
    Credential,
    DeleteRequest,
    DoneResponse,
    ErrorResponse,
    GetSiteInfoRequest,
    ListHandlesRequest,
    ListHandlesResponse,
    ListHomedPrefixesRequest,
    ListPrefixesResponse,
    RemoveValuesRequest,
    Request,
    ResolveRequest,
    ResolveResponse,
    Response,
    SiteInfoResponse,
    TruncatedResponse,
    UnhomePrefixRequest,
)
from protocol.records import HandleValue, Reference
from protocol.wire import (
    NEED_DATA,
    PROTOCOL_VERSION,
    Connection,
    decode_message,
    encode_message,
    frame,
)
from tests.node.conftest import (
    ADMIN_HANDLE,
    BAD_AUTH,
    BAD_CREDENTIAL,
    CREDENTIAL,
    HOST,
    PREFIX,
    SECRET,
    Reply,
    RunningNode,
    TCPClient,
    UDPClient,
    create,
    http,
    next_request_id,
    state,
    tcp_request,
    udp_request,
    value,
)

TRANSPORTS = ["tcp", "udp"]


def ask(node: RunningNode, transport: str, request: Request, timeout: float = 5.0) -> Response:
    port = node.ports[transport]
    if transport == "tcp":
        return node.call(lambda: tcp_request(port, request, timeout))
    return node.call(lambda: udp_request(port, request, timeout))


def rid() -> int:
    return next_request_id()


def hv(index: int, type_: str, data: str, **kw: Any) -> HandleValue:
    return HandleValue(index, type_, data.encode(), **kw)


def typed(reply: Reply, op: OpCode) -> Response:
    """The typed response a REST body stands for (value changes and deletes answer DONE)."""
    body = reply.json
    if body.get("responseCode") == ResponseCode.SUCCESS and op not in (
        OpCode.RESOLUTION,
        OpCode.CREATE_HANDLE,
        OpCode.LIST_HANDLES,
    ):
        return DoneResponse(answers=op)
    return response_from_json(body, op)


def same_answer(http_answer: Response, wire_answer: Response) -> None:
    """Equal in what the REST shape carries: code, handle, values (or the list page)."""
    assert int(wire_answer.code) == int(http_answer.code), (http_answer, wire_answer)
    if isinstance(http_answer, ResolveResponse):
        assert isinstance(wire_answer, ResolveResponse)
        assert wire_answer.handle == http_answer.handle
        assert wire_answer.values == http_answer.values
    elif isinstance(http_answer, ErrorResponse):
        assert isinstance(wire_answer, ErrorResponse)
        assert wire_answer.handle == http_answer.handle
    elif isinstance(http_answer, ListHandlesResponse):
        assert isinstance(wire_answer, ListHandlesResponse)
        assert (wire_answer.prefix, wire_answer.total, wire_answer.handles) == (
            http_answer.prefix,
            http_answer.total,
            http_answer.handles,
        )
    elif isinstance(http_answer, CreateResponse):
        assert isinstance(wire_answer, CreateResponse)
        assert wire_answer.handle == http_answer.handle


@pytest.fixture
def seeded(node: RunningNode) -> RunningNode:
    create(
        node,
        f"{PREFIX}/item",
        value(3, "URL", "https://example.org/3"),
        value(1, "EMAIL", "a@example.org"),
        value(2, "DESC.EN", "english"),
        value(4, "DESC.FR", "francais"),
        value(6, "NOTE", "hidden", permissions="1100"),
    )
    return node


# ------------------------------------------------------------------------------------------------
# Same answers as HTTP: resolution


RESOLUTIONS: list[tuple[str, str, list[tuple[str, str]], dict[str, Any]]] = [
    ("plain", f"{PREFIX}/item", [], {}),
    ("lower-case", f"{PREFIX.lower()}/ITEM", [], {}),
    ("index", f"{PREFIX}/item", [("index", "2")], {"indexes": (2,)}),
    ("type", f"{PREFIX}/item", [("type", "URL")], {"types": ("URL",)}),
    ("sub-type", f"{PREFIX}/item", [("type", "DESC.")], {"types": ("DESC.",)}),
    (
        "either",
        f"{PREFIX}/item",
        [("type", "URL"), ("index", "1")],
        {"types": ("URL",), "indexes": (1,)},
    ),
    ("no-match", f"{PREFIX}/item", [("type", "NOPE")], {"types": ("NOPE",)}),
    ("hidden-index", f"{PREFIX}/item", [("index", "6")], {"indexes": (6,)}),
    ("missing", f"{PREFIX}/missing", [], {}),
    ("not-homed", "88.999.1/x", [], {}),
    ("admin-handle", ADMIN_HANDLE, [], {}),
    ("seckey", ADMIN_HANDLE, [("index", "300")], {"indexes": (300,)}),
    ("no-slash", "88.100.1", [], {}),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("handle", "params", "fields"),
    [r[1:] for r in RESOLUTIONS],
    ids=[r[0] for r in RESOLUTIONS],
)
def test_resolution_same_as_http(
    seeded: RunningNode,
    transport: str,
    handle: str,
    params: list[tuple[str, str]],
    fields: dict[str, Any],
) -> None:
    over_http = typed(
        http(seeded, "GET", f"/api/handles/{handle}", params=params), OpCode.RESOLUTION
    )
    request = ResolveRequest(request_id=rid(), handle=handle, **fields)
    over_wire = ask(seeded, transport, request)
    assert over_wire.request_id == request.request_id
    same_answer(over_http, over_wire)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_resolution_as_admin_same_as_http(seeded: RunningNode, transport: str) -> None:
    for handle in (f"{PREFIX}/item", ADMIN_HANDLE):
        over_http = typed(
            http(seeded, "GET", f"/api/handles/{handle}", auth=True), OpCode.RESOLUTION
        )
        over_wire = ask(
            seeded,
            transport,
            ResolveRequest(request_id=rid(), handle=handle, credential=CREDENTIAL),
        )
        same_answer(over_http, over_wire)
        assert isinstance(over_wire, ResolveResponse)
        for v in over_wire.values:
            assert SECRET.encode() not in v.data
    public = ask(
        seeded,
        transport,
        ResolveRequest(
            request_id=rid(),
            handle=f"{PREFIX}/item",
            credential=CREDENTIAL,
            flags=OpFlag.PUBLIC_ONLY,
        ),
    )
    assert isinstance(public, ResolveResponse)
    assert [v.index for v in public.values] == [1, 2, 3, 4]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_seckey_never_public_over_the_wire(node: RunningNode, transport: str) -> None:
    for fields in ({}, {"indexes": (300,)}, {"types": ("HS_SECKEY",)}):
        answer = ask(
            node, transport, ResolveRequest(request_id=rid(), handle=ADMIN_HANDLE, **fields)
        )
        values = answer.values if isinstance(answer, ResolveResponse) else ()
        assert all(v.index != 300 for v in values), answer


# ------------------------------------------------------------------------------------------------
# Same answers as HTTP: writes and listing

#: name -> (setup values or None, HTTP call, wire request factory)
Scenario = tuple[
    list[dict[str, Any]] | None,
    Callable[[RunningNode, str], Reply],
    Callable[[str], Request],
    OpCode,
]

ONE = [value(1, "URL", "one"), value(2, "EMAIL", "two@x")]


def _put(params: list[tuple[str, str]], body: Any, auth: bool = True) -> Callable[..., Reply]:
    return lambda node, h: http(
        node, "PUT", f"/api/handles/{h}", params=params, body=body, auth=auth
    )


def _delete(params: list[tuple[str, str]], auth: bool = True) -> Callable[..., Reply]:
    return lambda node, h: http(node, "DELETE", f"/api/handles/{h}", params=params, auth=auth)


SCENARIOS: dict[str, Scenario] = {
    "create": (
        None,
        _put([], {"values": [value(1, "URL", "u")]}),
        lambda h: CreateRequest(
            handle=h, values=(hv(1, "URL", "u"),), flags=OpFlag.OVERWRITE, credential=CREDENTIAL
        ),
        OpCode.CREATE_HANDLE,
    ),
    "create-existing-no-overwrite": (
        ONE,
        _put([("overwrite", "false")], {"values": [value(1, "URL", "u")]}),
        lambda h: CreateRequest(handle=h, values=(hv(1, "URL", "u"),), credential=CREDENTIAL),
        OpCode.CREATE_HANDLE,
    ),
    "overwrite": (
        ONE,
        _put([], {"values": [value(5, "URL", "u")]}),
        lambda h: CreateRequest(
            handle=h, values=(hv(5, "URL", "u"),), flags=OpFlag.OVERWRITE, credential=CREDENTIAL
        ),
        OpCode.CREATE_HANDLE,
    ),
    "create-no-credential": (
        None,
        _put([], {"values": [value(1, "URL", "u")]}, auth=False),
        lambda h: CreateRequest(handle=h, values=(hv(1, "URL", "u"),), flags=OpFlag.OVERWRITE),
        OpCode.CREATE_HANDLE,
    ),
    "create-invalid-value": (
        None,
        _put([], {"values": [value(0, "URL", "u")]}),
        lambda h: CreateRequest(
            handle=h, values=(hv(0, "URL", "u"),), flags=OpFlag.OVERWRITE, credential=CREDENTIAL
        ),
        OpCode.CREATE_HANDLE,
    ),
    "add-value": (
        ONE,
        _put([("index", "3"), ("overwrite", "false")], {"values": [value(3, "X", "x")]}),
        lambda h: AddValuesRequest(handle=h, values=(hv(3, "X", "x"),), credential=CREDENTIAL),
        OpCode.ADD_VALUE,
    ),
    "add-existing-index": (
        ONE,
        _put([("index", "1"), ("overwrite", "false")], {"values": [value(1, "X", "x")]}),
        lambda h: AddValuesRequest(handle=h, values=(hv(1, "X", "x"),), credential=CREDENTIAL),
        OpCode.ADD_VALUE,
    ),
    "add-to-missing-handle": (
        None,
        _put([("index", "1")], {"values": [value(1, "X", "x")]}),
        lambda h: AddValuesRequest(
            handle=h, values=(hv(1, "X", "x"),), flags=OpFlag.OVERWRITE, credential=CREDENTIAL
        ),
        OpCode.ADD_VALUE,
    ),
    "remove-value": (
        ONE,
        _delete([("index", "2")]),
        lambda h: RemoveValuesRequest(handle=h, indexes=(2,), credential=CREDENTIAL),
        OpCode.REMOVE_VALUE,
    ),
    "remove-missing-index": (
        ONE,
        _delete([("index", "9")]),
        lambda h: RemoveValuesRequest(handle=h, indexes=(9,), credential=CREDENTIAL),
        OpCode.REMOVE_VALUE,
    ),
    "delete": (
        ONE,
        _delete([]),
        lambda h: DeleteRequest(handle=h, credential=CREDENTIAL),
        OpCode.DELETE_HANDLE,
    ),
    "delete-missing": (
        None,
        _delete([]),
        lambda h: DeleteRequest(handle=h, credential=CREDENTIAL),
        OpCode.DELETE_HANDLE,
    ),
    "delete-no-credential": (
        ONE,
        _delete([], auth=False),
        lambda h: DeleteRequest(handle=h),
        OpCode.DELETE_HANDLE,
    ),
    "delete-wrong-secret": (
        ONE,
        lambda node, h: http(
            node,
            "DELETE",
            f"/api/handles/{h}",
            headers=BAD_AUTH,
        ),
        lambda h: DeleteRequest(handle=h, credential=BAD_CREDENTIAL),
        OpCode.DELETE_HANDLE,
    ),
}


def _record(node: RunningNode, handle: str) -> tuple[int, list[tuple[Any, ...]]]:
    """Status and values (without timestamps) of ``handle``, read as the admin."""
    reply = http(node, "GET", f"/api/handles/{handle}", params=[("auth", "true")], auth=True)
    if reply.status != 200:
        return reply.status, []
    return 200, [
        (v["index"], v["type"], v["data"], v.get("permissions"), v["ttl"])
        for v in reply.json["values"]
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_write_same_as_http(node: RunningNode, transport: str, name: str) -> None:
    setup, over_http_fn, request_fn, op = SCENARIOS[name]
    h_http, h_wire = f"{PREFIX}/{name}-http", f"{PREFIX}/{name}-{transport}"
    if setup is not None:
        create(node, h_http, *setup)
        create(node, h_wire, *setup)
    over_http = typed(over_http_fn(node, h_http), op)
    request = replace(request_fn(h_wire), request_id=rid())
    over_wire = ask(node, transport, request)
    assert over_wire.request_id == request.request_id
    assert over_wire.op == op
    assert int(over_wire.code) == int(over_http.code), (over_http, over_wire)
    if isinstance(over_wire, ErrorResponse):
        assert isinstance(over_http, ErrorResponse)
        assert over_wire.handle == h_wire
        assert over_http.handle == h_http
    elif isinstance(over_wire, CreateResponse):
        assert over_wire.handle == h_wire
        assert over_wire.created == (setup is None)
    else:
        assert isinstance(over_wire, DoneResponse)
    assert _record(node, h_wire) == _record(node, h_http)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_list_same_as_http(node: RunningNode, transport: str) -> None:
    for i in range(5):
        create(node, f"{PREFIX}/l{i}", value(1, "URL", str(i)))
    for params, fields in (
        ([("prefix", PREFIX)], {}),
        ([("prefix", PREFIX), ("page", "1"), ("pageSize", "2")], {"page": 1, "page_size": 2}),
    ):
        over_http = typed(
            http(node, "GET", "/api/handles", params=params, auth=True), OpCode.LIST_HANDLES
        )
        over_wire = ask(
            node,
            transport,
            ListHandlesRequest(request_id=rid(), prefix=PREFIX, credential=CREDENTIAL, **fields),
        )
        same_answer(over_http, over_wire)
        assert isinstance(over_wire, ListHandlesResponse)
        assert over_wire.total == 6
    for cred, code in ((None, 402), (BAD_CREDENTIAL, 403)):
        anon_http = typed(
            http(
                node,
                "GET",
                "/api/handles",
                params=[("prefix", PREFIX)],
                headers=BAD_AUTH if cred else None,
            ),
            OpCode.LIST_HANDLES,
        )
        anon_wire = ask(
            node, transport, ListHandlesRequest(request_id=rid(), prefix=PREFIX, credential=cred)
        )
        assert int(anon_wire.code) == int(anon_http.code) == code
    not_homed = ask(
        node,
        transport,
        ListHandlesRequest(request_id=rid(), prefix="88.999", credential=CREDENTIAL),
    )
    assert not_homed.code == ResponseCode.SERVER_NOT_RESPONSIBLE


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_homed_prefixes_and_site_info(node: RunningNode, transport: str) -> None:
    homed = ask(node, transport, ListHomedPrefixesRequest(request_id=rid()))
    assert isinstance(homed, ListPrefixesResponse)
    assert homed.prefixes == (PREFIX,)
    site = ask(node, transport, GetSiteInfoRequest(request_id=rid()))
    assert isinstance(site, SiteInfoResponse)
    ports = {(i.protocol, i.port) for s in site.site.servers for i in s.interfaces}
    assert (0, node.ports["udp"]) in ports
    assert (1, node.ports["tcp"]) in ports
    assert (2, node.ports["http"]) in ports


# ------------------------------------------------------------------------------------------------
# TCP: pipelining and hostile frames


def test_tcp_pipelining_50_requests_in_one_write(seeded: RunningNode) -> None:
    requests: list[Request] = []
    for i in range(50):
        if i % 3 == 0:
            requests.append(
                CreateRequest(
                    request_id=1000 + i,
                    handle=f"{PREFIX}/pipe{i}",
                    values=(hv(1, "URL", f"p{i}"),),
                    flags=OpFlag.OVERWRITE,
                    credential=CREDENTIAL,
                )
            )
        elif i % 3 == 1:
            requests.append(ResolveRequest(request_id=1000 + i, handle=f"{PREFIX}/item"))
        else:
            requests.append(ResolveRequest(request_id=1000 + i, handle=f"{PREFIX}/none{i}"))

    async def go() -> dict[int, Response]:
        client = await TCPClient.open(seeded.ports["tcp"])
        try:
            await client.send_raw(b"".join(frame(encode_message(r)) for r in requests))
            answers: dict[int, Response] = {}
            while len(answers) < len(requests):
                message = await client.receive()
                assert isinstance(message, Response)
                assert message.request_id not in answers
                answers[message.request_id] = message
            # and the connection still answers afterwards
            after = await client.request(ResolveRequest(request_id=1, handle=f"{PREFIX}/item"))
            assert after.code == ResponseCode.SUCCESS
            return answers
        finally:
            await client.close()

    answers = seeded.call(go)
    assert set(answers) == {r.request_id for r in requests}
    for r in requests:
        a = answers[r.request_id]
        assert a.op == r.op
        if isinstance(r, CreateRequest):
            assert isinstance(a, CreateResponse) and a.handle == r.handle
        elif r.handle.endswith("item"):  # type: ignore[attr-defined]
            assert isinstance(a, ResolveResponse) and [v.index for v in a.values] == [1, 2, 3, 4]
        else:
            assert a.code == ResponseCode.HANDLE_NOT_FOUND
    for i in range(0, 50, 3):
        got = http(seeded, "GET", f"/api/handles/{PREFIX}/pipe{i}")
        assert got.json["values"][0]["data"]["value"] == f"p{i}"


def test_tcp_request_split_across_writes(seeded: RunningNode) -> None:
    data = frame(encode_message(ResolveRequest(request_id=77, handle=f"{PREFIX}/item")))

    async def go() -> Response:
        client = await TCPClient.open(seeded.ports["tcp"])
        try:
            for i in range(len(data)):
                await client.send_raw(data[i : i + 1])
                if i % 7 == 0:
                    await asyncio.sleep(0.001)
            answer = await client.receive()
            assert isinstance(answer, Response)
            return answer
        finally:
            await client.close()

    answer = seeded.call(go)
    assert answer.request_id == 77
    assert isinstance(answer, ResolveResponse)


def _envelope(rid_: int, op: int, body: dict[str, Any], rc: int = 0, flags: int = 0) -> bytes:
    packed: bytes = msgpack.packb([PROTOCOL_VERSION, rid_, op, rc, flags, 0, body])
    return packed


BAD_PAYLOADS: list[tuple[str, bytes, int, int]] = [
    # id, payload, expected code, expected request id in the answer
    ("garbage", b"\xc1\xc1\xc1", 4, 0),
    ("not-an-array", msgpack.packb({"a": 1}), 4, 0),
    ("short-envelope", msgpack.packb([1, 2, 3]), 4, 0),
    ("trailing-bytes", _envelope(11, 1, {"h": "88.100.1/item"}) + b"\x00", 4, 0),
    ("bad-body-type", _envelope(12, 1, {"h": 5}), 4, 12),
    ("body-not-map", msgpack.packb([1, 13, 1, 0, 0, 0, [1]]), 4, 13),
    ("bad-version", msgpack.packb([99, 14, 1, 0, 0, 0, {"h": "x"}]), 4, 14),
    ("unknown-op", _envelope(4242, 999, {}), 5, 4242),
    ("bad-value", _envelope(15, 100, {"h": "88.100.1/bad", "v": [[1, "URL"]]}), 4, 15),
    ("bad-credential", _envelope(16, 101, {"h": "88.100.1/item", "a": [300]}), 4, 16),
    ("response-not-request", _envelope(17, 1, {"h": "x", "v": []}, rc=1), 4, 17),
    ("bin-key", _envelope(18, 1, {"h": "88.100.1/item", b"x": 1}), 4, 18),
    ("nil-credential", _envelope(19, 101, {"h": "88.100.1/item", "a": None}), 4, 19),
    ("empty", b"", 4, 0),
]


@pytest.mark.parametrize(
    ("payload", "code", "request_id"),
    [p[1:] for p in BAD_PAYLOADS],
    ids=[p[0] for p in BAD_PAYLOADS],
)
def test_tcp_bad_message_in_good_frame_answered_and_connection_kept(
    seeded: RunningNode, payload: bytes, code: int, request_id: int
) -> None:
    before = state(seeded)

    async def go() -> tuple[Response, Response]:
        client = await TCPClient.open(seeded.ports["tcp"])
        try:
            await client.send_raw(frame(payload))
            error = await client.receive()
            assert isinstance(error, Response)
            good = await client.request(ResolveRequest(request_id=5, handle=f"{PREFIX}/item"))
            return error, good
        finally:
            await client.close()

    error, good = seeded.call(go)
    assert isinstance(error, ErrorResponse)
    assert int(error.code) == code
    assert error.request_id == request_id
    assert isinstance(good, ResolveResponse)
    assert state(seeded) == before
    assert http(seeded, "GET", f"/api/handles/{PREFIX}/bad").status == 404


def test_tcp_oversized_frame_answered_then_closed_others_unaffected(seeded: RunningNode) -> None:
    before = state(seeded)
    limit = seeded.config.max_frame_bytes

    async def go() -> tuple[Response, bool, Response, Response]:
        other = await TCPClient.open(seeded.ports["tcp"])
        bad = await TCPClient.open(seeded.ports["tcp"])
        try:
            await bad.send_raw(struct.pack(">I", limit + 1) + b"\x00" * 100)
            error = await bad.receive()
            assert isinstance(error, Response)
            try:
                await bad.receive(timeout=5)
                closed = False
            except (EOFError, ConnectionError):
                closed = True
            still = await other.request(ResolveRequest(request_id=8, handle=f"{PREFIX}/item"))
            fresh = await tcp_request(
                seeded.ports["tcp"], ResolveRequest(request_id=9, handle=f"{PREFIX}/item")
            )
            return error, closed, still, fresh
        finally:
            await other.close()
            await bad.close()

    error, closed, still, fresh = seeded.call(go)
    assert isinstance(error, ErrorResponse)
    assert error.code == ResponseCode.PROTOCOL_ERROR
    assert closed, "the connection must be closed after a frame over the limit"
    assert isinstance(still, ResolveResponse)
    assert isinstance(fresh, ResolveResponse)
    assert http(seeded, "GET", "/healthz").status == 200
    assert state(seeded) == before


def test_tcp_huge_frame_length_does_not_allocate(seeded: RunningNode) -> None:
    async def go() -> Response:
        bad = await TCPClient.open(seeded.ports["tcp"])
        try:
            await bad.send_raw(b"\xff\xff\xff\xff")
            answer = await bad.receive()
            assert isinstance(answer, Response)
            return answer
        finally:
            await bad.close()

    answer = seeded.call(go)
    assert answer.code == ResponseCode.PROTOCOL_ERROR
    assert http(seeded, "GET", "/readyz").status == 200


def test_tcp_many_bad_frames_then_good(seeded: RunningNode) -> None:
    bad = b"".join(frame(p[1]) for p in BAD_PAYLOADS if p[1])
    good = frame(encode_message(ResolveRequest(request_id=99, handle=f"{PREFIX}/item")))

    async def go() -> list[Response]:
        client = await TCPClient.open(seeded.ports["tcp"])
        try:
            await client.send_raw(bad + good)
            out: list[Response] = []
            for _ in range(len(BAD_PAYLOADS)):  # one answer per bad frame, then the good one
                m = await client.receive()
                assert isinstance(m, Response)
                out.append(m)
                if m.request_id == 99:
                    break
            return out
        finally:
            await client.close()

    answers = seeded.call(go)
    assert len(answers) == len(BAD_PAYLOADS)  # every non-empty bad frame plus the good one
    assert isinstance(answers[-1], ResolveResponse)
    assert all(isinstance(a, ErrorResponse) for a in answers[:-1])


def test_tcp_endless_bad_frames_close_the_connection_only(seeded: RunningNode) -> None:
    # one 4-byte empty frame would otherwise buy a 40-byte error answer, forever
    from node.transports.msgpack import MAX_CONSECUTIVE_ERRORS

    async def go() -> tuple[int, Response]:
        client = await TCPClient.open(seeded.ports["tcp"])
        other = await TCPClient.open(seeded.ports["tcp"])
        try:
            await client.send_raw(frame(b"") * (MAX_CONSECUTIVE_ERRORS + 50))
            errors = 0
            with pytest.raises(EOFError):
                while True:
                    m = await client.receive()
                    assert isinstance(m, ErrorResponse) and m.code == ResponseCode.PROTOCOL_ERROR
                    errors += 1
            ok = await other.request(ResolveRequest(request_id=7, handle=f"{PREFIX}/item"))
            return errors, ok
        finally:
            await client.close()
            await other.close()

    errors, ok = seeded.call(go)
    assert errors == MAX_CONSECUTIVE_ERRORS  # the 16th answered, then closed (SPEC 1.1)
    assert isinstance(ok, ResolveResponse)


def _frames_until_closed(sock: socket.socket) -> tuple[list[Response], str]:
    """Every answer frame until the node closes: how it closed, ``"eof"`` or ``"reset"``."""
    answers: list[Response] = []
    conn = Connection()
    while True:
        try:
            data = sock.recv(1 << 16)
        except ConnectionResetError:
            return answers, "reset"
        if not data:
            return answers, "eof"
        conn.receive_data(data)
        while (answer := conn.next_event()) is not NEED_DATA:
            assert isinstance(answer, Response)
            answers.append(answer)


def _creates(first_id: int, stem: str, count: int) -> list[CreateRequest]:
    """``count`` authenticated creates of ``PREFIX/<stem>-<i>``, request ids from ``first_id``."""
    return [
        CreateRequest(
            request_id=first_id + i,
            handle=f"{PREFIX}/{stem}-{i}",
            values=(hv(1, "URL", f"u{i}"),),
            credential=CREDENTIAL,
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("closer", ["oversized-frame", "too-many-bad-frames"])
def test_tcp_close_after_bad_frames_answers_the_requests_read_before(
    node: RunningNode, closer: str
) -> None:
    """Writes pipelined before a frame that makes the node close (and a megabyte it will not
    read after it) are run: their answers must come before the close, and the close must be a
    FIN, not a reset that may make the client's system drop answers it has not read."""
    from node.transports.msgpack import MAX_CONSECUTIVE_ERRORS

    creates = _creates(100, "before-close", 8)
    if closer == "oversized-frame":
        bad = struct.pack(">I", node.config.max_frame_bytes + 1)
        refusals = 1
    else:
        bad = frame(b"") * MAX_CONSECUTIVE_ERRORS
        refusals = MAX_CONSECUTIVE_ERRORS
    unread = b"\x00" * (1 << 20)
    sock = socket.create_connection((HOST, node.ports["tcp"]))
    sock.settimeout(10)
    try:
        with contextlib.suppress(OSError):  # what the node does not read may be refused
            sock.sendall(b"".join(frame(encode_message(r)) for r in creates) + bad + unread)
        answers, closed = _frames_until_closed(sock)
    finally:
        sock.close()
    errors = [a for a in answers if isinstance(a, ErrorResponse)]
    assert [(e.request_id, e.code) for e in errors] == [(0, 4)] * refusals
    created = {a.request_id for a in answers if isinstance(a, CreateResponse)}
    assert created == {r.request_id for r in creates}
    assert closed == "eof"
    for r in creates:
        assert http(node, "GET", f"/api/handles/{r.handle}").status == 200


def test_tcp_client_that_half_closes_after_its_requests_gets_every_answer(
    node: RunningNode,
) -> None:
    """A client may send its pipelined requests, shut down its sending side and read the
    answers: the node answers every request it read (writes and store reads, which finish
    after the end of the stream), then closes."""
    requests: list[Request] = [*_creates(200, "half-closed", 5)]
    requests += [ResolveRequest(request_id=300 + i, handle=f"{PREFIX}/none-{i}") for i in range(3)]
    requests.append(ResolveRequest(request_id=400, handle=ADMIN_HANDLE))
    sock = socket.create_connection((HOST, node.ports["tcp"]))
    sock.settimeout(10)
    try:
        sock.sendall(b"".join(frame(encode_message(r)) for r in requests))
        sock.shutdown(socket.SHUT_WR)
        answers, closed = _frames_until_closed(sock)
    finally:
        sock.close()
    codes = {a.request_id: a.code for a in answers}
    assert len(answers) == len(codes) == len(requests)
    missing = ResponseCode.HANDLE_NOT_FOUND
    assert codes == {r.request_id: missing if r.request_id // 100 == 3 else 1 for r in requests}
    assert closed == "eof"


# ------------------------------------------------------------------------------------------------
# UDP


@pytest.mark.parametrize(
    ("payload", "code", "request_id"),
    [p[1:] for p in BAD_PAYLOADS],
    ids=[p[0] for p in BAD_PAYLOADS],
)
def test_udp_malformed_datagram_answered(
    seeded: RunningNode, payload: bytes, code: int, request_id: int
) -> None:
    before = state(seeded)

    async def go() -> tuple[bytes, Response]:
        client = await UDPClient.open(seeded.ports["udp"])
        try:
            client.send_raw(payload)
            raw = await client.receive_raw()
            good = await client.request(ResolveRequest(request_id=3, handle=f"{PREFIX}/item"))
            return raw, good
        finally:
            client.close()

    raw, good = seeded.call(go)
    error = decode_message(raw)
    assert isinstance(error, ErrorResponse)
    assert int(error.code) == code
    assert error.request_id == request_id
    assert isinstance(good, ResolveResponse)
    assert state(seeded) == before


def test_udp_answer_over_1400_bytes_is_truncated(node: RunningNode) -> None:
    create(node, f"{PREFIX}/big", value(1, "URL", "x" * 2000), value(2, "EMAIL", "e@x"))
    request = ResolveRequest(request_id=rid(), handle=f"{PREFIX}/big")

    async def go() -> bytes:
        client = await UDPClient.open(node.ports["udp"])
        try:
            client.send_raw(encode_message(request))
            return await client.receive_raw()
        finally:
            client.close()

    raw = node.call(go)
    assert len(raw) <= 1400
    envelope = msgpack.unpackb(raw)
    assert envelope[5] & MessageFlag.TRUNCATED
    answer = decode_message(raw)
    assert isinstance(answer, TruncatedResponse)
    assert answer.request_id == request.request_id
    assert answer.op == OpCode.RESOLUTION
    # a small answer is not truncated, and TCP gives the whole record
    small = ask(node, "udp", ResolveRequest(request_id=rid(), handle=f"{PREFIX}/big", indexes=(2,)))
    assert isinstance(small, ResolveResponse)
    full = ask(node, "tcp", replace(request, request_id=rid()))
    assert isinstance(full, ResolveResponse)
    assert full.values[0].data == b"x" * 2000


def test_udp_write_answer_and_nothing_stored_when_refused(node: RunningNode) -> None:
    before = state(node)
    refused = [
        CreateRequest(request_id=rid(), handle=f"{PREFIX}/u1", values=(hv(1, "URL", "u"),)),
        CreateRequest(
            request_id=rid(),
            handle=f"{PREFIX}/u1",
            values=(hv(1, "URL", "u"),),
            credential=BAD_CREDENTIAL,
        ),
        CreateRequest(
            request_id=rid(),
            handle="88.999/u1",
            values=(hv(1, "URL", "u"),),
            credential=CREDENTIAL,
        ),
        CreateRequest(
            request_id=rid(),
            handle=f"{PREFIX}/u1",
            values=(hv(-1, "URL", "u"),),
            credential=CREDENTIAL,
        ),
    ]
    codes = [int(ask(node, "udp", r).code) for r in refused]
    assert codes == [402, 403, 301, 202]
    assert state(node) == before


# ------------------------------------------------------------------------------------------------
# every request gets an answer


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_list_page_beyond_any_offset_is_answered(node: RunningNode, transport: str) -> None:
    request = ListHandlesRequest(
        request_id=rid(), prefix=PREFIX, page=2**62, page_size=100, credential=CREDENTIAL
    )
    answer = ask(node, transport, request, timeout=3)  # times out if the node never answers
    assert answer.request_id == request.request_id
    if isinstance(answer, ListHandlesResponse):
        assert answer.handles == ()
    else:
        assert answer.code == ResponseCode.PROTOCOL_ERROR
    assert isinstance(
        ask(node, transport, ResolveRequest(request_id=rid(), handle=f"{PREFIX}/ADMIN")),
        ResolveResponse,
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reference_index_outside_int32_is_invalid_value(node: RunningNode, transport: str) -> None:
    # a reference names a value index: an int32, like the value's own index (RFC 3651 3.1)
    before = state(node)
    for index in (2**31, 2**40, -(2**31) - 1):
        bad = HandleValue(1, "URL", b"u", references=(Reference(f"{PREFIX}/x", index),))
        answer = ask(
            node,
            transport,
            CreateRequest(
                request_id=rid(),
                handle=f"{PREFIX}/refs",
                values=(bad,),
                flags=OpFlag.OVERWRITE,
                credential=CREDENTIAL,
            ),
        )
        assert answer.code == ResponseCode.INVALID_VALUE, (index, answer)
    assert state(node) == before


def test_tcp_idle_connection_is_closed(tmp_path: Any) -> None:
    from tests.node.conftest import make_config, running_node

    with running_node(make_config(tmp_path / "d", tcp_idle_timeout_s=0.3)) as idle_node:

        async def go() -> tuple[Response, bool]:
            client = await TCPClient.open(idle_node.ports["tcp"])
            try:
                first = await client.request(ResolveRequest(request_id=1, handle=ADMIN_HANDLE))
                try:
                    await client.receive(timeout=5)
                    closed = False
                except (EOFError, ConnectionError):
                    closed = True
                return first, closed
            finally:
                await client.close()

        first, closed = idle_node.call(go)
        assert isinstance(first, ResolveResponse)
        assert closed


def test_tcp_frame_trickling_in_longer_than_the_idle_timeout_closes_the_connection(
    tmp_path: Any,
) -> None:
    """A client sending one frame a byte at a time is never silent, but stalls the connection
    as a silent one does: closed once the frame has taken the idle timeout. A client streaming
    whole requests in pieces that end mid-frame keeps its connection as long as it likes."""
    from tests.node.conftest import make_config, running_node

    timeout = 0.4
    with running_node(make_config(tmp_path / "d", tcp_idle_timeout_s=timeout)) as idle_node:
        port = idle_node.ports["tcp"]
        trickled = frame(encode_message(ResolveRequest(request_id=1, handle=ADMIN_HANDLE)))
        with socket.create_connection((HOST, port)) as sock:
            sock.settimeout(0.05)
            started = time.monotonic()
            closed_after = None
            for byte in trickled[:-1]:  # never the last byte: the frame stays partial
                try:
                    sock.sendall(bytes([byte]))
                    if sock.recv(1) == b"":
                        closed_after = time.monotonic() - started
                        break
                except TimeoutError:
                    continue
                except ConnectionError:
                    closed_after = time.monotonic() - started
                    break
            assert closed_after is not None and closed_after >= timeout, closed_after

        requests = [
            frame(encode_message(ResolveRequest(request_id=i, handle=ADMIN_HANDLE)))
            for i in range(1, 41)
        ]
        stream = b"".join(requests)
        piece = len(requests[0]) * 3 // 2  # every piece ends inside a frame
        with socket.create_connection((HOST, port)) as sock:
            sock.settimeout(10)
            for at in range(0, len(stream), piece):  # about 2.5 idle timeouts of sending
                sock.sendall(stream[at : at + piece])
                time.sleep(timeout / 10)
            conn = Connection()
            seen: set[int] = set()
            while len(seen) < len(requests):
                data = sock.recv(65536)
                assert data, f"closed after {len(seen)} answers"
                conn.receive_data(data)
                while isinstance(event := conn.next_event(), ResolveResponse):
                    seen.add(event.request_id)
            assert seen == set(range(1, 41))


def test_tcp_1000_pipelined_requests_with_back_pressure(seeded: RunningNode) -> None:
    requests = [ResolveRequest(request_id=i, handle=f"{PREFIX}/item") for i in range(1, 1001)]

    async def go() -> set[int]:
        client = await TCPClient.open(seeded.ports["tcp"])
        try:
            payload = b"".join(frame(encode_message(r)) for r in requests)
            writer = asyncio.ensure_future(client.send_raw(payload))
            seen: set[int] = set()
            while len(seen) < len(requests):
                m = await client.receive()
                assert isinstance(m, ResolveResponse)
                seen.add(m.request_id)
            await writer
            return seen
        finally:
            await client.close()

    assert seeded.call(go) == set(range(1, 1001))


def test_one_resolution_is_one_cache_hit_whichever_door_encoded_the_answer(
    node: RunningNode,
) -> None:
    """An entry may hold the answer encoded for one door and not yet the other: the resolution
    that encodes it is still one hit, not a look at the entry plus a hit."""
    handle = f"{PREFIX}/doors"
    create(node, handle, value(1, "URL", "u"))

    def cache() -> dict[str, int]:
        counts: dict[str, int] = http(node, "GET", "/readyz").json["cache"]
        return counts

    def over_tcp() -> None:
        asked = ResolveRequest(request_id=next_request_id(), handle=handle)
        assert asyncio.run(tcp_request(node.ports["tcp"], asked)).code == ResponseCode.SUCCESS

    over_tcp()  # a miss: read from the store, encoded for msgpack
    over_tcp()  # a hit, and its bytes are learnt
    before = cache()
    assert http(node, "GET", f"/api/handles/{handle}").status == 200  # JSON not encoded yet
    after = cache()
    assert (after["hits"] - before["hits"], after["misses"] - before["misses"]) == (1, 0)
    create(node, handle, value(1, "URL", "v"))  # overwritten: the entry goes
    assert http(node, "GET", f"/api/handles/{handle}").status == 200  # a miss; JSON only
    before = cache()
    over_tcp()  # known bytes, but no msgpack answer in the new entry yet
    after = cache()
    assert (after["hits"] - before["hits"], after["misses"] - before["misses"]) == (1, 0)


def test_tcp_client_that_does_not_read_cannot_make_the_node_buffer_without_bound(
    node: RunningNode,
) -> None:
    """Requests for a 5 KB answer, 20 MB of answers in all, from a client that reads none until
    it has sent them all: the node takes no more requests while its answers wait (at most about
    one over the transport's high-water mark), and once read they all come."""
    fat = [value(i, "URL", "u" * 500) for i in range(1, 11)]
    create(node, f"{PREFIX}/fat", *fat)
    count = 4000
    payload = b"".join(
        frame(encode_message(ResolveRequest(request_id=i, handle=f"{PREFIX}/fat")))
        for i in range(1, count + 1)
    )
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # before connect: no autotuning
    sock.connect((HOST, node.ports["tcp"]))
    sock.settimeout(20)
    sender = threading.Thread(target=sock.sendall, args=(payload,))
    sender.start()

    async def buffered() -> int:
        return sum(c.transport.get_write_buffer_size() for c in node.node.connections)

    time.sleep(1.0)  # the node answers what it read, then waits
    assert node.on_node(buffered) < 1024 * 1024
    seen: set[int] = set()
    stream = bytearray()
    while len(seen) < count:
        stream += sock.recv(1 << 20)
        while len(stream) >= 4 and len(stream) >= 4 + struct.unpack_from(">I", stream)[0]:
            length = struct.unpack_from(">I", stream)[0]
            answer = decode_message(bytes(stream[4 : 4 + length]))
            del stream[: 4 + length]
            assert isinstance(answer, ResolveResponse) and len(answer.values) == 10
            seen.add(answer.request_id)
    sender.join(20)
    sock.close()
    assert seen == set(range(1, count + 1))


# ------------------------------------------------------------------------------------------------
# Repeated requests answered by their bytes (``node.transports.msgpack.Replies``)


def _resolution_bytes(packed_rid: bytes, handle: str, flags: int = 0) -> bytes:
    """A plain resolution whose request id is packed as ``packed_rid`` (any msgpack int form)."""
    rest: bytes = msgpack.packb([1, 0, flags, 0, {"h": handle}])
    return b"\x97\x01" + packed_rid + rest[1:]


#: (request id, how it is packed): every unsigned form, and a signed one only decoding reads
PACKED_IDS = [
    (5, b"\x05"),
    (200, b"\xcc\xc8"),
    (60000, b"\xcd\xea\x60"),
    (4_000_000_000, b"\xce\xee\x6b\x28\x00"),
    (7, b"\xd0\x07"),
]


async def _raw_answers(node: RunningNode, transport: str, payloads: list[bytes]) -> list[Response]:
    answers = []
    if transport == "tcp":
        client = await TCPClient.open(node.ports["tcp"])
        try:
            for payload in payloads:
                await client.send_raw(frame(payload))
                answer = await client.receive()
                assert isinstance(answer, Response)
                answers.append(answer)
        finally:
            await client.close()
    else:
        udp = await UDPClient.open(node.ports["udp"])
        try:
            for payload in payloads:
                udp.send_raw(payload)
                answer = decode_message(await udp.receive_raw())
                assert isinstance(answer, Response)
                answers.append(answer)
        finally:
            udp.close()
    return answers


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_repeated_request_bytes_answered_under_each_request_id(
    seeded: RunningNode, transport: str
) -> None:
    handle = f"{PREFIX}/item"
    payloads = [_resolution_bytes(packed, handle) for _, packed in PACKED_IDS for _ in range(2)]
    stats = seeded.node.metrics.transports[transport].op(OpCode.RESOLUTION)
    before = stats.success
    answers = seeded.call(lambda: _raw_answers(seeded, transport, payloads))
    expected = ask(seeded, transport, ResolveRequest(request_id=rid(), handle=handle))
    assert isinstance(expected, ResolveResponse)
    assert [a.request_id for a in answers] == [r for r, _ in PACKED_IDS for _ in range(2)]
    for answer in answers:
        assert isinstance(answer, ResolveResponse)
        assert (answer.handle, answer.values, answer.flags) == (
            expected.handle,
            expected.values,
            expected.flags,
        )
    for _ in range(100):  # the node counts an answer just after sending it, in its own thread
        if stats.success - before == len(payloads) + 1:
            break
        time.sleep(0.01)
    assert stats.success - before == len(payloads) + 1  # every answer counted, repeats too


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_repeated_request_bytes_see_writes_and_unhoming(
    seeded: RunningNode, transport: str
) -> None:
    handle = f"{PREFIX}/item"
    payload = _resolution_bytes(b"\x09", handle, flags=int(OpFlag.PUBLIC_ONLY))
    first, again = seeded.call(lambda: _raw_answers(seeded, transport, [payload, payload]))
    assert isinstance(again, ResolveResponse) and again == first
    added = AddValuesRequest(
        request_id=rid(), handle=handle, values=(hv(9, "NEW", "fresh"),), credential=CREDENTIAL
    )
    assert ask(seeded, transport, added).code == ResponseCode.SUCCESS
    (after_write,) = seeded.call(lambda: _raw_answers(seeded, transport, [payload]))
    assert isinstance(after_write, ResolveResponse)
    assert [v.index for v in after_write.values] == [*[v.index for v in first.values], 9]
    hidden = _resolution_bytes(b"\x0a", f"{PREFIX}/missing")
    upper = _resolution_bytes(b"\x0a", f"{PREFIX}/MISSING")
    gone, _, other = seeded.call(lambda: _raw_answers(seeded, transport, [hidden, hidden, upper]))
    assert isinstance(gone, ErrorResponse) and isinstance(other, ErrorResponse)
    assert gone.code == other.code == ResponseCode.HANDLE_NOT_FOUND
    assert (gone.handle, other.handle) == (f"{PREFIX}/missing", f"{PREFIX}/MISSING")
    assert http(seeded, "DELETE", f"/api/handles/{handle}", auth=True).status == 200
    (deleted,) = seeded.call(lambda: _raw_answers(seeded, transport, [payload]))
    assert deleted.code == ResponseCode.HANDLE_NOT_FOUND and deleted.request_id == 9


def test_repeated_request_bytes_of_an_unhomed_prefix_are_refused(seeded: RunningNode) -> None:
    payload = _resolution_bytes(b"\x0b", f"{PREFIX}/item")
    first, again = seeded.call(lambda: _raw_answers(seeded, "tcp", [payload, payload]))
    assert isinstance(again, ResolveResponse) and again == first
    node_admin = Credential(f"0.NA/{PREFIX}", 300, SECRET)
    unhome = UnhomePrefixRequest(request_id=rid(), prefix=PREFIX, credential=node_admin)
    assert ask(seeded, "tcp", unhome).code == ResponseCode.SUCCESS
    (refused,) = seeded.call(lambda: _raw_answers(seeded, "tcp", [payload]))
    assert refused.code == ResponseCode.SERVER_NOT_RESPONSIBLE and refused.request_id == 11


def test_padded_requests_are_answered_but_never_remembered(seeded: RunningNode) -> None:
    """Keys the decoder ignores could make each remembered request as big as a frame: only the
    plain encoding of a request is remembered, and padded ones are still answered."""
    handle = f"{PREFIX}/item"
    plain = _resolution_bytes(b"\x05", handle)
    padded_body: bytes = msgpack.packb([1, 0, 0, 0, {"h": handle, "pad": b"x" * 30_000}])
    padded = b"\x97\x01\x05" + padded_body[1:]
    answers = seeded.call(lambda: _raw_answers(seeded, "tcp", [padded, padded, plain]))
    assert all(isinstance(a, ResolveResponse) and a.handle == handle for a in answers)
    service = seeded.node.service

    async def learn() -> list[bytes]:
        replies = Replies(service)
        for payload in (padded, plain):
            request = decode_message(payload)
            assert isinstance(request, ResolveRequest)
            now = answer_now(service, request)
            assert now is not None and now[1] is not None  # answered from the cache
            replies.learn(payload, request, *now)
        return list(replies.known)

    assert seeded.call(learn) == [plain[3:]]
