"""The hierarchy on real sockets: a top-level node, secondary nodes and a recursive node, port 0.

Every node runs in the test's own event loop (``asyncio.run``); they talk over 127.0.0.1 exactly
as separate processes would. Heartbeats are fast here (every 0.1 s; stale after 1.5 s, since
timestamps are whole seconds) so that a node going away and coming back is seen within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from node.client import SiteClient, TCPClient, UDPClient
from node.config import Config
from node.httpclient import HTTPClient
from node.server import Node
from protocol.codes import OpFlag, ResponseCode
from protocol.messages import (
    Credential,
    ErrorResponse,
    Interface,
    ReferralResponse,
    ResolveRequest,
    ResolveResponse,
    Response,
    Server,
    SiteInfo,
)
from protocol.records import HandleValue
from protocol.site import referral_sites, site_value
from protocol.wire import decode_message, encode_message, frame

HOST = "127.0.0.1"
SECRET = "topology-secret"
FAST = {"heartbeat_interval_s": 0.1, "heartbeat_stale_s": 1.5, "hop_timeout_s": 0.5}


def config(tmp: Path, name: str, **changes: Any) -> Config:
    base = {
        "data_dir": str(tmp / name),
        "host": HOST,
        "http_port": 0,
        "port": 0,
        "admin_secret": SECRET,
        "workers": 1,
        **FAST,
    }
    return Config().merged({**base, **changes})


def url(node: Node) -> str:
    return f"http://{HOST}:{node.ports['http']}"


def toplevel_address(node: Node) -> str:
    return f"{HOST}:{node.ports['tcp']}"


def tcp(node: Node, secret: str | None = None, prefix: str = "") -> TCPClient:
    credential = Credential(f"{prefix}/ADMIN", 300, secret) if secret else None
    return TCPClient(HOST, node.ports["tcp"], credential=credential, attempts=1)


async def wait_for(check: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def delegations(top: Node) -> dict[str, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url(top) + "/api/delegations") as reply,
    ):
        assert reply.status == 200
        body = await reply.json()
    return {row["prefix"]: row for row in body["delegations"]}


async def scrape(node: Node) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as session, session.get(url(node) + "/metrics") as reply:
        text = await reply.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@contextlib.asynccontextmanager
async def running(cfg: Config) -> AsyncIterator[Node]:
    node = Node(cfg)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def product(n: int) -> list[HandleValue]:
    return [
        HandleValue(1, "URL", f"https://factory.example/p/{n}".encode()),
        HandleValue(2, "name", f"brake disc {n}".encode()),
    ]


async def registered(top: Node, *prefixes: str) -> None:
    async def check() -> bool:
        rows = await delegations(top)
        return all(p in rows and rows[p]["state"] == "alive" for p in prefixes)

    await wait_for(check)


# ------------------------------------------------------------------------------------------------


def test_identifier_resolves_through_the_recursive_node_as_at_its_secondary(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(config(tmp_path, "top", role="toplevel")) as top:
            above = toplevel_address(top)
            sec_cfg = config(tmp_path, "sec", home=["88.101", "88.101.5"], toplevel=above)
            async with (
                running(sec_cfg) as sec,
                running(config(tmp_path, "rec", role="recursive", toplevel=above)) as rec,
            ):
                async with tcp(sec, SECRET, "88.101.5") as admin:
                    for n in range(3):
                        created = await admin.create(f"88.101.5/BRK-{n}", product(n))
                        assert created.code == ResponseCode.SUCCESS
                await registered(top, "88.101", "88.101.5")
                async with tcp(sec) as direct:
                    expected = await direct.resolve("88.101.5/BRK-1")
                assert isinstance(expected, ResolveResponse)
                clients = [
                    tcp(rec),
                    UDPClient(HOST, rec.ports["udp"], attempts=1),
                    HTTPClient(url(rec), attempts=1),
                ]
                for client in clients:
                    async with client:
                        got = await client.resolve("88.101.5/BRK-1")
                        assert isinstance(got, ResolveResponse), got
                        assert got.handle == expected.handle
                        assert got.values == expected.values
                        filtered = await client.resolve("88.101.5/brk-1", types=["URL"])
                        assert isinstance(filtered, ResolveResponse)
                        assert [v.type for v in filtered.values] == ["URL"]
                        missing = await client.resolve("88.101.5/NOPE")
                        assert missing.code == ResponseCode.HANDLE_NOT_FOUND
                        unknown = await client.resolve("88.999/X")
                        assert unknown.code == ResponseCode.SERVER_NOT_RESPONSIBLE
                hits = rec.service.cache.hits
                async with tcp(rec) as client:
                    await client.resolve("88.101.5/BRK-1")
                assert rec.service.cache.hits == hits + 1  # the second walk is a cache hit
                followed = (await scrape(rec))[("idnode_referrals_followed_total", ())]
                assert followed >= 2
                assert (await scrape(sec))[("idnode_toplevel_registered", ())] == 1
                alive = ("idnode_delegated_nodes", (("state", "alive"),))
                assert (await scrape(top))[alive] == 1
                # an enterprise prefix allocated later is delegated upward at once
                node_admin = Credential("0.NA/88.101.7", 300, SECRET)
                async with TCPClient(HOST, sec.ports["tcp"], credential=node_admin) as admin:
                    assert (await admin.home("88.101.7")).code == ResponseCode.SUCCESS
                await registered(top, "88.101.7")
                async with tcp(top) as client:
                    referral = await client.resolve("88.101.7/ANY")
                assert isinstance(referral, ReferralResponse)
                assert referral.prefix_handle == "0.NA/88.101.7"
                # a write at the recursive node is refused: it holds no data
                async with tcp(rec, SECRET, "88.101.5") as client:
                    refused = await client.create("88.101.5/NEW", product(9))
                    assert refused.code == ResponseCode.SERVER_NOT_RESPONSIBLE

    asyncio.run(scenario())


def test_referrals_carry_the_service_information(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(config(tmp_path, "top", role="toplevel")) as top:
            above = toplevel_address(top)
            a_cfg = config(tmp_path, "a", home=["88.101"], toplevel=above)
            b_cfg = config(tmp_path, "b", home=["88.102"], toplevel=above)
            async with running(a_cfg) as a, running(b_cfg) as b:
                async with tcp(b, SECRET, "88.102") as admin:
                    assert (await admin.create("88.102/X1", product(1))).code == 1
                await registered(top, "88.101", "88.102")
                async with tcp(top) as client:
                    referral = await client.resolve("88.102/X1")
                assert isinstance(referral, ReferralResponse), referral
                assert referral.code == ResponseCode.PREFIX_REFERRAL
                assert referral.prefix_handle == "0.NA/88.102"
                (site,) = referral_sites(referral.values)
                (server,) = site.servers
                assert server.address == HOST
                ports = {(i.protocol, i.port) for i in server.interfaces}
                assert ports == {(0, b.ports["udp"]), (1, b.ports["tcp"]), (2, b.ports["http"])}
                # the prefix record itself is an ordinary resolution at the top-level
                async with tcp(top) as client:
                    record = await client.resolve("0.NA/88.102")
                assert isinstance(record, ResolveResponse)
                assert {v.type for v in record.values} >= {"HS_SITE"}
                # over HTTP: status 300, the referral and the site in Handle.net's JSON shape
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(url(top) + "/api/handles/88.102/X1") as reply,
                ):
                    assert reply.status == 300
                    body = await reply.json()
                assert body["responseCode"] == 303
                assert body["referral"] == "0.NA/88.102"
                data = body["values"][0]["data"]
                assert data["format"] == "site"
                assert data["value"]["servers"][0]["address"] == HOST
                # a secondary asked for another's identifier refers, or follows when RECURSIVE
                async with tcp(a) as client:
                    referred = await client.resolve("88.102/X1")
                    assert isinstance(referred, ReferralResponse)
                    assert referred.prefix_handle == "0.NA/88.102"
                    followed = await client.resolve("88.102/X1", recursive=True)
                    assert isinstance(followed, ResolveResponse), followed
                    assert followed.values[0].data == b"https://factory.example/p/1"
                    refused = await client.resolve_request(
                        ResolveRequest(handle="88.102/X1", flags=OpFlag.DO_NOT_REFER)
                    )
                    assert refused.code == ResponseCode.SERVER_NOT_RESPONSIBLE
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(url(a) + "/api/handles/88.102/X1?recursive=true") as reply,
                ):
                    assert reply.status == 200
                    assert (await reply.json())["values"][0]["data"]["value"].endswith("/p/1")
                async with HTTPClient(url(a), attempts=1) as http:
                    assert isinstance(await http.resolve("88.102/X1"), ReferralResponse)
                    followed = await http.resolve("88.102/X1", recursive=True)
                    assert isinstance(followed, ResolveResponse), followed

    asyncio.run(scenario())


def test_secondary_restart_keeps_its_delegations_and_the_top_level_sees_it_return(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with running(config(tmp_path, "top", role="toplevel")) as top:
            above = toplevel_address(top)
            sec_cfg = config(tmp_path, "sec", home=["88.103"], toplevel=above)
            async with running(config(tmp_path, "rec", role="recursive", toplevel=above)) as rec:
                async with running(sec_cfg) as sec:
                    async with tcp(sec, SECRET, "88.103") as admin:
                        assert (await admin.create("88.103/A", product(1))).code == 1
                    await registered(top, "88.103")
                    first_port = sec.ports["tcp"]
                    async with tcp(rec) as client:
                        assert (await client.resolve("88.103/A")).code == 1

                async def stale() -> bool:
                    return (await delegations(top))["88.103"]["state"] == "stale"

                await wait_for(stale)  # reported, not dropped
                assert top.monitor is not None
                await top.monitor.check()
                assert top.monitor.counts == {"alive": 0, "stale": 1}
                async with running(sec_cfg) as sec:
                    assert "88.103" in sec.service.homed  # kept in its store
                    await registered(top, "88.103")
                    rows = await delegations(top)
                    ports = {
                        i["port"]
                        for i in rows["88.103"]["site"]["value"]["servers"][0]["interfaces"]
                    }
                    assert sec.ports["tcp"] in ports and first_port not in ports
                    async with tcp(rec) as client:
                        answer = await client.resolve("88.103/A", authoritative=True)
                        if answer.code == ResponseCode.SERVER_BUSY:  # the old address, forgotten
                            answer = await client.resolve("88.103/A", authoritative=True)
                        assert isinstance(answer, ResolveResponse), answer

    asyncio.run(scenario())


async def _silent_server() -> tuple[asyncio.Server, int]:
    """Accepts connections and never answers: a node that hangs."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, HOST, 0)
    return server, server.sockets[0].getsockname()[1]


