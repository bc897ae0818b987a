"""Handle values and records (RFC 3651 section 3), HS_ADMIN and HS_VLIST data, the value-type registry.

A value is ``index, type, data`` plus ttl, timestamp, permissions and references. ``data`` is always
bytes; how it is shown in JSON (string, base64, hex, admin, vlist, site) is decided by the
value-type registry, which, like dnspython's ``rdata.py``, falls back to a generic codec so that a
type nobody registered round-trips its bytes unchanged. HS_SITE data is parsed by ``protocol.site``,
imported where it is used: that module builds on ``protocol.messages``, which builds on this one.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from protocol.codes import DEFAULT_PERMISSIONS, AdminPermission
from protocol.errors import InvalidValue
from protocol.identifiers import PROTOCOL, Profile

DEFAULT_TTL_S = 86400  #: the TTL a value gets when none is given
MAX_CACHE_TTL_S = 172800  #: caches ignore TTLs above this
MAX_VALUES = 2048  #: values per handle (protocol limit)
MAX_INDEX = 2**31 - 1  #: index is a positive int32
MIN_INT32 = -(2**31)  #: lowest int32 (indexes inside HS_ADMIN and HS_VLIST data are signed)
MAX_DATA_BYTES = 262144  #: a value's data cannot exceed one protocol message
MAX_REFERENCES = 256  #: references per value
MAX_VLIST_MEMBERS = MAX_VALUES  #: an HS_VLIST lists at most as many values as a handle holds
TTL_RELATIVE = 0  #: ttl counts seconds from when the value was fetched
TTL_ABSOLUTE = 1  #: ttl is an absolute expiry time (seconds since the epoch)

HS_ADMIN = "HS_ADMIN"
HS_VLIST = "HS_VLIST"
HS_SECKEY = "HS_SECKEY"
HS_SITE = "HS_SITE"
HS_SITE_PREFIX = "HS_SITE.PREFIX"
HS_PUBKEY = "HS_PUBKEY"


@dataclass(frozen=True, slots=True)
class Reference:
    """A pointer from a value to a value of (possibly) another handle."""

    handle: str  #: the referenced handle
    index: int  #: the referenced value's index


@dataclass(frozen=True, slots=True)
class HandleValue:
    """One value of a handle record."""

    index: int  #: positive int32, unique within the record
    type: str  #: UTF-8 type name such as URL or HS_ADMIN
    data: bytes  #: the value itself
    ttl: int = DEFAULT_TTL_S  #: seconds (relative) or expiry time (absolute)
    ttl_type: int = TTL_RELATIVE  #: TTL_RELATIVE or TTL_ABSOLUTE
    timestamp: int = 0  #: last change, seconds since the epoch (set by the server)
    permissions: int = DEFAULT_PERMISSIONS  #: ``Permission`` bits, default 0xE
    references: tuple[Reference, ...] = ()  #: related values

    def expires_at(self, fetched_at: float) -> float:
        """When a cache must drop this value, given when it was fetched; long TTLs are capped."""
        if self.ttl_type == TTL_ABSOLUTE:
            return min(float(self.ttl), fetched_at + MAX_CACHE_TTL_S)
        return fetched_at + min(self.ttl, MAX_CACHE_TTL_S)

    @property
    def public_read(self) -> bool:
        """Anyone may read this value."""
        return bool(self.permissions & 0x2)


# ---------------------------------------------------------------------------------------------
# Typed data of reserved types


def _pack_str(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">I", len(raw)) + raw


def _unpack_str(data: bytes, at: int, what: str) -> tuple[str, int]:
    if at + 4 > len(data):
        raise InvalidValue(f"{what}: truncated string length")
    (size,) = struct.unpack_from(">I", data, at)
    end = at + 4 + size
    if end > len(data):
        raise InvalidValue(f"{what}: string of {size} bytes runs past the data")
    try:
        return data[at + 4 : end].decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise InvalidValue(f"{what}: string is not UTF-8") from exc


def _check_packable(handle: str, index: int, what: str) -> None:
    """Refuse what ``_pack_str`` / ``struct.pack(">i")`` cannot encode, as ``InvalidValue``."""
    if not MIN_INT32 <= index <= MAX_INDEX:
        raise InvalidValue(f"{what} index {index} is not a 32-bit integer")
    try:
        handle.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidValue(f"{what} handle is not valid Unicode") from exc


def _unpack_int(data: bytes, at: int, what: str) -> tuple[int, int]:
    if at + 4 > len(data):
        raise InvalidValue(f"{what}: truncated integer")
    return struct.unpack_from(">i", data, at)[0], at + 4


@dataclass(frozen=True, slots=True)
class AdminValue:
    """HS_ADMIN data: 16 permission bits and the admin identity ``index:handle`` (RFC 3651 3.2.5)."""

    handle: str  #: the administrator's handle
    index: int  #: the index of its key value (300 in the Chinese system)
    permissions: AdminPermission  #: the 12 rights it holds

    def to_bytes(self) -> bytes:
        return (
            struct.pack(">H", int(self.permissions) & 0xFFFF)
            + _pack_str(self.handle)
            + struct.pack(">i", self.index)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> AdminValue:
        if len(data) < 2:
            raise InvalidValue("HS_ADMIN data is shorter than its permission field")
        (perms,) = struct.unpack_from(">H", data, 0)
        handle, at = _unpack_str(data, 2, "HS_ADMIN handle")
        index, at = _unpack_int(data, at, "HS_ADMIN index")
        if at != len(data):
            raise InvalidValue("HS_ADMIN data has trailing bytes")
        return cls(handle, index, AdminPermission(perms))

    def to_json(self) -> dict[str, Any]:
        return {
            "handle": self.handle,
            "index": self.index,
            # 12 bits as in the reference; reserved high bits, when set, lengthen the string so
            # that the bytes survive a JSON round trip (from_json takes up to 16 bits)
            "permissions": format(int(self.permissions) & 0xFFFF, "012b"),
        }

    @classmethod
    def from_json(cls, obj: Any) -> AdminValue:
        if not isinstance(obj, dict):
            raise InvalidValue("admin data must be an object with handle, index, permissions")
        handle, index, bits = obj.get("handle"), obj.get("index"), obj.get("permissions")
        if not isinstance(handle, str) or not handle:
            raise InvalidValue("admin data needs a handle")
        if not isinstance(index, int) or isinstance(index, bool):
            raise InvalidValue("admin data needs an integer index")
        if not isinstance(bits, str) or not bits or len(bits) > 16 or set(bits) - {"0", "1"}:
            raise InvalidValue("admin permissions must be a bit string such as 011111110011")
        _check_packable(handle, index, "admin")
        return cls(handle, index, AdminPermission(int(bits, 2)))


def pack_vlist(refs: tuple[Reference, ...]) -> bytes:
    """HS_VLIST data: int4 count, then (string handle, int4 index) per member."""
    return struct.pack(">I", len(refs)) + b"".join(
        _pack_str(r.handle) + struct.pack(">i", r.index) for r in refs
    )


def unpack_vlist(data: bytes) -> tuple[Reference, ...]:
    count, at = _unpack_int(data, 0, "HS_VLIST count")
    if count < 0 or count * 8 > len(data):
        raise InvalidValue("HS_VLIST count does not match its data")
    if count > MAX_VLIST_MEMBERS:
        raise InvalidValue(f"HS_VLIST has {count} members, over {MAX_VLIST_MEMBERS}")
    refs = []
    for _ in range(count):
        handle, at = _unpack_str(data, at, "HS_VLIST handle")
        index, at = _unpack_int(data, at, "HS_VLIST index")
        refs.append(Reference(handle, index))
    if at != len(data):
        raise InvalidValue("HS_VLIST data has trailing bytes")
    return tuple(refs)


# ---------------------------------------------------------------------------------------------
# JSON data formats and the value-type registry


class DataFormat(Protocol):
    """How ``data`` bytes appear as ``{"format": name, "value": ...}`` in the REST API."""

    name: str

    def to_json(self, data: bytes) -> Any: ...

    def from_json(self, value: Any) -> bytes: ...


class _StringFormat:
    name = "string"

    def to_json(self, data: bytes) -> Any:
        return data.decode("utf-8")

    def from_json(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise InvalidValue("string data must be a JSON string")
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidValue("string data is not valid Unicode") from exc


class _Base64Format:
    name = "base64"

    def to_json(self, data: bytes) -> Any:
        return base64.b64encode(data).decode("ascii")

    def from_json(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise InvalidValue("base64 data must be a JSON string")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidValue("base64 data is not valid base64") from exc


class _KeyFormat(_Base64Format):
    """A public key's bytes (HS_PUBKEY), base64 as the reference's REST servers show them."""

    name = "key"


class _HexFormat:
    name = "hex"

    def to_json(self, data: bytes) -> Any:
        return data.hex()

    def from_json(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise InvalidValue("hex data must be a JSON string")
        try:
            return bytes.fromhex(value)
        except ValueError as exc:
            raise InvalidValue("hex data is not valid hexadecimal") from exc


class _AdminFormat:
    name = "admin"

    def to_json(self, data: bytes) -> Any:
        return AdminValue.from_bytes(data).to_json()

    def from_json(self, value: Any) -> bytes:
        return AdminValue.from_json(value).to_bytes()


class _VListFormat:
    name = "vlist"

    def to_json(self, data: bytes) -> Any:
        return [{"handle": r.handle, "index": r.index} for r in unpack_vlist(data)]

    def from_json(self, value: Any) -> bytes:
        if not isinstance(value, list):
            raise InvalidValue("vlist data must be a list of {handle, index}")
        return pack_vlist(tuple(_reference_from_json(item) for item in value))


class _SiteFormat:
    name = "site"

    def to_json(self, data: bytes) -> Any:
        from protocol.site import site_data_to_json

        return site_data_to_json(data)

    def from_json(self, value: Any) -> bytes:
        from protocol.site import encode_site, site_from_json

        return encode_site(site_from_json(value))


def _reference_from_json(item: Any) -> Reference:
    if not isinstance(item, dict):
        raise InvalidValue("a reference must be an object with handle and index")
    handle, index = item.get("handle"), item.get("index")
    if not isinstance(handle, str) or not isinstance(index, int) or isinstance(index, bool):
        raise InvalidValue("a reference needs a string handle and an integer index")
    _check_packable(handle, index, "reference")
    return Reference(handle, index)


FORMATS: dict[str, DataFormat] = {
    f.name: f
    for f in (
        _StringFormat(),
        _Base64Format(),
        _HexFormat(),
        _KeyFormat(),
        _AdminFormat(),
        _VListFormat(),
        _SiteFormat(),
    )
}


class ValueType:
    """How one value type is checked and shown; the generic fallback for unregistered types."""

    def validate(self, data: bytes) -> None:
        """Raise ``InvalidValue`` when ``data`` is not valid for the type."""

    def format_for(self, data: bytes) -> DataFormat:
        """The JSON format to show ``data`` in: text when it is UTF-8, base64 otherwise."""
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return FORMATS["base64"]
        return FORMATS["string"]


class _TypedFormat(ValueType):
    def __init__(self, fmt: DataFormat) -> None:
        self.fmt = fmt

    def validate(self, data: bytes) -> None:
        self.fmt.to_json(data)

    def format_for(self, data: bytes) -> DataFormat:
        return self.fmt


class _SiteType(ValueType):
    """HS_SITE data: any the CNRI layout parses; shown as site when that shape holds it exactly."""

    def validate(self, data: bytes) -> None:
        """Decodable, and every server reachable: a routable address and ports 1-65535 (a
        client would be sent nowhere by the others)."""
        from protocol.site import decode_site

        for server in decode_site(data).servers:
            if server.address in ("0.0.0.0", "::"):
                raise InvalidValue(
                    f"HS_SITE server {server.server_id} has address {server.address}, which no "
                    "client can reach"
                )
            for interface in server.interfaces:
                if not 0 < interface.port < 65536:
                    raise InvalidValue(
                        f"HS_SITE server {server.server_id} has port {interface.port}, not 1-65535"
                    )

    def format_for(self, data: bytes) -> DataFormat:
        try:
            FORMATS["site"].to_json(data)
        except InvalidValue:  # malformed, or with keys or attributes: shown as plain bytes
            return super().format_for(data)
        return FORMATS["site"]


class TypeRegistry:
    """Value types by name; registering a name twice is an error."""

    def __init__(self) -> None:
        self._types: dict[str, ValueType] = {}
        self._generic = ValueType()

    def register(self, name: str, value_type: ValueType) -> None:
        if name in self._types:
            raise ValueError(f"value type {name!r} is already registered")
        self._types[name] = value_type

    def get(self, name: str) -> ValueType:
        return self._types.get(name, self._generic)

    def data_to_json(self, type_name: str, data: bytes) -> dict[str, Any]:
        fmt = self.get(type_name).format_for(data)
        return {"format": fmt.name, "value": fmt.to_json(data)}


REGISTRY = TypeRegistry()
REGISTRY.register(HS_ADMIN, _TypedFormat(FORMATS["admin"]))
REGISTRY.register(HS_VLIST, _TypedFormat(FORMATS["vlist"]))
REGISTRY.register(HS_SITE, _SiteType())
REGISTRY.register(HS_SITE_PREFIX, _SiteType())
REGISTRY.register(HS_PUBKEY, _TypedFormat(FORMATS["key"]))


# ---------------------------------------------------------------------------------------------
# Record validation


def validate_value(value: HandleValue, profile: Profile = PROTOCOL) -> None:
    """Raise ``InvalidValue`` naming the first rule ``value`` breaks."""
    index = value.index
    if index <= 0 or index > MAX_INDEX or len(str(index)) > profile.max_index_digits:
        raise InvalidValue(f"index {index} is not a positive 32-bit integer")
    if not value.type:
        raise InvalidValue(f"value {index} has an empty type")
    if not value.type.isprintable():
        raise InvalidValue(f"value {index} has a non-printable type")
    type_size = len(value.type.encode("utf-8", "surrogatepass"))
    if type_size > profile.max_type_bytes:
        raise InvalidValue(
            f"value {index} type is {type_size} bytes, over the limit of {profile.max_type_bytes}"
        )
    size = len(value.data)
    if size > MAX_DATA_BYTES:
        raise InvalidValue(f"value {index} data is {size} bytes, over {MAX_DATA_BYTES}")
    value_type = REGISTRY.get(value.type)
    if (
        profile.max_string_value_bytes
        and size > profile.max_string_value_bytes
        and value_type.format_for(value.data).name == "string"
    ):
        raise InvalidValue(
            f"value {index} data is {size} bytes, over the {profile.name} limit of "
            f"{profile.max_string_value_bytes}"
        )
    if value.ttl_type not in (TTL_RELATIVE, TTL_ABSOLUTE):
        raise InvalidValue(f"value {index} has ttl type {value.ttl_type}, not 0 or 1")
    if not 0 <= value.ttl <= 0xFFFFFFFF:
        raise InvalidValue(f"value {index} ttl {value.ttl} is out of range")
    if not 0 <= value.permissions <= 0xF:
        raise InvalidValue(f"value {index} permissions {value.permissions} are not 4 bits")
    if len(value.references) > MAX_REFERENCES:
        raise InvalidValue(f"value {index} has over {MAX_REFERENCES} references")
    for ref in value.references:
        _check_packable(ref.handle, ref.index, f"value {index} reference")
    value_type.validate(value.data)


def validate_record(values: tuple[HandleValue, ...], profile: Profile = PROTOCOL) -> None:
    """Check every value and the record rules: at most 2048 values, unique indexes."""
    if len(values) > MAX_VALUES:
        raise InvalidValue(f"{len(values)} values, over the limit of {MAX_VALUES}")
    for value in values:
        validate_value(value, profile)
    check_distinct(values)


def check_distinct(values: Iterable[HandleValue]) -> None:
    """``InvalidValue`` when two of ``values`` have one index (a record, or values to add or
    modify: which one would win is no rule)."""
    seen: set[int] = set()
    for value in values:
        if value.index in seen:
            raise InvalidValue(f"index {value.index} appears twice")
        seen.add(value.index)


def fast_constructor(cls: type[Any]) -> Callable[..., Any]:
    """Build ``cls`` from all its fields, in declaration order, without its ``__init__``.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, which costs
    half the time of decoding a value; setting the slots directly gives the same object. Only for
    frozen, slotted dataclasses without ``__post_init__`` (checked here, at import).
    """
    if "__slots__" not in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} must be slotted and have no __post_init__")
    names = [f.name for f in dataclasses.fields(cls)]
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    lines = [f"def make({', '.join(names)}):", "    self = new(cls)"]
    for name in names:
        namespace[f"set_{name}"] = getattr(cls, name).__set__  # the slot's member descriptor
        lines.append(f"    set_{name}(self, {name})")
    lines.append("    return self")
    exec("\n".join(lines), namespace)
    make: Callable[..., Any] = namespace["make"]
    return make


#: ``HandleValue`` from all its fields in order, without ``__init__`` (decoders and the store)
new_value = fast_constructor(HandleValue)
