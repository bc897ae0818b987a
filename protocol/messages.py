"""Typed, immutable requests and responses: what every transport decodes into and encodes from.

One frozen, slotted dataclass per operation under ``Message``; ``op`` names the Handle op code
(RFC 3652 2.2.2.1) each one carries on the wire. Header fields shared by all (request id, op flags)
live in the base. Options that RFC 3652 puts in the op flags (public-only, authoritative, recursive,
overwrite, mint suffix) stay flags and are read through properties, so there is one source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.records import HandleValue, fast_constructor

# plain ints: ``flags & OpFlag.X`` goes through the enum's reflected operator (a microsecond,
# on the resolution hot path)
_PUBLIC_ONLY = int(OpFlag.PUBLIC_ONLY)
_AUTHORITATIVE = int(OpFlag.AUTHORITATIVE)
_RECURSIVE = int(OpFlag.RECURSIVE)
_OVERWRITE = int(OpFlag.OVERWRITE)
_MINT_SUFFIX = int(OpFlag.MINT_SUFFIX)

MAX_PAGE_SIZE = 10000  #: handles in one page of a listing, at most


@dataclass(frozen=True, slots=True)
class Credential:
    """The identity a write is made as: ``index:handle`` and its secret (HS_SECKEY)."""

    handle: str  #: the admin handle, e.g. ``88.118.8/ADMIN``
    index: int  #: the index of its key, 300 by convention
    secret: str  #: the shared secret, sent only to authenticate

    def __repr__(self) -> str:  # never print the secret
        return f"Credential({self.index}:{self.handle})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Fields every message carries in its header."""

    op: ClassVar[OpCode]
    request_id: int = 0  #: matches a response to its request (pipelining)
    flags: int = 0  #: ``OpFlag`` bits

    def has(self, flag: OpFlag) -> bool:
        return bool(self.flags & int(flag))


@dataclass(frozen=True, slots=True, kw_only=True)
class Request(Message):
    """A request; ``credential`` is present on authenticated writes."""

    credential: Credential | None = None  #: who asks, when it matters


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveRequest(Request):
    op = OpCode.RESOLUTION
    handle: str  #: the handle to resolve
    indexes: tuple[int, ...] = ()  #: only these indexes (empty: all)
    types: tuple[str, ...] = ()  #: only these types; ``X.`` matches sub-types ``X.*``

    @property
    def public_only(self) -> bool:
        return bool(self.flags & _PUBLIC_ONLY)

    @property
    def authoritative(self) -> bool:
        return bool(self.flags & _AUTHORITATIVE)

    @property
    def recursive(self) -> bool:
        return bool(self.flags & _RECURSIVE)


@dataclass(frozen=True, slots=True, kw_only=True)
class GetSiteInfoRequest(Request):
    op = OpCode.GET_SITEINFO


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateRequest(Request):
    op = OpCode.CREATE_HANDLE
    handle: str  #: the handle, or the prefix-and-suffix stem when minting
    values: tuple[HandleValue, ...]  #: the record

    @property
    def overwrite(self) -> bool:
        return bool(self.flags & _OVERWRITE)

    @property
    def mint_suffix(self) -> bool:
        return bool(self.flags & _MINT_SUFFIX)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRequest(Request):
    op = OpCode.DELETE_HANDLE
    handle: str  #: the handle to delete


@dataclass(frozen=True, slots=True, kw_only=True)
class AddValuesRequest(Request):
    op = OpCode.ADD_VALUE
    handle: str  #: the existing handle
    values: tuple[HandleValue, ...]  #: values with indexes not yet used

    @property
    def overwrite(self) -> bool:
        return bool(self.flags & _OVERWRITE)


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveValuesRequest(Request):
    op = OpCode.REMOVE_VALUE
    handle: str  #: the existing handle
    indexes: tuple[int, ...]  #: indexes to remove


@dataclass(frozen=True, slots=True, kw_only=True)
class ModifyValuesRequest(Request):
    op = OpCode.MODIFY_VALUE
    handle: str  #: the existing handle
    values: tuple[HandleValue, ...]  #: replacements for values with the same indexes


@dataclass(frozen=True, slots=True, kw_only=True)
class ListHandlesRequest(Request):
    op = OpCode.LIST_HANDLES
    prefix: str  #: list the handles under this prefix
    page: int = 0  #: zero-based page number
    page_size: int = 100  #: handles per page


@dataclass(frozen=True, slots=True, kw_only=True)
class ListHomedPrefixesRequest(Request):
    op = OpCode.LIST_HOMED_NAS


@dataclass(frozen=True, slots=True, kw_only=True)
class HomePrefixRequest(Request):
    op = OpCode.HOME_NA
    prefix: str  #: the prefix this node becomes responsible for


@dataclass(frozen=True, slots=True, kw_only=True)
class UnhomePrefixRequest(Request):
    op = OpCode.UNHOME_NA
    prefix: str  #: the prefix this node stops serving