async def _lying_server() -> tuple[asyncio.Server, int]:
    """Answers ``88.904/...`` with another handle's record and anything else with code 999."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                (length,) = struct.unpack(">I", await reader.readexactly(4))
                asked = decode_message(await reader.readexactly(length))
                assert isinstance(asked, ResolveRequest)
                lie: Response = ErrorResponse(
                    request_id=asked.request_id, code=999, answers=asked.op, message="?"
                )
                if asked.handle.startswith("88.904/"):
                    evil = (HandleValue(1, "URL", b"http://evil.example/"),)
                    lie = ResolveResponse(
                        request_id=asked.request_id, handle="88.118.8/A1", values=evil
                    )
                writer.write(frame(encode_message(lie)))
        writer.close()

    server = await asyncio.start_server(answer, HOST, 0)
    return server, server.sockets[0].getsockname()[1]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _site(port: int) -> SiteInfo:
    return SiteInfo(serial=1, hash_option=0, servers=(Server(1, HOST, (Interface(3, 1, port),)),))


def test_loops_dead_and_slow_nodes_end_in_clear_answers_within_a_bound(tmp_path: Path) -> None:
    async def scenario() -> None:
        silent, silent_port = await _silent_server()
        liar, liar_port = await _lying_server()
        (rec_port,) = _free_ports(1)
        async with running(config(tmp_path, "top", role="toplevel")) as top:
            above = toplevel_address(top)
            node_admin = Credential("0.NA/88.900", 300, SECRET)
            async with TCPClient(HOST, top.ports["tcp"], credential=node_admin) as admin:
                for prefix, port in (
                    ("88.900", top.ports["tcp"]),  # refers to the top-level itself: a loop
                    ("88.901", _closed_port()),  # nobody listens
                    ("88.902", silent_port),  # accepts, never answers
                    ("88.903", rec_port),  # the recursive node itself: each hop a new walk
                    ("88.904", liar_port),  # answers with another handle's record
                    ("88.905", liar_port),  # answers with a code that does not exist
                ):
                    created = await admin.create(f"0.NA/{prefix}", [site_value(_site(port))])
                    assert created.code == ResponseCode.SUCCESS, created
            rec_cfg = config(tmp_path, "rec", role="recursive", toplevel=above, port=rec_port)
            async with running(rec_cfg) as rec, tcp(rec) as client:
                for handle, code, words in (
                    ("88.900/X", ResponseCode.RECURSION_LIMIT, "referral"),
                    ("88.901/X", ResponseCode.SERVER_BUSY, "hop 2"),
                    ("88.902/X", ResponseCode.SERVER_BUSY, "hop 2"),
                    ("88.903/X", ResponseCode.RECURSION_LIMIT, "names this node itself"),
                    ("88.904/X", ResponseCode.ERROR, "the record of 88.118.8/A1"),
                    ("88.905/X", ResponseCode.ERROR, "code 999, which does not exist"),
                ):
                    started = time.monotonic()
                    answer = await client.resolve(handle)
                    assert time.monotonic() - started < 3 * FAST["hop_timeout_s"] + 1
                    assert answer.code == code, answer
                    assert isinstance(answer, ErrorResponse) and words in answer.message
            # the top-level itself gone: the first hop is named
        rec_cfg = config(tmp_path, "rec2", role="recursive", toplevel=above)
        async with running(rec_cfg) as rec, tcp(rec) as client:
            answer = await client.resolve("88.101/X")
            assert answer.code == ResponseCode.SERVER_BUSY
            assert isinstance(answer, ErrorResponse) and "hop 1" in answer.message
        silent.close()
        liar.close()

    asyncio.run(scenario())


def test_with_default_settings_a_client_hears_which_hop_is_dead(tmp_path: Path) -> None:
    """The recursive node's default hop timeout is under the client's default timeout, so a
    client with default settings gets SERVER_BUSY naming the hop, not a timeout of its own."""

    async def scenario() -> None:
        silent, silent_port = await _silent_server()
        async with running(config(tmp_path, "top", role="toplevel")) as top:
            node_admin = Credential("0.NA/88.906", 300, SECRET)
            async with TCPClient(HOST, top.ports["tcp"], credential=node_admin) as admin:
                site = [site_value(_site(silent_port))]
                assert (await admin.create("0.NA/88.906", site)).code == ResponseCode.SUCCESS
            hop_timeout = Config().hop_timeout_s
            rec_cfg = config(
                tmp_path, "rec", role="recursive", toplevel=toplevel_address(top)
            ).merged({"hop_timeout_s": hop_timeout})
            async with running(rec_cfg) as rec:
                async with TCPClient(HOST, rec.ports["tcp"]) as client:  # default settings
                    started = time.monotonic()
                    answer = await client.resolve("88.906/X")
                assert answer.code == ResponseCode.SERVER_BUSY, answer
                assert isinstance(answer, ErrorResponse) and "hop 2" in answer.message
                assert time.monotonic() - started < hop_timeout + 0.5
        silent.close()

    asyncio.run(scenario())


def _free_ports(n: int) -> list[int]:
    """Ports free for TCP and UDP alike (a site's servers are configured before they start)."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as t, socket.socket(type=socket.SOCK_DGRAM) as u:
            t.bind((HOST, 0))
            port = t.getsockname()[1]
            try:
                u.bind((HOST, port))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return ports


def test_a_site_of_two_servers_spreads_handles_by_md5_and_clients_follow_it(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with running(config(tmp_path, "top", role="toplevel")) as top:
            above = toplevel_address(top)
            p1, h1, p2, h2 = _free_ports(4)
            site = [f"{HOST}:{p1}:{h1}", f"{HOST}:{p2}:{h2}"]
            common = {"home": ["88.104"], "toplevel": above, "site": site}
            one = config(tmp_path, "s1", port=p1, http_port=h1, site_server_id=1, **common)
            two = config(tmp_path, "s2", port=p2, http_port=h2, site_server_id=2, **common)
            async with (
                running(one) as s1,
                running(two) as s2,
                running(config(tmp_path, "rec", role="recursive", toplevel=above)) as rec,
            ):
                credential = Credential("88.104/ADMIN", 300, SECRET)
                info = await tcp(s1).site_info()
                site_info = info.site  # type: ignore[attr-defined]
                assert len(site_info.servers) == 2
                handles = [f"88.104/UNIT-{n}" for n in range(16)]
                async with SiteClient(site_info, credential=credential) as client:
                    for n, handle in enumerate(handles):
                        assert (await client.create(handle, product(n))).code == 1
                    for handle in handles:
                        assert (await client.resolve(handle)).code == 1
                held = {1: 0, 2: 0}
                for number, node in ((1, s1), (2, s2)):
                    async with tcp(node) as direct:
                        for handle in handles:
                            answer = await direct.resolve(handle)
                            if answer.code == ResponseCode.SUCCESS:
                                held[number] += 1
                            else:  # the other server's handle: it refers to the site
                                assert answer.code == ResponseCode.PREFIX_REFERRAL, answer
                assert held[1] + held[2] == len(handles) and held[1] and held[2]
                # a write sent to the wrong server of the site is refused
                async with SiteClient(site_info) as picker:
                    wrong = s2 if picker.server(handles[0]).server_id == 1 else s1
                async with tcp(wrong, SECRET, "88.104") as admin:
                    refused = await admin.create(handles[0], product(0), overwrite=True)
                    assert refused.code == ResponseCode.SERVER_NOT_RESPONSIBLE
                await registered(top, "88.104")
                async with tcp(rec) as client:
                    for handle in handles:
                        got = await client.resolve(handle)
                        assert isinstance(got, ResolveResponse), (handle, got)

    asyncio.run(scenario())


def test_the_site_names_the_advertised_address(tmp_path: Path) -> None:
    """A node listening on every interface (a container) registers the address others reach."""

    async def scenario() -> None:
        async with running(config(tmp_path, "n", advertise_host="192.0.2.7")) as node:
            (server,) = node.service.site_info().servers
            assert server.address == "192.0.2.7"
            async with tcp(node) as client:
                info = await client.site_info()
            assert info.site.servers[0].address == "192.0.2.7"  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_a_secondary_started_before_its_top_level_registers_once_it_is_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        (port,) = _free_ports(1)
        above = f"{HOST}:{port}"
        async with running(config(tmp_path, "sec", home=["88.105"], toplevel=above)) as sec:
            await asyncio.sleep(0.5)  # several attempts fail meanwhile
            assert sec.registrar is not None and not sec.registrar.ready()
            assert sec.registrar.failures >= 1
            async with (
                aiohttp.ClientSession() as session,
                session.get(url(sec) + "/readyz") as reply,
            ):
                assert reply.status == 503
                assert (await reply.json())["toplevel"]["registered"] is False
            async with running(config(tmp_path, "top", role="toplevel", port=port)) as top:
                await registered(top, "88.105")
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(url(sec) + "/readyz") as reply,
                ):
                    assert reply.status == 200

    asyncio.run(scenario())


def test_a_recursive_node_is_ready_only_while_its_top_level_answers(tmp_path: Path) -> None:
    """Every walk starts at the top-level: while it is dead the recursive node's /readyz says 503
    (a cached answer is no sign it is alive), and 200 again once it is back on its port."""

    async def readyz(node: Node) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url(node) + "/readyz") as reply,
        ):
            return reply.status, (await reply.json()).get("toplevel")

    async def status_is(node: Node, status: int) -> None:
        async def check() -> bool:
            return (await readyz(node))[0] == status

        await wait_for(check)

    async def scenario() -> None:
        (port,) = _free_ports(1)
        top_cfg = config(tmp_path, "top", role="toplevel", port=port)
        rec_cfg = config(tmp_path, "rec", role="recursive", toplevel=f"{HOST}:{port}")
        async with running(rec_cfg) as rec:
            async with running(top_cfg):
                await status_is(rec, 200)
            await status_is(rec, 503)
            _, toplevel = await readyz(rec)
            assert toplevel["reachable"] is False and toplevel["failures"] >= 1, toplevel
            async with running(top_cfg):
                await status_is(rec, 200)
                _, toplevel = await readyz(rec)
                assert toplevel == {"address": f"{HOST}:{port}", "reachable": True, "failures": 0}

    asyncio.run(scenario())


