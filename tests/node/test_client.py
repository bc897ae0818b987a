"""The client SDK and the client CLI against a real node on port 0, over HTTP, TCP and UDP."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from node.cli import main
from node.client import Client, TCPClient, UDPClient
from node.config import Config
from node.httpclient import HTTPClient, NotSupportedOverHTTP
from node.server import Node
from protocol.codes import ALL_ADMIN_PERMISSIONS, OpCode, OpFlag, ResponseCode
from protocol.messages import (
    CreateRequest,
    CreateResponse,
    Credential,
    DoneResponse,
    ErrorResponse,
    ListHandlesResponse,
    ListPrefixesResponse,
    Request,
    ResolveResponse,
    Response,
    SiteInfoResponse,
)
from protocol.records import AdminValue, HandleValue, Reference

PREFIX = "88.100.1"
SECRET = "s3cret"
CRED = Credential(f"{PREFIX}/ADMIN", 300, SECRET)
NODE_ADMIN = Credential(f"0.NA/{PREFIX}", 300, SECRET)
KINDS = ("http", "tcp", "udp")
VALUES = (
    HandleValue(1, "URL", b"https://example.com/p/1"),
    HandleValue(2, "EMAIL", b"qa@example.com"),
)


@contextlib.asynccontextmanager
async def running_node(tmp_path: Path) -> AsyncIterator[Node]:
    node = Node(
        Config(data_dir=str(tmp_path), http_port=0, port=0, home=[PREFIX], admin_secret=SECRET)
    )
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def client_for(
    kind: str, node: Node, credential: Credential | None = CRED, **options: Any
) -> Client:
    options.setdefault("timeout_s", 5.0)
    if kind == "http":
        return HTTPClient(
            f"http://127.0.0.1:{node.ports['http']}", credential=credential, **options
        )
    if kind == "tcp":
        return TCPClient("127.0.0.1", node.ports["tcp"], credential=credential, **options)
    return UDPClient("127.0.0.1", node.ports["udp"], credential=credential, **options)


def on_node(tmp_path: Path, body: Callable[[Node], Awaitable[None]]) -> None:
    async def run() -> None:
        async with running_node(tmp_path) as node:
            await asyncio.wait_for(body(node), 60)

    asyncio.run(run())


def triples(response: Response) -> list[tuple[int, str, bytes]]:
    assert isinstance(response, ResolveResponse), response
    return [(v.index, v.type, v.data) for v in response.values]


# -- every operation over every transport -------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_write_and_read_cycle(tmp_path: Path, kind: str) -> None:
    async def body(node: Node) -> None:
        handle = f"{PREFIX}/cycle-{kind}"
        async with client_for(kind, node) as client:
            created = await client.create(handle, VALUES)
            assert isinstance(created, CreateResponse) and created.created
            assert created.handle == handle
            assert triples(await client.resolve(handle)) == [
                (v.index, v.type, v.data) for v in VALUES
            ]

            added = await client.add_values(handle, [HandleValue(3, "DESC", b"brake caliper")])
            assert isinstance(added, DoneResponse) and added.op == OpCode.ADD_VALUE
            assert added.created  # HTTP 201 over HTTP
            clash = await client.add_values(handle, [HandleValue(3, "DESC", b"other")])
            assert clash.code == ResponseCode.VALUE_ALREADY_EXISTS
            modified = await client.modify_values(handle, [HandleValue(3, "DESC", b"pad set")])
            assert isinstance(modified, DoneResponse) and modified.op == OpCode.MODIFY_VALUE
            only = await client.resolve(handle, indexes=[3])
            assert triples(only) == [(3, "DESC", b"pad set")]
            assert triples(await client.resolve(handle, types=["EMAIL"]))[0][1] == "EMAIL"
            nothing = await client.resolve(handle, types=["NOPE"])
            assert nothing.code == ResponseCode.VALUES_NOT_FOUND

            removed = await client.remove_values(handle, [2, 3])
            assert isinstance(removed, DoneResponse) and removed.op == OpCode.REMOVE_VALUE
            assert [t[0] for t in triples(await client.resolve(handle))] == [1]
            missing_index = await client.remove_values(handle, [9])
            assert missing_index.code == ResponseCode.VALUES_NOT_FOUND

            listed = await client.list_handles(PREFIX, page=0, page_size=10)
            assert isinstance(listed, ListHandlesResponse)
            assert handle in listed.handles and listed.total == 2  # and <prefix>/ADMIN

            minted = await client.create(f"{PREFIX}/", VALUES, mint_suffix=True)
            assert isinstance(minted, CreateResponse) and minted.handle.startswith(f"{PREFIX}/")
            assert triples(await client.resolve(minted.handle))[0][0] == 1

            deleted = await client.delete(handle)
            assert isinstance(deleted, DoneResponse) and deleted.op == OpCode.DELETE_HANDLE
            assert (await client.resolve(handle)).code == ResponseCode.HANDLE_NOT_FOUND
            assert (await client.delete(handle)).code == ResponseCode.HANDLE_NOT_FOUND

    on_node(tmp_path, body)


def test_the_three_transports_resolve_the_same_record(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        handle = f"{PREFIX}/Same Record/with:odd?chars#and%escapes"
        writer = client_for("tcp", node)
        assert (await writer.create(handle, VALUES)).code == ResponseCode.SUCCESS
        await writer.close()
        answers = []
        for kind in KINDS:
            async with client_for(kind, node, credential=None) as client:
                answers.append(await client.resolve(handle))
        assert all(isinstance(a, ResolveResponse) for a in answers)
        assert answers[0].handle == answers[1].handle == answers[2].handle == handle  # type: ignore[attr-defined]
        shown = [a.values for a in answers]  # type: ignore[attr-defined]
        assert shown[0] == shown[1] == shown[2]  # timestamps, TTLs and permissions too

    on_node(tmp_path, body)


@pytest.mark.parametrize("kind", KINDS)
def test_error_codes(tmp_path: Path, kind: str) -> None:
    async def body(node: Node) -> None:
        handle = f"{PREFIX}/errors"
        async with client_for(kind, node) as client:
            assert (await client.resolve(handle)).code == ResponseCode.HANDLE_NOT_FOUND
            assert (await client.create(handle, VALUES)).code == ResponseCode.SUCCESS
            exists = await client.create(handle, VALUES)
            assert isinstance(exists, ErrorResponse)
            assert exists.code == ResponseCode.HANDLE_ALREADY_EXISTS
            assert exists.op == OpCode.CREATE_HANDLE
            overwritten = await client.create(handle, VALUES[:1], overwrite=True)
            assert isinstance(overwritten, CreateResponse) and not overwritten.created
            elsewhere = await client.resolve("88.999.9/x")
            assert elsewhere.code == ResponseCode.SERVER_NOT_RESPONSIBLE
            assert (await client.create("88.999.9/x", VALUES)).code == 301
        async with client_for(kind, node, credential=None) as anonymous:
            needed = await anonymous.create(f"{PREFIX}/anon", VALUES)
            assert needed.code == ResponseCode.AUTHENTICATION_NEEDED
            assert (await anonymous.list_handles(PREFIX)).code == 402
            assert (await anonymous.delete(handle)).code == 402
        wrong = Credential(CRED.handle, CRED.index, "wrong")
        async with client_for(kind, node, credential=wrong) as impostor:
            failed = await impostor.delete(handle)
            assert failed.code == ResponseCode.AUTHENTICATION_FAILED
            assert isinstance(failed, ErrorResponse) and failed.op == OpCode.DELETE_HANDLE

    on_node(tmp_path, body)


def test_credentialed_resolution_shows_admin_only_values(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        secret_value = HandleValue(5, "NOTE", b"internal", permissions=0xC)
        handle = f"{PREFIX}/private"
        for kind in KINDS:
            async with client_for(kind, node) as client:
                if kind == "http":
                    await client.create(handle, (*VALUES, secret_value))
                public = await client.resolve(handle)
                assert 5 not in [t[0] for t in triples(public)]
                full = await client.resolve(handle, public_only=False, authoritative=True)
                assert 5 in [t[0] for t in triples(full)]

    on_node(tmp_path, body)


# -- transport behaviour ------------------------------------------------------------------------


def test_udp_answer_over_1400_bytes_is_fetched_again_over_tcp(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        big = tuple(HandleValue(i, "DESC", b"x" * 500) for i in range(1, 6))
        async with client_for("udp", node) as client:
            assert isinstance(client, UDPClient)
            assert (await client.create(f"{PREFIX}/big", big)).code == ResponseCode.SUCCESS
            assert (await client.create(f"{PREFIX}/small", VALUES)).code == ResponseCode.SUCCESS
            small = await client.resolve(f"{PREFIX}/small")
            assert triples(small)[0][0] == 1 and client.tcp_fallbacks == 0
            answer = await client.resolve(f"{PREFIX}/big")
            assert triples(answer) == [(v.index, v.type, v.data) for v in big]
            assert client.tcp_fallbacks == 1
            assert len(await _many(client, f"{PREFIX}/big", 5)) == 5
            assert client.tcp_fallbacks == 6

    on_node(tmp_path, body)


def test_udp_create_whose_answer_cannot_fit_a_datagram_goes_over_tcp_once(tmp_path: Path) -> None:
    """A create's answer names its handle. Asking again over TCP after a truncated answer would
    repeat the write (101 for a create done, a second handle for a minted one), so a create whose
    answer may not fit goes over TCP at once."""
    long_suffix = "L" * 1450

    async def body(node: Node) -> None:
        async with client_for("udp", node) as client:
            assert isinstance(client, UDPClient)
            made = await client.create(f"{PREFIX}/{long_suffix}", VALUES)
            assert isinstance(made, CreateResponse) and made.created, made
            minted = await client.create(f"{PREFIX}/{long_suffix}-", VALUES, mint_suffix=True)
            assert isinstance(minted, CreateResponse) and minted.created, minted
            assert client.tcp_fallbacks == 2
            listed = await client.list_handles(PREFIX, page_size=100)
            assert isinstance(listed, ListHandlesResponse)
            assert sum(h.startswith(f"{PREFIX}/{long_suffix}-") for h in listed.handles) == 1
            fallbacks = client.tcp_fallbacks  # the page of long handles came over TCP too
            short = await client.create(f"{PREFIX}/short", VALUES)  # fits: stays on UDP
            assert isinstance(short, CreateResponse) and client.tcp_fallbacks == fallbacks

    on_node(tmp_path, body)


async def _many(client: Client, handle: str, n: int) -> list[Response]:
    answers = await asyncio.gather(*(client.resolve(handle) for _ in range(n)))
    assert all(a.code == ResponseCode.SUCCESS for a in answers)
    return list(answers)


@pytest.mark.parametrize("kind", ("tcp", "udp"))
def test_pipelined_requests_are_matched_by_request_id(tmp_path: Path, kind: str) -> None:
    async def body(node: Node) -> None:
        async with client_for(kind, node) as client:
            for i in range(20):
                value = HandleValue(1, "URL", f"https://example.com/{i}".encode())
                assert (await client.create(f"{PREFIX}/p{i}", [value])).code == 1
            answers = await asyncio.gather(*(client.resolve(f"{PREFIX}/p{i}") for i in range(20)))
            for i, answer in enumerate(answers):
                assert triples(answer) == [(1, "URL", f"https://example.com/{i}".encode())]
            if isinstance(client, TCPClient):
                assert client.connects == 1

    on_node(tmp_path, body)


def test_tcp_client_reconnects_after_the_connection_drops(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        async with client_for("tcp", node) as client:
            assert isinstance(client, TCPClient)
            assert (await client.create(f"{PREFIX}/r", VALUES)).code == ResponseCode.SUCCESS
            for connection in list(node.connections):
                connection.transport.close()
            await asyncio.sleep(0.05)  # let the client see the EOF
            assert triples(await client.resolve(f"{PREFIX}/r"))[0][0] == 1
            assert (await client.delete(f"{PREFIX}/r")).code == ResponseCode.SUCCESS
            assert client.connects == 2

    on_node(tmp_path, body)


@pytest.mark.parametrize("kind", ("tcp", "udp"))
def test_node_ops_over_msgpack(tmp_path: Path, kind: str) -> None:
    async def body(node: Node) -> None:
        async with client_for(kind, node, credential=NODE_ADMIN) as admin:
            homed = await admin.list_homed()
            assert isinstance(homed, ListPrefixesResponse) and homed.prefixes == (PREFIX,)
            assert (await admin.home("88.200.7")).code == ResponseCode.SUCCESS
            assert (await admin.list_homed()).prefixes == (PREFIX, "88.200.7")  # type: ignore[attr-defined]
            assert (await admin.unhome("88.200.7")).code == ResponseCode.SUCCESS
            site = await admin.site_info()
            assert isinstance(site, SiteInfoResponse)
            ports = {i.port for i in site.site.servers[0].interfaces}
            assert ports == {node.ports["tcp"], node.ports["http"]}
        async with client_for(kind, node) as prefix_admin:
            refused = await prefix_admin.home("88.200.8")
            assert refused.code == ResponseCode.NOT_AUTHORIZED

    on_node(tmp_path, body)


@pytest.mark.parametrize("kind", KINDS)
def test_a_prefix_admin_has_no_rights_under_another_homed_prefix(tmp_path: Path, kind: str) -> None:
    """Refused with NOT_AUTHORIZED and a message naming what was refused; its non-public values
    stay hidden from it."""
    other = "88.200.7"
    note = HandleValue(2, "NOTE", b"hidden", permissions=0xC)

    async def body(node: Node) -> None:
        async with client_for("tcp", node, credential=NODE_ADMIN) as admin:
            assert (await admin.home(other)).code == ResponseCode.SUCCESS
        own = Credential(f"{other}/ADMIN", 300, SECRET)
        async with client_for(kind, node, credential=own) as owner:
            created = await owner.create(f"{other}/x", (VALUES[0], note))
            assert created.code == ResponseCode.SUCCESS
        async with client_for(kind, node) as stranger:
            refused = await stranger.create(f"{other}/y", VALUES)
            assert isinstance(refused, ErrorResponse), refused
            assert refused.code == ResponseCode.NOT_AUTHORIZED
            assert refused.message == f"300:{PREFIX}/ADMIN may not change handles under {other}"
            listed = await stranger.list_handles(other)
            assert isinstance(listed, ErrorResponse), listed
            assert listed.code == ResponseCode.NOT_AUTHORIZED
            assert listed.message == f"300:{PREFIX}/ADMIN may not list handles under {other}"
            read = await stranger.resolve(f"{other}/x", public_only=False)
            assert [v.index for v in read.values] == [1]  # type: ignore[attr-defined]
            if kind != "http":  # not in the REST API
                unhomed = await stranger.unhome(other)
                assert isinstance(unhomed, ErrorResponse), unhomed
                assert unhomed.code == ResponseCode.NOT_AUTHORIZED
                assert "unhoming" in unhomed.message

    on_node(tmp_path, body)


@pytest.mark.parametrize("kind", KINDS)
def test_an_unhomed_prefix_admin_has_no_rights_under_the_prefixes_below(
    tmp_path: Path, kind: str
) -> None:
    """A prefix's admin writes under the prefixes below it while its prefix is homed; unhoming
    the prefix takes that away, though its ADMIN handle stays in the store."""
    parent, child = "88.300", "88.300.1"
    note = HandleValue(2, "NOTE", b"hidden", permissions=0xC)

    async def body(node: Node) -> None:
        async with client_for("tcp", node, credential=NODE_ADMIN) as admin:
            for prefix in (parent, child):
                assert (await admin.home(prefix)).code == ResponseCode.SUCCESS
            async with client_for(
                kind, node, credential=Credential(f"{parent}/ADMIN", 300, SECRET)
            ) as above:
                made = await above.create(f"{child}/by-parent", (VALUES[0], note))
                assert made.code == ResponseCode.SUCCESS
                assert (await admin.unhome(parent)).code == ResponseCode.SUCCESS
                refused = await above.create(f"{child}/after-unhoming", VALUES)
                assert refused.code == ResponseCode.NOT_AUTHORIZED, refused
                assert (await above.list_handles(child)).code == ResponseCode.NOT_AUTHORIZED
                read = await above.resolve(f"{child}/by-parent", public_only=False)
                assert [v.index for v in read.values] == [1]  # type: ignore[attr-defined]

    on_node(tmp_path, body)


def test_http_has_no_route_for_node_ops(tmp_path: Path) -> None:
    async def body(node: Node) -> None:
        async with client_for("http", node, credential=NODE_ADMIN) as client:
            for call in (
                lambda: client.home("88.200.9"),
                lambda: client.unhome(PREFIX),
                client.list_homed,
                client.site_info,
            ):
                with pytest.raises(NotSupportedOverHTTP):
                    await call()

    on_node(tmp_path, body)


# -- timeouts, retries and the create rule ------------------------------------------------------


def lossy(base: type[Client]) -> type[Client]:
    """``base`` whose exchanges can lose the request or the answer (a timeout either way)."""

    class Lossy(base):  # type: ignore[valid-type, misc]
        lose_answers = 0  #: exchanges whose request arrives but whose answer is lost
        lose_requests = 0  #: exchanges whose request never arrives
        exchanges: list[OpCode]

        async def _exchange(self, request: Request) -> Response:
            self.exchanges = [*getattr(self, "exchanges", []), request.op]
            if self.lose_requests:
                self.lose_requests -= 1
                raise TimeoutError
            response: Response = await super()._exchange(request)
            if self.lose_answers:
                self.lose_answers -= 1
                raise TimeoutError
            return response

    return Lossy


CLASSES: dict[str, type[Client]] = {"http": HTTPClient, "tcp": TCPClient, "udp": UDPClient}


def lossy_client(kind: str, node: Node, **options: Any) -> Any:
    cls = lossy(CLASSES[kind])
    options.update(credential=CRED, timeout_s=5.0, backoff_s=0.01)
    if kind == "http":
        return cls(f"http://127.0.0.1:{node.ports['http']}", **options)
    return cls("127.0.0.1", node.ports[kind], **options)


@pytest.mark.parametrize("kind", KINDS)
def test_retried_create_that_finds_its_own_record_succeeds(tmp_path: Path, kind: str) -> None:
    async def body(node: Node) -> None:
        async with lossy_client(kind, node) as client:
            client.lose_answers = 1  # the first create is done, but its answer never comes
            created = await client.create(f"{PREFIX}/retried", VALUES)
            assert isinstance(created, CreateResponse), created
            assert created.handle == f"{PREFIX}/retried"
            # create, create again (101), then the authoritative check
            assert client.exchanges == [OpCode.CREATE_HANDLE] * 2 + [OpCode.RESOLUTION]

    on_node(tmp_path, body)


@pytest.mark.parametrize("kind", KINDS)
def test_retried_create_that_finds_other_values_is_101(tmp_path: Path, kind: str) -> None:
    async def body(node: Node) -> None:
        handle = f"{PREFIX}/taken"
        async with client_for(kind, node) as other:
            assert (await other.create(handle, VALUES[:1])).code == ResponseCode.SUCCESS
        async with lossy_client(kind, node) as client:
            client.lose_requests = 1  # the first attempt is lost; the retry meets the other record
            answer = await client.create(handle, VALUES)
            assert isinstance(answer, ErrorResponse)
            assert answer.code == ResponseCode.HANDLE_ALREADY_EXISTS
            assert client.exchanges == [OpCode.CREATE_HANDLE] * 2 + [OpCode.RESOLUTION]
            # without a lost attempt a 101 is final: no check
            client.exchanges = []
            assert (await client.create(handle, VALUES[:1])).code == 101
            assert client.exchanges == [OpCode.CREATE_HANDLE]

    on_node(tmp_path, body)


@pytest.mark.parametrize("kind", KINDS)
def test_only_idempotent_operations_are_retried(tmp_path: Path, kind: str) -> None:
    async def body(node: Node) -> None:
        handle = f"{PREFIX}/once"
        async with lossy_client(kind, node, attempts=3) as client:
            assert (await client.create(handle, VALUES)).code == ResponseCode.SUCCESS
            client.lose_answers = 1
            resolved = await client.resolve(handle)
            assert isinstance(resolved, ResolveResponse)
            assert client.exchanges[-2:] == [OpCode.RESOLUTION] * 2

            client.lose_answers, client.exchanges = 5, []
            timed_out = await client.delete(handle)  # done on the node, but never repeated
            assert timed_out.code == ResponseCode.CLIENT_TIMEOUT
            assert isinstance(timed_out, ErrorResponse) and timed_out.op == OpCode.DELETE_HANDLE
            assert client.exchanges == [OpCode.DELETE_HANDLE]
            client.lose_answers = 0
            assert (await client.resolve(handle)).code == ResponseCode.HANDLE_NOT_FOUND

            client.lose_requests, client.exchanges = 5, []
            gave_up = await client.list_handles(PREFIX)
            assert gave_up.code == ResponseCode.CLIENT_TIMEOUT
            assert isinstance(gave_up, ErrorResponse) and "3 attempts" in gave_up.message
            assert client.exchanges == [OpCode.LIST_HANDLES] * 3

            client.lose_requests, client.exchanges = 1, []
            minted = await client.create(f"{PREFIX}/", VALUES, mint_suffix=True)
            assert minted.code == ResponseCode.CLIENT_TIMEOUT  # minting is never repeated
            assert client.exchanges == [OpCode.CREATE_HANDLE]

    on_node(tmp_path, body)


def test_silent_server_times_out_and_closed_port_is_a_channel_error() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        silent, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        port = silent.get_extra_info("sockname")[1]
        async with UDPClient("127.0.0.1", port, timeout_s=0.05, backoff_s=0.01) as client:
            answer = await client.resolve(f"{PREFIX}/x")
            assert answer.code == ResponseCode.CLIENT_TIMEOUT
        silent.close()
        async with TCPClient("127.0.0.1", port, attempts=2, backoff_s=0.01) as client:
            refused = await client.resolve(f"{PREFIX}/x")
            assert refused.code == ResponseCode.CLIENT_CHANNEL_ERROR
        async with HTTPClient(f"http://127.0.0.1:{port}", attempts=1) as client:
            refused = await client.resolve(f"{PREFIX}/x")
            assert refused.code == ResponseCode.CLIENT_CHANNEL_ERROR

    asyncio.run(body())


def test_create_request_is_sent_with_the_credential(tmp_path: Path) -> None:
    sent: list[Request] = []

    class Recording(TCPClient):
        async def _exchange(self, request: Request) -> Response:
            sent.append(request)
            return await super()._exchange(request)

    async def body(node: Node) -> None:
        async with Recording("127.0.0.1", node.ports["tcp"], credential=CRED) as client:
            await client.create(f"{PREFIX}/c", VALUES)
            await client.resolve(f"{PREFIX}/c")
        assert isinstance(sent[0], CreateRequest) and sent[0].credential == CRED
        assert sent[1].credential is None  # plain resolution is anonymous (the cached path)

    on_node(tmp_path, body)


# -- the command line ---------------------------------------------------------------------------


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def test_cli_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IDNODE_SECRET", raising=False)
    monkeypatch.setenv("IDNODE_ADMIN_SECRET", SECRET)

    async def body(node: Node) -> None:
        where = {
            "http": ("--url", f"http://127.0.0.1:{node.ports['http']}"),
            "tcp": ("--tcp", f"127.0.0.1:{node.ports['tcp']}"),
            "udp": ("--udp", f"127.0.0.1:{node.ports['udp']}"),
        }
        handle = f"{PREFIX}/cli-1"
        create = (
            "create",
            handle,
            "--value",
            "1:URL:https://example.com/a:b",
            "--value",
            "2:EMAIL:x@y",
        )
        assert await cli(*create, *where["http"], "--secret", SECRET) == 0
        out = json.loads(capsys.readouterr().out)
        assert out == {"responseCode": 1, "handle": handle}

        for kind in KINDS:
            assert await cli("resolve", handle, *where[kind], "--type", "URL") == 0
            out = json.loads(capsys.readouterr().out)
            assert out["values"][0]["data"] == {
                "format": "string",
                "value": "https://example.com/a:b",
            }
            assert [v["index"] for v in out["values"]] == [1]

        assert await cli(*create, *where["tcp"], "--secret", SECRET) == 1
        captured = capsys.readouterr()
        assert json.loads(captured.out)["responseCode"] == 101
        assert "HANDLE_ALREADY_EXISTS" in captured.err

        monkeypatch.setenv("IDNODE_SECRET", SECRET)
        assert await cli("list", PREFIX, *where["udp"], "--page-size", "1", "--page", "1") == 0
        out = json.loads(capsys.readouterr().out)
        assert out["totalCount"] == "2" and out["pageSize"] == 1 and len(out["handles"]) == 1
        assert await cli("list", PREFIX, *where["http"], "--auth", f"300:{PREFIX}/ADMIN") == 0
        assert json.loads(capsys.readouterr().out)["handles"] == [f"{PREFIX}/ADMIN", handle]

        assert await cli("delete", handle, *where["udp"]) == 0
        assert json.loads(capsys.readouterr().out) == {"responseCode": 1, "handle": handle}
        assert await cli("resolve", handle, *where["http"]) == 1
        captured = capsys.readouterr()
        assert (
            json.loads(captured.out)["responseCode"] == 100 and "HANDLE_NOT_FOUND" in captured.err
        )

        assert await cli("home", "88.300.1", *where["tcp"]) == 0
        assert json.loads(capsys.readouterr().out) == {"responseCode": 1}
        assert "88.300.1" in node.service.homed.values()
        assert await cli("home", "88.300.2", *where["http"]) == 2
        assert "--tcp" in capsys.readouterr().err
        assert await cli("create", f"{PREFIX}/bad", "--value", "one:URL", *where["http"]) == 2
        assert "INDEX:TYPE:DATA" in capsys.readouterr().err
        tcp_url = f"tcp://127.0.0.1:{node.ports['tcp']}"
        assert await cli("resolve", handle, "--url", tcp_url) == 2
        assert "--tcp HOST:PORT" in capsys.readouterr().err

    on_node(tmp_path, body)


@pytest.mark.parametrize(
    ("command", "variable"),
    [("resolve", "IDNODE_SECRET"), ("list", "IDNODE_SECRET"), ("home", "IDNODE_ADMIN_SECRET")],
)
def test_cli_help_names_the_secret_variable_the_command_reads(
    command: str, variable: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``home`` reads IDNODE_ADMIN_SECRET, never IDNODE_SECRET; its help said the latter."""
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    said = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    assert f"--secret SECRET the identity's secret (or {variable})" in said


