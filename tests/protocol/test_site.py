"""HS_SITE data and server selection (protocol/site.py)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ProtocolError
from protocol.messages import Interface, Server, SiteInfo
from protocol.site import decode_site, encode_site, server_for

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