def test_a_top_level_that_lost_its_records_gets_them_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        (port,) = _free_ports(1)
        above = f"{HOST}:{port}"
        sec_cfg = config(tmp_path, "sec", home=["88.106", "88.106.2"], toplevel=above)
        async with running(sec_cfg):
            async with running(config(tmp_path, "top1", role="toplevel", port=port)) as top:
                await registered(top, "88.106", "88.106.2")
            # a new top-level on the same address with an empty store
            async with running(config(tmp_path, "top2", role="toplevel", port=port)) as top:
                await registered(top, "88.106", "88.106.2")

    asyncio.run(scenario())


def test_the_monitor_counts_nodes_between_full_scans(tmp_path: Path) -> None:
    """Between full scans a check reads only heartbeating and newly written prefix records, and
    still counts a node that registers meanwhile and one that goes silent."""

    async def scenario() -> None:
        async with running(config(tmp_path, "top", role="toplevel")) as top:
            monitor = top.monitor
            assert monitor is not None
            above = toplevel_address(top)
            await monitor.check(full=True)
            a_cfg = config(tmp_path, "a", home=["88.107", "88.107.1"], toplevel=above)
            b_cfg = config(tmp_path, "b", home=["88.108"], toplevel=above)

            async def counted(alive: int, stale: int = 0) -> bool:
                rows = await monitor.check()
                assert len(rows) <= 3  # never more than the records that matter
                return monitor.counts == {"alive": alive, "stale": stale}

            async with running(a_cfg):
                async with running(b_cfg):
                    await wait_for(lambda: counted(2))
                await wait_for(lambda: counted(1, 1))

    asyncio.run(scenario())