@dataclass(frozen=True, slots=True, kw_only=True)
class Response(Message):
    """A response; ``code`` is its response code (SUCCESS unless it is an error)."""

    code: int = ResponseCode.SUCCESS  #: ``ResponseCode`` value


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveResponse(Response):
    op = OpCode.RESOLUTION
    handle: str  #: the handle as stored
    values: tuple[HandleValue, ...]  #: matching values, ascending index


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateResponse(Response):
    op = OpCode.CREATE_HANDLE
    handle: str  #: the handle created (the minted one when the server picked the suffix)
    created: bool = True  #: False when an existing handle was overwritten


@dataclass(frozen=True, slots=True, kw_only=True)
class DoneResponse(Response):
    """Success of an op that returns nothing but its outcome (delete, value changes, home)."""

    answers: OpCode  #: the op that succeeded
    created: bool = False  #: ADD_VALUE added a value that was not there (HTTP 201)

    @property
    def op(self) -> OpCode:  # type: ignore[override]
        return self.answers


@dataclass(frozen=True, slots=True, kw_only=True)
class ListHandlesResponse(Response):
    op = OpCode.LIST_HANDLES
    prefix: str  #: the prefix listed
    total: int  #: handles under the prefix
    page: int  #: the page returned
    page_size: int  #: its size
    handles: tuple[str, ...]  #: the handles of this page


@dataclass(frozen=True, slots=True, kw_only=True)
class ListPrefixesResponse(Response):
    op = OpCode.LIST_HOMED_NAS
    prefixes: tuple[str, ...]  #: prefixes homed on the node


@dataclass(frozen=True, slots=True)
class Interface:
    """One way to reach a server (HS_SITE, RFC 3651 3.2.2)."""

    kind: int  #: 1 admin, 2 query, 3 both
    protocol: int  #: 0 UDP, 1 TCP, 2 HTTP, 3 HTTPS
    port: int  #: port number


@dataclass(frozen=True, slots=True)
class Server:
    """One server of a site."""

    server_id: int  #: its number within the site
    address: str  #: host name or IP address
    interfaces: tuple[Interface, ...]  #: what it speaks where


@dataclass(frozen=True, slots=True)
class SiteInfo:
    """A service site: its servers and how handles are spread over them."""

    serial: int  #: bumped on every change
    hash_option: int  #: 0 prefix, 1 suffix, 2 whole handle
    servers: tuple[Server, ...]  #: at least one
    primary: bool = True  #: the site accepts writes
    multi_primary: bool = False  #: every server accepts writes


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteInfoResponse(Response):
    op = OpCode.GET_SITEINFO
    site: SiteInfo  #: this node's site


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorResponse(Response):
    """Any failure: the code says what, the message says why, ``answers`` names the op."""

    answers: OpCode  #: the op that failed
    message: str = ""  #: a human-readable reason
    handle: str = ""  #: the handle concerned, when there is one

    @property
    def op(self) -> OpCode:  # type: ignore[override]
        return self.answers


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferralResponse(Response):
    """SERVICE_REFERRAL (302) or PREFIX_REFERRAL (303): ask the service these values describe."""

    answers: OpCode  #: the op referred (RESOLUTION, or a write)
    handle: str = ""  #: the handle asked about
    prefix_handle: str  #: the prefix record the service information is from, e.g. ``0.NA/88.100``
    values: tuple[HandleValue, ...]  #: its HS_SITE / HS_SITE.PREFIX / HS_SERV values

    @property
    def op(self) -> OpCode:  # type: ignore[override]
        return self.answers


@dataclass(frozen=True, slots=True, kw_only=True)
class TruncatedResponse(Response):
    """A UDP answer that did not fit: the client must ask again over TCP."""

    answers: OpCode  #: the op whose answer was too big

    @property
    def op(self) -> OpCode:  # type: ignore[override]
        return self.answers


def error_for(request: Request, code: int, message: str) -> ErrorResponse:
    """The error answer to ``request``: its id, flags, op and handle, with ``code`` and why."""
    return ErrorResponse(
        request_id=request.request_id,
        flags=request.flags,
        code=ResponseCode(code),
        answers=request.op,
        message=message,
        handle=getattr(request, "handle", ""),
    )


#: the hot path's messages from all their fields in order, without ``__init__``
new_resolve_request = fast_constructor(ResolveRequest)
new_resolve_response = fast_constructor(ResolveResponse)

REQUEST_TYPES: dict[int, type[Request]] = {
    cls.op: cls
    for cls in (
        ResolveRequest,
        GetSiteInfoRequest,
        CreateRequest,
        DeleteRequest,
        AddValuesRequest,
        RemoveValuesRequest,
        ModifyValuesRequest,
        ListHandlesRequest,
        ListHomedPrefixesRequest,
        HomePrefixRequest,
        UnhomePrefixRequest,
    )
}
