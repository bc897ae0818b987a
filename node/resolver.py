"""Resolution through the hierarchy: top-level node -> the site a referral names -> its server.

A recursive node resolves everything this way; a secondary node does it for a request carrying
the RECURSIVE flag, and asks the top-level which node serves a prefix it does not hold, to answer
with a referral. The walk starts at the top-level node (which answers PREFIX_REFERRAL 303 with
the HS_SITE values of the longest delegated prefix), picks the site's server for the handle with
the MD5-mod-N rule (``protocol.site.server_for``) and asks it over msgpack/TCP; a server answering
with another referral is followed, up to ``recursion_limit`` referrals.

Every way a walk can fail ends in an answer naming the hop: too many referrals (a loop) ->
RECURSION_LIMIT (6); a node that refuses the connection or does not answer within
``hop_timeout_s`` -> SERVER_BUSY (3); no delegation for the prefix -> what the top-level said
(SERVER_NOT_RESPONSIBLE 301). Referrals are cached by their values' TTL and forgotten when the
node they name fails, so a restarted node is found again at its new address.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from node.client import TCPClient
from node.config import Config
from protocol.codes import OpFlag, ResponseCode
from protocol.errors import ProtocolError
from protocol.identifiers import NA_PREFIX, Handle, ascii_upper, parse_handle
from protocol.messages import (
    ErrorResponse,
    ReferralResponse,
    ResolveRequest,
    ResolveResponse,
    Response,
    Server,
    SiteInfo,
    error_for,
)
from protocol.records import HandleValue
from protocol.site import parse_address, query_interface, referral_sites, server_for

log = logging.getLogger("idnode.resolver")

TCP = 1  #: HS_SITE interface protocol number of TCP
MAX_REFERRALS = 65536  #: cached referrals at most; the cache is emptied when full
_CLIENT_FAILURES = (ResponseCode.CLIENT_TIMEOUT, ResponseCode.CLIENT_CHANNEL_ERROR)
_CODES = frozenset(int(code) for code in ResponseCode)


class Resolver:
    """Walks referrals from the top-level node; one per node, sharing connections per server."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.toplevel = parse_address(config.toplevel)
        self.limit = config.recursion_limit
        self.timeout_s = config.hop_timeout_s
        self.clock = clock
        #: called for every referral followed (the node counts them in its metrics)
        self.on_follow: Callable[[], None] = lambda: None
        self._clients: dict[tuple[str, int], TCPClient] = {}
        #: upper-cased prefix -> (expires at, the top-level's referral for it)
        self._referrals: dict[str, tuple[float, ReferralResponse]] = {}
        self._sites: dict[tuple[HandleValue, ...], SiteInfo] = {}  #: decoded HS_SITE values
        self._host = config.host
        self._advertised = config.advertise_host
        #: (address, TCP port) of this recursive node: a hop there would walk again, without end
        self._self: set[tuple[str, int]] = set()

    def know_self(self, tcp_port: int) -> None:
        """The node's TCP port, once bound: a site naming it is a loop through this node."""
        hosts = {self._host, self._advertised} - {""}
        if hosts & {"0.0.0.0", "::", "127.0.0.1", "localhost"}:
            hosts |= {"127.0.0.1", "localhost"}
        self._self = {(host, tcp_port) for host in hosts}

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()

    # -- what the top-level says ----------------------------------------------------------------

    async def delegation(self, request: ResolveRequest, prefix: str) -> Response:
        """The top-level's answer for ``request.handle`` under ``prefix``: a referral (cached by
        TTL), the record itself (for ``0.NA/`` handles it holds) or an error."""
        key = ascii_upper(prefix)
        now = self.clock()
        # A prefix's own record (``0.NA/<prefix>``) is the top-level's to answer, whatever node
        # the referral for the prefix's identifiers names: never from, nor into, that cache.
        own_record = ascii_upper(request.handle[: len(NA_PREFIX) + 1]) == NA_PREFIX + "/"
        known = None if own_record else self._referrals.get(key)
        if known is not None and known[0] > now:
            return dataclasses.replace(known[1], handle=request.handle)  # kept for another
        host, port = self.toplevel
        ask = ResolveRequest(handle=request.handle, indexes=request.indexes, types=request.types)
        answer = await self._ask(host, port, ask, f"hop 1 (top-level {host}:{port})")
        if isinstance(answer, ReferralResponse) and not own_record:
            ttl = min((v.ttl for v in answer.values), default=0)
            if ttl > 0:
                if len(self._referrals) >= MAX_REFERRALS:
                    self._referrals.clear()
                self._referrals[key] = (now + ttl, answer)
        return answer

    # -- the walk -------------------------------------------------------------------------------

    async def resolve(self, request: ResolveRequest) -> Response:
        """``request`` answered through the hierarchy (never a referral: those are followed)."""
        try:
            handle = parse_handle(request.handle)
        except ProtocolError as exc:
            return error_for(request, exc.code, exc.message)
        prefix = handle.suffix if handle.is_prefix_handle else handle.prefix
        answer = await self.delegation(request, prefix)
        ask = ResolveRequest(
            handle=request.handle,
            indexes=request.indexes,
            types=request.types,
            flags=request.flags & ~int(OpFlag.RECURSIVE),
        )
        hop = 1  #: the hop that gave ``answer``
        while isinstance(answer, ReferralResponse):
            if hop > self.limit:  # ``hop`` referrals so far
                return error_for(
                    request,
                    ResponseCode.RECURSION_LIMIT,
                    f"more than {self.limit} referrals for {request.handle} "
                    f"(last: {answer.prefix_handle}); a referral loop?",
                )
            hop += 1
            self.on_follow()
            try:
                server = self._server(answer, handle.prefix, handle.suffix)
                interface = query_interface(server, TCP)
                if interface is None:
                    raise ProtocolError(f"server {server.server_id} lists no TCP query interface")
            except ProtocolError as exc:
                return error_for(
                    request,
                    ResponseCode.SERVER_NOT_RESPONSIBLE,
                    f"hop {hop}: the service information of {answer.prefix_handle} is unusable:"
                    f" {exc.message}",
                )
            where = f"hop {hop} ({server.address}:{interface.port}, {answer.prefix_handle})"
            if (server.address, interface.port) in self._self:
                return error_for(
                    request,
                    ResponseCode.RECURSION_LIMIT,
                    f"{where}: the site names this node itself; a referral loop",
                )
            answer = self._checked(
                await self._ask(server.address, interface.port, ask, where), request, handle, where
            )
            if answer.code == ResponseCode.SERVER_BUSY:
                self._referrals.pop(ascii_upper(prefix), None)  # ask the top-level again next time
        return answer

    @staticmethod
    def _checked(answer: Response, request: ResolveRequest, handle: Handle, where: str) -> Response:
        """``answer`` from a node down the walk, or ERROR when it cannot be the answer: a record
        of another handle, or a response code the protocol does not have."""
        if answer.code not in _CODES:
            problem = f"answered with response code {int(answer.code)}, which does not exist"
        elif isinstance(answer, ResolveResponse) and ascii_upper(answer.handle) != ascii_upper(
            str(handle)
        ):
            problem = f"answered with the record of {answer.handle}"
        else:
            return answer
        log.warning("%s %s", where, problem)
        return error_for(request, ResponseCode.ERROR, f"{where}: {problem}")

    def _server(self, referral: ReferralResponse, prefix: str, suffix: str) -> Server:
        site = self._sites.get(referral.values)
        if site is None:
            sites = referral_sites(referral.values)
            if not sites:
                raise ProtocolError("no HS_SITE value")
            site = next((s for s in sites if s.primary), sites[0])
            if len(self._sites) >= MAX_REFERRALS:
                self._sites.clear()
            self._sites[referral.values] = site
        return server_for(site, prefix, suffix)

    async def _ask(self, host: str, port: int, request: ResolveRequest, where: str) -> Response:
        client = self._clients.get((host, port))
        if client is None:
            client = self._clients[(host, port)] = TCPClient(
                host, port, timeout_s=self.timeout_s, attempts=1
            )
        answer = await client.resolve_request(request)
        if answer.code in _CLIENT_FAILURES:
            message = answer.message if isinstance(answer, ErrorResponse) else ""
            log.warning("%s failed: %s", where, message)
            return error_for(request, ResponseCode.SERVER_BUSY, f"{where}: {message}")
        return answer