def test_referrals_name_the_handle_asked_and_prefix_records_come_from_the_top_level(
    tmp_path: Path,
) -> None:
    """A referral kept for one handle names the next one asked; a prefix's own record is the
    top-level's even after a referral for its identifiers was kept; an enterprise prefix nobody
    registered under a registered industry is 301 (not a referral back to the same node); and a
    top-level that does not answer is SERVER_BUSY, not 301."""

    async def scenario() -> None:
        top = Node(config(tmp_path, "top", role="toplevel"))
        await top.start()
        above = toplevel_address(top)
        a_cfg = config(tmp_path, "a", home=["88.118", "88.118.8"], toplevel=above)
        b_cfg = config(tmp_path, "b", home=["88.101"], toplevel=above)
        rec_cfg = config(tmp_path, "rec", role="recursive", toplevel=above)
        async with running(a_cfg) as a, running(b_cfg) as b, running(rec_cfg) as rec:
            async with tcp(a, SECRET, "88.118.8") as admin:
                assert (await admin.create("88.118.8/A1", product(1))).code == 1
            await registered(top, "88.118", "88.118.8", "88.101")
            async with tcp(b) as client:
                for name in ("FIRST", "SECOND"):
                    referral = await client.resolve(f"88.118.8/{name}")
                    assert isinstance(referral, ReferralResponse), referral
                    assert referral.handle == f"88.118.8/{name}"
            async with tcp(rec) as client:
                for handle in ("0.NA/88.118.8", "88.118.8/A1", "0.NA/88.118.8"):
                    answer = await client.resolve(handle)
                    assert isinstance(answer, ResolveResponse), (handle, answer)
                for handle in ("88.118.99/X", "88.118.8.5/X"):
                    answer = await client.resolve(handle)
                    assert answer.code == ResponseCode.SERVER_NOT_RESPONSIBLE, answer
            async with tcp(a) as client:
                answer = await client.resolve("88.118.99/X")
                assert answer.code == ResponseCode.SERVER_NOT_RESPONSIBLE, answer
            await top.stop()
            async with tcp(b) as client:
                answer = await client.resolve("88.118/NOT-ASKED-BEFORE")
                assert answer.code == ResponseCode.SERVER_BUSY, answer
                assert "top-level" in answer.message  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_an_unhomed_prefix_is_withdrawn_from_the_top_level(tmp_path: Path) -> None:
    """Unhoming a registered prefix deletes its record at the top-level, so nobody is referred
    to a node that no longer serves it (the node and the recursive node answer 301, not a
    referral to itself or RECURSION_LIMIT); homed again, it is registered again."""

    async def scenario() -> None:
        async with running(config(tmp_path, "top", role="toplevel")) as top:
            above = toplevel_address(top)
            a_cfg = config(tmp_path, "a", home=["88.109", "88.109.5"], toplevel=above)
            rec_cfg = config(tmp_path, "rec", role="recursive", toplevel=above)
            async with running(a_cfg) as a, running(rec_cfg) as rec:
                await registered(top, "88.109", "88.109.5")
                node_admin = Credential("0.NA/88.109", 300, SECRET)
                async with TCPClient(HOST, a.ports["tcp"], credential=node_admin) as admin:
                    assert (await admin.unhome("88.109.5")).code == ResponseCode.SUCCESS

                    async def withdrawn() -> bool:
                        return "88.109.5" not in await delegations(top)

                    await wait_for(withdrawn)
                    for node in (a, rec):
                        async with tcp(node) as client:
                            answer = await client.resolve("88.109.5/X")
                        assert answer.code == ResponseCode.SERVER_NOT_RESPONSIBLE, answer
                    assert (await admin.home("88.109.5")).code == ResponseCode.SUCCESS
                await registered(top, "88.109.5")

    asyncio.run(scenario())


