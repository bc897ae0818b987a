"""HS_SITE data (RFC 3651 3.2.2) and the choice of a site's server for a handle (RFC 3652 3.3).

The binary layout follows the CNRI HANDLE.NET ``Encoder`` byte for byte: data format version (2),
protocol major and minor (1 + 1), serial (2), primary mask (1: 0x80 primary, 0x40 multi-primary),
hash option (1), hash filter (int4-length bytes), attributes (int4 count of name/value byte
strings), servers (int4 count of: server id int4, a 16-byte address with IPv4 right-aligned in
zeros, so that IPv6 addresses in ::/96 read back as IPv4 as CNRI reads them, public key as
int4-length bytes, interfaces as int4 count of type byte, protocol byte and int4 port). A site's
server for a handle: MD5 of the upper-cased hash part (prefix, suffix or the whole handle, by the
site's hash option), its last 4 bytes as a big-endian signed int, absolute value, modulo the
number of servers.

The JSON shape (``site_to_json``, ``site_from_json``) is the one HANDLE.NET's REST API writes as
``{"format": "site", "value": ...}``. idnode keeps no hash filter, attributes or server public
keys (sessions and signatures come later): they are written empty and ignored on input. A referral
answer (302, 303) carries a prefix's HS_SITE and HS_SITE.PREFIX values; ``referral_sites`` reads
them back.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from collections.abc import Iterable
from typing import Any

from protocol.errors import InvalidValue
from protocol.identifiers import NA_PREFIX, ascii_upper
from protocol.messages import Interface, Server, SiteInfo
from protocol.records import DEFAULT_TTL_S, HS_SITE, HS_SITE_PREFIX, HandleValue

DATA_FORMAT_VERSION = 1  #: the HS_SITE layout this module writes
PROTOCOL_MAJOR, PROTOCOL_MINOR = 2, 11  #: what CNRI servers and the Chinese SDKs speak
PRIMARY = 0x80  #: primary-mask bit: the site accepts writes
MULTI_PRIMARY = 0x40  #: primary-mask bit: every server of the site accepts writes
HASH_BY_PREFIX, HASH_BY_SUFFIX, HASH_BY_HANDLE = 0, 1, 2  #: hash options
MAX_SERVERS = 1024  #: servers (and interfaces per server) a site may list
ADMIN, QUERY, ADMIN_AND_QUERY = 1, 2, 3  #: interface kinds
UDP, TCP, HTTP, HTTPS = 0, 1, 2, 3  #: interface protocols
_PROTOCOL_NAMES = {UDP: "UDP", TCP: "TCP", HTTP: "HTTP", HTTPS: "HTTPS"}
_PROTOCOLS = {name: number for number, name in _PROTOCOL_NAMES.items()}
_ADDRESS_BYTES = 16


def _port(text: str) -> int | None:
    """The port ``text`` writes (1-65535, ASCII digits only), or None."""
    if text.isascii() and text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    return None


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port); ValueError when malformed."""
    host, sep, port_text = text.rpartition(":")
    port = _port(port_text)
    if not sep or not host or port is None:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), port


def site_of_servers(servers: Iterable[str], serial: int) -> SiteInfo | None:
    """The site of servers written ``HOST:PORT:HTTP_PORT`` (a node's ``--site``), each
    answering for every handle it hashes to (by whole handle); None for no servers.
    ValueError when one is malformed."""
    found = []
    for number, text in enumerate(servers, 1):
        # named whole, as given: a server missing a part would otherwise be reported as a
        # malformed HOST:PORT of its first part (or of '')
        malformed = ValueError(f"site server {text!r}: expected HOST:PORT:HTTP_PORT")
        address, _, http = text.rpartition(":")
        try:
            host, port = parse_address(address)
        except ValueError:
            raise malformed from None
        http_port = _port(http)
        if http_port is None:
            raise malformed
        interfaces = (Interface(3, 0, port), Interface(3, 1, port), Interface(3, 2, http_port))
        found.append(Server(number, host, interfaces))
    if not found:
        return None
    return SiteInfo(
        serial=serial, hash_option=HASH_BY_HANDLE, servers=tuple(found), multi_primary=True
    )


def _address_bytes(address: str) -> bytes:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError as exc:
        raise InvalidValue(f"HS_SITE server address {address!r} is not an IP address") from exc
    return ip.packed.rjust(_ADDRESS_BYTES, b"\0")


