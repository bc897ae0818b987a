"""Client SDK: one asyncio API over the node's three transports (REST over HTTP, msgpack over TCP/UDP).

``HTTPClient(base_url)`` (in ``node.httpclient``), ``TCPClient(host,
port)`` and ``UDPClient(host, port)`` share the methods of ``Client``; each method builds a typed
request from ``protocol.messages``, sends it and returns the typed ``Response`` (``ErrorResponse``
for any failure code). A non-success response code is never raised: it is the answer. When no
answer comes at all, the result is an ``ErrorResponse`` too, with the IDIS client codes the Chinese
SDKs use: CLIENT_TIMEOUT (602) after the per-request timeout, CLIENT_CHANNEL_ERROR (601) when the
connection failed. Only programming errors raise (an op the REST API has no route for raises
``NotSupportedOverHTTP``).

Retries (``attempts``, first delay ``backoff_s``, doubling) happen only when no answer came, and only
for operations whose outcome a repeat cannot change: resolve, list_handles, list_homed, site_info.
Delete, add/remove/modify values, home and unhome are sent once (a lost answer may hide a done
write; repeating a delete would turn its success into HANDLE_NOT_FOUND). Create is retried too, with
one rule: a retried create that then gets HANDLE_ALREADY_EXISTS (101) may be meeting its own earlier
attempt, so the client resolves the handle authoritatively and, when the stored values are what it
sent (all but their timestamps, see ``same_values``), reports success (a ``CreateResponse``). The
check needs a credential that may read every value sent, and never matches HS_SECKEY values (the
node stores them hashed), so such creates keep the 101. A create that mints its suffix is never
retried (each attempt would mint a new handle).
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.errors import MalformedMessage, ProtocolError
from protocol.messages import (
    AddValuesRequest,
    CreateRequest,
    CreateResponse,
    Credential,
    DeleteRequest,
    ErrorResponse,
    GetSiteInfoRequest,
    HomePrefixRequest,
    ListHandlesRequest,
    ListHomedPrefixesRequest,
    ModifyValuesRequest,
    RemoveValuesRequest,
    Request,
    ResolveRequest,
    ResolveResponse,
    Response,
    Server,
    SiteInfo,
    TruncatedResponse,
    UnhomePrefixRequest,
)
from protocol.records import HandleValue
from protocol.site import query_interface, server_for
from protocol.wire import (
    ANSWER_LIMITS,
    NEED_DATA,
    UDP_MAX_ANSWER_BYTES,
    Connection,
    WireLimits,
    decode_message,
    encode_message,
    frame,
)

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF_S = 0.1
_MAX_REQUEST_ID = 0xFFFFFFFF


class _NoAnswer(Exception):
    """One attempt got no usable answer; ``code`` is the IDIS client code to report."""

    def __init__(self, code: ResponseCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def same_values(stored: Iterable[HandleValue], sent: Iterable[HandleValue]) -> bool:
    """Whether two records hold the same values: index, type, data, TTL, permissions and
    references alike; only timestamps, which the node sets, may differ."""

    def undated(values: Iterable[HandleValue]) -> list[HandleValue]:
        return sorted(
            (dataclasses.replace(v, timestamp=0) for v in values), key=lambda v: (v.index, v.type)
        )

    return undated(stored) == undated(sent)


class Client(abc.ABC):
    """The operations of a Handle client; subclasses only implement one exchange (``_exchange``).

    ``credential`` authenticates writes and listings (and resolutions asked with
    ``public_only=False``). ``timeout_s`` bounds each attempt; ``attempts`` and ``backoff_s`` set the
    retries described in the module docstring.
    """

    def __init__(
        self,
        *,
        credential: Credential | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff_s: float = DEFAULT_BACKOFF_S,
    ) -> None:
        self.credential = credential
        self.timeout_s = timeout_s
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s

    # -- the operations ------------------------------------------------------------------------

    async def resolve(
        self,
        handle: str,
        indexes: Sequence[int] = (),
        types: Sequence[str] = (),
        public_only: bool | None = None,
        authoritative: bool = False,
        recursive: bool = False,
    ) -> Response:
        """Resolve ``handle`` (only ``indexes``/``types`` when given; a value matching either counts).

        ``public_only`` None (the default) resolves anonymously, the cached hot path;
        ``public_only=False`` sends the credential so admin-readable values come back too;
        ``public_only=True`` asks for public values only. ``authoritative`` bypasses the node cache.
        ``recursive`` asks a node that does not serve the handle to follow the referral itself
        instead of answering with it (a ``ReferralResponse``). Retried when no answer comes.
        """
        flags = OpFlag.RECURSIVE if recursive else 0
        if public_only:
            flags |= OpFlag.PUBLIC_ONLY
        if authoritative:
            flags |= OpFlag.AUTHORITATIVE
        credential = self.credential if public_only is False else None
        request = ResolveRequest(
            handle=handle,
            indexes=tuple(indexes),
            types=tuple(types),
            flags=flags,
            credential=credential,
        )
        return (await self._send(request, retry=True))[0]

    async def resolve_request(self, request: ResolveRequest, retry: bool = False) -> Response:
        """Send a prepared resolution (its flags and filters as given); for resolvers."""
        return (await self._send(request, retry=retry))[0]

    async def create(
        self,
        handle: str,
        values: Sequence[HandleValue],
        overwrite: bool = False,
        mint_suffix: bool = False,
    ) -> Response:
        """Create ``handle`` with ``values`` (replace an existing one when ``overwrite``).

        With ``mint_suffix`` the node picks the suffix (``handle`` is ``prefix/`` or a stem) and the
        answer's ``handle`` names the new one. Retried when no answer comes, except when minting;
        a retry answered HANDLE_ALREADY_EXISTS (101) counts as success when the stored record holds
        exactly the values sent, TTLs and permissions too (see the module docstring), else the 101
        error is returned.
        """
        flags = (OpFlag.OVERWRITE if overwrite else 0) | (OpFlag.MINT_SUFFIX if mint_suffix else 0)
        request = CreateRequest(
            handle=handle, values=tuple(values), flags=flags, credential=self.credential
        )
        response, tries = await self._send(request, retry=not mint_suffix)
        if tries > 1 and response.code == ResponseCode.HANDLE_ALREADY_EXISTS:
            return await self._reconcile_create(request, response)
        return response

    async def delete(self, handle: str) -> Response:
        """Delete ``handle``; sent once (a repeat of a done delete would answer 100)."""
        return (await self._send(DeleteRequest(handle=handle, credential=self.credential)))[0]

    async def add_values(
        self, handle: str, values: Sequence[HandleValue], overwrite: bool = False
    ) -> Response:
        """Add values at unused indexes (replace used ones when ``overwrite``); sent once."""
        request = AddValuesRequest(
            handle=handle,
            values=tuple(values),
            flags=OpFlag.OVERWRITE if overwrite else 0,
            credential=self.credential,
        )
        return (await self._send(request))[0]

    async def remove_values(self, handle: str, indexes: Sequence[int]) -> Response:
        """Remove the values at ``indexes``; sent once."""
        request = RemoveValuesRequest(
            handle=handle, indexes=tuple(indexes), credential=self.credential
        )
        return (await self._send(request))[0]

    async def modify_values(self, handle: str, values: Sequence[HandleValue]) -> Response:
        """Replace the values with the same indexes; sent once.

        Over HTTP this is ``PUT ?index=..&overwrite=true``, the REST API's add-or-replace: an index
        not yet present is added there instead of being refused with VALUES_NOT_FOUND (200).
        """
        request = ModifyValuesRequest(
            handle=handle, values=tuple(values), credential=self.credential
        )
        return (await self._send(request))[0]

    async def list_handles(self, prefix: str, page: int = 0, page_size: int = 100) -> Response:
        """One page of the handles under ``prefix`` (needs a credential); retried."""
        request = ListHandlesRequest(
            prefix=prefix, page=page, page_size=page_size, credential=self.credential
        )
        return (await self._send(request, retry=True))[0]

    async def list_homed(self) -> Response:
        """The prefixes homed on the node; retried. Not in the REST API."""
        return (await self._send(ListHomedPrefixesRequest(credential=self.credential), True))[0]

    async def home(self, prefix: str) -> Response:
        """Home ``prefix`` (node admin credential ``300:0.NA/<prefix>``); sent once."""
        request = HomePrefixRequest(prefix=prefix, credential=self.credential)
        return (await self._send(request))[0]

    async def unhome(self, prefix: str) -> Response:
        """Stop serving ``prefix`` (node admin credential); sent once."""
        request = UnhomePrefixRequest(prefix=prefix, credential=self.credential)
        return (await self._send(request))[0]

    async def site_info(self) -> Response:
        """The node's site information; retried. Not in the REST API."""
        return (await self._send(GetSiteInfoRequest(credential=self.credential), True))[0]

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; the client may not be used afterwards."""

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the machinery ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def _exchange(self, request: Request) -> Response:
        """Send ``request`` once and return its answer; raise ``_NoAnswer``, ``OSError`` or
        ``TimeoutError`` when none came, ``ProtocolError`` when it cannot be written."""

    async def _send(self, request: Request, retry: bool = False) -> tuple[Response, int]:
        """The answer to ``request`` and how many attempts it took (retrying only when ``retry``)."""
        attempts = self.attempts if retry else 1
        delay = self.backoff_s
        failure = _NoAnswer(ResponseCode.CLIENT_CHANNEL_ERROR, "no attempt was made")
        for attempt in range(1, attempts + 1):
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await self._exchange(request), attempt
            except ProtocolError as exc:  # the request could not be written: nothing was sent
                return self._error(request, exc.code, exc.message), attempt
            except TimeoutError:
                failure = _NoAnswer(
                    ResponseCode.CLIENT_TIMEOUT, f"no answer within {self.timeout_s:g} s"
                )
            except _NoAnswer as exc:
                failure = exc
            except OSError as exc:  # ConnectionError and refused/unreachable sockets
                failure = _NoAnswer(
                    ResponseCode.CLIENT_CHANNEL_ERROR, f"connection failed: {exc or type(exc)}"
                )
            if attempt < attempts:
                await asyncio.sleep(delay)
                delay *= 2
        message = failure.message + (f" (after {attempts} attempts)" if attempts > 1 else "")
        return self._error(request, failure.code, message), attempts

    async def _reconcile_create(self, request: CreateRequest, error: Response) -> Response:
        """After a retried create got 101: success if the stored record is what was sent."""
        check = ResolveRequest(
            handle=request.handle, flags=OpFlag.AUTHORITATIVE, credential=self.credential
        )
        stored, _ = await self._send(check, retry=True)
        if (
            isinstance(stored, ResolveResponse)
            and stored.handle == request.handle  # not a record that differs only in case
            and same_values(stored.values, request.values)
        ):
            return CreateResponse(handle=stored.handle, created=True)
        return error

    @staticmethod
    def _error(request: Request, code: int, message: str) -> ErrorResponse:
        return ErrorResponse(
            code=ResponseCode(code),
            answers=request.op,
            message=message,
            handle=getattr(request, "handle", ""),
        )


# ---------------------------------------------------------------------------------------------
# msgpack over TCP and UDP


class _Pending:
    """Futures of requests in flight, by request id (shared by the TCP and UDP protocols)."""

    def __init__(self) -> None:
        self.futures: dict[int, asyncio.Future[Response]] = {}
        self._next_id = 0

    def add(self) -> tuple[int, asyncio.Future[Response]]:
        # request id 0 is what a server answers when it could not read the id: never use it
        while True:
            self._next_id = self._next_id % _MAX_REQUEST_ID + 1
            if self._next_id not in self.futures:
                break
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.futures[self._next_id] = future
        return self._next_id, future

    def deliver(self, response: Response) -> None:
        future = self.futures.pop(response.request_id, None)
        if future is not None and not future.done():
            future.set_result(response)

    def fail_all(self, exc: BaseException) -> None:
        futures, self.futures = self.futures, {}
        for future in futures.values():
            if not future.done():
                future.set_exception(exc)


def _encode(request: Request, request_id: int) -> bytes:
    """``request`` as msgpack; an integer msgpack cannot hold (beyond 64 bits, which JSON and so
    HTTP send as they are) makes PROTOCOL_ERROR, the answer ``_send`` gives, not a crash."""
    try:
        return encode_message(dataclasses.replace(request, request_id=request_id))
    except OverflowError as exc:
        raise MalformedMessage(f"the request cannot be sent over msgpack: {exc}") from None


def _bad_answer(exc: ProtocolError, op: int) -> ErrorResponse:
    return ErrorResponse(
        request_id=exc.request_id,
        code=ResponseCode.PROTOCOL_ERROR,
        answers=OpCode(op),
        message=f"malformed answer: {exc.message}",
    )


class _TCPStream(asyncio.Protocol):
    def __init__(self, limits: WireLimits) -> None:
        self.wire = Connection(limits)
        self.pending = _Pending()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        #: why the connection is about to close, for the requests it leaves unanswered
        self.closing_because = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's do not subclass it

    def data_received(self, data: bytes) -> None:
        self.wire.receive_data(data)
        while True:
            try:
                event = self.wire.next_event()
            except ProtocolError as exc:
                if exc.fatal:  # the stream cannot be resynchronised
                    self.closing_because = f"malformed answer: {exc.message}"
                    assert self.transport is not None
                    self.transport.close()
                    return
                self.pending.deliver(_bad_answer(exc, exc.op))
                continue
            if event is NEED_DATA:
                return
            if isinstance(event, ErrorResponse) and not event.request_id:
                # a request the node could not read (SPEC 1.1: an oversized frame), after which
                # it closes the connection: its reason is the one to report
                code = ResponseCode(event.code)
                self.closing_because = f"the node refused a request, {code.name}: {event.message}"
            elif isinstance(event, Response):
                self.pending.deliver(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        reason = self.closing_because or exc or "closed"
        self.pending.fail_all(
            _NoAnswer(ResponseCode.CLIENT_CHANNEL_ERROR, f"connection lost: {reason}")
        )


class TCPClient(Client):
    """msgpack frames over one TCP connection, pipelined; reconnects when the connection drops.

    ``limits`` bounds the answers read (``ANSWER_LIMITS``: as long as a record or page may be,
    beyond the node's limits on requests).
    """

    def __init__(
        self, host: str, port: int, *, limits: WireLimits = ANSWER_LIMITS, **options: Any
    ) -> None:
        super().__init__(**options)
        self.host = host
        self.port = port
        self.limits = limits
        self.connects = 0  #: connections opened so far (1 + reconnects)
        self._stream: _TCPStream | None = None
        self._lock = asyncio.Lock()

    async def _connected(self) -> _TCPStream:
        stream = self._stream
        if stream is not None and not stream.lost:
            return stream
        async with self._lock:
            if self._stream is None or self._stream.lost:
                loop = asyncio.get_running_loop()
                limits = self.limits
                _, self._stream = await loop.create_connection(
                    lambda: _TCPStream(limits), self.host, self.port
                )
                self.connects += 1
            return self._stream

    async def _exchange(self, request: Request) -> Response:
        stream = await self._connected()
        request_id, future = stream.pending.add()
        try:
            assert stream.transport is not None
            stream.transport.write(frame(_encode(request, request_id)))
            return await future
        finally:
            stream.pending.futures.pop(request_id, None)

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None and stream.transport is not None:
            stream.transport.close()


class _UDPSocket(asyncio.DatagramProtocol):
    def __init__(self, limits: WireLimits) -> None:
        self.limits = limits
        self.pending = _Pending()
        self.transport: asyncio.DatagramTransport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # selector transports don't subclass it

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            message = decode_message(data, self.limits)
        except ProtocolError as exc:
            self.pending.deliver(_bad_answer(exc, exc.op))
            return
        if isinstance(message, Response):
            self.pending.deliver(message)

    def error_received(self, exc: Exception) -> None:
        # an ICMP error (port unreachable) on the connected socket: every request in flight failed
        self.pending.fail_all(_NoAnswer(ResponseCode.CLIENT_CHANNEL_ERROR, f"UDP error: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pending.fail_all(_NoAnswer(ResponseCode.CLIENT_CHANNEL_ERROR, "UDP socket closed"))


#: a create naming a longer handle (UTF-8 bytes) may get an answer too big for a datagram: room
#: for the envelope and a minted suffix (32 hex digits) within ``UDP_MAX_ANSWER_BYTES``
_LONGEST_UDP_HANDLE = UDP_MAX_ANSWER_BYTES - 128
_MAX_DATAGRAM_BYTES = 65507  #: the most a UDP datagram over IPv4 carries


class UDPClient(Client):
    """One msgpack datagram per request; an answer too big for UDP is asked again over TCP.

    The TCP retry (same host and port) happens inside the same attempt and is counted in
    ``tcp_fallbacks``; the TCP connection is kept for later fallbacks. Asking again is safe only
    for reads: a create, whose answer names its handle, goes over TCP at once when that answer
    may not fit a datagram (other writes answer without naming anything), and so does a request
    too big for a datagram itself.
    """

    def __init__(
        self, host: str, port: int, *, limits: WireLimits = ANSWER_LIMITS, **options: Any
    ) -> None:
        super().__init__(**options)
        self.host = host
        self.port = port
        self.limits = limits
        self.tcp_fallbacks = 0  #: requests sent again or at once over TCP (see above)
        self._options = options
        self._socket: _UDPSocket | None = None
        self._tcp: TCPClient | None = None
        self._lock = asyncio.Lock()

    async def _bound(self) -> _UDPSocket:
        sock = self._socket
        if sock is not None and not sock.lost:
            return sock
        async with self._lock:
            if self._socket is None or self._socket.lost:
                loop = asyncio.get_running_loop()
                limits = self.limits
                _, self._socket = await loop.create_datagram_endpoint(
                    lambda: _UDPSocket(limits), remote_addr=(self.host, self.port)
                )
            return self._socket

    async def _exchange(self, request: Request) -> Response:
        if type(request) is CreateRequest and len(request.handle.encode()) > _LONGEST_UDP_HANDLE:
            return await self._over_tcp(request)
        sock = await self._bound()
        request_id, future = sock.pending.add()
        try:
            payload = _encode(request, request_id)
            if len(payload) > _MAX_DATAGRAM_BYTES:
                # sendto would fail, and the socket report it as an error of every request on it
                return await self._over_tcp(request)
            assert sock.transport is not None
            sock.transport.sendto(payload)
            response = await future
        finally:
            sock.pending.futures.pop(request_id, None)
        if isinstance(response, TruncatedResponse):
            return await self._over_tcp(request)
        return response

    async def _over_tcp(self, request: Request) -> Response:
        self.tcp_fallbacks += 1
        if self._tcp is None:
            self._tcp = TCPClient(self.host, self.port, limits=self.limits, **self._options)
        return await self._tcp._exchange(request)

    async def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None and sock.transport is not None:
            sock.transport.close()
        if self._tcp is not None:
            await self._tcp.close()
            self._tcp = None


class SiteClient(Client):
    """msgpack over TCP to a site of several servers: each request goes to the server the site's
    MD5-mod-N rule picks for its handle (``protocol.site.server_for``); requests naming no handle
    go to the first server. ``site`` comes from ``site_info()`` of any of its servers or from a
    referral's HS_SITE value."""

    def __init__(self, site: SiteInfo, **options: Any) -> None:
        super().__init__(**options)
        self.site = site
        self._clients: dict[int, TCPClient] = {}
        for server in site.servers:
            interface = query_interface(server, 1)
            if interface is None:
                raise ValueError(f"server {server.server_id} of the site lists no TCP interface")
            self._clients[server.server_id] = TCPClient(server.address, interface.port)

    def server(self, handle: str) -> Server:
        """The server of the site responsible for ``handle``."""
        prefix, _, suffix = handle.partition("/")
        return server_for(self.site, prefix, suffix)

    async def _exchange(self, request: Request) -> Response:
        handle = getattr(request, "handle", None)
        server = self.site.servers[0] if handle is None else self.server(handle)
        return await self._clients[server.server_id]._exchange(request)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
