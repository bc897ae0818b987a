"""``GET /metrics``: every family is there, and the numbers move with requests on every transport.

Each test scrapes a real node (port 0) before and after real requests over HTTP, msgpack/TCP and
msgpack/UDP, and compares samples parsed with prometheus-client's own text parser.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import msgpack
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from node.metrics import REQUEST_BUCKETS_S
from protocol.codes import ResponseCode
from protocol.messages import (
    CreateRequest,
    Credential,
    DeleteRequest,
    ErrorResponse,
    HomePrefixRequest,
    ResolveRequest,
    ResolveResponse,
    Response,
)
from protocol.records import HandleValue
from protocol.wire import PROTOCOL_VERSION, encode_message, frame
from tests.node.conftest import (
    ADMIN_HANDLE,
    BAD_AUTH,
    CREDENTIAL,
    HOST,
    PREFIX,
    SECRET,
    RunningNode,
    TCPClient,
    UDPClient,
    basic,
    create,
    http,
    make_config,
    next_request_id,
    running_node,
    tcp_request,
    udp_request,
    value,
)

#: every family the node must export, as the text parser names them (no ``_total`` suffix)
FAMILIES = {
    "idnode_requests": "counter",
    "idnode_request_duration_seconds": "histogram",
    "idnode_requests_in_progress": "gauge",
    "idnode_cache_hits": "counter",
    "idnode_cache_misses": "counter",
    "idnode_store_operation_duration_seconds": "histogram",
    "idnode_store_commit_batch_size": "histogram",
    "idnode_store_fsyncs": "counter",
    "idnode_identifiers": "gauge",
    "idnode_auth_rejections": "counter",
    "idnode_quota_rejections": "counter",
    "idnode_referrals_followed": "counter",
    "idnode_build_info": "gauge",
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_text(node: RunningNode, path: str = "/metrics") -> str:
    reply = http(node, "GET", path)
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"] == CONTENT_TYPE_LATEST  # text/plain; version=...
    return reply.body.decode()


def scrape(node: RunningNode) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(scrape_text(node)):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, transport: str, op: str, code: int) -> float:
    return sample(samples, "idnode_requests_total", transport=transport, op=op, code=str(int(code)))


def durations(samples: Samples, transport: str, op: str) -> float:
    return sample(samples, "idnode_request_duration_seconds_count", transport=transport, op=op)


def identifiers(node: RunningNode) -> float:
    return sample(scrape(node), "idnode_identifiers", prefix=PREFIX)


def _value(data: str) -> tuple[HandleValue, ...]:
    return (HandleValue(1, "URL", data.encode()),)


def test_every_family_is_exposed_with_help_and_type(node: RunningNode) -> None:
    text = scrape_text(node)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in FAMILIES.items():
        assert name in families, f"{name} missing from /metrics"
        assert families[name].type == kind, (name, families[name].type)
        assert families[name].documentation, name
    samples = scrape(node)
    info = [labels for (name, labels) in samples if name == "idnode_build_info"]
    assert len(info) == 1 and {k for k, _ in info[0]} == {"version", "python"}
    # histogram buckets run from 100 us to 1 s, then +Inf
    les = [
        dict(labels)["le"]
        for (name, labels) in samples
        if name == "idnode_request_duration_seconds_bucket"
        and dict(labels)["transport"] == "http"
        and dict(labels)["op"] == "resolution"
    ]
    assert les == [repr(b) for b in REQUEST_BUCKETS_S] + ["+Inf"]
    assert les[0] == "0.0001" and les[-2] == "1.0"
    for transport in ("http", "tcp", "udp"):
        assert ("idnode_requests_in_progress", frozenset({("transport", transport)})) in samples
    for reason in ("authentication_needed", "authentication_failed", "not_authorized"):
        assert ("idnode_auth_rejections_total", frozenset({("reason", reason)})) in samples
    assert sample(samples, "idnode_quota_rejections_total") == 0
    assert sample(samples, "idnode_referrals_followed_total") == 0


def test_error_series_exist_at_zero_before_any_request(node: RunningNode) -> None:
    """A fresh node has SUCCESS, ERROR and SERVER_BUSY series at 0 for the standing ops on every
    transport: rate() over a series that first appears holding its count sees nothing, so the
    error ratio alert would miss a first burst of 2s or 3s."""
    samples = scrape(node)
    for transport in ("http", "tcp", "udp"):
        for op in ("resolution", "create_handle"):
            for code in (ResponseCode.SUCCESS, ResponseCode.ERROR, ResponseCode.SERVER_BUSY):
                labels = {"transport": transport, "op": op, "code": str(int(code))}
                key = ("idnode_requests_total", frozenset(labels.items()))
                assert samples.get(key) == 0, (transport, op, code)


def test_http_requests_counted_with_op_and_code(node: RunningNode) -> None:
    before = scrape(node)
    create(node, f"{PREFIX}/m1", value(1, "URL", "https://example.com/m1"))
    assert http(node, "GET", f"/api/handles/{PREFIX}/m1").status == 200
    assert http(node, "GET", f"/api/handles/{PREFIX}/m1").status == 200  # from the cache
    assert http(node, "GET", f"/api/handles/{PREFIX}/absent").status == 404
    assert http(node, "GET", f"/api/handles/{PREFIX}/m1", params=[("callback", "f")]).status == 200
    bad_json = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/m2",
        raw=b"{",
        headers={"Content-Type": "application/json"},
        auth=True,
    )
    assert bad_json.status == 400
    assert http(node, "DELETE", f"/api/handles/{PREFIX}/m1", auth=True).status == 200
    after = scrape(node)

    def moved(op: str, code: int) -> float:
        return requests(after, "http", op, code) - requests(before, "http", op, code)

    assert moved("create_handle", ResponseCode.SUCCESS) == 1
    assert moved("create_handle", ResponseCode.PROTOCOL_ERROR) == 1
    assert moved("resolution", ResponseCode.SUCCESS) == 3
    assert moved("resolution", ResponseCode.HANDLE_NOT_FOUND) == 1
    assert moved("delete_handle", ResponseCode.SUCCESS) == 1
    assert durations(after, "http", "resolution") - durations(before, "http", "resolution") == 4
    assert (
        durations(after, "http", "create_handle") - durations(before, "http", "create_handle") == 2
    )
    assert sample(after, "idnode_requests_in_progress", transport="http") == 0
    # the cache counted a miss for the first read of m1 and of "absent", and hits after
    hits = sample(after, "idnode_cache_hits_total") - sample(before, "idnode_cache_hits_total")
    misses = sample(after, "idnode_cache_misses_total") - sample(
        before, "idnode_cache_misses_total"
    )
    assert misses >= 2 and hits >= 2
    # /metrics, /healthz and unknown paths are not API requests
    http(node, "GET", "/healthz")
    http(node, "GET", "/nowhere")
    again = scrape(node)
    total = sum(v for (n, _), v in again.items() if n == "idnode_requests_total")
    assert total == sum(v for (n, _), v in after.items() if n == "idnode_requests_total")
    # ...but requests to the handles API refused before routing are (an op by their method)
    assert http(node, "GET", "/api/handles/").status == 400  # empty handle
    assert http(node, "GET", f"/api/handles/{PREFIX}/%FF").status == 400
    assert http(node, "POST", f"/api/handles/{PREFIX}/m1").status == 501
    refused = scrape(node)
    assert (
        requests(refused, "http", "resolution", 102) - requests(again, "http", "resolution", 102)
        == 2
    )
    assert requests(refused, "http", "unknown", 5) - requests(again, "http", "unknown", 5) == 1


def test_tcp_and_udp_requests_counted(node: RunningNode) -> None:
    handle = f"{PREFIX}/wire"
    before = scrape(node)

    async def go() -> list[Response]:
        answers = [
            await tcp_request(
                node.ports["tcp"],
                CreateRequest(
                    request_id=next_request_id(),
                    handle=handle,
                    values=_value("https://example.com/wire"),
                    credential=CREDENTIAL,
                ),
            )
        ]
        for port_name, send in (("tcp", tcp_request), ("udp", udp_request)):
            for name in (handle, handle, f"{PREFIX}/nope"):
                request = ResolveRequest(request_id=next_request_id(), handle=name)
                answers.append(await send(node.ports[port_name], request))
        answers.append(
            await udp_request(
                node.ports["udp"],
                DeleteRequest(request_id=next_request_id(), handle=handle, credential=CREDENTIAL),
            )
        )
        return answers

    answers = node.call(go)
    assert [int(a.code) for a in answers] == [1, 1, 1, 100, 1, 1, 100, 1]
    assert isinstance(answers[1], ResolveResponse)
    after = scrape(node)

    def moved(transport: str, op: str, code: int) -> float:
        return requests(after, transport, op, code) - requests(before, transport, op, code)

    assert moved("tcp", "create_handle", 1) == 1
    assert moved("tcp", "resolution", 1) == 2
    assert moved("tcp", "resolution", 100) == 1
    assert moved("udp", "resolution", 1) == 2
    assert moved("udp", "resolution", 100) == 1
    assert moved("udp", "delete_handle", 1) == 1
    for transport in ("tcp", "udp"):
        assert (
            durations(after, transport, "resolution") - durations(before, transport, "resolution")
            == 3
        )
        assert sample(after, "idnode_requests_in_progress", transport=transport) == 0
    assert moved("http", "resolution", 1) == 0


def test_bad_messages_counted_under_a_bounded_op_label(node: RunningNode) -> None:
    before = scrape(node)
    unknown_op = msgpack.packb([PROTOCOL_VERSION, 7, 4242, 0, 0, 0, {}])

    async def go() -> list[Any]:
        client = await TCPClient.open(node.ports["tcp"])
        try:
            await client.send_raw(frame(b"\xc1\xc1\xc1") + frame(unknown_op))
            return [await client.receive(), await client.receive()]
        finally:
            await client.close()

    errors = node.call(go)
    assert [int(e.code) for e in errors] == [4, 5]
    assert all(isinstance(e, ErrorResponse) for e in errors)
    after = scrape(node)
    moved_4 = requests(after, "tcp", "unknown", 4) - requests(before, "tcp", "unknown", 4)
    moved_5 = requests(after, "tcp", "unknown", 5) - requests(before, "tcp", "unknown", 5)
    assert (moved_4, moved_5) == (1, 1)
    ops = {dict(labels)["op"] for (name, labels) in after if name == "idnode_requests_total"}
    assert not any(op.startswith("unknown_") for op in ops), ops


def test_auth_rejections_by_reason(node: RunningNode) -> None:
    user = f"{PREFIX}/operator"
    create(node, user, value(300, "HS_SECKEY", "op-secret"))
    before = scrape(node)
    body = {"values": [value(1, "URL", "https://example.com/x")]}
    path = f"/api/handles/{PREFIX}/x"
    assert http(node, "PUT", path, body=body).status == 401  # 402: no credential
    assert http(node, "PUT", path, body=body, headers=BAD_AUTH).status == 401  # 403: wrong secret
    operator = basic(f"300%3A{user}", "op-secret")
    assert http(node, "PUT", path, body=body, headers=operator).status == 403  # 400: not admin
    after = scrape(node)

    def moved(reason: str) -> float:
        name = "idnode_auth_rejections_total"
        return sample(after, name, reason=reason) - sample(before, name, reason=reason)

    assert moved("authentication_needed") == 1
    assert moved("authentication_failed") == 1
    assert moved("not_authorized") == 1


def test_store_metrics_move_with_reads_and_commits(node: RunningNode) -> None:
    before = scrape(node)
    for i in range(3):
        create(node, f"{PREFIX}/s{i}", value(1, "URL", f"https://example.com/s{i}"))
    assert http(node, "GET", f"/api/handles/{PREFIX}/s0").status == 200  # a cache miss: a read
    after = scrape(node)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    commits = moved("idnode_store_operation_duration_seconds_count", operation="commit")
    assert commits >= 1
    assert moved("idnode_store_operation_duration_seconds_count", operation="read") >= 1
    assert moved("idnode_store_fsyncs_total") == commits
    assert moved("idnode_store_commit_batch_size_count") == commits
    assert moved("idnode_store_commit_batch_size_sum") == 3
    bucket = sample(after, "idnode_store_commit_batch_size_bucket", le="+Inf")
    assert bucket == sample(after, "idnode_store_commit_batch_size_count")


def test_identifiers_gauge_follows_creates_and_deletes(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    with running_node(config) as node:
        assert identifiers(node) == 1  # PREFIX/ADMIN, made when the prefix was homed
        for i in range(4):
            create(node, f"{PREFIX}/id{i}", value(1, "URL", "https://example.com/"))
        assert identifiers(node) == 5
        create(node, f"{PREFIX}/id0", value(1, "URL", "https://example.com/again"))  # overwrite
        assert identifiers(node) == 5

        async def over_tcp() -> list[Response]:
            return [
                await tcp_request(
                    node.ports["tcp"],
                    DeleteRequest(request_id=next_request_id(), handle=name, credential=CREDENTIAL),
                )
                for name in (f"{PREFIX}/id1", f"{PREFIX}/id1")  # the second is not found
            ]

        assert [int(a.code) for a in node.call(over_tcp)] == [1, 100]
        assert identifiers(node) == 4
        refused = http(node, "DELETE", f"/api/handles/{PREFIX}/id2", headers=BAD_AUTH)
        assert refused.status == 401
        assert identifiers(node) == 4
    with running_node(config) as node:  # counted again at start
        assert identifiers(node) == 4
        assert http(node, "DELETE", f"/api/handles/{PREFIX}/id2", auth=True).status == 200
        assert identifiers(node) == 3


def test_identifiers_of_a_prefix_homed_at_runtime(node: RunningNode) -> None:
    node_admin = Credential(f"0.NA/{PREFIX}", 300, SECRET)
    other = "88.100.2"

    async def home() -> Response:
        return await tcp_request(
            node.ports["tcp"],
            HomePrefixRequest(request_id=next_request_id(), prefix=other, credential=node_admin),
        )

    assert int(node.call(home).code) == 1
    assert sample(scrape(node), "idnode_identifiers", prefix=other) == 1


def test_no_identifier_secret_or_address_in_metrics(node: RunningNode) -> None:
    marker = "ZQX-unique-suffix-4711"
    create(node, f"{PREFIX}/{marker}", value(1, "URL", f"https://example.com/{marker}"))
    http(node, "GET", f"/api/handles/{PREFIX}/{marker}")
    http(node, "GET", f"/api/handles/{PREFIX}/{marker}-missing")
    http(node, "PUT", f"/api/handles/{PREFIX}/{marker}-2", body={"values": []}, headers=BAD_AUTH)

    async def go() -> None:
        for send in (tcp_request, udp_request):
            await send(
                node.ports["tcp"],
                ResolveRequest(request_id=next_request_id(), handle=f"{PREFIX}/{marker}"),
            )

    node.call(go)
    text = scrape_text(node)
    assert marker not in text
    assert marker.lower() not in text.lower()
    assert "wrong" not in text and SECRET not in text  # the secrets used
    assert ADMIN_HANDLE not in text
    assert HOST not in text


def test_each_node_has_its_own_registry(tmp_path: Path) -> None:
    with (
        running_node(make_config(tmp_path / "a")) as a,
        running_node(make_config(tmp_path / "b")) as b,
    ):
        for _ in range(3):
            http(a, "GET", f"/api/handles/{PREFIX}/ADMIN")
        assert requests(scrape(a), "http", "resolution", 1) == 3
        assert requests(scrape(b), "http", "resolution", 1) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def test_separate_metrics_port(tmp_path: Path) -> None:
    port = _free_port()
    with running_node(make_config(tmp_path / "data", metrics_port=port)) as node:
        assert node.ports["metrics"] == port
        http(node, "GET", f"/api/handles/{PREFIX}/ADMIN")
        http_port = node.ports["http"]
        node.ports["http"] = port  # point the helpers at the metrics port
        try:
            text = scrape_text(node)
            assert http(node, "GET", f"/api/handles/{PREFIX}/ADMIN").status == 404
        finally:
            node.ports["http"] = http_port
        assert 'idnode_requests_total{code="1",op="resolution",transport="http"} 1.0' in text
        assert "idnode_requests_total" in scrape_text(node)  # still on the HTTP port


def test_udp_datagrams_dropped_beyond_the_queue_are_counted(tmp_path: Path) -> None:
    with running_node(make_config(tmp_path / "data", udp_queue_len=0)) as node:

        async def go() -> None:
            client = await UDPClient.open(node.ports["udp"])
            try:
                for _ in range(3):
                    request = ResolveRequest(request_id=next_request_id(), handle=f"{PREFIX}/x")
                    client.send_raw(encode_message(request))
                await asyncio.sleep(0.05)
            finally:
                client.close()

        dropped = 0.0
        for _ in range(50):  # datagrams are not acknowledged: wait for the node to see them
            node.call(go)
            dropped = sample(scrape(node), "idnode_udp_datagrams_dropped_total")
            if dropped >= 3:
                break
        assert dropped >= 3
        assert requests(scrape(node), "udp", "resolution", 1) == 0