def _address_text(raw: bytes) -> str:
    if raw[:12] == bytes(12):  # CNRI writes IPv4 right-aligned in zeros
        return str(ipaddress.IPv4Address(raw[12:]))
    ip = ipaddress.IPv6Address(raw)
    return str(ip.ipv4_mapped or ip)


def _bytes(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data


def encode_site(site: SiteInfo) -> bytes:
    """HS_SITE value data for ``site``."""
    mask = (PRIMARY if site.primary else 0) | (MULTI_PRIMARY if site.multi_primary else 0)
    try:
        out = [
            struct.pack(
                ">HBBHBB",
                DATA_FORMAT_VERSION,
                PROTOCOL_MAJOR,
                PROTOCOL_MINOR,
                site.serial,
                mask,
                site.hash_option,
            ),
            _bytes(b""),  # hash filter
            struct.pack(">i", 0),  # attributes
            struct.pack(">i", len(site.servers)),
        ]
        for server in site.servers:
            out.append(struct.pack(">i", server.server_id) + _address_bytes(server.address))
            out.append(_bytes(b""))  # public key: sessions and signatures come later
            out.append(struct.pack(">i", len(server.interfaces)))
            for i in server.interfaces:
                out.append(struct.pack(">BBi", i.kind, i.protocol, i.port))
    except struct.error as exc:
        raise InvalidValue(f"HS_SITE field out of range: {exc}") from exc
    return b"".join(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> tuple[int, ...]:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise InvalidValue("HS_SITE data is truncated")
        values = struct.unpack_from(fmt, self.data, self.at)
        self.at += size
        return values

    def raw(self, size: int) -> bytes:
        if size < 0 or self.at + size > len(self.data):
            raise InvalidValue("HS_SITE data is truncated")
        self.at += size
        return self.data[self.at - size : self.at]

    def count(self, what: str) -> int:
        (n,) = self.take(">i")
        if not 0 <= n <= MAX_SERVERS:
            raise InvalidValue(f"HS_SITE {what} count {n} is out of range")
        return n


def decode_site(data: bytes) -> SiteInfo:
    """Parse HS_SITE value data; anything malformed is ``InvalidValue``."""
    r = _Reader(data)
    _version, _major, _minor, serial, mask, hash_option = r.take(">HBBHBB")
    r.raw(r.take(">i")[0])  # hash filter
    for _ in range(r.count("attribute")):
        r.raw(r.take(">i")[0])
        r.raw(r.take(">i")[0])
    servers = []
    for _ in range(r.count("server")):
        (server_id,) = r.take(">i")
        address = _address_text(r.raw(_ADDRESS_BYTES))
        r.raw(r.take(">i")[0])  # public key
        interfaces = tuple(Interface(*r.take(">BBi")) for _ in range(r.count("interface")))
        servers.append(Server(server_id, address, interfaces))
    if r.at != len(data):
        raise InvalidValue("HS_SITE data has trailing bytes")
    return SiteInfo(
        serial=serial,
        hash_option=hash_option,
        servers=tuple(servers),
        primary=bool(mask & PRIMARY),
        multi_primary=bool(mask & MULTI_PRIMARY),
    )


def server_for(site: SiteInfo, prefix: str, suffix: str) -> Server:
    """The server of ``site`` responsible for ``prefix/suffix`` (for a ``0.NA/`` prefix record,
    which every server holds, the first).

    Python's ``abs`` is used where Java's leaves -2**31 negative; that one hash value (one in four
    billion) is the only place the two could pick differently.
    """
    if not site.servers:
        raise InvalidValue("the site lists no servers")
    if ascii_upper(prefix) == NA_PREFIX:  # prefix records: every server has them; ask the first
        return site.servers[0]
    if site.hash_option == HASH_BY_PREFIX:
        part = prefix
    elif site.hash_option == HASH_BY_SUFFIX:
        part = suffix
    else:
        part = f"{prefix}/{suffix}"
    digest = hashlib.md5(ascii_upper(part).encode("utf-8"), usedforsecurity=False).digest()
    value = int.from_bytes(digest[-4:], "big", signed=True)
    return site.servers[abs(value) % len(site.servers)]


def query_interface(server: Server, protocol: int) -> Interface | None:
    """The first interface of ``server`` that answers queries over ``protocol`` (0 UDP ... 3 HTTPS)."""
    for interface in server.interfaces:
        if interface.protocol == protocol and interface.kind in (QUERY, ADMIN_AND_QUERY):
            return interface
    return None


def referral_sites(values: Iterable[HandleValue]) -> tuple[SiteInfo, ...]:
    """The sites of a prefix record's HS_SITE values, then its HS_SITE.PREFIX ones, by index."""
    chosen = [v for v in values if v.type == HS_SITE or v.type == HS_SITE_PREFIX]
    chosen.sort(key=lambda v: (v.type != HS_SITE, v.index))
    return tuple(decode_site(v.data) for v in chosen)


def site_value(site: SiteInfo, index: int = 1, ttl: int = DEFAULT_TTL_S) -> HandleValue:
    """An HS_SITE value describing ``site``."""
    return HandleValue(index, HS_SITE, encode_site(site), ttl=ttl)


# ---------------------------------------------------------------------------------------------
# JSON (HANDLE.NET's ``"format": "site"``)


def site_to_json(site: SiteInfo) -> dict[str, Any]:
    """``site`` in the REST shape; ``InvalidValue`` if an interface kind or protocol has no name."""
    servers = []
    for server in site.servers:
        interfaces = []
        for i in server.interfaces:
            if i.kind not in (ADMIN, QUERY, ADMIN_AND_QUERY) or i.protocol not in _PROTOCOL_NAMES:
                raise InvalidValue(f"no site name for interface {i.kind} over {i.protocol}")
            interfaces.append(
                {
                    "query": i.kind != ADMIN,
                    "admin": i.kind != QUERY,
                    "protocol": _PROTOCOL_NAMES[i.protocol],
                    "port": i.port,
                }
            )
        servers.append(
            {
                "serverId": server.server_id,
                "address": server.address,
                "publicKey": {"format": "hex", "value": ""},
                "interfaces": interfaces,
            }
        )
    return {
        "version": DATA_FORMAT_VERSION,
        "protocolVersion": f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}",
        "serialNumber": site.serial,
        "primaryMask": {"primary": site.primary, "multiPrimary": site.multi_primary},
        "hashOption": site.hash_option,
        "hashFilter": "",
        "attributes": [],
        "servers": servers,
    }


def site_data_to_json(data: bytes) -> dict[str, Any]:
    """HS_SITE data in the REST shape; ``InvalidValue`` unless that shape holds it byte for byte."""
    site = decode_site(data)
    if encode_site(site) != data:  # a key, attribute, hash filter or other version: keep as bytes
        raise InvalidValue("HS_SITE data holds fields the site format does not carry")
    return site_to_json(site)


_JSON_NAMES = {
    int: "an integer",
    str: "a string",
    bool: "true or false",
    list: "an array",
    dict: "an object",
}


def _field(obj: Any, key: str, kind: type, what: str, default: Any = None) -> Any:
    if not isinstance(obj, dict):
        raise InvalidValue(f"site {what} must be an object")
    value = obj.get(key, default)
    if type(value) is not kind:
        raise InvalidValue(f"site {what} field {key!r} must be {_JSON_NAMES[kind]}")
    return value


def _items(obj: Any, key: str, what: str) -> list[Any]:
    items: list[Any] = _field(obj, key, list, what)
    if len(items) > MAX_SERVERS:
        raise InvalidValue(f"site {what} lists over {MAX_SERVERS} {key}")
    return items


def _interface_from_json(obj: Any) -> Interface:
    query = _field(obj, "query", bool, "interface")
    admin = _field(obj, "admin", bool, "interface")
    protocol = _PROTOCOLS.get(_field(obj, "protocol", str, "interface"))
    if protocol is None or not (query or admin):
        raise InvalidValue("site interface needs protocol UDP, TCP, HTTP or HTTPS, query or admin")
    kind = ADMIN_AND_QUERY if query and admin else QUERY if query else ADMIN
    return Interface(kind, protocol, _field(obj, "port", int, "interface"))


def site_from_json(obj: Any) -> SiteInfo:
    """Parse the REST shape (version, protocol version, hash filter, attributes, keys ignored)."""
    mask = _field(obj, "primaryMask", dict, "info", {"primary": True, "multiPrimary": False})
    servers = tuple(
        Server(
            _field(server, "serverId", int, "server"),
            _field(server, "address", str, "server"),
            tuple(_interface_from_json(i) for i in _items(server, "interfaces", "server")),
        )
        for server in _items(obj, "servers", "info")
    )
    return SiteInfo(
        serial=_field(obj, "serialNumber", int, "info"),
        hash_option=_field(obj, "hashOption", int, "info"),
        servers=servers,
        primary=_field(mask, "primary", bool, "primaryMask", False),
        multi_primary=_field(mask, "multiPrimary", bool, "primaryMask", False),
    )
