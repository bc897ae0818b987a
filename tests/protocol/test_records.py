"""Handle values: HS_ADMIN / HS_VLIST data, the value-type registry, record validation, TTLs."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codes import DEFAULT_PERMISSIONS, AdminPermission, ResponseCode
from protocol.errors import InvalidValue, ProtocolError
from protocol.identifiers import PROTOCOL, SNMS
from protocol.messages import Interface, Server, SiteInfo
from protocol.records import (
    DEFAULT_TTL_S,
    FORMATS,
    HS_ADMIN,
    HS_SITE,
    HS_SITE_PREFIX,
    HS_VLIST,
    MAX_CACHE_TTL_S,
    MAX_DATA_BYTES,
    MAX_INDEX,
    MAX_REFERENCES,
    MAX_VALUES,
    REGISTRY,
    TTL_ABSOLUTE,
    TTL_RELATIVE,
    AdminValue,
    HandleValue,
    Reference,
    TypeRegistry,
    ValueType,
    pack_vlist,
    unpack_vlist,
    validate_record,
    validate_value,
)
from protocol.site import encode_site

SETTINGS = settings(max_examples=200, deadline=None)

REFERENCE_ADMIN_JSON = {"handle": "0.NA/88.118.8", "index": 200, "permissions": "011111110011"}


def invalid_value(call: object, *args: object, **kwargs: object) -> InvalidValue:
    """Run ``call`` expecting InvalidValue with code 202; return the error."""
    assert callable(call)
    with pytest.raises(InvalidValue) as info:
        call(*args, **kwargs)
    assert isinstance(info.value, ProtocolError)
    assert info.value.code == int(ResponseCode.INVALID_VALUE) == 202
    return info.value


def test_constants() -> None:
    assert (DEFAULT_TTL_S, MAX_CACHE_TTL_S, MAX_VALUES) == (86400, 172800, 2048)
    assert (MAX_INDEX, MAX_DATA_BYTES, MAX_REFERENCES) == (2**31 - 1, 262144, 256)
    assert (TTL_RELATIVE, TTL_ABSOLUTE) == (0, 1)


def test_handle_value_defaults() -> None:
    value = HandleValue(1, "URL", b"https://example.com")
    assert value.ttl == 86400 and value.ttl_type == TTL_RELATIVE
    assert value.timestamp == 0 and value.references == ()
    assert value.permissions == DEFAULT_PERMISSIONS == 0xE
    assert value.public_read is True
    assert HandleValue(1, "URL", b"", permissions=0xC).public_read is False


# ---------------------------------------------------------------------------------------------
# HS_ADMIN


def test_admin_binary_layout() -> None:
    admin = AdminValue("0.NA/88.118.8", 200, AdminPermission(0x7F3))
    expected = bytes.fromhex("07f3") + struct.pack(">I", 13) + b"0.NA/88.118.8"
    expected += struct.pack(">i", 200)
    assert admin.to_bytes() == expected
    assert AdminValue.from_bytes(expected) == admin


def test_admin_json_bit_string_is_msb_first() -> None:
    admin = AdminValue.from_json(REFERENCE_ADMIN_JSON)
    assert admin == AdminValue("0.NA/88.118.8", 200, AdminPermission(0x7F3))
    assert admin.permissions == (
        AdminPermission.ADD_HANDLE
        | AdminPermission.DELETE_HANDLE
        | AdminPermission.MODIFY_VALUE
        | AdminPermission.REMOVE_VALUE
        | AdminPermission.ADD_VALUE
        | AdminPermission.MODIFY_ADMIN
        | AdminPermission.REMOVE_ADMIN
        | AdminPermission.ADD_ADMIN
        | AdminPermission.READ_VALUE
    )
    assert AdminPermission.LIST_HANDLES not in admin.permissions
    assert admin.to_json() == REFERENCE_ADMIN_JSON
    first = {"handle": "x/y", "index": 300, "permissions": "100000000000"}
    last = {"handle": "x/y", "index": 300, "permissions": "000000000001"}
    assert AdminValue.from_json(first).permissions == AdminPermission.LIST_HANDLES
    assert AdminValue.from_json(last).permissions == AdminPermission.ADD_HANDLE
    short = {"handle": "x/y", "index": 300, "permissions": "11"}
    assert AdminValue.from_json(short).permissions == 0x3


def test_admin_json_always_shows_12_bits() -> None:
    assert AdminValue("x/y", 300, AdminPermission(0)).to_json()["permissions"] == "000000000000"
    assert AdminValue("x/y", 300, AdminPermission(0xFFF)).to_json()["permissions"] == "1" * 12


admin_values = st.builds(
    AdminValue,
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=30),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(0, 0xFFFF).map(AdminPermission),
)


@SETTINGS
@given(admin_values)
def test_admin_round_trips_through_bytes_and_json(admin: AdminValue) -> None:
    assert AdminValue.from_bytes(admin.to_bytes()) == admin
    assert AdminValue.from_json(admin.to_json()) == admin
    assert (
        FORMATS["admin"].from_json(FORMATS["admin"].to_json(admin.to_bytes())) == admin.to_bytes()
    )


VALID_ADMIN = AdminValue("88.1/ADMIN", 300, AdminPermission(0xFFF)).to_bytes()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "HS_ADMIN data is shorter than its permission field"),
        (b"\x07", "HS_ADMIN data is shorter than its permission field"),
        (b"\x07\xf3", "HS_ADMIN handle: truncated string length"),
        (b"\x07\xf3\x00\x00\x00", "HS_ADMIN handle: truncated string length"),
        (b"\x07\xf3\x00\x00\x00\x05ab", "HS_ADMIN handle: string of 5 bytes runs past the data"),
        (b"\x07\xf3\xff\xff\xff\xffab", "runs past the data"),
        (b"\x07\xf3\x00\x00\x00\x01\xff\x00\x00\x00\x01", "HS_ADMIN handle: string is not UTF-8"),
        (b"\x07\xf3\x00\x00\x00\x01x\x00\x00", "HS_ADMIN index: truncated integer"),
        (VALID_ADMIN + b"\x00", "HS_ADMIN data has trailing bytes"),
    ],
)
def test_malformed_admin_bytes(data: bytes, message: str) -> None:
    assert message in invalid_value(AdminValue.from_bytes, data).message


@pytest.mark.parametrize(
    "obj",
    [
        "0.NA/88.118.8",
        [],
        {"index": 200, "permissions": "1"},
        {"handle": "", "index": 200, "permissions": "1"},
        {"handle": "x/y", "index": "200", "permissions": "1"},
        {"handle": "x/y", "index": True, "permissions": "1"},
        {"handle": "x/y", "index": 200},
        {"handle": "x/y", "index": 200, "permissions": ""},
        {"handle": "x/y", "index": 200, "permissions": "012"},
        {"handle": "x/y", "index": 200, "permissions": "1" * 17},
        {"handle": "x/y", "index": 200, "permissions": 0x7F3},
        {"handle": "x/y", "index": 2**31, "permissions": "1"},
        {"handle": "x/y", "index": -(2**31) - 1, "permissions": "1"},
        {"handle": "x/\ud800", "index": 200, "permissions": "1"},
    ],
)
def test_malformed_admin_json(obj: object) -> None:
    invalid_value(AdminValue.from_json, obj)
    invalid_value(FORMATS["admin"].from_json, obj)


@SETTINGS
@given(st.binary(max_size=40))
def test_any_admin_bytes_parse_exactly_or_raise_invalid_value(data: bytes) -> None:
    try:
        admin = AdminValue.from_bytes(data)
    except InvalidValue as exc:
        assert exc.code == 202
    else:
        assert admin.to_bytes() == data


# ---------------------------------------------------------------------------------------------
# HS_VLIST


def test_vlist_binary_layout() -> None:
    refs = (Reference("88.1/a", 1), Reference("88.1/bc", 300))
    data = pack_vlist(refs)
    assert data == (
        struct.pack(">I", 2)
        + struct.pack(">I", 6)
        + b"88.1/a"
        + struct.pack(">i", 1)
        + struct.pack(">I", 7)
        + b"88.1/bc"
        + struct.pack(">i", 300)
    )
    assert unpack_vlist(data) == refs
    assert pack_vlist(()) == b"\x00\x00\x00\x00"
    assert unpack_vlist(b"\x00\x00\x00\x00") == ()


references = st.builds(
    Reference, st.text(st.characters(codec="utf-8"), max_size=20), st.integers(-(2**31), 2**31 - 1)
)


@SETTINGS
@given(st.lists(references, max_size=6).map(tuple))
def test_vlist_round_trips(refs: tuple[Reference, ...]) -> None:
    assert unpack_vlist(pack_vlist(refs)) == refs
    as_json = FORMATS["vlist"].to_json(pack_vlist(refs))
    assert as_json == [{"handle": r.handle, "index": r.index} for r in refs]
    assert FORMATS["vlist"].from_json(as_json) == pack_vlist(refs)


ONE_REF = pack_vlist((Reference("88.1/a", 1),))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "HS_VLIST count: truncated integer"),
        (b"\x00\x00\x00", "HS_VLIST count: truncated integer"),
        (b"\xff\xff\xff\xff", "HS_VLIST count does not match its data"),
        (b"\x7f\xff\xff\xff", "HS_VLIST count does not match its data"),
        (b"\x00\x00\x00\x02" + ONE_REF[4:] + b"\x00" * 4, "HS_VLIST index: truncated integer"),
        (b"\x00\x00\x00\x02" + ONE_REF[4:], "HS_VLIST handle: truncated string length"),
        (b"\x00\x00\x00\x03" + ONE_REF[4:], "HS_VLIST count does not match its data"),
        (ONE_REF[:-2], "HS_VLIST index: truncated integer"),
        (ONE_REF + b"\x00", "HS_VLIST data has trailing bytes"),
        (b"\x00\x00\x00\x01\x00\x00\x00\x01\xc3\x00\x00\x00\x01", "string is not UTF-8"),
    ],
)
def test_malformed_vlist_bytes(data: bytes, message: str) -> None:
    assert message in invalid_value(unpack_vlist, data).message


@pytest.mark.parametrize(
    "obj",
    [
        {"handle": "x", "index": 1},
        "x/y",
        ["x/y"],
        [{"handle": "x/y"}],
        [{"handle": 5, "index": 1}],
        [{"handle": "x/y", "index": False}],
        [{"handle": "x/y", "index": 2**31}],
        [{"handle": "x/\udfff", "index": 1}],
    ],
)
def test_malformed_vlist_json(obj: object) -> None:
    invalid_value(FORMATS["vlist"].from_json, obj)


@SETTINGS
@given(st.binary(max_size=40))
def test_any_vlist_bytes_parse_exactly_or_raise_invalid_value(data: bytes) -> None:
    try:
        refs = unpack_vlist(data)
    except InvalidValue as exc:
        assert exc.code == 202
    else:
        assert pack_vlist(refs) == data


# ---------------------------------------------------------------------------------------------
# Formats and the registry


def test_format_names() -> None:
    assert set(FORMATS) == {"string", "base64", "hex", "key", "admin", "vlist", "site"}
    assert {name: fmt.name for name, fmt in FORMATS.items()} == {n: n for n in FORMATS}


@pytest.mark.parametrize(
    ("fmt", "data", "shown"),
    [
        ("string", "https://例子.cn/a".encode(), "https://例子.cn/a"),
        ("base64", b"\xff\x00\x10", "/wAQ"),
        ("hex", b"\xff\x00\x10", "ff0010"),
        ("admin", VALID_ADMIN, {"handle": "88.1/ADMIN", "index": 300, "permissions": "1" * 12}),
        ("vlist", ONE_REF, [{"handle": "88.1/a", "index": 1}]),
    ],
)
def test_formats_show_and_read_back(fmt: str, data: bytes, shown: object) -> None:
    assert FORMATS[fmt].to_json(data) == shown
    assert FORMATS[fmt].from_json(shown) == data


@pytest.mark.parametrize(
    ("fmt", "value"),
    [
        ("string", 5),
        ("string", None),
        ("string", "\ud800"),
        ("base64", "not base64!"),
        ("base64", "/wA"),
        ("base64", "é"),
        ("base64", 5),
        ("hex", "zz"),
        ("hex", "abc"),
        ("hex", ["ab"]),
    ],
)
def test_bad_format_values_are_invalid(fmt: str, value: object) -> None:
    invalid_value(FORMATS[fmt].from_json, value)


def test_registering_a_name_twice_is_an_error() -> None:
    registry = TypeRegistry()
    registry.register("X.TYPE", ValueType())
    with pytest.raises(ValueError, match="value type 'X.TYPE' is already registered"):
        registry.register("X.TYPE", ValueType())
    with pytest.raises(ValueError, match="'HS_ADMIN' is already registered"):
        REGISTRY.register(HS_ADMIN, ValueType())


def test_registry_knows_admin_and_vlist() -> None:
    assert REGISTRY.data_to_json(HS_ADMIN, VALID_ADMIN) == {
        "format": "admin",
        "value": {"handle": "88.1/ADMIN", "index": 300, "permissions": "111111111111"},
    }
    assert REGISTRY.data_to_json(HS_VLIST, ONE_REF) == {
        "format": "vlist",
        "value": [{"handle": "88.1/a", "index": 1}],
    }
    invalid_value(REGISTRY.data_to_json, HS_ADMIN, b"\x00")


@pytest.mark.parametrize("type_name", [HS_SITE, HS_SITE_PREFIX])
def test_registry_shows_site_data_as_site_when_it_can(type_name: str) -> None:
    shown = REGISTRY.data_to_json(type_name, SITE_DATA)
    assert shown["format"] == "site"
    assert shown["value"]["serialNumber"] == 5
    assert FORMATS["site"].from_json(shown["value"]) == SITE_DATA
    for data in (SITE_DATA_V2, b"\xff\x00", SITE_DATA + b"\x00"):  # kept exactly, as bytes
        shown = REGISTRY.data_to_json(type_name, data)
        assert shown["format"] == "base64"
        assert FORMATS["base64"].from_json(shown["value"]) == data
    assert REGISTRY.data_to_json(type_name, b"site") == {"format": "string", "value": "site"}
    REGISTRY.get(type_name).validate(SITE_DATA_V2)  # well-formed, only not showable
    invalid_value(REGISTRY.get(type_name).validate, b"site")
    invalid_value(FORMATS["site"].to_json, SITE_DATA_V2)


def test_records_alone_validates_site_data() -> None:
    """``protocol.site`` is imported lazily (it builds on this module): a fresh interpreter."""
    code = (
        "import protocol.records as r\n"
        "try:\n"
        "    r.validate_value(r.HandleValue(1, 'HS_SITE', b'x'))\n"
        "except r.InvalidValue as e:\n"
        "    print(e.code)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "202"


def test_unknown_types_fall_back_to_string_or_base64() -> None:
    assert type(REGISTRY.get("NO.SUCH.TYPE")) is ValueType
    assert REGISTRY.data_to_json("URL", b"https://x") == {"format": "string", "value": "https://x"}
    assert REGISTRY.data_to_json("NO.SUCH", b"\xff\x00") == {"format": "base64", "value": "/wA="}
    assert REGISTRY.data_to_json("HS_SECKEY", b"") == {"format": "string", "value": ""}


@SETTINGS
@given(
    st.text(max_size=10).filter(lambda t: t not in (HS_ADMIN, HS_VLIST, HS_SITE, HS_SITE_PREFIX)),
    st.binary(max_size=64),
)
def test_unknown_types_round_trip_raw_bytes(type_name: str, data: bytes) -> None:
    shown = REGISTRY.data_to_json(type_name, data)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        assert shown["format"] == "base64"
    else:
        assert shown == {"format": "string", "value": data.decode("utf-8")}
    assert FORMATS[shown["format"]].from_json(shown["value"]) == data


# ---------------------------------------------------------------------------------------------
# Record validation


def url(index: int, data: bytes = b"https://example.com", **kw: object) -> HandleValue:
    return HandleValue(index, "URL", data, **kw)  # type: ignore[arg-type]


SITE = SiteInfo(
    serial=5, hash_option=1, servers=(Server(1, "192.0.2.1", (Interface(2, 1, 2641),)),)
)
SITE_DATA = encode_site(SITE)
#: the same site with data format version 2, which the site shape cannot show: kept as bytes
SITE_DATA_V2 = b"\x00\x02" + SITE_DATA[2:]


def test_a_valid_record_passes() -> None:
    admin = HandleValue(100, HS_ADMIN, VALID_ADMIN)
    vlist = HandleValue(200, HS_VLIST, ONE_REF)
    sites = (HandleValue(3, HS_SITE, SITE_DATA), HandleValue(4, HS_SITE_PREFIX, SITE_DATA_V2))
    record = (url(1), url(2, ttl=0, ttl_type=TTL_ABSOLUTE), admin, vlist, *sites, url(MAX_INDEX))
    validate_record(record)
    validate_record(record, SNMS)
    validate_record(())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (url(0), "index 0 is not a positive 32-bit integer"),
        (url(-1), "index -1 is not a positive 32-bit integer"),
        (url(2**31), "index 2147483648 is not a positive 32-bit integer"),
        (HandleValue(1, "", b""), "value 1 has an empty type"),
        (HandleValue(1, "UR\nL", b""), "value 1 has a non-printable type"),
        (HandleValue(1, "T" * 1025, b""), "value 1 type is 1025 bytes, over the limit of 1024"),
        (url(1, b"x" * (MAX_DATA_BYTES + 1)), "value 1 data is 262145 bytes, over 262144"),
        (url(1, ttl_type=2), "value 1 has ttl type 2, not 0 or 1"),
        (url(1, ttl=-1), "value 1 ttl -1 is out of range"),
        (url(1, ttl=2**32), "value 1 ttl 4294967296 is out of range"),
        (url(1, permissions=16), "value 1 permissions 16 are not 4 bits"),
        (url(1, permissions=-1), "value 1 permissions -1 are not 4 bits"),
        (
            url(1, references=(Reference("x/y", 1),) * 257),
            "value 1 has over 256 references",
        ),
        (HandleValue(100, HS_ADMIN, b"\x00"), "HS_ADMIN data is shorter than its permission field"),
        (HandleValue(200, HS_VLIST, b"\x00\x00\x00\x01"), "HS_VLIST count does not match"),
        (HandleValue(1, HS_SITE, b"\x00\x01"), "HS_SITE data is truncated"),
        (HandleValue(1, HS_SITE_PREFIX, b"https://x"), "HS_SITE"),
        (HandleValue(1, HS_SITE, SITE_DATA + b"\x00"), "HS_SITE data has trailing bytes"),
    ],
)
def test_value_rules(value: HandleValue, message: str) -> None:
    error = invalid_value(validate_value, value)
    assert message in error.message
    invalid_value(validate_record, (url(5), value))


def test_limits_at_their_edge_pass() -> None:
    validate_value(HandleValue(1, "T" * 1024, b""))
    validate_value(url(1, b"x" * MAX_DATA_BYTES))
    validate_value(url(1, ttl=2**32 - 1))
    validate_value(url(1, references=(Reference("x/y", 1),) * 256))
    validate_value(url(1, permissions=0))


def test_indexes_are_unique() -> None:
    error = invalid_value(validate_record, (url(1), url(2), url(1, b"other")))
    assert error.message == "index 1 appears twice"


def test_at_most_2048_values() -> None:
    validate_record(tuple(url(i) for i in range(1, 2049)))
    error = invalid_value(validate_record, tuple(url(i) for i in range(1, 2050)))
    assert error.message == "2049 values, over the limit of 2048"


def test_snms_type_limit_is_128_bytes() -> None:
    validate_value(HandleValue(1, "T" * 128, b""), SNMS)
    error = invalid_value(validate_value, HandleValue(1, "T" * 129, b""), SNMS)
    assert error.message == "value 1 type is 129 bytes, over the limit of 128"
    validate_value(HandleValue(1, "T" * 129, b""), PROTOCOL)


def test_snms_string_value_limit_is_255_bytes() -> None:
    validate_value(url(1, b"x" * 255), SNMS)
    error = invalid_value(validate_value, url(1, b"x" * 256), SNMS)
    assert error.message == "value 1 data is 256 bytes, over the snms limit of 255"
    validate_value(url(1, b"x" * 256), PROTOCOL)
    too_long_utf8 = "中".encode() * 86  # 258 bytes, 86 characters
    invalid_value(validate_value, url(1, too_long_utf8), SNMS)


def test_snms_string_limit_spares_binary_and_admin_data() -> None:
    """The limit is on string values; keys and admin values are not shown as strings."""
    binary = HandleValue(300, "HS_PUBKEY", b"\x00\xff" * 150)
    validate_value(binary, SNMS)
    admin = HandleValue(
        100, HS_ADMIN, AdminValue("88.1/" + "A" * 250, 300, AdminPermission(1)).to_bytes()
    )
    assert len(admin.data) > 255
    validate_value(admin, SNMS)


def test_snms_string_limit_spares_site_data_that_happens_to_be_utf8() -> None:
    servers = tuple(Server(i, f"10.0.0.{i}", (Interface(3, 1, 2641),)) for i in range(1, 12))
    data = encode_site(SiteInfo(serial=1, hash_option=0, servers=servers, primary=False))
    data.decode("utf-8")
    assert len(data) > 255
    validate_value(HandleValue(1, HS_SITE, data), SNMS)


def test_snms_index_may_not_pass_int32_either() -> None:
    invalid_value(validate_value, url(2**31), SNMS)
    validate_value(url(2**31 - 1), SNMS)


# ---------------------------------------------------------------------------------------------
# TTL


@pytest.mark.parametrize(
    ("ttl", "ttl_type", "fetched_at", "expires"),
    [
        (3600, TTL_RELATIVE, 1000.0, 4600.0),
        (DEFAULT_TTL_S, TTL_RELATIVE, 1000.0, 1000.0 + 86400),
        (MAX_CACHE_TTL_S, TTL_RELATIVE, 1000.0, 1000.0 + 172800),
        (MAX_CACHE_TTL_S + 1, TTL_RELATIVE, 1000.0, 1000.0 + 172800),
        (10**9, TTL_RELATIVE, 1000.0, 1000.0 + 172800),
        (0, TTL_RELATIVE, 1000.0, 1000.0),
        (5000, TTL_ABSOLUTE, 1000.0, 5000.0),
        (500, TTL_ABSOLUTE, 1000.0, 500.0),
        (1000 + 172800, TTL_ABSOLUTE, 1000.0, 1000.0 + 172800),
        (10**10, TTL_ABSOLUTE, 1000.0, 1000.0 + 172800),
    ],
)
def test_expires_at(ttl: int, ttl_type: int, fetched_at: float, expires: float) -> None:
    assert url(1, ttl=ttl, ttl_type=ttl_type).expires_at(fetched_at) == expires


@SETTINGS
@given(
    st.integers(0, 2**32 - 1), st.sampled_from([TTL_RELATIVE, TTL_ABSOLUTE]), st.integers(0, 2**33)
)
def test_a_cache_never_keeps_a_value_past_the_cap(ttl: int, ttl_type: int, fetched_at: int) -> None:
    expires = url(1, ttl=ttl, ttl_type=ttl_type).expires_at(float(fetched_at))
    assert expires <= fetched_at + MAX_CACHE_TTL_S
    if ttl_type == TTL_RELATIVE:
        assert expires == fetched_at + min(ttl, MAX_CACHE_TTL_S)
