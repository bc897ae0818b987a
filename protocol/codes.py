"""Operation codes, response codes and flags of the Handle System (RFC 3652 section 2.2.2).

Numbers follow RFC 3652, the CNRI HANDLE.NET server and the Chinese IDIS additions (601-605, 2000,
2001), as collected in ``shared/reference/handle-system.md``. The enums are tolerant of values they
do not know, like dnspython's ``rcode.py``: ``ResponseCode(999)`` is a pseudo-member named
``UNKNOWN_999`` rather than a ``ValueError``, so a peer speaking a newer dialect cannot crash a decoder.
"""

from __future__ import annotations

import enum
from typing import Any


class _TolerantIntEnum(enum.IntEnum):
    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        member = int.__new__(cls, value)
        member._name_ = f"UNKNOWN_{value}"
        member._value_ = value
        return member

    @property
    def known(self) -> bool:
        """True when the value is one of the named members."""
        return self._name_ in type(self).__members__


class OpCode(_TolerantIntEnum):
    """What a request asks the server to do (RFC 3652 2.2.2.1)."""

    RESOLUTION = 1  #: resolve a handle to its values
    GET_SITEINFO = 2  #: ask for the service site information
    CREATE_HANDLE = 100  #: create a handle with its values
    DELETE_HANDLE = 101  #: delete a handle
    ADD_VALUE = 102  #: add values to an existing handle
    REMOVE_VALUE = 103  #: remove values by index
    MODIFY_VALUE = 104  #: replace values by index
    LIST_HANDLES = 105  #: list the handles under a prefix
    LIST_NAS = 106  #: list derived prefixes under a prefix
    CHALLENGE_RESPONSE = 200  #: answer to an authentication challenge
    VERIFY_RESPONSE = 201  #: ask to verify a challenge answer
    HOME_NA = 300  #: make this server responsible for a prefix
    UNHOME_NA = 301  #: stop being responsible for a prefix
    LIST_HOMED_NAS = 302  #: list the prefixes homed on this server
    SESSION_SETUP = 400  #: set up a session
    SESSION_TERMINATE = 401  #: end a session
    SESSION_EXCHANGEKEY = 402  #: exchange a session key
    GET_NEXT_TXN_ID = 1000  #: replication: next transaction id
    RETRIEVE_TXN_LOG = 1001  #: replication: transaction log
    DUMP_HANDLES = 1002  #: replication: dump every handle
    LOGIN = 2000  #: Chinese IDIS: password login
    LOGIN_ID_SYSTEM = 2001  #: Chinese IDIS: public-key login


class ResponseCode(_TolerantIntEnum):
    """Outcome of a request (RFC 3652 2.2.2.2 plus the Chinese node additions)."""

    RESERVED = 0  #: requests carry 0 here
    SUCCESS = 1  #: the request was carried out
    ERROR = 2  #: unspecified server error
    SERVER_BUSY = 3  #: the server is overloaded or a hop timed out
    PROTOCOL_ERROR = 4  #: the message could not be parsed
    OPERATION_NOT_SUPPORTED = 5  #: unknown or unsupported op code
    RECURSION_LIMIT = 6  #: too many referrals were followed
    SERVER_BACKUP = 7  #: the server is a read-only backup
    HANDLE_NOT_FOUND = 100  #: no such handle
    HANDLE_ALREADY_EXISTS = 101  #: create of an existing handle
    INVALID_HANDLE = 102  #: the handle is malformed
    VALUES_NOT_FOUND = 200  #: no value matched the index or type filter
    VALUE_ALREADY_EXISTS = 201  #: add of an index that exists
    INVALID_VALUE = 202  #: a value is malformed or breaks a limit
    EXPIRED_SITE_INFO = 300  #: the client's site info is stale
    SERVER_NOT_RESPONSIBLE = 301  #: the prefix is not homed here
    SERVICE_REFERRAL = 302  #: ask another service (site info in the body)
    PREFIX_REFERRAL = 303  #: ask the service of the prefix (site info in the body)
    NOT_AUTHORIZED = 400  #: the identity lacks the permission
    ACCESS_DENIED = 401  #: the value may not be read
    AUTHENTICATION_NEEDED = 402  #: credentials are required (or a challenge follows)
    AUTHENTICATION_FAILED = 403  #: the credentials were wrong
    INVALID_CREDENTIAL = 404  #: the credential is malformed
    AUTHENTICATION_TIMEOUT = 405  #: the challenge expired
    UNABLE_TO_AUTHENTICATE = 406  #: the identity's key could not be used
    SESSION_TIMEOUT = 500  #: session errors 500-505
    SESSION_FAILED = 501  #: the session could not be set up
    SESSION_NO_KEY = 502  #: no session key
    SESSION_NEED_PUBKEY = 503  #: the session needs a public key
    SESSION_NEED_SERVER_PUBKEY = 504  #: the session needs the server's key
    SESSION_INVALID = 505  #: unknown session id
    CLIENT_CHANNEL_ERROR = 601  #: IDIS: the client channel failed
    CLIENT_TIMEOUT = 602  #: IDIS: the client timed out
    DAILY_REQUEST_LIMIT = 603  #: IDIS quota: daily request limit reached
    REGISTRATION_COUNT_LIMIT = 604  #: IDIS quota: registration count reached
    PREFIX_LIMIT = 605  #: IDIS quota: prefix limit reached


