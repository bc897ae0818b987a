"""The Handle.net REST JSON shapes: values, PUT bodies, answers, and their exact round trips."""

from __future__ import annotations

import calendar
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codes import AdminPermission, OpCode, ResponseCode
from protocol.errors import InvalidValue, MalformedMessage, ProtocolError
from protocol.jsonapi import (
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    iso_timestamp,
    parse_timestamp,
    response_from_json,
    response_to_json,
    value_from_json,
    value_to_json,
    values_from_body,
)
from protocol.messages import (
    CreateResponse,
    DoneResponse,
    ErrorResponse,
    Interface,
    ListHandlesResponse,
    ReferralResponse,
    ResolveResponse,
    Response,
    Server,
    SiteInfo,
)
from protocol.records import (
    HS_ADMIN,
    HS_SITE,
    HS_SITE_PREFIX,
    HS_VLIST,
    TTL_ABSOLUTE,
    TTL_RELATIVE,
    AdminValue,
    HandleValue,
    Reference,
    pack_vlist,
)
from protocol.site import encode_site, site_value

SETTINGS = settings(max_examples=200, deadline=None)

HANDLE = "88.118.8/A1"
T0 = calendar.timegm((2026, 11, 28, 10, 0, 0, 0, 0, 0))
T0_ISO = "2026-11-28T10:00:00Z"


def protocol_error(kind: type[ProtocolError], code: int, call: Any, *args: Any) -> ProtocolError:
    with pytest.raises(kind) as info:
        call(*args)
    assert type(info.value) is kind
    assert info.value.code == code
    return info.value


def malformed(call: Any, *args: Any) -> ProtocolError:
    return protocol_error(MalformedMessage, ResponseCode.PROTOCOL_ERROR, call, *args)


def invalid(call: Any, *args: Any) -> ProtocolError:
    return protocol_error(InvalidValue, ResponseCode.INVALID_VALUE, call, *args)


def roundtrip_json(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


# ---------------------------------------------------------------------------------------------
# Timestamps


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (T0, T0_ISO),
        (0, "1970-01-01T00:00:00Z"),
        (-1, "1969-12-31T23:59:59Z"),
        (MIN_TIMESTAMP, "0001-01-01T00:00:00Z"),
        (calendar.timegm((999, 12, 31, 23, 59, 59, 0, 0, 0)), "0999-12-31T23:59:59Z"),
        (MAX_TIMESTAMP, "9999-12-31T23:59:59Z"),
    ],
)
def test_iso_timestamps_are_utc_with_z(seconds: int, text: str) -> None:
    assert iso_timestamp(seconds) == text
    assert parse_timestamp(text) == seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2026-11-28T12:00:00+02:00", T0),
        ("2026-11-28T10:00:00", T0),
        ("2026-11-28T10:00:00.999Z", T0),
        ("2026-11-28T10:00:00+00:00", T0),
        (T0, T0),
    ],
)
def test_parse_timestamp_accepts_offsets_and_integers(text: Any, seconds: int) -> None:
    assert parse_timestamp(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "2026-13-01T00:00:00Z",
        1.5,
        None,
        True,
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
        MAX_TIMESTAMP + 1,
        MIN_TIMESTAMP - 1,
    ],
)
def test_bad_timestamps_are_malformed(text: Any) -> None:
    malformed(parse_timestamp, text)


# ---------------------------------------------------------------------------------------------
# One value


def test_value_to_json_is_the_reference_shape() -> None:
    value = HandleValue(1, "URL", b"https://example.com/a1", timestamp=T0)
    assert value_to_json(value) == {
        "index": 1,
        "type": "URL",
        "data": {"format": "string", "value": "https://example.com/a1"},
        "ttl": 86400,
        "timestamp": T0_ISO,
    }
    assert list(value_to_json(value)) == ["index", "type", "data", "ttl", "timestamp"]


