"""Delegations between a secondary node and its top-level node.

A secondary node with ``toplevel`` set registers every prefix it homes as ``0.NA/<prefix>`` at
the top-level node: a record holding its site (HS_SITE at index 1, what a referral carries) and,
for the prefixes it was started to serve (``home``; the first homed one when none was named), a
heartbeat value at index 2 whose server-set timestamp says when the node last spoke. Registering
retries until it succeeds (the top-level may start later) and is redone whenever the node's site
changes (new ports after a restart) or a prefix is homed. Every heartbeat writes the site
too, so the heartbeat in a record always vouches for the node the record names: of two nodes
registering one prefix, the last to beat holds it, and one that stops is never kept alive by the
other's beats. A prefix unhomed is withdrawn (its record deleted at the top-level, while it still
names this node), so it is not referred here any more. Writes authenticate as
``300:0.NA/<prefix>`` with ``toplevel_secret``.

A recursive node does not register; it asks the top-level for its site information every
``heartbeat_interval_s`` (``ToplevelProbe``) and is not ready while none of those got through
for ``heartbeat_stale_s``, as a secondary is not while its heartbeats do not.

The top-level node reads those records back (``delegations``): a node whose heartbeat is older
than ``heartbeat_stale_s`` is reported stale, in ``GET /api/delegations``, in the metrics and in a
warning log line, and is never dropped: its prefixes still refer to it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from node.client import TCPClient
from node.service import Service
from protocol.codes import ResponseCode
from protocol.identifiers import NA_PREFIX, ascii_upper, na_handle
from protocol.jsonapi import value_to_json
from protocol.messages import Credential, ResolveResponse
from protocol.records import HandleValue
from protocol.site import parse_address, site_value

log = logging.getLogger("idnode.delegation")

SITE_INDEX = 1  #: index of HS_SITE in a prefix record
HEARTBEAT_INDEX = 2  #: index of the heartbeat value
HEARTBEAT_TYPE = "IDNODE.HEARTBEAT"  #: its type; its data names the node
_PAGE = 1000
_NA_KEY = NA_PREFIX + "/"


class _ToplevelLink(abc.ABC):
    """A node's exchanges with its top-level node, one every ``heartbeat_interval_s`` in a task
    of their own (sooner after a failure, as ``_delay`` says), and whether the last one that got
    through is recent enough for the node to be ready (``/readyz``)."""

    what = "exchanging with the top-level node"  #: for the log line of a failure

    def __init__(self, service: Service) -> None:
        config = service.config
        self.service = service
        host, port = parse_address(config.toplevel)
        self.client = TCPClient(host, port, timeout_s=config.hop_timeout_s, attempts=1)
        self.interval_s = config.heartbeat_interval_s
        self.last_ok: float | None = None  #: clock time of the last exchange that got through
        self.failures = 0  #: attempts in a row that failed
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.close()

    @abc.abstractmethod
    async def exchange(self) -> None:
        """One exchange with the top-level node; raises when it did not get through."""

    def _delay(self) -> float:
        """Seconds until the next exchange."""
        return self.interval_s

    async def _wait(self) -> None:
        await asyncio.sleep(self._delay())

    async def _run(self) -> None:
        while True:
            try:
                await self.exchange()
            except Exception as exc:  # the top-level may be down or slow: try again
                self.failures += 1
                if self.failures in (1, 10) or self.failures % 100 == 0:
                    log.warning("%s failed: %s", self.what, exc)
            else:
                if self.failures:
                    log.info("the top-level node answers again")
                self.last_ok = self.service.clock()
                self.failures = 0
            await self._wait()

    def ready(self) -> bool:
        """Whether an exchange got through within ``heartbeat_stale_s`` (for ``/readyz``)."""
        if self.last_ok is None:
            return False
        return self.service.clock() - self.last_ok <= self.service.config.heartbeat_stale_s


class Registrar(_ToplevelLink):
    """Keeps a secondary node's prefixes registered at the top-level node, and heartbeats; ready
    while the top-level took the last heartbeat recently."""

    def __init__(self, service: Service) -> None:
        super().__init__(service)
        config = service.config
        self.secret = config.toplevel_secret or config.admin_secret
        self._registered: dict[str, bytes] = {}  #: upper-cased prefix -> the site registered
        #: upper-cased prefix -> (as written, the site registered) of every prefix registered and
        #: not yet withdrawn; unlike ``_registered`` kept across failures, so an unhoming is not
        #: forgotten while the top-level is unreachable
        self._delegated: dict[str, tuple[str, bytes]] = {}
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Register or withdraw now (a prefix was homed or unhomed)."""
        self._wake.set()

    @property
    def name(self) -> str:
        config = self.service.config
        return f"{config.advertise_host or config.host}:{self.service.ports.get('tcp', 0)}"

    def heartbeat_prefixes(self) -> list[str]:
        """The prefixes named by ``home``, else the first homed one: one beat per node is enough,
        since its other prefixes share its site and take its state."""
        homed = self.service.homed
        named = [p for p in self.service.config.home if ascii_upper(p) in homed]
        return named or sorted(homed.values())[:1]

    what = "registering with the top-level node"

    def _delay(self) -> float:
        """Soon after a failure (backing off), else at the heartbeat interval."""
        if self.failures:
            return min(self.interval_s, 0.2 * 2.0 ** min(self.failures, 6))
        return self.interval_s

    async def _wait(self) -> None:
        """Until the next heartbeat, or a prefix homed or unhomed (``poke``)."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._delay()):
                await self._wake.wait()

    async def exchange(self) -> None:
        """Register what is not registered with the current site, then heartbeat."""
        try:
            await self._sync()
        except Exception:
            self._registered.clear()  # it may have lost them: register everything again
            raise

    async def _sync(self) -> None:
        service = self.service
        await service.reload_homed()  # another worker may have homed or unhomed one
        site = service.site_info()
        site_entry = site_value(site, SITE_INDEX, ttl=int(service.config.heartbeat_stale_s))
        site_data = site_entry.data
        beating = {ascii_upper(p) for p in self.heartbeat_prefixes()}
        for upper, prefix in list(service.homed.items()):
            if self._registered.get(upper) == site_data:
                continue
            values = [site_entry]
            if upper in beating:
                values.append(self._heartbeat())
            self._delegated[upper] = (prefix, site_data)
            await self._write(prefix, values, whole=True)
            self._registered[upper] = site_data
            beating.discard(upper)  # the record just written carries a fresh heartbeat
            log.info("registered %s with the top-level node", prefix)
        for upper in set(self._delegated) - set(service.homed):
            self._registered.pop(upper, None)  # unhomed: registered again if homed again
            await self._withdraw(*self._delegated[upper])
            del self._delegated[upper]
        for prefix in self.heartbeat_prefixes():
            if ascii_upper(prefix) in beating:
                # the site with it: another node may have registered the prefix since
                await self._write(prefix, [site_entry, self._heartbeat()], whole=False)

    async def _withdraw(self, prefix: str, site_data: bytes) -> None:
        """Delete ``0.NA/<prefix>`` at the top-level while it names the site registered
        (``site_data``); another node's registration of it since is left alone."""
        handle = self._as(prefix)
        client = self.client
        answer = await client.resolve(handle, indexes=[SITE_INDEX], authoritative=True)
        if isinstance(answer, ResolveResponse) and any(v.data == site_data for v in answer.values):
            answer = await client.delete(handle)
        elif answer.code == ResponseCode.VALUES_NOT_FOUND:  # a record with no site: not ours
            return
        if answer.code not in (ResponseCode.SUCCESS, ResponseCode.HANDLE_NOT_FOUND):
            raise _refused(f"withdrawing {handle}: ", answer)

    def _as(self, prefix: str) -> str:
        """``0.NA/<prefix>``, the client set to write it as its admin (``300:0.NA/<prefix>``)."""
        handle = na_handle(prefix)
        self.client.credential = Credential(handle, 300, self.secret)
        return handle

    def _heartbeat(self) -> HandleValue:
        return HandleValue(HEARTBEAT_INDEX, HEARTBEAT_TYPE, self.name.encode(), ttl=0)

    async def _write(self, prefix: str, values: list[HandleValue], *, whole: bool) -> None:
        """Write ``0.NA/<prefix>``: the whole record, or add or replace ``values`` in it."""
        handle = self._as(prefix)
        client = self.client
        if whole:
            answer = await client.create(handle, values, overwrite=True)
        else:
            answer = await client.add_values(handle, values, overwrite=True)
        if answer.code != ResponseCode.SUCCESS:
            raise _refused(f"{handle}: ", answer)