@pytest.mark.parametrize("kind", KINDS)
def test_a_value_its_format_cannot_hold_is_202_over_every_transport(
    tmp_path: Path, kind: str
) -> None:
    """HTTP writes values as JSON before sending: one its format refuses is still an answer."""

    async def body(node: Node) -> None:
        async with client_for(kind, node) as client:
            for bad in (HandleValue(100, "HS_ADMIN", b"\0"), HandleValue(200, "HS_VLIST", b"zz")):
                answer = await client.create(f"{PREFIX}/bad-{kind}", [bad])
                assert isinstance(answer, ErrorResponse), answer
                assert answer.code == ResponseCode.INVALID_VALUE

    on_node(tmp_path, body)


@pytest.mark.parametrize(
    "argv",
    [
        ["resolve", f"{PREFIX}/x", "--tcp", "127.0.0.1:99999"],
        ["resolve", f"{PREFIX}/x", "--url", "http://127.0.0.1:99999"],
        ["resolve", f"{PREFIX}/x", "--url", "http://[bad"],
        ["create", f"{PREFIX}/x", "--value", "\u00b2:URL:x", "--tcp", "127.0.0.1:1"],
        ["resolve", f"{PREFIX}/x", "--tcp", "127.0.0.1:1", "--timeout", "-1"],
        ["resolve", f"{PREFIX}/x", "--tcp", "127.0.0.1:1", "--timeout", "nan"],
        ["resolve", f"{PREFIX}/\udcff", "--tcp", "127.0.0.1:1"],
    ],
)
def test_cli_bad_arguments_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        sys.exit(main(argv))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: idnode ") and ": error: " in err, err