def test_value_to_json_optional_fields() -> None:
    value = HandleValue(
        2,
        "X.BIN",
        b"\xff\x00",
        ttl=T0 + 3600,
        ttl_type=TTL_ABSOLUTE,
        timestamp=0,
        permissions=0b1100,
        references=(Reference("88.118.8/B", 3),),
    )
    assert value_to_json(value) == {
        "index": 2,
        "type": "X.BIN",
        "data": {"format": "base64", "value": "/wA="},
        "permissions": "1100",
        "ttlType": 1,
        "ttl": T0 + 3600,
        "timestamp": "1970-01-01T00:00:00Z",
        "references": [{"handle": "88.118.8/B", "index": 3}],
    }


@pytest.mark.parametrize(("permissions", "shown"), [(0, "0000"), (0xF, "1111"), (0x2, "0010")])
def test_permissions_only_when_not_default(permissions: int, shown: str) -> None:
    value = HandleValue(1, "URL", b"", permissions=permissions)
    assert value_to_json(value)["permissions"] == shown
    assert "permissions" not in value_to_json(HandleValue(1, "URL", b""))


def test_admin_and_vlist_values_in_json() -> None:
    admin = AdminValue("0.NA/88.118.8", 200, AdminPermission(0x7F3))
    value = HandleValue(100, HS_ADMIN, admin.to_bytes(), timestamp=T0)
    shown = value_to_json(value)
    assert shown["data"] == {
        "format": "admin",
        "value": {"handle": "0.NA/88.118.8", "index": 200, "permissions": "011111110011"},
    }
    assert value_from_json(shown) == value
    vlist = HandleValue(200, HS_VLIST, pack_vlist((Reference("88.1/a", 1),)), timestamp=T0)
    assert value_to_json(vlist)["data"] == {
        "format": "vlist",
        "value": [{"handle": "88.1/a", "index": 1}],
    }
    assert value_from_json(value_to_json(vlist)) == vlist


SITE = SiteInfo(
    serial=4,
    hash_option=1,
    servers=(Server(1, "192.0.2.1", (Interface(2, 0, 2641), Interface(1, 3, 8443))),),
    multi_primary=True,
)
SITE_JSON = {
    "version": 1,
    "protocolVersion": "2.11",
    "serialNumber": 4,
    "primaryMask": {"primary": True, "multiPrimary": True},
    "hashOption": 1,
    "hashFilter": "",
    "attributes": [],
    "servers": [
        {
            "serverId": 1,
            "address": "192.0.2.1",
            "publicKey": {"format": "hex", "value": ""},
            "interfaces": [
                {"query": True, "admin": False, "protocol": "UDP", "port": 2641},
                {"query": False, "admin": True, "protocol": "HTTPS", "port": 8443},
            ],
        }
    ],
}


@pytest.mark.parametrize("type_name", [HS_SITE, HS_SITE_PREFIX])
def test_site_values_in_json(type_name: str) -> None:
    value = HandleValue(1, type_name, encode_site(SITE), timestamp=T0)
    shown = value_to_json(value)
    assert shown == {
        "index": 1,
        "type": type_name,
        "data": {"format": "site", "value": SITE_JSON},
        "ttl": 86400,
        "timestamp": T0_ISO,
    }
    assert value_from_json(roundtrip_json(shown)) == value


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (b"\x00\x01\xff", "base64"),  # truncated
        (b"not a site", "string"),
        (encode_site(SITE) + b"\x00", "base64"),  # trailing bytes
        (b"\x00\x02" + encode_site(SITE)[2:], "base64"),  # well-formed, another data version
    ],
)
def test_site_data_the_site_shape_cannot_show_is_shown_as_bytes(data: bytes, fmt: str) -> None:
    value = HandleValue(1, HS_SITE, data, timestamp=T0)
    shown = value_to_json(value)
    assert shown["data"]["format"] == fmt
    assert value_from_json(roundtrip_json(shown)) == value