def test_a_delegation_naming_a_node_that_does_not_serve_the_prefix_is_not_referred_to_it(
    tmp_path: Path,
) -> None:
    """A top-level record that names a secondary for a prefix it does not home (left from an
    earlier registration) makes that secondary answer 301, not refer clients to itself."""

    async def scenario() -> None:
        async with running(config(tmp_path, "top", role="toplevel")) as top:
            above = toplevel_address(top)
            a_cfg = config(tmp_path, "a", home=["88.110"], toplevel=above)
            rec_cfg = config(tmp_path, "rec", role="recursive", toplevel=above)
            async with running(a_cfg) as a, running(rec_cfg) as rec:
                await registered(top, "88.110")
                node_admin = Credential("0.NA/88.111", 300, SECRET)
                async with TCPClient(HOST, top.ports["tcp"], credential=node_admin) as admin:
                    site = [site_value(a.service.site_info())]
                    assert (await admin.create("0.NA/88.111", site)).code == ResponseCode.SUCCESS
                for node in (a, rec):
                    async with tcp(node) as client:
                        answer = await client.resolve("88.111/X")
                    assert answer.code == ResponseCode.SERVER_NOT_RESPONSIBLE, answer

    asyncio.run(scenario())


def test_a_node_that_stops_is_not_kept_alive_by_another_claiming_its_prefix(
    tmp_path: Path,
) -> None:
    """Two secondaries register one prefix: the record's heartbeat always comes from the node
    its site names, so once the later one stops the other takes the prefix back (referrals
    name a live node) instead of beating on a record that refers to the stopped one."""

    async def scenario() -> None:
        # a beats less often than b, so b's registration is what the record mostly holds
        # while both run; stale only well after a's beats
        async with running(config(tmp_path, "top", role="toplevel", heartbeat_stale_s=5)) as top:
            above = toplevel_address(top)
            a_cfg = config(tmp_path, "a", home=["88.112"], toplevel=above, heartbeat_interval_s=0.5)
            async with running(a_cfg) as a:
                await registered(top, "88.112")
                b_cfg = config(tmp_path, "b", home=["88.112"], toplevel=above)
                async with running(b_cfg) as b:

                    async def names(node: Node) -> bool:
                        row = (await delegations(top))["88.112"]
                        (server,) = row["site"]["value"]["servers"]
                        ports = {i["port"] for i in server["interfaces"]}
                        name = f"{HOST}:{node.ports['tcp']}"
                        return node.ports["tcp"] in ports and (row["node"], row["state"]) == (
                            name,
                            "alive",
                        )

                    await wait_for(lambda: names(b))
                await wait_for(lambda: names(a), timeout_s=5)
                async with tcp(top) as client:
                    referral = await client.resolve("88.112/X")
                assert isinstance(referral, ReferralResponse), referral
                (site,) = referral_sites(referral.values)
                assert a.ports["tcp"] in {i.port for i in site.servers[0].interfaces}

    asyncio.run(scenario())