@pytest.mark.parametrize("kind", KINDS)
def test_answers_carry_the_request_flags_over_every_transport(tmp_path: Path, kind: str) -> None:
    """msgpack answers echo the op flags; over HTTP, which has none, the client sets the same."""

    async def body(node: Node) -> None:
        async with client_for(kind, node) as client:
            made = await client.create(f"{PREFIX}/flags-{kind}", VALUES, overwrite=True)
            assert made.code == ResponseCode.SUCCESS and made.flags == OpFlag.OVERWRITE
            got = await client.resolve(f"{PREFIX}/flags-{kind}", authoritative=True)
            assert got.flags & OpFlag.AUTHORITATIVE

    on_node(tmp_path, body)


def test_answers_longer_than_the_request_limits_come_back_over_msgpack(tmp_path: Path) -> None:
    """SPEC 1.1: a record written over HTTP may hold values of up to 256 KiB, and a page up to
    10000 handles; a msgpack client reads those answers whole, as HTTP does (a frame, a value
    and an array each over the 64 KiB / 4096 bounds on requests)."""
    big = (HandleValue(1, "DESC", b"a" * 100_000), HandleValue(2, "DESC", b"b" * 200_000))
    handles = [f"{PREFIX}/many-{i}" for i in range(4200)]

    async def body(node: Node) -> None:
        async with client_for("http", node) as writer:
            assert (await writer.create(f"{PREFIX}/big", big)).code == ResponseCode.SUCCESS
            over_http = await writer.resolve(f"{PREFIX}/big")
        async with client_for("tcp", node) as tcp:
            made = await asyncio.gather(*(tcp.create(h, VALUES[:1]) for h in handles))
            assert {m.code for m in made} == {ResponseCode.SUCCESS}
        for kind in ("tcp", "udp"):
            async with client_for(kind, node) as client:
                answer = await client.resolve(f"{PREFIX}/big")
                assert isinstance(answer, ResolveResponse), answer
                assert answer.values == over_http.values  # type: ignore[attr-defined]
                page = await client.list_handles(PREFIX, page_size=5000)
                assert isinstance(page, ListHandlesResponse), page
                assert len(page.handles) == len(handles) + 2  # and big, ADMIN

    on_node(tmp_path, body)