@pytest.mark.parametrize(
    "site",
    [
        {**SITE_JSON, "servers": [{**SITE_JSON["servers"][0], "address": "node.example"}]},
        {**SITE_JSON, "serialNumber": 70000},
        {**SITE_JSON, "servers": "192.0.2.1"},
        {**SITE_JSON, "hashOption": None},
        [SITE_JSON],
    ],
)
def test_bad_site_json_is_code_202(site: Any) -> None:
    invalid(
        value_from_json, {"index": 1, "type": HS_SITE, "data": {"format": "site", "value": site}}
    )


def test_value_from_json_defaults() -> None:
    assert value_from_json({"index": 1, "type": "URL", "data": "https://x"}) == HandleValue(
        1, "URL", b"https://x", ttl=86400, ttl_type=TTL_RELATIVE, timestamp=0, permissions=0xE
    )
    assert value_from_json({"index": 1, "type": "URL"}).data == b""
    assert value_from_json({"index": 1, "type": "URL", "data": {"value": "x"}}).data == b"x"


@pytest.mark.parametrize(
    ("data", "raw"),
    [
        ("plain text", b"plain text"),
        ({"format": "string", "value": "中文"}, "中文".encode()),
        ({"format": "base64", "value": "/wAQ"}, b"\xff\x00\x10"),
        ({"format": "hex", "value": "ff0010"}, b"\xff\x00\x10"),
        (
            {"format": "admin", "value": {"handle": "x/y", "index": 300, "permissions": "1"}},
            AdminValue("x/y", 300, AdminPermission(1)).to_bytes(),
        ),
        (
            {"format": "vlist", "value": [{"handle": "x/y", "index": 2}]},
            pack_vlist((Reference("x/y", 2),)),
        ),
    ],
)
def test_value_from_json_data_formats(data: Any, raw: bytes) -> None:
    assert value_from_json({"index": 7, "type": "T", "data": data}).data == raw


def test_a_public_key_reads_and_shows_in_the_key_format() -> None:
    """One of the reference's formats (string, base64, hex, admin, vlist, site, key)."""
    data = {"format": "key", "value": "AAAAB3NzaC1yc2E="}
    value = value_from_json({"index": 300, "type": "HS_PUBKEY", "data": data})
    assert value.data == b"\x00\x00\x00\x07ssh-rsa"
    assert value_to_json(value)["data"] == data


def test_value_from_json_reads_every_field() -> None:
    obj = {
        "index": 9,
        "type": "EMAIL",
        "data": {"format": "string", "value": "a@b.c"},
        "permissions": "1011",
        "ttlType": 1,
        "ttl": 5,
        "timestamp": T0_ISO,
        "references": [{"handle": "x/y", "index": 1}],
    }
    assert value_from_json(obj) == HandleValue(
        9, "EMAIL", b"a@b.c", 5, TTL_ABSOLUTE, T0, 0b1011, (Reference("x/y", 1),)
    )


@pytest.mark.parametrize(
    "obj",
    [
        [],
        "URL",
        None,
        {"type": "URL", "data": "x"},
        {"index": "1", "type": "URL", "data": "x"},
        {"index": True, "type": "URL", "data": "x"},
        {"index": 1.0, "type": "URL", "data": "x"},
        {"index": 1, "data": "x"},
        {"index": 1, "type": 5, "data": "x"},
        {"index": 1, "type": "URL", "data": ["x"]},
        {"index": 1, "type": "URL", "data": 5},
        {"index": 1, "type": "URL", "data": None},
        {"index": 1, "type": "URL", "data": "x", "ttl": "86400"},
        {"index": 1, "type": "URL", "data": "x", "ttlType": None},
        {"index": 1, "type": "URL", "data": "x", "timestamp": "yesterday"},
        {"index": 1, "type": "URL", "data": "x", "references": {}},
        {"index": 1, "type": "URL", "data": "x", "references": ["x/y"]},
        {"index": 1, "type": "URL", "data": "x", "references": [{"handle": 1, "index": 1}]},
        {"index": 1, "type": "URL", "data": "x", "references": [{"handle": "x/y"}]},
    ],
)
def test_wrong_shapes_are_protocol_errors(obj: Any) -> None:
    malformed(value_from_json, obj)