class ToplevelProbe(_ToplevelLink):
    """A recursive node's check that its top-level node answers, where every walk starts: one
    site-information request (no store read there) every ``heartbeat_interval_s``. Walks alone
    would not tell: referrals and answers are cached, and an idle node walks nothing."""

    what = "asking the top-level node for its site information"

    async def exchange(self) -> None:
        answer = await self.client.site_info()
        if answer.code != ResponseCode.SUCCESS:
            raise _refused("", answer)


def _refused(what: str, answer: Any) -> RuntimeError:
    """The failure of a top-level exchange that got ``answer`` instead of success."""
    message = getattr(answer, "message", "")
    return RuntimeError(f"{what}code {int(answer.code)} {message}".rstrip())


async def _prefix_handles(service: Service) -> AsyncIterator[str]:
    offset = 0
    while True:
        total, handles = await service.store.list_handles(NA_PREFIX, offset, _PAGE)
        for handle in handles:
            yield handle
        offset += len(handles)
        if not handles or offset >= total:
            return


async def delegations(service: Service, only: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Top-level: every ``0.NA/<prefix>`` record (or ``only`` those) with its site, its node and
    the node's state.

    A prefix carrying no heartbeat of its own (an enterprise prefix) takes the state of the
    heartbeating prefix registered with the same site.
    """
    now = service.clock()
    stale_s = service.config.heartbeat_stale_s
    rows = []
    for handle in [h async for h in _prefix_handles(service)] if only is None else only:
        record = await service.store.get(ascii_upper(handle))
        if record is None:
            continue
        site = next((v for v in record.values if v.index == SITE_INDEX), None)
        beat = next((v for v in record.values if v.type == HEARTBEAT_TYPE), None)
        rows.append((record.handle.partition("/")[2], site, beat))
    ages: dict[bytes, float] = {}
    for _, site, beat in rows:
        if site is not None and beat is not None:
            beat_age = now - beat.timestamp
            ages[site.data] = min(beat_age, ages.get(site.data, beat_age))
    out = []
    for prefix, site, beat in rows:
        age: float | None = ages.get(site.data) if site is not None else None
        entry: dict[str, Any] = {
            "prefix": prefix,
            "node": beat.data.decode("utf-8", "replace") if beat is not None else None,
            "state": "unknown" if age is None else ("alive" if age <= stale_s else "stale"),
            "heartbeatAgeSeconds": None if age is None else round(age, 1),
            "site": value_to_json(site)["data"] if site is not None else None,
        }
        out.append(entry)
    return out


class Monitor:
    """Top-level: checks the delegations every few seconds; warns when a node turns stale and keeps
    the counts by state for the metrics.

    A check reads only the records that carry heartbeats and those written here since the last
    one; every ``FULL_SCAN_EVERY``-th check (and ``GET /api/delegations``) reads them all, which
    also finds what other workers of the top-level registered. So a top-level holding hundreds of
    thousands of enterprise prefixes checks its few hundred nodes cheaply.
    """

    FULL_SCAN_EVERY = 30

    def __init__(self, service: Service) -> None:
        self.service = service
        self.counts: dict[str, int] = {}  #: heartbeating nodes (by name) by state
        self._stale: set[str] = set()
        self._beating: set[str] = set()  #: prefix handles with a heartbeat
        self._written: set[str] = set()  #: prefix handles written since the last check
        self._checks = 0
        self._task: asyncio.Task[None] | None = None
        service.on_written = self._mark

    def _mark(self, key: str) -> None:
        if key.startswith(_NA_KEY):
            self._written.add(key)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        period = max(0.2, min(10.0, self.service.config.heartbeat_stale_s / 3))
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("checking delegations failed")
            await asyncio.sleep(period)

    async def check(self, full: bool = False) -> list[dict[str, Any]]:
        """Check the delegations (``full``: every one) and return the rows read."""
        full = full or self._checks % self.FULL_SCAN_EVERY == 0
        self._checks += 1
        written, self._written = self._written, set()
        rows = await delegations(self.service, None if full else self._beating | written)
        nodes = [r for r in rows if r["node"] is not None]
        beating = {f"{NA_PREFIX}/{r['prefix']}".upper() for r in nodes}
        self._beating = beating if full else self._beating | beating
        states = {r["node"]: r["state"] for r in nodes}  # one node may heartbeat several prefixes
        counts = {"alive": 0, "stale": 0}
        for state in states.values():
            counts[state] = counts.get(state, 0) + 1
        stale = {r["prefix"] for r in nodes if r["state"] == "stale"}
        for prefix in sorted(stale - self._stale):
            row = next(r for r in nodes if r["prefix"] == prefix)
            log.warning(
                "node %s serving %s stopped heartbeating %.0f s ago",
                row["node"],
                prefix,
                row["heartbeatAgeSeconds"],
            )
        for prefix in sorted(self._stale - stale):
            log.info("node serving %s is heartbeating again", prefix)
        self._stale = stale
        self.counts = counts
        return rows
