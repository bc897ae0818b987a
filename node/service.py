"""The one service core: every transport turns bytes into a typed request and calls ``handle``.

Validation, authentication, authorization, the homed-prefix check, the cache and the store are
used here and nowhere else, so HTTP, TCP and UDP answer alike. Rules raise ``ProtocolError`` with
the response code to send; ``handle`` turns any of them into an ``ErrorResponse`` in one place.

The role decides what is served here: a secondary serves its homed prefixes (and, in a site of
several servers, the handles the MD5-mod-N rule gives this server); a top-level node serves the
``0.NA/`` prefix records and refers everything else (PREFIX_REFERRAL with their HS_SITE); a
recursive node serves everything by walking the hierarchy (``node.resolver``), caching answers
like its own. A secondary that knows a top-level refers, or with RECURSIVE follows, for handles
it does not serve (``elsewhere``).

With several worker processes (``node.workers``) what one process remembers can be stale: the
resolution cache and the verified-secret memo are checked against the shared version counters of
``node.coherence``, and homing or unhoming advances a shared epoch on which every worker reloads
its homed prefixes from the store before answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import operator
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from node import auth
from node.cache import Entry, ResolutionCache, public_values
from node.coherence import Versions, buckets_for
from node.config import Config, ConfigError
from node.resolver import Resolver
from node.store import DELETE, Record, Store, StoreError, _Delete
from protocol.codes import ALL_ADMIN_PERMISSIONS, OpCode, OpFlag, ResponseCode
from protocol.errors import InvalidValue, ProtocolError
from protocol.identifiers import (
    NA_PREFIX,
    PROFILES,
    Handle,
    ascii_upper,
    check_homeable,
    check_prefix,
    parent_chain,
    parse_handle,
)
from protocol.messages import (
    MAX_PAGE_SIZE,
    AddValuesRequest,
    CreateRequest,
    CreateResponse,
    DeleteRequest,
    DoneResponse,
    ErrorResponse,
    GetSiteInfoRequest,
    HomePrefixRequest,
    Interface,
    ListHandlesRequest,
    ListHandlesResponse,
    ListHomedPrefixesRequest,
    ListPrefixesResponse,
    ModifyValuesRequest,
    ReferralResponse,
    RemoveValuesRequest,
    Request,
    ResolveRequest,
    ResolveResponse,
    Response,
    Server,
    SiteInfo,
    SiteInfoResponse,
    UnhomePrefixRequest,
    error_for,
    new_resolve_response,
)
from protocol.records import (
    HS_ADMIN,
    HS_SECKEY,
    HS_SITE,
    AdminValue,
    HandleValue,
    check_distinct,
    new_value,
    validate_record,
)
from protocol.site import HASH_BY_PREFIX, encode_site, server_for

if TYPE_CHECKING:
    from node.delegation import Monitor, Registrar, ToplevelProbe

log = logging.getLogger("idnode.service")

#: an answer, the cache entry its encodings may be kept in (None: not cacheable), its cache key
Resolution = tuple[Response, Entry | None, str]

ADMIN_KEY_INDEX = 300  #: index of HS_SECKEY in the admin handle (``300:<prefix>/ADMIN``)
ADMIN_VALUE_INDEX = 100  #: index of HS_ADMIN
RENEWALS_PER_READ = 1000  #: not-found keys confirmed by one store read at most (``_renew``)
#: how long keys falling due for renewal gather before their read: in the benchmark they fell due
#: by thousands per second, and reading as soon as one was due took a read per ten keys
RENEWAL_GATHER_S = 0.05
#: handle texts whose parse the resolution path remembers: as many as a full cache at its
#: default bound holds, found and not found (about 45,000 and 40,000 of the benchmark's)
MAX_PARSED_KEYS = 131072
MAX_PARSED_KEY_CHARS = 8 * 1024 * 1024  #: ...and as many characters of them (each kept twice)
MAX_PAGE = 10**9  #: keeps page * pageSize inside SQL's 64-bit OFFSET
NOT_HERE = "That prefix doesn't live here"  #: the reference server's 301 message
_NA_KEY = NA_PREFIX + "/"
_SECKEY_PERMISSIONS = 0xC  #: admin read and write, never public


SITE_TYPES = frozenset({"HS_SITE", "HS_SITE.PREFIX", "HS_SERV", "HS_SERV.PREFIX"})
_DO_NOT_REFER = int(OpFlag.DO_NOT_REFER)
_SUCCESS = int(ResponseCode.SUCCESS)
_HASHED_PREFIX = auth.SCHEME.encode() + b"$"  #: HS_SECKEY data already hashed (``auth``)
_INDEX = operator.attrgetter("index")


def _fail(code: ResponseCode, message: str) -> ProtocolError:
    return ProtocolError(message, code=code)


def _secret(index: int, data: bytes) -> str:
    """The secret written as HS_SECKEY ``data``: non-empty UTF-8 text, or INVALID_VALUE.
    Credentials carry their secret as text on every door, so bytes that are not UTF-8 could
    only be hashed as what decoding them leaves (every invalid byte one U+FFFD, a secret far
    weaker than the one written); and an empty secret would let anyone write."""
    try:
        secret = data.decode("utf-8")
    except UnicodeDecodeError:
        secret = ""
    if not secret:
        raise InvalidValue(f"value {index}: an {HS_SECKEY} secret must be non-empty UTF-8 text")
    return secret


class NotServed(ProtocolError):
    """The handle's prefix is not served here: SERVER_NOT_RESPONSIBLE, unless a referral can be
    found (``Service.elsewhere``)."""

    def __init__(self, prefix: str) -> None:
        super().__init__(NOT_HERE, code=ResponseCode.SERVER_NOT_RESPONSIBLE)
        self.prefix = prefix


class Service:
    """Request -> response for one node; see the module docstring."""

    def __init__(
        self,
        config: Config,
        store: Store,
        clock: Callable[[], float] = time.time,
        versions: Versions | None = None,
    ) -> None:
        config.check()  # as loading does; a Config may also be built directly
        self.config = config
        self.store = store
        self.clock = clock
        self.role = config.role
        self.profile = PROFILES[config.profile]
        #: walks referrals: for a recursive node, for RECURSIVE requests, to find referrals
        self.resolver = Resolver(config, clock) if config.toplevel else None
        #: this node's site when it is one of several servers (``--site``), else None
        self.site = config.site_info()
        #: called after a prefix is homed or unhomed (the node's registrar registers or
        #: withdraws it upward)
        self.on_homed: Callable[[], None] = lambda: None
        #: called with the key of every committed write (a top-level's monitor watches 0.NA/)
        self.on_written: Callable[[str], None] = lambda key: None
        #: a secondary's registration with its top-level, set by the node
        self.registration: Registrar | None = None
        #: a recursive node's check that its top-level answers, set by the node
        self.reachability: ToplevelProbe | None = None
        #: a top-level's checks of its delegations, set by the node
        self.monitor: Monitor | None = None
        #: shared with the other workers, or private to this process
        self.versions = (
            versions if versions is not None else Versions(buckets_for(config.cache_max_bytes))
        )
        self.cache = ResolutionCache(
            config.cache_max_bytes, config.negative_cache_ttl_s, self.versions
        )
        self.authenticator = auth.Authenticator(config, store, self.cache)
        self.homed: dict[str, str] = {}  #: upper-cased prefix -> as written
        self.ready = False
        self.ports: dict[str, int] = {}  #: transport -> bound port, set by the server
        #: (the ports it was built for, this node's site encoded): ``_names_this_site``
        self._own_site: tuple[tuple[tuple[str, int], ...] | None, bytes] = (None, b"")
        self._homed_epoch = -1  #: the shared homed epoch ``homed`` was loaded at
        self._homed_lock = asyncio.Lock()
        #: not-found answers due for confirmation (``_cached``), by key, and the task doing it
        self._due: dict[str, Entry] = {}
        self.renewing: asyncio.Task[None] | None = None
        #: handle text -> (upper-cased prefix, cache key, whether this server of the site holds it)
        self._keys: dict[str, tuple[str, str, bool]] = {}
        self._keys_chars = 0  #: characters of the texts in ``_keys``
        self._handlers: dict[type[Request], Callable[[Any], Awaitable[Response]]] = {
            ResolveRequest: self._resolve_only,
            CreateRequest: self._create,
            DeleteRequest: self._delete,
            AddValuesRequest: self._add_values,
            RemoveValuesRequest: self._remove_values,
            ModifyValuesRequest: self._modify_values,
            ListHandlesRequest: self._list_handles,
            ListHomedPrefixesRequest: self._list_homed,
            HomePrefixRequest: self._home,
            UnhomePrefixRequest: self._unhome,
            GetSiteInfoRequest: self._site_info,
        }

    async def start(self) -> None:
        """Load homed prefixes and home the configured ones."""
        await self.reload_homed()
        for prefix in self.config.home:
            if ascii_upper(prefix) not in self.homed:
                if not self.config.admin_secret:  # (one homed already needs none)
                    raise ConfigError(f"homing {prefix} needs an admin secret (--admin-secret)")
                await self.home_prefix(prefix, self.config.admin_secret)
        self.ready = True

    def is_ready(self) -> bool:
        """Started, its store not found damaged, and, when a top-level is configured,
        registered there (it took the last heartbeat in time) or, for a recursive node,
        answering (a probe got through in time)."""
        links = (self.registration, self.reachability)
        return (
            self.ready
            and self.store.damaged is None
            and all(link.ready() for link in links if link is not None)
        )

    async def reload_homed(self) -> None:
        """Load the homed prefixes from the store when another worker (or this one) changed them.

        The epoch is read before the store read, so a change committed meanwhile leaves the epoch
        unequal and the next request loads again; one load at a time keeps them in order.
        """
        async with self._homed_lock:
            epoch = self.versions.homed_epoch
            if epoch == self._homed_epoch:
                return
            prefixes = await self.store.homed_prefixes()
            # cached entries may stay: a prefix is checked against ``homed`` before the cache
            self.homed = {ascii_upper(p): p for p in prefixes}
            self._homed_epoch = epoch

    # -- the one entry point -----------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        """Answer any request; errors become ``ErrorResponse`` here and only here."""
        try:
            if self.versions.homed_epoch != self._homed_epoch:
                await self.reload_homed()
            return await self._handlers[type(request)](request)
        except ProtocolError as exc:
            return self.error(request, exc.code, exc.message)
        except StoreError as exc:
            log.error("store failure: %s", exc, extra=_log_fields(request))
            return self.error(
                request, ResponseCode.ERROR, _store_failed(exc, "; nothing was changed")
            )
        except Exception:  # a bug must still get an answer, never a silent drop
            log.exception("unexpected failure", extra=_log_fields(request))
            return self.error(request, ResponseCode.ERROR, "internal error; nothing was changed")

    error = staticmethod(error_for)

    # -- resolution (the hot path) ---------------------------------------------------------------

    def resolve_cached(
        self, request: ResolveRequest, *, count_hit: bool = True
    ) -> Resolution | None:
        """The answer when the cache alone gives it, without suspending; None: call ``resolve``.

        Anonymous public resolution of a cached handle is most traffic; transports answer it
        straight from ``data_received`` instead of starting a task per request. ``count_hit``
        False: the caller counted this resolution's hit already (``cached_entry``).
        """
        if request.authoritative or (request.credential is not None and not request.public_only):
            return None
        if self.versions.homed_epoch != self._homed_epoch:
            return None  # homed prefixes changed: ``resolve`` reloads them first
        try:
            _, key = self._resolution_key(request.handle)
            entry = self._cached(key, self.clock(), count_miss=False, count_hit=count_hit)
            if entry is None:
                return None
            return self._answer(request, entry, entry.record, key, public_only=True)
        except NotServed:
            if self.refers:
                return None  # ``resolve`` finds the referral
            return self.error(request, ResponseCode.SERVER_NOT_RESPONSIBLE, NOT_HERE), None, ""
        except ProtocolError as exc:
            return self.error(request, exc.code, exc.message), None, ""

    def cached_entry(self, text: str, *, count_hit: bool = True) -> Entry | None:
        """The cache entry ``resolve_cached`` would answer a plain anonymous resolution of handle
        ``text`` from (a record, or the fact that there is none), or None. Its ``encoded``
        answers are what that resolution answers (``Entry.variant``). ``count_hit`` False: the
        caller counts the hit once it answers from the entry (``cache.count_hit``)."""
        if self.versions.homed_epoch != self._homed_epoch:
            return None
        try:
            _, key = self._resolution_key(text)
        except ProtocolError:  # NotServed included
            return None
        return self._cached(key, self.clock(), count_miss=False, count_hit=count_hit)

    def _cached(
        self, key: str, now: float, *, count_miss: bool = True, count_hit: bool = True
    ) -> Entry | None:
        """``cache.get``, and a not-found answer in the second half of its time renewed in the
        background (``ResolutionCache.renewal_due``)."""
        entry = self.cache.get(key, now, count_miss=count_miss, count_hit=count_hit)
        if (
            entry is not None
            and not entry.found
            and self.role != "recursive"  # its not-found answers come from the hierarchy
            and self.cache.renewal_due(entry, now)
        ):
            self._due[key] = entry
            if self.renewing is None:
                self.renewing = asyncio.get_running_loop().create_task(self._renew())
        return entry

    async def stop(self) -> None:
        """Drop the confirmations not yet made (their answers expire at their time)."""
        task = self.renewing
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _renew(self) -> None:
        """Keep each due not-found entry whose key the store still lacks; the others expire at
        their time, unrenewed, and the next asking after that reads the store. One store read
        confirms all the keys that fell due within ``RENEWAL_GATHER_S``: the answers cached in
        one burst of traffic fall due together, and a read each cost as much as answering them."""
        try:
            while self._due:
                await asyncio.sleep(RENEWAL_GATHER_S)
                due = dict(itertools.islice(self._due.items(), RENEWALS_PER_READ))
                for key in due:
                    del self._due[key]
                try:
                    stored = await self.store.existing(due)
                except StoreError as exc:
                    log.warning("renewing not-found answers failed: %s", exc)
                    continue
                now = self.clock()
                for key, entry in due.items():
                    if key not in stored:
                        self.cache.renew(key, entry, now)
        finally:
            self.renewing = None

    async def resolve(self, request: ResolveRequest) -> Resolution:
        """Resolve, also returning the cache entry when the answer is the plain cacheable one.

        Transports use the entry to reuse an already encoded answer (``cache.encoded``).
        """
        try:
            if self.versions.homed_epoch != self._homed_epoch:
                await self.reload_homed()
            try:
                prefix, key = self._resolution_key(request.handle)
            except NotServed as exc:  # its failures are answered below like any other
                return await self.elsewhere(request, exc.prefix), None, ""
            entry, record = await self._entry(key, request.handle, fresh=request.authoritative)
            public_only = request.public_only or request.credential is None
            if not public_only and record is not None:
                principal = await self.authenticator.principal(request.credential)
                public_only = not principal.may_write(prefix, self.homed)
            return self._answer(request, entry, record, key, public_only=public_only)
        except ProtocolError as exc:
            return self.error(request, exc.code, exc.message), None, ""
        except StoreError as exc:
            log.error("store failure: %s", exc, extra=_log_fields(request))
            return self.error(request, ResponseCode.ERROR, _store_failed(exc)), None, ""

    def _answer(
        self,
        request: ResolveRequest,
        entry: Entry,
        record: Record | None,
        key: str,
        *,
        public_only: bool,
    ) -> Resolution:
        """The answer to ``request`` from ``entry``, whose record is ``record``."""
        plain = not (request.indexes or request.types)
        if record is None:  # as common as a hit for some clients: no exception on this path
            error = self.error(request, ResponseCode.HANDLE_NOT_FOUND, "Handle Not Found")
            return error, (entry if plain and public_only else None), key
        values = public_values(record.values) if public_only else record.values
        if not plain:
            values = _filter(values, request.indexes, request.types)
            if not values:
                raise _fail(ResponseCode.VALUES_NOT_FOUND, "No values match the filter")
        response = new_resolve_response(
            request.request_id, request.flags, _SUCCESS, record.handle, values
        )
        return response, (entry if plain and public_only else None), key

    async def _resolve_only(self, request: ResolveRequest) -> Response:
        return (await self.resolve(request))[0]

    async def _entry(
        self, key: str, text: str, *, fresh: bool = False
    ) -> tuple[Entry, Record | None]:
        """The cache entry of ``key`` (handle ``text``) and its record, read and kept on a miss
        (``fresh``: always read, as for an authoritative request); a record just read is not
        rebuilt from the entry."""
        now = self.clock()
        cache = self.cache
        if fresh:
            cache.misses += 1  # it reads the store, as a miss does
        entry = None if fresh else self._cached(key, now)
        if entry is not None:
            return entry, entry.record
        generation, version = cache.generation, cache.version(key)
        record = await self._fetch(text, key)
        return cache.put(key, record, now, generation, version), record

    async def _fetch(self, text: str, key: str) -> Record | None:
        """The record behind ``key``: from the store, or for a recursive node, the hierarchy."""
        if self.role != "recursive":
            return await self.store.get(key)
        assert self.resolver is not None
        plain = ResolveRequest(handle=text)  # cached whole; filters apply after
        answer = await self.resolver.resolve(plain)
        if isinstance(answer, ResolveResponse):
            return Record(answer.handle, answer.values)
        if answer.code == ResponseCode.HANDLE_NOT_FOUND:
            return None
        message = answer.message if isinstance(answer, ErrorResponse) else ""
        raise _fail(ResponseCode(answer.code), message)

    @property
    def refers(self) -> bool:
        """Whether a handle not served here may get a referral instead of 301."""
        return self.role == "toplevel" or self.resolver is not None

    def _resolution_key(self, text: str) -> tuple[str, str]:
        """(upper-cased prefix, cache key) of a handle to resolve; each text is parsed once.

        Raises ``NotServed`` when this node does not hold the handle.
        """
        known = self._keys.get(text)
        if known is None:
            handle = parse_handle(text, self.profile)
            prefix = handle.suffix if handle.is_prefix_handle else handle.prefix
            # prefixes are few: one string each rather than one per remembered handle
            prefix = sys.intern(ascii_upper(prefix))
            known = (prefix, self._key(handle), self._on_this_server(handle))
            self._keys_chars += len(text)
            if len(self._keys) >= MAX_PARSED_KEYS or self._keys_chars > MAX_PARSED_KEY_CHARS:
                self._keys.clear()  # long handle texts cannot grow it past its bound either
                self._keys_chars = len(text)
            self._keys[text] = known
        prefix, key, here = known
        if not (here and prefix in self.homed) and not self._serves_all(key):
            raise NotServed(prefix)
        return prefix, key

    def _serves_all(self, key: str) -> bool:
        """Recursive nodes answer for everything; top-level nodes hold every ``0.NA/`` handle."""
        role = self.role
        return role == "recursive" or (role == "toplevel" and key.startswith(_NA_KEY))

    def _on_this_server(self, handle: Handle) -> bool:
        site = self.site
        if site is None or handle.is_prefix_handle:
            return True
        return (
            server_for(site, handle.prefix, handle.suffix).server_id == self.config.site_server_id
        )

    def _homed_handle(self, text: str, *, mint: bool = False) -> Handle:
        if mint and text.endswith("/"):
            text += "_"  # a placeholder suffix, replaced by the minted one
        handle = parse_handle(text, self.profile)
        upper = ascii_upper(handle.prefix)
        na = upper == NA_PREFIX  # ``handle.is_prefix_handle``, upper-casing the prefix once
        served = (ascii_upper(handle.suffix) if na else upper) in self.homed and (
            mint or self._on_this_server(handle)
        )
        if not served and not (self.role == "toplevel" and na):
            raise _fail(ResponseCode.SERVER_NOT_RESPONSIBLE, NOT_HERE)
        if na:  # ``0.NA/<PREFIX>``, upper-cased as the reference writes it: its suffix is a prefix
            return Handle(NA_PREFIX, ascii_upper(handle.suffix))
        return handle

    # -- referrals --------------------------------------------------------------------------------

    async def elsewhere(self, request: ResolveRequest, prefix: str) -> Response:
        """The answer for a handle not served here: followed (RECURSIVE), a referral, or 301."""
        resolver = self.resolver
        if request.flags & _DO_NOT_REFER or not self.refers:
            return self.error(request, ResponseCode.SERVER_NOT_RESPONSIBLE, NOT_HERE)
        if self.role == "toplevel":
            return await self._referral(request, prefix)
        assert resolver is not None  # ``refers``
        if request.recursive:
            answer = await resolver.resolve(request)
        else:
            answer = await resolver.delegation(request, prefix)
            if isinstance(answer, ReferralResponse):
                homed = self.homed
                named = ascii_upper(answer.prefix_handle.partition("/")[2])
                if ascii_upper(prefix) not in homed and (
                    named in homed or self._names_this_site(answer)
                ):
                    # The longest registered prefix is one of ours, or its record names this
                    # node (registered here once, since unhomed), and we do not hold ``prefix``:
                    # nobody does. Referring the client here is a loop. (One of our own
                    # prefixes refers to our site: another of its servers.)
                    message = f"No node is registered for {prefix}"
                    return self.error(request, ResponseCode.SERVER_NOT_RESPONSIBLE, message)
            elif answer.code != ResponseCode.SERVER_BUSY:  # a top-level that failed is said so
                return self.error(request, ResponseCode.SERVER_NOT_RESPONSIBLE, NOT_HERE)
        return dataclasses.replace(answer, request_id=request.request_id, flags=request.flags)

    def _names_this_site(self, referral: ReferralResponse) -> bool:
        # encoded once per set of bound ports (all of the site that can change): every referral
        # a secondary passes on asks this
        ports = tuple(self.ports.items())
        if self._own_site[0] != ports:
            self._own_site = (ports, encode_site(self.site_info()))
        own = self._own_site[1]
        return any(v.type == HS_SITE and v.data == own for v in referral.values)

    async def _referral(self, request: ResolveRequest, prefix: str) -> Response:
        """Top-level: PREFIX_REFERRAL with the service information of the longest delegated
        prefix of ``prefix``, or SERVER_NOT_RESPONSIBLE when none is. The prefix records come
        through the resolution cache: every first hop of every walk reads them."""
        for prefix_handle in parent_chain(prefix)[:-1]:  # not the root 0.NA/0.NA
            _, record = await self._entry(prefix_handle, prefix_handle)
            if record is None:
                continue
            values = tuple(v for v in record.values if v.type in SITE_TYPES)
            if values:
                return ReferralResponse(
                    request_id=request.request_id,
                    flags=request.flags,
                    code=ResponseCode.PREFIX_REFERRAL,
                    answers=request.op,
                    handle=request.handle,
                    prefix_handle=record.handle,
                    values=values,
                )
        return self.error(
            request, ResponseCode.SERVER_NOT_RESPONSIBLE, f"No node is registered for {prefix}"
        )

    # -- authorization --------------------------------------------------------------------------

    async def _writer(self, request: Request, prefix: str, doing: str = "change") -> auth.Principal:
        principal = await self.authenticator.principal(request.credential)
        if not principal.may_write(prefix, self.homed):
            raise _fail(
                ResponseCode.NOT_AUTHORIZED,
                f"{principal.identity} may not {doing} handles under {prefix}",
            )
        return principal

    # -- writes -------------------------------------------------------------------------------

    def _key(self, handle: Handle) -> str:
        return handle.key(case_sensitive_suffix=self.config.case_sensitive_suffix)

    def _stamp(self, values: tuple[HandleValue, ...]) -> tuple[HandleValue, ...]:
        now = int(self.clock())
        out = []
        for v in values:
            data = v.data
            permissions = v.permissions
            if v.type == HS_SECKEY:  # stored hashed, and never publicly readable
                if not data.startswith(_HASHED_PREFIX):
                    data = auth.hash_secret(_secret(v.index, data))
                elif not auth.is_checkable_hash(data):  # its check could stall the node
                    raise InvalidValue(
                        f"value {v.index}: HS_SECKEY data starting {auth.SCHEME}$ must be"
                        f" {auth.SCHEME}$<iterations up to {auth.MAX_ITERATIONS}>$<salt hex>"
                        "$<64 hex digits>"
                    )
                permissions &= ~0x3
            elif ascii_upper(v.type.strip()) == HS_SECKEY:  # matched as one, but not hashed
                raise InvalidValue(f"value {v.index}: a secret key's type is written {HS_SECKEY}")
            out.append(
                new_value(v.index, v.type, data, v.ttl, v.ttl_type, now, permissions, v.references)
            )
        if len(out) > 1:
            out.sort(key=_INDEX)
        return tuple(out)

    def _keeps_a_key(self, key: str, after: Record | _Delete) -> None:
        """Refuse a write that would leave a homed prefix's admin handle without a secret key:
        nobody could write under the prefix again. (Runs in the store's writer, on the record
        as committed writes left it.)"""
        prefix = key.partition("/")[0]
        if not auth.is_admin_key(key) or prefix not in self.homed:
            return
        if isinstance(after, Record) and any(v.type == HS_SECKEY for v in after.values):
            return
        raise _fail(
            ResponseCode.NOT_AUTHORIZED,
            f"{prefix}/ADMIN must keep an {HS_SECKEY} value: without one nobody could write"
            f" under {prefix} again",
        )

    def _written(self, key: str) -> None:
        self.on_written(key)
        self.cache.invalidate(key)
        self.authenticator.forget(key)

    async def _create(self, request: CreateRequest) -> Response:
        handle = self._homed_handle(request.handle, mint=request.mint_suffix)
        await self._writer(request, handle.prefix)
        if request.mint_suffix:
            stem = "" if handle.suffix == "_" and request.handle.endswith("/") else handle.suffix
            handle = Handle(handle.prefix, stem + uuid.uuid4().hex)
            while not self._on_this_server(handle):  # a site's other servers hold the rest
                handle = Handle(handle.prefix, stem + uuid.uuid4().hex)
        if not request.values:
            raise InvalidValue("a handle needs at least one value")
        values = self._stamp(request.values)
        validate_record(values, self.profile)
        text = str(handle)
        key = self._key(handle)
        existed = False

        def mutation(current: Record | None) -> Record:
            nonlocal existed
            if current is not None:
                if not request.overwrite or current.handle != text:
                    raise _fail(
                        ResponseCode.HANDLE_ALREADY_EXISTS,
                        f"Handle {current.handle} already exists",
                    )
                existed = True
            record = Record(text, values)
            self._keeps_a_key(key, record)
            return record

        await self.store.mutate(key, mutation)
        self._written(key)
        return CreateResponse(
            request_id=request.request_id, flags=request.flags, handle=text, created=not existed
        )

    async def _change(
        self,
        request: Request,
        handle_text: str,
        change: Callable[[Record], Record | None],
        created: Callable[[], bool] = lambda: False,
    ) -> Response:
        handle = self._homed_handle(handle_text)
        await self._writer(request, handle.prefix)
        key = self._key(handle)

        def mutation(current: Record | None) -> Any:
            if current is None:
                raise _fail(ResponseCode.HANDLE_NOT_FOUND, "Handle Not Found")
            new = change(current)
            if new is not None:
                self._keeps_a_key(key, new)
            return new

        await self.store.mutate(key, mutation)
        self._written(key)
        return DoneResponse(
            request_id=request.request_id,
            flags=request.flags,
            answers=request.op,
            created=created(),
        )

    async def _delete(self, request: DeleteRequest) -> Response:
        return await self._change(request, request.handle, lambda current: DELETE)  # type: ignore[arg-type, return-value]

    async def _add_values(self, request: AddValuesRequest) -> Response:
        check_distinct(request.values)
        new = self._stamp(request.values)

        added = False

        def change(current: Record) -> Record:
            nonlocal added
            existing = {v.index: v for v in current.values}
            for v in new:
                if v.index in existing and not request.overwrite:
                    raise _fail(ResponseCode.VALUE_ALREADY_EXISTS, f"Index conflict for {v.index}")
                added = added or v.index not in existing
                existing[v.index] = v
            return self._checked(current, existing)

        return await self._change(request, request.handle, change, lambda: added)

    async def _modify_values(self, request: ModifyValuesRequest) -> Response:
        check_distinct(request.values)
        new = self._stamp(request.values)

        def change(current: Record) -> Record:
            existing = {v.index: v for v in current.values}
            for v in new:
                if v.index not in existing:
                    raise _fail(ResponseCode.VALUES_NOT_FOUND, f"No value at index {v.index}")
                existing[v.index] = v
            return self._checked(current, existing)

        return await self._change(request, request.handle, change)

    async def _remove_values(self, request: RemoveValuesRequest) -> Response:
        def change(current: Record) -> Record:
            existing = {v.index: v for v in current.values}
            for index in dict.fromkeys(request.indexes):  # an index named twice goes once
                if existing.pop(index, None) is None:
                    raise _fail(ResponseCode.VALUES_NOT_FOUND, f"No value at index {index}")
            if not existing:
                raise InvalidValue("removing every value would leave an empty handle; delete it")
            return self._checked(current, existing)

        return await self._change(request, request.handle, change)

    def _checked(self, current: Record, values: dict[int, HandleValue]) -> Record:
        merged = tuple(values[i] for i in sorted(values))
        validate_record(merged, self.profile)
        return Record(current.handle, merged)

    # -- prefixes and listing ---------------------------------------------------------------------

    async def _list_handles(self, request: ListHandlesRequest) -> Response:
        prefix = check_prefix(request.prefix, self.profile)
        if ascii_upper(prefix) not in self.homed:
            raise _fail(ResponseCode.SERVER_NOT_RESPONSIBLE, NOT_HERE)
        await self._writer(request, prefix, "list")
        if not 0 <= request.page <= MAX_PAGE or not 0 < request.page_size <= MAX_PAGE_SIZE:
            raise _fail(
                ResponseCode.PROTOCOL_ERROR,
                f"page must be 0-{MAX_PAGE} and pageSize 1-{MAX_PAGE_SIZE}",
            )
        total, handles = await self.store.list_handles(
            prefix, request.page * request.page_size, request.page_size
        )
        return ListHandlesResponse(
            request_id=request.request_id,
            flags=request.flags,
            prefix=prefix,
            total=total,
            page=request.page,
            page_size=request.page_size,
            handles=tuple(handles),
        )

    async def _list_homed(self, request: ListHomedPrefixesRequest) -> Response:
        return ListPrefixesResponse(
            request_id=request.request_id,
            flags=request.flags,
            prefixes=tuple(sorted(self.homed.values())),
        )

    async def _node_admin(self, request: Request) -> None:
        principal = await self.authenticator.principal(request.credential)
        if principal.prefix is not None:
            raise _fail(
                ResponseCode.NOT_AUTHORIZED,
                "homing and unhoming need the node admin (300:0.NA/<prefix>)",
            )

    async def _home(self, request: HomePrefixRequest) -> Response:
        prefix = check_prefix(request.prefix, self.profile)
        await self._node_admin(request)
        assert request.credential is not None
        await self.home_prefix(prefix, request.credential.secret)
        return DoneResponse(request_id=request.request_id, flags=request.flags, answers=request.op)

    async def _unhome(self, request: UnhomePrefixRequest) -> Response:
        prefix = check_prefix(request.prefix, self.profile)
        await self._node_admin(request)
        if not await self.store.set_homed(prefix, False):
            raise _fail(ResponseCode.SERVER_NOT_RESPONSIBLE, f"{prefix} is not homed here")
        self.homed.pop(ascii_upper(prefix), None)
        self.cache.clear()
        self.versions.bump_homed()  # committed: every worker reloads before its next answer
        self.on_homed()
        return DoneResponse(request_id=request.request_id, flags=request.flags, answers=request.op)

    async def home_prefix(self, prefix: str, secret: str) -> None:
        """Home ``prefix`` and create ``<prefix>/ADMIN`` (HS_ADMIN at 100, hashed HS_SECKEY at 300)
        with ``secret``, both in one transaction. Homing an already homed prefix keeps its ADMIN
        handle (and ignores ``secret``) where it has one."""
        check_homeable(prefix, self.profile)
        admin_handle = f"{prefix}/{auth.ADMIN_SUFFIX}"
        admin = AdminValue(admin_handle, ADMIN_KEY_INDEX, ALL_ADMIN_PERMISSIONS)
        now = int(self.clock())
        record = Record(
            admin_handle,
            (
                HandleValue(ADMIN_VALUE_INDEX, HS_ADMIN, admin.to_bytes(), timestamp=now),
                HandleValue(
                    ADMIN_KEY_INDEX,
                    HS_SECKEY,
                    auth.hash_secret(secret),
                    timestamp=now,
                    permissions=_SECKEY_PERMISSIONS,
                ),
            ),
        )
        key = self._key(Handle(prefix, auth.ADMIN_SUFFIX))

        def admin_record(current: Record | None, anew: bool) -> Record | None:
            # Homed anew: the admin is whoever holds this secret, whatever an earlier homing
            # (since unhomed, or cut short by a crash before homing was one transaction) left
            # there. Homed already: homing again changes nothing.
            return record if anew or current is None else None

        await self.store.home(prefix, key, admin_record)
        self._written(key)
        self.homed[ascii_upper(prefix)] = prefix
        self.versions.bump_homed()  # committed: every worker reloads before its next answer
        self.on_homed()
        log.info("homed prefix %s", prefix)

    async def _site_info(self, request: GetSiteInfoRequest) -> Response:
        return SiteInfoResponse(
            request_id=request.request_id, flags=request.flags, site=self.site_info()
        )

    def site_info(self) -> SiteInfo:
        """This node's site: the configured one, or this node alone (every transport)."""
        if self.site is not None:
            return self.site
        ports = self.ports
        interfaces = tuple(
            Interface(3, proto, ports[name])
            for name, proto in (("udp", 0), ("tcp", 1), ("http", 2))
            if name in ports
        )
        server = Server(1, self.config.advertise_host or self.config.host, interfaces)
        return SiteInfo(
            serial=self.config.site_serial, hash_option=HASH_BY_PREFIX, servers=(server,)
        )


def _log_fields(request: Request) -> dict[str, object]:
    """What a log line about ``request`` carries: its id, op and handle, never its credential."""
    return {
        "request_id": request.request_id,
        "op": OpCode(request.op).name.lower(),
        "handle": getattr(request, "handle", ""),
    }


def _store_failed(exc: StoreError, then: str = "") -> str:
    """A client's message for a store failure: what went wrong when the store says."""
    reason = f" ({exc.reason})" if exc.reason else ""
    return f"the store failed{reason}{then}"


def _filter(
    values: tuple[HandleValue, ...], indexes: tuple[int, ...], types: tuple[str, ...]
) -> tuple[HandleValue, ...]:
    """Values whose index is listed or whose type matches (``X.`` matches ``X.*``), types
    compared without regard to ASCII case (only: ``straße`` is not ``STRASSE``)."""
    wanted = set(indexes)
    exact = {ascii_upper(t) for t in types if not t.endswith(".")}
    stems = tuple(ascii_upper(t) for t in types if t.endswith("."))
    return tuple(
        v
        for v in values
        if v.index in wanted
        or ascii_upper(v.type) in exact
        or (stems and ascii_upper(v.type).startswith(stems))
    )