def test_array_data_is_code_4() -> None:
    error = malformed(value_from_json, {"index": 1, "type": "URL", "data": ["a", "b"]})
    assert error.message == "value 1 data must be an object or a string"


@pytest.mark.parametrize(
    "obj",
    [
        {"index": 1, "type": "URL", "data": {"format": "site", "value": "x"}},
        {"index": 1, "type": "URL", "data": {"format": "nope", "value": "x"}},
        {"index": 1, "type": "URL", "data": {"format": 5, "value": "x"}},
        {"index": 1, "type": "URL", "data": {"format": "base64", "value": "!!"}},
        {"index": 1, "type": "URL", "data": {"format": "hex", "value": "xyz"}},
        {"index": 1, "type": "URL", "data": {"format": "string", "value": 5}},
        {"index": 1, "type": "URL", "data": {"format": "admin", "value": "x"}},
        {"index": 1, "type": "URL", "data": {"format": "vlist", "value": "x"}},
        {"index": 1, "type": "URL", "data": "x", "permissions": "111"},
        {"index": 1, "type": "URL", "data": "x", "permissions": "11a1"},
        {"index": 1, "type": "URL", "data": "x", "permissions": 14},
    ],
)
def test_right_shape_wrong_content_is_code_202(obj: Any) -> None:
    invalid(value_from_json, obj)


def test_unknown_format_names_it() -> None:
    error = invalid(value_from_json, {"index": 3, "type": "X", "data": {"format": "pem"}})
    assert error.message == "value 3 has unsupported data format 'pem'"


# ---------------------------------------------------------------------------------------------
# PUT bodies

V1 = {"index": 1, "type": "URL", "data": "https://example.com/1"}
V2 = {"index": 2, "type": "EMAIL", "data": {"format": "string", "value": "a@b.c"}}
PARSED = (
    HandleValue(1, "URL", b"https://example.com/1"),
    HandleValue(2, "EMAIL", b"a@b.c"),
)


@pytest.mark.parametrize(
    "body",
    [
        {"values": [V1, V2]},
        [V1, V2],
        {"handle": HANDLE, "values": [V1, V2]},
        {"handle": HANDLE.lower(), "values": [V1, V2]},
        {"responseCode": 1, "handle": HANDLE, "values": [V1, V2]},
    ],
)
def test_values_from_body_shapes(body: Any) -> None:
    assert values_from_body(body, HANDLE) == PARSED


def test_one_value_object_is_a_body() -> None:
    assert values_from_body(V1, HANDLE) == PARSED[:1]
    assert values_from_body([], HANDLE) == ()
    assert values_from_body({"values": []}, HANDLE) == ()


@pytest.mark.parametrize(
    "body",
    [
        {"handle": "88.118.8/OTHER", "values": [V1]},
        {"handle": 5, "values": [V1]},
        {"values": "x"},
        {"values": V1},
        "x",
        None,
        5,
        [V1, "x"],
    ],
)
def test_bad_bodies_are_code_4(body: Any) -> None:
    malformed(values_from_body, body, HANDLE)


def test_body_naming_another_handle_says_so() -> None:
    error = malformed(values_from_body, {"handle": "88.1/B", "values": []}, "88.1/A")
    assert error.message == "the body names handle '88.1/B', not '88.1/A'"


# ---------------------------------------------------------------------------------------------
# Answers


def test_resolve_answer_shape() -> None:
    response = ResolveResponse(
        handle=HANDLE, values=(HandleValue(1, "URL", b"https://example.com/a1", timestamp=T0),)
    )
    shown = response_to_json(response)
    assert shown == {
        "responseCode": 1,
        "handle": HANDLE,
        "values": [
            {
                "index": 1,
                "type": "URL",
                "data": {"format": "string", "value": "https://example.com/a1"},
                "ttl": 86400,
                "timestamp": T0_ISO,
            }
        ],
    }
    assert list(shown) == ["responseCode", "handle", "values"]
    assert type(shown["responseCode"]) is int