@pytest.mark.parametrize("kind", KINDS)
def test_an_integer_msgpack_cannot_hold_is_an_answer_not_a_crash(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSON carries an index of 2**70 and the node refuses it; msgpack cannot carry it at all:
    the client answers PROTOCOL_ERROR itself, sends nothing, and the CLI says so in one line."""
    huge = 2**70

    async def body(node: Node) -> None:
        handle = f"{PREFIX}/huge-{kind}"
        async with client_for(kind, node) as client:
            made = await client.create(handle, [HandleValue(huge, "URL", b"x")])
            assert isinstance(made, ErrorResponse), made
            assert made.code == (ResponseCode.INVALID_VALUE if kind == "http" else 4)
            assert (await client.create(handle, VALUES)).code == ResponseCode.SUCCESS
            filtered = await client.resolve(handle, indexes=[huge])
            assert isinstance(filtered, ErrorResponse), filtered
            assert filtered.code == (ResponseCode.VALUES_NOT_FOUND if kind == "http" else 4)
            assert triples(await client.resolve(handle)) == [
                (v.index, v.type, v.data) for v in VALUES
            ]
        where = f"127.0.0.1:{node.ports[kind]}"
        flag = ("--url", f"http://{where}") if kind == "http" else (f"--{kind}", where)
        assert await cli("resolve", handle, "--index", str(huge), *flag) == 1
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith("idnode resolve: "), err

    on_node(tmp_path, body)


@pytest.mark.parametrize("kind", KINDS)
def test_retried_create_compares_whole_values_but_timestamps(tmp_path: Path, kind: str) -> None:
    """The record a retried create meets is its own only when identical: one holding the same
    data under other permissions or TTLs was made by someone else, and stays 101."""
    admin = AdminValue(CRED.handle, 300, ALL_ADMIN_PERMISSIONS).to_bytes()
    ours = (
        HandleValue(100, "HS_ADMIN", admin),
        HandleValue(1, "URL", b"https://example.com/p/1", ttl=60, ttl_type=1, timestamp=12345),
        HandleValue(2, "DESC", b"pads", permissions=0xE, references=(Reference("88.100.1/r", 3),)),
    )
    theirs = (ours[0], dataclasses.replace(ours[1], ttl=86400), ours[2])

    async def body(node: Node) -> None:
        async with lossy_client(kind, node) as client:
            client.lose_answers = 1  # done on the node, its answer lost
            made = await client.create(f"{PREFIX}/ours", ours)
            assert isinstance(made, CreateResponse), made
            async with client_for(kind, node) as other:
                assert (await other.create(f"{PREFIX}/theirs", theirs)).code == 1
            client.lose_requests = 1  # never reaches the node; the retry meets the other record
            clash = await client.create(f"{PREFIX}/theirs", ours)
            assert clash.code == ResponseCode.HANDLE_ALREADY_EXISTS, clash
            assert client.exchanges[-3:] == [OpCode.CREATE_HANDLE] * 2 + [OpCode.RESOLUTION]

    on_node(tmp_path, body)


def test_a_request_the_node_cannot_read_fails_with_the_nodes_reason(tmp_path: Path) -> None:
    """A frame over the node's limit gets PROTOCOL_ERROR with request id 0, then the connection
    closes (SPEC 1.1): the client reports the node's reason, not a bare lost connection."""

    async def body(node: Node) -> None:
        async with client_for("tcp", node, attempts=2, backoff_s=0.01) as client:
            assert isinstance(client, TCPClient)
            too_big = [HandleValue(1, "DESC", b"x" * 70_000)]
            refused = await client.create(f"{PREFIX}/too-big", too_big)
            assert isinstance(refused, ErrorResponse), refused
            assert refused.code == ResponseCode.CLIENT_CHANNEL_ERROR
            assert "over the limit of 65536" in refused.message, refused.message
            assert (await client.create(f"{PREFIX}/fits", VALUES)).code == ResponseCode.SUCCESS

    on_node(tmp_path, body)


def test_a_request_too_big_for_a_datagram_fails_alone(tmp_path: Path) -> None:
    """A request no datagram can carry goes over TCP (where the node says why it refuses it),
    instead of failing on the socket every request in flight beside it."""

    async def body(node: Node) -> None:
        async with client_for("udp", node) as client:
            assert isinstance(client, UDPClient)
            assert (await client.create(f"{PREFIX}/d", VALUES)).code == ResponseCode.SUCCESS
            too_big = [HandleValue(1, "DESC", b"x" * 66_000)]
            deleted, refused = await asyncio.gather(
                client.delete(f"{PREFIX}/d"), client.create(f"{PREFIX}/too-big", too_big)
            )
            assert isinstance(deleted, DoneResponse), deleted
            assert isinstance(refused, ErrorResponse), refused
            assert "over the limit of 65536" in refused.message, refused.message

    on_node(tmp_path, body)