class OpFlag(enum.IntFlag, boundary=enum.KEEP):
    """Request options in the message header (RFC 3652 2.2.2.3, plus CNRI's three extra bits).

    ``boundary=KEEP`` keeps bits we do not name, so unknown flags survive a round trip.
    """

    NONE = 0  #: no option set
    AUTHORITATIVE = 0x80000000  #: answer from the primary, bypassing caches
    CERTIFY = 0x40000000  #: sign the answer
    ENCRYPT = 0x20000000  #: encrypt the answer
    RECURSIVE = 0x10000000  #: follow referrals on the client's behalf
    CACHE_CERTIFY = 0x08000000  #: a cache must certify its answer
    CONTINUOUS = 0x04000000  #: more messages follow
    KEEP_ALIVE = 0x02000000  #: keep the TCP connection open
    PUBLIC_ONLY = 0x01000000  #: return only publicly readable values
    REQUEST_DIGEST = 0x00800000  #: include a digest of the request
    OVERWRITE = 0x00400000  #: create may replace an existing handle
    MINT_SUFFIX = 0x00200000  #: the server picks the suffix
    DO_NOT_REFER = 0x00100000  #: answer without referrals


class MessageFlag(enum.IntFlag, boundary=enum.KEEP):
    """Envelope flags (RFC 3652 2.2.1): how the message itself was transported."""

    NONE = 0  #: plain message
    COMPRESSED = 0x8000  #: the body is compressed
    ENCRYPTED = 0x4000  #: the body is encrypted
    TRUNCATED = 0x2000  #: the answer did not fit the datagram; retry over TCP


class Permission(enum.IntFlag, boundary=enum.KEEP):
    """Per-value read/write bits (RFC 3651 3.1); the default is 0xE (1110)."""

    NONE = 0  #: nobody may read or write
    PUBLIC_WRITE = 0x1  #: anyone may modify the value
    PUBLIC_READ = 0x2  #: anyone may read the value
    ADMIN_WRITE = 0x4  #: the handle's administrators may modify it
    ADMIN_READ = 0x8  #: the handle's administrators may read it


#: 0xE (1110): admins read and write, the public reads; a plain int, as stored in every value
DEFAULT_PERMISSIONS = int(Permission.ADMIN_READ | Permission.ADMIN_WRITE | Permission.PUBLIC_READ)


class AdminPermission(enum.IntFlag, boundary=enum.KEEP):
    """The 12 administrative permission bits of an HS_ADMIN value (RFC 3651 3.2.5)."""

    NONE = 0  #: no rights
    ADD_HANDLE = 0x1  #: create handles under the prefix
    DELETE_HANDLE = 0x2  #: delete handles
    ADD_NA = 0x4  #: create derived prefixes
    DELETE_NA = 0x8  #: delete derived prefixes
    MODIFY_VALUE = 0x10  #: change non-admin values
    REMOVE_VALUE = 0x20  #: remove non-admin values
    ADD_VALUE = 0x40  #: add non-admin values
    MODIFY_ADMIN = 0x80  #: change HS_ADMIN values
    REMOVE_ADMIN = 0x100  #: remove HS_ADMIN values
    ADD_ADMIN = 0x200  #: add HS_ADMIN values
    READ_VALUE = 0x400  #: read values that are not public
    LIST_HANDLES = 0x800  #: list the handles of a prefix


ALL_ADMIN_PERMISSIONS = AdminPermission(0xFFF)


def http_status(code: int, *, op: OpCode = OpCode.RESOLUTION, created: bool = False) -> int:
    """HTTP status the Handle.net REST API answers for a response code (the reference's table)."""
    if code == ResponseCode.SUCCESS:
        return 201 if created else 200
    if code == ResponseCode.VALUES_NOT_FOUND:
        return 200 if op == OpCode.RESOLUTION else 400
    return _HTTP_STATUS.get(code, 500)


_HTTP_STATUS: dict[int, int] = {
    ResponseCode.SERVICE_REFERRAL: 300,
    ResponseCode.PREFIX_REFERRAL: 300,
    ResponseCode.HANDLE_NOT_FOUND: 404,
    ResponseCode.HANDLE_ALREADY_EXISTS: 409,
    ResponseCode.VALUE_ALREADY_EXISTS: 409,
    ResponseCode.PROTOCOL_ERROR: 400,
    ResponseCode.INVALID_HANDLE: 400,
    ResponseCode.INVALID_VALUE: 400,
    ResponseCode.SERVER_NOT_RESPONSIBLE: 400,
    ResponseCode.OPERATION_NOT_SUPPORTED: 501,
    ResponseCode.SERVER_BUSY: 503,
    ResponseCode.SERVER_BACKUP: 503,
    ResponseCode.AUTHENTICATION_NEEDED: 401,
    ResponseCode.NOT_AUTHORIZED: 403,
    ResponseCode.ACCESS_DENIED: 403,
    # The reference's table says 403, but the reference server answers a wrong password with
    # 401 (observed on HANDLE.NET 9.3.1), which is what clients retrying with a password expect.
    ResponseCode.AUTHENTICATION_FAILED: 401,
    ResponseCode.INVALID_CREDENTIAL: 403,
}