def test_create_answer_shape() -> None:
    assert response_to_json(CreateResponse(handle=HANDLE)) == {"responseCode": 1, "handle": HANDLE}
    assert response_to_json(CreateResponse(handle=HANDLE, created=False)) == {
        "responseCode": 1,
        "handle": HANDLE,
    }


def test_list_answer_total_count_is_a_string() -> None:
    response = ListHandlesResponse(
        prefix="88.118.8", total=1234, page=0, page_size=100, handles=("88.118.8/a",)
    )
    shown = response_to_json(response)
    assert shown == {
        "responseCode": 1,
        "prefix": "88.118.8",
        "totalCount": "1234",
        "page": 0,
        "pageSize": 100,
        "handles": ["88.118.8/a"],
    }
    assert type(shown["totalCount"]) is str


@pytest.mark.parametrize(
    ("response", "shown"),
    [
        (
            ErrorResponse(
                code=ResponseCode.HANDLE_NOT_FOUND,
                answers=OpCode.RESOLUTION,
                handle=HANDLE,
                message="Handle Not Found",
            ),
            {"responseCode": 100, "handle": HANDLE, "message": "Handle Not Found"},
        ),
        (
            ErrorResponse(code=200, answers=OpCode.RESOLUTION, handle=HANDLE),
            {"responseCode": 200, "handle": HANDLE, "values": []},
        ),
        (
            ErrorResponse(code=200, answers=OpCode.REMOVE_VALUE, handle=HANDLE, message="m"),
            {"responseCode": 200, "handle": HANDLE, "message": "m"},
        ),
        (
            ErrorResponse(code=102, answers=OpCode.CREATE_HANDLE, message="empty handle"),
            {"responseCode": 102, "message": "empty handle"},
        ),
        (
            ErrorResponse(code=ResponseCode.AUTHENTICATION_NEEDED, answers=OpCode.LIST_HANDLES),
            {"responseCode": 402},
        ),
        (DoneResponse(answers=OpCode.DELETE_HANDLE), {"responseCode": 1}),
        (
            ReferralResponse(
                code=302, answers=OpCode.CREATE_HANDLE, prefix_handle="0.NA/88.100", values=()
            ),
            {"responseCode": 302, "referral": "0.NA/88.100", "values": []},
        ),
    ],
)
def test_error_and_done_answer_shapes(response: Response, shown: dict[str, Any]) -> None:
    assert response_to_json(response) == shown
    assert list(response_to_json(response))[0] == "responseCode"


def test_referral_answer_shape() -> None:
    referral = ReferralResponse(
        code=ResponseCode.PREFIX_REFERRAL,
        answers=OpCode.RESOLUTION,
        handle="88.100.5/X",
        prefix_handle="0.NA/88.100",
        values=(site_value(SITE),),
    )
    shown = response_to_json(referral)
    assert shown == {
        "responseCode": 303,
        "handle": "88.100.5/X",
        "referral": "0.NA/88.100",
        "values": [
            {
                "index": 1,
                "type": "HS_SITE",
                "data": {"format": "site", "value": SITE_JSON},
                "ttl": 86400,
                "timestamp": "1970-01-01T00:00:00Z",
            }
        ],
    }
    assert list(shown) == ["responseCode", "handle", "referral", "values"]
    assert response_from_json(roundtrip_json(shown), OpCode.RESOLUTION) == referral


