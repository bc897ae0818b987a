"""HS_SITE data and server selection (protocol/site.py)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codes import DEFAULT_PERMISSIONS
from protocol.errors import InvalidValue, ProtocolError
from protocol.messages import Interface, Server, SiteInfo
from protocol.records import HandleValue, validate_value
from protocol.site import (
    decode_site,
    encode_site,
    query_interface,
    referral_sites,
    server_for,
    site_data_to_json,
    site_from_json,
    site_to_json,
    site_value,
)

SITE = SiteInfo(
    serial=3,
    hash_option=2,
    servers=(
        Server(1, "127.0.0.1", (Interface(3, 1, 2641), Interface(3, 0, 2641))),
        Server(2, "2001:db8::1", (Interface(2, 2, 8000),)),
    ),
)

# Laid out by hand from the CNRI Encoder's field order (see the module docstring).
GOLDEN = (
    "0001"
    "02"
    "0b"
    "0003"
    "80"
    "02"  # format 1, protocol 2.11, serial 3, primary, whole handle
    "00000000"
    "00000000"  # no hash filter, no attributes
    "00000002"  # two servers
    "00000001"
    "000000000000000000000000"
    "7f000001"
    "00000000"  # id 1, 127.0.0.1, no key
    "00000002"
    "03"
    "01"
    "00000a51"
    "03"
    "00"
    "00000a51"  # TCP and UDP 2641, query and admin
    "00000002"
    "20010db8000000000000000000000001"
    "00000000"  # id 2, 2001:db8::1
    "00000001"
    "02"
    "02"
    "00001f40"  # HTTP 8000, query only
)


def test_golden_layout() -> None:
    assert encode_site(SITE).hex() == GOLDEN
    assert decode_site(bytes.fromhex(GOLDEN)) == SITE


ipv4 = st.ip_addresses(v=4).map(str)
interfaces = st.builds(
    Interface, st.integers(0, 255), st.integers(0, 255), st.integers(-(2**31), 2**31 - 1)
)
servers = st.builds(
    Server,
    st.integers(-(2**31), 2**31 - 1),
    ipv4,
    st.lists(interfaces, max_size=4).map(tuple),
)
sites = st.builds(
    SiteInfo,
    serial=st.integers(0, 0xFFFF),
    hash_option=st.integers(0, 255),
    servers=st.lists(servers, max_size=5).map(tuple),
    primary=st.booleans(),
    multi_primary=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(sites)
def test_round_trip(site: SiteInfo) -> None:
    assert decode_site(encode_site(site)) == site


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_refuse_with_the_protocol_error(data: bytes) -> None:
    try:
        decode_site(data)
    except ProtocolError as exc:
        assert exc.code == 202


@pytest.mark.parametrize(
    "data",
    [
        GOLDEN[:-2],  # truncated
        GOLDEN + "00",  # trailing byte
        GOLDEN[:28] + "7fffffff" + GOLDEN[36:],  # absurd server count
    ],
)
def test_malformed_is_invalid_value(data: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_site(bytes.fromhex(data))
    assert info.value.code == 202


def test_host_names_cannot_be_encoded() -> None:
    site = SiteInfo(serial=1, hash_option=0, servers=(Server(1, "node.example", ()),))
    with pytest.raises(ProtocolError, match="not an IP address"):
        encode_site(site)


def _expected_index(part: str, n: int) -> int:
    digest = hashlib.md5(part.upper().encode()).digest()
    return abs(int.from_bytes(digest[-4:], "big", signed=True)) % n


@pytest.mark.parametrize(
    ("hash_option", "part"),
    [(0, "88.118.8"), (1, "PRD-000042"), (2, "88.118.8/PRD-000042")],
)
def test_server_for_hashes_the_part_the_option_names(hash_option: int, part: str) -> None:
    many = tuple(Server(i, f"10.0.0.{i}", ()) for i in range(1, 8))
    site = SiteInfo(serial=1, hash_option=hash_option, servers=many)
    chosen = server_for(site, "88.118.8", "prd-000042")  # case does not matter
    assert chosen is many[_expected_index(part, len(many))]


def test_server_for_spreads_handles_over_servers() -> None:
    many = tuple(Server(i, f"10.0.0.{i}", ()) for i in range(1, 5))
    site = SiteInfo(serial=1, hash_option=2, servers=many)
    counts = {s.server_id: 0 for s in many}
    for n in range(4000):
        counts[server_for(site, "88.118.8", f"PRD-{n}").server_id] += 1
    assert all(800 < c < 1200 for c in counts.values()), counts


def test_server_for_needs_a_server() -> None:
    with pytest.raises(ProtocolError):
        server_for(SiteInfo(serial=1, hash_option=0, servers=()), "88", "x")


@pytest.mark.parametrize(
    ("address", "port", "said"),
    [
        ("192.0.2.1", 0, "port 0"),
        ("192.0.2.1", 70000, "port 70000"),
        ("192.0.2.1", -1, "port -1"),
        ("0.0.0.0", 2641, "no client can reach"),
    ],
)
def test_a_site_that_sends_clients_nowhere_is_not_a_valid_value(
    address: str, port: int, said: str
) -> None:
    """Decodable, so readable in a referral, but refused as a value to store."""
    site = SiteInfo(
        serial=1, hash_option=0, servers=(Server(1, address, (Interface(3, 1, port),)),)
    )
    data = encode_site(site)
    assert decode_site(data) == site
    with pytest.raises(InvalidValue, match=said):
        validate_value(HandleValue(1, "HS_SITE", data))
    good = SiteInfo(
        serial=1, hash_option=0, servers=(Server(1, "192.0.2.1", (Interface(3, 1, 1),)),)
    )
    validate_value(HandleValue(1, "HS_SITE", encode_site(good)))


# ---------------------------------------------------------------------------------------------
# Referral helpers


def _site(serial: int) -> SiteInfo:
    return SiteInfo(serial=serial, hash_option=0, servers=(Server(1, "192.0.2.1", ()),))


def test_site_value() -> None:
    value = site_value(SITE)
    assert value == HandleValue(1, "HS_SITE", bytes.fromhex(GOLDEN), ttl=86400)
    assert (value.timestamp, value.permissions) == (0, DEFAULT_PERMISSIONS)
    assert site_value(SITE, index=7, ttl=60) == HandleValue(7, "HS_SITE", encode_site(SITE), ttl=60)


def test_referral_sites_hs_site_first_then_by_index() -> None:
    values = [
        HandleValue(9, "HS_SITE.PREFIX", encode_site(_site(4))),
        HandleValue(5, "HS_SERV", b"0.NA/88.100"),
        HandleValue(3, "HS_SITE", encode_site(_site(2))),
        HandleValue(2, "HS_SITE.PREFIX", encode_site(_site(3))),
        HandleValue(1, "URL", b"https://x"),
        HandleValue(8, "HS_SITE", encode_site(_site(1))),
    ]
    assert [s.serial for s in referral_sites(values)] == [2, 1, 3, 4]
    assert referral_sites(iter(values)) == referral_sites(values)
    assert referral_sites([HandleValue(1, "URL", b"x")]) == ()


def test_referral_sites_refuses_a_malformed_one() -> None:
    values = [site_value(SITE), HandleValue(2, "HS_SITE.PREFIX", b"\x00\x01")]
    with pytest.raises(InvalidValue) as info:
        referral_sites(values)
    assert info.value.code == 202


def test_query_interface_picks_the_first_that_answers_queries() -> None:
    server = Server(
        1,
        "192.0.2.1",
        (Interface(1, 1, 2640), Interface(2, 1, 2641), Interface(3, 1, 2642), Interface(3, 0, 9)),
    )
    assert query_interface(server, 1) == Interface(2, 1, 2641)
    assert query_interface(server, 0) == Interface(3, 0, 9)
    assert query_interface(server, 2) is None
    assert query_interface(Server(1, "192.0.2.1", (Interface(1, 2, 80),)), 2) is None


# ---------------------------------------------------------------------------------------------
# JSON


GOLDEN_JSON = {
    "version": 1,
    "protocolVersion": "2.11",
    "serialNumber": 3,
    "primaryMask": {"primary": True, "multiPrimary": False},
    "hashOption": 2,
    "hashFilter": "",
    "attributes": [],
    "servers": [
        {
            "serverId": 1,
            "address": "127.0.0.1",
            "publicKey": {"format": "hex", "value": ""},
            "interfaces": [
                {"query": True, "admin": True, "protocol": "TCP", "port": 2641},
                {"query": True, "admin": True, "protocol": "UDP", "port": 2641},
            ],
        },
        {
            "serverId": 2,
            "address": "2001:db8::1",
            "publicKey": {"format": "hex", "value": ""},
            "interfaces": [{"query": True, "admin": False, "protocol": "HTTP", "port": 8000}],
        },
    ],
}


def test_json_shape() -> None:
    assert site_to_json(SITE) == GOLDEN_JSON
    assert site_data_to_json(bytes.fromhex(GOLDEN)) == GOLDEN_JSON
    assert site_from_json(json.loads(json.dumps(GOLDEN_JSON))) == SITE


def test_json_interface_kinds_and_protocols() -> None:
    kinds = [(1, False, True), (2, True, False), (3, True, True)]
    for kind, query, admin in kinds:
        for protocol, name in enumerate(["UDP", "TCP", "HTTP", "HTTPS"]):
            site = SiteInfo(1, 0, (Server(1, "192.0.2.1", (Interface(kind, protocol, 1),)),))
            [shown] = site_to_json(site)["servers"][0]["interfaces"]
            assert shown == {"query": query, "admin": admin, "protocol": name, "port": 1}
            assert site_from_json(site_to_json(site)) == site


@pytest.mark.parametrize("interface", [Interface(0, 1, 1), Interface(4, 1, 1), Interface(3, 4, 1)])
def test_json_refuses_what_it_cannot_name(interface: Interface) -> None:
    site = SiteInfo(1, 0, (Server(1, "192.0.2.1", (interface,)),))
    with pytest.raises(InvalidValue):
        site_to_json(site)
    with pytest.raises(InvalidValue):
        site_data_to_json(encode_site(site))


def test_json_input_ignores_what_idnode_does_not_keep() -> None:
    shown: dict[str, Any] = json.loads(json.dumps(GOLDEN_JSON))
    shown["hashFilter"] = "ab"
    shown["attributes"] = [{"name": "desc", "value": "x"}]
    shown["servers"][0]["publicKey"] = {"format": "key", "value": {}}
    del shown["version"], shown["protocolVersion"], shown["primaryMask"]
    assert site_from_json(shown) == SITE  # without a mask: primary, not multi-primary


def _bad(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(json.dumps(GOLDEN_JSON))
    target: Any = shown
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return shown


_DELETE = object()


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (None, "site info must be an object"),
        ([], "site info must be an object"),
        (_bad(("serialNumber",), _DELETE), "'serialNumber' must be an integer"),
        (_bad(("serialNumber",), True), "'serialNumber' must be an integer"),
        (_bad(("hashOption",), "2"), "'hashOption' must be an integer"),
        (_bad(("primaryMask",), []), "'primaryMask' must be an object"),
        (_bad(("primaryMask", "primary"), 1), "'primary' must be true or false"),
        (_bad(("servers",), {}), "'servers' must be an array"),
        (_bad(("servers",), [5]), "site server must be an object"),
        (_bad(("servers", 0, "serverId"), "1"), "'serverId' must be an integer"),
        (_bad(("servers", 0, "address"), 7), "'address' must be a string"),
        (_bad(("servers", 0, "interfaces"), None), "'interfaces' must be an array"),
        (_bad(("servers", 0, "interfaces", 0), "TCP"), "site interface must be an object"),
        (_bad(("servers", 0, "interfaces", 0, "query"), "yes"), "'query' must be true or"),
        (_bad(("servers", 0, "interfaces", 0, "protocol"), "SCTP"), "UDP, TCP, HTTP or HTTPS"),
        (_bad(("servers", 0, "interfaces", 0, "protocol"), 1), "'protocol' must be a string"),
        (_bad(("servers", 0, "interfaces", 0, "port"), 2641.0), "'port' must be an integer"),
        (_bad(("servers", 1, "interfaces", 0, "query"), False), "query or admin"),
        (_bad(("servers",), [GOLDEN_JSON["servers"][0]] * 1025), "over 1024 servers"),
    ],
)
def test_bad_json_is_invalid_value(obj: Any, message: str) -> None:
    with pytest.raises(InvalidValue) as info:
        site_from_json(obj)
    assert info.value.code == 202
    assert message in info.value.message


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("servers", 0, "address"), "node.example", "not an IP address"),
        (("serialNumber",), 65536, "out of range"),
        (("servers", 0, "interfaces", 0, "port"), 2**31, "out of range"),
    ],
)
def test_json_that_parses_but_cannot_be_encoded(
    path: tuple[Any, ...], value: Any, message: str
) -> None:
    site = site_from_json(_bad(path, value))
    with pytest.raises(InvalidValue, match=message):
        encode_site(site)


_json_interfaces = st.builds(
    Interface, st.integers(1, 3), st.integers(0, 3), st.integers(-(2**31), 2**31 - 1)
)
_json_sites = st.builds(
    SiteInfo,
    serial=st.integers(0, 0xFFFF),
    hash_option=st.integers(0, 255),
    servers=st.lists(
        st.builds(
            Server,
            st.integers(-(2**31), 2**31 - 1),
            ipv4,
            st.lists(_json_interfaces, max_size=3).map(tuple),
        ),
        max_size=4,
    ).map(tuple),
    primary=st.booleans(),
    multi_primary=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(_json_sites)
def test_json_round_trip(site: SiteInfo) -> None:
    shown = json.loads(json.dumps(site_data_to_json(encode_site(site))))
    assert site_from_json(shown) == site
    assert encode_site(site_from_json(shown)) == encode_site(site)