@pytest.mark.parametrize(
    "obj",
    [
        {"responseCode": 303, "handle": "88.100.5/X", "message": "elsewhere"},
        {"responseCode": 303, "referral": "0.NA/88.100"},  # no values
        {"responseCode": 302, "values": []},  # no referral
        {"responseCode": 302, "referral": 5, "values": []},
        {"responseCode": 301, "referral": "0.NA/88.100", "values": []},
    ],
)
def test_referral_codes_without_the_referral_shape_are_errors(obj: dict[str, Any]) -> None:
    back = response_from_json(obj, OpCode.RESOLUTION)
    assert type(back) is ErrorResponse
    assert back.code == obj["responseCode"]


def test_referral_values_are_parsed_like_any_values() -> None:
    bad = {"responseCode": 303, "referral": "0.NA/88", "values": [{"index": 1}]}
    malformed(response_from_json, bad, OpCode.RESOLUTION)
    site = {"format": "site", "value": {}}
    bad["values"] = [{"index": 1, "type": HS_SITE, "data": site}]
    invalid(response_from_json, bad, OpCode.RESOLUTION)


def test_response_from_json_reference_examples() -> None:
    body = json.loads('{"responseCode":100,"handle":"88.118.8/NOPE","message":"Handle Not Found"}')
    assert response_from_json(body, OpCode.RESOLUTION) == ErrorResponse(
        code=100, answers=OpCode.RESOLUTION, handle="88.118.8/NOPE", message="Handle Not Found"
    )
    body = json.loads('{"responseCode":200,"values":[]}')
    assert response_from_json(body, OpCode.RESOLUTION) == ErrorResponse(
        code=200, answers=OpCode.RESOLUTION
    )
    body = json.loads(
        '{"responseCode":1,"prefix":"P","totalCount":"1234","page":0,"pageSize":100,'
        '"handles":["P/a"]}'
    )
    assert response_from_json(body, OpCode.LIST_HANDLES) == ListHandlesResponse(
        prefix="P", total=1234, page=0, page_size=100, handles=("P/a",)
    )
    assert response_from_json({"responseCode": 1, "handle": "P/x"}, OpCode.CREATE_HANDLE) == (
        CreateResponse(handle="P/x")
    )


@pytest.mark.parametrize(
    ("obj", "op"),
    [
        ([], OpCode.RESOLUTION),
        ({}, OpCode.RESOLUTION),
        ({"responseCode": "1"}, OpCode.RESOLUTION),
        ({"responseCode": True}, OpCode.RESOLUTION),
        ({"responseCode": 1, "handle": 5, "values": []}, OpCode.RESOLUTION),
        ({"responseCode": 1, "handle": "x/y"}, OpCode.RESOLUTION),
        ({"responseCode": 1, "handle": "x/y", "values": {}}, OpCode.RESOLUTION),
        ({"responseCode": 1, "handle": "x/y", "values": [5]}, OpCode.RESOLUTION),
        ({"responseCode": 1, "prefix": "P"}, OpCode.LIST_HANDLES),
        (
            {
                "responseCode": 1,
                "prefix": "P",
                "totalCount": "x",
                "page": 0,
                "pageSize": 1,
                "handles": [],
            },
            OpCode.LIST_HANDLES,
        ),
        (
            json.loads(
                '{"responseCode":1,"prefix":"P","totalCount":Infinity,"page":0,"pageSize":1,'
                '"handles":[]}'
            ),
            OpCode.LIST_HANDLES,
        ),
        (
            {
                "responseCode": 1,
                "prefix": "P",
                "totalCount": "1",
                "page": 0,
                "pageSize": 1,
                "handles": 5,
            },
            OpCode.LIST_HANDLES,
        ),
        ({"responseCode": 1}, OpCode.DELETE_HANDLE),
    ],
)
def test_bad_answers_are_code_4(obj: Any, op: OpCode) -> None:
    malformed(response_from_json, obj, op)


# ---------------------------------------------------------------------------------------------
# Exact round trips through json.dumps / json.loads

TEXT = st.text(st.characters(codec="utf-8"), max_size=20)
INT32 = st.integers(-(2**31), 2**31 - 1)
timestamps = st.integers(MIN_TIMESTAMP, MAX_TIMESTAMP)
references = st.builds(Reference, TEXT, INT32)
admin_data = st.builds(
    AdminValue, TEXT.filter(bool), INT32, st.integers(0, 0xFFFF).map(AdminPermission)
).map(AdminValue.to_bytes)
vlist_data = st.lists(references, max_size=4).map(lambda refs: pack_vlist(tuple(refs)))
generic_types = TEXT.filter(lambda t: t not in (HS_ADMIN, HS_VLIST, HS_SITE, HS_SITE_PREFIX))


def _values(type_names: st.SearchStrategy[str], data: st.SearchStrategy[bytes]) -> Any:
    return st.builds(
        HandleValue,
        index=st.integers(1, 2**31 - 1),
        type=type_names,
        data=data,
        ttl=st.integers(0, 2**32 - 1),
        ttl_type=st.sampled_from([TTL_RELATIVE, TTL_ABSOLUTE]),
        timestamp=timestamps,
        permissions=st.integers(0, 15),
        references=st.lists(references, max_size=3).map(tuple),
    )


site_interfaces = st.builds(
    Interface, st.integers(1, 3), st.integers(0, 3), st.integers(-(2**31), 2**31 - 1)
)
site_data = st.builds(
    SiteInfo,
    serial=st.integers(0, 0xFFFF),
    hash_option=st.integers(0, 255),
    servers=st.lists(
        st.builds(
            Server,
            INT32,
            st.ip_addresses().map(str),
            st.lists(site_interfaces, max_size=3).map(tuple),
        ),
        max_size=3,
    ).map(tuple),
    primary=st.booleans(),
    multi_primary=st.booleans(),
).map(encode_site)
json_values = st.one_of(
    _values(st.sampled_from([HS_SITE, HS_SITE_PREFIX]), st.one_of(site_data, st.binary())),
    _values(generic_types, st.binary(max_size=64)),
    _values(generic_types, TEXT.map(str.encode)),
    _values(st.just(HS_ADMIN), admin_data),
    _values(st.just(HS_VLIST), vlist_data),
)


@SETTINGS
@given(json_values)
def test_values_round_trip_exactly(value: HandleValue) -> None:
    assert value_from_json(roundtrip_json(value_to_json(value))) == value


resolve_responses = st.builds(
    ResolveResponse, handle=TEXT, values=st.lists(json_values, max_size=4).map(tuple)
)
list_responses = st.builds(
    ListHandlesResponse,
    prefix=TEXT,
    total=st.integers(0, 10**12),
    page=st.integers(0, 10**6),
    page_size=st.integers(0, 10**4),
    handles=st.lists(TEXT, max_size=5).map(tuple),
)
create_responses = st.builds(CreateResponse, handle=TEXT)
error_responses = st.builds(
    ErrorResponse,
    code=st.integers(-(2**40), 2**40).filter(lambda c: c != 1),
    answers=st.sampled_from(list(OpCode)),
    handle=TEXT,
    message=TEXT,
)

referral_responses = st.builds(
    ReferralResponse,
    code=st.sampled_from([302, 303]),
    answers=st.sampled_from(list(OpCode)),
    handle=TEXT,
    prefix_handle=TEXT,
    values=st.lists(json_values, max_size=3).map(tuple),
)


@SETTINGS
@given(
    st.one_of(
        resolve_responses.map(lambda r: (r, OpCode.RESOLUTION)),
        list_responses.map(lambda r: (r, OpCode.LIST_HANDLES)),
        create_responses.map(lambda r: (r, OpCode.CREATE_HANDLE)),
        error_responses.map(lambda r: (r, r.answers)),
        referral_responses.map(lambda r: (r, r.answers)),
    )
)
def test_answers_round_trip_exactly(case: tuple[Response, OpCode]) -> None:
    response, op = case
    back = response_from_json(roundtrip_json(response_to_json(response)), op)
    assert type(back) is type(response)
    assert back == response
